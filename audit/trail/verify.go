package trail

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/vfs"
)

// ProblemKind classifies a verification finding.
type ProblemKind string

const (
	KindMalformed  ProblemKind = "malformed"  // not a well-formed batch
	KindAltered    ProblemKind = "altered"    // content does not match its digest
	KindSignature  ProblemKind = "signature"  // not signed by the trusted key: forged or inserted
	KindKey        ProblemKind = "key"        // object key disagrees with its header: moved, renamed or swapped
	KindMissing    ProblemKind = "missing"    // seq gap: batches deleted
	KindChain      ProblemKind = "chain"      // prev does not link to the previous batch
	KindOrder      ProblemKind = "order"      // duplicate or decreasing seq: reordered or inserted
	KindTime       ProblemKind = "time"       // times inconsistent or going backwards
	KindUnexpected ProblemKind = "unexpected" // an object that is not a batch
	KindStale      ProblemKind = "stale"      // newest batch too old: the newest batches were deleted, or the instance stopped
)

// Problem is one finding, tied to the object where it was found. For a
// deleted batch that is the next surviving batch of the instance.
type Problem struct {
	Kind     ProblemKind
	Instance string
	Key      string
	Seq      uint64
	Detail   string
}

func (p Problem) String() string {
	return fmt.Sprintf("[%s] %s: %s", p.Kind, p.Key, p.Detail)
}

// InstanceSummary describes the verified batches of one instance.
type InstanceSummary struct {
	Instance          string
	Batches, Events   int
	FirstSeq, LastSeq uint64
	First, Last       time.Time // sealing times
}

// Report is the result of Verify.
type Report struct {
	Prefix   string
	From, To time.Time // zero: unbounded
	// FreshWithin, when set, is how recent (before Now) the newest batch of
	// every instance had to be.
	FreshWithin time.Duration
	Now         time.Time
	Instances   []InstanceSummary
	Problems    []Problem
}

// OK reports whether no problem was found.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// String renders the report for people.
func (r *Report) String() string {
	var b strings.Builder
	bound := func(t time.Time, open string) string {
		if t.IsZero() {
			return open
		}
		return audit.FormatTime(t)
	}
	fmt.Fprintf(&b, "audit trail %q, batches sealed %s .. %s\n", r.Prefix, bound(r.From, "beginning"), bound(r.To, "now"))
	if r.FreshWithin > 0 {
		fmt.Fprintf(&b, "every instance must have sealed a batch since %s (%s before %s)\n",
			audit.FormatTime(r.Now.Add(-r.FreshWithin)), r.FreshWithin, audit.FormatTime(r.Now))
	}
	if len(r.Instances) == 0 {
		b.WriteString("no batches found\n")
	}
	for _, in := range r.Instances {
		fmt.Fprintf(&b, "instance %s: %d batches (seq %d..%d), %d events, sealed %s .. %s\n",
			in.Instance, in.Batches, in.FirstSeq, in.LastSeq, in.Events, audit.FormatTime(in.First), audit.FormatTime(in.Last))
	}
	if r.OK() {
		b.WriteString("OK: every batch is signed, intact and chained\n")
		return b.String()
	}
	fmt.Fprintf(&b, "FAILED: %d problem(s)\n", len(r.Problems))
	for _, p := range r.Problems {
		fmt.Fprintf(&b, "  %s\n", p)
	}
	return b.String()
}

// verifyWorkers bounds objects read at once.
const verifyWorkers = 8

type listed struct {
	key string
	ki  keyInfo
}

// batchInfo is what the chain pass needs of one object.
type batchInfo struct {
	listed
	gone     bool // listed, but deleted before it could be read
	parsed   bool
	signed   bool // signature valid with the trusted key
	seq      uint64
	prev     string
	hash     string
	sealed   time.Time
	events   int
	findings []finding
}

// Verify checks every batch under prefix sealed within [from, to] (zero
// bounds are open) against pub; see the package comment. The first batch in
// range is linked to its predecessor when that exists. The error is for
// failures to list or read the store; everything found is in the Report.
func Verify(ctx context.Context, store vfs.Store, prefix string, pub ed25519.PublicKey, from, to time.Time) (*Report, error) {
	return VerifyWith(ctx, store, prefix, pub, VerifyOptions{From: from, To: to})
}

// VerifyOptions bound and tighten a verification.
type VerifyOptions struct {
	From, To time.Time // sealing-time window; zero bounds are open
	// FreshWithin, if set, requires the newest batch of every instance to
	// be sealed within FreshWithin before Now. A running gateway seals a
	// batch at least every flush interval, events or not (a heartbeat), so
	// an older newest batch means the newest batches were deleted, or that
	// the instance has stopped. Batches sealed more than FreshWithin after
	// Now are reported too (a clock or a key holder placing them ahead).
	FreshWithin time.Duration
	Now         func() time.Time // default time.Now
}

// VerifyWith is Verify with options.
func VerifyWith(ctx context.Context, store vfs.Store, prefix string, pub ed25519.PublicKey, o VerifyOptions) (*Report, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, errors.New("trail: invalid ed25519 public key")
	}
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	from, to := o.From, o.To
	r := &Report{Prefix: prefix, From: from, To: to}
	if o.FreshWithin > 0 {
		now := time.Now
		if o.Now != nil {
			now = o.Now
		}
		r.FreshWithin, r.Now = o.FreshWithin, now().UTC()
		// Read up to the horizon: a batch named a little ahead is judged
		// like any other, not taken on its name as the newest.
		to = r.Now.Add(r.FreshWithin)
	}
	ents, err := listAll(ctx, store, prefix, true)
	if err != nil {
		return nil, fmt.Errorf("list %q: %w", prefix, err)
	}
	byInst := map[string][]listed{}
	for _, e := range ents {
		if e.IsDir || strings.HasSuffix(e.Key, "/") {
			continue
		}
		ki, ok := parseKey(prefix, e.Key)
		if !ok {
			r.Problems = append(r.Problems, Problem{Kind: KindUnexpected, Key: e.Key,
				Detail: "object does not follow the batch key layout"})
			continue
		}
		byInst[ki.instance] = append(byInst[ki.instance], listed{e.Key, ki})
	}
	insts := make([]string, 0, len(byInst))
	for in := range byInst {
		insts = append(insts, in)
	}
	sort.Strings(insts)
	for _, in := range insts {
		if err := verifyInstance(ctx, store, prefix, pub, in, byInst[in], from, to, r); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func inRange(t, from, to time.Time) bool {
	return (from.IsZero() || !t.Before(from)) && (to.IsZero() || !t.After(to))
}

func verifyInstance(ctx context.Context, store vfs.Store, prefix string, pub ed25519.PublicKey,
	inst string, all []listed, from, to time.Time, r *Report) error {
	sort.Slice(all, func(i, j int) bool { return all[i].key < all[j].key })
	// newestGood is the newest batch the trusted key signed; freshness is
	// judged by its header, so an old batch renamed, or a junk object with
	// a fresh name, does not make a cut-off trail look alive.
	var newestGood *batchInfo
	defer func() {
		if r.FreshWithin == 0 {
			return
		}
		newest := all[len(all)-1] // key order is sealing order
		if newest.ki.sealed.After(r.Now.Add(r.FreshWithin)) {
			r.Problems = append(r.Problems, Problem{Kind: KindTime, Instance: inst, Key: newest.key, Seq: newest.ki.seq,
				Detail: fmt.Sprintf("sealed %s, after the time of this verification %s", audit.FormatTime(newest.ki.sealed), audit.FormatTime(r.Now))})
		}
		if newestGood != nil && !newestGood.sealed.Before(r.Now.Add(-r.FreshWithin)) {
			return
		}
		p := Problem{Kind: KindStale, Instance: inst, Key: newest.key, Seq: newest.ki.seq,
			Detail: fmt.Sprintf("instance %s has no genuine batch sealed since %s (%s before %s): its newest batches were deleted, or it stopped (verify a stopped instance with --to its last time)",
				inst, audit.FormatTime(r.Now.Add(-r.FreshWithin)), r.FreshWithin, audit.FormatTime(r.Now))}
		if b := newestGood; b != nil {
			p.Key, p.Seq = b.key, b.seq
			p.Detail = fmt.Sprintf("the newest batch of instance %s was sealed %s, %s before %s (more than %s): its newest batches were deleted, or it stopped then (verify a stopped instance with --to its last time)",
				inst, audit.FormatTime(b.sealed), r.Now.Sub(b.sealed).Round(time.Second), audit.FormatTime(r.Now), r.FreshWithin)
		}
		r.Problems = append(r.Problems, p)
	}()
	lo := sort.Search(len(all), func(i int) bool { return !all[i].ki.sealed.Before(from) || from.IsZero() })
	hi := lo
	for hi < len(all) && inRange(all[hi].ki.sealed, from, to) {
		hi++
	}
	if lo == hi {
		return nil
	}
	// Read the predecessor too, so the window's first link is checked.
	start := max(lo-1, 0)
	infos, err := inspectAll(ctx, store, pub, all[start:hi])
	if err != nil {
		return err
	}
	var prev *batchInfo
	if start < lo {
		if p := infos[0]; p.parsed && p.signed && !p.gone {
			prev = &p
		}
		infos = infos[1:]
	}

	sum := InstanceSummary{Instance: inst}
	report := func(b *batchInfo, kind ProblemKind, format string, args ...any) {
		r.Problems = append(r.Problems, Problem{Kind: kind, Instance: inst, Key: b.key, Seq: b.seq,
			Detail: fmt.Sprintf(format, args...)})
	}
	for i := range infos {
		b := &infos[i]
		if b.gone {
			report(b, KindMissing, "object was listed but deleted before it could be read")
			continue
		}
		for _, f := range b.findings {
			report(b, f.kind, "%s", f.detail)
		}
		sum.Batches++
		sum.Events += b.events
		if sum.Batches == 1 {
			sum.FirstSeq, sum.First = b.seq, b.sealed
		}
		sum.LastSeq, sum.Last = max(sum.LastSeq, b.seq), b.sealed
		// What the trusted key did not sign is not part of the chain: judge
		// the next batch against the last genuine one.
		if !b.parsed || !b.signed {
			continue
		}
		newestGood = b
		switch {
		case prev == nil && b.seq == 1:
			if b.prev != zeroHash {
				report(b, KindChain, "first batch (seq 1) has a prev link")
			}
		case prev == nil:
			if from.IsZero() {
				report(b, KindMissing, "chain starts at seq %d: batches 1..%d are missing", b.seq, b.seq-1)
			}
		case b.seq == prev.seq+1:
			if b.prev != prev.hash {
				report(b, KindChain, "prev does not match the SHA-256 of %s: that batch or this one was altered or replaced", prev.key)
			}
		case b.seq > prev.seq+1:
			if b.seq == prev.seq+2 {
				report(b, KindMissing, "batch seq %d is missing between %s and this object", prev.seq+1, prev.key)
			} else {
				report(b, KindMissing, "batches seq %d..%d are missing between %s and this object", prev.seq+1, b.seq-1, prev.key)
			}
		case b.seq == prev.seq:
			report(b, KindOrder, "duplicate seq %d (also %s)", b.seq, prev.key)
			continue // keep linking against the earlier one
		default:
			report(b, KindOrder, "seq %d comes after seq %d (%s): batches reordered", b.seq, prev.seq, prev.key)
			continue
		}
		if prev != nil && b.sealed.Before(prev.sealed) {
			report(b, KindTime, "sealed %s, before its predecessor %s (%s)",
				audit.FormatTime(b.sealed), prev.key, audit.FormatTime(prev.sealed))
		}
		prev = b
	}
	if sum.Batches > 0 {
		r.Instances = append(r.Instances, sum)
	}
	return nil
}

// inspectAll reads and self-checks objects concurrently, keeping order.
func inspectAll(ctx context.Context, store vfs.Store, pub ed25519.PublicKey, objs []listed) ([]batchInfo, error) {
	out := make([]batchInfo, len(objs))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		firstEr error
		next    = make(chan int)
	)
	for range min(verifyWorkers, len(objs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				info, err := inspect(ctx, store, pub, objs[i])
				if err != nil {
					mu.Lock()
					if firstEr == nil {
						firstEr = err
						cancel()
					}
					mu.Unlock()
					continue
				}
				out[i] = info
			}
		}()
	}
feed:
	for i := range objs {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if firstEr != nil {
		return nil, firstEr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// inspect checks one object on its own.
func inspect(ctx context.Context, store vfs.Store, pub ed25519.PublicKey, l listed) (batchInfo, error) {
	b := batchInfo{listed: l, seq: l.ki.seq, sealed: l.ki.sealed}
	data, err := readObject(ctx, store, l.key)
	if errors.Is(err, vfs.ErrNotExist) {
		b.gone = true
		return b, nil
	}
	if err != nil {
		return b, fmt.Errorf("read %s: %w", l.key, err)
	}
	sum := sha256.Sum256(data)
	b.hash = hex.EncodeToString(sum[:])
	p, err := parseBatch(data)
	if err != nil {
		b.findings = append(b.findings, finding{KindMalformed, err.Error()})
		return b, nil
	}
	b.parsed = true
	b.findings = p.check(data, pub)
	b.signed = true
	for _, f := range b.findings {
		if f.kind == KindSignature {
			b.signed = false
		}
	}
	b.seq, b.prev, b.events = p.h.Seq, p.h.Prev, len(p.events)
	if t, err := time.Parse(audit.TimeLayout, p.h.Time); err != nil {
		b.findings = append(b.findings, finding{KindTime, fmt.Sprintf("header time %q is not %s", p.h.Time, audit.TimeLayout)})
	} else {
		b.sealed = t
	}
	if p.h.Instance != l.ki.instance || p.h.Seq != l.ki.seq || p.h.Time != audit.FormatTime(l.ki.sealed) {
		b.findings = append(b.findings, finding{KindKey, fmt.Sprintf(
			"header says instance %q seq %d sealed %s, but the key says instance %q seq %d sealed %s (moved, renamed or swapped)",
			p.h.Instance, p.h.Seq, p.h.Time, l.ki.instance, l.ki.seq, audit.FormatTime(l.ki.sealed))})
	}
	return b, nil
}
