package authn

import (
	"testing"
	"time"
)

// A strike's window and its memory of a former ban end exactly at their
// length: the boundaries of recent and expired.
func TestStrikeWindowBoundaries(t *testing.T) {
	p := &policy{max: 3, window: time.Minute, base: time.Minute, longest: time.Hour, entries: 10}
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

	s := &strike{count: 2, first: t0}
	if n := s.recent(t0.Add(time.Minute-time.Nanosecond), p); n != 2 {
		t.Errorf("recent inside the window = %d, want 2", n)
	}
	if n := s.recent(t0.Add(time.Minute), p); n != 0 {
		t.Errorf("recent at the end of the window = %d, want 0", n)
	}
	if s.expired(t0.Add(time.Minute-time.Nanosecond), p) || !s.expired(t0.Add(time.Minute), p) {
		t.Error("failures without a ban must expire exactly when their window ends")
	}

	// Nothing counted (a failure taken back) carries nothing to remember.
	if !(&strike{first: t0}).expired(t0.Add(time.Second), p) {
		t.Error("a strike without failures or bans did not expire")
	}

	// A former offender is remembered for the longest ban after its ban ended.
	ended := t0.Add(time.Hour)
	s = &strike{level: 1, ended: ended, until: ended}
	if s.expired(ended.Add(time.Hour-time.Nanosecond), p) || !s.expired(ended.Add(time.Hour), p) {
		t.Error("a former ban must be forgotten exactly one longest ban after it ended")
	}
}

// The table sweeps expired strikes once a window has passed since the last
// sweep, and when full evicts the weakest entry: unbanned before banned,
// fewer failures before more.
func TestStrikeTableSweepAndEvict(t *testing.T) {
	p := policy{max: 3, window: time.Minute, base: time.Minute, longest: time.Hour, entries: 100}
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	tbl := &table[string]{pol: p}
	tbl.get("a", t0).fail(t0, &tbl.pol)
	tbl.get("b", t0.Add(time.Minute)) // a's window is over: swept
	if _, ok := tbl.m["a"]; ok || len(tbl.m) != 1 {
		t.Fatalf("after one window: %d entries, a kept %v", len(tbl.m), ok)
	}

	p.entries = 3
	tbl = &table[string]{pol: p}
	for _, k := range []string{"banned", "two", "one"} {
		tbl.get(k, t0)
	}
	tbl.m["banned"].until = t0.Add(time.Hour)
	tbl.m["two"].count, tbl.m["two"].first = 2, t0
	tbl.m["one"].count, tbl.m["one"].first = 1, t0
	tbl.get("new", t0.Add(time.Second))
	if _, ok := tbl.m["one"]; ok || len(tbl.m) != 3 {
		t.Fatalf("evicted the wrong entry: %v", tbl.m)
	}
	tbl.get("newer", t0.Add(2*time.Second)) // new (0 failures) goes before two
	if _, ok := tbl.m["two"]; !ok || tbl.m["banned"] == nil {
		t.Fatalf("evicted the wrong entry: %v", tbl.m)
	}
}

// Generated names grow by one character after every 8 collisions, up to 31
// random characters.
func TestGenerateNameGrowsOnCollisions(t *testing.T) {
	for _, tc := range []struct{ collisions, want int }{{0, 5}, {7, 5}, {8, 6}, {15, 6}, {16, 7}, {8 * 40, 32}} {
		calls := 0
		name := GenerateName(func(string) bool { calls++; return calls <= tc.collisions })
		if len(name) != tc.want || ValidateName(name) != nil {
			t.Errorf("after %d collisions: %q (%d bytes), want %d", tc.collisions, name, len(name), tc.want)
		}
	}
}
