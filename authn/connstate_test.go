package authn

import (
	"fmt"
	"testing"
	"time"
)

// Connection states age out after the TTL (pruned at most once per TTL)
// and the table never holds more than its cap.
func TestConnTableAgesOutAndCaps(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	tbl := &connTable{m: map[string]*connState{}, ttl: time.Minute, max: 4}
	touch := func(id string, at time.Time) { tbl.update(id, at, func(*connState) {}) }
	has := func(id string) bool { return !tbl.get(id).created.IsZero() }

	touch("a", t0)
	touch("b", t0.Add(59*time.Second))
	if !has("a") || !has("b") {
		t.Fatal("entries younger than the TTL were dropped")
	}
	touch("c", t0.Add(time.Minute)) // a is exactly one TTL old: gone
	if has("a") || !has("b") || !has("c") {
		t.Fatalf("after one TTL: a %v b %v c %v", has("a"), has("b"), has("c"))
	}

	// Below the cap nothing young is dropped; at the cap the table is cut
	// to under three quarters before the new entry goes in.
	at := t0.Add(61 * time.Second)
	touch("d", at)
	touch("e", at)
	if len(tbl.m) != 4 {
		t.Fatalf("%d entries below the cap, want 4", len(tbl.m))
	}
	touch("f", at)
	if n := len(tbl.m); n != 3 || !has("f") {
		t.Fatalf("%d entries after reaching the cap of 4 (f kept %v), want 3", n, has("f"))
	}
	if st := tbl.take("f"); st.created.IsZero() || has("f") {
		t.Error("take did not return and forget the entry")
	}
}

func TestConnTableDefaultCap(t *testing.T) {
	tbl := newConnTable()
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	for i := range 1000 {
		tbl.update(fmt.Sprint(i), now, func(*connState) {})
	}
	if len(tbl.m) != 1000 || tbl.max < 1000 || tbl.ttl != 10*time.Minute {
		t.Fatalf("default table: %d entries kept, max %d, ttl %v", len(tbl.m), tbl.max, tbl.ttl)
	}
}
