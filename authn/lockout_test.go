package authn

import (
	"net/netip"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func testLimiter(cfg Lockout) (*limiter, *fakeClock) {
	clk := newFakeClock(t0)
	return newLimiter(cfg, clk.Now), clk
}

var (
	ipA = netip.MustParseAddr("198.51.100.7")
	ipB = netip.MustParseAddr("198.51.100.8")
)

func TestLockoutDefaults(t *testing.T) {
	got := Lockout{}.withDefaults()
	want := Lockout{MaxIPFailures: 5, MaxPairFailures: 5, MaxUserFailures: 10, Window: 10 * time.Minute,
		BaseBan: time.Minute, MaxBan: time.Hour, MaxEntries: 1 << 16,
		MaxMFAFailures: 10, MFAWindow: 15 * time.Minute, MFALock: 15 * time.Minute, MaxMFALock: 24 * time.Hour, MaxMFAPrompts: 2}
	if got != want {
		t.Errorf("defaults %+v", got)
	}
}

func TestLockoutBansIPAfterThreshold(t *testing.T) {
	l, clk := testLimiter(Lockout{})
	for i := 1; i <= 4; i++ {
		if out := l.fail(ipA, "", false); out.IPBan != 0 {
			t.Fatalf("banned after %d failures", i)
		}
		clk.Add(time.Second)
	}
	if out := l.fail(ipA, "", false); out.IPBan != time.Minute {
		t.Fatalf("5th failure: ban %v, want 1m", out.IPBan)
	}
	if _, b := l.ipBanned(ipA); !b {
		t.Fatal("not banned")
	}
	// Other sources are not affected at all.
	if _, b := l.banned(ipB, "alice", 0); b {
		t.Fatal("ban leaked to another address")
	}
	// The ban expires.
	clk.Add(time.Minute)
	if _, b := l.ipBanned(ipA); b {
		t.Fatal("ban did not expire")
	}
}

func TestLockoutWindow(t *testing.T) {
	l, clk := testLimiter(Lockout{})
	for range 4 {
		l.fail(ipA, "", false)
	}
	clk.Add(10 * time.Minute) // the window is over: counting starts again
	for i := range 4 {
		if out := l.fail(ipA, "", false); out.IPBan != 0 {
			t.Fatalf("banned after %d failures in a new window", i+1)
		}
	}
}

func TestLockoutBackoff(t *testing.T) {
	l, clk := testLimiter(Lockout{MaxIPFailures: 2, BaseBan: time.Minute, MaxBan: 5 * time.Minute})
	want := []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 5 * time.Minute, 5 * time.Minute}
	for i, w := range want {
		l.fail(ipA, "", false)
		out := l.fail(ipA, "", false)
		if out.IPBan != w {
			t.Fatalf("ban %d: %v, want %v", i+1, out.IPBan, w)
		}
		clk.Add(out.IPBan) // serve the ban, then offend again
	}
	// After MaxBan of good behaviour the backoff starts over.
	clk.Add(5 * time.Minute)
	l.fail(ipA, "", false)
	if out := l.fail(ipA, "", false); out.IPBan != time.Minute {
		t.Errorf("after a quiet period: ban %v, want 1m", out.IPBan)
	}
}

func TestLockoutPairNotUser(t *testing.T) {
	// High IP threshold (a NAT): the (user, source) pair is what gets banned.
	l, _ := testLimiter(Lockout{MaxIPFailures: 100, MaxPairFailures: 3, MaxUserFailures: 6})
	for range 3 {
		l.fail(ipB, "alice", false)
	}
	if _, b := l.banned(ipB, "alice", 0); !b {
		t.Fatal("pair not banned")
	}
	if _, b := l.banned(ipB, "bob", 0); b {
		t.Fatal("other user from the same source banned")
	}
	if _, b := l.banned(ipA, "alice", 0); b {
		t.Fatal("attacker locked alice out of her own address")
	}
	if _, b := l.ipBanned(ipB); b {
		t.Fatal("source banned below its threshold")
	}
	// Failures for alice from many sources only warn.
	var burst bool
	for i := range 3 {
		burst = l.fail(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), "alice", false).UserBurst
	}
	if !burst {
		t.Error("no login_failure_burst at the user threshold")
	}
	if _, b := l.banned(ipA, "alice", 0); b {
		t.Fatal("user locked out everywhere")
	}
}

func TestLockoutIPv6Slash64(t *testing.T) {
	l, _ := testLimiter(Lockout{MaxIPFailures: 2})
	l.fail(netip.MustParseAddr("2001:db8:1:2::1"), "", false)
	l.fail(netip.MustParseAddr("2001:db8:1:2:ffff::9"), "", false)
	if _, b := l.ipBanned(netip.MustParseAddr("2001:db8:1:2::77")); !b {
		t.Error("same /64 not banned")
	}
	if _, b := l.ipBanned(netip.MustParseAddr("2001:db8:1:3::1")); b {
		t.Error("neighbouring /64 banned")
	}
	// A 4-in-6 address is the IPv4 address.
	l.fail(netip.MustParseAddr("::ffff:192.0.2.1"), "", false)
	l.fail(netip.MustParseAddr("192.0.2.1"), "", false)
	if _, b := l.ipBanned(netip.MustParseAddr("192.0.2.1")); !b {
		t.Error("4-in-6 counted separately")
	}
}

func TestLockoutForgive(t *testing.T) {
	l, _ := testLimiter(Lockout{MaxIPFailures: 2})
	out := l.fail(ipA, "alice", false)
	l.forgive(ipA, "alice", out.counted)
	if out := l.fail(ipA, "alice", false); out.IPBan != 0 {
		t.Error("forgiven failure still counted")
	}
}

func TestLockoutBoundedMemory(t *testing.T) {
	l, clk := testLimiter(Lockout{MaxEntries: 64, MaxIPFailures: 2})
	// A ban that must survive the flood.
	l.fail(ipA, "", false)
	l.fail(ipA, "", false)
	for i := range 10000 {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		l.fail(ip, "alice", false)
	}
	if n := len(l.ips.m); n > 64 {
		t.Errorf("ip table grew to %d", n)
	}
	if n := len(l.pairs.m); n > 64 {
		t.Errorf("pair table grew to %d", n)
	}
	if _, b := l.ipBanned(ipA); !b {
		t.Error("a live ban was evicted although unbanned entries were available")
	}
	// Expired entries are swept.
	clk.Add(3 * time.Hour)
	l.fail(ipB, "", false)
	if n := len(l.ips.m); n != 1 {
		t.Errorf("expired entries kept: %d", n)
	}
}
