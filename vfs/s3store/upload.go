package s3store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/sftpgw/sftpgw/vfs"
)

var (
	errFinished   = fmt.Errorf("s3store: upload already finished: %w", fs.ErrClosed)
	errAborted    = fmt.Errorf("s3store: upload aborted: %w", fs.ErrClosed)
	errMarkerData = fmt.Errorf("s3store: a directory marker holds no data: %w", vfs.ErrUnsupported)
	errTooLarge   = errors.New("s3store: upload exceeds 10000 parts")
)

// partSizeFor returns the size of part n (1-based). Without a size hint
// (fixed == 0) parts start at base and double every 1000 parts, so an
// upload of unknown size still reaches > 1 TiB within 10,000 parts. With a
// hint the first 9000 parts have the fixed size and the rest grow quickly,
// leaving room for a hint that was too small.
func partSizeFor(base, fixed int64, n int) int64 {
	var size int64
	if fixed > 0 {
		size = fixed
		if n > 9000 {
			size = fixed << min((n-9001)/100+1, 20)
		}
	} else {
		size = base << min((n-1)/1000, 20)
	}
	return min(size, maxPartSize)
}

// fixedPartSize picks one part size for a known total: at least base, and
// large enough that the upload needs at most 9000 parts.
func fixedPartSize(base, hint int64) int64 {
	if hint <= 0 {
		return 0
	}
	const mib = 1 << 20
	size := max(base, (hint+8999)/9000)
	size = (size + mib - 1) / mib * mib
	return min(size, maxPartSize)
}

// upload streams writes into S3: one PutObject if everything fits in the
// first part, else a multipart upload whose parts are sent in the
// background, at most Concurrency at a time.
//
// Locking: wmu serialises the caller's Write/Commit/Abort and guards the
// fields the writer owns (buf, nparts, state). mu guards what part
// goroutines and the cleanup share (err, aborting, uploadID, parts).
type upload struct {
	s     *Store
	key   string
	opt   vfs.CreateOptions
	fixed int64 // fixed part size from the size hint, or 0

	parent context.Context         // the Create context, kept for detached cleanup
	ctx    context.Context         // cancelled by Abort, failure or the parent
	cancel context.CancelCauseFunc //
	stop   func() bool             // detaches the parent watcher

	wmu      sync.Mutex
	finished bool // committed, aborted or failed for good
	buf      *partBuf
	nparts   int // parts handed to goroutines
	sem      chan struct{}
	wg       sync.WaitGroup

	mu       sync.Mutex
	err      error // first failure, sticky
	aborting bool  // cleanup started: no new parts, no new upload ID
	ended    bool  // Commit or Abort has returned
	uploadID *string
	parts    []types.CompletedPart
	mtime    time.Time // to store with the object (SetMTime, or opt.MTime)
	metaSent bool      // PutObject or CreateMultipartUpload sent: metadata fixed
	contig   int       // completed parts from 1 last reported to opt.Progress

	abortOnce sync.Once
	abortErr  error
}

func newUpload(ctx context.Context, s *Store, key string, opt vfs.CreateOptions) *upload {
	u := &upload{
		s:      s,
		key:    key,
		opt:    opt,
		fixed:  fixedPartSize(s.partSize, opt.SizeHint),
		parent: ctx,
		sem:    make(chan struct{}, s.concurrency),
	}
	u.mtime = opt.MTime
	u.ctx, u.cancel = context.WithCancelCause(ctx)
	// If the caller's context ends while nobody is calling us (a dropped
	// session), clean up anyway so no multipart upload is left pending.
	u.stop = context.AfterFunc(ctx, func() { u.fail(mapErr("upload", context.Cause(ctx))) })
	return u
}

func (u *upload) partSize(n int) int64 { return partSizeFor(u.s.partSize, u.fixed, n) }

// failure returns the sticky error, if any.
func (u *upload) failure() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.err
}

// fail records the first error, stops in-flight parts and aborts the
// multipart upload in the background (Commit and Abort wait for it).
func (u *upload) fail(err error) {
	u.mu.Lock()
	first := u.err == nil
	if first {
		u.err = err
	}
	u.mu.Unlock()
	if first {
		u.cancel(err)
		go u.abortMPU()
	}
}

// abortMPU runs once: it stops new parts, waits for those in flight and
// aborts the multipart upload, so nothing stays pending in the bucket.
func (u *upload) abortMPU() error {
	u.abortOnce.Do(func() {
		u.cancel(errAborted)
		u.mu.Lock()
		u.aborting = true
		u.mu.Unlock()
		// No part can start once aborting is set, so Wait is safe here.
		u.wg.Wait()
		u.mu.Lock()
		id := u.uploadID
		u.mu.Unlock()
		if id != nil {
			u.abortErr = u.abortID(id)
		}
	})
	return u.abortErr
}

// abortID aborts one multipart upload, even if the caller's context is
// gone. When that fails the store is most likely unreachable (often the
// very reason for the abort): the caller gets the error at once, and the
// abort is retried in the background until cleanupTimeout, or the parts
// would stay pending (and billed) in the bucket after the store is back.
func (u *upload) abortID(id *string) error {
	err := u.tryAbort(id)
	if err != nil {
		go func() {
			deadline := time.Now().Add(cleanupTimeout)
			for wait := time.Second; time.Now().Add(wait).Before(deadline); wait = min(2*wait, 15*time.Second) {
				time.Sleep(wait)
				if u.tryAbort(id) == nil {
					return
				}
			}
		}()
	}
	return err
}

// tryAbort makes one AbortMultipartUpload call (with the SDK's retries).
func (u *upload) tryAbort(id *string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(u.parent), cleanupTimeout)
	defer cancel()
	_, err := u.s.c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
		Bucket: &u.s.bucket, Key: &u.key, UploadId: id,
	})
	if err != nil {
		if e := mapErr("abort", err); errors.Is(e, vfs.ErrNotExist) {
			return nil // NoSuchUpload: already gone
		}
		return mapErr("abort", err)
	}
	return nil
}

func (u *upload) Write(p []byte) (int, error) {
	u.wmu.Lock()
	defer u.wmu.Unlock()
	if err := u.failure(); err != nil {
		return 0, err
	}
	if u.finished {
		return 0, errFinished
	}
	if len(p) > 0 && isMarker(u.key) {
		return 0, errMarkerData
	}
	n := 0
	for len(p) > 0 {
		if u.buf != nil && int64(len(u.buf.b)) == u.partSize(u.nparts+1) {
			// Flush a full part only once more data arrives, so an object
			// of exactly one part size is still a single PutObject.
			if err := u.flush(); err != nil {
				u.fail(err)
				return n, u.failure()
			}
		}
		if u.buf == nil {
			u.buf = u.newBuf()
		}
		room := u.partSize(u.nparts+1) - int64(len(u.buf.b))
		k := int(min(room, int64(len(p))))
		u.buf.b = append(u.buf.b, p[:k]...)
		p = p[k:]
		n += k
	}
	return n, nil
}

// newBuf returns an empty buffer for the next part. Small hinted uploads
// get a right-sized buffer instead of a whole pooled part.
func (u *upload) newBuf() *partBuf {
	size := u.partSize(u.nparts + 1)
	if u.nparts == 0 && u.opt.SizeHint >= 0 && u.opt.SizeHint < size {
		return &partBuf{b: make([]byte, 0, u.opt.SizeHint)}
	}
	return u.s.partPool(size).get()
}

// putBuf recycles b into the pool of its capacity, if there is one; odd
// sizes (a small hinted buffer that grew) are left to the GC.
func (u *upload) putBuf(b *partBuf) {
	if b == nil {
		return
	}
	if p, ok := u.s.pools.Load(int64(cap(b.b))); ok {
		p.(*partPool).put(b)
	}
}

// flush hands the current buffer to a background part upload, creating
// the multipart upload first if needed. It blocks while Concurrency parts
// are in flight, which is what bounds memory.
func (u *upload) flush() error {
	if err := u.ctx.Err(); err != nil {
		return mapErr("upload part", context.Cause(u.ctx))
	}
	if u.nparts >= maxParts {
		return errTooLarge
	}
	u.mu.Lock()
	id := u.uploadID
	u.mu.Unlock()
	if id == nil {
		var err error
		if id, err = u.createMPU(); err != nil {
			return err
		}
	}
	select {
	case u.sem <- struct{}{}:
	case <-u.ctx.Done():
		return mapErr("upload part", context.Cause(u.ctx))
	}
	u.mu.Lock()
	if u.err != nil || u.aborting {
		err := u.err
		u.mu.Unlock()
		<-u.sem
		if err == nil {
			err = errAborted
		}
		return err
	}
	u.wg.Add(1)
	u.mu.Unlock()

	u.nparts++
	num := int32(u.nparts)
	buf := u.buf
	u.buf = nil
	go u.sendPart(id, num, buf)
	return nil
}

func (u *upload) createMPU() (*string, error) {
	sse, kms := u.s.sseFields()
	// Detached from cancellation (but bounded): if the request reached S3
	// we must learn the upload ID, or we could never abort it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(u.ctx), cleanupTimeout)
	defer cancel()
	u.mu.Lock()
	mt := u.mtime
	u.metaSent = true
	u.mu.Unlock()
	mode, until := u.lockFields()
	out, err := u.s.c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket:                    &u.s.bucket,
		Key:                       &u.key,
		ServerSideEncryption:      sse,
		SSEKMSKeyId:               kms,
		Metadata:                  mtimeMeta(mt),
		ObjectLockMode:            mode,
		ObjectLockRetainUntilDate: until,
	})
	if err != nil {
		return nil, mapErr("create multipart upload", err)
	}
	u.mu.Lock()
	if u.aborting || u.err != nil {
		// Cleanup already ran without knowing this ID; abort it here.
		err := u.err
		u.mu.Unlock()
		u.abortID(out.UploadId)
		if err == nil {
			err = errAborted
		}
		return nil, err
	}
	u.uploadID = out.UploadId
	u.mu.Unlock()
	return out.UploadId, nil
}

// SetMTime implements vfs.Upload: free until the first part is sent (the
// time goes into the PutObject or CreateMultipartUpload). After that it
// returns false: S3 fixes a multipart upload's metadata when it starts.
func (u *upload) SetMTime(t time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.metaSent {
		return false
	}
	u.mtime = t
	return true
}

func mtimeMeta(t time.Time) map[string]string {
	if t.IsZero() {
		return nil
	}
	return map[string]string{metaMTime: formatMTime(t)}
}

func (u *upload) sendPart(id *string, num int32, buf *partBuf) {
	defer u.wg.Done()
	defer func() { <-u.sem }()
	out, err := u.s.c.UploadPart(u.ctx, &s3.UploadPartInput{
		Bucket:        &u.s.bucket,
		Key:           &u.key,
		UploadId:      id,
		PartNumber:    aws.Int32(num),
		Body:          bytes.NewReader(buf.b),
		ContentLength: aws.Int64(int64(len(buf.b))),
	})
	if err != nil {
		// The transport may still hold the buffer: reuse it only later.
		if p, ok := u.s.pools.Load(int64(cap(buf.b))); ok {
			p.(*partPool).quarantine(buf)
		}
		u.fail(mapErr("upload part", err))
		return
	}
	u.putBuf(buf)
	u.mu.Lock()
	u.parts = append(u.parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(num)})
	su, grew := u.progress()
	u.mu.Unlock()
	if grew && u.opt.Progress != nil {
		u.opt.Progress(su)
	}
}

// progress returns the resumable state if the run of completed parts from
// part 1 grew since the last call; called with mu held.
func (u *upload) progress() (vfs.SuspendedUpload, bool) {
	if u.opt.Progress == nil || u.uploadID == nil {
		return vfs.SuspendedUpload{}, false
	}
	etag := make(map[int32]string, len(u.parts))
	for _, p := range u.parts {
		etag[*p.PartNumber] = aws.ToString(p.ETag)
	}
	n := 0
	for _, ok := etag[int32(n+1)]; ok; _, ok = etag[int32(n+1)] {
		n++
	}
	if n <= u.contig {
		return vfs.SuspendedUpload{}, false
	}
	u.contig = n
	su := vfs.SuspendedUpload{ID: *u.uploadID}
	for i := 1; i <= n; i++ {
		size := u.partSize(i)
		su.Parts = append(su.Parts, vfs.PartRecord{Number: int32(i), Size: size, ETag: etag[int32(i)]})
		su.Size += size
	}
	return su, true
}

// lockFields are the Object Lock settings of the new object: compliance
// mode until RetainUntil, or none. A bucket without Object Lock refuses them.
func (u *upload) lockFields() (types.ObjectLockMode, *time.Time) {
	if u.opt.RetainUntil.IsZero() {
		return "", nil
	}
	t := u.opt.RetainUntil.UTC()
	return types.ObjectLockModeCompliance, &t
}

// Commit makes the object visible. On any failure the upload is aborted.
func (u *upload) Commit(ctx context.Context) error {
	u.wmu.Lock()
	defer u.wmu.Unlock()
	if u.finished {
		if err := u.failure(); err != nil {
			return err
		}
		return errFinished
	}
	u.finished = true
	defer u.stop()
	// The commit context also stops parts still in flight.
	defer context.AfterFunc(ctx, func() { u.fail(mapErr("commit", context.Cause(ctx))) })()
	// Whatever happened, the key's cached time may be of the old version.
	defer u.s.mtimes.forget(u.key)

	err := u.commit(ctx)
	if err != nil {
		u.fail(err)
		u.abortMPU()
		err = u.failure()
	}
	u.putBuf(u.buf)
	u.buf = nil
	u.cancel(errFinished) // release the context; parts are done
	u.end()
	return err
}

func (u *upload) commit(ctx context.Context) error {
	if err := u.failure(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return mapErr("commit", err)
	}
	var ifNoneMatch *string
	if u.opt.Exclusive {
		ifNoneMatch = aws.String("*")
	}
	sse, kms := u.s.sseFields()
	if u.nparts == 0 {
		var body []byte
		if u.buf != nil {
			body = u.buf.b
		}
		u.mu.Lock()
		mt := u.mtime
		u.metaSent = true
		u.mu.Unlock()
		mode, until := u.lockFields()
		_, err := u.s.c.PutObject(ctx, &s3.PutObjectInput{
			Bucket:                    &u.s.bucket,
			Key:                       &u.key,
			Body:                      bytes.NewReader(body),
			ContentLength:             aws.Int64(int64(len(body))),
			ServerSideEncryption:      sse,
			SSEKMSKeyId:               kms,
			IfNoneMatch:               ifNoneMatch,
			Metadata:                  mtimeMeta(mt),
			ObjectLockMode:            mode,
			ObjectLockRetainUntilDate: until,
		})
		return mapErr("put", err)
	}
	// Lazy flushing leaves the last part (>= 1 byte) in buf.
	if u.buf != nil && len(u.buf.b) > 0 {
		if err := u.flush(); err != nil {
			return err
		}
	}
	u.wg.Wait()
	if err := u.failure(); err != nil {
		return err
	}
	u.mu.Lock()
	parts := append([]types.CompletedPart(nil), u.parts...)
	id := u.uploadID
	u.mu.Unlock()
	if len(parts) != u.nparts {
		return fmt.Errorf("s3store: %d of %d parts uploaded", len(parts), u.nparts)
	}
	sort.Slice(parts, func(i, j int) bool { return *parts[i].PartNumber < *parts[j].PartNumber })
	// Detached (but bounded), like createMPU: a Complete cut off mid-flight
	// could still succeed on the server after we aborted and reported failure.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	_, err := u.s.c.CompleteMultipartUpload(cctx, &s3.CompleteMultipartUploadInput{
		Bucket:          &u.s.bucket,
		Key:             &u.key,
		UploadId:        id,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
		IfNoneMatch:     ifNoneMatch,
	})
	return mapErr("complete multipart upload", err)
}

// Abort discards the upload. It is safe to call at any time, also from
// another goroutine while Write or Commit blocks (Abort then wins), and is a
// no-op once the upload has ended.
func (u *upload) Abort(ctx context.Context) error {
	u.mu.Lock()
	ended := u.ended
	u.mu.Unlock()
	if ended {
		return nil
	}
	// Cancel first, so a Write or Commit blocked on the pipeline lets go of wmu.
	u.fail(errAborted)
	u.wmu.Lock()
	defer u.wmu.Unlock()
	if u.finished {
		return nil
	}
	u.finished = true
	u.stop()
	err := u.abortMPU()
	u.putBuf(u.buf)
	u.buf = nil
	u.end()
	return err
}

func (u *upload) end() {
	u.mu.Lock()
	u.ended = true
	u.mu.Unlock()
}
