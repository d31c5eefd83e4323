package trail

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sftpgw/sftpgw/audit"
)

func TestEventTime(t *testing.T) {
	want := time.Date(2026, 11, 23, 23, 59, 59, 700e6, time.UTC)
	got, err := eventTime([]byte(`{"time":"` + audit.FormatTime(want) + `","op":"upload"}`))
	if err != nil || !got.Equal(want) {
		t.Fatalf("eventTime = %v, %v; want %v", got, err, want)
	}
	for _, bad := range []string{``, `[]`, `{"time":"yesterday"}`, `{"time":`, `"x"`} {
		if _, err := eventTime([]byte(bad)); err == nil {
			t.Errorf("eventTime(%q) accepted", bad)
		}
	}
}

// The spool and verify share eventTime: a header spanning the zero time on
// both sides would verify, so check the header against the events' own times.
func TestBatchHeaderSpansItsEvents(t *testing.T) {
	st, keys := goodTrail(t)
	for _, key := range keys {
		d, _ := st.get(key)
		b, err := parseBatch(d)
		if err != nil {
			t.Fatal(err)
		}
		var first, last time.Time
		for _, l := range b.events {
			var e struct{ Time time.Time }
			if err := json.Unmarshal(l, &e); err != nil || e.Time.IsZero() {
				t.Fatalf("%s: event %s: %v", key, l, err)
			}
			if first.IsZero() || e.Time.Before(first) {
				first = e.Time
			}
			if e.Time.After(last) {
				last = e.Time
			}
		}
		if b.h.First != audit.FormatTime(first) || b.h.Last != audit.FormatTime(last) {
			t.Errorf("%s: header %s..%s, events %v..%v", key, b.h.First, b.h.Last, first, last)
		}
	}
}

// A batch signed by another key says which key signed it: the usual cause
// is verifying with the wrong public key, not tampering.
func TestVerifyWrongKeyNamesTheKeys(t *testing.T) {
	st, keys := goodTrail(t)
	_, other, _ := ed25519.GenerateKey(nil)
	pub := other.Public().(ed25519.PublicKey)
	r, err := Verify(context.Background(), st, "audit/", pub, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range r.Problems {
		if p.Kind == KindSignature && p.Key == keys[0] {
			if !strings.Contains(p.Detail, "signed by key") || !strings.Contains(p.Detail, keyID(pub)) {
				t.Fatalf("detail %q does not name the keys", p.Detail)
			}
			return
		}
	}
	t.Fatalf("no signature problem for %s:\n%s", keys[0], r)
}
