package trail

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sftpgw/sftpgw/audit"
)

func spoolBatches(t *testing.T, dir string) int {
	t.Helper()
	sp := &spool{dir: dir}
	n, err := sp.batchFiles()
	if err != nil {
		t.Fatal(err)
	}
	return len(n)
}

func TestEventsInOrderAcrossBatches(t *testing.T) {
	st := newMemStore()
	c := newClock()
	o := testOptions(st, t.TempDir(), c)
	o.BatchMaxEvents = 7
	tr := newTrail(t, o)
	run(t, tr)
	for i := range 49 {
		tr.Record(ev(i))
	}
	waitFor(t, "7 batches", func() bool { return len(st.keys()) == 7 })
	c.jump(time.Second) // past midnight
	for i := 49; i < 100; i++ {
		tr.Record(ev(i))
	}
	closeTrail(t, tr)

	bs := readTrail(t, st)
	if len(bs) != 15 {
		t.Errorf("got %d batches, want 15 (100 events, 7 per batch)", len(bs))
	}
	for i, b := range bs {
		if b.h.Seq != uint64(i+1) || b.h.Instance != "gw-1" || b.h.Count != len(b.events) {
			t.Errorf("batch %d: header %+v", i, b.h)
		}
		if !strings.HasPrefix(b.key, "audit/gw-1/2026/11/2") || !strings.HasSuffix(b.key, fmt.Sprintf("-%012d.jsonl", i+1)) {
			t.Errorf("unexpected key %s", b.key)
		}
	}
	wantSequence(t, allEvents(bs), 100)
	// The fake clock crosses midnight: both date directories are used.
	if !strings.Contains(bs[0].key, "/2026/11/23/") || !strings.Contains(bs[len(bs)-1].key, "/2026/11/24/") {
		t.Errorf("keys do not follow the sealing date: %s .. %s", bs[0].key, bs[len(bs)-1].key)
	}
	for _, e := range allEvents(bs) {
		if e.Time.IsZero() || e.Time.Location() != time.UTC {
			t.Fatalf("event time not stamped in UTC: %v", e.Time)
		}
	}
	if !bytes.Contains(bs[0].raw[0], []byte(`"time":"2026-11-23T23:59:59.`)) {
		t.Errorf("event time not in millisecond UTC layout: %s", bs[0].raw[0])
	}
	verifyOK(t, st)
}

func TestFlushByCount(t *testing.T) {
	st := newMemStore()
	o := testOptions(st, t.TempDir(), newClock())
	o.BatchMaxEvents = 5
	tr := newTrail(t, o)
	run(t, tr)
	for i := range 12 {
		tr.Record(ev(i))
	}
	waitFor(t, "two full batches", func() bool { return len(st.keys()) == 2 })
	bs := readTrail(t, st)
	if bs[0].h.Count != 5 || bs[1].h.Count != 5 {
		t.Fatalf("batch sizes %d, %d; want 5, 5", bs[0].h.Count, bs[1].h.Count)
	}
	closeTrail(t, tr)
	wantSequence(t, allEvents(readTrail(t, st)), 12)
}

func TestFlushByBytes(t *testing.T) {
	st := newMemStore()
	o := testOptions(st, t.TempDir(), newClock())
	o.BatchMaxEvents = 1000
	o.BatchMaxBytes = 1000
	tr := newTrail(t, o)
	run(t, tr)
	for i := range 20 {
		e := ev(i)
		e.Detail = strings.Repeat("x", 200)
		tr.Record(e)
	}
	waitFor(t, "a batch sealed by size", func() bool { return len(st.keys()) >= 1 })
	closeTrail(t, tr)
	bs := readTrail(t, st)
	if len(bs) < 5 {
		t.Fatalf("only %d batches for ~6 KB of events with a 1000-byte limit", len(bs))
	}
	for _, b := range bs {
		size := 0
		for _, l := range b.raw {
			size += len(l) + 1
		}
		if size > 1000 {
			t.Errorf("%s holds %d event bytes, limit 1000", b.key, size)
		}
	}
	wantSequence(t, allEvents(bs), 20)
}

func TestFlushByInterval(t *testing.T) {
	st := newMemStore()
	o := testOptions(st, t.TempDir(), newClock())
	tick := make(chan time.Time)
	o.Tick = tick
	tr := newTrail(t, o)
	run(t, tr)
	waitKnown(t, tr)
	tr.Record(ev(0))
	waitFor(t, "the event queued", func() bool { return tr.Stats().Queued == 0 })
	tick <- time.Time{}
	waitFor(t, "the interval flush", func() bool { return len(st.keys()) == 1 })
	tr.Record(ev(1))
	waitFor(t, "the event queued", func() bool { return tr.Stats().Queued == 0 })
	tick <- time.Time{}
	waitFor(t, "the second interval flush", func() bool { return len(st.keys()) == 2 })
	closeTrail(t, tr)
	bs := readTrail(t, st)
	if len(bs) != 2 || bs[0].h.Count != 1 || bs[1].h.Count != 1 {
		t.Fatalf("%d batches, want two of one event each", len(bs))
	}
	wantSequence(t, allEvents(bs), 2)
	verifyOK(t, st)
}

// waitKnown waits until tr knows its chain state (read from the store on a
// first start): before that an interval seals nothing.
func waitKnown(t *testing.T, tr *Trail) {
	t.Helper()
	waitFor(t, "the chain state", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return tr.known
	})
}

// TestHeartbeat: an interval without events still seals a batch (without
// events), so the newest batch in the store is never older than about one
// interval while the gateway runs; an interval with events seals only
// those.
func TestHeartbeat(t *testing.T) {
	st := newMemStore()
	c := newClock()
	o := testOptions(st, t.TempDir(), c)
	tick := make(chan time.Time)
	o.Tick = tick
	tr := newTrail(t, o)
	run(t, tr)
	waitKnown(t, tr)
	interval := func() {
		c.jump(time.Minute)
		tick <- time.Time{}
	}
	for i := range 3 {
		interval()
		waitFor(t, fmt.Sprintf("heartbeat %d", i+1), func() bool { return len(st.keys()) == i+1 })
	}
	tr.Record(ev(0))
	waitFor(t, "the event queued", func() bool { return tr.Stats().Queued == 0 })
	interval()
	waitFor(t, "the event's batch", func() bool { return len(st.keys()) == 4 })
	interval()
	waitFor(t, "another heartbeat", func() bool { return len(st.keys()) == 5 })
	closeTrail(t, tr)

	bs := readTrail(t, st)
	var counts []int
	for _, b := range bs {
		counts = append(counts, b.h.Count)
	}
	if fmt.Sprint(counts) != "[0 0 0 1 0]" {
		t.Fatalf("events per batch %v, want [0 0 0 1 0]", counts)
	}
	wantSequence(t, allEvents(bs), 1)
	if bs[0].h.First != "" || bs[0].h.Last != "" {
		t.Errorf("heartbeat header names event times: %+v", bs[0].h)
	}
	// A heartbeat chains like any batch: the trail verifies, and a
	// restart continues after it.
	verifyOK(t, st)
	tr2 := newTrail(t, testOptions(st, o.SpoolDir, c))
	tr2.Record(ev(1))
	closeTrail(t, tr2)
	if r := verifyOK(t, st); r.Instances[0].LastSeq != 6 {
		t.Fatalf("after restart:\n%s", r)
	}
}

func TestFlushOnClose(t *testing.T) {
	st := newMemStore()
	dir := t.TempDir()
	tr := newTrail(t, testOptions(st, dir, newClock()))
	for i := range 3 {
		tr.Record(ev(i)) // no Run: only Close moves them
	}
	if n := len(st.keys()); n != 0 {
		t.Fatalf("%d objects before Close", n)
	}
	closeTrail(t, tr)
	bs := readTrail(t, st)
	if len(bs) != 1 {
		t.Fatalf("got %d batches, want 1", len(bs))
	}
	wantSequence(t, bs[0].events, 3)
	if n := spoolBatches(t, dir); n != 0 {
		t.Errorf("%d batches left in the spool after a successful Close", n)
	}
	tr.Record(ev(3)) // after Close: counted, not silently dropped
	if tr.Stats().Dropped != 1 {
		t.Errorf("event after Close not counted as lost")
	}
}

func TestStoreOutageSpoolsAndShipsExactlyOnceInOrder(t *testing.T) {
	st := newMemStore()
	dir := t.TempDir()
	o := testOptions(st, dir, newClock())
	o.BatchMaxEvents = 4
	tr := newTrail(t, o)
	run(t, tr)
	for i := range 4 {
		tr.Record(ev(i))
	}
	waitFor(t, "the first batch", func() bool { return len(st.keys()) == 1 })

	st.down.Store(true)
	for i := 4; i < 30; i++ {
		tr.Record(ev(i))
	}
	waitFor(t, "6 full batches in the spool", func() bool { return spoolBatches(t, dir) == 6 })
	waitFor(t, "the store to be seen down", func() bool { return tr.Stats().StoreDown })
	if n := len(st.keys()); n != 1 {
		t.Fatalf("%d objects written while the store was down", n-1)
	}

	st.down.Store(false)
	waitFor(t, "the spool to drain", func() bool { return spoolBatches(t, dir) == 0 })
	waitFor(t, "the store to be seen up", func() bool { return !tr.Stats().StoreDown })
	closeTrail(t, tr)
	bs := readTrail(t, st)
	wantSequence(t, allEvents(bs), 30)
	for k, n := range st.commits {
		if n != 1 {
			t.Errorf("%s committed %d times", k, n)
		}
	}
	verifyOK(t, st)
}

func TestCloseWithStoreDownKeepsSpoolForNextStart(t *testing.T) {
	st := newMemStore()
	dir := t.TempDir()
	c := newClock()
	o := testOptions(st, dir, c)
	o.BatchMaxEvents = 3
	tr := newTrail(t, o)
	for i := range 3 {
		tr.Record(ev(i))
	}
	closeTrail(t, tr)

	st.down.Store(true)
	tr1 := newTrail(t, o)
	run(t, tr1)
	for i := 3; i < 13; i++ {
		tr1.Record(ev(i))
	}
	closeTrail(t, tr1) // nil: everything is safe in the spool
	if n := len(st.keys()); n != 1 {
		t.Fatalf("%d objects written while the store was down", n-1)
	}
	if n := spoolBatches(t, dir); n != 4 {
		t.Fatalf("%d batches in the spool, want 4", n)
	}

	// Restart with the store back: leftovers go first, then new events.
	st.down.Store(false)
	tr2 := newTrail(t, o)
	run(t, tr2)
	for i := 13; i < 18; i++ {
		tr2.Record(ev(i))
	}
	closeTrail(t, tr2)
	bs := readTrail(t, st)
	wantSequence(t, allEvents(bs), 18)
	for i, b := range bs {
		if b.h.Seq != uint64(i+1) {
			t.Fatalf("batch %d has seq %d", i, b.h.Seq)
		}
	}
	verifyOK(t, st)
}

func TestRestartContinuesChain(t *testing.T) {
	st := newMemStore()
	dir := t.TempDir()
	c := newClock()
	for round := range 3 {
		tr := newTrail(t, testOptions(st, dir, c))
		for i := range 4 {
			tr.Record(ev(round*4 + i))
		}
		closeTrail(t, tr)
	}
	bs := readTrail(t, st)
	if len(bs) != 3 || bs[2].h.Seq != 3 {
		t.Fatalf("got %d batches, last seq %d; want 3 and 3", len(bs), bs[len(bs)-1].h.Seq)
	}
	wantSequence(t, allEvents(bs), 12)
	verifyOK(t, st)
}

func TestNewMachineRecoversChainFromStore(t *testing.T) {
	st := newMemStore()
	c := newClock()
	tr := newTrail(t, testOptions(st, t.TempDir(), c))
	for i := range 25 {
		tr.Record(ev(i))
	}
	closeTrail(t, tr)

	// Fresh spool, same instance: the chain must continue at seq 4.
	tr2 := newTrail(t, testOptions(st, t.TempDir(), c))
	run(t, tr2)
	for i := 25; i < 30; i++ {
		tr2.Record(ev(i))
	}
	closeTrail(t, tr2)
	bs := readTrail(t, st)
	if last := bs[len(bs)-1].h; last.Seq != 4 {
		t.Fatalf("last seq %d, want 4", last.Seq)
	}
	wantSequence(t, allEvents(bs), 30)
	verifyOK(t, st)
}

func TestNewMachineWithStoreDownWaitsForChainState(t *testing.T) {
	st := newMemStore()
	c := newClock()
	tr := newTrail(t, testOptions(st, t.TempDir(), c))
	tr.Record(ev(0))
	closeTrail(t, tr)

	// New machine while the store is down: events are kept as unsealed
	// segments, because the batch seq and prev are not known yet.
	dir := t.TempDir()
	st.down.Store(true)
	o := testOptions(st, dir, c)
	o.BatchMaxEvents = 3
	tr2 := newTrail(t, o)
	run(t, tr2)
	for i := 1; i <= 10; i++ {
		tr2.Record(ev(i))
	}
	closeTrail(t, tr2)
	if n := len(st.keys()); n != 1 {
		t.Fatalf("%d objects, want the 1 from before", n)
	}

	st.down.Store(false)
	tr3 := newTrail(t, o)
	closeTrail(t, tr3)
	bs := readTrail(t, st)
	if len(bs) != 5 {
		t.Fatalf("got %d batches, want 5", len(bs))
	}
	wantSequence(t, allEvents(bs), 11)
	verifyOK(t, st)
}

// TestCrashBetweenBatchAndState simulates a crash after a batch file was
// renamed into place but before state.json and the segment were updated.
func TestCrashBetweenBatchAndState(t *testing.T) {
	st := newMemStore()
	dir := t.TempDir()
	c := newClock()
	o := testOptions(st, dir, c)
	tr := newTrail(t, o)
	tr.Record(ev(0))
	closeTrail(t, tr)
	oldState, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		t.Fatal(err)
	}

	st.down.Store(true)
	tr2 := newTrail(t, o)
	tr2.Record(ev(1))
	tr2.Record(ev(2))
	closeTrail(t, tr2) // seals seq 2 into the spool
	names, _ := (&spool{dir: dir}).batchFiles()
	if len(names) != 1 {
		t.Fatalf("spool batches %v", names)
	}
	_, _, gen := parseName(names[0])
	data, _ := os.ReadFile(filepath.Join(dir, names[0]))
	b, _ := parseBatch(data)
	var seg []byte
	for _, l := range b.events {
		seg = append(append(seg, l...), '\n')
	}
	// Roll back to "batch written, nothing else": old state, segment present.
	os.WriteFile(filepath.Join(dir, stateFile), oldState, 0o600)
	os.WriteFile(filepath.Join(dir, segName(gen)), seg, 0o600)

	st.down.Store(false)
	tr3 := newTrail(t, o)
	tr3.Record(ev(3))
	closeTrail(t, tr3)
	bs := readTrail(t, st)
	wantSequence(t, allEvents(bs), 4)
	if len(bs) != 3 {
		t.Fatalf("got %d batches, want 3 (no re-sealed duplicate)", len(bs))
	}
	verifyOK(t, st)
}

// TestCrashLeavesSegment simulates a crash with events written to a segment
// but never sealed, the last line torn.
func TestCrashLeavesSegment(t *testing.T) {
	st := newMemStore()
	dir := t.TempDir()
	o := testOptions(st, dir, newClock())
	tr, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		tr.Record(ev(i))
	}
	tr.drain(false)
	// Crash: no Close. Release what the process would lose anyway.
	tr.mu.Lock()
	tr.seg.Write([]byte(`{"time":"2026-11-2`))
	tr.seg.Close()
	tr.sp.close()
	tr.mu.Unlock()

	tr2 := newTrail(t, o)
	err = tr2.Close(context.Background())
	if err == nil || !strings.Contains(err.Error(), "1 audit events were lost") {
		t.Errorf("torn line not reported as lost: %v", err)
	}
	wantSequence(t, allEvents(readTrail(t, st)), 5)
	verifyOK(t, st)
}

func TestSpoolLockedWhileOpen(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(newMemStore(), dir, newClock())
	tr := newTrail(t, o)
	if _, err := New(o); err == nil {
		t.Fatal("a second Trail opened a spool that is in use")
	}
	tr.Record(ev(0))
	closeTrail(t, tr)
	o.Instance = "gw-2"
	if _, err := New(o); err == nil || !strings.Contains(err.Error(), "belongs to audit instance") {
		t.Fatalf("spool of gw-1 opened as gw-2: %v", err)
	}
}

func TestQueueFullNoEventLost(t *testing.T) {
	for _, withRun := range []bool{false, true} {
		t.Run(fmt.Sprintf("run=%v", withRun), func(t *testing.T) {
			st := newMemStore()
			o := testOptions(st, t.TempDir(), newClock())
			o.QueueMaxEvents = 4
			o.BatchMaxEvents = 50
			tr := newTrail(t, o)
			if withRun {
				run(t, tr)
			}
			const producers, each = 8, 200
			var wg sync.WaitGroup
			for p := range producers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range each {
						tr.Record(audit.Event{Kind: "file", Session: fmt.Sprint(p), Bytes: int64(i), Result: "ok"})
					}
				}()
			}
			wg.Wait()
			closeTrail(t, tr)
			if d := tr.Stats().Dropped; d != 0 {
				t.Fatalf("%d events dropped", d)
			}
			evs := allEvents(readTrail(t, st))
			if len(evs) != producers*each {
				t.Fatalf("got %d events, want %d", len(evs), producers*each)
			}
			next := map[string]int64{}
			for _, e := range evs {
				if e.Bytes != next[e.Session] {
					t.Fatalf("producer %s: event %d arrived when %d was expected", e.Session, e.Bytes, next[e.Session])
				}
				next[e.Session]++
			}
			verifyOK(t, st)
		})
	}
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestSpoolFullCountsLogsAndRecordsLoss(t *testing.T) {
	st := newMemStore()
	var logs syncBuffer
	o := testOptions(st, t.TempDir(), newClock())
	o.SpoolMaxBytes = 2000
	o.QueueMaxEvents = 2
	o.BatchMaxEvents = 5
	o.FlushInterval = 10 * time.Millisecond
	o.Log = hclog.New(&hclog.LoggerOptions{Output: &logs})
	tr := newTrail(t, o)
	st.down.Store(true)
	for i := range 100 {
		tr.Record(ev(i))
	}
	lost := tr.Stats().Dropped
	if lost == 0 {
		t.Fatal("nothing counted as lost with a 2000-byte spool and the store down")
	}
	if !strings.Contains(logs.String(), "AUDIT EVENTS LOST") {
		t.Errorf("loss not logged loudly:\n%s", logs.String())
	}

	st.down.Store(false)
	run(t, tr)
	waitFor(t, "the loss to be recorded in the trail", func() bool {
		for _, e := range allEvents(readTrail(t, st)) {
			if e.Op == "audit_loss" {
				return true
			}
		}
		return false
	})
	if err := tr.Close(context.Background()); err == nil {
		t.Error("Close reported no loss")
	}
	evs := allEvents(readTrail(t, st))
	kept := 0
	for _, e := range evs {
		if e.Op == "upload" {
			kept++
		}
	}
	if kept+int(lost) != 100 {
		t.Errorf("kept %d + lost %d != 100 recorded", kept, lost)
	}
	verifyOK(t, st)
}

func TestOptionsValidated(t *testing.T) {
	base := testOptions(newMemStore(), t.TempDir(), newClock())
	for name, mod := range map[string]func(*Options){
		"no store":     func(o *Options) { o.Store = nil },
		"bad instance": func(o *Options) { o.Instance = "../x" },
		"no spool":     func(o *Options) { o.SpoolDir = "" },
		"no key":       func(o *Options) { o.Key = nil },
	} {
		o := base
		mod(&o)
		if tr, err := New(o); err == nil {
			tr.Close(context.Background())
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestUploadedButNotRemoved covers a crash after an upload committed but
// before the spool file was removed, and a key conflict.
func TestUploadedButNotRemoved(t *testing.T) {
	for _, conflict := range []bool{false, true} {
		t.Run(fmt.Sprintf("conflict=%v", conflict), func(t *testing.T) {
			st := newMemStore()
			dir := t.TempDir()
			o := testOptions(st, dir, newClock())
			tr := newTrail(t, o)
			tr.Record(ev(0))
			closeTrail(t, tr)

			st.down.Store(true)
			tr1 := newTrail(t, o)
			tr1.Record(ev(1))
			closeTrail(t, tr1)
			names, _ := (&spool{dir: dir}).batchFiles()
			data, _ := os.ReadFile(filepath.Join(dir, names[0]))
			b, _ := parseBatch(data)
			sealed, _ := time.Parse(audit.TimeLayout, b.h.Time)
			key := objectKey("audit/", "gw-1", sealed, b.h.Seq)
			if conflict {
				data = bytes.Replace(data, []byte("alice"), []byte("mallory"), 1)
			}
			st.put(key, data)

			st.down.Store(false)
			tr2 := newTrail(t, o)
			closeTrail(t, tr2)
			if n := spoolBatches(t, dir); n != 0 {
				t.Fatalf("%d batches still spooled", n)
			}
			q, _ := filepath.Glob(filepath.Join(dir, quarantinePrefix+"*"))
			if conflict != (len(q) == 1) {
				t.Fatalf("quarantined %v", q)
			}
			if st.commits[key] != 0 {
				t.Fatalf("%s overwritten", key)
			}
			if !conflict {
				wantSequence(t, allEvents(readTrail(t, st)), 2)
				verifyOK(t, st)
			}
		})
	}
}

// TestNoHeartbeatWhileStoreDown: heartbeats would only fill the spool
// meant for events during an outage; they resume when the store is back.
func TestNoHeartbeatWhileStoreDown(t *testing.T) {
	st := newMemStore()
	c := newClock()
	dir := t.TempDir()
	o := testOptions(st, dir, c)
	tick := make(chan time.Time)
	o.Tick = tick
	tr := newTrail(t, o)
	run(t, tr)
	waitKnown(t, tr)
	st.down.Store(true)
	tr.Record(ev(0))
	waitFor(t, "the event queued", func() bool { return tr.Stats().Queued == 0 })
	tick <- time.Time{}
	waitFor(t, "the store seen down", func() bool { return tr.Stats().StoreDown })
	for range 3 {
		tick <- time.Time{}
	}
	// Run handles one tick at a time: after this send the three before
	// it are done.
	tick <- time.Time{}
	if n := spoolBatches(t, dir); n != 1 {
		t.Errorf("%d batches in the spool during the outage, want only the event's", n)
	}
	st.down.Store(false)
	waitFor(t, "the spooled batch shipped", func() bool { return len(st.keys()) == 1 && !tr.Stats().StoreDown })
	tick <- time.Time{}
	waitFor(t, "a heartbeat after the outage", func() bool { return len(st.keys()) == 2 })
	closeTrail(t, tr)
	verifyOK(t, st)
}
