package vfs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/sftpgw/sftpgw/audit"
)

// ResumePrefix holds the manifests of interrupted uploads kept for resume
// (one small object per key, written with the store's encryption like any
// object). No client can name or list it, like ClaimPrefix.
const ResumePrefix = ".sftpgw-uploads/"

// maxManifest bounds a manifest read (10,000 parts are about 1 MiB).
const maxManifest = 4 << 20

// resumeManifest records a suspended upload: whose it is, where it goes,
// and what the store needs to continue it.
type resumeManifest struct {
	Owner  string          `json:"owner"`
	Key    string          `json:"key"`
	Path   string          `json:"path"` // virtual path, for operators
	Saved  time.Time       `json:"saved"`
	Upload SuspendedUpload `json:"upload"`
}

// manifestKey mirrors the object key below ResumePrefix, so one listing
// finds the pending uploads of a directory.
func manifestKey(key string) string { return ResumePrefix + key }

// pendingIn returns this user's pending uploads directly in the directory
// with key prefix dir (name -> manifest), for listings.
func (f *FS) pendingIn(ctx context.Context, dir string) (map[string]*resumeManifest, error) {
	if !f.resumeOn() {
		return nil, nil
	}
	out := map[string]*resumeManifest{}
	token := ""
	for {
		page, err := f.store.List(ctx, ListOptions{Prefix: ResumePrefix + dir, Token: token})
		if err != nil {
			return nil, err
		}
		for _, e := range page.Entries {
			name := strings.TrimPrefix(e.Key, ResumePrefix+dir)
			if e.IsDir || name == "" || strings.Contains(name, "/") {
				continue
			}
			m, err := f.pending(ctx, dir+name)
			if err != nil {
				return nil, err
			}
			if m != nil && f.uploads.get(f.name, dir+name) == nil {
				out[name] = m
			}
		}
		if page.Next == "" {
			return out, nil
		}
		token = page.Next
	}
}

// errResumeGone: the manifest named an upload the store no longer holds.
var errResumeGone = fmt.Errorf("%w: the interrupted upload has expired or was discarded; upload the file again from the start", ErrNotExist)

func errResumeOffset(size, off int64) error {
	return &RefusedError{Kind: ErrUnsupported, Reason: fmt.Sprintf(
		"resume must continue at byte %d (the pending upload's size), not at byte %d; upload from byte 0 to start over (nothing was changed)",
		size, off)}
}

func (f *FS) resumeOn() bool {
	_, ok := f.store.(Resumer)
	return f.resumeWindow > 0 && ok
}

// readManifest loads the manifest of key, nil if there is none.
func readManifest(ctx context.Context, s Store, mk string) (*resumeManifest, error) {
	r, err := s.Read(ctx, mk, 0, -1)
	if errors.Is(err, ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, maxManifest))
	if err != nil {
		return nil, err
	}
	var m resumeManifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("resume manifest %s: %w", mk, err)
	}
	return &m, nil
}

// pending returns this session's user's suspended upload of key that is
// still within the window, or nil. Another user's is never returned.
func (f *FS) pending(ctx context.Context, key string) (*resumeManifest, error) {
	if !f.resumeOn() {
		return nil, nil
	}
	m, err := readManifest(ctx, f.store, manifestKey(key))
	if err != nil || m == nil {
		return nil, err
	}
	if m.Owner != f.sess.User || m.Key != key || f.now().Sub(m.Saved) > f.resumeWindow || m.Upload.Size <= 0 {
		return nil, nil
	}
	return m, nil
}

// writeManifest stores m (an ordinary upload: encrypted like any object).
func (f *FS) writeManifest(ctx context.Context, m *resumeManifest) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	up, err := f.store.Create(ctx, manifestKey(m.Key), CreateOptions{SizeHint: int64(len(b))})
	if err != nil {
		return err
	}
	if _, err := up.Write(b); err != nil {
		_ = up.Abort(ctx)
		return err
	}
	return up.Commit(ctx)
}

// discardPending frees a suspended upload and its manifest, and the quota
// its bytes held.
func (f *FS) discardPending(ctx context.Context, m *resumeManifest) error {
	if err := discardPending(ctx, f.store, m); err != nil {
		return err
	}
	f.uploads.setHeld(f.name, m.Key, 0, time.Time{})
	return nil
}

func discardPending(ctx context.Context, s Store, m *resumeManifest) error {
	if rs, ok := s.(Resumer); ok {
		if err := rs.DiscardSuspended(ctx, m.Key, m.Upload); err != nil {
			return err
		}
	}
	return s.Delete(ctx, manifestKey(m.Key))
}

// suspend keeps an interrupted upload for resume, if resume is on and the
// store has complete parts; it reports the bytes kept (0: nothing, the
// upload was aborted). Called with w.mu held, instead of fail.
func (w *Writer) suspend(cause error) int64 {
	f := w.fs
	sp, ok := w.up.(Suspender)
	if !f.resumeOn() || !ok || w.err != nil || w.done {
		return 0
	}
	w.err = fmt.Errorf("%w: %v", errAborted, cause)
	f.budget.give(w.buffered)
	w.dropSpare()
	w.pending, w.buffered = nil, 0
	defer w.lim.release()
	ctx := context.WithoutCancel(w.ctx)
	su, err := sp.Suspend(ctx)
	if w.cp.end() {
		w.mkey = manifestKey(w.key)
	}
	if err != nil || su.Size == 0 {
		w.dropManifest(ctx)
		return 0
	}
	m := &resumeManifest{Owner: f.sess.User, Key: w.key, Path: w.ev.path, Saved: f.now().UTC(), Upload: su}
	if err := f.writeManifest(ctx, m); err != nil {
		f.log.Warn("upload: interrupted upload not kept for resume", "path", w.ev.path, "error", SafeMessage(err))
		_ = discardPending(ctx, f.store, m)
		return 0
	}
	// Held before the reservation is released (deferred): counted twice
	// for a moment, never zero times.
	f.uploads.setHeld(f.name, w.key, su.Size, m.Saved.Add(f.resumeWindow))
	w.ev.detail = fmt.Sprintf("interrupted; %d bytes kept for resume", su.Size)
	return su.Size
}

// dropManifest removes the manifest of a resumed upload that ended (the
// store upload is committed or aborted, the manifest would point nowhere).
func (w *Writer) dropManifest(ctx context.Context) {
	if w.cp.end() {
		w.mkey = manifestKey(w.key)
	}
	if w.mkey == "" {
		return
	}
	if err := w.fs.store.Delete(ctx, w.mkey); err != nil {
		w.fs.log.Warn("upload: resume manifest not removed (the sweeper will)", "path", w.ev.path, "error", SafeMessage(err))
	}
	w.mkey = ""
}

// decide settles an open that may continue a pending upload, at the first
// write: at the resumable offset (or beyond, reordered) it resumes; at 0
// the pending upload is discarded and a new one starts; anything else is
// refused. Called with w.mu held.
func (w *Writer) decide(off int64) error {
	f, m := w.fs, w.resume
	w.resume = nil
	ctx := context.WithoutCancel(w.ctx)
	switch {
	case off == 0:
		if err := f.discardPending(ctx, m); err != nil {
			w.fail(err)
			return w.err
		}
		w.ev.detail = "interrupted upload discarded: written again from byte 0"
		up, err := f.store.Create(ctx, w.key, w.withProgress())
		if err != nil {
			w.fail(err)
			return w.err
		}
		w.setUpload(up)
	case off >= m.Upload.Size:
		up, err := f.store.(Resumer).Resume(ctx, w.key, m.Upload, w.withProgress())
		if errors.Is(err, ErrNotExist) {
			_ = f.discardPending(ctx, m)
			err = errResumeGone
		}
		if err != nil {
			w.fail(err)
			return w.err
		}
		w.setUpload(up)
		// From here its bytes count as in flight (reserve below), no
		// longer as held.
		f.uploads.setHeld(f.name, w.key, 0, time.Time{})
		w.next, w.resumedAt, w.mkey = m.Upload.Size, m.Upload.Size, manifestKey(w.key)
		if w.lim != nil {
			w.lim.sniff = nil // the type was checked on the first bytes, in the first part
		}
		if err := w.lim.reserve(w.next); err != nil {
			w.fail(err)
			return w.err
		}
		// A fresh window for the resumed upload: the sweeper measures it
		// from the manifest's time.
		m.Saved = f.now().UTC()
		if err := f.writeManifest(ctx, m); err != nil {
			f.log.Warn("upload: resume manifest not refreshed", "path", w.ev.path, "error", SafeMessage(err))
		}
		w.ev.detail = fmt.Sprintf("resumed at byte %d", w.next)
		f.rec.Record(audit.Event{
			Time: time.Now().UTC(), Kind: "file", Session: f.sess.ID, User: f.sess.User, Role: f.sess.Role,
			Client: f.sess.Client, Op: "upload_resumed", Path: w.ev.path, Bytes: w.next, Result: "ok",
			Detail: fmt.Sprintf("offset %d", w.next),
		})
	default:
		w.fail(errResumeOffset(m.Upload.Size, off))
		return w.err
	}
	return nil
}

// withProgress is w.opt with checkpoints of the manifest, when resume is
// on (the Writer then keeps its checkpointer in w.cp).
func (w *Writer) withProgress() CreateOptions {
	opt := w.opt
	if w.fs.resumeOn() {
		w.cp = &checkpointer{f: w.fs, ctx: context.WithoutCancel(w.ctx), key: w.key, path: w.ev.path, quit: make(chan struct{})}
		opt.Progress = w.cp.progress
	}
	return opt
}

// setUpload installs the store upload chosen by decide, with a time a
// setstat gave before it existed.
// w.up is set holding both mu and tmu, so setMTime may read it under tmu.
func (w *Writer) setUpload(up Upload) {
	w.tmu.Lock()
	w.up = up
	if !w.mtime.IsZero() {
		w.lateMTime = !up.SetMTime(w.mtime)
	}
	w.tmu.Unlock()
}

// SweepResumable aborts suspended uploads older than window and removes
// their manifests; it returns how many it removed. The gateway runs it
// periodically; the bucket's abort-incomplete-multipart rule is the
// backstop for manifests lost or never written.
func SweepResumable(ctx context.Context, s Store, window time.Duration, now time.Time) (int, error) {
	n, token := 0, ""
	for {
		page, err := s.List(ctx, ListOptions{Prefix: ResumePrefix, Recursive: true, Token: token})
		if err != nil {
			return n, err
		}
		for _, e := range page.Entries {
			if e.IsDir || !strings.HasPrefix(e.Key, ResumePrefix) {
				continue
			}
			m, err := readManifest(ctx, s, e.Key)
			if err != nil {
				var se *json.SyntaxError
				if !errors.As(err, &se) {
					return n, err
				}
				m = nil // unreadable: removed once old enough
			}
			var saved time.Time
			if m != nil {
				saved = m.Saved
			} else {
				saved = e.ModTime
			}
			if now.Sub(saved) <= window {
				continue
			}
			if m != nil && manifestKey(m.Key) == e.Key {
				if err := discardPending(ctx, s, m); err != nil {
					return n, err
				}
			} else if err := s.Delete(ctx, e.Key); err != nil {
				return n, err
			}
			n++
		}
		if page.Next == "" {
			return n, nil
		}
		token = page.Next
	}
}

// checkpointer keeps an upload's manifest current while parts complete,
// so an upload survives a gateway that dies without a word (SIGKILL, a
// lost host): one manifest write at a time, the newest state wins.
type checkpointer struct {
	f     *FS
	ctx   context.Context
	key   string
	path  string
	mu    sync.Mutex
	next  *SuspendedUpload
	busy  bool
	stop  bool
	wrote bool
	wg    sync.WaitGroup
	quit  chan struct{} // closed by end: no pause between checkpoints
}

// checkpointEvery spaces manifest writes: at most one per interval (the
// newest state), so a fast upload does not pay a PUT per part; a crash
// then costs at most the parts of the last interval.
const checkpointEvery = 2 * time.Second

// progress is the store's CreateOptions.Progress.
func (c *checkpointer) progress(su SuspendedUpload) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stop || (c.next != nil && c.next.Size >= su.Size) {
		return
	}
	c.next = &su
	if !c.busy {
		c.busy = true
		c.wg.Add(1)
		go c.run()
	}
}

func (c *checkpointer) run() {
	defer c.wg.Done()
	for {
		c.mu.Lock()
		su := c.next
		c.next = nil
		if su == nil || c.stop {
			c.busy = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		m := &resumeManifest{Owner: c.f.sess.User, Key: c.key, Path: c.path, Saved: c.f.now().UTC(), Upload: *su}
		if err := c.f.writeManifest(c.ctx, m); err != nil {
			c.f.log.Warn("upload: resume checkpoint not written", "path", c.path, "error", SafeMessage(err))
			continue
		}
		c.mu.Lock()
		c.wrote = true
		c.mu.Unlock()
		select {
		case <-time.After(checkpointEvery):
		case <-c.quit:
		}
	}
}

// end stops checkpoints and waits for one being written; it reports
// whether any was written (a manifest to remove or replace).
func (c *checkpointer) end() bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	if !c.stop {
		close(c.quit)
	}
	c.stop = true
	c.next = nil
	c.mu.Unlock()
	c.wg.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wrote
}
