package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/authn"
	"github.com/sftpgw/sftpgw/internal/testgw"
)

// TestPreauthFloodDoesNotLockOut: 200 silent TCP connections, from one
// address and then from 20 addresses of 127.0.0.0/8, held open without a
// byte sent. Before the per-source cap, the random early drop and the
// eviction of the busiest source, 64 of them locked everyone out for the
// 30 s handshake timeout. A real OpenSSH sftp login from another address
// must succeed within 2 s while they are held.
func TestPreauthFloodDoesNotLockOut(t *testing.T) {
	needTool(t, "sftp")
	g := testgw.Start(t, testgw.Options{})
	u := g.AddUser("applicant", false)
	for i, tc := range []struct {
		name    string
		sources int
	}{{"one source", 1}, {"20 sources", 20}} {
		t.Run(tc.name, func(t *testing.T) {
			held, dropped, silent := 0, 0, 0
			var conns []net.Conn
			defer func() {
				for _, c := range conns {
					c.Close()
				}
			}()
			for j := range 200 {
				src := fmt.Sprintf("127.0.%d.%d", 10+i, 10+j%tc.sources)
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
				c, err := d.Dial("tcp", g.Addr)
				if err != nil {
					t.Fatalf("dial from %s: %v", src, err)
				}
				conns = append(conns, c)
			}
			// The gateway greets a held connection with its version and
			// a refused one with the reason, then closes it.
			for _, c := range conns {
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				line, err := bufio.NewReader(c).ReadString('\n')
				switch {
				case strings.HasPrefix(line, "SSH-2.0-"):
					held++
				case strings.Contains(line, "too many unauthenticated connections"):
					dropped++
				case line == "" && errors.Is(err, io.EOF):
					silent++ // closed without a word
				default:
					t.Fatalf("first line %q, %v", line, err)
				}
			}
			t.Logf("%d silent connections from %d address(es): %d given a handshake slot, %d refused at once",
				len(conns), tc.sources, held, dropped)
			if tc.sources == 1 && held > 10 {
				t.Errorf("one address holds %d handshake slots, the cap is 10", held)
			}
			login := fmt.Sprintf("127.0.%d.250", 10+i)
			c := &sshClient{g: g, u: u, opts: []string{"-o", "BindAddress=" + login}}
			start := time.Now()
			out, err := c.sftp("pwd")
			took := time.Since(start)
			if err != nil {
				t.Fatalf("login from %s during the flood: %v\n%s", login, err, out)
			}
			if took > 2*time.Second {
				t.Fatalf("login from %s took %s during the flood, want under 2 s", login, took)
			}
			t.Logf("sftp login from %s during the flood: %s (limit 2 s, margin %s)", login,
				took.Round(time.Millisecond), (2*time.Second - took).Round(time.Millisecond))
			if silent > 0 {
				t.Errorf("%d connections were closed without a reason", silent)
			}
		})
	}
	if n := len(g.Events.Find(audit.Event{Kind: "connect", Result: "denied", ErrClass: "overload"})); n == 0 {
		t.Error("no refused connection audited")
	}
}

// TestSessionLimitPerUserOpenSSH: a role's max_sessions_per_user (the
// applicant's 2 here) refuses one more session with the reason shown by
// OpenSSH sftp, audits it, and a closed session frees its place.
func TestSessionLimitPerUserOpenSSH(t *testing.T) {
	needTool(t, "sftp")
	roles := testgw.StandardRoles()
	roles["applicant"].MaxSessions = 2
	g := testgw.Start(t, testgw.Options{Roles: roles})
	u := g.AddUser("applicant", false)
	_, first := cliSFTP(t, g, u)
	cliSFTP(t, g, u)
	out, err := g.SFTP(u, "pwd")
	if err == nil || !strings.Contains(out, "already has 2 sessions open") {
		t.Fatalf("3rd session: err=%v\n%s", err, out)
	}
	if ev := g.Events.Find(audit.Event{Kind: "connect", User: u.Name, Result: "denied", ErrClass: "session_limit"}); len(ev) != 1 {
		t.Fatalf("refusal audited %d times", len(ev))
	}
	first.Close()
	waitFor(t, 5*time.Second, "the first session ended", func() bool {
		return len(g.Events.Find(audit.Event{Kind: "session_end", User: u.Name})) >= 1
	})
	if out, err := g.SFTP(u, "pwd"); err != nil {
		t.Fatalf("after a session closed: %v\n%s", err, out)
	}
}

// TestUsersFileChangeClosesSessions: OpenSSH sftp sessions in the middle
// of an upload are closed within a few seconds of a users-file change that
// removes, disables, expires or moves their account (picked up by the
// users-file watcher, no signal), and one whose expiry passes while it is
// logged in; the client is told why, the upload is aborted and stores
// nothing, the session_end event says why. Another user's upload finishes.
func TestUsersFileChangeClosesSessions(t *testing.T) {
	needTool(t, "sftp")
	g := testgw.Start(t, testgw.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go g.Users.Watch(ctx, 200*time.Millisecond)
	c, bucket := s3Client(t, g, "files")
	dir := t.TempDir()
	src, _ := randomFile(t, dir, "big.bin", 4<<20)
	edit := func(name string, fn func(set *authn.UserSet, u authn.User) error) {
		t.Helper()
		err := authn.UpdateUsers(g.UsersFile(), false, func(set *authn.UserSet) error {
			u, ok := set.Lookup(name)
			if !ok {
				return fmt.Errorf("no user %s", name)
			}
			return fn(set, *u)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name, reason string
		change       func(set *authn.UserSet, u authn.User) error
	}{
		{"removed", "the account was removed", func(set *authn.UserSet, u authn.User) error { set.Remove(u.Name); return nil }},
		{"disabled", "the account was disabled", func(set *authn.UserSet, u authn.User) error { u.Disabled = true; return set.Replace(&u) }},
		{"expired", "the account has expired", func(set *authn.UserSet, u authn.User) error {
			u.ExpiresAt = time.Now().Add(-time.Minute)
			return set.Replace(&u)
		}},
		{"role changed", "role changed from applicant to partner", func(set *authn.UserSet, u authn.User) error {
			u.Role = "partner"
			return set.Replace(&u)
		}},
		{"expires while logged in", "the account has expired", nil},
	}
	// All at once, in one edit of the file, so the test takes seconds.
	type run struct {
		u      *testgw.User
		out    *lockedOutput
		exited chan error
	}
	runs := make([]run, len(cases))
	for i, tc := range cases {
		u := g.AddUser("applicant", false)
		if tc.change == nil {
			edit(u.Name, func(set *authn.UserSet, x authn.User) error {
				x.ExpiresAt = time.Now().Add(8 * time.Second) // after every login below, even on a loaded machine
				return set.Replace(&x)
			})
			if err := g.Users.Reload(); err != nil {
				t.Fatal(err)
			}
		}
		// 800 kbit/s: the 4 MiB upload would take ~40 s.
		cmd, out := sftpProc(t, g, u, g.Addr, 800, "put "+src+" big.bin\n")
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		runs[i] = run{u, out, exited}
	}
	waitFor(t, 20*time.Second, "uploads under way", func() bool { return g.Server.Uploads().Active() == len(cases) })
	if len(g.Events.Find(audit.Event{Kind: "session_end"})) > 0 {
		t.Fatal("a session ended before the change (the expiry passed before all logins: machine too slow)")
	}
	start := time.Now()
	err := authn.UpdateUsers(g.UsersFile(), false, func(set *authn.UserSet) error {
		for i, tc := range cases {
			if tc.change == nil {
				continue
			}
			u, _ := set.Lookup(runs[i].u.Name)
			if err := tc.change(set, *u); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, tc := range cases {
		r := runs[i]
		select {
		case err := <-r.exited:
			if err == nil {
				t.Errorf("%s: sftp reported success for a cut upload:\n%s", tc.name, r.out.String())
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: session still open 10 s after the change:\n%s", tc.name, r.out.String())
		}
		t.Logf("%s: sftp ended %s after the users file changed", tc.name, time.Since(start).Round(10*time.Millisecond))
		if o := r.out.String(); !strings.Contains(o, "sftpgw: session closed: ") || !strings.Contains(o, tc.reason) {
			t.Errorf("%s: the client was not told %q:\n%s", tc.name, tc.reason, r.out.String())
		}
		ev := g.Events.Find(audit.Event{Kind: "session_end", User: r.u.Name, Result: "closed", ErrClass: "revoked"})
		if len(ev) != 1 || !strings.Contains(ev[0].Detail, tc.reason) {
			t.Errorf("%s: session_end: %+v", tc.name, ev)
		}
	}
	waitFor(t, 10*time.Second, "uploads aborted", func() bool { return g.Server.Uploads().Active() == 0 })
	for i := range cases {
		if exists(t, c, bucket, cliHome(runs[i].u)+"big.bin") {
			t.Errorf("%s: the cut upload left an object", cases[i].name)
		}
	}
	// Sessions of users who did not change are left alone.
	u := g.AddUser("applicant", false)
	if out, err := g.SFTP(u, "put "+filepath.Join(dir, "big.bin")+" kept.bin"); err != nil {
		t.Fatalf("unchanged user: %v\n%s", err, out)
	}
	if !exists(t, c, bucket, cliHome(u)+"kept.bin") {
		t.Error("the unchanged user's upload is missing")
	}
}
