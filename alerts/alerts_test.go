package alerts

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/config"
)

var (
	upload   = audit.Event{Kind: "file", Op: "upload", User: "anna", Path: "/cv.pdf", Bytes: 42, Result: "ok"}
	partial  = audit.Event{Kind: "file", Op: "download", Path: "/a", Result: "ok", Detail: "partial read"}
	download = audit.Event{Kind: "file", Op: "download", Path: "/a", Result: "ok"}
	denied   = audit.Event{Kind: "file", Op: "download", Path: "/a", Result: "denied", ErrClass: "permission"}
	ban      = audit.Event{Kind: "auth", Result: "failure", ErrClass: "bad_key", Detail: "public key offered is not one of the user's keys; source 203.0.113.9 banned for 1m0s"}
	pairBan  = audit.Event{Kind: "auth", Result: "failure", ErrClass: "bad_totp", Detail: "wrong verification code; user banned from this source for 2m0s"}
	burst    = audit.Event{Kind: "auth", Result: "failure", ErrClass: "bad_key", Detail: "x; login failure burst: 10 failures for the user within 10m0s"}
	both     = audit.Event{Kind: "auth", Result: "failure", Detail: "x; source 203.0.113.9 banned for 1m0s; login failure burst: 10 failures for the user within 10m0s"}
	whileBan = audit.Event{Kind: "auth", Result: "failure", ErrClass: "banned", Detail: "login refused while banned, until 2026-11-23T12:00:00Z"}
	mfaLock  = audit.Event{Kind: "auth", Result: "failure", ErrClass: "bad_totp", Detail: "wrong verification code; second factor locked for 15m0s after 10 failed codes within 15m0s"}
	mfaHeld  = audit.Event{Kind: "auth", Result: "failure", ErrClass: "mfa_locked", Detail: "verification code not checked: the account's second factor is locked until 2026-11-23T12:00:00Z"}
	sweep    = audit.Event{Kind: "retention", Op: "retention_delete", Path: "user/a/x", Result: "ok"}
)

func TestClassify(t *testing.T) {
	cases := []struct {
		e    audit.Event
		want []string
	}{
		{upload, []string{UploadComplete}},
		{audit.Event{Kind: "file", Op: "overwrite", Result: "ok"}, []string{UploadComplete}},
		{audit.Event{Kind: "file", Op: "upload", Result: "error", ErrClass: "aborted"}, nil},
		{download, []string{Download}},
		{partial, nil},
		{denied, []string{Denied}},
		{audit.Event{Kind: "file", Op: "symlink", Result: "denied"}, []string{Denied}},
		{audit.Event{Kind: "file", Op: "ssh_request", Path: "shell", Result: "denied"}, []string{Denied}},
		{audit.Event{Kind: "connect", Result: "denied", ErrClass: "banned"}, nil},
		{ban, []string{Lockout}},
		{pairBan, []string{Lockout}},
		{burst, []string{LoginFailureBurst}},
		{both, []string{LoginFailureBurst, Lockout}},
		{whileBan, nil},
		{mfaLock, []string{MFALock}},
		{mfaHeld, nil},
		{audit.Event{Kind: "auth", Result: "failure", ErrClass: "bad_key"}, nil},
		{audit.Event{Kind: "auth", Result: "ok"}, nil},
		{sweep, []string{RetentionDelete}},
		{audit.Event{Kind: "retention", Op: "retention_delete", Result: "error"}, nil},
		{audit.Event{Kind: "file", Op: "list", Result: "ok"}, nil},
		{audit.Event{Kind: "admin", Op: "posture_check", Result: "failure", Detail: "storage files: versioning: off"}, []string{PostureFailure}},
		{audit.Event{Kind: "admin", Op: "audit_stuck", Result: "failure"}, []string{AuditStuck}},
		{audit.Event{Kind: "admin", Op: "audit_stuck", Result: "ok"}, nil},
		{audit.Event{Kind: "admin", Op: "start", Result: "ok"}, nil},
	}
	for _, c := range cases {
		if got := Classify(c.e); !slices.Equal(got, c.want) {
			t.Errorf("%+v: got %v, want %v", c.e, got, c.want)
		}
	}
	if !slices.Equal(Names, config.AlertEvents) {
		t.Errorf("alerts.Names %v and config.AlertEvents %v differ", Names, config.AlertEvents)
	}
}

// receiver is a webhook endpoint that checks signatures.
type receiver struct {
	t      *testing.T
	secret []byte
	mu     sync.Mutex
	got    []Payload
	bad    int
	status func(n int) int // answer for the n-th request (1-based)
	n      atomic.Int64
	srv    *httptest.Server
}

func newReceiver(t *testing.T, secret string) *receiver {
	r := &receiver{t: t, secret: []byte(secret), status: func(int) int { return 204 }}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		n := int(r.n.Add(1))
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/json" ||
			!Verify(r.secret, body, req.Header.Get("X-Sftpgw-Signature")) {
			r.bad++
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		st := r.status(n)
		if st/100 == 2 {
			var p Payload
			if err := json.Unmarshal(body, &p); err != nil {
				r.bad++
			}
			if req.Header.Get("X-Sftpgw-Alert") != p.Alert {
				r.bad++
			}
			r.got = append(r.got, p)
		}
		w.WriteHeader(st)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) payloads() []Payload {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Payload(nil), r.got...)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSignedDeliveryAndFilter(t *testing.T) {
	all := newReceiver(t, "s3cr3t")
	sec := newReceiver(t, "other")
	s, err := New(Options{Source: "gw1", Webhooks: []Webhook{
		{Name: "all", URL: all.srv.URL + "/hook", Events: []string{"*"}, Secret: []byte("s3cr3t")},
		{Name: "sec", URL: sec.srv.URL, Events: []string{Lockout, Denied}, Secret: []byte("other")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	for _, e := range []audit.Event{upload, partial, download, denied, ban, burst, whileBan, sweep} {
		s.Record(e)
	}
	waitUntil(t, "6 alerts", func() bool { return len(all.payloads()) == 6 && s.Stats("all").Delivered == 6 })
	waitUntil(t, "2 alerts", func() bool { return len(sec.payloads()) == 2 })
	var names []string
	for _, p := range all.payloads() {
		names = append(names, p.Alert)
		if p.Source != "gw1" || p.ID == "" || p.Time == "" || p.Event.Time.IsZero() {
			t.Errorf("payload %+v", p)
		}
	}
	if want := []string{UploadComplete, Download, Denied, Lockout, LoginFailureBurst, RetentionDelete}; !slices.Equal(names, want) {
		t.Errorf("alerts %v, want %v (in order)", names, want)
	}
	if p := all.payloads()[0]; p.Event.User != "anna" || p.Event.Path != "/cv.pdf" || p.Event.Bytes != 42 {
		t.Errorf("upload payload carries %+v", p.Event)
	}
	if got := []string{sec.payloads()[0].Alert, sec.payloads()[1].Alert}; !slices.Equal(got, []string{Denied, Lockout}) {
		t.Errorf("filtered webhook got %v", got)
	}
	if all.bad+sec.bad != 0 {
		t.Errorf("%d requests with a bad signature or body", all.bad+sec.bad)
	}
	if st := s.Stats("all"); st.Delivered != 6 || st.Failed != 0 || st.Dropped != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestSignatureDetectsTampering(t *testing.T) {
	body := []byte(`{"alert":"download"}`)
	sig := Sign([]byte("k"), body)
	if !strings.HasPrefix(sig, "sha256=") || len(sig) != len("sha256=")+64 {
		t.Fatalf("signature %q", sig)
	}
	if !Verify([]byte("k"), body, sig) || Verify([]byte("k2"), body, sig) || Verify([]byte("k"), []byte(`{"alert":"upload"}`), sig) {
		t.Error("Verify accepts what it should not (or refuses the right one)")
	}
}

func TestRetriesWithBackoff(t *testing.T) {
	r := newReceiver(t, "k")
	r.status = func(n int) int {
		if n <= 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	}
	logs := &syncWriter{w: &bytes.Buffer{}}
	log := hclog.New(&hclog.LoggerOptions{Output: logs})
	s, _ := New(Options{Log: log, Webhooks: []Webhook{{Name: "h", URL: r.srv.URL, Events: []string{"*"}, Secret: []byte("k"),
		Backoff: 40 * time.Millisecond}}})
	defer s.Close(context.Background())
	start := time.Now()
	s.Record(upload)
	// The receiver sees the body before the sender counts the delivery.
	waitUntil(t, "delivery after retries", func() bool { return len(r.payloads()) == 1 && s.Stats("h").Delivered == 1 })
	// Two retries: 40 ms, then 80 ms.
	if took := time.Since(start); took < 120*time.Millisecond {
		t.Errorf("delivered after %s: backoff not applied", took)
	}
	if n := r.n.Load(); n != 3 {
		t.Errorf("%d attempts, want 3", n)
	}
	if st := s.Stats("h"); st.Delivered != 1 || st.Failed != 0 {
		t.Errorf("stats %+v", st)
	}
	if !strings.Contains(logs.String(), "retrying") {
		t.Errorf("retries not logged:\n%s", logs.String())
	}
}

func TestPermanentFailureAndAttemptLimit(t *testing.T) {
	bad := newReceiver(t, "k")
	bad.status = func(int) int { return http.StatusBadRequest }
	down := newReceiver(t, "k")
	down.status = func(int) int { return http.StatusInternalServerError }
	s, _ := New(Options{Webhooks: []Webhook{
		{Name: "bad", URL: bad.srv.URL, Events: []string{"*"}, Secret: []byte("k"), Backoff: time.Millisecond},
		{Name: "down", URL: down.srv.URL, Events: []string{"*"}, Secret: []byte("k"), Backoff: time.Millisecond, Attempts: 3},
	}})
	defer s.Close(context.Background())
	s.Record(upload)
	waitUntil(t, "failures", func() bool { return s.Stats("bad").Failed == 1 && s.Stats("down").Failed == 1 })
	if bad.n.Load() != 1 {
		t.Errorf("a 400 was retried: %d attempts", bad.n.Load())
	}
	if down.n.Load() != 3 {
		t.Errorf("500s: %d attempts, want 3", down.n.Load())
	}
}

// A receiver that never answers must not slow Record: the queue drops the
// oldest alerts and counts them.
func TestHangingReceiverNeverBlocks(t *testing.T) {
	release := make(chan struct{})
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		<-release
	}))
	defer srv.Close()
	defer close(release)
	logs := &syncWriter{w: &bytes.Buffer{}}
	log := hclog.New(&hclog.LoggerOptions{Output: logs})
	s, _ := New(Options{Log: log, Webhooks: []Webhook{{Name: "h", URL: srv.URL, Events: []string{"*"}, Secret: []byte("k"),
		Queue: 10, Timeout: time.Hour}}})
	s.Record(upload)
	waitUntil(t, "first request", func() bool { return hits.Load() == 1 })
	start := time.Now()
	for range 5000 {
		s.Record(upload)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("5000 Record calls took %s with a hanging receiver", took)
	}
	st := s.Stats("h")
	// One alert is in flight, ten wait; the rest were dropped.
	if st.Queued != 10 || st.Dropped != 5000-10 || hits.Load() != 1 {
		t.Errorf("stats %+v", st)
	}
	if !strings.Contains(logs.String(), "dropped the oldest alert") {
		t.Errorf("drops not logged:\n%s", logs.String())
	}
	// Shutdown gives up on the hanging receiver when its context ends.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start = time.Now()
	if err := s.Close(ctx); err == nil {
		t.Error("Close reported everything delivered")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Close took %s", took)
	}
}

func TestSecretsAndTokensNeverLogged(t *testing.T) {
	r := newReceiver(t, "hunter2-secret")
	r.status = func(int) int { return http.StatusInternalServerError }
	logs := &syncWriter{w: &bytes.Buffer{}}
	log := hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Trace})
	s, _ := New(Options{Log: log, Webhooks: []Webhook{
		{Name: "h", URL: r.srv.URL + "/services/T0KEN-IN-PATH?sig=Q-TOKEN", Events: []string{"*"}, Secret: []byte("hunter2-secret"),
			Backoff: time.Millisecond, Attempts: 2},
		// An unreachable receiver: the transport error must not repeat the URL.
		{Name: "gone", URL: "http://127.0.0.1:1/hooks/T0KEN-IN-PATH", Events: []string{"*"}, Secret: []byte("hunter2-secret"),
			Backoff: time.Millisecond, Attempts: 2},
	}})
	s.Record(upload)
	waitUntil(t, "failures", func() bool { return s.Stats("h").Failed == 1 && s.Stats("gone").Failed == 1 })
	s.Close(context.Background())
	out := logs.String()
	for _, secret := range []string{"hunter2", "T0KEN", "Q-TOKEN"} {
		if strings.Contains(out, secret) {
			t.Errorf("log contains %q:\n%s", secret, out)
		}
	}
	if !strings.Contains(out, "alert delivery failed") || !strings.Contains(out, "127.0.0.1") {
		t.Errorf("failure not logged with its target:\n%s", out)
	}
}

func TestLoadSecretAndFromConfig(t *testing.T) {
	t.Setenv("SFTPGW_TEST_HOOK", "from-env")
	if b, err := LoadSecret("SFTPGW_TEST_HOOK", ""); err != nil || string(b) != "from-env" {
		t.Errorf("env: %q %v", b, err)
	}
	if _, err := LoadSecret("SFTPGW_TEST_UNSET_VAR", ""); err == nil || !strings.Contains(err.Error(), "SFTPGW_TEST_UNSET_VAR") {
		t.Errorf("unset env: %v", err)
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "secret")
	os.WriteFile(p, []byte("from-file\n"), 0o644)
	if _, err := LoadSecret("", p); err == nil || strings.Contains(err.Error(), "from-file") {
		t.Errorf("world-readable secret file: %v", err)
	}
	os.Chmod(p, 0o600)
	if b, err := LoadSecret("", p); err != nil || string(b) != "from-file" {
		t.Errorf("file: %q %v", b, err)
	}
	s, err := FromConfig(Config{Webhooks: []config.Alert{{Name: "a", URL: "https://example.com/h", Events: []string{"lockout"}, SecretFile: p}}, Source: "gw"})
	if err != nil || s == nil {
		t.Fatalf("FromConfig: %v", err)
	}
	s.Close(context.Background())
	if _, err := FromConfig(Config{Webhooks: []config.Alert{{Name: "a", URL: "https://example.com/h", Events: []string{"lockout"}, SecretEnv: "SFTPGW_TEST_UNSET_VAR"}}, Source: "gw"}); err == nil {
		t.Error("missing secret accepted")
	}
	if s, err := FromConfig(Config{Source: "gw"}); s != nil || err != nil {
		t.Errorf("no alerts: %v %v", s, err)
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}
