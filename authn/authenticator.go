package authn

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/crypto/ssh"

	"github.com/sftpgw/sftpgw/audit"
)

// Options configures an Authenticator.
type Options struct {
	Users   *UserDB          // nil: nobody can log in
	Roles   map[string]*Role // by name
	Lockout Lockout          // zero fields take defaults
	Log     hclog.Logger
	Audit   audit.Recorder
	Now     func() time.Time // tests inject a clock; default time.Now
	Issuer  string           // shown as the name of the TOTP prompt; default "sftpgw"
}

// Authenticator implements the gateway's login policy as x/crypto/ssh
// server callbacks.
type Authenticator struct {
	users  *UserDB
	roles  atomic.Pointer[map[string]*Role]
	limit  *limiter
	totp   *totpVerifier
	conns  *connTable
	waits  *promptGate
	log    hclog.Logger
	audit  audit.Recorder
	now    func() time.Time
	issuer string
}

// errDenied is the only error a client ever sees: unknown user, wrong key,
// disabled account or bad code must be indistinguishable from outside.
var errDenied = errors.New("permission denied")

// totpPrompt is the keyboard-interactive question of the second factor.
const totpPrompt = "Verification code: "

// totpReplayedInstruction is shown when a code was already used; the client
// gets totpReplayAsks more tries before the login fails.
const (
	totpReplayedInstruction = "This code was already used: wait for the next one (a new code every 30 seconds), then enter it."
	totpReplayAsks          = 2
)

// New returns an Authenticator.
func New(o Options) *Authenticator {
	if o.Log == nil {
		o.Log = hclog.NewNullLogger()
	}
	if o.Audit == nil {
		o.Audit = audit.Discard
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Issuer == "" {
		o.Issuer = "sftpgw"
	}
	a := &Authenticator{
		users: o.Users, limit: newLimiter(o.Lockout, o.Now), totp: newTOTPVerifier(),
		conns: newConnTable(), waits: &promptGate{max: o.Lockout.withDefaults().MaxMFAPrompts, n: map[string]int{}},
		log: o.Log, audit: o.Audit, now: o.Now, issuer: o.Issuer,
	}
	a.SetRoles(o.Roles)
	return a
}

// SetRoles atomically replaces the roles (configuration reload). Logins in
// progress keep the role they started with. Roles are copied.
func (a *Authenticator) SetRoles(roles map[string]*Role) {
	m := make(map[string]*Role, len(roles))
	for name, r := range roles {
		if r == nil {
			continue
		}
		c := r.clone()
		if c.Name == "" {
			c.Name = name
		}
		if _, err := c.HomeFor("probe"); err != nil {
			a.log.Error("role home is invalid; logins with this role will be refused", "role", name, "error", err)
		}
		m[name] = c
	}
	a.roles.Store(&m)
}

func (a *Authenticator) role(name string) (*Role, bool) {
	r, ok := (*a.roles.Load())[name]
	return r, ok
}

// Configure installs the callbacks on cfg. It also switches off every
// other way in: no "none", no password, and keyboard-interactive is only
// offered as the second step after a verified key (see verifiedKey).
// MaxAuthTries defaults to 6; an unlimited (negative) value is also
// replaced, since per-connection limits are part of the lockout design.
func (a *Authenticator) Configure(cfg *ssh.ServerConfig) {
	cfg.NoClientAuth = false
	cfg.NoClientAuthCallback = nil
	cfg.PasswordCallback = nil
	cfg.KeyboardInteractiveCallback = nil
	cfg.GSSAPIWithMICConfig = nil
	cfg.PublicKeyCallback = a.publicKey
	cfg.VerifiedPublicKeyCallback = a.verifiedKey
	prev := cfg.AuthLogCallback
	cfg.AuthLogCallback = func(c ssh.ConnMetadata, method string, err error) {
		a.authLog(c, method, err)
		if prev != nil {
			prev(c, method, err)
		}
	}
	if cfg.MaxAuthTries <= 0 {
		cfg.MaxAuthTries = 6
	}
}

// Banned reports whether a login of user (a real account with a verified
// key; "" for any name) from addr would be refused by a ban now, and until
// when. Bans are enforced during authentication, not before the
// handshake: see Lockout.
func (a *Authenticator) Banned(addr net.Addr, user string) (time.Time, bool) {
	ap, ok := clientAddr(addr)
	if !ok {
		return time.Time{}, false
	}
	return a.limit.banned(ap.Addr(), user, 0)
}

// publicKey answers "would this key be accepted?" (also for the client's
// unsigned query). It deliberately grants nothing: x/crypto may call it
// for keys that are never used to sign (CVE-2024-45337), so every decision
// is taken in verifiedKey, after the signature was checked.
func (a *Authenticator) publicKey(c ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	u, known := a.users.Lookup(c.User())
	if known {
		if _, ok := u.FindKey(key); ok {
			return &ssh.Permissions{}, nil
		}
	}
	at := a.newAttempt(c, "publickey")
	at.keyFP = ssh.FingerprintSHA256(key)
	f := failure{class: "unknown_user", detail: "public key offered for an unknown user"}
	if known {
		f = failure{class: "bad_key", detail: "public key offered is not one of the user's keys", user: u.Name, role: u.Role}
	} else if at.clientOK {
		// A banned source is not cut off before the handshake (a real
		// user may share its address), but unknown names get nothing more.
		if until, banned := a.limit.ipBanned(at.client.Addr()); banned {
			f.class, f.detail = "banned", "unknown user refused while the source is banned, until "+until.UTC().Format(time.RFC3339)
			return nil, a.fail(at, f)
		}
	}
	// OpenSSH offers every key it has, one after the other: count one
	// rejected key per connection, not one per key, and remember what was
	// counted so a login that then succeeds can take it back.
	if at.clientOK {
		a.conns.update(at.id, a.now(), func(s *connState) {
			if !s.keyFailCounted {
				s.keyFailCounted, s.keyFailIP, s.keyFailUser = true, at.client.Addr(), f.user
				f.count = true
			}
		})
	}
	var cnt counted
	f.counted = &cnt
	err := a.fail(at, f)
	if f.count {
		a.conns.update(at.id, a.now(), func(s *connState) { s.keyFail = cnt })
	}
	return nil, err
}

// ownCounted is how many of user's failures from this source were counted
// by this very connection (a wrong key offered before the right one): they
// are taken back if it logs in, so they do not make it "a user with
// failures of their own" either.
func (a *Authenticator) ownCounted(at *attempt, user string) int {
	if st := a.conns.get(at.id); st.keyFailCounted && st.keyFail.pair && st.keyFailUser == user {
		return 1
	}
	return 0
}

// verifiedKey runs once the client proved possession of a key that
// publicKey accepted. All account, role, address and lockout checks live
// here. MFA roles get a PartialSuccessError whose only next method is a
// keyboard-interactive TOTP prompt bound to this user.
func (a *Authenticator) verifiedKey(c ssh.ConnMetadata, key ssh.PublicKey, _ *ssh.Permissions, _ string) (*ssh.Permissions, error) {
	at := a.newAttempt(c, "publickey")
	at.keyFP = ssh.FingerprintSHA256(key)
	if !at.clientOK {
		return nil, a.fail(at, failure{class: "address_not_allowed", detail: "client address unknown"})
	}
	ip := at.client.Addr()
	u, known := a.users.Lookup(c.User())
	name := ""
	if known {
		name = u.Name
	}
	if until, banned := a.limit.banned(ip, name, a.ownCounted(at, name)); banned {
		return nil, a.fail(at, failure{class: "banned", user: name,
			detail: "login refused while banned, until " + until.UTC().Format(time.RFC3339)})
	}
	if !known { // removed by a reload since the key was offered
		return nil, a.fail(at, failure{class: "unknown_user", detail: "user no longer exists", count: true})
	}
	f := failure{user: u.Name, role: u.Role, count: true}
	if _, ok := u.FindKey(key); !ok {
		f.class, f.detail = "bad_key", "key no longer belongs to the user"
		return nil, a.fail(at, f)
	}
	if u.Disabled {
		f.class, f.detail = "disabled", "account disabled"
		return nil, a.fail(at, f)
	}
	if u.Expired(a.now()) {
		f.class, f.detail = "expired", "account expired at "+u.ExpiresAt.UTC().Format(time.RFC3339)
		return nil, a.fail(at, f)
	}
	r, ok := a.role(u.Role)
	if !ok {
		f.class, f.detail = "unknown_role", fmt.Sprintf("role %q is not configured", u.Role)
		return nil, a.fail(at, f)
	}
	if !inPrefixes(r.AllowFrom, ip) {
		f.class, f.detail = "address_not_allowed", fmt.Sprintf("client %s is outside allow_from of role %s", ip, r.Name)
		return nil, a.fail(at, f)
	}
	if !inPrefixes(u.AllowFrom, ip) {
		f.class, f.detail = "address_not_allowed", fmt.Sprintf("client %s is outside allow_from of the user", ip)
		return nil, a.fail(at, f)
	}
	p, err := buildPrincipal(u, r, at.client, at.keyFP)
	if err != nil {
		f.class, f.detail = "role_misconfigured", err.Error()
		return nil, a.fail(at, f)
	}
	// A user enrolled in TOTP is always asked for a code, whatever the
	// role says: "user add --mfa" must never be a silent no-op.
	if !r.MFA && u.TOTPSecret == "" {
		p.Methods = []string{"publickey"}
		return a.succeed(at, p), nil
	}
	if u.TOTPSecret == "" {
		f.class, f.detail = "mfa_not_enrolled", "role requires TOTP but the user has no totp_secret"
		return nil, a.fail(at, f)
	}
	_, seed, err := ParseTOTPSecret(u.TOTPSecret)
	if err != nil { // the users file loader checks it; fail closed anyway
		f.class, f.detail = "mfa_not_enrolled", "the user's totp_secret is unusable"
		return nil, a.fail(at, f)
	}
	a.conns.update(at.id, a.now(), func(s *connState) { s.secondFactor, s.keyStep = true, p })
	a.log.Debug("public key accepted, TOTP required", "user", u.Name, "client", at.client, "key_fp", at.keyFP)
	// Permissions must be nil with a partial success: nothing is granted
	// until the second factor passed.
	return nil, &ssh.PartialSuccessError{Next: ssh.ServerAuthCallbacks{
		KeyboardInteractiveCallback: a.secondFactor(p, seed),
	}}
}

// secondFactor returns the keyboard-interactive callback for one
// connection, closed over the principal its verified key produced and the
// TOTP seed of that same user.
//
// The ban and the account's TOTP lock are checked again when the answer
// arrives, not only before the prompt: a connection may have waited at
// the prompt while its source got banned. During a lock the prompt is
// still shown and the answer refused without being checked, so a right
// code and a wrong one look the same from outside.
func (a *Authenticator) secondFactor(p *Principal, seed []byte) func(ssh.ConnMetadata, ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
	return func(c ssh.ConnMetadata, challenge ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
		at := a.newAttempt(c, "keyboard-interactive")
		at.keyFP = p.KeyFP
		f := failure{user: p.User, role: p.Role, count: true, mfa: true}
		if c.User() != p.User { // x/crypto already forbids this; never trust it blindly
			f.class, f.detail = "unknown_user", "user changed after the public key step"
			return nil, a.fail(at, f)
		}
		refusedBan := func(when string) error {
			until, banned := a.limit.banned(p.Client.Addr(), p.User, a.ownCounted(at, p.User))
			if !banned {
				return nil
			}
			f.class, f.count, f.mfa = "banned", false, false
			f.detail = "login refused while banned, until " + until.UTC().Format(time.RFC3339) + when
			return a.fail(at, f)
		}
		if err := refusedBan(""); err != nil {
			return nil, err
		}
		if !a.waits.enter(p.User) {
			f.class, f.count, f.mfa = "mfa_busy", false, false
			f.detail = fmt.Sprintf("%d connections of this account are already waiting at the verification-code prompt", a.waits.max)
			return nil, a.fail(at, f)
		}
		defer a.waits.leave(p.User)
		var answers []string
		var err error
		for ask := 0; ; ask++ {
			instruction := ""
			if ask > 0 {
				instruction = totpReplayedInstruction
			}
			answers, err = challenge(a.issuer, instruction, []string{totpPrompt}, []bool{false})
			if err != nil {
				return nil, err // the client went away; no code was tried
			}
			if err := refusedBan(" (the ban started while the prompt was open)"); err != nil {
				return nil, err
			}
			if until, locked := a.limit.mfaLocked(p.User); locked {
				// Same work as a real check, but no step is marked used: the
				// account's owner may need that code once the lock ends.
				for _, ans := range answers {
					matchTOTP(seed, ans, a.now())
				}
				f.class, f.count, f.mfa = "mfa_locked", false, false
				f.detail = "verification code not checked: the account's second factor is locked until " + until.UTC().Format(time.RFC3339)
				return nil, a.fail(at, f)
			}
			if len(answers) != 1 {
				f.class, f.detail = "bad_totp", "expected exactly one answer"
				return nil, a.fail(at, f)
			}
			err = a.totp.verify(p.User, seed, answers[0], a.now())
			// The right code, used already: a second login within one
			// 30-second step (scripts do that), not a guess. Say so and ask
			// again rather than fail blind and count towards a ban.
			if !errors.Is(err, errReplayedTOTP) || ask == totpReplayAsks {
				break
			}
			a.log.Info("TOTP code already used; asking for the next one", "user", p.User, "client", at.clientStr)
		}
		switch {
		case errors.Is(err, errReplayedTOTP):
			f.class, f.detail, f.count = "replayed_totp", "verification code was already used", false
			return nil, a.fail(at, f)
		case err != nil:
			f.class, f.detail = "bad_totp", "wrong verification code"
			return nil, a.fail(at, f)
		}
		q := *p
		q.Methods = []string{"publickey", "keyboard-interactive"}
		return a.succeed(at, &q), nil
	}
}

// promptGate counts, per account, the connections waiting at the
// verification-code prompt. Without it one key holder could keep dozens
// of prompts open and answer them all at once, before any failure counts.
type promptGate struct {
	mu  sync.Mutex
	n   map[string]int
	max int
}

func (g *promptGate) enter(user string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n[user] >= g.max {
		return false
	}
	g.n[user]++
	return true
}

func (g *promptGate) leave(user string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n[user]--; g.n[user] <= 0 {
		delete(g.n, user)
	}
}

// authLog sees every request, including those the library refused on its
// own: a password or keyboard-interactive request that is not our second
// factor comes from a client ignoring the advertised methods (a password
// guesser) and counts as a failure.
func (a *Authenticator) authLog(c ssh.ConnMetadata, method string, err error) {
	if err == nil {
		return
	}
	switch method {
	case "none", "publickey":
		return // "none" is the client's probe; publickey is handled above
	case "keyboard-interactive":
		if a.conns.get(string(c.SessionID())).secondFactor {
			return // our TOTP callback already recorded it
		}
	}
	at := a.newAttempt(c, method)
	if len(method) > 32 {
		at.method = method[:32]
	}
	a.fail(at, failure{class: "method_not_allowed", detail: "only public key authentication is offered", count: true})
}
