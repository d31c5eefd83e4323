package authn

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sftpgw/sftpgw/audit"
)

var connSeq atomic.Int64

// keyStep drives the public key step of a new connection from addr. For
// an MFA login it returns the keyboard-interactive callback of that
// connection; for a key-only login, the principal.
func (g *gw) keyStep(user string, k testKey, addr string) (*fakeConn, func(ssh.ConnMetadata, ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error), *Principal, error) {
	g.t.Helper()
	conn := &fakeConn{user: user, addr: net.TCPAddrFromAddrPort(netip.MustParseAddrPort(addr)),
		id: fmt.Appendf(nil, "conn-%d", connSeq.Add(1))}
	pub := k.signer.PublicKey()
	perms, err := g.cfg.PublicKeyCallback(conn, pub)
	if err != nil {
		return conn, nil, nil, err
	}
	perms, err = g.cfg.VerifiedPublicKeyCallback(conn, pub, perms, pub.Type())
	var partial *ssh.PartialSuccessError
	if errors.As(err, &partial) {
		return conn, partial.Next.KeyboardInteractiveCallback, nil, nil
	}
	if err != nil {
		return conn, nil, nil, err
	}
	p, err := g.a.Principal(perms)
	return conn, nil, p, err
}

// totpLogin is a whole two-factor login from addr answering code.
func (g *gw) totpLogin(user string, k testKey, addr, code string) error {
	g.t.Helper()
	conn, ki, p, err := g.keyStep(user, k, addr)
	if err != nil {
		return err
	}
	if ki == nil {
		g.t.Fatalf("%s logged in with the key alone: %+v", user, p)
	}
	_, err = ki(conn, func(_, _ string, _ []string, _ []bool) ([]string, error) { return []string{code}, nil })
	return err
}

// wrong returns a code no step near the gateway's clock accepts for secret.
func (g *gw) wrong(secret string) string {
	valid := map[string]bool{}
	for d := int64(-2); d <= 2; d++ {
		valid[g.code(secret, d)] = true
	}
	for i := 0; ; i++ {
		if c := fmt.Sprintf("%06d", (314159*i+271828)%1000000); !valid[c] {
			return c
		}
	}
}

// lastEvent is the newest auth event of user.
func (g *gw) lastEvent(user string) audit.Event {
	g.t.Helper()
	ev := g.events.all()
	for i := len(ev) - 1; i >= 0; i-- {
		if ev[i].Kind == "auth" && ev[i].User == user {
			return ev[i]
		}
	}
	g.t.Fatalf("no auth event for %s", user)
	return audit.Event{}
}

// TestMFALockAcrossSources: wrong codes for one account spread over many
// source addresses lock that account's TOTP step (no source or pair ban
// is reached), fire mfa_lock once, refuse a right code during the lock
// with the same error as a wrong one, leave key-only users and other MFA
// accounts alone, expire, and double on a repeat.
func TestMFALockAcrossSources(t *testing.T) {
	g := newGW(t, Lockout{MaxIPFailures: 100, MaxPairFailures: 100, MaxMFAFailures: 3,
		MFAWindow: 15 * time.Minute, MFALock: 10 * time.Minute, MaxMFALock: time.Hour})
	src := func(i int) string { return fmt.Sprintf("10.9.0.%d:4000", i) }
	// What a client sees for a wrong code (this is the first of three).
	wrongAns := &answer{code: g.wrong(testSecret)}
	_, _, errNetWrong := g.login("bob", g.key("bob"), wrongAns.method())
	if errNetWrong == nil {
		t.Fatal("wrong code accepted")
	}
	for i := 1; i < 3; i++ {
		if err := g.totpLogin("bob", g.keys["bob"], src(i), g.wrong(testSecret)); err == nil {
			t.Fatal("wrong code accepted")
		}
	}
	e := g.lastEvent("bob")
	if e.ErrClass != "bad_totp" || !strings.Contains(e.Detail, "second factor locked for 10m0s") {
		t.Fatalf("third wrong code: %+v", e)
	}
	if strings.Count(e.Detail, MFALockDetail) != 1 { // what alerts match as mfa_lock
		t.Errorf("locking failure lacks the mfa_lock marker: %+v", e)
	}
	if !strings.Contains(g.logs.String(), "mfa_lock") {
		t.Error("lock not logged")
	}
	// A right code from yet another source: refused like a wrong one.
	g.clock.Add(time.Minute)
	errRight := g.totpLogin("bob", g.keys["bob"], src(50), g.code(testSecret, 0))
	if errRight == nil {
		t.Fatal("right code accepted during the lock")
	}
	e = g.lastEvent("bob")
	if e.ErrClass != "mfa_locked" || strings.Contains(e.Detail, MFALockDetail) {
		t.Errorf("right code during the lock: %+v", e)
	}
	errWrong := g.totpLogin("bob", g.keys["bob"], src(51), g.wrong(testSecret))
	if errWrong == nil || errWrong.Error() != errRight.Error() {
		t.Errorf("right and wrong code during the lock differ: %v / %v", errRight, errWrong)
	}
	// Over the network the client sees the same as for a wrong code, and
	// is still shown the prompt.
	ans := &answer{code: g.code(testSecret, 0)}
	_, _, errNet := g.login("bob", g.key("bob"), ans.method())
	if errNet == nil || len(ans.asked) != 1 {
		t.Fatalf("network login during the lock: %v, prompted %q", errNet, ans.asked)
	}
	if errNet.Error() != errNetWrong.Error() {
		t.Errorf("client can tell the lock from a wrong code:\n%v\n%v", errNet, errNetWrong)
	}
	// Refusals during the lock neither extend it nor count.
	if s := g.a.limit.mfa.peek("bob", g.clock.Now()); s == nil || s.count != 0 || s.level != 1 {
		t.Errorf("mfa strike during the lock %+v", s)
	}
	// Key-only users and other MFA accounts are not affected.
	if _, _, p, err := g.keyStep("alice", g.keys["alice"], src(1)); err != nil || p == nil {
		t.Errorf("key-only user refused during bob's lock: %v", err)
	}
	if err := g.totpLogin("hr2", g.keys["hr2"], src(1), g.code(otherSecret, 0)); err != nil {
		t.Errorf("other MFA account refused during bob's lock: %v", err)
	}
	// The lock ends; the right code works again.
	g.clock.Add(9 * time.Minute)
	if err := g.totpLogin("bob", g.keys["bob"], src(60), g.code(testSecret, 0)); err != nil {
		t.Fatalf("right code after the lock: %v", err)
	}
	// A repeat doubles the lock.
	for i := range 3 {
		g.clock.Add(time.Second)
		if err := g.totpLogin("bob", g.keys["bob"], src(70+i), g.wrong(testSecret)); err == nil {
			t.Fatal("wrong code accepted")
		}
	}
	if e := g.lastEvent("bob"); !strings.Contains(e.Detail, "second factor locked for 20m0s") {
		t.Errorf("second lock: %+v", e)
	}
	// None of this touched source or pair bans.
	for i := range 3 {
		if _, b := g.a.limit.banned(netip.MustParseAddr(fmt.Sprintf("10.9.0.%d", i)), "bob", 0); b {
			t.Errorf("source %d banned", i)
		}
	}
}

// TestTOTPFailuresCountTowardsBans: wrong codes are failures like any
// other for the source and the (user, source) bans, over a real SSH
// connection (OpenSSH-like client, x/crypto).
func TestTOTPFailuresCountTowardsBans(t *testing.T) {
	t.Run("source", func(t *testing.T) {
		g := newGW(t, Lockout{MaxIPFailures: 3, MaxPairFailures: 100, MaxMFAFailures: 100})
		for range 3 {
			if _, _, err := g.login("bob", g.key("bob"), (&answer{code: g.wrong(testSecret)}).method()); err == nil {
				t.Fatal("wrong code accepted")
			}
		}
		if _, b := g.a.limit.ipBanned(netip.MustParseAddr("127.0.0.1")); !b {
			t.Fatal("3 wrong codes did not ban the source")
		}
		if !strings.Contains(g.lastEvent("bob").Detail, "source 127.0.0.1 banned for 1m0s") {
			t.Errorf("ban not in the audit event: %+v", g.lastEvent("bob"))
		}
		// bob's own failures: a right code from there is refused now.
		if _, _, err := g.login("bob", g.key("bob"), (&answer{code: g.code(testSecret, 0)}).method()); err == nil {
			t.Fatal("right code accepted from the source banned for bob's wrong codes")
		}
	})
	t.Run("pair", func(t *testing.T) {
		g := newGW(t, Lockout{MaxIPFailures: 100, MaxPairFailures: 3, MaxMFAFailures: 100})
		for range 3 {
			if _, _, err := g.login("bob", g.key("bob"), (&answer{code: g.wrong(testSecret)}).method()); err == nil {
				t.Fatal("wrong code accepted")
			}
		}
		if _, b := g.a.limit.banned(netip.MustParseAddr("127.0.0.1"), "bob", 0); !b {
			t.Fatal("3 wrong codes did not ban bob from the source")
		}
		if _, _, err := g.login("bob", g.key("bob"), (&answer{code: g.code(testSecret, 0)}).method()); err == nil {
			t.Fatal("right code accepted while bob is banned from the source")
		}
		if e := g.lastEvent("bob"); e.ErrClass != "banned" {
			t.Errorf("refusal %+v", e)
		}
		// Another account from the same source is not affected.
		if _, _, err := g.login("hr2", g.key("hr2"), (&answer{code: g.code(otherSecret, 0)}).method()); err != nil {
			t.Errorf("hr2 refused: %v", err)
		}
	})
}

// blockedAnswer is a challenge function that reports when the prompt was
// shown and answers only when released.
type blockedAnswer struct {
	prompted chan struct{}
	release  chan string
}

func newBlockedAnswer() *blockedAnswer {
	return &blockedAnswer{prompted: make(chan struct{}), release: make(chan string)}
}

func (b *blockedAnswer) challenge(_, _ string, _ []string, _ []bool) ([]string, error) {
	close(b.prompted)
	code, ok := <-b.release
	if !ok {
		return nil, errors.New("client went away")
	}
	return []string{code}, nil
}

// waitingAt starts a connection that passes the key step and then waits
// at the prompt; it returns the answer control and the login's outcome.
func (g *gw) waitingAt(user string, k testKey, addr string) (*blockedAnswer, chan error) {
	g.t.Helper()
	conn, ki, _, err := g.keyStep(user, k, addr)
	if err != nil || ki == nil {
		g.t.Fatalf("key step: %v", err)
	}
	b := newBlockedAnswer()
	done := make(chan error, 1)
	go func() {
		_, err := ki(conn, b.challenge)
		done <- err
	}()
	return b, done
}

func waitErr(t *testing.T, done chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the login did not finish")
		return nil
	}
}

func waitPrompted(t *testing.T, b *blockedAnswer) {
	t.Helper()
	select {
	case <-b.prompted:
	case <-time.After(10 * time.Second):
		t.Fatal("never prompted")
	}
}

// TestAnswerRechecksBanAndLock: a right code arriving on a connection
// that was waiting at the prompt when its source got banned (or the
// account's second factor got locked) is refused.
func TestAnswerRechecksBanAndLock(t *testing.T) {
	t.Run("ban", func(t *testing.T) {
		g := newGW(t, Lockout{MaxIPFailures: 100, MaxPairFailures: 2, MaxMFAFailures: 100})
		b, done := g.waitingAt("bob", g.keys["bob"], "10.7.0.1:5000")
		waitPrompted(t, b)
		for range 2 {
			if err := g.totpLogin("bob", g.keys["bob"], "10.7.0.1:5001", g.wrong(testSecret)); err == nil {
				t.Fatal("wrong code accepted")
			}
		}
		b.release <- g.code(testSecret, 0)
		if err := waitErr(t, done); err == nil {
			t.Fatal("right code accepted although the source got banned while the prompt was open")
		}
		if e := g.lastEvent("bob"); e.ErrClass != "banned" || !strings.Contains(e.Detail, "while the prompt was open") {
			t.Errorf("refusal %+v", e)
		}
		if len(g.events.oks("bob")) != 0 {
			t.Error("ok event")
		}
	})
	t.Run("lock", func(t *testing.T) {
		g := newGW(t, Lockout{MaxIPFailures: 100, MaxPairFailures: 100, MaxMFAFailures: 2})
		b, done := g.waitingAt("bob", g.keys["bob"], "10.7.0.1:5000")
		waitPrompted(t, b)
		for i := range 2 {
			if err := g.totpLogin("bob", g.keys["bob"], fmt.Sprintf("10.8.0.%d:5001", i), g.wrong(testSecret)); err == nil {
				t.Fatal("wrong code accepted")
			}
		}
		b.release <- g.code(testSecret, 0)
		if err := waitErr(t, done); err == nil {
			t.Fatal("right code accepted although the account got locked while the prompt was open")
		}
		if e := g.lastEvent("bob"); e.ErrClass != "mfa_locked" {
			t.Errorf("refusal %+v", e)
		}
	})
}

// TestPromptLimitPerAccount: at most MaxMFAPrompts connections of one
// account wait at the prompt; more are refused without a prompt (and
// without counting as failures); other accounts are not affected.
func TestPromptLimitPerAccount(t *testing.T) {
	g := newGW(t, Lockout{MaxIPFailures: 100, MaxPairFailures: 100, MaxMFAPrompts: 2})
	b1, d1 := g.waitingAt("bob", g.keys["bob"], "10.6.0.1:1")
	b2, d2 := g.waitingAt("bob", g.keys["bob"], "10.6.0.2:1")
	waitPrompted(t, b1)
	waitPrompted(t, b2)
	b3, d3 := g.waitingAt("bob", g.keys["bob"], "10.6.0.3:1")
	if err := waitErr(t, d3); err == nil {
		t.Fatal("third waiting connection logged in")
	}
	select {
	case <-b3.prompted:
		t.Error("third connection was prompted")
	default:
	}
	if e := g.lastEvent("bob"); e.ErrClass != "mfa_busy" {
		t.Errorf("refusal %+v", e)
	}
	if s := g.a.limit.mfa.peek("bob", g.clock.Now()); s != nil && s.count != 0 {
		t.Error("a busy refusal counted as a wrong code")
	}
	// Another account is not limited by bob's prompts.
	if err := g.totpLogin("hr2", g.keys["hr2"], "10.6.0.3:2", g.code(otherSecret, 0)); err != nil {
		t.Errorf("hr2: %v", err)
	}
	// A client that goes away frees its place.
	close(b1.release)
	if err := waitErr(t, d1); err == nil {
		t.Fatal("vanished client logged in")
	}
	b4, d4 := g.waitingAt("bob", g.keys["bob"], "10.6.0.4:1")
	waitPrompted(t, b4)
	b4.release <- g.code(testSecret, 0)
	if err := waitErr(t, d4); err != nil {
		t.Errorf("login after a place was freed: %v", err)
	}
	close(b2.release)
	waitErr(t, d2)
}

// TestSharedSourceUnknownNames: failures with unknown names ban the
// source for unknown names only; a user with a key of their own and no
// failures of their own from there still logs in (key-only and MFA), also
// with a wrong key offered first; a user with failures of their own from
// the source does not; the (user, source) ban still applies.
func TestSharedSourceUnknownNames(t *testing.T) {
	g := newGW(t, Lockout{MaxIPFailures: 3, MaxPairFailures: 3})
	stranger := newTestKey(t, "")
	for _, name := range []string{"admin", "root", "test"} {
		if _, _, err := g.login(name, ssh.PublicKeys(stranger.signer)); err == nil {
			t.Fatal("unknown user logged in")
		}
	}
	if _, b := g.a.limit.ipBanned(netip.MustParseAddr("127.0.0.1")); !b {
		t.Fatal("source not banned by unknown names")
	}
	// Name guessing goes on: refused, not counted, no new ban.
	if _, _, err := g.login("oracle", ssh.PublicKeys(stranger.signer)); err == nil {
		t.Fatal("unknown user logged in")
	}
	if e := g.lastEvent(`oracle`); e.ErrClass != "banned" || strings.Contains(e.Detail, "banned for") {
		t.Errorf("unknown name during the ban: %+v", e)
	}
	// Real users with clean records log in from the shared address.
	if p, _, err := g.login("alice", g.key("alice")); err != nil || p.User != "alice" {
		t.Fatalf("alice locked out by other people's unknown names: %v", err)
	}
	if _, _, err := g.login("bob", g.key("bob"), (&answer{code: g.code(testSecret, 0)}).method()); err != nil {
		t.Fatalf("bob (MFA) locked out by other people's unknown names: %v", err)
	}
	// An agent offering a wrong key first: that key is this connection's
	// own and is taken back when it logs in.
	g.clock.Add(time.Second)
	if _, _, err := g.login("alice", ssh.PublicKeys(g.keys["spare"].signer, g.keys["alice"].signer)); err != nil {
		t.Fatalf("alice with a wrong key offered first: %v", err)
	}
	if n := g.a.limit.pairs.peek(pairKey{"alice", netip.MustParseAddr("127.0.0.1")}, g.clock.Now()).recent(g.clock.Now(), &g.a.limit.pairs.pol); n != 0 {
		t.Errorf("alice's forgiven key still counted: %d", n)
	}
	// hr2 fails on her own from there: she is refused while the source
	// ban lasts, even with the right key and code.
	if _, _, err := g.login("hr2", g.key("hr2"), (&answer{code: g.wrong(otherSecret)}).method()); err == nil {
		t.Fatal("wrong code accepted")
	}
	if _, _, err := g.login("hr2", g.key("hr2"), (&answer{code: g.code(otherSecret, 0)}).method()); err == nil {
		t.Fatal("hr2 logged in from the banned source after failures of her own")
	}
	if e := g.lastEvent("hr2"); e.ErrClass != "banned" {
		t.Errorf("hr2 refusal %+v", e)
	}
	// The pair ban: alice's own failures from a source without a source
	// ban still ban alice there (and only alice).
	other := "10.5.0.1:1"
	for range 3 {
		if _, _, p, _ := g.keyStep("alice", g.keys["spare"], other); p != nil {
			t.Fatal("wrong key accepted")
		}
	}
	if _, _, _, err := g.keyStep("alice", g.keys["alice"], other); err == nil {
		t.Fatal("alice logged in while banned from the source by her own failures")
	}
	if _, _, p, err := g.keyStep("carol", g.keys["carol"], other); err != nil || p == nil {
		t.Errorf("carol refused at alice's banned source: %v", err)
	}
}

// TestEnrolledUserAlwaysAskedForCode: a user with a TOTP secret needs the
// code although the role does not require MFA ("user add --mfa").
func TestEnrolledUserAlwaysAskedForCode(t *testing.T) {
	g := newGW(t, Lockout{MaxIPFailures: 100, MaxPairFailures: 100})
	set := g.db.Users().Clone()
	secret, err := RotateTOTP(set, "alice") // applicant: mfa = false
	if err != nil {
		t.Fatal(err)
	}
	g.codes = append(g.codes, secret)
	if err := SaveUsers(g.path, set); err != nil {
		t.Fatal(err)
	}
	if err := g.db.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := g.login("alice", g.key("alice")); err == nil {
		t.Fatal("enrolled user logged in with the key alone")
	}
	if len(g.events.oks("alice")) != 0 {
		t.Fatal("ok event without a code")
	}
	if _, _, err := g.login("alice", g.key("alice"), (&answer{code: g.wrong(secret)}).method()); err == nil {
		t.Fatal("wrong code accepted")
	}
	ans := &answer{code: g.code(secret, 0)}
	p, _, err := g.login("alice", g.key("alice"), ans.method())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(p.Methods, ",") != "publickey,keyboard-interactive" || len(ans.asked) != 1 {
		t.Errorf("methods %v, prompts %q", p.Methods, ans.asked)
	}
	// Users without a secret in the same role keep logging in with a key.
	if _, err := g.callbackLogin("frank", g.keys["frank"], "10.1.1.1:1"); err != nil {
		t.Errorf("frank: %v", err)
	}
}
