package trail

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/vfs"
)

// memStore is an in-memory vfs.Store that can be switched off to simulate
// an unreachable bucket. Its listing pages are tiny so paging is exercised.
type memStore struct {
	mu      sync.Mutex
	objs    map[string][]byte
	commits map[string]int
	down    atomic.Bool
}

var errDown = errors.New("memstore: bucket unreachable")

func newMemStore() *memStore {
	return &memStore{objs: map[string][]byte{}, commits: map[string]int{}}
}

func (s *memStore) check(ctx context.Context) error {
	if s.down.Load() {
		return errDown
	}
	return ctx.Err()
}

func (s *memStore) Stat(ctx context.Context, key string) (vfs.ObjectInfo, error) {
	if err := s.check(ctx); err != nil {
		return vfs.ObjectInfo{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.objs[key]
	if !ok {
		return vfs.ObjectInfo{}, &fs.PathError{Op: "stat", Path: key, Err: vfs.ErrNotExist}
	}
	return vfs.ObjectInfo{Key: key, Size: int64(len(d))}, nil
}

func (s *memStore) List(ctx context.Context, opt vfs.ListOptions) (vfs.Page, error) {
	if err := s.check(ctx); err != nil {
		return vfs.Page{}, err
	}
	s.mu.Lock()
	seen := map[string]bool{}
	var ents []vfs.ObjectInfo
	for k, d := range s.objs {
		rest, ok := strings.CutPrefix(k, opt.Prefix)
		if !ok {
			continue
		}
		if i := strings.Index(rest, "/"); !opt.Recursive && i >= 0 {
			dir := opt.Prefix + rest[:i+1]
			if !seen[dir] {
				seen[dir] = true
				ents = append(ents, vfs.ObjectInfo{Key: dir, IsDir: true})
			}
			continue
		}
		ents = append(ents, vfs.ObjectInfo{Key: k, Size: int64(len(d))})
	}
	s.mu.Unlock()
	sort.Slice(ents, func(i, j int) bool { return ents[i].Key < ents[j].Key })
	var page vfs.Page
	limit := opt.Limit
	if limit <= 0 {
		limit = 3
	}
	for _, e := range ents {
		if e.Key <= opt.Token {
			continue
		}
		if len(page.Entries) == limit {
			page.Next = page.Entries[limit-1].Key
			break
		}
		page.Entries = append(page.Entries, e)
	}
	return page, nil
}

type memUpload struct {
	s   *memStore
	key string
	opt vfs.CreateOptions
	buf bytes.Buffer
}

func (s *memStore) Create(ctx context.Context, key string, opt vfs.CreateOptions) (vfs.Upload, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	return &memUpload{s: s, key: key, opt: opt}, nil
}

func (u *memUpload) Write(p []byte) (int, error) { return u.buf.Write(p) }
func (u *memUpload) Abort(context.Context) error { return nil }
func (u *memUpload) SetMTime(time.Time) bool     { return true }
func (u *memUpload) Commit(ctx context.Context) error {
	if err := u.s.check(ctx); err != nil {
		return err
	}
	u.s.mu.Lock()
	defer u.s.mu.Unlock()
	if _, ok := u.s.objs[u.key]; ok && u.opt.Exclusive {
		return &fs.PathError{Op: "create", Path: u.key, Err: vfs.ErrExist}
	}
	u.s.objs[u.key] = bytes.Clone(u.buf.Bytes())
	u.s.commits[u.key]++
	return nil
}

func (s *memStore) Read(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	d, ok := s.get(key)
	if !ok {
		return nil, &fs.PathError{Op: "read", Path: key, Err: vfs.ErrNotExist}
	}
	d = d[min(off, int64(len(d))):]
	if n >= 0 {
		d = d[:min(n, int64(len(d)))]
	}
	return io.NopCloser(bytes.NewReader(d)), nil
}

func (s *memStore) Delete(ctx context.Context, key string) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.objs, key)
	s.mu.Unlock()
	return nil
}

func (s *memStore) Copy(ctx context.Context, src, dst string) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	d, ok := s.get(src)
	if !ok {
		return &fs.PathError{Op: "copy", Path: src, Err: vfs.ErrNotExist}
	}
	s.put(dst, d)
	return nil
}

// SetMTime: the audit trail never sets file times.
func (s *memStore) SetMTime(context.Context, string, time.Time) error { return nil }

// Direct access for tests, ignoring down.
func (s *memStore) get(key string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.objs[key]
	return bytes.Clone(d), ok
}

func (s *memStore) put(key string, d []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.objs[key] = bytes.Clone(d)
}

func (s *memStore) del(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.objs, key)
}

func (s *memStore) keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ks []string
	for k := range s.objs {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func (s *memStore) clone() *memStore {
	c := newMemStore()
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, d := range s.objs {
		c.objs[k] = bytes.Clone(d)
	}
	return c
}

// clock is a fake time source that advances on every reading. It starts
// just before midnight so that batches spread over two date directories.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock {
	return &clock{t: time.Date(2026, 11, 23, 23, 59, 59, 700e6, time.UTC)}
}

func (c *clock) jump(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(3 * time.Millisecond)
	return c.t
}

var testKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))

func testOptions(st vfs.Store, spool string, c *clock) Options {
	return Options{
		Store:          st,
		Prefix:         "audit/",
		Instance:       "gw-1",
		SpoolDir:       spool,
		BatchMaxEvents: 10,
		FlushInterval:  time.Hour,
		Key:            testKey,
		Log:            hclog.NewNullLogger(),
		Now:            c.Now,
	}
}

func newTrail(t *testing.T, o Options) *Trail {
	t.Helper()
	tr, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	tr.minBackoff, tr.maxBackoff = 2*time.Millisecond, 10*time.Millisecond
	t.Cleanup(func() { tr.Close(context.Background()) })
	return tr
}

// run starts tr.Run and stops it at the end of the test.
func run(t *testing.T, tr *Trail) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

func closeTrail(t *testing.T, tr *Trail) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tr.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

type shipped struct {
	key    string
	h      header
	events []audit.Event
	raw    [][]byte
}

// readTrail parses every batch in the store, in key order.
func readTrail(t *testing.T, s *memStore) []shipped {
	t.Helper()
	var out []shipped
	for _, k := range s.keys() {
		d, _ := s.get(k)
		b, err := parseBatch(d)
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		sb := shipped{key: k, h: b.h, raw: b.events}
		for _, l := range b.events {
			var e audit.Event
			if err := json.Unmarshal(l, &e); err != nil {
				t.Fatalf("%s: %v", k, err)
			}
			sb.events = append(sb.events, e)
		}
		out = append(out, sb)
	}
	return out
}

func allEvents(bs []shipped) []audit.Event {
	var evs []audit.Event
	for _, b := range bs {
		evs = append(evs, b.events...)
	}
	return evs
}

func ev(i int) audit.Event {
	return audit.Event{Kind: "file", Op: "upload", User: "alice", Path: fmt.Sprintf("/f/%d", i), Bytes: int64(i), Result: "ok"}
}

// wantSequence checks that evs are ev(0..n-1) in order.
func wantSequence(t *testing.T, evs []audit.Event, n int) {
	t.Helper()
	if len(evs) != n {
		t.Fatalf("got %d events, want %d", len(evs), n)
	}
	for i, e := range evs {
		if e.Path != fmt.Sprintf("/f/%d", i) {
			t.Fatalf("event %d is %s: out of order or duplicated", i, e.Path)
		}
	}
}

func verifyOK(t *testing.T, s vfs.Store) *Report {
	t.Helper()
	r, err := Verify(context.Background(), s, "audit/", testKey.Public().(ed25519.PublicKey), time.Time{}, time.Time{})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !r.OK() {
		t.Fatalf("Verify of a good trail failed:\n%s", r)
	}
	return r
}
