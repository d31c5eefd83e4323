package vfs_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/vfs"
	"github.com/sftpgw/sftpgw/vfs/localstore"
	"github.com/sftpgw/sftpgw/vfs/storetest"
)

type dadRecorder struct {
	mu sync.Mutex
	ev []audit.Event
}

func (r *dadRecorder) Record(e audit.Event) { r.mu.Lock(); r.ev = append(r.ev, e); r.mu.Unlock() }

// deletes counts delete events with result and detail.
func (r *dadRecorder) deletes(result, detailPrefix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.ev {
		if e.Op == "delete" && e.Result == result && len(e.Detail) >= len(detailPrefix) && e.Detail[:len(detailPrefix)] == detailPrefix {
			n++
		}
	}
	return n
}

func dadFS(t *testing.T) (*vfs.FS, vfs.Store, *dadRecorder) {
	st, err := localstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rec := &dadRecorder{}
	fs := vfs.New(vfs.Options{Store: st, StoreName: "files", Audit: rec,
		Session: vfs.Session{ID: "s", User: "hr1", Role: "hr", Perms: vfs.PermAll, DeleteAfterDownload: true}})
	return fs, st, rec
}

func readAll(t *testing.T, r *vfs.Reader) {
	t.Helper()
	buf := make([]byte, r.Size())
	if n, err := r.ReadAt(buf, 0); n != len(buf) || (err != nil && n != len(buf)) {
		t.Fatalf("read %d of %d: %v", n, len(buf), err)
	}
}

func exists(st vfs.Store, key string) bool {
	_, err := st.Stat(context.Background(), key)
	return err == nil
}

func TestDeleteAfterDownloadCompleteOnly(t *testing.T) {
	fs, st, rec := dadFS(t)
	ctx := context.Background()
	storetest.MustPut(t, st, "whole", storetest.Data(100000))
	storetest.MustPut(t, st, "part", storetest.Data(100000))
	r, err := fs.OpenRead(ctx, "/whole")
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, r)
	r.Close()
	r, _ = fs.OpenRead(ctx, "/part")
	buf := make([]byte, 50000)
	r.ReadAt(buf, 0)
	r.Close()
	if exists(st, "whole") || !exists(st, "part") {
		t.Errorf("whole exists %v, part exists %v", exists(st, "whole"), exists(st, "part"))
	}
	if n := rec.deletes("ok", "delete after download"); n != 1 {
		t.Errorf("%d deletes", n)
	}
}

// A newer upload of the same name while HR was downloading the old one
// must survive: HR never received it.
func TestDeleteAfterDownloadKeepsNewerUpload(t *testing.T) {
	fs, st, rec := dadFS(t)
	ctx := context.Background()
	storetest.MustPut(t, st, "f", storetest.Data(5000))
	r, err := fs.OpenRead(ctx, "/f")
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, r)
	time.Sleep(10 * time.Millisecond) // a distinct modification time
	storetest.MustPut(t, st, "f", storetest.Data(5000))
	r.Close()
	if !exists(st, "f") {
		t.Fatal("the newer upload was deleted")
	}
	if n := rec.deletes("ok", "delete after download"); n != 0 {
		t.Errorf("%d deletes", n)
	}
	if n := rec.deletes("error", "delete after download skipped"); n != 1 {
		t.Errorf("%d skip events, want 1: %+v", n, rec.ev)
	}
}

// Two handles reading the same file completely delete it once.
func TestDeleteAfterDownloadOnceForTwoHandles(t *testing.T) {
	fs, st, rec := dadFS(t)
	ctx := context.Background()
	storetest.MustPut(t, st, "f", storetest.Data(5000))
	a, _ := fs.OpenRead(ctx, "/f")
	b, _ := fs.OpenRead(ctx, "/f")
	readAll(t, a)
	readAll(t, b)
	a.Close()
	b.Close()
	if exists(st, "f") {
		t.Fatal("not deleted")
	}
	if n := rec.deletes("ok", "delete after download"); n != 1 {
		t.Errorf("%d delete events, want 1", n)
	}
	if n := rec.deletes("error", ""); n != 0 {
		t.Errorf("%d error events", n)
	}
}

// Only a download that served every byte from 0 to the end counts: the
// tail alone, or head and tail with a gap, keep the file; the whole file
// read back to front deletes it.
func TestDeleteAfterDownloadNeedsEveryByte(t *testing.T) {
	const size = 10000
	type rng struct{ off, n int64 }
	for _, tc := range []struct {
		name     string
		reads    []rng
		complete bool
	}{
		{"tail only", []rng{{size - 1000, 1000}}, false},
		{"tail past the end", []rng{{size - 1000, 4000}}, false},
		{"head only", []rng{{0, 1000}}, false},
		{"head and tail with a gap", []rng{{0, 4000}, {5000, 5000}}, false},
		{"all but the last byte", []rng{{0, size - 1}}, false},
		{"all but the first byte", []rng{{1, size - 1}}, false},
		{"back to front", []rng{{8000, 2000}, {6000, 2000}, {4000, 2000}, {2000, 2000}, {0, 2000}}, true},
		{"whole, asking for more", []rng{{0, size + 500}}, true},
		{"overlapping", []rng{{0, 6000}, {3000, 7000}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs, st, rec := dadFS(t)
			storetest.MustPut(t, st, "f", storetest.Data(size))
			r, err := fs.OpenRead(context.Background(), "/f")
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range tc.reads {
				r.ReadAt(make([]byte, x.n), x.off)
			}
			if got := r.Complete(); got != tc.complete {
				t.Errorf("Complete() = %v, want %v", got, tc.complete)
			}
			r.Close()
			if exists(st, "f") == tc.complete {
				t.Errorf("file exists %v after a download that was complete: %v", exists(st, "f"), tc.complete)
			}
			if n := rec.deletes("ok", "delete after download"); (n == 1) != tc.complete || n > 1 {
				t.Errorf("%d delete events", n)
			}
		})
	}
}
