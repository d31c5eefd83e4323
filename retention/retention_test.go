package retention

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/vfs"
	"github.com/sftpgw/sftpgw/vfs/localstore"
	"github.com/sftpgw/sftpgw/vfs/storetest"
)

var now = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

type events struct{ ev []audit.Event }

func (e *events) Record(ev audit.Event) { e.ev = append(e.ev, ev) }

func (e *events) paths(result string) []string {
	var out []string
	for _, ev := range e.ev {
		if ev.Kind == "retention" && ev.Op == "retention_delete" && ev.Result == result {
			out = append(out, ev.Path)
		}
	}
	slices.Sort(out)
	return out
}

// tree builds a local store with the given keys and ages (relative to now).
// Directory markers get their age after their contents were written.
func tree(t *testing.T, ages map[string]time.Duration) (vfs.Store, string) {
	t.Helper()
	root := t.TempDir()
	st, err := localstore.New(root)
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for k := range ages {
		if k[len(k)-1] == '/' {
			dirs = append(dirs, k)
			if err := os.MkdirAll(filepath.Join(root, k), 0o700); err != nil {
				t.Fatal(err)
			}
			continue
		}
		storetest.MustPut(t, st, k, []byte("data of "+k))
	}
	for k, age := range ages {
		if k[len(k)-1] != '/' {
			mt := now.Add(-age)
			if err := os.Chtimes(filepath.Join(root, k), mt, mt); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Deepest directories first: touching a child does not change the
	// parent's mtime, but creating files above did.
	slices.SortFunc(dirs, func(a, b string) int { return len(b) - len(a) })
	for _, d := range dirs {
		mt := now.Add(-ages[d])
		if err := os.Chtimes(filepath.Join(root, d), mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	return st, root
}

func keysOf(t *testing.T, st vfs.Store) []string {
	t.Helper()
	var out []string
	for _, e := range storetest.ListAll(t, st, vfs.ListOptions{Recursive: true}) {
		out = append(out, e.Key)
	}
	return out
}

func TestSweepDeletesOnlyExpired(t *testing.T) {
	const old, young = 3 * time.Hour, 10 * time.Minute
	st, _ := tree(t, map[string]time.Duration{
		"a/":          old,
		"a/old.txt":   old,
		"a/new.txt":   young,
		"b/":          old, // only old content: goes entirely
		"b/x":         old,
		"c/":          young, // made recently: stays although its file expires
		"c/x":         old,
		"d/":          old, // old and empty
		"e/":          old,
		"e/f/":        old,
		"e/f/g":       old,
		"h/":          old,
		"h/i/":        young, // young sub-directory keeps its parent
		"top-old":     old,
		"top-young":   young,
		"exactly-ret": time.Hour, // not older than the period: stays
	})
	rec := &events{}
	sw, err := New(Options{Store: st, StoreName: "files", Retention: time.Hour, Audit: rec, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	res, err := sw.Sweep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a/", "a/new.txt", "c/", "exactly-ret", "h/", "h/i/", "top-young"}
	if got := keysOf(t, st); !slices.Equal(got, want) {
		t.Errorf("left %v\nwant %v", got, want)
	}
	deleted := []string{"a/old.txt", "b/", "b/x", "c/x", "d/", "e/", "e/f/", "e/f/g", "top-old"}
	if got := rec.paths("ok"); !slices.Equal(got, deleted) {
		t.Errorf("audited %v\nwant %v", got, deleted)
	}
	if res.Deleted != 5 || res.Markers != 4 || res.Errors != 0 {
		t.Errorf("result %+v", res)
	}
	for _, ev := range rec.ev {
		if ev.Time.IsZero() || ev.Detail == "" {
			t.Errorf("event lacks time or detail: %+v", ev)
		}
	}
	// A second sweep finds nothing more to do.
	rec.ev = nil
	if res, err := sw.Sweep(context.Background()); err != nil || res.Deleted+res.Markers != 0 || len(rec.ev) != 0 {
		t.Errorf("second sweep: %+v %v %v", res, err, rec.ev)
	}
}

// flaky wraps a store: keys in failDelete cannot be deleted, and keys in
// touched look freshly written to Stat (a re-upload after the listing).
type flaky struct {
	vfs.Store
	failDelete map[string]bool
	touched    map[string]bool
}

func (f *flaky) Delete(ctx context.Context, key string) error {
	if f.failDelete[key] {
		return errors.New("AccessDenied: secret request detail")
	}
	return f.Store.Delete(ctx, key)
}

func (f *flaky) Stat(ctx context.Context, key string) (vfs.ObjectInfo, error) {
	oi, err := f.Store.Stat(ctx, key)
	if err == nil && f.touched[key] {
		oi.ModTime = now
	}
	return oi, err
}

func TestSweepFailuresAndRaces(t *testing.T) {
	st, _ := tree(t, map[string]time.Duration{
		"a/": 2 * time.Hour, "a/stuck": 2 * time.Hour,
		"b/": 2 * time.Hour, "b/reuploaded": 2 * time.Hour,
		"c": 2 * time.Hour,
	})
	fl := &flaky{Store: st, failDelete: map[string]bool{"a/stuck": true}, touched: map[string]bool{"b/reuploaded": true}}
	rec := &events{}
	sw, _ := New(Options{Store: fl, StoreName: "files", Retention: time.Hour, Audit: rec, Now: func() time.Time { return now }})
	res, err := sw.Sweep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// The failed delete keeps its marker; the re-uploaded file is not touched.
	if got, want := keysOf(t, st), []string{"a/", "a/stuck", "b/", "b/reuploaded"}; !slices.Equal(got, want) {
		t.Errorf("left %v, want %v", got, want)
	}
	if res.Deleted != 1 || res.Errors != 1 || res.Markers != 0 {
		t.Errorf("result %+v", res)
	}
	if got := rec.paths("error"); !slices.Equal(got, []string{"a/stuck"}) {
		t.Errorf("error events %v", got)
	}
	for _, ev := range rec.ev {
		if ev.Result == "error" && (ev.ErrClass != "store" || strings.Contains(ev.Detail, "secret request detail")) {
			t.Errorf("error event leaks or misclassifies: %+v", ev)
		}
	}
}

// smallPages lists at most 7 entries per page.
type smallPages struct{ vfs.Store }

func (s smallPages) List(ctx context.Context, opt vfs.ListOptions) (vfs.Page, error) {
	opt.Limit = 7
	return s.Store.List(ctx, opt)
}

// TestSweepManyPages makes the listing span pages so that the marker stack
// is carried across them.
func TestSweepManyPages(t *testing.T) {
	ages := map[string]time.Duration{"big/": 2 * time.Hour, "big/sub/": 2 * time.Hour, "gone/": 2 * time.Hour}
	for i := range 40 {
		ages[fmt.Sprintf("big/f%02d", i)] = 2 * time.Hour
		ages[fmt.Sprintf("big/sub/g%02d", i)] = 2 * time.Hour
		ages[fmt.Sprintf("gone/h%02d", i)] = 2 * time.Hour
	}
	ages["big/zz-young"] = time.Minute
	st, _ := tree(t, ages)
	sw, _ := New(Options{Store: smallPages{st}, Retention: time.Hour, Now: func() time.Time { return now }})
	res, err := sw.Sweep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Deleted != 120 || res.Markers != 2 {
		t.Errorf("result %+v", res)
	}
	if got := keysOf(t, st); !slices.Equal(got, []string{"big/", "big/zz-young"}) {
		t.Errorf("left %v", got)
	}
}

func TestNewValidates(t *testing.T) {
	st, _ := tree(t, nil)
	if _, err := New(Options{Store: st}); err == nil {
		t.Error("zero retention accepted")
	}
	if _, err := New(Options{Retention: time.Hour}); err == nil {
		t.Error("nil store accepted")
	}
	for ret, want := range map[time.Duration]time.Duration{time.Second: time.Second, time.Hour: 5 * time.Minute, 20 * time.Second: 2 * time.Second} {
		sw, _ := New(Options{Store: st, Retention: ret})
		if sw.Interval() != want {
			t.Errorf("retention %s: interval %s, want %s", ret, sw.Interval(), want)
		}
	}
}
