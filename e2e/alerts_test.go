package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/sftpgw/sftpgw/alerts"
	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/authn"
	"github.com/sftpgw/sftpgw/internal/testgw"
	"github.com/sftpgw/sftpgw/retention"
)

// hookReceiver is a webhook endpoint that verifies every signature.
type hookReceiver struct {
	secret []byte
	mu     sync.Mutex
	got    []alerts.Payload
	bad    int
}

func newHookReceiver(t *testing.T, secret string) (*hookReceiver, string) {
	r := &hookReceiver{secret: []byte(secret)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		var p alerts.Payload
		if !alerts.Verify(r.secret, body, req.Header.Get("X-Sftpgw-Signature")) || json.Unmarshal(body, &p) != nil {
			r.bad++
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		r.got = append(r.got, p)
	}))
	t.Cleanup(srv.Close)
	return r, srv.URL + "/sftpgw"
}

func (r *hookReceiver) find(alert string) []alerts.Payload {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []alerts.Payload
	for _, p := range r.got {
		if p.Alert == alert {
			out = append(out, p)
		}
	}
	return out
}

// TestAlertWebhooks: real sessions raise every kind of alert, each one
// signed with the webhook's secret.
func TestAlertWebhooks(t *testing.T) {
	needTool(t, "sftp")
	recv, url := newHookReceiver(t, "webhook-secret")
	sender, err := alerts.New(alerts.Options{Source: "gw-test", Webhooks: []alerts.Webhook{
		{Name: "ops", URL: url, Events: []string{"*"}, Secret: []byte("webhook-secret"), Backoff: 50 * time.Millisecond}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sender.Close(context.Background()) })
	g := testgw.Start(t, testgw.Options{Audit: sender,
		Lockout: authn.Lockout{MaxIPFailures: 2, MaxPairFailures: 2, MaxUserFailures: 2, Window: time.Minute, MaxMFAFailures: 1}})
	app := g.AddUser("applicant", false)
	partner := g.AddUser("partner", false)
	dir := t.TempDir()
	src, _ := randomFile(t, dir, "cv.pdf", 100<<10)

	// Retention removes a stale object (S3 times have one-second resolution).
	writeObject(t, g.Stores["files"], "user/stale.bin", []byte("stale"))
	time.Sleep(1100 * time.Millisecond)
	sw, _ := retention.New(retention.Options{Store: g.Stores["files"], StoreName: "files", Retention: time.Second,
		Audit: audit.Multi(g.Events, sender)})
	if _, err := sw.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}

	if out, err := g.SFTP(app, fmt.Sprintf("put %s cv.pdf\n-get cv.pdf %s\n", src, filepath.Join(dir, "back"))); err != nil {
		t.Fatalf("applicant: %v\n%s", err, out)
	}
	if out, err := g.SFTP(partner, fmt.Sprintf("put %s report.csv\nget report.csv %s\n", src, filepath.Join(dir, "r"))); err != nil {
		t.Fatalf("partner: %v\n%s", err, out)
	}
	// Two logins with a key that is not the partner's: a burst for the
	// user, and a ban of the source, in the same failure.
	hk, _ := knownhosts.New(g.KnownHosts)
	_, wrong, _ := ed25519.GenerateKey(rand.Reader)
	ws, _ := ssh.NewSignerFromKey(wrong)
	for range 2 {
		if c, err := ssh.Dial("tcp", g.Addr, &ssh.ClientConfig{User: partner.Name, Auth: []ssh.AuthMethod{ssh.PublicKeys(ws)},
			HostKeyCallback: hk, Timeout: 10 * time.Second}); err == nil {
			c.Close()
			t.Fatal("wrong key accepted")
		}
	}

	// One wrong code locks the HR account's second factor (from another
	// address, so that it is no part of the ban above).
	hr := g.AddUser("hr", true)
	if out, err := g.SFTPWithCode(hr, wrongCode(t, hr.Secret), "pwd\n", "-o", "NumberOfPasswordPrompts=1",
		"-o", "BindAddress=127.0.0.2"); err == nil {
		t.Fatalf("wrong code accepted:\n%s", out)
	}

	waitFor(t, 10*time.Second, "every kind of alert", func() bool {
		for _, a := range alerts.Names {
			// Raised at start and by a stuck trail, not by sessions:
			// TestServeEmailsSecurityAlerts and TestWatchTrailRaisesAuditStuck.
			if a == alerts.PostureFailure || a == alerts.AuditStuck {
				continue
			}
			if len(recv.find(a)) == 0 {
				return false
			}
		}
		return true
	})
	up := recv.find(alerts.UploadComplete)
	var users []string
	for _, p := range up {
		users = append(users, p.Event.User+":"+p.Event.Path)
		if p.Source != "gw-test" || p.Event.Bytes != 100<<10 {
			t.Errorf("upload alert %+v", p)
		}
	}
	slices.Sort(users)
	want := []string{app.Name + ":/cv.pdf", partner.Name + ":/report.csv"}
	slices.Sort(want)
	if !slices.Equal(users, want) {
		t.Errorf("upload alerts for %v, want %v", users, want)
	}
	if d := recv.find(alerts.Download); len(d) != 1 || d[0].Event.User != partner.Name {
		t.Errorf("download alerts %+v", d)
	}
	if d := recv.find(alerts.Denied); len(d) != 1 || d[0].Event.User != app.Name || d[0].Event.Op != "download" {
		t.Errorf("denied alerts %+v", d)
	}
	if d := recv.find(alerts.RetentionDelete); len(d) != 1 || d[0].Event.Path != "user/stale.bin" {
		t.Errorf("retention alerts %+v", d)
	}
	if d := recv.find(alerts.Lockout); len(d) != 1 || d[0].Event.User != partner.Name {
		t.Errorf("lockout alerts %+v", d)
	}
	if d := recv.find(alerts.MFALock); len(d) != 1 || d[0].Event.User != hr.Name {
		t.Errorf("mfa_lock alerts %+v", d)
	}
	if d := recv.find(alerts.LoginFailureBurst); len(d) != 1 {
		t.Errorf("burst alerts %+v", d)
	}
	recv.mu.Lock()
	bad := recv.bad
	recv.mu.Unlock()
	if bad != 0 {
		t.Errorf("%d deliveries with a bad signature", bad)
	}
}

// TestAlertReceiverHangingDoesNotSlowTransfers: a receiver that never
// answers costs an upload nothing; the alerts are dropped, counted.
// timedRecorder measures the time spent in another recorder's Record.
type timedRecorder struct {
	r        audit.Recorder
	total, n atomic.Int64
}

func (t *timedRecorder) Record(ev audit.Event) {
	start := time.Now()
	t.r.Record(ev)
	t.total.Add(int64(time.Since(start)))
	t.n.Add(1)
}

func TestAlertReceiverHangingDoesNotSlowTransfers(t *testing.T) {
	needTool(t, "sftp")
	release := make(chan struct{})
	var hits atomic.Int64
	hang := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		hits.Add(1)
		<-release
	}))
	t.Cleanup(hang.Close)
	t.Cleanup(func() { close(release) })
	sender, _ := alerts.New(alerts.Options{Webhooks: []alerts.Webhook{
		{Name: "stuck", URL: hang.URL, Events: []string{"*"}, Secret: []byte("k"), Queue: 4, Timeout: time.Hour}}})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		sender.Close(ctx)
	})
	// Jam the worker and fill the queue before the transfer starts.
	for range 50 {
		sender.Record(audit.Event{Kind: "file", Op: "upload", Result: "ok"})
	}
	waitFor(t, 5*time.Second, "the receiver to hang", func() bool { return hits.Load() == 1 })

	dir := t.TempDir()
	src, sum := randomFile(t, dir, "big.bin", 20<<20)
	upload := func(g *testgw.Gateway) time.Duration {
		u := g.AddUser("partner", false)
		start := time.Now()
		if out, err := g.SFTP(u, fmt.Sprintf("put %s big.bin\nls -l\nput %s big2.bin\n", src, src)); err != nil {
			t.Fatalf("sftp: %v\n%s", err, out)
		}
		took := time.Since(start)
		c, bucket := s3Client(t, g, "files")
		if got := objectSHA(t, c, bucket, "partner/"+u.Name+"/big.bin"); got != sum {
			t.Errorf("uploaded object differs")
		}
		return took
	}
	// The receiver hangs until the test ends, so an upload that finishes
	// shows the gateway never waits for it. What a transfer can lose to
	// alerts at all is the time inside Record, measured here instead of
	// comparing wall-clock transfer times (which a busy machine skews).
	tr := &timedRecorder{r: sender}
	jammed := upload(testgw.Start(t, testgw.Options{Audit: tr}))
	st := sender.Stats("stuck")
	inRecord := time.Duration(tr.total.Load())
	t.Logf("2 x 20 MiB upload with a hanging receiver: %s, of which %s in %d alert Record calls (dropped %d alerts, %d queued)",
		jammed, inRecord, tr.n.Load(), st.Dropped, st.Queued)
	// A Record is a non-blocking channel send (microseconds); a second
	// over all of them leaves room for any scheduler.
	if inRecord > time.Second {
		t.Errorf("the gateway spent %s handing %d events to a jammed alert sender", inRecord, tr.n.Load())
	}
	// 50 + 2 uploads recorded: one in flight, four queued, the rest dropped.
	if st.Dropped != 47 || st.Queued != 4 || hits.Load() != 1 {
		t.Errorf("stats %+v, receiver hit %d times", st, hits.Load())
	}
}
