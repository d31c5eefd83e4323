package trail

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// After a restart the spool's size counts what is still waiting in it (the
// bound SpoolMaxBytes applies to it), and a segment sealed before a crash
// that lost only its removal is removed and not counted.
func TestSpoolBytesAfterRestart(t *testing.T) {
	st := newMemStore()
	dir := t.TempDir()
	o := testOptions(st, dir, newClock())
	o.BatchMaxEvents = 3
	tr := newTrail(t, o) // the first start reads the chain from the store
	tr.Record(ev(0))
	closeTrail(t, tr)
	st.down.Store(true)
	tr = newTrail(t, o)
	run(t, tr)
	for i := 1; i < 7; i++ {
		tr.Record(ev(i))
	}
	closeTrail(t, tr)
	names, err := (&spool{dir: dir}).batchFiles()
	if err != nil || len(names) != 2 {
		t.Fatalf("setup: spool batches %v, %v", names, err)
	}
	var want int64
	for _, n := range names {
		fi, err := os.Stat(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		want += fi.Size()
	}
	stale := filepath.Join(dir, segName(0))
	if err := os.WriteFile(stale, []byte(strings.Repeat("x", 100)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	var logs syncBuffer
	o.Log = hclog.New(&hclog.LoggerOptions{Output: &logs})
	tr2 := newTrail(t, o)
	// The restart says what waits (two batches), not what does not (segments).
	if l := logs.String(); !strings.Contains(l, "batches waiting for upload: batches=2") || strings.Contains(l, "sealing segments") {
		t.Errorf("restart log:\n%s", l)
	}
	if got := tr2.Stats().SpoolBytes; got != want {
		t.Errorf("spool bytes after restart %d, want %d (the two batches)", got, want)
	}
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("sealed segment left in the spool: %v", err)
	}
	closeTrail(t, tr2)
}

// A clock stepped back between two batches does not make the second one
// sort before the first: its sealing time is held at its predecessor's.
func TestSealTimeNeverGoesBack(t *testing.T) {
	st := newMemStore()
	c := newClock()
	o := testOptions(st, t.TempDir(), c)
	o.BatchMaxEvents = 1
	tr := newTrail(t, o)
	run(t, tr)
	tr.Record(ev(0))
	waitFor(t, "the first batch", func() bool { return len(st.keys()) == 1 })
	c.jump(-time.Hour)
	tr.Record(ev(1))
	closeTrail(t, tr)
	keys := st.keys()
	if len(keys) != 2 {
		t.Fatalf("%d batches, want 2", len(keys))
	}
	if h0, h1 := headerOf(t, st, keys[0]), headerOf(t, st, keys[1]); h0.Seq != 1 || h1.Seq != 2 || h1.Time != h0.Time {
		t.Errorf("batches in key order: seq %d at %s, seq %d at %s", h0.Seq, h0.Time, h1.Seq, h1.Time)
	}
	verifyOK(t, st)
}

// Options left at zero get the documented defaults; a prefix gets its slash.
func TestNewDefaults(t *testing.T) {
	o := Options{Store: newMemStore(), Prefix: "audit", Instance: "gw-1", SpoolDir: t.TempDir(), Key: testKey}
	tr := newTrail(t, o)
	got := tr.o
	if got.Prefix != "audit/" || got.SpoolMaxBytes != defaultSpoolMax || got.BatchMaxEvents != defaultMaxEvents ||
		got.BatchMaxBytes != defaultMaxBytes || got.FlushInterval != defaultInterval || got.QueueMaxEvents != defaultQueueMax ||
		got.Log == nil || got.Now == nil {
		t.Errorf("defaults: %+v", got)
	}
	closeTrail(t, tr)
	var logs syncBuffer
	o.Prefix, o.SpoolDir, o.Log = "", t.TempDir(), hclog.New(&hclog.LoggerOptions{Output: &logs})
	if tr := newTrail(t, o); tr.o.Prefix != "" {
		t.Errorf("empty prefix became %q", tr.o.Prefix)
	}
	if strings.Contains(logs.String(), "audit spool:") {
		t.Errorf("an empty spool reported leftovers:\n%s", logs.String())
	}
}
