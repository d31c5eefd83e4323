package s3store

import (
	"testing"
	"time"
)

// The metadata format is rclone's (swift.TimeToFloatString): whole seconds,
// then a fraction without trailing zeros; any case of the key is read, and
// what is not a number reads as no time.
func TestMTimeFormat(t *testing.T) {
	for _, c := range []struct {
		t    time.Time
		text string
	}{
		{time.Unix(1577934245, 0), "1577934245"},
		{time.Unix(1354040105, 123456789), "1354040105.123456789"},
		{time.Unix(1354040105, 500000000), "1354040105.5"},
		{time.Unix(0, 1), "0.000000001"},
		{time.Unix(-5, -500000000), "-5.5"},
	} {
		if got := formatMTime(c.t); got != c.text {
			t.Errorf("format %v: %q; want %q", c.t, got, c.text)
		}
		if got := parseMTime(map[string]string{"Mtime": c.text}); !got.Equal(c.t) {
			t.Errorf("parse %q: %v; want %v", c.text, got, c.t)
		}
	}
	// rclone may write more digits than nanoseconds; they are cut.
	if got := parseMTime(map[string]string{"mtime": "1.1234567891"}); !got.Equal(time.Unix(1, 123456789)) {
		t.Errorf("long fraction: %v", got)
	}
	for _, bad := range []string{"", "abc", "1.5e9", "+5", "1.x", " 1"} {
		if got := parseMTime(map[string]string{"mtime": bad}); !got.IsZero() {
			t.Errorf("parse %q: %v; want no time", bad, got)
		}
	}
	if got := parseMTime(map[string]string{"owner": "1"}); !got.IsZero() {
		t.Errorf("another key read as the time: %v", got)
	}
	m := withMTime(map[string]string{"MTIME": "1", "owner": "hr"}, time.Unix(2, 0))
	if len(m) != 2 || m["mtime"] != "2" || m["owner"] != "hr" {
		t.Errorf("withMTime: %v", m)
	}
}

// A HEAD sent before the gateway changed the object may answer with the old
// version: its time is not kept, while one sent after the change is.
func TestMTimeCacheForgetDuringHead(t *testing.T) {
	c := newMTimeCache(4)
	lm := time.Unix(100, 0)
	e := mtimeEntry{etag: `"e"`, size: 1, lm: lm.UnixNano(), mtime: time.Unix(5, 0)}
	tok := c.start()
	c.forget("k") // a setstat returned while the HEAD was out
	c.put("k", tok, e)
	if _, ok := c.get("k", `"e"`, 1, lm); ok {
		t.Fatal("a HEAD sent before the change was cached")
	}
	c.put("k", c.start(), e)
	if got, ok := c.get("k", `"e"`, 1, lm); !ok || !got.Equal(e.mtime) {
		t.Fatalf("a HEAD sent after the change: %v %v; want cached", got, ok)
	}
	// Forgetting more keys than the cache holds drops the marks, and with
	// them every HEAD still out.
	tok = c.start()
	for i := range 10 {
		c.forget(string(rune('a' + i)))
	}
	c.put("z", tok, e)
	if _, ok := c.get("z", `"e"`, 1, lm); ok {
		t.Fatal("a HEAD older than the dropped marks was cached")
	}
	if len(c.forgotAt) > 4 {
		t.Fatalf("%d forget marks; want at most 4", len(c.forgotAt))
	}
}
