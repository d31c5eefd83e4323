package vfs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sftpgw/sftpgw/vfs"
	"github.com/sftpgw/sftpgw/vfs/localstore"
	"github.com/sftpgw/sftpgw/vfs/storetest"
)

// resumeRig is a local store shared by sessions of several users, with
// resume on and a clock the test moves.
type resumeRig struct {
	t       *testing.T
	root    string
	store   *localstore.Store
	uploads *vfs.Uploads
	ev      *events
	lim     vfs.Limits
	now     time.Time
	window  time.Duration
}

func newResumeRig(t *testing.T) *resumeRig {
	root := memTempDir(t)
	st, err := localstore.New(root)
	if err != nil {
		t.Fatal(err)
	}
	return &resumeRig{t: t, root: root, store: st, uploads: vfs.NewUploads(), ev: &events{},
		now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), window: time.Hour}
}

func (r *resumeRig) session(user string) *vfs.FS {
	return vfs.New(vfs.Options{Store: r.store, StoreName: "files", Uploads: r.uploads, Audit: r.ev,
		ResumeWindow: r.window, Now: func() time.Time { return r.now },
		Session: vfs.Session{ID: "s-" + user, User: user, Role: "applicant", Perms: vfs.PermAll, Limits: r.lim}})
}

// tmpFiles counts the local store's uploads in progress or suspended.
func (r *resumeRig) tmpFiles() int {
	ents, err := os.ReadDir(filepath.Join(r.root, localstore.TmpDir))
	if err != nil {
		r.t.Fatal(err)
	}
	return len(ents)
}

func (r *resumeRig) noManifests() {
	r.t.Helper()
	for _, e := range storetest.ListAll(r.t, r.store, vfs.ListOptions{Prefix: vfs.ResumePrefix, Recursive: true}) {
		if !e.IsDir {
			r.t.Fatalf("manifest left: %s", e.Key)
		}
	}
}

// writeSeq writes data from off in chunks of 32 KiB.
func writeSeq(t *testing.T, w *vfs.Writer, data []byte, off int64) {
	t.Helper()
	for i := 0; i < len(data); i += 32 << 10 {
		if _, err := w.WriteAt(data[i:min(i+32<<10, len(data))], off+int64(i)); err != nil {
			t.Fatalf("write at %d: %v", off+int64(i), err)
		}
	}
}

// interrupt uploads data[:cut] to p and drops the session as pkg/sftp does
// (TransferError, then Close).
func interrupt(t *testing.T, fs *vfs.FS, p string, data []byte, cut int) {
	t.Helper()
	w, err := fs.OpenWrite(context.Background(), p, false)
	if err != nil {
		t.Fatal(err)
	}
	writeSeq(t, w, data[:cut], 0)
	w.TransferError(io.ErrUnexpectedEOF)
	if err := w.Close(); err == nil {
		t.Fatal("close after an interruption reported success")
	}
}

func readBack(t *testing.T, st vfs.Store, key string) []byte {
	t.Helper()
	b, err := storetest.Get(t, st, key)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return b
}

func TestResumeContinuesInterruptedUpload(t *testing.T) {
	r := newResumeRig(t)
	ctx := context.Background()
	alice := r.session("alice")
	old := storetest.Data(500)
	storetest.MustPut(t, r.store, "scan.pdf", old)
	data := storetest.Data(3<<20 + 123)
	cut := 2<<20 + 77
	interrupt(t, alice, "/scan.pdf", data, cut)

	fi, err := alice.Stat(ctx, "/scan.pdf")
	if err != nil || fi.Size != int64(cut) {
		t.Fatalf("owner's stat of the pending file: %+v %v, want size %d", fi, err, cut)
	}
	if fi, err := r.session("bob").Stat(ctx, "/scan.pdf"); err != nil || fi.Size != int64(len(old)) {
		t.Fatalf("another user's stat: %+v %v, want the stored version (%d bytes)", fi, err, len(old))
	}
	// Listings: the owner sees the pending file once, with its resumable
	// size, also when it is new in the directory; others do not.
	interrupt(t, alice, "/new.bin", data, cut)
	for user, want := range map[string]map[string]int64{
		"alice": {"scan.pdf": int64(cut), "new.bin": int64(cut)},
		"bob":   {"scan.pdf": int64(len(old))},
	} {
		if got := listSizes(t, r.session(user), "/"); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s lists %v, want %v", user, got, want)
		}
	}
	// rm of a pending file discards it.
	if err := alice.Remove(ctx, "/new.bin"); err != nil {
		t.Fatalf("remove of a pending file: %v", err)
	}
	if _, err := alice.Stat(ctx, "/new.bin"); !errors.Is(err, vfs.ErrNotExist) {
		t.Fatalf("stat after rm of a pending file: %v", err)
	}
	// No read path opens the pending upload: the stored version is read.
	rd, err := alice.OpenRead(ctx, "/scan.pdf")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(io.NewSectionReader(rd, 0, 1<<30))
	rd.Close()
	if !bytes.Equal(got, old) {
		t.Fatalf("read during the pending upload: %d bytes, want the old %d", len(got), len(old))
	}

	// reput: open without truncation, write from the pending size on.
	w, err := alice.OpenWriteFlags(ctx, "/scan.pdf", vfs.WriteFlags{})
	if err != nil {
		t.Fatalf("open for resume: %v", err)
	}
	writeSeq(t, w, data[cut:], int64(cut))
	if !bytes.Equal(readBack(t, r.store, "scan.pdf"), old) {
		t.Fatal("the stored version changed before the resumed upload completed")
	}
	if err := w.Close(); err != nil {
		t.Fatalf("close of the resumed upload: %v", err)
	}
	if !bytes.Equal(readBack(t, r.store, "scan.pdf"), data) {
		t.Fatal("resumed file differs from the source")
	}
	ev := r.ev.find("upload_resumed", "ok")
	if len(ev) != 1 || ev[0].Bytes != int64(cut) || ev[0].User != "alice" {
		t.Fatalf("upload_resumed events: %+v, want one at offset %d", ev, cut)
	}
	// The two upload events add up to the file, once: the interrupted
	// one counts what it received, the resumed one the rest.
	ups := r.ev.find("overwrite", "ok")
	if len(ups) != 1 || ups[0].Bytes != int64(len(data)-cut) || !strings.Contains(ups[0].Detail, fmt.Sprintf("resumed at byte %d", cut)) {
		t.Fatalf("resumed upload's event: %+v, want %d bytes sent and the offset in the detail", ups, len(data)-cut)
	}
	if fi, err := alice.Stat(ctx, "/scan.pdf"); err != nil || fi.Size != int64(len(data)) {
		t.Fatalf("stat after completion: %+v %v", fi, err)
	}
	if n := r.tmpFiles(); n != 0 {
		t.Fatalf("%d temp files left", n)
	}
	r.noManifests()
}

func TestResumeRestartsFromZeroOrTruncate(t *testing.T) {
	for _, tc := range []struct {
		name string
		fl   vfs.WriteFlags
	}{{"truncating open", vfs.WriteFlags{Truncate: true}}, {"write from offset 0", vfs.WriteFlags{}}} {
		t.Run(tc.name, func(t *testing.T) {
			r := newResumeRig(t)
			ctx := context.Background()
			alice := r.session("alice")
			data := storetest.Data(1 << 20)
			interrupt(t, alice, "/f.bin", data, 600<<10)
			w, err := alice.OpenWriteFlags(ctx, "/f.bin", tc.fl)
			if err != nil {
				t.Fatal(err)
			}
			fresh := storetest.Data(70 << 10)
			writeSeq(t, w, fresh, 0)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(readBack(t, r.store, "f.bin"), fresh) {
				t.Fatal("the new upload was not stored as sent")
			}
			if n := r.tmpFiles(); n != 0 {
				t.Fatalf("the discarded upload left %d temp files", n)
			}
			if len(r.ev.find("upload_resumed", "ok")) != 0 {
				t.Fatal("a fresh upload was audited as resumed")
			}
		})
	}
}

func TestResumeWrongOffsetRefused(t *testing.T) {
	r := newResumeRig(t)
	ctx := context.Background()
	alice := r.session("alice")
	data := storetest.Data(1 << 20)
	interrupt(t, alice, "/f.bin", data, 600<<10)
	w, err := alice.OpenWriteFlags(ctx, "/f.bin", vfs.WriteFlags{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.WriteAt(data[100:200], 100)
	if !errors.Is(err, vfs.ErrUnsupported) || !bytes.Contains([]byte(err.Error()), []byte("resume must continue at byte 614400")) {
		t.Fatalf("write at a wrong offset: %v, want a refusal naming byte 614400", err)
	}
	_ = w.Close()
	// The pending upload is still there and still resumes.
	if fi, err := alice.Stat(ctx, "/f.bin"); err != nil || fi.Size != 600<<10 {
		t.Fatalf("pending upload after the refusal: %+v %v", fi, err)
	}
}

func TestResumeWindowExpires(t *testing.T) {
	r := newResumeRig(t)
	ctx := context.Background()
	alice := r.session("alice")
	interrupt(t, alice, "/f.bin", storetest.Data(1<<20), 600<<10)
	if n, err := vfs.SweepResumable(ctx, r.store, r.window, r.now.Add(r.window)); err != nil || n != 0 {
		t.Fatalf("sweep within the window removed %d (%v)", n, err)
	}
	r.now = r.now.Add(r.window + time.Second)
	if _, err := alice.Stat(ctx, "/f.bin"); !errors.Is(err, vfs.ErrNotExist) {
		t.Fatalf("stat after the window: %v, want not exist", err)
	}
	if n, err := vfs.SweepResumable(ctx, r.store, r.window, r.now); err != nil || n != 1 {
		t.Fatalf("sweep after the window removed %d (%v), want 1", n, err)
	}
	if n := r.tmpFiles(); n != 0 {
		t.Fatalf("%d temp files left after the sweep", n)
	}
	r.noManifests()
}

func TestResumeOffAbortsAsBefore(t *testing.T) {
	r := newResumeRig(t)
	r.window = 0
	ctx := context.Background()
	alice := r.session("alice")
	interrupt(t, alice, "/f.bin", storetest.Data(1<<20), 600<<10)
	if _, err := alice.Stat(ctx, "/f.bin"); !errors.Is(err, vfs.ErrNotExist) {
		t.Fatalf("stat: %v, want not exist", err)
	}
	if n := r.tmpFiles(); n != 0 {
		t.Fatalf("%d temp files kept with resume off", n)
	}
}

func TestResumeManifestsUnnameable(t *testing.T) {
	r := newResumeRig(t)
	ctx := context.Background()
	alice := r.session("alice")
	interrupt(t, alice, "/f.bin", storetest.Data(1<<20), 600<<10)
	if _, err := alice.List(ctx, "/"+vfs.ResumePrefix); err == nil {
		t.Fatal("the manifest prefix could be listed")
	}
	l, err := alice.List(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	es, _ := l.Next(100)
	l.Close()
	for _, e := range es {
		if e.Name+"/" == vfs.ResumePrefix {
			t.Fatal("the manifest prefix is listed")
		}
	}
}

// The quota holds across a resume: the kept bytes count from the resumed
// open on, so the rest cannot push the file past the quota.
func TestResumeKeepsQuota(t *testing.T) {
	r := newResumeRig(t)
	r.lim = vfs.Limits{QuotaBytes: 3 << 20}
	ctx := context.Background()
	alice := r.session("alice")
	data := storetest.Data(4 << 20)
	interrupt(t, alice, "/f.bin", data, 2<<20)
	w, err := r.session("alice").OpenWriteFlags(ctx, "/f.bin", vfs.WriteFlags{})
	if err != nil {
		t.Fatal(err)
	}
	var werr error
	for off := 2 << 20; off < len(data) && werr == nil; off += 32 << 10 {
		_, werr = w.WriteAt(data[off:off+32<<10], int64(off))
	}
	var le *vfs.LimitError
	if !errors.As(werr, &le) || !strings.Contains(le.Error(), "quota") {
		t.Fatalf("resumed upload past the quota: %v, want a quota refusal", werr)
	}
	_ = w.Close()
	if _, err := r.store.Stat(ctx, "f.bin"); !errors.Is(err, vfs.ErrNotExist) {
		t.Fatalf("the over-quota file was stored: %v", err)
	}
}

// A setstat racing the first write of a resuming open (which creates the
// store upload) is safe (go test -race) and its time is kept.
func TestResumeSetstatDuringDecision(t *testing.T) {
	r := newResumeRig(t)
	ctx := context.Background()
	alice := r.session("alice")
	data := storetest.Data(1 << 20)
	interrupt(t, alice, "/f.bin", data, 600<<10)
	w, err := alice.OpenWriteFlags(ctx, "/f.bin", vfs.WriteFlags{})
	if err != nil {
		t.Fatal(err)
	}
	mt := time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)
	done := make(chan error, 1)
	go func() { done <- alice.Setstat(ctx, "/f.bin", mt) }()
	writeSeq(t, w, data[600<<10:], 600<<10)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := alice.Stat(ctx, "/f.bin"); err != nil || !fi.ModTime.Equal(mt) || fi.Size != int64(len(data)) {
		t.Fatalf("after the resumed upload: %+v %v, want time %v", fi, err, mt)
	}
}

// listSizes lists dir: file name -> size.
func listSizes(t *testing.T, fs *vfs.FS, dir string) map[string]int64 {
	t.Helper()
	l, err := fs.List(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	out := map[string]int64{}
	for {
		es, err := l.Next(1)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			if !e.IsDir {
				if _, dup := out[e.Name]; dup {
					t.Errorf("%s listed twice", e.Name)
				}
				out[e.Name] = e.Size
			}
		}
	}
}

// uploadAll uploads data to p in one session, returning the error.
func uploadAll(fs *vfs.FS, p string, data []byte, fl vfs.WriteFlags) error {
	w, err := fs.OpenWriteFlags(context.Background(), p, fl)
	if err != nil {
		return err
	}
	for i := 0; i < len(data); i += 32 << 10 {
		if _, err := w.WriteAt(data[i:min(i+32<<10, len(data))], int64(i)); err != nil {
			_ = w.Close()
			return err
		}
	}
	return w.Close()
}

func wantQuotaRefusal(t *testing.T, what string, err error) {
	t.Helper()
	var le *vfs.LimitError
	if !errors.As(err, &le) || !strings.Contains(le.Error(), "quota") {
		t.Fatalf("%s: %v, want a quota refusal", what, err)
	}
}

// A pending upload's kept bytes count against the quota while it waits
// (in this session and in one that derives the usage afresh), once when it
// is resumed, and no more once discarded or expired.
func TestResumePendingCountsAgainstQuota(t *testing.T) {
	r := newResumeRig(t)
	r.lim = vfs.Limits{QuotaBytes: 4 << 20}
	alice := r.session("alice")
	a := storetest.Data(5 << 19) // 2.5 MiB
	interrupt(t, alice, "/a.bin", a, 2<<20)

	big := storetest.Data(5 << 19)
	wantQuotaRefusal(t, "new upload with 2 MiB pending", uploadAll(alice, "/b.bin", big, vfs.WriteFlags{Truncate: true}))
	wantQuotaRefusal(t, "new upload with 2 MiB pending, new session", uploadAll(r.session("alice"), "/b.bin", big, vfs.WriteFlags{Truncate: true}))
	if _, err := r.store.Stat(context.Background(), "b.bin"); !errors.Is(err, vfs.ErrNotExist) {
		t.Fatalf("the refused upload was stored: %v", err)
	}

	// Resuming counts the kept bytes once: 2.5 MiB fit in 4 MiB.
	w, err := alice.OpenWriteFlags(context.Background(), "/a.bin", vfs.WriteFlags{})
	if err != nil {
		t.Fatal(err)
	}
	writeSeq(t, w, a[2<<20:], 2<<20)
	if err := w.Close(); err != nil {
		t.Fatalf("resume within the quota: %v", err)
	}

	// 2.5 MiB stored + 1 MiB pending: another 1 MiB does not fit...
	c := storetest.Data(1 << 20)
	interrupt(t, alice, "/c.bin", storetest.Data(2<<20), 1<<20)
	wantQuotaRefusal(t, "1 MiB more with 1 MiB pending", uploadAll(alice, "/d.bin", c, vfs.WriteFlags{Truncate: true}))
	// ...until the pending upload is discarded (written again from 0).
	if err := uploadAll(alice, "/c.bin", storetest.Data(100), vfs.WriteFlags{}); err != nil {
		t.Fatalf("discarding the pending upload: %v", err)
	}
	if err := uploadAll(alice, "/d.bin", c, vfs.WriteFlags{Truncate: true}); err != nil {
		t.Fatalf("after the discard: %v", err)
	}

	// An expired pending upload frees its bytes without a sweep.
	if err := alice.Remove(context.Background(), "/d.bin"); err != nil {
		t.Fatal(err)
	}
	interrupt(t, alice, "/e.bin", storetest.Data(2<<20), 1<<20)
	wantQuotaRefusal(t, "1 MiB more with 1 MiB pending (2)", uploadAll(alice, "/d.bin", c, vfs.WriteFlags{Truncate: true}))
	r.now = r.now.Add(r.window + time.Second)
	if err := uploadAll(alice, "/d.bin", c, vfs.WriteFlags{Truncate: true}); err != nil {
		t.Fatalf("after the pending upload expired: %v", err)
	}
}
