package authn

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/vfs"
)

const otherSecret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ" // hr2's seed

var applicantPerms = vfs.PermSet(vfs.OpList | vfs.OpStat | vfs.OpUpload | vfs.OpOverwrite |
	vfs.OpDelete | vfs.OpRename | vfs.OpMkdir | vfs.OpRmdir | vfs.OpSetstat)

func testRoles() map[string]*Role {
	ten := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	return map[string]*Role{
		"applicant": {Name: "applicant", Storage: "data", Home: "user/{name}/", Perms: applicantPerms},
		"hr":        {Name: "hr", Storage: "data", Home: "user/", Perms: vfs.PermAll, MFA: true, DownloadFrom: ten},
		"partner":   {Name: "partner", Storage: "data", Home: "partner/{name}/", Perms: vfs.PermAll, AllowFrom: ten},
		"auditor":   {Name: "auditor", Storage: "audit", Perms: vfs.PermSet(vfs.OpList | vfs.OpStat | vfs.OpDownload)},
	}
}

// eventLog collects audit events.
type eventLog struct {
	mu sync.Mutex
	ev []audit.Event
}

func (l *eventLog) Record(e audit.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ev = append(l.ev, e)
}

func (l *eventLog) all() []audit.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]audit.Event(nil), l.ev...)
}

func (l *eventLog) reset() {
	l.mu.Lock()
	l.ev = nil
	l.mu.Unlock()
}

// failures returns the error classes of failure events for user.
func (l *eventLog) failures(user string) []string {
	var out []string
	for _, e := range l.all() {
		if e.Result == "failure" && e.User == user {
			out = append(out, e.ErrClass)
		}
	}
	return out
}

func (l *eventLog) oks(user string) []audit.Event {
	var out []audit.Event
	for _, e := range l.all() {
		if e.Result == "ok" && e.User == user {
			out = append(out, e)
		}
	}
	return out
}

// gw is a test gateway: an ssh.Server on loopback configured by an
// Authenticator, reporting the outcome of every connection.
type gw struct {
	t       *testing.T
	a       *Authenticator
	db      *UserDB
	path    string
	clock   *fakeClock
	events  *eventLog
	logs    *syncBuffer
	cfg     *ssh.ServerConfig
	addr    string
	hostKey ssh.PublicKey
	results chan srvResult
	keys    map[string]testKey
	codes   []string // every TOTP code used (must never be logged)
}

type srvResult struct {
	p   *Principal
	err error
}

func newGW(t *testing.T, lock Lockout) *gw {
	t.Helper()
	g := &gw{t: t, clock: newFakeClock(t0), events: &eventLog{}, logs: &syncBuffer{},
		results: make(chan srvResult, 64), keys: map[string]testKey{}}
	for _, n := range []string{"alice", "bob", "hr2", "carol", "dave", "erin", "frank", "spare"} {
		g.keys[n] = newTestKey(t, n+"@test")
	}
	g.path = writeUsers(t, t.TempDir(), fmt.Sprintf(`
user "alice" {
  role = "applicant"
  keys = [%q]
}
user "bob" {
  role        = "hr"
  keys        = [%q]
  totp_secret = %q
}
user "hr2" {
  role        = "hr"
  keys        = [%q]
  totp_secret = %q
}
user "carol" {
  role = "partner"
  keys = [%q]
}
user "dave" {
  role     = "applicant"
  keys     = [%q]
  disabled = true
}
user "erin" {
  role       = "applicant"
  keys       = [%q]
  expires_at = "2026-02-01T00:00:00Z"
}
user "frank" {
  role       = "applicant"
  keys       = [%q]
  allow_from = ["10.0.0.0/8"]
}
`, g.keys["alice"].line, g.keys["bob"].line, testSecret, g.keys["hr2"].line, otherSecret,
		g.keys["carol"].line, g.keys["dave"].line, g.keys["erin"].line, g.keys["frank"].line))
	var err error
	if g.db, err = NewUserDB(g.path, testLogger(g.logs)); err != nil {
		t.Fatal(err)
	}
	g.a = New(Options{Users: g.db, Roles: testRoles(), Lockout: lock, Log: testLogger(g.logs),
		Audit: g.events, Now: g.clock.Now, Issuer: "sftpgw-test"})

	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	hostSigner, _ := ssh.NewSignerFromKey(hostPriv)
	g.hostKey = hostSigner.PublicKey()
	g.cfg = &ssh.ServerConfig{}
	g.cfg.AddHostKey(hostSigner)
	g.a.Configure(g.cfg)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	g.addr = ln.Addr().String()
	go g.serve(ln)
	t.Cleanup(func() { g.assertNoSecrets() })
	return g
}

func (g *gw) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			sc, chans, reqs, err := ssh.NewServerConn(c, g.cfg)
			if err != nil {
				g.results <- srvResult{err: err}
				return
			}
			p, err := g.a.Principal(sc.Permissions)
			g.results <- srvResult{p: p, err: err}
			go ssh.DiscardRequests(reqs)
			go func() {
				for ch := range chans {
					ch.Reject(ssh.Prohibited, "test server")
				}
			}()
			sc.Wait()
		}()
	}
}

// login connects as user and returns what the server concluded, plus the
// client's local address and error.
func (g *gw) login(user string, auth ...ssh.AuthMethod) (*Principal, net.Addr, error) {
	g.t.Helper()
	cc := &ssh.ClientConfig{User: user, Auth: auth, HostKeyCallback: ssh.FixedHostKey(g.hostKey), Timeout: 5 * time.Second}
	c, clientErr := ssh.Dial("tcp", g.addr, cc)
	var local net.Addr
	if clientErr == nil {
		local = c.LocalAddr()
		c.Close()
	}
	var r srvResult
	select {
	case r = <-g.results:
	case <-time.After(10 * time.Second):
		g.t.Fatal("server reported nothing")
	}
	if (clientErr == nil) != (r.err == nil) {
		g.t.Fatalf("client and server disagree: client %v, server %v", clientErr, r.err)
	}
	if clientErr != nil {
		return nil, nil, clientErr
	}
	return r.p, local, nil
}

func (g *gw) key(name string) ssh.AuthMethod { return ssh.PublicKeys(g.keys[name].signer) }

// code is the current TOTP code for secret on the gateway's clock.
func (g *gw) code(secret string, offsetSteps int64) string {
	_, key, _ := ParseTOTPSecret(secret)
	c := hotp(key, uint64(totpStep(g.clock.Now())+offsetSteps), totpDigits)
	g.codes = append(g.codes, c)
	return c
}

// answer is a keyboard-interactive client that answers the TOTP prompt
// and records what it was asked.
type answer struct {
	code    string
	asked   []string
	echoes  []bool
	invoked int
}

func (a *answer) method() ssh.AuthMethod {
	return ssh.KeyboardInteractive(func(name, instr string, qs []string, echos []bool) ([]string, error) {
		a.invoked++
		if len(qs) == 0 {
			return nil, nil
		}
		a.asked, a.echoes = qs, echos
		return []string{a.code}, nil
	})
}

// assertNoSecrets checks that no TOTP seed or code reached logs or audit.
func (g *gw) assertNoSecrets() {
	blob, _ := json.Marshal(g.events.all())
	text := string(blob) + g.logs.String()
	for _, s := range append([]string{testSecret, otherSecret}, g.codes...) {
		if strings.Contains(text, s) {
			g.t.Errorf("secret %q found in logs or audit", s)
		}
	}
	for _, k := range g.keys {
		if b64 := strings.Fields(k.line)[1]; strings.Contains(text, b64) {
			g.t.Errorf("key material in logs or audit")
		}
	}
}

func TestE2EApplicantKey(t *testing.T) {
	g := newGW(t, Lockout{})
	p, local, err := g.login("alice", g.key("alice"))
	if err != nil {
		t.Fatal(err)
	}
	want := &Principal{User: "alice", Role: "applicant", Storage: "data", Home: "user/alice/",
		Perms: applicantPerms, KeyFP: g.keys["alice"].fp(), Methods: []string{"publickey"}}
	if p.User != want.User || p.Role != want.Role || p.Storage != want.Storage || p.Home != want.Home ||
		p.Perms != want.Perms || p.KeyFP != want.KeyFP || strings.Join(p.Methods, ",") != "publickey" ||
		p.DownloadDenied != "" || p.DeleteAfterDownload {
		t.Errorf("principal %+v", p)
	}
	if p.Perms.Has(vfs.OpDownload) {
		t.Error("applicant may download")
	}
	if p.Client != local.(*net.TCPAddr).AddrPort() {
		t.Errorf("client %v, want %v", p.Client, local)
	}
	oks := g.events.oks("alice")
	if len(oks) != 1 {
		t.Fatalf("ok events: %+v", g.events.all())
	}
	e := oks[0]
	if e.Kind != "auth" || e.Method != "publickey" || e.KeyFP != p.KeyFP || e.Role != "applicant" ||
		len(e.Session) != 16 || !strings.HasPrefix(e.ClientVer, "SSH-2.0-") || e.Client != p.Client.String() {
		t.Errorf("audit event %+v", e)
	}
	if f := g.events.failures("alice"); len(f) != 0 {
		t.Errorf("unexpected failures %v", f)
	}
}

func TestE2EWrongKeyAndUnknownUserLookAlike(t *testing.T) {
	g := newGW(t, Lockout{})
	_, _, errBadKey := g.login("alice", g.key("spare"))
	if errBadKey == nil {
		t.Fatal("wrong key accepted")
	}
	_, _, errUnknown := g.login("mallory", g.key("spare"))
	if errUnknown == nil {
		t.Fatal("unknown user accepted")
	}
	if errBadKey.Error() != errUnknown.Error() {
		t.Errorf("client can tell unknown user from wrong key:\n%v\n%v", errBadKey, errUnknown)
	}
	if f := g.events.failures("alice"); len(f) != 1 || f[0] != "bad_key" {
		t.Errorf("alice failures %v", f)
	}
	if f := g.events.failures("mallory"); len(f) != 1 || f[0] != "unknown_user" {
		t.Errorf("mallory failures %v", f)
	}
	for _, e := range g.events.all() {
		if e.KeyFP != g.keys["spare"].fp() {
			t.Errorf("failure event without the offered key's fingerprint: %+v", e)
		}
	}
}

func TestE2EHRTwoFactors(t *testing.T) {
	g := newGW(t, Lockout{MaxIPFailures: 100, MaxPairFailures: 100})

	t.Run("key without code", func(t *testing.T) {
		if _, _, err := g.login("bob", g.key("bob")); err == nil {
			t.Fatal("HR logged in with the key alone")
		}
		if oks := g.events.oks("bob"); len(oks) != 0 {
			t.Fatalf("ok event without TOTP: %+v", oks)
		}
	})

	var used string
	t.Run("key and right code", func(t *testing.T) {
		ans := &answer{code: g.code(testSecret, 0)}
		used = ans.code
		p, _, err := g.login("bob", g.key("bob"), ans.method())
		if err != nil {
			t.Fatal(err)
		}
		if len(ans.asked) != 1 || ans.asked[0] != "Verification code: " || ans.echoes[0] {
			t.Errorf("prompt %q echo %v", ans.asked, ans.echoes)
		}
		if strings.Join(p.Methods, ",") != "publickey,keyboard-interactive" || p.Home != "user/" || p.Role != "hr" {
			t.Errorf("principal %+v", p)
		}
		// 127.0.0.1 is outside hr's download_from (10.0.0.0/8).
		if p.Perms.Has(vfs.OpDownload) || p.Perms != vfs.PermAll.Without(vfs.OpDownload) || p.DownloadDenied == "" {
			t.Errorf("download not removed: %v %q", p.Perms.Names(), p.DownloadDenied)
		}
		oks := g.events.oks("bob")
		if len(oks) != 1 || oks[0].Method != "publickey,keyboard-interactive" || oks[0].KeyFP != g.keys["bob"].fp() {
			t.Errorf("ok events %+v", oks)
		}
	})

	t.Run("replayed code", func(t *testing.T) {
		g.events.reset()
		ans := &answer{code: used}
		if _, _, err := g.login("bob", g.key("bob"), ans.method()); err == nil {
			t.Fatal("replayed code accepted")
		}
		if f := g.events.failures("bob"); len(f) != 1 || f[0] != "replayed_totp" {
			t.Errorf("failures %v", f)
		}
	})

	t.Run("wrong code", func(t *testing.T) {
		g.events.reset()
		g.clock.Add(time.Minute) // fresh step, so only wrongness can fail it
		right := g.code(testSecret, 0)
		wrong := fmt.Sprintf("%06d", (atoi(right)+1)%1000000)
		ans := &answer{code: wrong}
		if _, _, err := g.login("bob", g.key("bob"), ans.method()); err == nil {
			t.Fatal("wrong code accepted")
		}
		if f := g.events.failures("bob"); len(f) != 1 || f[0] != "bad_totp" {
			t.Errorf("failures %v", f)
		}
	})

	t.Run("code of another user", func(t *testing.T) {
		g.events.reset()
		ans := &answer{code: g.code(otherSecret, 0)} // hr2's valid code
		if _, _, err := g.login("bob", g.key("bob"), ans.method()); err == nil {
			t.Fatal("bob logged in with hr2's code")
		}
		if f := g.events.failures("bob"); len(f) != 1 || f[0] != "bad_totp" {
			t.Errorf("failures %v", f)
		}
	})

	t.Run("skewed code", func(t *testing.T) {
		g.clock.Add(time.Minute)
		ans := &answer{code: g.code(testSecret, -1)}
		if _, _, err := g.login("bob", g.key("bob"), ans.method()); err != nil {
			t.Fatalf("code of the previous step refused: %v", err)
		}
	})
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

func TestE2EKeyboardInteractiveAloneNeverLogsIn(t *testing.T) {
	g := newGW(t, Lockout{})
	if g.cfg.KeyboardInteractiveCallback != nil || g.cfg.PasswordCallback != nil || g.cfg.NoClientAuth {
		t.Fatal("Configure left another way in")
	}
	ans := &answer{code: g.code(testSecret, 0)}
	if _, _, err := g.login("bob", ans.method()); err == nil {
		t.Fatal("keyboard-interactive alone logged in")
	}
	if ans.invoked != 0 {
		t.Error("the server offered keyboard-interactive before a key")
	}
	if _, _, err := g.login("bob", ssh.Password("hunter2")); err == nil {
		t.Fatal("password logged in")
	}
	// A client that ignores the advertised methods (password guesser) is
	// audited and counted; the library refuses it before any callback.
	conn := &fakeConn{user: "bob", addr: &net.TCPAddr{IP: net.ParseIP("192.0.2.50"), Port: 4000}, id: []byte("pw-guesser-session-id")}
	g.cfg.AuthLogCallback(conn, "keyboard-interactive", errors.New("ssh: keyboard-interactive auth not configured"))
	g.cfg.AuthLogCallback(conn, "password", errors.New("ssh: password auth not configured"))
	if f := g.events.failures("bob"); len(f) != 2 || f[0] != "method_not_allowed" || f[1] != "method_not_allowed" {
		t.Errorf("failures %v", f)
	}
	if s := g.a.limit.ips.peek(netip.MustParseAddr("192.0.2.50"), g.clock.Now()); s == nil || s.count != 2 {
		t.Error("method_not_allowed not counted towards lockout")
	}
}

func TestE2EDisabledAndExpired(t *testing.T) {
	g := newGW(t, Lockout{})
	if _, _, err := g.login("dave", g.key("dave")); err == nil {
		t.Error("disabled user logged in")
	}
	if _, _, err := g.login("erin", g.key("erin")); err == nil {
		t.Error("expired user logged in")
	}
	if f := g.events.failures("dave"); len(f) != 1 || f[0] != "disabled" {
		t.Errorf("dave failures %v", f)
	}
	var expired *audit.Event
	for _, e := range g.events.all() {
		if e.User == "erin" && e.ErrClass == "expired" {
			expired = &e
		}
	}
	if expired == nil || !strings.Contains(expired.Detail, "account expired") || expired.KeyFP != g.keys["erin"].fp() {
		t.Errorf("expired event %+v", expired)
	}
}

func TestE2ERemovedUserAfterReload(t *testing.T) {
	g := newGW(t, Lockout{})
	if _, _, err := g.login("alice", g.key("alice")); err != nil {
		t.Fatal(err)
	}
	set := g.db.Users().Clone()
	set.Remove("alice")
	if err := SaveUsers(g.path, set); err != nil {
		t.Fatal(err)
	}
	if err := g.db.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := g.login("alice", g.key("alice")); err == nil {
		t.Fatal("removed user logged in")
	}
	if f := g.events.failures("alice"); len(f) != 1 || f[0] != "unknown_user" {
		t.Errorf("failures %v", f)
	}
}

func TestE2EAddressRestrictions(t *testing.T) {
	g := newGW(t, Lockout{})
	if _, _, err := g.login("carol", g.key("carol")); err == nil {
		t.Error("partner logged in from outside its allow_from")
	}
	if _, _, err := g.login("frank", g.key("frank")); err == nil {
		t.Error("user-level allow_from ignored")
	}
	for _, u := range []string{"carol", "frank"} {
		if f := g.events.failures(u); len(f) != 1 || f[0] != "address_not_allowed" {
			t.Errorf("%s failures %v", u, f)
		}
	}
	// From inside 10.0.0.0/8 (unit level: loopback is the only address a
	// test can really connect from).
	p, err := g.callbackLogin("carol", g.keys["carol"], "10.20.30.40:5555")
	if err != nil {
		t.Fatal(err)
	}
	if p.Home != "partner/carol/" || !p.Perms.Has(vfs.OpDownload) {
		t.Errorf("principal %+v", p)
	}
}

func TestE2ELockout(t *testing.T) {
	g := newGW(t, Lockout{MaxIPFailures: 3, BaseBan: time.Minute})
	for range 3 {
		if _, _, err := g.login("alice", g.key("spare")); err == nil {
			t.Fatal("wrong key accepted")
		}
	}
	if _, b := g.a.limit.ipBanned(netip.MustParseAddr("127.0.0.1")); !b {
		t.Fatal("source not banned after 3 failures")
	}
	// alice's own failures came from this source: her right key is
	// refused there too (and that refusal does not extend the ban).
	if _, _, err := g.login("alice", g.key("alice")); err == nil {
		t.Fatal("banned source logged in")
	}
	if _, err := g.callbackLogin("alice", g.keys["alice"], "127.0.0.1:6000"); err == nil {
		t.Fatal("callbacks ignored the ban")
	}
	if f := g.events.failures("alice"); len(f) != 5 || f[3] != "banned" || f[4] != "banned" {
		t.Errorf("failures %v", f)
	}
	// Another address is not affected at all.
	if _, b := g.a.limit.ipBanned(netip.MustParseAddr("10.1.2.3")); b {
		t.Fatal("ban leaked to another address")
	}
	if p, err := g.callbackLogin("alice", g.keys["alice"], "10.1.2.3:40000"); err != nil || p.User != "alice" {
		t.Fatalf("other address refused: %v", err)
	}
	if !strings.Contains(g.logs.String(), "login ban") {
		t.Error("ban not logged")
	}
	// The ban expires.
	g.clock.Add(time.Minute)
	if _, _, err := g.login("alice", g.key("alice")); err != nil {
		t.Fatalf("still banned after the ban ended: %v", err)
	}
}

func TestE2EOfferedKeysCountOncePerConnection(t *testing.T) {
	g := newGW(t, Lockout{MaxIPFailures: 3})
	lo := netip.MustParseAddr("127.0.0.1")
	count := func() int {
		if s := g.a.limit.ips.peek(lo, g.clock.Now()); s != nil {
			return s.count
		}
		return 0
	}
	// An agent with three wrong keys: one failure, not three.
	wrong := ssh.PublicKeys(newTestKey(t, "").signer, newTestKey(t, "").signer, g.keys["spare"].signer)
	if _, _, err := g.login("alice", wrong); err == nil {
		t.Fatal("accepted")
	}
	if n := count(); n != 1 {
		t.Fatalf("counted %d failures for one connection", n)
	}
	// Wrong key first, right key second (OpenSSH with an agent): the
	// connection succeeds and its rejected key is not held against it.
	for range 5 {
		both := ssh.PublicKeys(g.keys["spare"].signer, g.keys["alice"].signer)
		if _, _, err := g.login("alice", both); err != nil {
			t.Fatalf("login with a wrong key offered first: %v", err)
		}
	}
	if n := count(); n != 1 {
		t.Errorf("successful logins left %d failures (want the 1 from before)", n)
	}
}

func TestE2ELoginFailureBurstWarns(t *testing.T) {
	g := newGW(t, Lockout{MaxUserFailures: 3, MaxIPFailures: 100, MaxPairFailures: 100})
	for i := range 3 {
		conn := &fakeConn{user: "alice", addr: &net.TCPAddr{IP: net.IPv4(203, 0, 113, byte(i+1)), Port: 1}, id: []byte{byte(i)}}
		if _, err := g.cfg.PublicKeyCallback(conn, g.keys["spare"].signer.PublicKey()); err == nil {
			t.Fatal("wrong key accepted")
		}
	}
	if !strings.Contains(g.logs.String(), "login_failure_burst") {
		t.Errorf("no warning:\n%s", g.logs.String())
	}
	// The third failure's audit event carries the burst (alerts match on it).
	bursts := 0
	for _, e := range g.events.all() {
		if strings.Contains(e.Detail, "login failure burst") {
			bursts++
		}
	}
	if bursts != 1 {
		t.Errorf("%d audit events note the burst, want 1", bursts)
	}
	// ...and alice herself is not locked out.
	if _, _, err := g.login("alice", g.key("alice")); err != nil {
		t.Errorf("burst locked the user out: %v", err)
	}
}

// TestCallbacksGrantNothingBeforeSignature pins the CVE-2024-45337 rule:
// accepting a key offer yields Permissions without a principal, and an
// MFA role's verified key yields only a partial success.
func TestCallbacksGrantNothingBeforeSignature(t *testing.T) {
	g := newGW(t, Lockout{})
	conn := &fakeConn{user: "bob", addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 9), Port: 2}, id: []byte("s1")}
	pub := g.keys["bob"].signer.PublicKey()
	perms, err := g.cfg.PublicKeyCallback(conn, pub)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.a.Principal(perms); err == nil {
		t.Fatal("the offer callback granted a principal")
	}
	if len(g.events.all()) != 0 {
		t.Error("an accepted offer was audited as something")
	}
	perms, err = g.cfg.VerifiedPublicKeyCallback(conn, pub, perms, ssh.KeyAlgoED25519)
	var partial *ssh.PartialSuccessError
	if !errors.As(err, &partial) || perms != nil || partial.Next.KeyboardInteractiveCallback == nil ||
		partial.Next.PublicKeyCallback != nil || partial.Next.PasswordCallback != nil {
		t.Fatalf("MFA key step: perms %v, err %v", perms, err)
	}
	// The second factor for this connection: right code, from inside
	// download_from, so download stays.
	code := g.code(testSecret, 0)
	perms, err = partial.Next.KeyboardInteractiveCallback(conn, func(_, _ string, q []string, _ []bool) ([]string, error) {
		return []string{code}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	p, err := g.a.Principal(perms)
	if err != nil || !p.Perms.Has(vfs.OpDownload) || p.DownloadDenied != "" || p.Client.String() != "10.0.0.9:2" {
		t.Fatalf("principal %+v, %v", p, err)
	}
	if _, err := g.a.Principal(nil); err == nil {
		t.Error("nil permissions gave a principal")
	}
	// Roles can be swapped at run time.
	roles := testRoles()
	roles["hr"].Home = "hr-home/"
	g.a.SetRoles(roles)
	conn.id = []byte("s2")
	g.clock.Add(time.Minute)
	p, err = g.callbackLogin("bob", g.keys["bob"], "10.0.0.9:3")
	if err != nil || p.Home != "hr-home/" {
		t.Errorf("after SetRoles: %+v %v", p, err)
	}
}

// callbackLogin drives the callbacks directly, as a connection from addr.
func (g *gw) callbackLogin(user string, k testKey, addr string) (*Principal, error) {
	conn := &fakeConn{user: user, addr: net.TCPAddrFromAddrPort(netip.MustParseAddrPort(addr)), id: []byte("cb-" + addr + user)}
	pub := k.signer.PublicKey()
	perms, err := g.cfg.PublicKeyCallback(conn, pub)
	if err != nil {
		return nil, err
	}
	perms, err = g.cfg.VerifiedPublicKeyCallback(conn, pub, perms, pub.Type())
	var partial *ssh.PartialSuccessError
	if errors.As(err, &partial) {
		_, seed, _ := ParseTOTPSecret(testSecret)
		code := hotp(seed, uint64(totpStep(g.clock.Now())), totpDigits)
		g.codes = append(g.codes, code)
		perms, err = partial.Next.KeyboardInteractiveCallback(conn, func(_, _ string, _ []string, _ []bool) ([]string, error) {
			return []string{code}, nil
		})
	}
	if err != nil {
		return nil, err
	}
	return g.a.Principal(perms)
}

// fakeConn is ssh.ConnMetadata for driving callbacks without a network.
type fakeConn struct {
	user string
	addr net.Addr
	id   []byte
}

func (f *fakeConn) User() string          { return f.user }
func (f *fakeConn) SessionID() []byte     { return f.id }
func (f *fakeConn) ClientVersion() []byte { return []byte("SSH-2.0-fake") }
func (f *fakeConn) ServerVersion() []byte { return []byte("SSH-2.0-sftpgw") }
func (f *fakeConn) RemoteAddr() net.Addr  { return f.addr }
func (f *fakeConn) LocalAddr() net.Addr   { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 22} }

// TestE2EReplayedTOTPSaysSo: a code already used (a second scripted login
// within one step) is not failed blind: the client is asked again with an
// instruction saying why, a fresh code then logs in, and the replay does
// not count towards a ban.
func TestE2EReplayedTOTPSaysSo(t *testing.T) {
	g := newGW(t, Lockout{MaxIPFailures: 1, MaxPairFailures: 1, Window: time.Hour, BaseBan: time.Hour, MaxBan: time.Hour})
	first := g.code(testSecret, 0)
	if _, _, err := g.login("bob", g.key("bob"), (&answer{code: first}).method()); err != nil {
		t.Fatal(err)
	}

	var instructions []string
	kbd := ssh.KeyboardInteractive(func(name, instr string, qs []string, echos []bool) ([]string, error) {
		if len(qs) == 0 {
			return nil, nil
		}
		instructions = append(instructions, instr)
		if len(instructions) == 1 {
			return []string{first}, nil // same step, same code
		}
		g.clock.Add(30 * time.Second) // the client waited for the next code
		return []string{g.code(testSecret, 0)}, nil
	})
	g.events.reset()
	if _, _, err := g.login("bob", g.key("bob"), kbd); err != nil {
		t.Fatalf("fresh code after the replay notice refused: %v", err)
	}
	if len(instructions) != 2 || instructions[0] != "" ||
		!strings.Contains(instructions[1], "This code was already used: wait for the next one") {
		t.Errorf("instructions %q", instructions)
	}
	if f := g.events.failures("bob"); len(f) != 0 {
		t.Errorf("the replay was recorded as a failure: %v", f)
	}

	// A client that keeps sending the used code fails with replayed_totp,
	// and that does not ban it (MaxPairFailures 1 would).
	g.events.reset()
	used := g.code(testSecret, 0)
	stuck := &answer{code: used}
	if _, _, err := g.login("bob", g.key("bob"), stuck.method()); err == nil {
		t.Fatal("replayed code accepted")
	}
	if stuck.invoked != 1+totpReplayAsks {
		t.Errorf("asked %d times, want %d", stuck.invoked, 1+totpReplayAsks)
	}
	if f := g.events.failures("bob"); len(f) != 1 || f[0] != "replayed_totp" {
		t.Errorf("failures %v", f)
	}
	g.clock.Add(30 * time.Second)
	if _, _, err := g.login("bob", g.key("bob"), (&answer{code: g.code(testSecret, 0)}).method()); err != nil {
		t.Errorf("banned after replays: %v", err)
	}
}
