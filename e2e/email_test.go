package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sftpgw/sftpgw/alerts"
	"github.com/sftpgw/sftpgw/authn"
	"github.com/sftpgw/sftpgw/internal/smtptest"
	"github.com/sftpgw/sftpgw/internal/testenv"
	"github.com/sftpgw/sftpgw/internal/testgw"
	"github.com/sftpgw/sftpgw/vfs/s3store"
)

// manualClock fires the digest's timers only when the test says.
type manualClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []manualTimer
}

type manualTimer struct {
	at time.Time
	c  chan time.Time
}

func (c *manualClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *manualClock) NewTimer(d time.Duration) (<-chan time.Time, func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.timers = append(c.timers, manualTimer{c.now.Add(d), ch})
	return ch, func() bool { return true }
}

func (c *manualClock) pending() int { c.mu.Lock(); defer c.mu.Unlock(); return len(c.timers) }

func (c *manualClock) advance(to time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = to
	keep := c.timers[:0]
	for _, t := range c.timers {
		if t.at.After(to) {
			keep = append(keep, t)
		} else {
			t.c <- to
		}
	}
	c.timers = keep
}

// TestEmailUploadAlertAndDigest: a real sftp upload through the gateway
// produces an email on a real SMTP server (STARTTLS, AUTH); the daily
// digest, at a fake 08:00, lists the file with its retention deadline.
func TestEmailUploadAlertAndDigest(t *testing.T) {
	needTool(t, "sftp")
	srv := smtptest.Start(t, smtptest.StartTLS, "gateway", "smtp-secret-pw")
	// The clock starts at the real time: the upload's audit time is real.
	start := time.Now().UTC()
	clock := &manualClock{now: start}
	sender, err := alerts.New(alerts.Options{Source: "gw-e2e", Clock: clock, Emails: []alerts.Email{{
		Name: "hr", Host: srv.Host, Port: srv.Port, RootCAs: srv.RootCAs, Username: "gateway", Password: []byte("smtp-secret-pw"),
		From: "sftpgw@example.org", To: []string{"hr@example.org"}, Events: []string{alerts.UploadComplete},
		Digest: &alerts.DigestSchedule{DailyAt: "08:00", Retention: func(string) time.Duration { return 24 * time.Hour }},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sender.Close(context.Background()) })
	g := testgw.Start(t, testgw.Options{Audit: sender})
	app := g.AddUser("applicant", false)
	dir := t.TempDir()
	src, _ := randomFile(t, dir, "cv.pdf", 300<<10)
	if out, err := g.SFTP(app, fmt.Sprintf("put %s cv.pdf\n", src)); err != nil {
		t.Fatalf("sftp: %v\n%s", err, out)
	}
	done := time.Now()
	m := srv.Wait(t, 1, 20*time.Second)
	t.Logf("upload alert: sftp client finished -> SMTP server accepted the message: %s", time.Since(done).Round(time.Millisecond))
	if !m[0].TLS || !m[0].Auth || !strings.Contains(m[0].Data, "upload_complete "+app.Name+" /cv.pdf") {
		t.Fatalf("alert message %+v", m[0])
	}

	waitFor(t, 10*time.Second, "the digest timer", func() bool { return clock.pending() == 1 })
	next := time.Date(start.Year(), start.Month(), start.Day(), 8, 0, 0, 0, time.UTC)
	if !next.After(start) {
		next = next.AddDate(0, 0, 1)
	}
	clock.advance(next)
	m = srv.Wait(t, 2, 20*time.Second)
	d := strings.ReplaceAll(strings.ReplaceAll(m[1].Data, "=\r\n", ""), "\r\n", "\n")
	t.Logf("digest:\n%s", d)
	for _, want := range []string{"Applicant " + app.Name, "Received (1):", "/cv.pdf, 300.0 KiB (307200 bytes)",
		"Not collected yet (1):", "deleted by retention from "} {
		if !strings.Contains(d, want) {
			t.Errorf("digest lacks %q", want)
		}
	}
	if strings.Contains(d, "smtp-secret-pw") {
		t.Error("digest holds the SMTP password")
	}
}

// TestEmailServerHangingDoesNotSlowUploads: an SMTP server that accepts
// connections and never answers, and one that refuses them, cost a
// 2 x 20 MiB upload nothing measurable.
func TestEmailServerHangingDoesNotSlowUploads(t *testing.T) {
	needTool(t, "sftp")
	hang := smtptest.Start(t, smtptest.Hang, "", "")
	sender, err := alerts.New(alerts.Options{Emails: []alerts.Email{
		{Name: "hang", Host: hang.Host, Port: hang.Port, From: "a@example.org", To: []string{"b@example.org"},
			Events: []string{"*"}, Queue: 4, Timeout: time.Hour},
		{Name: "refused", Host: hang.Host, Port: 1, From: "a@example.org", To: []string{"b@example.org"},
			Events: []string{"*"}, Queue: 4, Backoff: 10 * time.Millisecond},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		sender.Close(ctx)
	})
	dir := t.TempDir()
	src, sum := randomFile(t, dir, "big.bin", 20<<20)
	upload := func(g *testgw.Gateway) time.Duration {
		u := g.AddUser("partner", false)
		start := time.Now()
		if out, err := g.SFTP(u, fmt.Sprintf("put %s big.bin\nput %s big2.bin\n", src, src)); err != nil {
			t.Fatalf("sftp: %v\n%s", err, out)
		}
		took := time.Since(start)
		c, bucket := s3Client(t, g, "files")
		if got := objectSHA(t, c, bucket, "partner/"+u.Name+"/big2.bin"); got != sum {
			t.Errorf("uploaded object differs")
		}
		return took
	}
	base := upload(testgw.Start(t, testgw.Options{}))
	tr := &timedRecorder{r: sender}
	jammed := upload(testgw.Start(t, testgw.Options{Audit: tr}))
	inRecord := time.Duration(tr.total.Load())
	t.Logf("2 x 20 MiB upload: %s without alerts, %s with a hanging and a refusing SMTP server, of which %s in %d alert Record calls",
		base.Round(time.Millisecond), jammed.Round(time.Millisecond), inRecord, tr.n.Load())
	// Wall-clock times vary on a busy machine; the time inside Record is
	// what alerts can add to a transfer at all.
	if inRecord > time.Second {
		t.Errorf("the gateway spent %s handing events to jammed email sinks", inRecord)
	}
	if st := sender.Stats("hang"); st.Queued > 4 {
		t.Errorf("queue grew beyond its bound: %+v", st)
	}
}

// TestServeEmailsSecurityAlerts starts the real binary with an email
// block (password from the environment, CA from a file): the bucket
// posture failures at start (MinIO lacks versioning and friends) and a
// retention delete arrive by email at once, and the password never
// reaches the gateway's log.
func TestServeEmailsSecurityAlerts(t *testing.T) {
	files := testenv.S3(t)
	bin := sftpgwBin(t)
	dir := t.TempDir()
	const pw = "serve-smtp-Pa55"
	srv := smtptest.Start(t, smtptest.StartTLS, "gw", pw)
	if err := os.WriteFile(filepath.Join(dir, "smtp-ca.pem"), srv.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := authn.SaveUsers(filepath.Join(dir, "users.hcl"), authn.NewUserSet()); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "sftpgw.hcl")
	src := fmt.Sprintf(`users_file = "users.hcl"
listen = "127.0.0.1:0"
host_keys = ["host_key"]
storage "files" {
  type = "s3"
  bucket = %q
  endpoint = %q
  path_style = true
  retention = "2s"
}
role "applicant" {
  storage = "files"
  home = "user/{name}/"
  permissions = ["upload"]
}
email "security" {
  host = "localhost"
  port = %d
  ca_file = "smtp-ca.pem"
  username = "gw"
  password_env = "SFTPGW_TEST_SMTP_PASSWORD"
  from = "sftpgw@example.org"
  to = ["security@example.org"]
  events = ["posture_failure", "retention_delete", "lockout", "mfa_lock", "audit_stuck"]
}
`, files.Bucket, files.Endpoint, srv.Port)
	if err := os.WriteFile(cfg, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	fst, _ := s3store.New(context.Background(), files)
	writeObject(t, fst, "user/anna/cv.pdf", []byte("collect me"))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "serve", "--config", cfg)
	cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+files.AccessKeyID, "AWS_SECRET_ACCESS_KEY="+files.SecretAccessKey,
		"AWS_REGION=us-east-1", "AWS_EC2_METADATA_DISABLED=true", "SFTPGW_TEST_SMTP_PASSWORD="+pw)
	cmd.Dir = dir
	logbuf := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logbuf, logbuf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("gateway log:\n%s", logbuf.String())
		}
	}()
	has := func(subject string) bool {
		for _, m := range srv.Messages() {
			if strings.Contains(m.Data, "Subject: [sftpgw] "+subject) && m.TLS && m.Auth {
				return true
			}
		}
		return false
	}
	waitFor(t, 30*time.Second, "posture and retention emails", func() bool {
		return has("posture_failure") && has("retention_delete")
	})
	out := logbuf.String()
	mustContain(t, out, "alert email", "bucket posture check failed")
	if strings.Contains(out, pw) {
		t.Error("the SMTP password reached the log")
	}
}
