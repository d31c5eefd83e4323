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
