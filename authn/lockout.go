package authn

import (
	"net/netip"
	"sync"
	"time"
)

// Lockout configures brute-force protection. Zero fields take defaults.
//
// Failures are counted per source address and per (user, source) pair, and
// each of those is banned on its own threshold, with a ban that doubles on
// every repeat (BaseBan, 2×BaseBan, ... up to MaxBan). A source ban stops
// unknown names and users with failures of their own from that source; a
// user whose own record there is clean and who proves a key of their own
// still gets in, so name guessers behind a shared address (office NAT, a
// load balancer without PROXY protocol) cannot lock real users out.
//
// A login is never locked as a whole: that would let anyone lock a real
// user out of their usual address by guessing from elsewhere. Only the
// second factor has a per-account limit, independent of the source: a
// TOTP code can only be tried by someone who already proved the account's
// key, so only a key holder can trigger that lock (see MaxMFAFailures).
type Lockout struct {
	MaxIPFailures   int           // failures from one source within Window before it is banned (5)
	MaxPairFailures int           // failures for one user from one source before that pair is banned (5)
	MaxUserFailures int           // failures for one user from all sources that log "login_failure_burst" (10)
	Window          time.Duration // counting window (10m)
	BaseBan         time.Duration // first ban (1m)
	MaxBan          time.Duration // longest ban (1h)
	MaxEntries      int           // cap of each tracking table (65536)

	// Second factor, per account and from all sources together.
	MaxMFAFailures int           // wrong or replayed codes within MFAWindow before the account's TOTP step is locked (10)
	MFAWindow      time.Duration // counting window for MaxMFAFailures (15m)
	MFALock        time.Duration // first lock (15m); each repeat doubles it
	MaxMFALock     time.Duration // longest lock (24h)
	MaxMFAPrompts  int           // connections of one account waiting at the verification-code prompt at once (2)
}

// DefaultLockout returns the defaults.
func DefaultLockout() Lockout {
	return Lockout{
		MaxIPFailures: 5, MaxPairFailures: 5, MaxUserFailures: 10,
		Window: 10 * time.Minute, BaseBan: time.Minute, MaxBan: time.Hour,
		MaxEntries:     1 << 16,
		MaxMFAFailures: 10, MFAWindow: 15 * time.Minute, MFALock: 15 * time.Minute, MaxMFALock: 24 * time.Hour,
		MaxMFAPrompts: 2,
	}
}

func (l Lockout) withDefaults() Lockout {
	d := DefaultLockout()
	orInt := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	orDur := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	orInt(&l.MaxIPFailures, d.MaxIPFailures)
	orInt(&l.MaxPairFailures, d.MaxPairFailures)
	orInt(&l.MaxUserFailures, d.MaxUserFailures)
	orDur(&l.Window, d.Window)
	orDur(&l.BaseBan, d.BaseBan)
	orDur(&l.MaxBan, d.MaxBan)
	l.MaxBan = max(l.MaxBan, l.BaseBan)
	orInt(&l.MaxEntries, d.MaxEntries)
	orInt(&l.MaxMFAFailures, d.MaxMFAFailures)
	orDur(&l.MFAWindow, d.MFAWindow)
	orDur(&l.MFALock, d.MFALock)
	orDur(&l.MaxMFALock, d.MaxMFALock)
	l.MaxMFALock = max(l.MaxMFALock, l.MFALock)
	orInt(&l.MaxMFAPrompts, d.MaxMFAPrompts)
	return l
}

// policy is how one table counts and bans.
type policy struct {
	max           int           // failures within window that start a ban
	window        time.Duration // counting window
	base, longest time.Duration // first ban, longest ban
	entries       int           // table cap
}

// sourceKey is what a ban applies to: the IPv4 address, or the /64 of an
// IPv6 address, since one host normally controls a whole /64 and could
// otherwise step around a ban by changing its interface identifier.
func sourceKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// strike counts failures of one subject and holds its ban.
type strike struct {
	count int       // failures in the current window
	first time.Time // start of the current window
	until time.Time // banned until
	level int       // bans so far: the backoff exponent
	ended time.Time // when the last ban ended (for forgetting the level)
}

func (s *strike) banned(now time.Time) bool { return now.Before(s.until) }

// recent is the number of failures in the current window.
func (s *strike) recent(now time.Time, p *policy) int {
	if s == nil || now.Sub(s.first) >= p.window {
		return 0
	}
	return s.count
}

// fail records one failure; it returns the ban it started, if any, and
// whether the failure was counted. A failure during a ban is not counted:
// refusals while banned must not feed the ban, or it would never end
// under retries (the next offence after it doubles it anyway).
func (s *strike) fail(now time.Time, p *policy) (ban time.Duration, counted bool) {
	if s.banned(now) {
		return 0, false
	}
	if now.Sub(s.first) >= p.window {
		s.count, s.first = 0, now
	}
	s.count++
	if s.count < p.max {
		return 0, true
	}
	ban = p.base
	for i := 0; i < s.level && ban < p.longest; i++ {
		ban *= 2
	}
	ban = min(ban, p.longest)
	s.level++
	s.count, s.first = 0, now
	s.until = now.Add(ban)
	s.ended = s.until
	return ban, true
}

// expired reports whether the strike carries no information any more: no
// failures in the window, no ban, and (for a former offender) the longest
// ban of good behaviour since the ban ended, after which the backoff
// starts over.
func (s *strike) expired(now time.Time, p *policy) bool {
	if s.banned(now) || (s.count > 0 && now.Sub(s.first) < p.window) {
		return false
	}
	return s.level == 0 || now.Sub(s.ended) >= p.longest
}

// table is a bounded map of strikes under one policy.
type table[K comparable] struct {
	pol       policy
	m         map[K]*strike
	lastSweep time.Time
}

func (t *table[K]) get(k K, now time.Time) *strike {
	if s, ok := t.m[k]; ok {
		if s.expired(now, &t.pol) {
			*s = strike{}
		}
		return s
	}
	if t.m == nil {
		t.m = map[K]*strike{}
	}
	if now.Sub(t.lastSweep) >= t.pol.window || (len(t.m) >= t.pol.entries && now.Sub(t.lastSweep) >= time.Second) {
		t.sweep(now)
	}
	if len(t.m) >= t.pol.entries {
		t.evict(now)
	}
	s := &strike{}
	t.m[k] = s
	return s
}

// peek returns the live strike for k without creating one.
func (t *table[K]) peek(k K, now time.Time) *strike {
	if s, ok := t.m[k]; ok && !s.expired(now, &t.pol) {
		return s
	}
	return nil
}

// bannedUntil is the end of k's ban, if one is running.
func (t *table[K]) bannedUntil(k K, now time.Time) (time.Time, bool) {
	if s := t.peek(k, now); s != nil && s.banned(now) {
		return s.until, true
	}
	return time.Time{}, false
}

func (t *table[K]) sweep(now time.Time) {
	t.lastSweep = now
	for k, s := range t.m {
		if s.expired(now, &t.pol) {
			delete(t.m, k)
		}
	}
}

// evict makes room when the table is full of live entries (an attack from
// very many sources). It drops the weakest of a few random entries,
// preferring ones that are not banned, so memory stays bounded while
// current bans mostly survive.
func (t *table[K]) evict(now time.Time) {
	const sample = 16
	var victim K
	var vs *strike
	n := 0
	for k, s := range t.m { // map iteration order is random
		if vs == nil || weaker(s, vs, now) {
			victim, vs = k, s
		}
		if n++; n >= sample {
			break
		}
	}
	if vs != nil {
		delete(t.m, victim)
	}
}

func weaker(a, b *strike, now time.Time) bool {
	if a.banned(now) != b.banned(now) {
		return !a.banned(now)
	}
	if a.banned(now) {
		return a.until.Before(b.until)
	}
	return a.count < b.count
}

type pairKey struct {
	user string
	ip   netip.Addr
}

// limiter tracks failures. All methods are cheap and hold one mutex
// briefly: a ban never delays anybody else's login.
type limiter struct {
	cfg Lockout
	now func() time.Time

	mu    sync.Mutex
	ips   table[netip.Addr]
	pairs table[pairKey]
	users table[string] // bursts only: never banned
	mfa   table[string] // second-factor failures per account
}

func newLimiter(cfg Lockout, now func() time.Time) *limiter {
	if now == nil {
		now = time.Now
	}
	c := cfg.withDefaults()
	l := &limiter{cfg: c, now: now}
	l.ips.pol = policy{max: c.MaxIPFailures, window: c.Window, base: c.BaseBan, longest: c.MaxBan, entries: c.MaxEntries}
	l.pairs.pol = policy{max: c.MaxPairFailures, window: c.Window, base: c.BaseBan, longest: c.MaxBan, entries: c.MaxEntries}
	l.users.pol = policy{max: c.MaxUserFailures, window: c.Window, base: c.BaseBan, longest: c.MaxBan, entries: c.MaxEntries}
	l.mfa.pol = policy{max: c.MaxMFAFailures, window: c.MFAWindow, base: c.MFALock, longest: c.MaxMFALock, entries: c.MaxEntries}
	return l
}

// counted says which tables a failure was counted in, so that forgiving it
// takes back exactly that.
type counted struct{ ip, pair, user bool }

// failOutcome says what one failure triggered.
type failOutcome struct {
	IPBan, PairBan time.Duration // > 0: a ban started now
	MFALock        time.Duration // > 0: the account's second factor was locked now
	UserBurst      bool          // the user reached MaxUserFailures in the window
	UserFailures   int
	counted        counted
}

// fail records one failure from ip. user is "" when the name is unknown:
// per-user tables only hold real accounts, so they cannot be filled with
// invented names. mfa marks a failed second-factor answer, which also
// counts towards the account's TOTP lock whatever the source.
func (l *limiter) fail(ip netip.Addr, user string, mfa bool) failOutcome {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out failOutcome
	src := sourceKey(ip)
	out.IPBan, out.counted.ip = l.ips.get(src, now).fail(now, &l.ips.pol)
	if user == "" {
		return out
	}
	out.PairBan, out.counted.pair = l.pairs.get(pairKey{user, src}, now).fail(now, &l.pairs.pol)
	if mfa {
		out.MFALock, _ = l.mfa.get(user, now).fail(now, &l.mfa.pol)
	}
	u := l.users.get(user, now)
	if now.Sub(u.first) >= l.cfg.Window {
		u.count, u.first = 0, now
	}
	u.count++
	out.counted.user = true
	out.UserFailures = u.count
	if u.count >= l.cfg.MaxUserFailures {
		out.UserBurst = true
		u.count, u.first = 0, now // warn again only after another full burst
	}
	return out
}

// forgive takes back one failure that turned out to be part of a
// successful login (a client offering a wrong key before the right one).
func (l *limiter) forgive(ip netip.Addr, user string, c counted) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	src := sourceKey(ip)
	dec := func(s *strike, was bool) {
		if was && s != nil && s.count > 0 {
			s.count--
		}
	}
	dec(l.ips.peek(src, now), c.ip)
	if user != "" {
		dec(l.pairs.peek(pairKey{user, src}, now), c.pair)
		dec(l.users.peek(user, now), c.user)
	}
}

// ipBanned reports whether the source is banned (regardless of user).
func (l *limiter) ipBanned(ip netip.Addr) (time.Time, bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ips.bannedUntil(sourceKey(ip), now)
}

// banned reports whether a login of user from ip is refused. For an
// unknown name ("") that is the source ban. For a real account whose key
// was verified it is the (user, source) ban, or the source ban when the
// user has failures of their own from that source within the window;
// own is how many of those belong to the connection asking (a wrong key
// it offered before the right one) and are not held against it.
func (l *limiter) banned(ip netip.Addr, user string, own int) (time.Time, bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	src := sourceKey(ip)
	ipUntil, ipBanned := l.ips.bannedUntil(src, now)
	if user == "" {
		return ipUntil, ipBanned
	}
	k := pairKey{user, src}
	if until, ok := l.pairs.bannedUntil(k, now); ok {
		return until, true
	}
	if ipBanned && l.pairs.peek(k, now).recent(now, &l.pairs.pol) > own {
		return ipUntil, true
	}
	return time.Time{}, false
}

// mfaLocked reports whether the account's second factor is locked.
func (l *limiter) mfaLocked(user string) (time.Time, bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mfa.bannedUntil(user, now)
}
