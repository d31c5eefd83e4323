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
