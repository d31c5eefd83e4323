package metrics

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sftpgw/sftpgw/vfs"
)

// WrapStore returns s with every request timed and its failures counted
// under the storage block's name. It changes no behaviour: errors and
// results pass through untouched.
func (m *Metrics) WrapStore(name string, s vfs.Store) vfs.Store {
	st := &store{s: s, name: name, errs: map[string]prometheus.Counter{}, dur: map[string]prometheus.Observer{}}
	// Resolve label sets once: this sits on the upload and download path.
	for _, op := range []string{"stat", "list", "create", "read", "read_stream", "delete", "copy",
		"set_mtime", "upload_write", "upload_commit", "upload_abort", "upload_suspend", "resume"} {
		st.errs[op] = m.storeErr.WithLabelValues(name, op)
		st.dur[op] = m.storeDur.WithLabelValues(name, op)
	}
	return st
}

type store struct {
	s    vfs.Store
	name string
	errs map[string]prometheus.Counter
	dur  map[string]prometheus.Observer
}

// done records one request that started at t0.
func (s *store) done(op string, t0 time.Time, err error) {
	s.dur[op].Observe(time.Since(t0).Seconds())
	s.fail(op, err)
}

// fail counts err unless it is an expected outcome: a missing object, an
// existing key on a conditional create, or a request the caller cancelled.
func (s *store) fail(op string, err error) {
	if err == nil || errors.Is(err, vfs.ErrNotExist) || errors.Is(err, vfs.ErrExist) ||
		errors.Is(err, context.Canceled) {
		return
	}
	s.errs[op].Inc()
}

func (s *store) Stat(ctx context.Context, key string) (vfs.ObjectInfo, error) {
	t0 := time.Now()
	oi, err := s.s.Stat(ctx, key)
	s.done("stat", t0, err)
	return oi, err
}

func (s *store) List(ctx context.Context, opt vfs.ListOptions) (vfs.Page, error) {
	t0 := time.Now()
	p, err := s.s.List(ctx, opt)
	s.done("list", t0, err)
	return p, err
}

func (s *store) Create(ctx context.Context, key string, opt vfs.CreateOptions) (vfs.Upload, error) {
	t0 := time.Now()
	up, err := s.s.Create(ctx, key, opt)
	s.done("create", t0, err)
	if err != nil {
		return nil, err
	}
	return &upload{Upload: up, s: s}, nil
}

// Read times the request up to the response headers; failures while the
// body streams are counted as read_stream.
func (s *store) Read(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	t0 := time.Now()
	rc, err := s.s.Read(ctx, key, offset, length)
	s.done("read", t0, err)
	if err != nil {
		return nil, err
	}
	return &body{ReadCloser: rc, s: s}, nil
}

func (s *store) Delete(ctx context.Context, key string) error {
	t0 := time.Now()
	err := s.s.Delete(ctx, key)
	s.done("delete", t0, err)
	return err
}

func (s *store) Copy(ctx context.Context, src, dst string) error {
	t0 := time.Now()
	err := s.s.Copy(ctx, src, dst)
	s.done("copy", t0, err)
	return err
}

func (s *store) SetMTime(ctx context.Context, key string, t time.Time) error {
	t0 := time.Now()
	err := s.s.SetMTime(ctx, key, t)
	s.done("set_mtime", t0, err)
	return err
}

// upload counts failed writes (a part upload failing surfaces there) and
// times commit and abort, the requests that end a multipart upload.
type upload struct {
	vfs.Upload
	s        *store
	failOnce sync.Once
}

func (u *upload) Write(p []byte) (int, error) {
	n, err := u.Upload.Write(p)
	if err != nil {
		// One failed part fails every later write: count it once.
		u.failOnce.Do(func() { u.s.fail("upload_write", err) })
	}
	return n, err
}

func (u *upload) Commit(ctx context.Context) error {
	t0 := time.Now()
	err := u.Upload.Commit(ctx)
	u.s.done("upload_commit", t0, err)
	return err
}

func (u *upload) Abort(ctx context.Context) error {
	t0 := time.Now()
	err := u.Upload.Abort(ctx)
	u.s.done("upload_abort", t0, err)
	return err
}

type body struct {
	io.ReadCloser
	s        *store
	failOnce sync.Once
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		b.failOnce.Do(func() { b.s.fail("read_stream", err) })
	}
	return n, err
}

// Suspend keeps an interrupted upload for resume when the store can
// (vfs.Suspender), else aborts it: nothing is kept.
func (u *upload) Suspend(ctx context.Context) (vfs.SuspendedUpload, error) {
	sp, ok := u.Upload.(vfs.Suspender)
	if !ok {
		return vfs.SuspendedUpload{}, u.Abort(ctx)
	}
	t0 := time.Now()
	su, err := sp.Suspend(ctx)
	u.s.done("upload_suspend", t0, err)
	return su, err
}

// Resume continues a suspended upload (vfs.Resumer) on stores that can.
func (s *store) Resume(ctx context.Context, key string, su vfs.SuspendedUpload, opt vfs.CreateOptions) (vfs.Upload, error) {
	rs, ok := s.s.(vfs.Resumer)
	if !ok {
		return nil, vfs.ErrUnsupported
	}
	t0 := time.Now()
	up, err := rs.Resume(ctx, key, su, opt)
	s.done("resume", t0, err)
	if err != nil {
		return nil, err
	}
	return &upload{Upload: up, s: s}, nil
}

// DiscardSuspended frees a suspended upload (vfs.Resumer).
func (s *store) DiscardSuspended(ctx context.Context, key string, su vfs.SuspendedUpload) error {
	rs, ok := s.s.(vfs.Resumer)
	if !ok {
		return nil
	}
	t0 := time.Now()
	err := rs.DiscardSuspended(ctx, key, su)
	s.done("upload_abort", t0, err)
	return err
}
