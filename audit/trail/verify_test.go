package trail

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/vfs"
)

// goodTrail ships 12 events in 6 batches of 2 and returns the store and
// the batch keys in order.
func goodTrail(t *testing.T) (*memStore, []string) {
	t.Helper()
	st := newMemStore()
	o := testOptions(st, t.TempDir(), newClock())
	o.BatchMaxEvents = 2
	tr := newTrail(t, o)
	for i := range 12 {
		tr.Record(ev(i))
	}
	closeTrail(t, tr)
	keys := st.keys()
	if len(keys) != 6 {
		t.Fatalf("setup: %d batches", len(keys))
	}
	return st, keys
}

func verify(t *testing.T, st *memStore, from, to time.Time) *Report {
	t.Helper()
	r, err := Verify(context.Background(), st, "audit/", testKey.Public().(ed25519.PublicKey), from, to)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return r
}

// wantProblem fails unless r names key with a problem of kind.
func wantProblem(t *testing.T, r *Report, kind ProblemKind, key string) {
	t.Helper()
	if r.OK() {
		t.Fatalf("tampered trail verified OK:\n%s", r)
	}
	for _, p := range r.Problems {
		if p.Kind == kind && p.Key == key {
			return
		}
	}
	t.Fatalf("no %s problem naming %s:\n%s", kind, key, r)
}

// forge builds a well-formed batch signed with another key.
func forge(t *testing.T, seq uint64, prev string, sealed time.Time) (string, []byte) {
	t.Helper()
	_, other, _ := ed25519.GenerateKey(nil)
	e := audit.Event{Time: sealed, Kind: "file", Op: "delete", Path: "/evidence", Result: "ok"}
	line, _ := e.MarshalJSON()
	ts := audit.FormatTime(sealed)
	h := header{Instance: "gw-1", Seq: seq, Prev: prev, Time: ts, First: ts, Last: ts}
	return objectKey("audit/", "gw-1", sealed, seq), encodeBatch(h, [][]byte{line}, other)
}

func hashOf(st *memStore, key string) string {
	d, _ := st.get(key)
	s := sha256.Sum256(d)
	return hex.EncodeToString(s[:])
}

func headerOf(t *testing.T, st *memStore, key string) header {
	d, _ := st.get(key)
	b, err := parseBatch(d)
	if err != nil {
		t.Fatal(err)
	}
	return b.h
}

func TestVerifyGoodTrail(t *testing.T) {
	st, keys := goodTrail(t)
	r := verifyOK(t, st)
	if len(r.Instances) != 1 || r.Instances[0].Batches != 6 || r.Instances[0].Events != 12 ||
		r.Instances[0].FirstSeq != 1 || r.Instances[0].LastSeq != 6 {
		t.Fatalf("summary %+v", r.Instances)
	}
	if !strings.Contains(r.String(), "OK") {
		t.Errorf("report text:\n%s", r)
	}
	// A window in the middle verifies, linked to its predecessor.
	from, _ := parseKey("audit/", keys[2])
	to, _ := parseKey("audit/", keys[3])
	r = verify(t, st, from.sealed, to.sealed)
	if !r.OK() || r.Instances[0].Batches != 2 {
		t.Fatalf("window:\n%s", r)
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	cases := []struct {
		name   string
		tamper func(t *testing.T, st *memStore, keys []string) (ProblemKind, string)
	}{
		{"delete middle batch", func(t *testing.T, st *memStore, k []string) (ProblemKind, string) {
			st.del(k[2])
			return KindMissing, k[3]
		}},
		{"delete last-but-one batch", func(t *testing.T, st *memStore, k []string) (ProblemKind, string) {
			st.del(k[4])
			return KindMissing, k[5]
		}},
		{"delete first batch", func(t *testing.T, st *memStore, k []string) (ProblemKind, string) {
			st.del(k[0])
			return KindMissing, k[1]
		}},
		{"edit one byte of an event", func(t *testing.T, st *memStore, k []string) (ProblemKind, string) {
			d, _ := st.get(k[1])
			i := bytes.Index(d, []byte(`"user":"alice"`))
			d[i+9] = 'A'
			st.put(k[1], d)
			return KindAltered, k[1]
		}},
		{"swap two batches", func(t *testing.T, st *memStore, k []string) (ProblemKind, string) {
			a, _ := st.get(k[1])
			b, _ := st.get(k[2])
			st.put(k[1], b)
			st.put(k[2], a)
			return KindKey, k[2] // and k[1]; checked below
		}},
		{"forged batch appended", func(t *testing.T, st *memStore, k []string) (ProblemKind, string) {
			h := headerOf(t, st, k[5])
			sealed, _ := time.Parse(audit.TimeLayout, h.Time)
			key, data := forge(t, 7, hashOf(st, k[5]), sealed.Add(time.Second))
			st.put(key, data)
			return KindSignature, key
		}},
		{"forged batch inserted", func(t *testing.T, st *memStore, k []string) (ProblemKind, string) {
			h := headerOf(t, st, k[2])
			sealed, _ := time.Parse(audit.TimeLayout, h.Time)
			key, data := forge(t, h.Seq+1, hashOf(st, k[2]), sealed)
			st.put(key, data)
			return KindSignature, key
		}},
		{"batch replaced by a forgery", func(t *testing.T, st *memStore, k []string) (ProblemKind, string) {
			h := headerOf(t, st, k[3])
			sealed, _ := time.Parse(audit.TimeLayout, h.Time)
			key, data := forge(t, h.Seq, h.Prev, sealed)
			if key != k[3] {
				t.Fatalf("forged key %s != %s", key, k[3])
			}
			st.put(key, data)
			return KindSignature, key
		}},
		{"key holder drops a batch and relinks", func(t *testing.T, st *memStore, k []string) (ProblemKind, string) {
			// Even with the signing key, dropping a batch shows at the
			// next one unless every later batch is rewritten too.
			h := headerOf(t, st, k[3])
			d, _ := st.get(k[3])
			b, _ := parseBatch(d)
			h.Prev = hashOf(st, k[1])
			h.Seq--
			st.del(k[2])
			st.del(k[3])
			sealed, _ := time.Parse(audit.TimeLayout, h.Time)
			key := objectKey("audit/", "gw-1", sealed, h.Seq)
			st.put(key, encodeBatch(h, b.events, testKey))
			return KindMissing, k[4]
		}},
		{"foreign object", func(t *testing.T, st *memStore, k []string) (ProblemKind, string) {
			st.put("audit/gw-1/notes.txt", []byte("hello"))
			return KindUnexpected, "audit/gw-1/notes.txt"
		}},
	}
	good, keys := goodTrail(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := good.clone()
			kind, key := c.tamper(t, st, keys)
			r := verify(t, st, time.Time{}, time.Time{})
			wantProblem(t, r, kind, key)
			if c.name == "swap two batches" {
				wantProblem(t, r, KindKey, keys[1])
			}
			if !strings.Contains(r.String(), key) || !strings.Contains(r.String(), "FAILED") {
				t.Errorf("report text does not name %s:\n%s", key, r)
			}
		})
	}
}

func TestVerifyWindowChecksPredecessor(t *testing.T) {
	good, keys := goodTrail(t)
	from, _ := parseKey("audit/", keys[2])

	st := good.clone()
	st.del(keys[1]) // just before the window
	wantProblem(t, verify(t, st, from.sealed, time.Time{}), KindMissing, keys[2])

	// Batches before a window may have expired: not a problem.
	st = good.clone()
	st.del(keys[0])
	st.del(keys[1])
	if r := verify(t, st, from.sealed, time.Time{}); !r.OK() {
		t.Fatalf("window after expired batches:\n%s", r)
	}
}

func TestVerifyMultipleInstances(t *testing.T) {
	st := newMemStore()
	c := newClock()
	for _, inst := range []string{"gw-a", "gw-b"} {
		o := testOptions(st, t.TempDir(), c)
		o.Instance = inst
		o.BatchMaxEvents = 3
		tr := newTrail(t, o)
		for i := range 7 {
			tr.Record(ev(i))
		}
		closeTrail(t, tr)
	}
	r := verifyOK(t, st)
	if len(r.Instances) != 2 || r.Instances[0].Instance != "gw-a" || r.Instances[1].LastSeq != 3 {
		t.Fatalf("instances %+v", r.Instances)
	}
	// Moving a batch to the other instance is caught.
	ka := st.keys()[0]
	d, _ := st.get(ka)
	st.del(ka)
	moved := strings.Replace(ka, "gw-a", "gw-b", 1)
	st.put(moved, d)
	wantProblem(t, verify(t, st, time.Time{}, time.Time{}), KindKey, moved)
}

func TestVerifyWrongKey(t *testing.T) {
	st, keys := goodTrail(t)
	_, other, _ := ed25519.GenerateKey(nil)
	r, err := Verify(context.Background(), st, "audit", other.Public().(ed25519.PublicKey), time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	wantProblem(t, r, KindSignature, keys[0])
}

// resign rewrites the batch at key as the holder of the signing key could:
// edit its header, sign it again and store it under the key its header
// implies (the old key is removed). It returns the new key.
func resign(t *testing.T, st *memStore, key string, edit func(h *header)) string {
	t.Helper()
	d, ok := st.get(key)
	if !ok {
		t.Fatalf("no object %s", key)
	}
	b, err := parseBatch(d)
	if err != nil {
		t.Fatal(err)
	}
	h := b.h
	edit(&h)
	sealed, err := time.Parse(audit.TimeLayout, h.Time)
	if err != nil {
		t.Fatal(err)
	}
	st.del(key)
	nk := objectKey("audit/", h.Instance, sealed, h.Seq)
	st.put(nk, encodeBatch(h, b.events, testKey))
	return nk
}

// onlyProblems fails unless r's problems are exactly the wanted (kind, key)
// pairs: each tampering below is one that no other check reports, so
// disabling the check under test makes the trail verify OK.
func onlyProblems(t *testing.T, r *Report, want ...Problem) {
	t.Helper()
	var got []string
	for _, p := range r.Problems {
		got = append(got, string(p.Kind)+" "+p.Key)
	}
	var exp []string
	for _, p := range want {
		exp = append(exp, string(p.Kind)+" "+p.Key)
	}
	if strings.Join(got, "\n") != strings.Join(exp, "\n") {
		t.Fatalf("problems:\n%s\nwant exactly:\n%s\nreport:\n%s", strings.Join(got, "\n"), strings.Join(exp, "\n"), r)
	}
}

// TestVerifyChecksOnlyTheyCatch gives each check of the chain pass a
// tampering that every other check lets through.
func TestVerifyChecksOnlyTheyCatch(t *testing.T) {
	good, keys := goodTrail(t)
	sealedAt := func(st *memStore, key string) time.Time {
		s, err := time.Parse(audit.TimeLayout, headerOf(t, st, key).Time)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	t.Run("chain: re-signed batch with a wrong prev hash", func(t *testing.T) {
		// Signature, key, seq and times of the newest batch are all right;
		// only its link to batch 5 is not. (Re-signing an earlier batch
		// would also break the link of the batch after it.)
		st := good.clone()
		k := resign(t, st, keys[5], func(h *header) { h.Prev = strings.Repeat("ab", 32) })
		if k != keys[5] {
			t.Fatalf("re-signed under another key %s", k)
		}
		onlyProblems(t, verify(t, st, time.Time{}, time.Time{}), Problem{Kind: KindChain, Key: keys[5]})
	})

	t.Run("chain: first batch with a prev link", func(t *testing.T) {
		st := good.clone()
		for _, k := range keys[1:] {
			st.del(k) // a one-batch trail: no later link to break
		}
		resign(t, st, keys[0], func(h *header) { h.Prev = strings.Repeat("cd", 32) })
		onlyProblems(t, verify(t, st, time.Time{}, time.Time{}), Problem{Kind: KindChain, Key: keys[0]})
	})

	t.Run("order: an older batch replayed later under a consistent name", func(t *testing.T) {
		// A validly signed copy of batch 2, re-sealed between batches 3
		// and 4: seq goes 1 2 3 2 4 in key order.
		st := good.clone()
		d, _ := st.get(keys[1])
		at := sealedAt(st, keys[2]).Add(time.Millisecond)
		if !at.Before(sealedAt(st, keys[3])) {
			t.Fatal("setup: no room between batches 3 and 4")
		}
		tmp := "audit/tmp"
		st.put(tmp, d)
		// resign derives the name from the header: seq 2, sealed at.
		k := resign(t, st, tmp, func(h *header) { h.Time = audit.FormatTime(at) })
		onlyProblems(t, verify(t, st, time.Time{}, time.Time{}), Problem{Kind: KindOrder, Key: k})
	})

	t.Run("order: duplicate seq", func(t *testing.T) {
		st := good.clone()
		d, _ := st.get(keys[2])
		st.put("audit/tmp", d)
		k := resign(t, st, "audit/tmp", func(h *header) {
			h.Time = audit.FormatTime(sealedAt(st, keys[2]).Add(time.Millisecond))
		})
		if k <= keys[2] || k >= keys[3] {
			t.Fatalf("setup: duplicate %s does not sort between %s and %s", k, keys[2], keys[3])
		}
		onlyProblems(t, verify(t, st, time.Time{}, time.Time{}), Problem{Kind: KindOrder, Key: k})
	})

	t.Run("order: two valid batches swapped with consistent names", func(t *testing.T) {
		// The key holder swaps the sealing times of batches 3 and 4 and
		// renames both to match: key order now says 1 2 4 3 5 6. The gap
		// at 4 and the broken link at 5 show too; 3 is the reorder.
		st := good.clone()
		t3, t4 := sealedAt(st, keys[2]), sealedAt(st, keys[3])
		k4 := resign(t, st, keys[3], func(h *header) { h.Time = audit.FormatTime(t3) })
		k3 := resign(t, st, keys[2], func(h *header) { h.Time = audit.FormatTime(t4) })
		if k4 >= k3 {
			t.Fatalf("setup: %s does not sort before %s", k4, k3)
		}
		r := verify(t, st, time.Time{}, time.Time{})
		wantProblem(t, r, KindOrder, k3)
		wantProblem(t, r, KindMissing, k4)
	})

	t.Run("time: header sealed before its predecessor", func(t *testing.T) {
		// Key order is sealing-time order, so a batch sealed before its
		// predecessor always disagrees with its own key too (KindKey);
		// the time check names the regression itself.
		st := good.clone()
		before := sealedAt(st, keys[4]).Add(-time.Millisecond)
		d, _ := st.get(keys[5])
		b, _ := parseBatch(d)
		h := b.h
		h.Time = audit.FormatTime(before)
		st.put(keys[5], encodeBatch(h, b.events, testKey))
		onlyProblems(t, verify(t, st, time.Time{}, time.Time{}),
			Problem{Kind: KindKey, Key: keys[5]}, Problem{Kind: KindTime, Key: keys[5]})
	})
}

// heartbeatTrail runs a trail through n intervals of a minute each, one
// event in every third, and returns the store and the batch keys.
func heartbeatTrail(t *testing.T, n int) (*memStore, []string) {
	t.Helper()
	st := newMemStore()
	c := newClock()
	o := testOptions(st, t.TempDir(), c)
	tick := make(chan time.Time)
	o.Tick = tick
	tr := newTrail(t, o)
	run(t, tr)
	waitKnown(t, tr)
	for i := range n {
		if i%3 == 0 {
			tr.Record(ev(i / 3))
			waitFor(t, "the event queued", func() bool { return tr.Stats().Queued == 0 })
		}
		c.jump(time.Minute)
		tick <- time.Time{}
		waitFor(t, "the interval's batch", func() bool { return len(st.keys()) == i+1 })
	}
	closeTrail(t, tr)
	return st, st.keys()
}

// TestVerifyFreshness: with heartbeats, cutting off the newest batches
// leaves a trail whose newest batch is too old, which a verification "until
// now" reports; without the freshness bound the shorter chain is valid.
func TestVerifyFreshness(t *testing.T) {
	good, keys := heartbeatTrail(t, 8)
	newest := func(st *memStore) time.Time {
		k := st.keys()
		ki, _ := parseKey("audit/", k[len(k)-1])
		return ki.sealed
	}
	at := func(st *memStore, now time.Time) *Report {
		t.Helper()
		r, err := VerifyWith(context.Background(), st, "audit/", testKey.Public().(ed25519.PublicKey),
			VerifyOptions{To: now, FreshWithin: 2 * time.Minute, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	now := newest(good).Add(time.Minute) // one interval after the last heartbeat
	if r := at(good, now); !r.OK() || !strings.Contains(r.String(), "must have sealed a batch since") {
		t.Fatalf("fresh trail:\n%s", r)
	}

	cut := good.clone()
	cut.del(keys[7])
	cut.del(keys[6])
	if r := verify(t, cut, time.Time{}, time.Time{}); !r.OK() {
		t.Fatalf("a truncated trail is a valid chain:\n%s", r)
	}
	onlyProblems(t, at(cut, now), Problem{Kind: KindStale, Key: keys[5]})

	// Neither a junk object named just ahead of now, nor an old genuine
	// batch renamed to a fresh name, makes the cut-off trail look alive.
	junk := cut.clone()
	jk := objectKey("audit/", "gw-1", now.Add(30*time.Second), 9)
	junk.put(jk, []byte("{}\n"))
	r := at(junk, now)
	wantProblem(t, r, KindStale, keys[5])
	wantProblem(t, r, KindMalformed, jk)
	renamed := cut.clone()
	old, _ := renamed.get(keys[0])
	rk := objectKey("audit/", "gw-1", now.Add(-30*time.Second), 9)
	renamed.put(rk, old)
	r = at(renamed, now)
	wantProblem(t, r, KindStale, rk)
	wantProblem(t, r, KindKey, rk)

	// A gateway that stopped 3 intervals ago looks the same.
	onlyProblems(t, at(good, newest(good).Add(3*time.Minute)), Problem{Kind: KindStale, Key: keys[7]})

	// A batch sealed after the verification time is named, not skipped.
	r = at(good, newest(good).Add(-3*time.Minute))
	wantProblem(t, r, KindTime, keys[7])
}

// vanishing lists key but finds it gone when it is read: deleted while
// the verification ran.
type vanishing struct {
	*memStore
	key string
}

func (v vanishing) Read(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if key == v.key {
		return nil, &fs.PathError{Op: "read", Path: key, Err: vfs.ErrNotExist}
	}
	return v.memStore.Read(ctx, key, off, n)
}

// TestVerifyObjectChecks: the checks of a single object, each with a
// tampering of the newest batch (so that no later link breaks) that only
// it reports.
func TestVerifyObjectChecks(t *testing.T) {
	good, keys := goodTrail(t)
	last := keys[5]
	rewrite := func(st *memStore, edit func(h *header)) {
		d, _ := st.get(last)
		b, _ := parseBatch(d)
		h := b.h
		edit(&h)
		st.put(last, encodeBatchRaw(h, b.events, testKey))
	}
	cases := []struct {
		name string
		edit func(h *header)
		want []Problem
	}{
		{"header count differs from the events", func(h *header) { h.Count = 5 },
			[]Problem{{Kind: KindMalformed, Key: last}}},
		{"header first/last differ from the events", func(h *header) { h.First = "2020-01-01T00:00:00.000Z" },
			[]Problem{{Kind: KindTime, Key: last}}},
		{"prev is not a SHA-256", func(h *header) { h.Prev = "abc" },
			[]Problem{{Kind: KindMalformed, Key: last}, {Kind: KindChain, Key: last}}},
		{"header time unreadable", func(h *header) { h.Time = "yesterday" },
			[]Problem{{Kind: KindTime, Key: last}, {Kind: KindKey, Key: last}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := good.clone()
			rewrite(st, c.edit)
			onlyProblems(t, verify(t, st, time.Time{}, time.Time{}), c.want...)
		})
	}

	t.Run("key names another seq", func(t *testing.T) {
		st := good.clone()
		d, _ := st.get(last)
		ki, _ := parseKey("audit/", last)
		moved := objectKey("audit/", "gw-1", ki.sealed, 9)
		st.del(last)
		st.put(moved, d)
		onlyProblems(t, verify(t, st, time.Time{}, time.Time{}), Problem{Kind: KindKey, Key: moved})
	})

	t.Run("forgery in the middle blames only itself", func(t *testing.T) {
		// Not signed by the trusted key, so not part of the chain: the
		// genuine batch after it still links to the one before it.
		st := good.clone()
		h := headerOf(t, st, keys[2])
		sealed, _ := time.Parse(audit.TimeLayout, h.Time)
		key, data := forge(t, h.Seq+1, hashOf(st, keys[2]), sealed)
		st.put(key, data)
		onlyProblems(t, verify(t, st, time.Time{}, time.Time{}), Problem{Kind: KindSignature, Key: key})
	})

	t.Run("deleted while verifying", func(t *testing.T) {
		st := good.clone()
		r, err := Verify(context.Background(), vanishing{st, keys[5]}, "audit/", testKey.Public().(ed25519.PublicKey), time.Time{}, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		onlyProblems(t, r, Problem{Kind: KindMissing, Key: keys[5]})
	})
}

// encodeBatchRaw is encodeBatch keeping the header's count as given: a
// key holder can sign any header.
func encodeBatchRaw(h header, lines [][]byte, key ed25519.PrivateKey) []byte {
	h.Type, h.Version = "batch", formatVersion
	hb, _ := json.Marshal(h)
	buf := append(hb, '\n')
	for _, l := range lines {
		buf = append(append(buf, l...), '\n')
	}
	sum := sha256.Sum256(buf)
	db, _ := json.Marshal(digestLine{Type: "digest", SHA256: hex.EncodeToString(sum[:]),
		KeyID: keyID(key.Public().(ed25519.PublicKey)),
		Sig:   base64.StdEncoding.EncodeToString(ed25519.Sign(key, signedMessage(h.Instance, h.Seq, sum[:])))})
	return append(append(buf, db...), '\n')
}
