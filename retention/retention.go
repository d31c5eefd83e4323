// Package retention deletes objects older than a storage block's retention
// period, so files that nobody collected do not pile up in the bucket.
//
// A Sweeper works on exactly one vfs.Store (one storage block) and never
// looks at any other. Each sweep lists the store recursively and deletes:
//
//   - every object whose last-modified time is older than the retention
//     period (checked again with a fresh Stat right before the delete, so a
//     file re-uploaded since the listing survives);
//   - every directory marker ("dir/") that is itself older than the
//     retention period AND has nothing left below it after this sweep.
//     A young marker (a directory somebody just made) always stays.
//
// Every removal is recorded as an audit event (Kind "retention", Op
// "retention_delete"), failures included.
package retention

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/vfs"
)

// Options configure a Sweeper.
type Options struct {
	Store     vfs.Store
	StoreName string        // the storage block's name, for events and logs
	Retention time.Duration // objects older than this are deleted; must be > 0
	// Interval between sweeps; 0: Retention/10, clamped to [1s, 5m].
	Interval time.Duration
	Audit    audit.Recorder
	Log      hclog.Logger
	Now      func() time.Time // tests inject a clock
}

// Sweeper enforces a retention period on one store.
type Sweeper struct {
	o  Options
	mu sync.Mutex // one sweep at a time
}

// Result counts what one sweep did.
type Result struct {
	Scanned int // objects and markers listed
	Deleted int // objects deleted
	Markers int // empty directory markers deleted
	Errors  int // deletes that failed
}

// New checks o and returns a Sweeper.
func New(o Options) (*Sweeper, error) {
	if o.Store == nil {
		return nil, errors.New("retention: no store")
	}
	if o.Retention <= 0 {
		return nil, errors.New("retention: period must be positive")
	}
	if o.Interval <= 0 {
		o.Interval = min(max(o.Retention/10, time.Second), 5*time.Minute)
	}
	if o.Audit == nil {
		o.Audit = audit.Discard
	}
	if o.Log == nil {
		o.Log = hclog.NewNullLogger()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Sweeper{o: o}, nil
}

// Interval is the time between sweeps.
func (s *Sweeper) Interval() time.Duration { return s.o.Interval }

// Run sweeps at once and then every Interval until ctx ends.
func (s *Sweeper) Run(ctx context.Context) {
	t := time.NewTicker(s.o.Interval)
	defer t.Stop()
	for {
		res, err := s.Sweep(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			s.o.Log.Error("retention sweep failed", "storage", s.o.StoreName, "error", logDetail(err))
		case res.Deleted+res.Markers+res.Errors > 0:
			s.o.Log.Info("retention sweep", "storage", s.o.StoreName, "scanned", res.Scanned,
				"deleted", res.Deleted, "markers", res.Markers, "errors", res.Errors)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// marker is a directory marker whose fate waits for its contents.
type marker struct {
	info vfs.ObjectInfo
	keep bool // something below it survives
}

// Sweep runs one pass over the store.
//
// Listing is in key order, and all keys below "d/" sort right after "d/",
// so the markers enclosing the current key form a stack: a marker is
// decided when the listing leaves its prefix.
func (s *Sweeper) Sweep(ctx context.Context) (Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var res Result
	cutoff := s.o.Now().Add(-s.o.Retention)
	var stack []*marker
	survive := func() {
		for _, m := range stack {
			m.keep = true
		}
	}
	closeMarker := func(m *marker) {
		if m.keep || !expired(m.info.ModTime, cutoff) {
			survive()
			return
		}
		if s.remove(ctx, m.info, "empty directory marker") {
			res.Markers++
		} else {
			res.Errors++
			survive()
		}
	}
	token := ""
	for {
		page, err := s.o.Store.List(ctx, vfs.ListOptions{Recursive: true, Token: token})
		if err != nil {
			return res, err
		}
		for _, e := range page.Entries {
			res.Scanned++
			for len(stack) > 0 && !strings.HasPrefix(e.Key, stack[len(stack)-1].info.Key) {
				m := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				closeMarker(m)
			}
			if strings.HasSuffix(e.Key, "/") {
				stack = append(stack, &marker{info: e})
				continue
			}
			if !expired(e.ModTime, cutoff) {
				survive()
				continue
			}
			switch ok, gone := s.removeObject(ctx, e, cutoff); {
			case ok:
				res.Deleted++
			case gone:
				// Changed or removed since the listing: not ours to delete.
				survive()
			default:
				res.Errors++
				survive()
			}
		}
		if page.Next == "" {
			break
		}
		token = page.Next
		if err := ctx.Err(); err != nil {
			return res, err
		}
	}
	for len(stack) > 0 {
		m := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		closeMarker(m)
	}
	return res, nil
}

// expired reports whether mt is before cutoff. An unknown time never is.
func expired(mt, cutoff time.Time) bool { return !mt.IsZero() && mt.Before(cutoff) }

// removeObject re-checks an expired object and deletes it. gone reports
// that it was not deleted because it changed or vanished meanwhile.
func (s *Sweeper) removeObject(ctx context.Context, e vfs.ObjectInfo, cutoff time.Time) (ok, gone bool) {
	cur, err := s.o.Store.Stat(ctx, e.Key)
	switch {
	case errors.Is(err, vfs.ErrNotExist):
		return false, true
	case err != nil:
		s.record(e, err, "stat before retention delete")
		return false, false
	case !expired(cur.ModTime, cutoff):
		return false, true // overwritten since the listing
	}
	return s.remove(ctx, cur, "older than retention"), false
}

// remove deletes one key and audits it.
func (s *Sweeper) remove(ctx context.Context, e vfs.ObjectInfo, why string) bool {
	err := s.o.Store.Delete(ctx, e.Key)
	s.record(e, err, why)
	return err == nil
}

func (s *Sweeper) record(e vfs.ObjectInfo, err error, why string) {
	ev := audit.Event{
		Time:   s.o.Now().UTC(),
		Kind:   "retention",
		Op:     "retention_delete",
		Path:   e.Key,
		Bytes:  e.Size,
		Result: "ok",
		Detail: fmt.Sprintf("storage %s: %s (%s, modified %s)", s.o.StoreName, why, s.o.Retention, audit.FormatTime(e.ModTime)),
	}
	if err != nil {
		ev.Result, ev.ErrClass = "error", vfs.ErrorClass(err)
		ev.Detail += ": " + vfs.SafeMessage(err)
		s.o.Log.Warn("retention delete failed", "storage", s.o.StoreName, "key", e.Key, "error", logDetail(err))
	}
	s.o.Audit.Record(ev)
}

// logDetail is the full error for the operator log (S3 request ids help
// support); the store's errors never carry credentials.
func logDetail(err error) string {
	var d interface{ Detail() string }
	if errors.As(err, &d) {
		return d.Detail()
	}
	return err.Error()
}
