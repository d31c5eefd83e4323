package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sftpgw/sftpgw/alerts"
	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/authn"
	"github.com/sftpgw/sftpgw/internal/testgw"
)

// Real OpenSSH against the second-factor and lockout limits. Linux routes
// all of 127/8 to lo, so `BindAddress=127.0.0.N` is source address N.

// from returns client options for one source address, one prompt only
// (each connection is then exactly one answer).
func from(ip string) []string {
	return []string{"-o", "BindAddress=" + ip, "-o", "NumberOfPasswordPrompts=1"}
}

// authEvents are the auth events of user after the first n events.
func authEvents(g *testgw.Gateway, n int, user string) []audit.Event {
	var out []audit.Event
	for _, e := range g.Events.All()[n:] {
		if e.Kind == "auth" && e.User == user {
			out = append(out, e)
		}
	}
	return out
}

// TestMFALockAcrossSourcesOpenSSH: wrong codes for one HR account, one
// from each of four source addresses (no source or pair ban is reached),
// lock that account's TOTP step and raise mfa_lock; a right code from a
// fifth address is then refused with exactly what a wrong code shows;
// a key-only user from the same addresses is not affected.
func TestMFALockAcrossSourcesOpenSSH(t *testing.T) {
	needTool(t, "sftp")
	g := testgw.Start(t, testgw.Options{Lockout: authn.Lockout{MaxIPFailures: 3, MaxPairFailures: 3, MaxMFAFailures: 4}})
	hr := g.AddUser("hr", true)
	app := g.AddUser("applicant", false)
	var wrongOut string
	for i := 1; i <= 4; i++ {
		c := &sshClient{g: g, u: hr, code: wrongCode(t, hr.Secret), opts: from(fmt.Sprintf("127.0.0.%d", 10+i))}
		out, err := c.sftp("pwd")
		if err == nil {
			t.Fatalf("wrong code %d accepted:\n%s", i, out)
		}
		wrongOut = out
	}
	var locked []audit.Event
	for _, e := range g.Events.Find(audit.Event{Kind: "auth", User: hr.Name, Result: "failure"}) {
		if strings.Contains(e.Detail, " banned for ") {
			t.Errorf("a source or pair ban was reached: %+v", e)
		}
		if a := alerts.Classify(e); len(a) == 1 && a[0] == alerts.MFALock {
			locked = append(locked, e)
		}
	}
	if len(locked) != 1 || !strings.HasPrefix(locked[0].Client, "127.0.0.14:") {
		t.Fatalf("mfa_lock raised by %+v, want once, by the 4th wrong code", locked)
	}
	n := len(g.Events.All())
	c := &sshClient{g: g, u: hr, code: g.Code(hr), opts: from("127.0.0.15")}
	out, err := c.sftp("pwd")
	if err == nil {
		t.Fatalf("right code accepted during the lock:\n%s", out)
	}
	if out != wrongOut {
		t.Errorf("a right code during the lock shows\n%q\nbut a wrong code\n%q", out, wrongOut)
	}
	if ev := authEvents(g, n, hr.Name); len(ev) == 0 || ev[len(ev)-1].ErrClass != "mfa_locked" {
		t.Errorf("auth events %+v, want mfa_locked last", ev)
	}
	for i := 1; i <= 4; i++ {
		c := &sshClient{g: g, u: app, opts: []string{"-o", fmt.Sprintf("BindAddress=127.0.0.%d", 10+i)}}
		if out, err := c.sftp("pwd"); err != nil {
			t.Fatalf("key-only user from 127.0.0.%d during the lock: %v\n%s", 10+i, err, out)
		}
	}
}

// TestTOTPFailuresBanSourceOpenSSH: wrong codes count towards the
// source and (user, source) bans like any other failure (with limits
// that really decide, unlike TestHRSecondFactor's): after three, the
// right key and code are refused from that address, and still accepted
// from another.
func TestTOTPFailuresBanSourceOpenSSH(t *testing.T) {
	needTool(t, "sftp")
	g := testgw.Start(t, testgw.Options{Lockout: authn.Lockout{MaxIPFailures: 3, MaxPairFailures: 3}})
	hr := g.AddUser("hr", true)
	for i := range 3 {
		c := &sshClient{g: g, u: hr, code: wrongCode(t, hr.Secret), opts: from("127.0.0.21")}
		if out, err := c.sftp("pwd"); err == nil {
			t.Fatalf("wrong code %d accepted:\n%s", i, out)
		}
	}
	if len(g.Events.Find(audit.Event{Kind: "auth", User: hr.Name, ErrClass: "bad_totp"})) != 3 {
		t.Fatalf("want 3 bad_totp events: %+v", g.Events.All())
	}
	c := &sshClient{g: g, u: hr, code: g.Code(hr), opts: from("127.0.0.21")}
	if out, err := c.sftp("pwd"); err == nil {
		t.Fatalf("right code accepted from the address banned for three wrong codes:\n%s", out)
	}
	c = &sshClient{g: g, u: hr, code: g.Code(hr), opts: from("127.0.0.22")}
	if out, err := c.sftp("pwd"); err != nil {
		t.Fatalf("from another address: %v\n%s", err, out)
	}
}

// TestAnswerAfterBanOpenSSH: a connection waits at the verification-code
// prompt (its SSH_ASKPASS blocks) while the same account's wrong codes
// from its address ban it there; the right code it then sends is refused.
func TestAnswerAfterBanOpenSSH(t *testing.T) {
	needTool(t, "sftp")
	g := testgw.Start(t, testgw.Options{Lockout: authn.Lockout{MaxIPFailures: 100, MaxPairFailures: 2}})
	hr := g.AddUser("hr", true)
	w := startAtPrompt(t, g, hr, "127.0.0.31", g.Code(hr))
	for i := range 2 {
		c := &sshClient{g: g, u: hr, code: wrongCode(t, hr.Secret), opts: from("127.0.0.31")}
		if o, err := c.sftp("pwd"); err == nil {
			t.Fatalf("wrong code %d accepted:\n%s", i, o)
		}
	}
	n := len(g.Events.All())
	if out, err := w.answer(t); err == nil || strings.Contains(out, "Remote working directory") {
		t.Fatalf("right code accepted on a connection that waited at the prompt while the source got banned:\n%s", out)
	}
	ev := authEvents(g, n, hr.Name)
	if len(ev) != 1 || ev[0].ErrClass != "banned" || !strings.Contains(ev[0].Detail, "while the prompt was open") {
		t.Errorf("auth events after the answer: %+v", ev)
	}
}

// atPrompt is an OpenSSH sftp run whose SSH_ASKPASS holds its answer
// until the test releases it.
type atPrompt struct {
	started, release string
	done             chan error
	out              *strings.Builder
}

// startAtPrompt starts sftp as u from ip and waits until it is at the
// verification-code prompt; code is what it will answer.
func startAtPrompt(t *testing.T, g *testgw.Gateway, u *testgw.User, ip, code string) *atPrompt {
	t.Helper()
	dir := t.TempDir()
	w := &atPrompt{started: filepath.Join(dir, "started"), release: filepath.Join(dir, "go"),
		done: make(chan error, 1), out: &strings.Builder{}}
	askpass := filepath.Join(dir, "askpass")
	script := fmt.Sprintf("#!/bin/sh\ntouch %s\nwhile [ ! -e %s ]; do sleep 0.05; done\necho %s\n", w.started, w.release, code)
	if err := os.WriteFile(askpass, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	c := &sshClient{g: g, u: u, code: "unused", opts: from(ip), env: []string{"SSH_ASKPASS=" + askpass}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	cmd := c.command(ctx, "sftp", "-o", "BatchMode=no", "-b", "-", c.target())
	cmd.Stdin = strings.NewReader("pwd\n")
	cmd.Stdout, cmd.Stderr = w.out, w.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { w.done <- cmd.Wait() }()
	// Released at the end at the latest, so no client outlives the test.
	t.Cleanup(func() { _ = os.WriteFile(w.release, nil, 0o600); <-w.done })
	waitFor(t, 20*time.Second, "a connection to reach the prompt", func() bool {
		_, err := os.Stat(w.started)
		return err == nil
	})
	return w
}

// answer releases the code and returns the run's output and error.
func (w *atPrompt) answer(t *testing.T) (string, error) {
	t.Helper()
	if err := os.WriteFile(w.release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-w.done:
		w.done <- err // for the cleanup
		return w.out.String(), err
	case <-time.After(30 * time.Second):
		t.Fatal("the waiting client did not finish")
		return "", nil
	}
}

// TestPromptLimitOpenSSH: two connections of one HR account wait at the
// prompt; a third is refused without being asked (its SSH_ASKPASS never
// runs), is audited as mfa_busy, and counts as no failure; once one of
// the two has answered, the account can log in again.
func TestPromptLimitOpenSSH(t *testing.T) {
	needTool(t, "sftp")
	g := testgw.Start(t, testgw.Options{Lockout: authn.Lockout{MaxIPFailures: 3, MaxPairFailures: 3}})
	hr := g.AddUser("hr", true)
	first := startAtPrompt(t, g, hr, "127.0.0.51", g.Code(hr))
	startAtPrompt(t, g, hr, "127.0.0.52", wrongCode(t, hr.Secret))
	asked := filepath.Join(t.TempDir(), "asked")
	// Never asked; a wrong code, so that no valid one is spent on it.
	askpass := filepath.Join(t.TempDir(), "askpass")
	if err := os.WriteFile(askpass, []byte(fmt.Sprintf("#!/bin/sh\ntouch %s\necho %s\n", asked, wrongCode(t, hr.Secret))), 0o700); err != nil {
		t.Fatal(err)
	}
	third := &sshClient{g: g, u: hr, code: "unused", opts: from("127.0.0.53"), env: []string{"SSH_ASKPASS=" + askpass}}
	if out, err := third.sftp("pwd"); err == nil {
		t.Fatalf("a third connection logged in while two were at the prompt:\n%s", out)
	}
	if _, err := os.Stat(asked); err == nil {
		t.Error("the third connection was shown the prompt")
	}
	if len(g.Events.Find(audit.Event{Kind: "auth", User: hr.Name, ErrClass: "mfa_busy"})) != 1 {
		t.Errorf("no mfa_busy event: %+v", authEvents(g, 0, hr.Name))
	}
	if out, err := first.answer(t); err != nil {
		t.Fatalf("first waiting connection with the right code: %v\n%s", err, out)
	}
	c := &sshClient{g: g, u: hr, opts: from("127.0.0.53")}
	if out, err := c.sftp("pwd"); err != nil {
		t.Fatalf("after a place at the prompt was freed: %v\n%s", err, out)
	}
}

// TestSharedAddressUnknownNamesOpenSSH: unknown user names from one
// address ban it for unknown names; a real user's key login from that
// address (key only, and key + code) still works; guessing names goes on
// being refused.
func TestSharedAddressUnknownNamesOpenSSH(t *testing.T) {
	needTool(t, "sftp")
	g := testgw.Start(t, testgw.Options{Lockout: authn.Lockout{MaxIPFailures: 3, MaxPairFailures: 3}})
	app := g.AddUser("applicant", false)
	hr := g.AddUser("hr", true)
	guess := func(name string) {
		t.Helper()
		u := &testgw.User{Name: name, Role: "applicant", KeyPath: filepath.Join(t.TempDir(), "k")}
		writeKey(t, u.KeyPath)
		c := &sshClient{g: g, u: u, opts: []string{"-o", "BindAddress=127.0.0.41"}}
		if out, err := c.sftp("pwd"); err == nil {
			t.Fatalf("unknown user %s logged in:\n%s", name, out)
		}
	}
	for _, name := range []string{"admin", "oracle", "test"} {
		guess(name)
	}
	bans := 0
	for _, e := range g.Events.Find(audit.Event{Kind: "auth", Result: "failure", ErrClass: "unknown_user"}) {
		if strings.Contains(e.Detail, "source 127.0.0.41 banned for") {
			bans++
		}
	}
	if bans != 1 {
		t.Fatalf("unknown names did not ban 127.0.0.41: %+v", g.Events.All())
	}
	c := &sshClient{g: g, u: app, opts: []string{"-o", "BindAddress=127.0.0.41"}}
	if out, err := c.sftp("pwd"); err != nil {
		t.Fatalf("applicant locked out of a shared address by other people's unknown names: %v\n%s", err, out)
	}
	c = &sshClient{g: g, u: hr, opts: from("127.0.0.41")}
	if out, err := c.sftp("pwd"); err != nil {
		t.Fatalf("HR locked out of a shared address by other people's unknown names: %v\n%s", err, out)
	}
	n := len(g.Events.All())
	guess("postgres")
	if ev := authEvents(g, n, "postgres"); len(ev) == 0 || ev[len(ev)-1].ErrClass != "banned" {
		t.Errorf("name guessing during the ban: %+v", ev)
	}
}

// TestEnrolledApplicantAskedForCodeOpenSSH: `user add --mfa` on a role
// without mfa = true (applicant) takes effect: the key alone is refused.
func TestEnrolledApplicantAskedForCodeOpenSSH(t *testing.T) {
	needTool(t, "sftp")
	g := testgw.Start(t, testgw.Options{Lockout: authn.Lockout{MaxIPFailures: 100, MaxPairFailures: 100}})
	u := g.AddUser("applicant", true)
	if u.Secret == "" {
		t.Fatal("no TOTP secret enrolled")
	}
	keyOnly := &sshClient{g: g, u: u, code: "unused", opts: []string{"-o", "KbdInteractiveAuthentication=no"}}
	if out, err := keyOnly.sftp("pwd"); err == nil {
		t.Fatalf("user enrolled in TOTP logged in with the key alone:\n%s", out)
	}
	if ok := g.Events.Find(audit.Event{Kind: "auth", User: u.Name, Result: "ok"}); len(ok) != 0 {
		t.Fatalf("auth ok without a code: %+v", ok)
	}
	both := &sshClient{g: g, u: u, opts: []string{"-o", "NumberOfPasswordPrompts=1"}}
	if out, err := both.sftp("pwd"); err != nil {
		t.Fatalf("key and code: %v\n%s", err, out)
	}
	ok := g.Events.Find(audit.Event{Kind: "auth", User: u.Name, Result: "ok"})
	if len(ok) != 1 || ok[0].Method != "publickey,keyboard-interactive" {
		t.Errorf("auth ok events %+v", ok)
	}
}
