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
// every repeat (BaseBan, 2×BaseBan, ... up to MaxBan). A user account is
// never locked as a whole: that would let anyone lock a real user out of
// their usual address by guessing from elsewhere. Failures per user are
// only counted so that a burst across sources raises a warning.
type Lockout struct {
	MaxIPFailures   int           // failures from one source within Window before it is banned (5)
	MaxPairFailures int           // failures for one user from one source before that pair is banned (5)
	MaxUserFailures int           // failures for one user from all sources that log "login_failure_burst" (10)
	Window          time.Duration // counting window (10m)
	BaseBan         time.Duration // first ban (1m)
	MaxBan          time.Duration // longest ban (1h)
	MaxEntries      int           // cap of each tracking table (65536)
}

// DefaultLockout returns the defaults.
func DefaultLockout() Lockout {
	return Lockout{
		MaxIPFailures: 5, MaxPairFailures: 5, MaxUserFailures: 10,
		Window: 10 * time.Minute, BaseBan: time.Minute, MaxBan: time.Hour,
		MaxEntries: 1 << 16,
	}
}

func (l Lockout) withDefaults() Lockout {
	d := DefaultLockout()
	if l.MaxIPFailures <= 0 {
		l.MaxIPFailures = d.MaxIPFailures
	}
	if l.MaxPairFailures <= 0 {
		l.MaxPairFailures = d.MaxPairFailures
	}
	if l.MaxUserFailures <= 0 {
		l.MaxUserFailures = d.MaxUserFailures
	}
	if l.Window <= 0 {
		l.Window = d.Window
	}
	if l.BaseBan <= 0 {
		l.BaseBan = d.BaseBan
	}
	if l.MaxBan <= 0 {
		l.MaxBan = d.MaxBan
	}
	if l.MaxBan < l.BaseBan {
		l.MaxBan = l.BaseBan
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = d.MaxEntries
	}
	return l
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

// fail records one failure; it returns the ban it started, if any.
func (s *strike) fail(now time.Time, max int, cfg *Lockout) time.Duration {
	if now.Sub(s.first) >= cfg.Window {
		s.count, s.first = 0, now
	}
	s.count++
	if s.count < max {
		return 0
	}
	ban := cfg.BaseBan
	for i := 0; i < s.level && ban < cfg.MaxBan; i++ {
		ban *= 2
	}
	ban = min(ban, cfg.MaxBan)
	s.level++
	s.count, s.first = 0, now
	s.until = now.Add(ban)
	s.ended = s.until
	return ban
}

// expired reports whether the strike carries no information any more: no
// failures in the window, no ban, and (for a former offender) MaxBan of
// good behaviour since the ban ended, after which the backoff starts over.
func (s *strike) expired(now time.Time, cfg *Lockout) bool {
	if s.banned(now) || (s.count > 0 && now.Sub(s.first) < cfg.Window) {
		return false
	}
	return s.level == 0 || now.Sub(s.ended) >= cfg.MaxBan
}

// table is a bounded map of strikes.
type table[K comparable] struct {
	m         map[K]*strike
	lastSweep time.Time
}

func (t *table[K]) get(k K, now time.Time, cfg *Lockout) *strike {
	if s, ok := t.m[k]; ok {
		if s.expired(now, cfg) {
			*s = strike{}
		}
		return s
	}
	if t.m == nil {
		t.m = map[K]*strike{}
	}
	if now.Sub(t.lastSweep) >= cfg.Window || (len(t.m) >= cfg.MaxEntries && now.Sub(t.lastSweep) >= time.Second) {
		t.sweep(now, cfg)
	}
	if len(t.m) >= cfg.MaxEntries {
		t.evict(now, cfg)
	}
	s := &strike{}
	t.m[k] = s
	return s
}

// peek returns the live strike for k without creating one.
func (t *table[K]) peek(k K, now time.Time, cfg *Lockout) *strike {
	if s, ok := t.m[k]; ok && !s.expired(now, cfg) {
		return s
	}
	return nil
}

func (t *table[K]) sweep(now time.Time, cfg *Lockout) {
	t.lastSweep = now
	for k, s := range t.m {
		if s.expired(now, cfg) {
			delete(t.m, k)
		}
	}
}

// evict makes room when the table is full of live entries (an attack from
// very many sources). It drops the weakest of a few random entries,
// preferring ones that are not banned, so memory stays bounded while
// current bans mostly survive.
func (t *table[K]) evict(now time.Time, cfg *Lockout) {
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
	users table[string]
}

func newLimiter(cfg Lockout, now func() time.Time) *limiter {
	if now == nil {
		now = time.Now
	}
	return &limiter{cfg: cfg.withDefaults(), now: now}
}

// failOutcome says what one failure triggered.
type failOutcome struct {
	IPBan, PairBan time.Duration // > 0: a ban started now
	UserBurst      bool          // the user reached MaxUserFailures in the window
	UserFailures   int
}

// fail records one failure from ip. user is "" when the name is unknown:
// per-user tables only hold real accounts, so they cannot be filled with
// invented names.
func (l *limiter) fail(ip netip.Addr, user string) failOutcome {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out failOutcome
	src := sourceKey(ip)
	out.IPBan = l.ips.get(src, now, &l.cfg).fail(now, l.cfg.MaxIPFailures, &l.cfg)
	if user == "" {
		return out
	}
	out.PairBan = l.pairs.get(pairKey{user, src}, now, &l.cfg).fail(now, l.cfg.MaxPairFailures, &l.cfg)
	u := l.users.get(user, now, &l.cfg)
	if now.Sub(u.first) >= l.cfg.Window {
		u.count, u.first = 0, now
	}
	u.count++
	out.UserFailures = u.count
	if u.count >= l.cfg.MaxUserFailures {
		out.UserBurst = true
		u.count, u.first = 0, now // warn again only after another full burst
	}
	return out
}

// forgive takes back one failure that turned out to be part of a
// successful login (a client offering a wrong key before the right one).
func (l *limiter) forgive(ip netip.Addr, user string) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	src := sourceKey(ip)
	dec := func(s *strike) {
		if s != nil && s.count > 0 {
			s.count--
		}
	}
	dec(l.ips.peek(src, now, &l.cfg))
	if user != "" {
		dec(l.pairs.peek(pairKey{user, src}, now, &l.cfg))
		dec(l.users.peek(user, now, &l.cfg))
	}
}

// ipBanned reports whether the source is banned (regardless of user).
func (l *limiter) ipBanned(ip netip.Addr) (time.Time, bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.ips.peek(sourceKey(ip), now, &l.cfg); s != nil && s.banned(now) {
		return s.until, true
	}
	return time.Time{}, false
}

// banned reports whether a login of user from ip is banned, by the source
// ban or by the (user, source) ban.
func (l *limiter) banned(ip netip.Addr, user string) (time.Time, bool) {
	if until, ok := l.ipBanned(ip); ok {
		return until, true
	}
	if user == "" {
		return time.Time{}, false
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.pairs.peek(pairKey{user, sourceKey(ip)}, now, &l.cfg); s != nil && s.banned(now) {
		return s.until, true
	}
	return time.Time{}, false
}
