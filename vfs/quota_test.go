package vfs_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/vfs"
	"github.com/sftpgw/sftpgw/vfs/localstore"
)

type events struct {
	mu sync.Mutex
	ev []audit.Event
}

func (e *events) Record(ev audit.Event) { e.mu.Lock(); e.ev = append(e.ev, ev); e.mu.Unlock() }

func (e *events) limits() []audit.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []audit.Event
	for _, ev := range e.ev {
		if ev.ErrClass == "limit" {
			out = append(out, ev)
		}
	}
	return out
}

// rig is one store shared by sessions, like one gateway over one bucket.
type rig struct {
	t       *testing.T
	store   vfs.Store
	uploads *vfs.Uploads
	ev      *events
}

func newRig(t *testing.T) *rig {
	st, err := localstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &rig{t: t, store: st, uploads: vfs.NewUploads(), ev: &events{}}
}

func (r *rig) session(home string, lim vfs.Limits) *vfs.FS {
	return vfs.New(vfs.Options{Store: r.store, StoreName: "files", Uploads: r.uploads, Audit: r.ev,
		Session: vfs.Session{ID: "s", User: "u", Role: "applicant", Home: home, Perms: vfs.PermAll, Limits: lim}})
}

// restart forgets every in-memory count, as a new gateway process would.
func (r *rig) restart() { r.uploads = vfs.NewUploads() }

func (r *rig) exists(key string) bool {
	_, err := r.store.Stat(context.Background(), key)
	return err == nil
}

// put uploads data in chunks of 1000 bytes and returns the first error.
func put(fs *vfs.FS, name string, data []byte) error {
	ctx := context.Background()
	w, err := fs.OpenWrite(ctx, name, false)
	if err != nil {
		return err
	}
	for off := 0; off < len(data); off += 1000 {
		if _, err := w.WriteAt(data[off:min(off+1000, len(data))], int64(off)); err != nil {
			_ = w.Close()
			return err
		}
	}
	return w.Close()
}

func pdf(n int) []byte { return append([]byte("%PDF-1.7\n"), bytes.Repeat([]byte("x"), n-9)...) }

func isLimit(err error, contains string) bool {
	var le *vfs.LimitError
	return errors.As(err, &le) && strings.Contains(le.Error(), contains)
}

func TestMaxFileSize(t *testing.T) {
	r := newRig(t)
	fs := r.session("user/a/", vfs.Limits{MaxFileSize: 5000})
	if err := put(fs, "ok.bin", make([]byte, 5000)); err != nil {
		t.Fatalf("file at the limit: %v", err)
	}
	err := put(fs, "big.bin", make([]byte, 5001))
	if !isLimit(err, "big.bin is larger than the limit of 4.9 KiB per file") {
		t.Fatalf("err = %v", err)
	}
	if r.exists("user/a/big.bin") {
		t.Error("refused upload left an object")
	}
	// A chunk far ahead of the stream is refused when it arrives.
	w, err := fs.OpenWrite(context.Background(), "far.bin", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt([]byte("x"), 5000); !isLimit(err, "larger than the limit") {
		t.Fatalf("far chunk: %v", err)
	}
	if err := w.Close(); !isLimit(err, "larger") {
		t.Fatalf("close after refusal: %v", err)
	}
	if n := len(r.ev.limits()); n != 2 {
		t.Errorf("%d limit events, want 2", n)
	}
	for _, ev := range r.ev.limits() {
		if ev.Op != "upload" || ev.Result != "error" || !strings.Contains(ev.Detail, "larger than the limit") {
			t.Errorf("event %+v", ev)
		}
	}
}

func TestAllowedTypes(t *testing.T) {
	r := newRig(t)
	fs := r.session("user/a/", vfs.Limits{AllowedTypes: []string{"pdf", "txt"}})
	ctx := context.Background()
	if _, err := fs.OpenWrite(ctx, "setup.exe", false); !isLimit(err, ".exe files are not accepted") {
		t.Fatalf(".exe: %v", err)
	}
	// An ELF binary named .pdf is refused at its first write, before any
	// byte reaches the store.
	w, err := fs.OpenWrite(ctx, "cv.pdf", false)
	if err != nil {
		t.Fatal(err)
	}
	elf := append([]byte("\x7fELF\x02\x01\x01"), make([]byte, 5000)...)
	if _, err := w.WriteAt(elf, 0); !isLimit(err, "the content of cv.pdf is not a PDF document") {
		t.Fatalf("elf: %v", err)
	}
	_ = w.Close()
	if err := put(fs, "note.txt", []byte("hello\x00")); !isLimit(err, "not a plain UTF-8 text") {
		t.Fatalf("short binary .txt: %v", err)
	}
	if err := put(fs, "cv2.pdf", pdf(3000)); err != nil {
		t.Fatal(err)
	}
	if err := put(fs, "note.txt", []byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	if r.exists("user/a/cv.pdf") || r.exists("user/a/setup.exe") {
		t.Error("refused upload left an object")
	}
	// Renaming cannot change what a file is.
	if err := fs.Rename(ctx, "note.txt", "note.bat", false); !isLimit(err, "rename refused") {
		t.Errorf("rename to .bat: %v", err)
	}
	if err := fs.Rename(ctx, "note.txt", "note.pdf", false); !isLimit(err, "a file keeps its type") {
		t.Errorf("rename txt to pdf: %v", err)
	}
	if err := fs.Rename(ctx, "cv2.pdf", "final.pdf", false); err != nil {
		t.Error(err)
	}
	if n := len(r.ev.limits()); n != 5 {
		t.Errorf("%d limit events, want 5", n)
	}
}

func TestQuotaFiles(t *testing.T) {
	r := newRig(t)
	lim := vfs.Limits{QuotaFiles: 3}
	fs := r.session("user/a/", lim)
	ctx := context.Background()
	if err := fs.Mkdir(ctx, "docs"); err != nil { // markers are not files
		t.Fatal(err)
	}
	for _, n := range []string{"1", "docs/2", "3"} {
		if err := put(fs, n, []byte(n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := put(fs, "4", []byte("4")); !isLimit(err, "limit of 3 files") {
		t.Fatalf("4th file: %v", err)
	}
	if err := put(fs, "3", []byte("three")); err != nil {
		t.Fatalf("overwrite at the file limit: %v", err)
	}
	// Another user's files do not count.
	if err := put(r.session("user/b/", lim), "x", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := fs.Remove(ctx, "1"); err != nil {
		t.Fatal(err)
	}
	if err := put(fs, "4", []byte("4")); err != nil {
		t.Fatalf("after a delete: %v", err)
	}
	// After a restart the count comes from the store.
	r.restart()
	fs = r.session("user/a/", lim)
	if err := put(fs, "5", []byte("5")); !isLimit(err, "limit of 3 files") {
		t.Fatalf("after restart: %v", err)
	}
	if err := fs.Remove(ctx, "docs/2"); err != nil {
		t.Fatal(err)
	}
	if err := put(fs, "5", []byte("5")); err != nil {
		t.Fatalf("after restart and delete: %v", err)
	}
}

func TestQuotaBytes(t *testing.T) {
	r := newRig(t)
	lim := vfs.Limits{QuotaBytes: 10000}
	fs := r.session("user/a/", lim)
	ctx := context.Background()
	if err := put(fs, "a", make([]byte, 6000)); err != nil {
		t.Fatal(err)
	}
	err := put(fs, "b", make([]byte, 4001))
	if !isLimit(err, "storage quota of 9.8 KiB would be exceeded (5.9 KiB already stored)") {
		t.Fatalf("over quota: %v", err)
	}
	if r.exists("user/a/b") {
		t.Error("refused upload left an object")
	}
	if err := put(fs, "b", make([]byte, 4000)); err != nil {
		t.Fatalf("exactly at quota: %v", err)
	}
	if _, err := fs.OpenWrite(ctx, "c", false); !isLimit(err, "quota") {
		t.Fatalf("open with the quota used up: %v", err)
	}
	// Replacing a file counts only the difference.
	if err := put(fs, "a", make([]byte, 5000)); err != nil {
		t.Fatalf("smaller overwrite: %v", err)
	}
	if err := put(fs, "a", make([]byte, 6000)); err != nil {
		t.Fatalf("overwrite back to the same total: %v", err)
	}
	if err := put(fs, "a", make([]byte, 6001)); !isLimit(err, "quota") {
		t.Fatalf("growing overwrite: %v", err)
	}
	if err := fs.Rename(ctx, "b", "a", true); err != nil { // replaces a: frees 6000
		t.Fatal(err)
	}
	if err := put(fs, "c", make([]byte, 6000)); err != nil {
		t.Fatalf("after an overwriting rename: %v", err)
	}
	// A restart derives the usage from the store: 10000 bytes stored.
	r.restart()
	fs = r.session("user/a/", lim)
	if err := put(fs, "d", []byte("x")); !isLimit(err, "quota") {
		t.Fatalf("after restart: %v", err)
	}
}

// TestQuotaSharedBetweenSessions: two sessions of one user draw on one
// quota, and a delete by another role (HR) frees it at once.
func TestQuotaSharedBetweenSessions(t *testing.T) {
	r := newRig(t)
	lim := vfs.Limits{QuotaBytes: 10000, QuotaFiles: 2}
	s1, s2 := r.session("user/a/", lim), r.session("user/a/", lim)
	hr := r.session("user/", vfs.Limits{})
	ctx := context.Background()
	w, err := s1.OpenWrite(ctx, "one", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt(make([]byte, 7000), 0); err != nil {
		t.Fatal(err)
	}
	// While s1's upload is in flight, s2 cannot take the same room.
	if err := put(s2, "two", make([]byte, 3001)); !isLimit(err, "quota") {
		t.Fatalf("second session: %v", err)
	}
	if _, err := s2.OpenWrite(ctx, "three", false); err != nil {
		t.Fatal(err) // the second of two files may be opened ...
	}
	if _, err := s2.OpenWrite(ctx, "four", false); !isLimit(err, "limit of 2 files") {
		t.Fatalf("third file in flight: %v", err) // ... but not a third
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := hr.Remove(ctx, "a/one"); err != nil {
		t.Fatal(err)
	}
	if err := put(s1, "five", make([]byte, 9000)); err != nil {
		t.Fatalf("after HR deleted: %v", err)
	}
}

// TestAbortedUploadReleasesQuota: a failed or killed upload gives back
// what it reserved.
func TestAbortedUploadReleasesQuota(t *testing.T) {
	r := newRig(t)
	fs := r.session("user/a/", vfs.Limits{QuotaBytes: 10000, QuotaFiles: 1})
	ctx := context.Background()
	w, err := fs.OpenWrite(ctx, "x", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt(make([]byte, 9000), 0); err != nil {
		t.Fatal(err)
	}
	w.TransferError(errors.New("connection lost"))
	_ = w.Close()
	if err := put(fs, "y", make([]byte, 10000)); err != nil {
		t.Fatalf("after an aborted upload: %v", err)
	}
}
