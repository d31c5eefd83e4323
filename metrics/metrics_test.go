package metrics

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/crypto/ssh"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/audit/trail"
	"github.com/sftpgw/sftpgw/authn"
	"github.com/sftpgw/sftpgw/vfs"
	"github.com/sftpgw/sftpgw/vfs/localstore"
)

func TestRecorderCounts(t *testing.T) {
	m := New(Options{Version: "v1.2.3", NoRuntime: true})
	evs := []audit.Event{
		{Kind: "connect", Result: "denied", ErrClass: "banned"},
		{Kind: "connect", Result: "denied", ErrClass: "overload"},
		{Kind: "auth", Method: "publickey", Result: "ok", Role: "partner"},
		{Kind: "auth", Method: "publickey,keyboard-interactive", Result: "ok", Role: "hr"},
		{Kind: "auth", Method: "publickey", Result: "failure", ErrClass: "bad_key"},
		{Kind: "auth", Method: "keyboard-interactive", Result: "failure", ErrClass: "bad_totp",
			Detail: "wrong verification code; source 192.0.2.7 banned for 1m0s; user banned from this source for 1m0s"},
		{Kind: "auth", Method: "keyboard-interactive", Result: "failure", ErrClass: "bad_totp",
			Detail: "wrong verification code; " + authn.MFALockDetail + "15m0s after 10 failed codes within 15m0s"},
		{Kind: "session_start", Role: "partner", Result: "ok"},
		{Kind: "session_start", Role: "partner", Result: "ok"},
		{Kind: "session_end", Role: "partner", Result: "ok"},
		{Kind: "file", Role: "partner", Op: "upload", Result: "ok", Bytes: 1000, DurationMS: 1500},
		{Kind: "file", Role: "partner", Op: "overwrite", Result: "error", ErrClass: "aborted", Bytes: 500, DurationMS: 20},
		{Kind: "file", Role: "partner", Op: "download", Result: "ok", Bytes: 300, DurationMS: 5},
		{Kind: "file", Role: "applicant", Op: "download", Result: "denied", ErrClass: "permission"},
		{Kind: "file", Role: "partner", Op: "delete", Result: "ok", Bytes: 99999}, // object size, not traffic
		{Kind: "admin", Op: "reload", Result: "error"},
	}
	for _, e := range evs {
		m.Record(e)
	}
	check := func(name string, got, want float64) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	check("rejected banned", testutil.ToFloat64(m.connRejected.WithLabelValues("banned")), 1)
	check("rejected overload", testutil.ToFloat64(m.connRejected.WithLabelValues("overload")), 1)
	check("logins publickey ok", testutil.ToFloat64(m.logins.WithLabelValues("publickey", "ok")), 1)
	check("logins totp ok", testutil.ToFloat64(m.logins.WithLabelValues("publickey+totp", "ok")), 1)
	check("logins publickey failure", testutil.ToFloat64(m.logins.WithLabelValues("publickey", "failure")), 1)
	check("logins ki failure", testutil.ToFloat64(m.logins.WithLabelValues("keyboard-interactive", "failure")), 2)
	check("failures bad_totp", testutil.ToFloat64(m.loginFailures.WithLabelValues("bad_totp")), 2)
	check("bans source", testutil.ToFloat64(m.bans.WithLabelValues("source")), 1)
	check("bans user", testutil.ToFloat64(m.bans.WithLabelValues("user")), 1)
	check("bans mfa", testutil.ToFloat64(m.bans.WithLabelValues("mfa")), 1)
	check("sessions active", testutil.ToFloat64(m.sessionsActive.WithLabelValues("partner")), 1)
	check("sessions total", testutil.ToFloat64(m.sessionsTotal.WithLabelValues("partner")), 2)
	check("upload bytes", testutil.ToFloat64(m.bytes.WithLabelValues("partner", "upload")), 1500)
	check("download bytes", testutil.ToFloat64(m.bytes.WithLabelValues("partner", "download")), 300)
	check("denied downloads", testutil.ToFloat64(m.ops.WithLabelValues("applicant", "download", "denied")), 1)
	check("deletes", testutil.ToFloat64(m.ops.WithLabelValues("partner", "delete", "ok")), 1)
	check("reload errors", testutil.ToFloat64(m.reloads.WithLabelValues("error")), 1)
	// Only the completed upload is in the duration histogram, at 1.5 s.
	out := scrape(t, m)
	for _, want := range []string{
		`sftpgw_transfer_duration_seconds_count{direction="upload",role="partner"} 1`,
		`sftpgw_transfer_duration_seconds_sum{direction="upload",role="partner"} 1.5`,
		`sftpgw_transfer_duration_seconds_bucket{direction="upload",role="partner",le="0.64"} 0`,
		`sftpgw_transfer_duration_seconds_bucket{direction="upload",role="partner",le="2.56"} 1`,
		`sftpgw_build_info{version="v1.2.3"} 1`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("exposition lacks %q", want)
		}
	}
	if strings.Contains(out, `direction="delete"`) || strings.Contains(out, "99999") {
		t.Error("a delete was counted as traffic")
	}
}

// TestLabelsBounded: a client picks the names of refused auth methods and
// the text of paths; none of it may become a label value.
func TestLabelsBounded(t *testing.T) {
	m := New(Options{NoRuntime: true})
	for i := range 50 {
		m.Record(audit.Event{Kind: "auth", Method: "x-invented-" + strings.Repeat("a", i), Result: "failure", ErrClass: "method_not_allowed"})
		m.Record(audit.Event{Kind: "file", Role: "partner", Op: "ssh_request", Path: "exec:" + strings.Repeat("b", i), Result: "denied"})
	}
	m.Record(audit.Event{Kind: "file", Role: "evil role\n{x=\"y\"}", Op: "upload", Result: "ok"})
	if n := testutil.CollectAndCount(m.logins); n != 1 {
		t.Errorf("%d login series from invented methods, want 1 (other)", n)
	}
	if got := testutil.ToFloat64(m.logins.WithLabelValues("other", "failure")); got != 50 {
		t.Errorf("other failures = %v", got)
	}
	if n := testutil.CollectAndCount(m.ops); n != 2 {
		t.Errorf("%d operation series, want 2", n)
	}
	if got := testutil.ToFloat64(m.ops.WithLabelValues("other", "upload", "ok")); got != 1 {
		t.Errorf("odd role name not folded into other: %v", got)
	}
}

// TestOperationLabelsBounded: a client names the extensions it asks for,
// and each refused one is audited as "extension:<name>". 20,000 invented
// names made 20,000 sftpgw_operations_total series (2 MiB of /metrics);
// the op label now comes from a fixed set.
func TestOperationLabelsBounded(t *testing.T) {
	m := New(Options{NoRuntime: true})
	for i := range 20000 {
		m.Record(audit.Event{Kind: "file", Role: "applicant", Op: fmt.Sprintf("extension:x-%d.evil.example", i), Result: "denied"})
		m.Record(audit.Event{Kind: "file", Role: "applicant", Op: fmt.Sprintf("op-%d", i), Result: "denied"})
	}
	m.Record(audit.Event{Kind: "file", Role: "applicant", Op: "extension:copy-data", Result: "denied"})
	m.Record(audit.Event{Kind: "file", Role: "applicant", Op: "upload", Result: "ok"})
	if n := testutil.CollectAndCount(m.ops); n != 3 {
		t.Errorf("%d operation series after 40,000 invented names, want 3 (other, extension:copy-data, upload)", n)
	}
	if got := testutil.ToFloat64(m.ops.WithLabelValues("applicant", "other", "denied")); got != 40000 {
		t.Errorf("invented operations counted as other: %v, want 40000", got)
	}
	rec := httptest.NewRecorder()
	m.Handler(nil).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	t.Logf("/metrics is %d bytes", rec.Body.Len())
	if rec.Body.Len() > 64<<10 {
		t.Errorf("/metrics is %d KiB after invented names", rec.Body.Len()>>10)
	}
}

// Every operation name vfs knows is its own label value.
func TestOperationLabelsKnown(t *testing.T) {
	for _, op := range vfs.PermAll.Names() {
		if opLabel(op) != op {
			t.Errorf("vfs operation %q counted as %q", op, opLabel(op))
		}
	}
}

// Connections that end on their own before logging in (timeout, client
// gone, protocol error) are counted apart from refused ones.
func TestUnauthenticatedConnections(t *testing.T) {
	m := New(Options{NoRuntime: true})
	m.Record(audit.Event{Kind: "connect", Result: "error", ErrClass: "handshake"})
	m.Record(audit.Event{Kind: "connect", Result: "error", ErrClass: "auth_incomplete"})
	m.Record(audit.Event{Kind: "connect", Result: "error", ErrClass: "auth_incomplete"})
	m.Record(audit.Event{Kind: "connect", Result: "denied", ErrClass: "banned"})
	if got := testutil.ToFloat64(m.connUnauth.WithLabelValues("auth_incomplete")); got != 2 {
		t.Errorf("auth_incomplete = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.connUnauth.WithLabelValues("handshake")); got != 1 {
		t.Errorf("handshake = %v, want 1", got)
	}
	// banned and overload exist from the start; nothing else was added.
	if n := testutil.CollectAndCount(m.connRejected); n != 2 {
		t.Errorf("%d rejected series, want 2 (banned, overload)", n)
	}
	if got := testutil.ToFloat64(m.connRejected.WithLabelValues("banned")); got != 1 {
		t.Errorf("banned = %v, want 1", got)
	}
}

// TestBansFromAuthn drives the real authenticator into a ban over real SSH
// handshakes, so a change of authn's wording breaks this test rather than
// silently zeroing sftpgw_bans_total.
func TestBansFromAuthn(t *testing.T) {
	m := New(Options{NoRuntime: true})
	dir := t.TempDir()
	users := filepath.Join(dir, "users.hcl")
	if err := authn.SaveUsers(users, authn.NewUserSet()); err != nil {
		t.Fatal(err)
	}
	db, err := authn.NewUserDB(users, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := authn.New(authn.Options{Users: db, Audit: m,
		Lockout: authn.Lockout{MaxIPFailures: 2, MaxPairFailures: 2, Window: time.Minute, BaseBan: time.Minute, MaxBan: time.Minute}})
	_, hk, _ := ed25519.GenerateKey(rand.Reader)
	hs, _ := ssh.NewSignerFromKey(hk)
	sc := &ssh.ServerConfig{}
	sc.AddHostKey(hs)
	a.Configure(sc)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				_, _, _, _ = ssh.NewServerConn(c, sc)
			}()
		}
	}()
	_, ck, _ := ed25519.GenerateKey(rand.Reader)
	cs, _ := ssh.NewSignerFromKey(ck)
	for range 3 {
		c, err := ssh.Dial("tcp", ln.Addr().String(), &ssh.ClientConfig{User: "nobody",
			Auth: []ssh.AuthMethod{ssh.PublicKeys(cs)}, HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second})
		if err == nil {
			c.Close()
			t.Fatal("unknown user logged in")
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	// The third connection is refused by the ban (authn enforces it at
	// authentication, so a real user sharing the address can still log in).
	for testutil.ToFloat64(m.loginFailures.WithLabelValues("banned")) < 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := testutil.ToFloat64(m.bans.WithLabelValues("source")); got != 1 {
		t.Errorf("sftpgw_bans_total{scope=source} = %v after the lockout banned 127.0.0.1, want 1", got)
	}
	if got := testutil.ToFloat64(m.loginFailures.WithLabelValues("unknown_user")); got < 2 {
		t.Errorf("unknown_user failures = %v, want >= 2", got)
	}
	if got := testutil.ToFloat64(m.loginFailures.WithLabelValues("banned")); got < 1 {
		t.Errorf("banned login failures = %v, want >= 1", got)
	}
}

// failStore fails every request with a store error, or with not-found.
type failStore struct {
	vfs.Store
	err error
}

func (f failStore) Stat(context.Context, string) (vfs.ObjectInfo, error) {
	return vfs.ObjectInfo{}, f.err
}
func (f failStore) List(context.Context, vfs.ListOptions) (vfs.Page, error) {
	return vfs.Page{}, f.err
}

func TestStoreDecorator(t *testing.T) {
	m := New(Options{NoRuntime: true})
	ls, err := localstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := m.WrapStore("files", ls)
	ctx := context.Background()
	up, err := s.Create(ctx, "a/b.txt", vfs.CreateOptions{SizeHint: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := up.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	rc, err := s.Read(ctx, "a/b.txt", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(rc); string(b) != "hello" {
		t.Errorf("read back %q: the decorator changed data", b)
	}
	rc.Close()
	if _, err := s.Stat(ctx, "missing"); !errors.Is(err, vfs.ErrNotExist) {
		t.Errorf("stat of a missing key: %v (the decorator must pass errors through)", err)
	}
	if _, err := s.List(ctx, vfs.ListOptions{Prefix: "a/", Limit: 1}); err != nil {
		t.Fatal(err)
	}

	boom := errors.New("connection reset")
	bad := m.WrapStore("logs", failStore{err: boom})
	if _, err := bad.Stat(ctx, "x"); err != boom {
		t.Errorf("error not passed through unchanged: %v", err)
	}
	_, _ = bad.List(ctx, vfs.ListOptions{})
	_, _ = m.WrapStore("logs", failStore{err: context.Canceled}).Stat(ctx, "x")

	for _, c := range []struct {
		store, op string
		want      float64
	}{{"files", "stat", 0}, {"logs", "stat", 1}, {"logs", "list", 1}, {"files", "upload_commit", 0}} {
		if got := testutil.ToFloat64(m.storeErr.WithLabelValues(c.store, c.op)); got != c.want {
			t.Errorf("errors{%s,%s} = %v, want %v", c.store, c.op, got, c.want)
		}
	}
	out := scrape(t, m)
	for _, want := range []string{
		`sftpgw_store_request_duration_seconds_count{op="create",store="files"} 1`,
		`sftpgw_store_request_duration_seconds_count{op="upload_commit",store="files"} 1`,
		`sftpgw_store_request_duration_seconds_count{op="read",store="files"} 1`,
		`sftpgw_store_request_duration_seconds_count{op="stat",store="files"} 1`,
		`sftpgw_store_request_duration_seconds_count{op="list",store="files"} 1`,
		`sftpgw_store_request_duration_seconds_count{op="stat",store="logs"} 2`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("exposition lacks %q", want)
		}
	}
}

func TestHealth(t *testing.T) {
	var calls atomic.Int64
	var failing atomic.Bool
	h := NewHealth(HealthOptions{TTL: 200 * time.Millisecond, Checks: []Check{
		{Name: "storage files", Fn: func(context.Context) error { calls.Add(1); return nil }},
		{Name: "storage logs", Fn: func(context.Context) error {
			calls.Add(1)
			if failing.Load() {
				return errors.New("AccessDenied: secret-bucket-detail RequestID=ABC123")
			}
			return nil
		}},
	}})
	m := New(Options{NoRuntime: true})
	srv := httptest.NewServer(m.Handler(h))
	defer srv.Close()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz %d", code)
	}
	for range 5 {
		if code, body := get("/readyz"); code != 200 {
			t.Errorf("/readyz %d %s", code, body)
		}
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("5 polls within the TTL ran %d checks, want 2 (one round)", n)
	}
	failing.Store(true)
	time.Sleep(250 * time.Millisecond)
	code, body := get("/readyz")
	if code != http.StatusServiceUnavailable {
		t.Errorf("/readyz with a failing store: %d", code)
	}
	var r struct {
		Ready  bool
		Checks map[string]string
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil || r.Ready || r.Checks["storage logs"] != "unreachable" || r.Checks["storage files"] != "ok" {
		t.Errorf("readyz body %s (%v)", body, err)
	}
	if strings.Contains(body, "AccessDenied") || strings.Contains(body, "ABC123") {
		t.Errorf("readyz leaks the raw store error: %s", body)
	}
	failing.Store(false)
	time.Sleep(250 * time.Millisecond)
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("/readyz after recovery: %d", code)
	}
	h.SetDraining()
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "draining") {
		t.Errorf("/readyz while draining: %d %s", code, body)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz while draining: %d (the process is still up)", code)
	}
	if code, _ := get("/metrics"); code != 200 {
		t.Errorf("/metrics %d", code)
	}
	resp, err := http.Post(srv.URL+"/metrics", "text/plain", nil)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST /metrics: %d", resp.StatusCode)
		}
	}
}

func TestObserveTrailAndHandles(t *testing.T) {
	m := New(Options{NoRuntime: true})
	m.ObserveTrail(func() trail.Stats { return trail.Stats{Queued: 7, SpoolBytes: 4096, Dropped: 2, StoreDown: true} })
	m.ObserveHandles(func() int64 { return 3 })
	out := scrape(t, m)
	for _, want := range []string{"sftpgw_audit_queue_events 7", "sftpgw_audit_spool_bytes 4096",
		"sftpgw_audit_dropped_events_total 2", "sftpgw_audit_store_up 0", "sftpgw_open_file_handles 3"} {
		if !strings.Contains(out, want) {
			t.Errorf("exposition lacks %q", want)
		}
	}
}

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler(nil).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("/metrics: %d", rec.Code)
	}
	return rec.Body.String()
}

// The alert rule in docs/operations.md uses increase(sftpgw_bans_total[10m]): the series
// must be scraped (at 0) before the first ban, not appear with it.
func TestAlertSeriesStartAtZero(t *testing.T) {
	m := New(Options{NoRuntime: true})
	srv := httptest.NewServer(m.Handler(nil))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`sftpgw_bans_total{scope="source"} 0`,
		`sftpgw_bans_total{scope="user"} 0`,
		`sftpgw_connections_rejected_total{reason="banned"} 0`,
		`sftpgw_connections_rejected_total{reason="overload"} 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q before any event", want)
		}
	}
}
