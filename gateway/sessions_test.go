package gateway

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/sftpgw/sftpgw/authn"
)

// refusedWith opens an sftp session on c and returns what the gateway
// wrote on stderr before closing it ("" if the session was served).
func refusedWith(t *testing.T, c *ssh.Client) string {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		return "no session: " + err.Error()
	}
	defer s.Close()
	stderr := pipeStderr(s)
	out, _ := s.StdoutPipe()
	in, _ := s.StdinPipe()
	if err := s.RequestSubsystem("sftp"); err != nil {
		return "subsystem refused: " + err.Error()
	}
	cl, err := sftp.NewClientPipe(out, in)
	if err == nil {
		_, err = cl.Getwd()
		cl.Close()
		if err == nil {
			return ""
		}
	}
	return stderr()
}

// Concurrent logins cannot overshoot max_sessions: check and count are one
// step. Every login is held in Principal until all have arrived, then the
// server's lock is held while they go on: a login that passed a check but
// has not counted yet waits at that lock (session tracking), so a check
// separate from the count would let all of them through.
func TestMaxSessionsAtomic(t *testing.T) {
	const max, n = 3, 24
	ts := startServer(t, func(c *Config) { c.MaxSessions = max; c.MaxUnauthPerSource = -1; c.Startups = Startups{n, 30, n} })
	ts.auth.wait = make(chan struct{})
	var wg sync.WaitGroup
	var served atomic.Int64
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := ts.dialFrom(fmt.Sprintf("u%d", i), "")
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			if refusedWith(t, c) == "" {
				served.Add(1)
				time.Sleep(500 * time.Millisecond) // hold the session while the others try
			}
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for ts.auth.in.Load() < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	ts.mu.Lock()
	close(ts.auth.wait)
	// The refusals need no lock; with a separate check there are none.
	for len(ts.events.find("connect", "overload")) < n-max && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	ts.mu.Unlock()
	wg.Wait()
	if got := served.Load(); got > max {
		t.Fatalf("%d sessions served at once with max_sessions %d", got, max)
	}
	if got := ts.events.find("connect", "overload"); len(got) != n-max {
		t.Fatalf("%d refusals audited, want %d", len(got), n-max)
	}
}

// A user's sessions are capped (the role may change the cap), and the
// client is told why on stderr; the refusal is audited.
func TestSessionsPerUserAndSource(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.MaxSessionsPerUser = 2; c.MaxSessionsPerSource = 3 })
	ts.auth.roles["many"] = -1 // a role without a cap
	for range 2 {
		if why := refusedWith(t, ts.dial(t, "alice")); why != "" {
			t.Fatalf("session within the limit refused: %s", why)
		}
	}
	// The two sessions above are closed: refusedWith ends its session but
	// the connections stay; the count is per connection.
	why := refusedWith(t, ts.dial(t, "alice"))
	if !strings.Contains(why, "user alice already has 2 sessions open") {
		t.Fatalf("3rd session of alice: %q", why)
	}
	ev := ts.events.find("connect", "session_limit")
	if len(ev) != 1 || ev[0].User != "alice" || ev[0].Result != "denied" {
		t.Fatalf("refusal audited as %+v", ev)
	}
	// Per source: alice holds 2 connections from 127.0.0.1; one more user
	// fits, the next is refused, from another address it fits.
	if why := refusedWith(t, ts.dial(t, "many")); why != "" {
		t.Fatalf("role without a per-user cap refused: %s", why)
	}
	why = refusedWith(t, ts.dial(t, "many"))
	if !strings.Contains(why, "your address already has 3 sessions open") {
		t.Fatalf("4th session from one address: %q", why)
	}
	c, err := ts.dialFrom("many", "127.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if why := refusedWith(t, c); why != "" {
		t.Fatalf("session from another address refused: %s", why)
	}
}

// pkg/sftp opens any number of handles; the gateway stops at MaxHandles
// (files and directories together), says why, audits it, and counts a
// closed handle back.
func TestHandleLimitPerSession(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.MaxHandles = 4 })
	c := ts.dial(t, "bob")
	cl, err := sftp.NewClient(c)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var files []*sftp.File
	for i := range 4 {
		f, err := cl.OpenFile(fmt.Sprintf("f%d", i), os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		files = append(files, f)
	}
	_, err = cl.OpenFile("f9", os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err == nil || !strings.Contains(err.Error(), "too many open files and directories in this session (limit 4)") {
		t.Fatalf("5th handle (file): %v", err)
	}
	if _, err := cl.ReadDir("."); err == nil {
		t.Fatal("5th handle (directory) opened")
	}
	if ev := ts.events.find("file", "limit"); len(ev) != 2 || ev[0].Result != "denied" || ev[0].Path != "/f9" || ev[1].Op != "list" {
		t.Fatalf("refusals audited as %+v", ev)
	}
	_, _ = files[3].Write([]byte("x"))
	if err := files[3].Close(); err != nil {
		t.Fatal(err)
	}
	files = files[:3]
	// A listing takes the free handle and gives it back.
	for range 3 {
		if _, err := cl.ReadDir("."); err != nil {
			t.Fatalf("listing with a free handle: %v", err)
		}
	}
	f, err := cl.OpenFile("f9", os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		t.Fatalf("open after a close: %v", err)
	}
	files = append(files, f)
	for _, f := range files {
		_, _ = f.Write([]byte("x"))
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// users is a UserLookup the test edits.
type users struct {
	mu sync.Mutex
	m  map[string]*authn.User
}

func (u *users) Lookup(n string) (*authn.User, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	x, ok := u.m[n]
	return x, ok
}
func (u *users) set(n string, x *authn.User) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if x == nil {
		delete(u.m, n)
	} else {
		u.m[n] = x
	}
}

// Every session whose account went away, was disabled, expired, changed
// role or lost its key is closed with the reason on stderr and in the
// session_end event; the others stay. Lifetime likewise, on an injected
// clock.
func TestRevalidateClosesSessions(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	db := &users{m: map[string]*authn.User{}}
	ts := startServer(t, func(c *Config) {
		c.Users, c.Now, c.MaxSessionLifetime = db, clock, time.Hour
		c.RevalidateInterval = time.Hour // the test calls revalidate itself
	})
	key := authn.Key{PublicKey: ts.client.PublicKey()}
	other := authn.Key{PublicKey: ts.Server.cfg.HostKeys[0].PublicKey()}
	cases := []struct {
		user   string
		change func(*authn.User) *authn.User
		reason string
	}{
		{"gone", func(*authn.User) *authn.User { return nil }, "the account was removed"},
		{"disabled", func(u *authn.User) *authn.User { u.Disabled = true; return u }, "the account was disabled"},
		{"expired", func(u *authn.User) *authn.User { u.ExpiresAt = clock(); return u }, "the account has expired"},
		{"moved", func(u *authn.User) *authn.User { u.Role = "applicant"; return u }, "role changed from partner to applicant"},
		{"rekeyed", func(u *authn.User) *authn.User { u.Keys = []authn.Key{other}; return u }, "key used to log in was removed"},
		{"kept", func(u *authn.User) *authn.User { u.ExpiresAt = clock().Add(48 * time.Hour); return u }, ""},
	}
	type live struct {
		stderr func() string
		done   chan error
	}
	sessions := map[string]live{}
	for _, c := range cases {
		db.set(c.user, &authn.User{Name: c.user, Role: "partner", Keys: []authn.Key{key}})
		cl := ts.dial(t, c.user)
		s, err := cl.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		buf := pipeStderr(s)
		out, _ := s.StdoutPipe()
		in, _ := s.StdinPipe()
		if err := s.RequestSubsystem("sftp"); err != nil {
			t.Fatal(err)
		}
		if _, err := sftp.NewClientPipe(out, in); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { buf(); done <- nil }() // stderr ends when the channel closes
		sessions[c.user] = live{buf, done}
	}
	if n := ts.revalidate(clock()); n != 0 {
		t.Fatalf("%d sessions closed before any change", n)
	}
	for _, c := range cases {
		u, _ := db.Lookup(c.user)
		cp := *u
		db.set(c.user, c.change(&cp))
	}
	if n := ts.revalidate(clock()); n != len(cases)-1 {
		t.Fatalf("%d sessions closed, want %d", n, len(cases)-1)
	}
	for _, c := range cases {
		l := sessions[c.user]
		if c.reason == "" {
			select {
			case <-l.done:
				t.Fatalf("%s: session closed without a reason", c.user)
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		select {
		case <-l.done:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: session still open", c.user)
		}
		if !strings.Contains(l.stderr(), "session closed: "+c.reason) &&
			!strings.Contains(l.stderr(), c.reason) {
			t.Errorf("%s: client was told %q, want %q", c.user, l.stderr(), c.reason)
		}
	}
	waitEvents(t, ts, "session_end", len(cases)-1)
	for _, e := range ts.events.find("session_end", "revoked") {
		if e.Result != "closed" || !strings.HasPrefix(e.Detail, "closed by the gateway: ") {
			t.Errorf("session_end of %s: %+v", e.User, e)
		}
	}
	// Lifetime: the kept session ends once it is an hour old, not before.
	now.Add(int64(59 * time.Minute))
	if n := ts.revalidate(clock()); n != 0 {
		t.Fatalf("closed at 59 minutes: %d", n)
	}
	now.Add(int64(time.Minute))
	if n := ts.revalidate(clock()); n != 1 {
		t.Fatalf("not closed at the lifetime: %d", n)
	}
	select {
	case <-sessions["kept"].done:
	case <-time.After(5 * time.Second):
		t.Fatal("session past its lifetime still open")
	}
	if !strings.Contains(sessions["kept"].stderr(), "maximum session lifetime (1h0m0s) was reached") {
		t.Errorf("lifetime notice: %q", sessions["kept"].stderr())
	}
	waitEvents(t, ts, "session_end", len(cases))
	if ev := ts.events.find("session_end", "lifetime"); len(ev) != 1 || ev[0].User != "kept" {
		t.Errorf("lifetime session_end: %+v", ev)
	}
}

func waitEvents(t *testing.T, ts *testServer, kind string, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(ts.events.find(kind, "")) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d %s events, want %d", len(ts.events.find(kind, "")), kind, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

var _ io.Writer = (*syncBuf)(nil)

// pipeStderr collects the session's stderr; the function returned waits
// for the channel to close and returns it. (Session.Stderr is only copied
// for sessions started with Start, not RequestSubsystem.)
func pipeStderr(s *ssh.Session) func() string {
	r, _ := s.StderrPipe()
	buf := &syncBuf{}
	done := make(chan struct{})
	go func() { _, _ = io.Copy(buf, r); close(done) }()
	return func() string { <-done; return buf.String() }
}
