package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/internal/testgw"
	"github.com/sftpgw/sftpgw/retention"
	"github.com/sftpgw/sftpgw/vfs"
)

// dadCount counts the delete-after-download events for a path.
func dadCount(g *testgw.Gateway, path string) int {
	n := 0
	for _, e := range g.Events.Find(audit.Event{Kind: "file", Op: "delete", Path: path}) {
		if e.Detail == "delete after download" && e.Result == "ok" {
			n++
		}
	}
	return n
}

// downloadEvents returns the download events of path.
func downloadEvents(g *testgw.Gateway, path string) []audit.Event {
	return g.Events.Find(audit.Event{Kind: "file", Op: "download", Path: path})
}

func storeHas(t *testing.T, st vfs.Store, key string) bool {
	t.Helper()
	_, err := st.Stat(context.Background(), key)
	return err == nil
}

// mountSSHFS mounts the gateway for u with sshfs and unmounts at cleanup.
func mountSSHFS(t *testing.T, g *testgw.Gateway, u *testgw.User) string {
	t.Helper()
	mnt := t.TempDir()
	sshCmd := "ssh " + strings.Join(g.SSHArgs(u), " ")
	cmd := exec.Command("sshfs", "-p", fmt.Sprint(g.Port), "-o", "ssh_command="+sshCmd,
		u.Name+"@"+g.Host+":/", mnt)
	cmd.Env = g.ClientEnv(u, "")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sshfs: %v\n%s", err, out)
	}
	t.Cleanup(func() { unmountSSHFS(t, mnt) })
	return mnt
}

func unmountSSHFS(t *testing.T, mnt string) {
	for i := 0; i < 50; i++ {
		mounts, _ := os.ReadFile("/proc/self/mounts")
		if !strings.Contains(string(mounts), " "+mnt+" ") {
			return
		}
		if exec.Command("fusermount3", "-u", mnt).Run() == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("could not unmount %s", mnt)
}

// TestDeleteAfterDownload: an HR download that covers the whole object
// deletes it, exactly once, whether through `sftp get` or sshfs + cp.
// Partial reads (sshfs head, a Go client reading half, a resumed `reget`)
// and stat/ls never delete.
func TestDeleteAfterDownload(t *testing.T) {
	needTool(t, "sftp")
	needTool(t, "sshfs")
	roles := testgw.StandardRoles()
	hr := *roles["hr"]
	hr.MFA, hr.DeleteAfterDownload = false, true
	roles["hr"] = &hr
	g := testgw.Start(t, testgw.Options{Roles: roles})
	u := g.AddUser("hr", false)
	st := g.Stores["files"]
	dir := t.TempDir()

	// Files as applicants leave them; HR's home is "user/".
	files := map[string][]byte{}
	for name, n := range map[string]int{"get.bin": 3<<20 + 7, "cp.bin": 2<<20 + 1, "empty.bin": 0,
		"head.bin": 8 << 20, "half.bin": 4 << 20, "reget.bin": 3 << 20, "stat.bin": 1000} {
		b := make([]byte, n)
		rand.Read(b)
		files[name] = b
		writeObject(t, st, "user/anna/"+name, b)
	}
	key := func(name string) string { return "user/anna/" + name }
	vpath := func(name string) string { return "/anna/" + name }

	// 1. sftp get, plus ls and stat on another file.
	out, err := g.SFTP(u, fmt.Sprintf("get /anna/get.bin %s\nget /anna/empty.bin %s\nls -l /anna\n", filepath.Join(dir, "get.bin"), filepath.Join(dir, "empty.bin")))
	if err != nil {
		t.Fatalf("sftp: %v\n%s", err, out)
	}
	if !bytes.Equal(readFile(t, filepath.Join(dir, "get.bin")), files["get.bin"]) {
		t.Fatal("sftp get: content differs")
	}
	for _, n := range []string{"get.bin", "empty.bin"} {
		waitFor(t, 10*time.Second, n+" deleted", func() bool { return !storeHas(t, st, key(n)) })
		if c := dadCount(g, vpath(n)); c != 1 {
			t.Errorf("%s: %d delete-after-download events, want 1", n, c)
		}
	}

	// 2. A resumed download (reget) serves only the tail in this session:
	// the gateway cannot know the client holds the head, so it keeps it.
	part := filepath.Join(dir, "reget.bin")
	if err := os.WriteFile(part, files["reget.bin"][:1<<20], 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := g.SFTP(u, fmt.Sprintf("reget /anna/reget.bin %s\n", part)); err != nil {
		t.Fatalf("reget: %v\n%s", err, out)
	}
	if !bytes.Equal(readFile(t, part), files["reget.bin"]) {
		t.Fatal("reget: content differs")
	}

	// 3. A Go client reads half of a file; stat of another.
	c, err := sftp.NewClient(dialGo(t, g, u))
	if err != nil {
		t.Fatal(err)
	}
	f, err := c.Open(vpath("half.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, f, 2<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := c.Stat(vpath("stat.bin")); err != nil {
		t.Fatal(err)
	}
	c.Close()

	// 4. sshfs: cp copies one file whole; head reads 100 bytes of another.
	mnt := mountSSHFS(t, g, u)
	if out, err := exec.Command("cp", filepath.Join(mnt, "anna", "cp.bin"), filepath.Join(dir, "cp.bin")).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	if !bytes.Equal(readFile(t, filepath.Join(dir, "cp.bin")), files["cp.bin"]) {
		t.Fatal("sshfs cp: content differs")
	}
	head, err := exec.Command("head", "-c", "100", filepath.Join(mnt, "anna", "head.bin")).Output()
	if err != nil || !bytes.Equal(head, files["head.bin"][:100]) {
		t.Fatalf("head: %v (%d bytes)", err, len(head))
	}
	if _, err := os.Stat(filepath.Join(mnt, "anna", "stat.bin")); err != nil {
		t.Fatal(err)
	}
	// The release of a FUSE file reaches the server after cp returns.
	waitFor(t, 10*time.Second, "cp.bin deleted", func() bool { return !storeHas(t, st, key("cp.bin")) })
	unmountSSHFS(t, mnt)
	waitFor(t, 10*time.Second, "head.bin download closed", func() bool { return len(downloadEvents(g, vpath("head.bin"))) > 0 })
	if n := dadCount(g, vpath("cp.bin")); n != 1 {
		t.Errorf("cp.bin: %d delete-after-download events, want 1", n)
	}

	for _, n := range []string{"head.bin", "half.bin", "reget.bin", "stat.bin"} {
		if !storeHas(t, st, key(n)) {
			t.Errorf("%s was deleted after a partial read or stat", n)
		}
		if c := dadCount(g, vpath(n)); c != 0 {
			t.Errorf("%s: %d delete-after-download events, want 0", n, c)
		}
	}
	for _, n := range []string{"head.bin", "half.bin", "reget.bin"} {
		evs := downloadEvents(g, vpath(n))
		if len(evs) == 0 {
			t.Errorf("%s: no download event", n)
			continue
		}
		for _, e := range evs {
			if e.Detail != "partial read" || e.Bytes >= int64(len(files[n])) {
				t.Errorf("%s: download event %+v, want a partial read", n, e)
			}
		}
	}
	if evs := downloadEvents(g, vpath("stat.bin")); len(evs) != 0 {
		t.Errorf("stat.bin: stat produced download events %+v", evs)
	}
	// All deletes of this test, whatever path: exactly the three downloads.
	total := 0
	for _, e := range g.Events.Find(audit.Event{Kind: "file", Op: "delete"}) {
		if e.Detail == "delete after download" {
			total++
		}
	}
	if total != 3 {
		t.Errorf("%d delete-after-download events in all, want 3 (get, empty, cp)", total)
	}
}

// TestRetentionSweepMinIO: the sweeper removes only objects older than the
// retention period, audits each removal and leaves other buckets alone.
func TestRetentionSweepMinIO(t *testing.T) {
	g := testgw.Start(t, testgw.Options{})
	files, logs := g.Stores["files"], g.Stores["logs"]
	writeObject(t, files, "user/anna/old.pdf", []byte("old"))
	writeObject(t, files, "user/anna/", nil) // a directory marker, as mkdir leaves it
	writeObject(t, files, "user/bob/", nil)
	writeObject(t, files, "user/bob/old.txt", []byte("old too"))
	writeObject(t, logs, "audit/old.jsonl", []byte("trail"))
	// The store stamps objects with its own clock, to the second in HEAD
	// (which the sweeper re-checks with): the cutoff is taken from those
	// stamps, the first second boundary after the old objects, and the
	// sweeper's clock is set to cutoff + retention. Only the store's clock
	// ticking to the next second is waited for, not a real retention period.
	var lastOld time.Time
	for _, k := range []string{"user/anna/old.pdf", "user/anna/", "user/bob/", "user/bob/old.txt"} {
		fi, err := files.Stat(context.Background(), k)
		if err != nil {
			t.Fatal(err)
		}
		if fi.ModTime.After(lastOld) {
			lastOld = fi.ModTime
		}
	}
	var cutoff time.Time
	for deadline := time.Now().Add(10 * time.Second); ; {
		writeObject(t, files, "user/anna/new.pdf", []byte("new"))
		fi, err := files.Stat(context.Background(), "user/anna/new.pdf")
		if err != nil {
			t.Fatal(err)
		}
		if s := fi.ModTime.Truncate(time.Second); s.After(lastOld) {
			cutoff = s
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the store's clock did not pass %v", lastOld)
		}
		time.Sleep(50 * time.Millisecond)
	}
	writeObject(t, files, "user/carl/", nil)

	const retain = 24 * time.Hour
	sw, err := retention.New(retention.Options{Store: files, StoreName: "files", Retention: retain, Audit: g.Events,
		Now: func() time.Time { return cutoff.Add(retain) }})
	if err != nil {
		t.Fatal(err)
	}
	res, err := sw.Sweep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c, bucket := s3Client(t, g, "files")
	got := strings.Join(allKeys(t, c, bucket), " ")
	if want := "user/anna/ user/anna/new.pdf user/carl/"; got != want {
		t.Errorf("left %q, want %q", got, want)
	}
	if res.Deleted != 2 || res.Markers != 1 || res.Errors != 0 {
		t.Errorf("result %+v", res)
	}
	var deleted []string
	for _, e := range g.Events.Find(audit.Event{Kind: "retention", Op: "retention_delete", Result: "ok"}) {
		deleted = append(deleted, e.Path)
	}
	if strings.Join(deleted, " ") != "user/anna/old.pdf user/bob/old.txt user/bob/" {
		t.Errorf("audited deletions %v", deleted)
	}
	if !storeHas(t, logs, "audit/old.jsonl") {
		t.Error("the sweeper of files touched the logs bucket")
	}
}
