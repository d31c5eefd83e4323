package vfs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

var (
	errNotSequential = errors.New("random-access writes are not supported: files must be uploaded sequentially from the start (resume and in-place edits are refused; nothing was changed)")
	errWindow        = errors.New("upload refused: client wrote too far ahead of the data received so far")
	errGap           = errors.New("upload refused: the file has a gap (a range was never written); nothing was stored")
	errSessionWindow = &LimitError{Reason: "upload refused: this session's uploads together hold too much data written ahead of order; upload fewer files at once"}
	errAborted       = errors.New("transfer aborted")
	errRemoved       = fmt.Errorf("%w: the file was removed during its upload; nothing was stored", errAborted)
)

// errInPlace refuses opening an existing file for writing without
// truncation: the writes would be an in-place edit (dd conv=notrunc, >>,
// reput, sshfs r+), which an object cannot take; replacing it with just
// the written bytes would silently destroy the rest of the file.
var errInPlace = fmt.Errorf("%w: an existing file cannot be modified in place (append, resume or partial rewrite); upload a complete new copy", ErrUnsupported)

// OpenWrite opens p for a new upload that replaces any existing object.
func (f *FS) OpenWrite(ctx context.Context, p string, exclusive bool) (*Writer, error) {
	return f.OpenWriteFlags(ctx, p, WriteFlags{Exclusive: exclusive, Truncate: true})
}

// WriteFlags are the open flags that matter for an upload.
type WriteFlags struct {
	Exclusive bool // O_EXCL: a conditional create
	Truncate  bool // O_TRUNC: replace the content; without it a non-empty file is refused
}

// OpenWriteFlags opens p for a new upload. The object appears only when
// the Writer is closed after a complete, sequential upload.
func (f *FS) OpenWriteFlags(ctx context.Context, p string, fl WriteFlags) (w *Writer, err error) {
	exclusive := fl.Exclusive
	vp, key, err := f.resolve(p)
	ev := f.begin(OpUpload, vp)
	fail := func(err error) (*Writer, error) { f.finish(ev, err); return nil, err }
	if err != nil {
		return fail(err)
	}
	if vp == "/" {
		return fail(&InvalidPathError{Reason: "is a directory"})
	}
	if err := f.authorize(ev); err != nil {
		return fail(err)
	}
	fi, err := f.stat(ctx, vp, key)
	exists := err == nil
	if err != nil && !errors.Is(err, ErrNotExist) {
		return fail(err)
	}
	// An interrupted upload of this user's kept for resume: an open
	// without truncation may continue it (decided at the first write);
	// any other open starts afresh and discards it.
	pend, err := f.pending(ctx, key)
	if err != nil {
		return fail(err)
	}
	if f.uploads.get(f.name, key) != nil {
		pend = nil // the manifest is a live upload's checkpoint, on this instance
	}
	if pend != nil && (fl.Truncate || exclusive) {
		if err := f.discardPending(context.WithoutCancel(ctx), pend); err != nil {
			return fail(err)
		}
		ev.detail = "interrupted upload discarded: a new upload replaces it"
		pend = nil
	}
	switch {
	case exists && fi.IsDir:
		return fail(&InvalidPathError{Reason: "is a directory"})
	case exists && exclusive:
		return fail(ErrExist)
	case exists:
		ev.op = OpOverwrite
		if err := f.authorize(ev); err != nil {
			return fail(err)
		}
		if !fl.Truncate && fi.Size > 0 && pend == nil {
			return fail(errInPlace)
		}
	}
	resumable := ""
	if pend != nil {
		resumable = key
	}
	lim, err := f.admit(ctx, vp, exists, fi.Size, resumable)
	if err != nil {
		return fail(err)
	}
	// Without overwrite the object must not exist when the upload commits,
	// not only when it opened: a conditional create (If-None-Match: *)
	// keeps another session or gateway instance from being replaced.
	noOverwrite := !exists && !exclusive && !f.sess.Perms.Has(OpOverwrite)
	opt := CreateOptions{Exclusive: exclusive || noOverwrite, SizeHint: -1}
	w = &Writer{fs: f, key: key, ev: ev, max: f.window, pending: map[int64][]byte{}, ctx: ctx, lim: lim,
		noOverwrite: noOverwrite, opt: opt, resume: pend}
	if f.resumeOn() {
		// The session's end must not abort the store's upload: the
		// Writer keeps it for resume (TransferError) or aborts it itself.
		ctx = context.WithoutCancel(ctx)
	}
	if pend == nil {
		up, err := f.store.Create(ctx, key, w.withProgress())
		if err != nil {
			lim.release()
			return fail(err)
		}
		w.up = up
	}
	f.uploads.add(f.name, key, w)
	return w, nil
}

// Writer turns pkg/sftp's concurrent, possibly reordered WriteAt calls into
// the sequential stream an S3 multipart upload needs. Chunks that arrive
// ahead of the next expected offset wait in a bounded window; anything that
// seeks backwards or leaves a gap fails the whole upload, which is then
// aborted so no partial object is ever visible.
type Writer struct {
	fs  *FS
	key string
	up  Upload
	ev  *opEvent
	ctx context.Context
	lim *upLimit // size, type and quota checks; accounting on commit
	// noOverwrite: the role may not overwrite, so the upload was created
	// exclusive; a file that appeared meanwhile makes the commit a denial.
	noOverwrite bool
	opt         CreateOptions // for an upload created late (see decide)

	// resume, while not nil, is an interrupted upload this open may
	// continue; up is nil until the first write decides (see decide).
	resume    *resumeManifest
	resumedAt int64         // the offset a resumed upload continued at
	mkey      string        // manifest of the resumed upload, removed when it ends
	cp        *checkpointer // keeps the manifest current (resume on)

	mu       sync.Mutex
	next     int64 // offset of the next byte the upload expects
	pending  map[int64][]byte
	spare    [][]byte // drained pending copies, reused for the next ones
	buffered int64
	max      int64
	err      error
	done     bool

	tmu       sync.Mutex // not mu: a setstat need not wait for a part upload
	mtime     time.Time  // set by a setstat during the upload
	lateMTime bool       // too late for the upload itself: set after Commit
}

// setMTime folds a setstat's time into the upload (free), or, if the store
// can no longer take it (S3: multipart already started), notes it for
// after the commit.
func (w *Writer) setMTime(t time.Time) {
	w.tmu.Lock()
	defer w.tmu.Unlock()
	w.mtime = t
	w.lateMTime = w.up == nil || !w.up.SetMTime(t) // nil: settled when the upload starts
}

// shownTime is the upload's time in a stat: the one set, else now.
func (w *Writer) shownTime() time.Time {
	w.tmu.Lock()
	defer w.tmu.Unlock()
	if w.mtime.IsZero() {
		return time.Now()
	}
	return w.mtime
}

// Size is the number of bytes accepted so far (in order).
func (w *Writer) Size() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.resume != nil {
		return w.resume.Upload.Size // undecided: the size to continue from
	}
	return w.next
}

// WriteAt accepts p at off.
func (w *Writer) WriteAt(p []byte, off int64) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return 0, w.err
	}
	if w.done {
		return 0, errAborted
	}
	if w.resume != nil {
		if err := w.decide(off); err != nil {
			return 0, err
		}
	}
	switch {
	case off == w.next:
		if err := w.write(p); err != nil {
			return 0, err
		}
		for {
			chunk, ok := w.pending[w.next]
			if !ok {
				break
			}
			delete(w.pending, w.next)
			w.buffered -= int64(len(chunk))
			w.fs.budget.give(int64(len(chunk)))
			if err := w.write(chunk); err != nil {
				return 0, err
			}
			w.recycle(chunk)
		}
	case off < w.next:
		w.fail(errNotSequential)
		return 0, w.err
	default:
		if old, ok := w.pending[off]; ok {
			w.buffered -= int64(len(old)) // a client retrying the same chunk
			w.fs.budget.give(int64(len(old)))
			delete(w.pending, off)
		}
		if w.buffered+int64(len(p)) > w.max {
			w.fail(errWindow)
			return 0, w.err
		}
		if !w.fs.budget.take(int64(len(p))) {
			w.dropSpare() // our own kept copies first, then refuse
			if !w.fs.budget.take(int64(len(p))) {
				w.fail(errSessionWindow)
				return 0, w.err
			}
		}
		// Refuse an oversized file at its first far chunk, not at the end.
		if err := w.lim.reserve(off + int64(len(p))); err != nil {
			w.fs.budget.give(int64(len(p)))
			w.fail(err)
			return 0, w.err
		}
		// pkg/sftp reuses p after we return: keep a copy.
		w.pending[off] = append(w.spareBuf(len(p)), p...)
		w.buffered += int64(len(p))
	}
	return len(p), nil
}

// maxSpare bounds the copies kept for reuse. A stock client's reordering
// leaves a few chunks pending at a time; reusing their copies saves the GC
// about a fifth of the upload's bytes (pkg/sftp's workers finish requests
// out of order that often).
const maxSpare = 8

// spareBuf returns an empty buffer with room for n bytes, or nil (append
// allocates); called with mu held.
func (w *Writer) spareBuf(n int) []byte {
	for i := len(w.spare) - 1; i >= 0; i-- {
		if b := w.spare[i]; cap(b) >= n {
			w.spare = append(w.spare[:i], w.spare[i+1:]...)
			w.fs.budget.give(int64(cap(b)))
			return b[:0]
		}
	}
	return nil
}

// recycle keeps a drained copy for reuse (Upload.Write does not retain
// its argument); called with mu held.
func (w *Writer) recycle(b []byte) {
	// Kept copies count against the session's budget too, and only up to
	// half of it: they must not crowd out data waiting for its turn.
	if len(w.spare) < maxSpare && w.fs.budget.takeSpare(int64(cap(b))) {
		w.spare = append(w.spare, b[:0])
	}
}

// dropSpare frees the kept copies; called with mu held.
func (w *Writer) dropSpare() {
	for _, b := range w.spare {
		w.fs.budget.give(int64(cap(b)))
	}
	w.spare = nil
}

// write appends to the upload; called with mu held.
func (w *Writer) write(p []byte) error {
	if err := w.lim.accept(w.next, p); err != nil {
		w.fail(err)
		return w.err
	}
	if _, err := w.up.Write(p); err != nil {
		w.fail(err)
		return w.err
	}
	w.next += int64(len(p))
	return nil
}

// fail records the first error and aborts the upload; called with mu held.
func (w *Writer) fail(err error) {
	if w.err == nil {
		w.err = err
		w.fs.budget.give(w.buffered)
		w.dropSpare()
		w.pending, w.buffered = nil, 0
		if w.up != nil {
			_ = w.up.Abort(context.WithoutCancel(w.ctx))
			w.dropManifest(context.WithoutCancel(w.ctx))
		}
		w.lim.release()
	}
}

// discard fails an upload still open, so its close commits nothing (the
// file was removed). It reports false if the upload already ended.
func (w *Writer) discard() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return false
	}
	w.fail(errRemoved)
	return true
}

// errReadOnUpload fails an upload whose handle was read from.
var errReadOnUpload = fmt.Errorf("%w: reading through an upload handle is not allowed; the upload was discarded", ErrPermission)

// ReadAt refuses reading back through an upload handle: downloads have one
// path only (OpenRead), where the choke point decides. It also fails the
// upload: a client that reads through its upload handle is broken or
// probing, and pkg/sftp may have handed the same request to WriteAt with
// a recycled buffer (see gateway's open flag guard), so what was written
// cannot be trusted.
func (w *Writer) ReadAt([]byte, int64) (int, error) {
	w.fs.Deny("read_from_upload_handle", w.ev.path)
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done && w.err == nil {
		w.ev.detail = "read through the upload handle: upload discarded"
		w.fail(errReadOnUpload)
	}
	return 0, ErrPermission
}

// TransferError is called by pkg/sftp when the session ends with this
// handle still open (client killed, connection lost): abort, never commit.
func (w *Writer) TransferError(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.up == nil && !w.done && w.err == nil {
		// Nothing written: an interrupted upload it might have resumed
		// stays as it was.
		w.err = fmt.Errorf("%w: %v", errAborted, err)
		w.lim.release()
		return
	}
	if w.suspend(err) > 0 {
		return
	}
	w.fail(fmt.Errorf("%w: %v", errAborted, err))
}

// storeLateMTime sets a time the upload could not carry. The file is
// stored either way: a failure costs only its time, and is logged and told
// in the upload's audit event.
func (w *Writer) storeLateMTime() {
	w.tmu.Lock()
	t, late := w.mtime, w.lateMTime
	w.tmu.Unlock()
	if !late {
		return
	}
	if err := w.fs.store.SetMTime(context.WithoutCancel(w.ctx), w.key, t); err != nil {
		w.ev.detail = "file stored, its modification time not: " + SafeMessage(err)
		w.fs.log.Warn("upload: modification time not stored", "path", w.ev.path, "error", SafeMessage(err))
	}
}

// Close commits a complete upload, or aborts and reports why not.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return w.err
	}
	if w.err == nil && w.up != nil && w.fs.resumeOn() && w.ctx.Err() != nil {
		// The session ended before this close: an interruption, not a
		// complete upload (the store upload was detached from the session).
		if w.suspend(context.Cause(w.ctx)) == 0 {
			w.fail(fmt.Errorf("%w: %v", errAborted, context.Cause(w.ctx)))
		}
	}
	w.done = true
	defer w.fs.uploads.remove(w.fs.name, w.key, w)
	defer w.dropSpare()
	if w.err == nil && w.up == nil {
		// Opened without truncation, closed without a write: the
		// interrupted upload stays as it was, nothing is stored.
		w.ev.detail = "nothing written; the interrupted upload is kept"
		w.lim.release()
		w.fs.finish(w.ev, nil)
		return nil
	}
	if w.err == nil && len(w.pending) > 0 {
		w.fail(errGap)
	}
	if w.err == nil {
		if err := w.lim.finish(); err != nil { // type of a file shorter than the sniff length
			w.fail(err)
		}
	}
	if w.err == nil {
		if err := w.up.Commit(context.WithoutCancel(w.ctx)); err != nil {
			if w.noOverwrite && errors.Is(err, ErrExist) {
				// The file appeared during the upload: committing now would
				// be an overwrite, which the choke point decides.
				w.ev.op = OpOverwrite
				if aerr := w.fs.authorize(w.ev); aerr != nil {
					w.ev.detail += " (the file was created by someone else during the upload)"
					err = aerr
				}
			}
			w.fail(err)
		} else {
			w.lim.committed(w.fs, w.key, w.next)
			w.storeLateMTime()
			w.dropManifest(context.WithoutCancel(w.ctx))
		}
	}
	// Bytes sent in this session: a resumed upload's kept part was counted
	// by the interrupted one (metrics add them up as one upload).
	w.ev.bytes = w.next - w.resumedAt
	if w.resumedAt > 0 && w.err == nil {
		d := fmt.Sprintf("resumed at byte %d; file %d bytes", w.resumedAt, w.next)
		if w.ev.detail != "" && !strings.HasPrefix(w.ev.detail, "resumed at") {
			d += "; " + w.ev.detail
		}
		w.ev.detail = d
	}
	w.fs.finish(w.ev, w.err)
	return w.err
}

// windowBudget is the reorder memory left to one session's uploads.
type windowBudget struct {
	mu   sync.Mutex
	used int64
	max  int64
}

func (b *windowBudget) take(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.max {
		return false
	}
	b.used += n
	return true
}

// takeSpare takes n only while at most half the budget is in use.
func (b *windowBudget) takeSpare(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.max/2 {
		return false
	}
	b.used += n
	return true
}

func (b *windowBudget) give(n int64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
}
