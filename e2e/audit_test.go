package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/audit/trail"
	"github.com/sftpgw/sftpgw/internal/testenv"
	"github.com/sftpgw/sftpgw/internal/testgw"
	"github.com/sftpgw/sftpgw/vfs"
	"github.com/sftpgw/sftpgw/vfs/s3store"
)

// trailEvents reads every event shipped to the audit bucket, in key order.
func trailEvents(t *testing.T, st vfs.Store) ([]audit.Event, []string) {
	t.Helper()
	ctx := context.Background()
	var keys []string
	token := ""
	for {
		page, err := st.List(ctx, vfs.ListOptions{Prefix: "audit/", Recursive: true, Token: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page.Entries {
			if strings.HasSuffix(e.Key, ".jsonl") {
				keys = append(keys, e.Key)
			}
		}
		if page.Next == "" {
			break
		}
		token = page.Next
	}
	var evs []audit.Event
	for _, k := range keys {
		sc := bufio.NewScanner(bytes.NewReader(readObject(t, st, k)))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var probe struct {
				Type string `json:"type"`
			}
			_ = json.Unmarshal(sc.Bytes(), &probe)
			if probe.Type == "batch" || probe.Type == "digest" {
				continue
			}
			var e audit.Event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatalf("%s: bad event line %q: %v", k, sc.Text(), err)
			}
			evs = append(evs, e)
		}
	}
	return evs, keys
}

func readObject(t *testing.T, st vfs.Store, key string) []byte {
	t.Helper()
	rc, err := st.Read(context.Background(), key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeObject(t *testing.T, st vfs.Store, key string, data []byte) {
	t.Helper()
	ctx := context.Background()
	up, err := st.Create(ctx, key, vfs.CreateOptions{SizeHint: int64(len(data))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := up.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

func verifyTrail(t *testing.T, st vfs.Store, pub ed25519.PublicKey) *trail.Report {
	t.Helper()
	rep, err := trail.Verify(context.Background(), st, "audit/", pub, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// fileOps keeps the events of user with the given ops, as "op path result".
func fileOps(evs []audit.Event, user string, ops ...string) []string {
	var out []string
	for _, e := range evs {
		if e.User != user || e.Kind != "file" {
			continue
		}
		for _, op := range ops {
			if e.Op == op {
				s := e.Op + " " + e.Path
				if e.Target != "" {
					s += " -> " + e.Target
				}
				out = append(out, s+" "+e.Result)
			}
		}
	}
	return out
}

// TestAuditTrailEndToEnd runs a scripted session against a gateway that
// ships its audit trail to MinIO, then checks the events in the bucket, the
// integrity verification, and that tampering is detected.
func TestAuditTrailEndToEnd(t *testing.T) {
	needTool(t, "sftp")
	g := testgw.Start(t, testgw.Options{Trail: true})
	a := g.AddUser("applicant", false)
	p, _ := randomFile(t, t.TempDir(), "doc.pdf", 70000)
	steps := []struct {
		batch string
		fail  bool
	}{
		{"put " + p + " doc.pdf", false},
		{"get doc.pdf " + filepath.Join(t.TempDir(), "x"), true},
		{"rename doc.pdf cv.pdf", false},
		{"rm cv.pdf", false},
	}
	logs := g.Stores["logs"]
	for i, s := range steps {
		out, err := g.SFTP(a, s.batch)
		if (err != nil) != s.fail {
			t.Fatalf("%q: err=%v\n%s", s.batch, err, out)
		}
		// Wait for this step's file event to be shipped: its batch is then
		// sealed, so the next step's events go into a later one (at least
		// one batch per step, whatever the speed of the machine).
		waitFor(t, 15*time.Second, "step "+fmt.Sprint(i+1)+"'s events in the audit bucket", func() bool {
			evs, _ := trailEvents(t, logs)
			return len(fileOps(evs, a.Name, "upload", "download", "rename", "delete")) > i
		})
	}
	// A failed login: right user name, a key that is not theirs.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	blk, _ := ssh.MarshalPrivateKey(other, "")
	wrong := *a
	wrong.KeyPath = filepath.Join(t.TempDir(), "wrong")
	os.WriteFile(wrong.KeyPath, pem.EncodeToMemory(blk), 0o600)
	if out, err := g.SFTP(&wrong, "ls"); err == nil {
		t.Fatalf("login with a wrong key succeeded: %s", out)
	}

	want := []string{"upload /doc.pdf ok", "download /doc.pdf denied", "rename /doc.pdf -> /cv.pdf ok", "delete /cv.pdf ok"}
	var evs []audit.Event
	var keys []string
	waitFor(t, 15*time.Second, "events in the audit bucket", func() bool {
		evs, keys = trailEvents(t, logs)
		got := fileOps(evs, a.Name, "upload", "download", "rename", "delete")
		fails := 0
		for _, e := range evs {
			if e.Kind == "auth" && e.User == a.Name && e.Result == "failure" {
				fails++
			}
		}
		return fmt.Sprint(got) == fmt.Sprint(want) && fails >= 1
	})
	logins, sessions := 0, 0
	for _, e := range evs {
		if e.User != a.Name {
			continue
		}
		switch {
		case e.Kind == "auth" && e.Result == "ok":
			logins++
			if !strings.HasPrefix(e.KeyFP, "SHA256:") || e.Client == "" || e.Session == "" {
				t.Errorf("login event lacks key fingerprint, client or session: %+v", e)
			}
		case e.Kind == "session_start":
			sessions++
			if e.Kex == "" || e.Cipher == "" || e.ClientVer == "" {
				t.Errorf("session event lacks kex/cipher/client version: %+v", e)
			}
		case e.Kind == "file" && e.Op == "download":
			if e.ErrClass != "permission" {
				t.Errorf("denied download has class %q", e.ErrClass)
			}
		}
	}
	if logins != len(steps) || sessions != len(steps) {
		t.Errorf("%d logins and %d sessions in the trail, want %d", logins, sessions, len(steps))
	}
	raw, _ := json.Marshal(evs)
	for _, secret := range []string{string(pem.EncodeToMemory(blk)), "PRIVATE KEY", g.S3["files"].SecretAccessKey} {
		if secret != "" && bytes.Contains(raw, []byte(secret)) {
			t.Errorf("a secret appears in the audit trail")
		}
	}

	pub := g.TrailKey.Public().(ed25519.PublicKey)
	if rep := verifyTrail(t, logs, pub); !rep.OK() {
		t.Fatalf("untouched trail fails verification:\n%s", rep)
	}
	if len(keys) < 4 {
		t.Fatalf("only %d batches; need 4 to test tampering", len(keys))
	}
	orig := map[string][]byte{}
	for _, k := range keys {
		orig[k] = readObject(t, logs, k)
	}
	restore := func() {
		for _, k := range keys {
			writeObject(t, logs, k, orig[k])
		}
		if rep := verifyTrail(t, logs, pub); !rep.OK() {
			t.Fatalf("restored trail fails verification:\n%s", rep)
		}
	}
	// Edit one byte of an event line.
	edited := bytes.Clone(orig[keys[1]])
	i := bytes.Index(edited, []byte(`"user":"`)) + len(`"user":"`)
	edited[i] ^= 0x01
	writeObject(t, logs, keys[1], edited)
	if rep := verifyTrail(t, logs, pub); rep.OK() {
		t.Error("an edited byte was not detected")
	}
	restore()
	// Swap two batches' contents.
	writeObject(t, logs, keys[1], orig[keys[2]])
	writeObject(t, logs, keys[2], orig[keys[1]])
	if rep := verifyTrail(t, logs, pub); rep.OK() {
		t.Error("swapped batches were not detected")
	}
	restore()
	// Delete a batch in the middle.
	if err := logs.Delete(context.Background(), keys[1]); err != nil {
		t.Fatal(err)
	}
	if rep := verifyTrail(t, logs, pub); rep.OK() {
		t.Error("a deleted batch was not detected")
	} else {
		t.Logf("deleted batch reported as:\n%s", rep)
	}
	restore()
}

// TestAuditSurvivesStoreOutage stops the audit bucket's MinIO during a
// session: the events are spooled and shipped once it is back.
func TestAuditSurvivesStoreOutage(t *testing.T) {
	needTool(t, "sftp")
	m := testenv.StartMinIO(t)
	ctx := context.Background()
	logs, err := s3store.New(ctx, m.Config("audit-outage"))
	if err != nil {
		t.Fatal(err)
	}
	fcfg := testenv.S3(t)
	files, err := s3store.New(ctx, fcfg)
	if err != nil {
		t.Fatal(err)
	}
	g := testgw.Start(t, testgw.Options{Trail: true, Stores: map[string]vfs.Store{"files": files, "logs": logs}})
	a := g.AddUser("applicant", false)
	p, _ := randomFile(t, t.TempDir(), "f", 1000)
	if out, err := g.SFTP(a, "put "+p+" before"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	m.Stop()
	for _, name := range []string{"during1", "during2"} {
		if out, err := g.SFTP(a, "put "+p+" "+name); err != nil {
			t.Fatalf("uploads must not depend on the audit bucket: %v\n%s", err, out)
		}
	}
	// The uploads' events were sealed while the bucket was down: the
	// shipper has failed on them (they wait in the spool) before it comes back.
	waitFor(t, 15*time.Second, "the trail to find the bucket down", func() bool {
		st := g.Trail.Stats()
		return st.StoreDown && st.SpoolBytes > 0
	})
	m.Start()
	if out, err := g.SFTP(a, "put "+p+" after"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := []string{"upload /before ok", "upload /during1 ok", "upload /during2 ok", "upload /after ok"}
	waitFor(t, 30*time.Second, "every event in the audit bucket", func() bool {
		evs, _ := trailEvents(t, logs)
		return fmt.Sprint(fileOps(evs, a.Name, "upload")) == fmt.Sprint(want)
	})
	if rep := verifyTrail(t, logs, g.TrailKey.Public().(ed25519.PublicKey)); !rep.OK() {
		t.Fatalf("trail after outage fails verification:\n%s", rep)
	}
}

// TestAuditorReadsButCannotChangeTrail logs in as the auditor over SFTP.
func TestAuditorReadsButCannotChangeTrail(t *testing.T) {
	needTool(t, "sftp")
	g := testgw.Start(t, testgw.Options{Trail: true})
	a := g.AddUser("applicant", false)
	aud := g.AddUser("auditor", false)
	if out, err := g.SFTP(a, "ls"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	logs := g.Stores["logs"]
	var keys []string
	waitFor(t, 15*time.Second, "a batch", func() bool { _, keys = trailEvents(t, logs); return len(keys) > 0 })
	rel := strings.TrimPrefix(keys[0], "audit/")
	dst := filepath.Join(t.TempDir(), "batch.jsonl")
	out, err := g.SFTP(aud, "ls -l "+filepath.Dir(rel)+"\nget "+rel+" "+dst)
	if err != nil {
		t.Fatalf("auditor cannot read the trail: %v\n%s", err, out)
	}
	if !bytes.Equal(readFile(t, dst), readObject(t, logs, keys[0])) {
		t.Error("downloaded batch differs from the object")
	}
	p, _ := randomFile(t, t.TempDir(), "forged", 100)
	for _, cmd := range []string{"rm " + rel, "put " + p + " " + rel, "put " + p + " new.jsonl", "rename " + rel + " x", "mkdir d"} {
		out, err := g.SFTP(aud, cmd)
		if err == nil || !strings.Contains(out, "Permission denied") {
			t.Errorf("auditor %q: err=%v\n%s", cmd, err, out)
		}
	}
	if rep := verifyTrail(t, logs, g.TrailKey.Public().(ed25519.PublicKey)); !rep.OK() {
		t.Fatalf("trail changed:\n%s", rep)
	}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
