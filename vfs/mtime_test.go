package vfs_test

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/vfs"
)

// countingStore counts server-side time changes (each a copy on S3) and
// can play an S3 multipart upload, which takes no time once started.
type countingStore struct {
	vfs.Store
	setMTimes atomic.Int32
	late      bool
}

func (s *countingStore) SetMTime(ctx context.Context, key string, t time.Time) error {
	s.setMTimes.Add(1)
	return s.Store.SetMTime(ctx, key, t)
}

func (s *countingStore) Create(ctx context.Context, key string, o vfs.CreateOptions) (vfs.Upload, error) {
	up, err := s.Store.Create(ctx, key, o)
	if err != nil || !s.late {
		return up, err
	}
	return lateUpload{up}, nil
}

type lateUpload struct{ vfs.Upload }

func (lateUpload) SetMTime(time.Time) bool { return false }

func (e *events) find(op, result string) []audit.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []audit.Event
	for _, ev := range e.ev {
		if ev.Op == op && ev.Result == result {
			out = append(out, ev)
		}
	}
	return out
}

func statTime(t *testing.T, fs *vfs.FS, p string) time.Time {
	t.Helper()
	fi, err := fs.Stat(context.Background(), p)
	if err != nil {
		t.Fatalf("stat %s: %v", p, err)
	}
	return fi.ModTime
}

var (
	mt1 = time.Date(2020, 1, 2, 3, 4, 0, 0, time.UTC)
	mt2 = time.Date(2021, 5, 6, 7, 8, 9, 0, time.UTC)
)

// A setstat with a time on a file being uploaded (OpenSSH put -p sends it
// before close) goes into the upload: no extra store request; stat during
// and after the upload, listings and a rename all show it.
func TestSetstatDuringUpload(t *testing.T) {
	for _, late := range []bool{false, true} {
		r := newRig(t)
		cs := &countingStore{Store: r.store, late: late}
		r.store = cs
		fs := r.session("h/", vfs.Limits{})
		ctx := context.Background()
		w, err := fs.OpenWrite(ctx, "/a.txt", false)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.WriteAt([]byte("hello"), 0); err != nil {
			t.Fatal(err)
		}
		if err := fs.Setstat(ctx, "/a.txt", mt1); err != nil {
			t.Fatalf("setstat during upload: %v", err)
		}
		if got := statTime(t, fs, "/a.txt"); !got.Equal(mt1) {
			t.Errorf("stat during upload: %v; want %v", got, mt1)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if got := statTime(t, fs, "/a.txt"); !got.Equal(mt1) {
			t.Errorf("late=%v: stat after upload: %v; want %v", late, got, mt1)
		}
		// Folded: no copy. Too late for the upload (S3 multipart): one, after the commit.
		if n, want := cs.setMTimes.Load(), map[bool]int32{false: 0, true: 1}[late]; n != want {
			t.Errorf("late=%v: %d server-side time changes; want %d", late, n, want)
		}
		if err := fs.Rename(ctx, "/a.txt", "/b.txt", false); err != nil {
			t.Fatal(err)
		}
		if got := statTime(t, fs, "/b.txt"); !got.Equal(mt1) {
			t.Errorf("after rename: %v; want %v", got, mt1)
		}
		ev := r.ev.find("setstat", "ok")
		if len(ev) != 1 || ev[0].Detail != "mtime 2020-01-02T03:04:00Z" {
			t.Errorf("setstat events %+v; want one with the time", ev)
		}
	}
}

// A setstat with a time on a stored file changes it in the store, once: the
// same time again costs nothing. Directories keep theirs on their marker
// (made if missing); listings show both, never 1970.
func TestSetstatStored(t *testing.T) {
	r := newRig(t)
	cs := &countingStore{Store: r.store}
	r.store = cs
	fs := r.session("h/", vfs.Limits{})
	ctx := context.Background()
	if err := put(fs, "/f", []byte("data")); err != nil {
		t.Fatal(err)
	}
	before := time.Now().Add(-time.Minute)
	if got := statTime(t, fs, "/f"); got.Before(before) {
		t.Errorf("a file without a set time shows %v; want its upload time", got)
	}
	for i := 0; i < 2; i++ {
		if err := fs.Setstat(ctx, "/f", mt1); err != nil {
			t.Fatal(err)
		}
	}
	if n := cs.setMTimes.Load(); n != 1 {
		t.Errorf("%d server-side time changes for the same time twice; want 1", n)
	}
	if got := statTime(t, fs, "/f"); !got.Equal(mt1) {
		t.Errorf("stat: %v; want %v", got, mt1)
	}
	// Modes and owners only: accepted, nothing changes.
	if err := fs.Setstat(ctx, "/f", time.Time{}); err != nil || cs.setMTimes.Load() != 1 {
		t.Errorf("setstat without a time: %v, %d changes", err, cs.setMTimes.Load())
	}

	if err := fs.Mkdir(ctx, "/d"); err != nil {
		t.Fatal(err)
	}
	if got := statTime(t, fs, "/d"); got.Before(before) {
		t.Errorf("new directory shows %v; want its creation time", got)
	}
	if err := fs.Setstat(ctx, "/d", mt2); err != nil {
		t.Fatal(err)
	}
	// A directory with no marker (its files were written by another tool).
	up, err := r.store.Create(ctx, "h/implicit/x", vfs.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	up.Commit(ctx)
	if got := statTime(t, fs, "/implicit"); got.Before(before) {
		t.Errorf("directory without marker shows %v; want now", got)
	}
	if err := fs.Setstat(ctx, "/implicit", mt2); err != nil {
		t.Fatal(err)
	}
	if got := statTime(t, fs, "/implicit"); !got.Equal(mt2) {
		t.Errorf("directory without marker after setstat: %v; want %v", got, mt2)
	}
	if err := fs.Setstat(ctx, "/missing", mt2); !errors.Is(err, vfs.ErrNotExist) {
		t.Errorf("setstat of a missing path: %v", err)
	}

	l, err := fs.List(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	items, err := l.Next(100)
	if err != nil && err != io.EOF {
		t.Fatal(err)
	}
	want := map[string]time.Time{"f": mt1, "d": mt2, "implicit": mt2}
	for _, fi := range items {
		if w, ok := want[fi.Name]; !ok || !fi.ModTime.Equal(w) {
			t.Errorf("listed %s: %v; want %v", fi.Name, fi.ModTime, w)
		}
		delete(want, fi.Name)
	}
	if len(want) != 0 {
		t.Errorf("not listed: %v", want)
	}
}

// Setting times needs the role's setstat permission; a refusal is audited
// and changes nothing.
func TestSetstatPermission(t *testing.T) {
	r := newRig(t)
	fs := r.session("h/", vfs.Limits{})
	if err := put(fs, "/f", []byte("data")); err != nil {
		t.Fatal(err)
	}
	ro := vfs.New(vfs.Options{Store: r.store, StoreName: "files", Uploads: r.uploads, Audit: r.ev,
		Session: vfs.Session{ID: "s2", User: "u", Role: "reader", Home: "h/", Perms: vfs.PermAll.Without(vfs.OpSetstat)}})
	if err := ro.Setstat(context.Background(), "/f", mt1); !errors.Is(err, vfs.ErrPermission) {
		t.Fatalf("setstat without permission: %v", err)
	}
	if got := statTime(t, fs, "/f"); got.Equal(mt1) {
		t.Error("time changed without permission")
	}
	if ev := r.ev.find("setstat", "denied"); len(ev) != 1 || ev[0].Detail != "role reader may not setstat" {
		t.Errorf("denied events %+v", ev)
	}
}
