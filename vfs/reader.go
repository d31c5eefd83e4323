package vfs

import (
	"context"
	"errors"
	"io"
	"sync"
)

// OpenRead opens p for download. The size is fixed at open (HeadObject);
// reads stream from one GET and reopen with a Range only on a real seek.
func (f *FS) OpenRead(ctx context.Context, p string) (r *Reader, err error) {
	vp, key, err := f.resolve(p)
	ev := f.begin(OpDownload, vp)
	fail := func(err error) (*Reader, error) { f.finish(ev, err); return nil, err }
	if err != nil {
		return fail(err)
	}
	if err := f.authorize(ev); err != nil {
		return fail(err)
	}
	oi, err := f.store.Stat(ctx, key)
	if err != nil {
		if errors.Is(err, ErrNotExist) {
			if fi, serr := f.stat(ctx, vp, key); serr == nil && fi.IsDir {
				return fail(&InvalidPathError{Reason: "is a directory"})
			}
		}
		return fail(err)
	}
	return &Reader{fs: f, key: key, size: oi.Size, opened: oi, ev: ev, ctx: ctx}, nil
}

// maxSkip is how far ahead a read may jump on the open stream before a new
// ranged GET is cheaper than reading and keeping the bytes in between.
const maxSkip = 4 << 20

// Reader serves pkg/sftp's concurrent ReadAt calls from one sequential
// stream. Workers can ask for offsets slightly out of order: bytes skipped
// over to serve a later offset are kept (bounded by maxSkip) for the
// earlier request that is surely coming.
type Reader struct {
	fs   *FS
	key  string
	size int64
	// opened is the object as it was at open: delete after download
	// removes that object only (see sameObject).
	opened ObjectInfo
	ev     *opEvent
	ctx    context.Context

	mu      sync.Mutex
	body    io.ReadCloser
	pos     int64
	skipped []skippedChunk
	served  int64 // bytes sent to the client
	// done holds the byte ranges served; a download "counts"
	// (delete-after-download) only when they cover [0, size).
	done   ranges
	closed bool
	err    error
}

type skippedChunk struct {
	off  int64
	data []byte
}

// Size is the object size at open.
func (r *Reader) Size() int64 { return r.size }

// ReadAt reads len(p) bytes at off.
func (r *Reader) ReadAt(p []byte, off int64) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, errAborted
	}
	if r.err != nil {
		// The download already failed: answer the client's queued requests
		// at once instead of retrying the store for each one (minutes).
		return 0, r.err
	}
	if off >= r.size {
		return 0, io.EOF
	}
	want := p
	if rest := r.size - off; int64(len(want)) > rest {
		want = want[:rest]
	}
	n, err := r.read(want, off)
	if err != nil && r.err == nil {
		r.err = err
	}
	r.account(off, n)
	if err == nil && n < len(p) {
		err = io.EOF
	}
	return n, err
}

// read fills want from the skipped chunks or the stream.
func (r *Reader) read(want []byte, off int64) (int, error) {
	for i, c := range r.skipped {
		if off >= c.off && off+int64(len(want)) <= c.off+int64(len(c.data)) {
			n := copy(want, c.data[off-c.off:])
			if off+int64(n) == c.off+int64(len(c.data)) && off == c.off {
				r.skipped = append(r.skipped[:i], r.skipped[i+1:]...)
			}
			return n, nil
		}
	}
	if r.body == nil || off < r.pos || off-r.pos > maxSkip {
		if err := r.reopen(off); err != nil {
			return 0, err
		}
	}
	if gap := off - r.pos; gap > 0 {
		buf := make([]byte, gap)
		if _, err := io.ReadFull(r.body, buf); err != nil {
			r.dropBody()
			return 0, r.storeErr(err)
		}
		r.keep(skippedChunk{off: r.pos, data: buf})
		r.pos = off
	}
	n, err := io.ReadFull(r.body, want)
	r.pos += int64(n)
	if err != nil {
		r.dropBody()
		return n, r.storeErr(err)
	}
	return n, nil
}

// keep remembers skipped bytes, dropping the oldest beyond maxSkip in total.
func (r *Reader) keep(c skippedChunk) {
	r.skipped = append(r.skipped, c)
	total := 0
	for i := len(r.skipped) - 1; i >= 0; i-- {
		total += len(r.skipped[i].data)
		if total > maxSkip {
			r.skipped = append([]skippedChunk(nil), r.skipped[i+1:]...)
			return
		}
	}
}

func (r *Reader) reopen(off int64) error {
	r.dropBody()
	body, err := r.fs.store.Read(r.ctx, r.key, off, -1)
	if err != nil {
		return err
	}
	r.body, r.pos = body, off
	return nil
}

func (r *Reader) dropBody() {
	if r.body != nil {
		_ = r.body.Close()
		r.body = nil
	}
}

// storeErr turns a short stream into a clear error: the object changed or
// the store failed mid-download.
func (r *Reader) storeErr(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		err = errors.New("object changed or store closed the stream during download")
	}
	if r.err == nil {
		r.err = err
	}
	return err
}

// account tracks bytes served and the contiguous prefix.
func (r *Reader) account(off int64, n int) {
	if n <= 0 {
		return
	}
	r.served += int64(n)
	r.done.add(off, off+int64(n))
}

// Complete reports whether every byte from 0 to size was served, in order
// or nearly so. Only such a download counts for delete-after-download.
func (r *Reader) Complete() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.complete()
}

func (r *Reader) complete() bool { return r.err == nil && r.done.covers(r.size) }

// TransferError notes an aborted download (client gone).
func (r *Reader) TransferError(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = errAborted
	}
}

// Close ends the download and records its audit event.
func (r *Reader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	r.dropBody()
	r.skipped = nil
	r.ev.bytes = r.served
	complete := r.complete()
	if !complete && r.err == nil {
		r.ev.detail = "partial read"
	}
	r.fs.finish(r.ev, r.err)
	if complete && r.fs.sess.DeleteAfterDownload {
		r.deleteAfterDownload(context.WithoutCancel(r.ctx))
	}
	return nil
}

// ranges is a sorted list of disjoint half-open byte ranges. Reads are
// nearly sequential, so it stays a handful of entries long.
type ranges [][2]int64

func (rs *ranges) add(start, end int64) {
	s := *rs
	i := 0
	for i < len(s) && s[i][1] < start {
		i++
	}
	j := i
	for j < len(s) && s[j][0] <= end {
		start = min(start, s[j][0])
		end = max(end, s[j][1])
		j++
	}
	s = append(s[:i], append([][2]int64{{start, end}}, s[j:]...)...)
	*rs = s
}

// covers reports whether [0, size) is served (an empty object always is).
func (rs ranges) covers(size int64) bool {
	if size == 0 {
		return true
	}
	return len(rs) > 0 && rs[0][0] == 0 && rs[0][1] >= size
}
