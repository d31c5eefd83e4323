package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sftpgw/sftpgw/alerts"
	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/audit/trail"
	"github.com/sftpgw/sftpgw/internal/smtptest"
)

// `sftpgw alert test` sends through a real SMTP server (STARTTLS, AUTH,
// the password from a 0600 file), reports a sink that fails, and never
// prints the password.
func TestAlertTestCommand(t *testing.T) {
	const pw = "alert-cmd-Pa55word"
	srv := smtptest.Start(t, smtptest.StartTLS, "gw", pw)
	dir := t.TempDir()
	// The test server's certificate, as an operator would give ca_file.
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, srv.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "smtp.pw"), []byte(pw+"\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "wrong.pw"), []byte("not-"+pw+"\n"), 0o600)
	cfg := fmt.Sprintf(`users_file = "users.hcl"
storage "files" {
  type = "local"
  root = %q
}
role "applicant" {
  storage = "files"
  home = "applicant/{name}/"
  permissions = ["list", "upload"]
}
email "hr" {
  host = "localhost"
  port = %d
  ca_file = "ca.pem"
  username = "gw"
  password_file = "smtp.pw"
  from = "sftpgw@example.org"
  to = ["hr@example.org"]
  digest {}
}
email "wrong" {
  host = "localhost"
  port = %d
  ca_file = "ca.pem"
  username = "gw"
  password_file = "wrong.pw"
  from = "sftpgw@example.org"
  to = ["hr@example.org"]
  events = ["*"]
}
`, filepath.Join(dir, "data"), srv.Port, srv.Port)
	p := filepath.Join(dir, "sftpgw.hcl")
	os.WriteFile(p, []byte(cfg), 0o600)
	var out bytes.Buffer
	err := runAlert([]string{"test", "--config", p, "--timeout", "10s"}, &out)
	t.Logf("sftpgw alert test:\n%s", out.String())
	if err == nil || !strings.Contains(err.Error(), "1 alert sink(s) failed") {
		t.Errorf("err %v", err)
	}
	if !strings.Contains(out.String(), `ok   email "hr"`) || !strings.Contains(out.String(), `FAIL email "wrong"`) ||
		!strings.Contains(out.String(), "535") {
		t.Errorf("output:\n%s", out.String())
	}
	if strings.Contains(out.String(), pw) {
		t.Error("output holds the password")
	}
	m := srv.Wait(t, 1, 0)
	if len(m) != 1 || !m[0].TLS || !m[0].Auth || !strings.Contains(m[0].Data, "alert_test") {
		t.Errorf("messages %+v", m)
	}
}

// audit_stuck is raised once when the trail has been down for the
// threshold (not at the first failed upload), and the recovery noted.
func TestWatchTrailRaisesAuditStuck(t *testing.T) {
	var mu sync.Mutex
	down := false
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var events []audit.Event
	rec := audit.RecorderFunc(func(e audit.Event) { mu.Lock(); events = append(events, e); mu.Unlock() })
	tick := make(chan time.Time)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchTrail(ctx, func() trail.Stats {
			mu.Lock()
			defer mu.Unlock()
			return trail.Stats{StoreDown: down, SpoolBytes: 4096}
		},
			10*time.Minute, tick, func() time.Time { mu.Lock(); defer mu.Unlock(); return now }, rec)
	}()
	step := func(d time.Duration, isDown bool) {
		mu.Lock()
		now, down = now.Add(d), isDown
		t := now
		mu.Unlock()
		tick <- t
		// The second tick is taken only once the first has been handled, so
		// the next step cannot change the clock or the store under it; a
		// repeated tick with nothing changed records nothing.
		tick <- t
	}
	step(0, true)             // down since 00:00
	step(9*time.Minute, true) // 9 min: not yet
	step(time.Minute, true)   // 10 min: alert
	step(5*time.Minute, true) // still down: no repeat
	step(time.Minute, false)  // back
	step(time.Minute, false)
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(events) != 2 || events[0].Op != "audit_stuck" || events[0].Result != "failure" ||
		!strings.Contains(events[0].Detail, "for 10m0s; 4096 bytes") || events[1].Result != "ok" {
		t.Fatalf("events %+v", events)
	}
	if got := alerts.Classify(events[0]); len(got) != 1 || got[0] != alerts.AuditStuck {
		t.Errorf("classified as %v", got)
	}
}
