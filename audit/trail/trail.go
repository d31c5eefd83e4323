// Package trail ships audit events to a separate storage block (bucket) as
// hash-chained, signed JSON-lines batches, and verifies such a trail.
//
// # Object layout
//
// Each batch is one object:
//
//	<prefix><instance>/YYYY/MM/DD/YYYYMMDDTHHMMSS.mmmZ-<seq, 12 digits>.jsonl
//
// The time is the batch's sealing time (UTC). Within an instance sealing
// times never go backwards and seq grows by one per batch, so key order is
// chain order and the newest batch is the last key.
//
// # Object format
//
// Line 1 is the header:
//
//	{"type":"batch","v":1,"instance":"gw-1","seq":42,"prev":"<hex>","time":"<sealed>",
//	 "count":K,"first":"<earliest event time>","last":"<latest event time>"}
//
// prev is the hex SHA-256 of the whole previous object of the same instance
// (64 zeros for seq 1), which makes the batches of one instance a hash chain.
// Lines 2..K+1 are the events (audit.Event JSON, one per line, in recording
// order). The last line is the digest:
//
//	{"type":"digest","sha256":"<hex>","key_id":"<hex>","sig":"<base64>"}
//
// sha256 covers every byte before the digest line (header and event lines,
// with their newlines). sig is an ed25519 signature over
//
//	"sftpgw-audit-batch-v1" 0x00 instance 0x00 decimal(seq) 0x00 sha256-bytes
//
// and key_id is the hex of the first 8 bytes of SHA-256(public key), only to
// name the key in reports. Every line ends with "\n"; all times are UTC
// "2006-01-02T15:04:05.000Z".
//
// # Delivery
//
// Record appends to a bounded in-memory queue. The background loop writes
// queued events to a segment file in the spool directory; a full segment
// (BatchMaxEvents or BatchMaxBytes), FlushInterval or Close seals it into a
// batch file (fsync, then the chain state, then the segment is removed), and
// a shipper uploads sealed batches in seq order and deletes each after its
// upload is committed. If the store is down, batches wait in the spool
// (bounded by SpoolMaxBytes) and are shipped, in order, once it is back or
// at the next start. If the queue is full, Record writes to the spool itself.
// The chain state lives in the spool directory; on a machine with an empty
// spool it is recovered from the newest batch of the instance in the store.
//
// At every FlushInterval tick with nothing to seal, a batch without events
// (a heartbeat) is sealed, so a running instance seals a batch per interval,
// except while the store is down or the spool is nearly full (the room is
// kept for events).
//
// Verify checks a trail: per instance, every digest and signature, header
// against key, contiguous seqs, prev links and sealing times, and reports
// each missing, altered, reordered or inserted batch with its object key.
// Removing the newest batches of an instance (truncation) leaves a shorter,
// valid chain; only its age shows it: with VerifyOptions.FreshWithin the
// newest batch must be recent. Object Lock (Options.LockRetention) keeps
// batches from being deleted at all.
package trail

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/vfs"
)

// Options configure a Trail. Zero values take the defaults noted.
type Options struct {
	Store          vfs.Store     // the audit bucket (required)
	Prefix         string        // key prefix, e.g. "audit/"; "/" is appended if missing
	Instance       string        // gateway instance id: [A-Za-z0-9][A-Za-z0-9._-]{0,127} (required)
	SpoolDir       string        // local spool directory, one per instance (required)
	SpoolMaxBytes  int64         // spool bound (default 256 MiB)
	BatchMaxEvents int           // events per batch (default 1000)
	BatchMaxBytes  int           // event bytes per batch (default 1 MiB)
	FlushInterval  time.Duration // longest an event waits before its batch is sealed, and the heartbeat (default 30s)
	QueueMaxEvents int           // in-memory queue bound (default 10000)
	// LockRetention, if set, uploads every batch with S3 Object Lock in
	// compliance mode, retained until its upload time plus this.
	LockRetention time.Duration
	Key           ed25519.PrivateKey
	Log           hclog.Logger
	Now           func() time.Time
	// Tick, if set, replaces the FlushInterval ticker (tests).
	Tick <-chan time.Time
}

const (
	defaultSpoolMax   = 256 << 20
	defaultMaxEvents  = 1000
	defaultMaxBytes   = 1 << 20
	defaultInterval   = 30 * time.Second
	defaultQueueMax   = 10000
	uploadTimeout     = 2 * time.Minute
	maxObjectSize     = 256 << 20 // refuse to read anything bigger back
	lossLogInterval   = 10 * time.Second
	downReminder      = 5 * time.Minute
	defaultMinBackoff = time.Second
	defaultMaxBackoff = time.Minute
	heartbeatRoom     = 1024 // a heartbeat batch is about 400 bytes
)

// Stats is a snapshot for health checks and metrics.
type Stats struct {
	Queued     int    // events in the memory queue
	SpoolBytes int64  // bytes in the spool (segments and unshipped batches)
	Dropped    uint64 // events lost because even the spool was full or failing
	StoreDown  bool   // the last upload or chain recovery failed
}

// Trail ships events; see the package comment. Its methods are safe for
// concurrent use.
type Trail struct {
	o          Options
	pub        ed25519.PublicKey
	minBackoff time.Duration
	maxBackoff time.Duration

	qmu    sync.Mutex
	queue  []audit.Event
	closed bool // set by Close: later events cannot be kept

	notify chan struct{} // the queue has events
	shipc  chan struct{} // a batch was sealed

	// mu serialises everything that touches segments, sealing and the chain
	// state. It is never held across network I/O.
	mu          sync.Mutex
	sp          *spool
	chain       chainState
	known       bool     // chain state known (else it must come from the store)
	gen         uint64   // generation of the current segment
	seg         *os.File // current segment, opened on its first event
	segCount    int
	segBytes    int64
	waiting     []uint64 // full segments not yet sealed, oldest first
	finished    bool     // Close has released the spool
	lastSealErr time.Time

	shipMu     sync.Mutex // one shipper at a time keeps uploads in order
	storeDown  atomic.Bool
	downSince  time.Time // shipMu
	downLogged time.Time // shipMu

	dropped     atomic.Uint64
	reported    atomic.Uint64 // dropped count already recorded as an event
	lastLossLog atomic.Int64

	runMu    sync.Mutex
	running  bool
	stopping bool
	stop     chan struct{}
	runDone  chan struct{}

	closeOnce sync.Once
	closeErr  error
}

// New opens the spool (taking an exclusive lock on it), reconciles what a
// previous run left there and seals leftover segments when the chain state
// is known locally. It does no network I/O.
func New(o Options) (*Trail, error) {
	if o.Store == nil {
		return nil, errors.New("trail: Options.Store is required")
	}
	if !instanceRE.MatchString(o.Instance) {
		return nil, fmt.Errorf("trail: invalid instance id %q", o.Instance)
	}
	if o.SpoolDir == "" {
		return nil, errors.New("trail: Options.SpoolDir is required")
	}
	if len(o.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("trail: Options.Key must be an ed25519 private key")
	}
	if o.Prefix != "" && !strings.HasSuffix(o.Prefix, "/") {
		o.Prefix += "/"
	}
	if o.SpoolMaxBytes <= 0 {
		o.SpoolMaxBytes = defaultSpoolMax
	}
	if o.BatchMaxEvents <= 0 {
		o.BatchMaxEvents = defaultMaxEvents
	}
	if o.BatchMaxBytes <= 0 {
		o.BatchMaxBytes = defaultMaxBytes
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = defaultInterval
	}
	if o.QueueMaxEvents <= 0 {
		o.QueueMaxEvents = defaultQueueMax
	}
	if o.Log == nil {
		o.Log = hclog.NewNullLogger()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	t := &Trail{
		o:          o,
		pub:        o.Key.Public().(ed25519.PublicKey),
		minBackoff: defaultMinBackoff,
		maxBackoff: defaultMaxBackoff,
		notify:     make(chan struct{}, 1),
		shipc:      make(chan struct{}, 1),
		stop:       make(chan struct{}),
		runDone:    make(chan struct{}),
	}
	sp, err := openSpool(o.SpoolDir)
	if err != nil {
		return nil, fmt.Errorf("trail: %w", err)
	}
	t.sp = sp
	st, err := sp.load(o.Instance, o.Log)
	if err != nil {
		sp.close()
		return nil, fmt.Errorf("trail: %w", err)
	}
	t.chain, t.known, t.waiting, t.gen = st.chain, st.known, st.waiting, st.nextGen
	if n := len(st.waiting); n > 0 {
		o.Log.Info("audit spool: sealing segments left by the previous run", "segments", n)
	}
	if st.batches > 0 {
		o.Log.Info("audit spool: batches waiting for upload", "batches", st.batches)
	}
	t.mu.Lock()
	t.sealWaiting()
	t.mu.Unlock()
	return t, nil
}

// Record queues e for shipping. It never waits for the network: when the
// queue is full it writes to the spool itself, and if even that fails the
// event is counted as dropped and logged as an error.
func (t *Trail) Record(e audit.Event) {
	e = audit.Stamp(e, t.o.Now)
	t.qmu.Lock()
	if t.closed {
		t.qmu.Unlock()
		t.lose(1, errors.New("event recorded after the audit trail was closed"))
		return
	}
	if len(t.queue) < t.o.QueueMaxEvents {
		t.queue = append(t.queue, e)
		t.qmu.Unlock()
		select {
		case t.notify <- struct{}{}:
		default:
		}
		return
	}
	t.qmu.Unlock()

	// Write-through. Taking mu first and then the whole queue keeps order:
	// everything queued before e is spooled before e.
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.finished {
		t.lose(1, errors.New("event recorded after the audit trail was closed"))
		return
	}
	evs := append(t.takeQueue(), e)
	if n, err := t.spoolEvents(evs); n < len(evs) {
		t.putBack(evs[n:], err)
	}
	t.sealWaiting()
}

// Stats returns current counters.
func (t *Trail) Stats() Stats {
	t.qmu.Lock()
	q := len(t.queue)
	t.qmu.Unlock()
	return Stats{
		Queued:     q,
		SpoolBytes: t.sp.bytes.Load(),
		Dropped:    t.dropped.Load(),
		StoreDown:  t.storeDown.Load(),
	}
}

func (t *Trail) takeQueue() []audit.Event {
	t.qmu.Lock()
	q := t.queue
	t.queue = nil
	t.qmu.Unlock()
	return q
}

// putBack returns events the spool refused to the front of the queue (they
// are older than anything queued since). What does not fit is lost. mu held.
func (t *Trail) putBack(rest []audit.Event, why error) {
	t.qmu.Lock()
	q := append(rest, t.queue...)
	var lost int
	if len(q) > t.o.QueueMaxEvents && !t.closed {
		lost = len(q) - t.o.QueueMaxEvents
		q = q[:t.o.QueueMaxEvents]
	} else if t.closed {
		lost, q = len(q), nil
	}
	t.queue = q
	t.qmu.Unlock()
	if lost > 0 {
		t.lose(lost, why)
	}
}

// lose counts events that could not be kept and says so loudly (at most
// every lossLogInterval, with the running total).
func (t *Trail) lose(n int, why error) {
	total := t.dropped.Add(uint64(n))
	now := time.Now().UnixNano()
	last := t.lastLossLog.Load()
	if now-last < int64(lossLogInterval) || !t.lastLossLog.CompareAndSwap(last, now) {
		return
	}
	t.o.Log.Error("AUDIT EVENTS LOST: spool full or failing", "lost_now", n, "lost_total", total, "error", why)
}

// reportLoss records the loss itself as an audit event, so that the trail
// shows where it is incomplete.
func (t *Trail) reportLoss() {
	d := t.dropped.Load()
	r := t.reported.Load()
	if d == r || !t.reported.CompareAndSwap(r, d) {
		return
	}
	t.Record(audit.Event{
		Kind: "admin", Op: "audit_loss", Result: "error", ErrClass: "limit",
		Detail: fmt.Sprintf("%d audit events lost (spool full or failing); %d in total", d-r, d),
	})
}

var errSpoolFull = errors.New("audit spool is full")

// spoolEvents appends events to the current segment, rotating it when it is
// full. It returns how many were written. mu held.
func (t *Trail) spoolEvents(evs []audit.Event) (int, error) {
	for i, e := range evs {
		line, err := json.Marshal(e)
		if err != nil {
			return i, err
		}
		line = append(line, '\n')
		if t.segCount > 0 && t.segBytes+int64(len(line)) > int64(t.o.BatchMaxBytes) {
			t.rotate()
		}
		if t.sp.bytes.Load()+int64(len(line)) > t.o.SpoolMaxBytes {
			return i, errSpoolFull
		}
		if t.seg == nil {
			f, err := t.sp.openSegment(t.gen)
			if err != nil {
				return i, err
			}
			t.seg = f
		}
		if n, err := t.seg.Write(line); err != nil {
			if n > 0 {
				t.seg.Truncate(t.segBytes) // keep the segment line-aligned
			}
			return i, fmt.Errorf("audit spool: %w", err)
		}
		t.segCount++
		t.segBytes += int64(len(line))
		t.sp.bytes.Add(int64(len(line)))
		if t.segCount >= t.o.BatchMaxEvents {
			t.rotate()
		}
	}
	return len(evs), nil
}

// rotate closes the current segment and queues it for sealing. mu held.
func (t *Trail) rotate() {
	if t.seg == nil {
		return
	}
	t.seg.Close()
	t.seg = nil
	t.waiting = append(t.waiting, t.gen)
	t.gen++
	t.segCount, t.segBytes = 0, 0
}

// sealWaiting seals full segments in order while the chain state is known
// and reports whether it sealed any. A failure leaves them for the next
// attempt. mu held.
func (t *Trail) sealWaiting() bool {
	sealed := false
	for t.known && len(t.waiting) > 0 {
		st, ok, err := t.sp.seal(t.waiting[0], t.chain, t.o, t.lose)
		if err != nil {
			// Retried on every drain: log only now and then.
			if now := time.Now(); now.Sub(t.lastSealErr) >= lossLogInterval {
				t.lastSealErr = now
				t.o.Log.Error("audit spool: sealing batch failed; will retry", "error", err)
			}
			break
		}
		if ok {
			t.chain = st
			sealed = true
		}
		t.waiting = t.waiting[1:]
	}
	if sealed {
		t.kickShipper()
	}
	return sealed
}

// drain moves the queue to the spool; on interval it also seals the current
// segment so that no event waits longer than FlushInterval, or, when there
// is nothing to seal, a heartbeat: a batch without events. So a batch is
// sealed at every interval, and a trail whose newest batch is older than
// that (beyond the upload time) was cut short, or its gateway stopped.
func (t *Trail) drain(interval bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.finished {
		return
	}
	if evs := t.takeQueue(); len(evs) > 0 {
		if n, err := t.spoolEvents(evs); n < len(evs) {
			t.putBack(evs[n:], err)
		}
	}
	// Without chain state sealing is impossible; the segment keeps filling.
	if interval && t.known && t.segCount > 0 {
		t.rotate()
	}
	if t.sealWaiting() || !interval || !t.known || t.seg != nil || len(t.waiting) > 0 {
		return
	}
	// While the store is down a heartbeat shows nothing to anyone, and the
	// spool's room is for events.
	if t.storeDown.Load() || t.sp.bytes.Load()+heartbeatRoom > t.o.SpoolMaxBytes {
		return
	}
	st, err := t.sp.heartbeat(t.gen, t.chain, t.o)
	if err != nil {
		if now := time.Now(); now.Sub(t.lastSealErr) >= lossLogInterval {
			t.lastSealErr = now
			t.o.Log.Error("audit spool: sealing heartbeat batch failed; will retry", "error", err)
		}
		return
	}
	t.chain = st
	t.gen++ // the heartbeat used this segment number
	t.kickShipper()
}

func (t *Trail) kickShipper() {
	select {
	case t.shipc <- struct{}{}:
	default:
	}
}

// Run drains, seals and ships until ctx is done or Close is called. It
// returns nil after Close and ctx.Err() otherwise; Close must still be
// called to flush.
func (t *Trail) Run(ctx context.Context) error {
	t.runMu.Lock()
	if t.running || t.stopping {
		t.runMu.Unlock()
		return errors.New("trail: Run called twice or after Close")
	}
	t.running = true
	t.runMu.Unlock()
	defer close(t.runDone)

	// Deferred in this order so that cancel (which aborts an upload in
	// flight; the batch stays spooled) runs before the wait.
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		t.shipLoop(ctx)
	}()

	tickc := t.o.Tick
	if tickc == nil {
		tick := time.NewTicker(t.o.FlushInterval)
		defer tick.Stop()
		tickc = tick.C
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.stop:
			return nil
		case <-t.notify:
			t.drain(false)
		case <-tickc:
			t.reportLoss()
			t.drain(true)
		}
	}
}

// shipLoop uploads sealed batches, backing off while the store fails.
func (t *Trail) shipLoop(ctx context.Context) {
	backoff := time.Duration(0)
	timer := time.NewTimer(0) // leftovers from the previous run go first
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.stop:
			return
		case <-t.shipc:
			if backoff > 0 {
				continue // wait for the retry timer rather than hammer the store
			}
		case <-timer.C:
		}
		err := t.shipAll(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			backoff = min(max(2*backoff, t.minBackoff), t.maxBackoff)
			timer.Reset(backoff)
			continue
		}
		backoff = 0
	}
}

// shipAll recovers the chain state if needed, then uploads every sealed
// batch in seq order, stopping at the first failure.
func (t *Trail) shipAll(ctx context.Context) error {
	t.shipMu.Lock()
	defer t.shipMu.Unlock()
	err := t.shipAllLocked(ctx)
	if err != nil && ctx.Err() == nil {
		now := time.Now()
		if !t.storeDown.Swap(true) {
			t.downSince, t.downLogged = now, now
			t.o.Log.Warn("audit store unavailable; batches stay in the spool", "error", err)
		} else if now.Sub(t.downLogged) >= downReminder {
			// A long outage fills the spool: keep saying so.
			t.downLogged = now
			t.o.Log.Error("audit store still unavailable", "since", t.downSince.UTC().Format(time.RFC3339),
				"spool_bytes", t.sp.bytes.Load(), "spool_max_bytes", t.o.SpoolMaxBytes, "error", err)
		}
	} else if err == nil && t.storeDown.Swap(false) {
		t.o.Log.Info("audit store available again; spooled batches shipped")
	}
	return err
}

func (t *Trail) shipAllLocked(ctx context.Context) error {
	t.mu.Lock()
	known := t.known
	t.mu.Unlock()
	if !known {
		if err := t.recoverChain(ctx); err != nil {
			return fmt.Errorf("recover audit chain state: %w", err)
		}
	}
	names, err := t.sp.batchFiles()
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := t.ship(ctx, name); err != nil {
			return err
		}
	}
	return nil
}

// ship uploads one spooled batch and removes it from the spool.
func (t *Trail) ship(ctx context.Context, name string) error {
	data, err := t.sp.read(name)
	if err != nil {
		return err
	}
	b, err := parseBatch(data)
	var sealed time.Time
	if err == nil {
		sealed, err = time.Parse(audit.TimeLayout, b.h.Time)
	}
	if err != nil {
		// Only local corruption gets here; keep the file for investigation.
		t.o.Log.Error("audit spool: unreadable batch moved aside", "file", name, "error", err)
		return t.sp.quarantine(name)
	}
	key := objectKey(t.o.Prefix, b.h.Instance, sealed, b.h.Seq)
	uctx, cancel := context.WithTimeout(ctx, uploadTimeout)
	defer cancel()
	var retain time.Time
	if t.o.LockRetention > 0 {
		// From the upload, not the sealing: a batch that waited in the
		// spool still gets the whole period.
		retain = t.o.Now().Add(t.o.LockRetention).UTC()
	}
	err = upload(uctx, t.o.Store, key, data, retain)
	if errors.Is(err, vfs.ErrExist) {
		// A previous run may have uploaded it and stopped before removing
		// the spool file. Identical content is success; anything else is
		// a conflict an operator must look at (e.g. two gateways sharing
		// one instance id).
		same, rerr := sameObject(uctx, t.o.Store, key, data)
		if rerr != nil {
			return rerr
		}
		if !same {
			t.o.Log.Error("audit store already holds a different batch under this key; spooled batch moved aside",
				"key", key, "file", name)
			return t.sp.quarantine(name)
		}
		err = nil
	}
	if err != nil {
		return fmt.Errorf("upload %s: %w", key, err)
	}
	return t.sp.remove(name)
}

func upload(ctx context.Context, s vfs.Store, key string, data []byte, retain time.Time) error {
	u, err := s.Create(ctx, key, vfs.CreateOptions{Exclusive: true, SizeHint: int64(len(data)), RetainUntil: retain})
	if err != nil {
		return err
	}
	if _, err := u.Write(data); err != nil {
		u.Abort(context.WithoutCancel(ctx))
		return err
	}
	return u.Commit(ctx)
}

func readObject(ctx context.Context, s vfs.Store, key string) ([]byte, error) {
	rc, err := s.Read(ctx, key, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxObjectSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxObjectSize {
		return nil, fmt.Errorf("%s: object larger than %d bytes", key, maxObjectSize)
	}
	return data, nil
}

func sameObject(ctx context.Context, s vfs.Store, key string, data []byte) (bool, error) {
	got, err := readObject(ctx, s, key)
	if err != nil {
		return false, err
	}
	return sha256.Sum256(got) == sha256.Sum256(data), nil
}

// recoverChain reads the newest batch of this instance from the store to
// continue its chain (new machine, empty spool). An empty store starts a new
// chain at seq 1.
func (t *Trail) recoverChain(ctx context.Context) error {
	key, found, err := newestKey(ctx, t.o.Store, t.o.Prefix, t.o.Instance)
	if err != nil {
		return err
	}
	st := chainState{Instance: t.o.Instance, Hash: zeroHash}
	if found {
		data, err := readObject(ctx, t.o.Store, key)
		if err != nil {
			return err
		}
		ki, _ := parseKey(t.o.Prefix, key)
		sum := sha256.Sum256(data)
		st.Seq, st.Hash, st.Time = ki.seq, hex.EncodeToString(sum[:]), audit.FormatTime(ki.sealed)
		// Chain after it whatever it is: Verify will name a bad batch, and
		// refusing to start would only lose events.
		if b, perr := parseBatch(data); perr != nil {
			t.o.Log.Error("newest audit batch in the store is malformed; continuing the chain after it", "key", key, "error", perr)
		} else if f := b.check(data, t.pub); len(f) > 0 || b.h.Seq != ki.seq {
			t.o.Log.Error("newest audit batch in the store does not verify; continuing the chain after it", "key", key)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.known {
		t.chain, t.known = st, true
		if found {
			t.o.Log.Info("audit chain state recovered from the store", "seq", st.Seq, "key", key)
		} else {
			t.o.Log.Info("no audit batches of this instance in the store; starting a new chain", "instance", t.o.Instance)
		}
		t.sealWaiting()
	}
	return nil
}

// newestKey finds the last batch key of instance by walking the date
// directories newest first, so it lists a few small directories rather than
// the whole history.
func newestKey(ctx context.Context, s vfs.Store, prefix, instance string) (string, bool, error) {
	return newestUnder(ctx, s, prefix, instance, prefix+instance+"/", 0)
}

func newestUnder(ctx context.Context, s vfs.Store, prefix, instance, dir string, depth int) (string, bool, error) {
	ents, err := listAll(ctx, s, dir, false)
	if err != nil {
		return "", false, err
	}
	if depth < 3 {
		width := []int{4, 2, 2}[depth]
		var subs []string
		for _, e := range ents {
			name := strings.TrimSuffix(strings.TrimPrefix(e.Key, dir), "/")
			if e.IsDir && len(name) == width && strings.Trim(name, "0123456789") == "" {
				subs = append(subs, name)
			}
		}
		sort.Sort(sort.Reverse(sort.StringSlice(subs)))
		for _, sub := range subs {
			key, ok, err := newestUnder(ctx, s, prefix, instance, dir+sub+"/", depth+1)
			if err != nil || ok {
				return key, ok, err
			}
		}
		return "", false, nil
	}
	best := ""
	for _, e := range ents {
		if ki, ok := parseKey(prefix, e.Key); ok && !e.IsDir && ki.instance == instance && e.Key > best {
			best = e.Key
		}
	}
	return best, best != "", nil
}

func listAll(ctx context.Context, s vfs.Store, prefix string, recursive bool) ([]vfs.ObjectInfo, error) {
	var out []vfs.ObjectInfo
	token := ""
	for {
		p, err := s.List(ctx, vfs.ListOptions{Prefix: prefix, Recursive: recursive, Token: token})
		if err != nil {
			return nil, err
		}
		out = append(out, p.Entries...)
		if p.Next == "" {
			return out, nil
		}
		token = p.Next
	}
}

// Close stops Run, seals everything queued and ships it. If the store is
// down, sealed batches stay in the spool for the next start and Close still
// returns nil: nothing is lost. It returns an error if events were lost.
func (t *Trail) Close(ctx context.Context) error {
	t.closeOnce.Do(func() { t.closeErr = t.close(ctx) })
	return t.closeErr
}

func (t *Trail) close(ctx context.Context) error {
	t.runMu.Lock()
	t.stopping = true
	running := t.running
	close(t.stop)
	t.runMu.Unlock()
	if running {
		<-t.runDone // stop cancels Run's uploads, so this is quick
	}

	t.reportLoss()
	t.qmu.Lock()
	t.closed = true
	t.qmu.Unlock()

	t.mu.Lock()
	if evs := t.takeQueue(); len(evs) > 0 {
		if n, err := t.spoolEvents(evs); n < len(evs) {
			t.putBack(evs[n:], err) // closed: counted as lost
		}
	}
	t.rotate()
	t.sealWaiting()
	t.mu.Unlock()

	if err := t.shipAll(ctx); err != nil {
		n, _ := t.sp.batchFiles()
		t.o.Log.Warn("audit trail closed with batches left in the spool; they are shipped at the next start",
			"batches", len(n), "error", err)
	}

	t.mu.Lock()
	t.finished = true
	t.sp.close()
	t.mu.Unlock()
	if d := t.dropped.Load(); d > 0 {
		return fmt.Errorf("trail: %d audit events were lost", d)
	}
	return nil
}
