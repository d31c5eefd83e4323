package vfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sftpgw/sftpgw/audit"
)

// Session is who acts through an FS: it scopes every key to Home and every
// operation to Perms, and names the actor in audit events.
type Session struct {
	ID, User, Role, Client string
	Home                   string // key prefix: "" or ending in "/"
	Perms                  PermSet
	// DownloadDenied explains a missing download permission in audit events
	// (e.g. "client address not in download_from").
	DownloadDenied string
	// DeleteAfterDownload removes an object once it was read completely.
	DeleteAfterDownload bool
	// Limits bound uploads: file size, quota, file types.
	Limits Limits
}

// Options builds an FS.
type Options struct {
	Store     Store
	StoreName string // names the store in the in-flight registry
	Session   Session
	Audit     audit.Recorder
	Uploads   *Uploads // shared by all sessions of a gateway; nil: private
	Log       hclog.Logger
	// WriteWindow bounds the memory used to reorder out-of-order writes.
	WriteWindow int64
	// SessionWindow bounds the same memory over all of the session's
	// uploads together (default DefaultSessionWindow).
	SessionWindow int64
	// ResumeWindow keeps an interrupted upload's stored parts this long
	// for its owner to continue (docs/resume.md); 0 aborts it (off).
	ResumeWindow time.Duration
	// Now is the clock for resume windows (nil: time.Now).
	Now func() time.Time
}

// FS is one session's view of a store. Every exported method resolves the
// path, asks authorize (the only permission decision) and records exactly
// one audit event for the operation, allowed or denied.
type FS struct {
	store   Store
	name    string
	sess    Session
	rec     audit.Recorder
	uploads *Uploads
	log     hclog.Logger
	window  int64
	budget  windowBudget // reorder memory of all this session's uploads
	quota   quotaState

	resumeWindow time.Duration
	now          func() time.Time
}

// DefaultWriteWindow is enough for pkg/sftp's reordering of a stock client's
// pipelined writes (tens of requests of up to 256 KiB).
const DefaultWriteWindow = 16 << 20

// DefaultSessionWindow is the reorder memory of a whole session: one
// upload may use all of it, and 16 open uploads cannot hold 16 times it.
const DefaultSessionWindow = 16 << 20

// New returns the FS for one session.
func New(o Options) *FS {
	if o.Audit == nil {
		o.Audit = audit.Discard
	}
	if o.Uploads == nil {
		o.Uploads = NewUploads()
	}
	if o.Log == nil {
		o.Log = hclog.NewNullLogger()
	}
	if o.WriteWindow <= 0 {
		o.WriteWindow = DefaultWriteWindow
	}
	if o.SessionWindow <= 0 {
		o.SessionWindow = DefaultSessionWindow
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &FS{store: o.Store, name: o.StoreName, sess: o.Session, rec: o.Audit, uploads: o.Uploads, log: o.Log,
		window: o.WriteWindow, budget: windowBudget{max: o.SessionWindow}, resumeWindow: o.ResumeWindow, now: o.Now}
}

// Session returns the session this FS acts for.
func (f *FS) Session() Session { return f.sess }

// FileInfo is what Stat and List return, in virtual terms.
type FileInfo struct {
	Name    string
	Size    int64
	ModTime time.Time
	IsDir   bool
}

// opEvent is one operation in flight; finish records it.
type opEvent struct {
	op     Op
	path   string
	target string
	start  time.Time
	bytes  int64
	detail string
}

func (f *FS) begin(op Op, vpath string) *opEvent {
	return &opEvent{op: op, path: vpath, start: time.Now()}
}

// finish records the audit event for ev with the outcome err.
func (f *FS) finish(ev *opEvent, err error) {
	e := audit.Event{
		Time:       time.Now().UTC(),
		Kind:       "file",
		Session:    f.sess.ID,
		User:       f.sess.User,
		Role:       f.sess.Role,
		Client:     f.sess.Client,
		Op:         ev.op.String(),
		Path:       ev.path,
		Target:     ev.target,
		Bytes:      ev.bytes,
		DurationMS: float64(time.Since(ev.start).Microseconds()) / 1000,
		Result:     "ok",
		Detail:     ev.detail,
	}
	if err != nil {
		e.ErrClass = ErrorClass(err)
		e.Result = "error"
		if e.ErrClass == "permission" {
			e.Result = "denied"
		}
		if e.Detail == "" {
			e.Detail = SafeMessage(err)
		}
	}
	f.rec.Record(e)
}

// authorize is the single permission decision for every operation.
func (f *FS) authorize(ev *opEvent) error {
	if f.sess.Perms.Has(ev.op) {
		return nil
	}
	if ev.op == OpDownload && f.sess.DownloadDenied != "" {
		ev.detail = f.sess.DownloadDenied
	} else {
		ev.detail = "role " + f.sess.Role + " may not " + ev.op.String()
	}
	return ErrPermission
}

// start resolves p, opens the audit event for op and authorizes it: the
// prologue of every single-path operation. The caller finishes ev.
func (f *FS) start(op Op, p string) (vp, key string, ev *opEvent, err error) {
	vp, key, err = f.resolve(p)
	ev = f.begin(op, vp)
	if err == nil {
		err = f.authorize(ev)
	}
	return vp, key, ev, err
}

// resolve cleans a client path and maps it to a key inside the home.
func (f *FS) resolve(p string) (vpath, key string, err error) {
	vpath, err = CleanPath(p)
	if err != nil {
		return p, "", err
	}
	key = keyFor(f.sess.Home, vpath)
	if reservedKey(key) { // only reachable from a home at the bucket root
		return vpath, "", invalid("reserved name")
	}
	return vpath, key, nil
}

// RealPath is the canonical virtual path for p (no permission involved:
// it reveals nothing but the client's own input, cleaned).
func (f *FS) RealPath(p string) (string, error) {
	vp, err := CleanPath(p)
	return vp, err
}

// Stat describes the file or directory at p.
func (f *FS) Stat(ctx context.Context, p string) (fi FileInfo, err error) {
	vp, key, ev, err := f.start(OpStat, p)
	defer func() { f.finish(ev, err) }()
	if err != nil {
		return fi, err
	}
	if f.uploads.get(f.name, key) == nil && vp != "/" {
		// An interrupted upload kept for resume shows to its owner, with
		// the size to continue from (what reput and put -a stat for).
		m, err := f.pending(ctx, key)
		if err != nil {
			return fi, err
		}
		if m != nil {
			ev.detail = "interrupted upload, resumable"
			return FileInfo{Name: base(vp), Size: m.Upload.Size, ModTime: m.Saved}, nil
		}
	}
	return f.stat(ctx, vp, key)
}

// stat looks a path up without authorization or audit (internal use).
func (f *FS) stat(ctx context.Context, vp, key string) (FileInfo, error) {
	if vp == "/" {
		return FileInfo{Name: "/", IsDir: true, ModTime: time.Now()}, nil
	}
	if w := f.uploads.get(f.name, key); w != nil {
		// An upload in progress is visible with its current size, so
		// clients that fstat (which arrives as a path stat) see progress.
		return FileInfo{Name: base(vp), Size: w.Size(), ModTime: w.shownTime()}, nil
	}
	oi, err := f.store.Stat(ctx, key)
	if err == nil {
		return FileInfo{Name: base(vp), Size: oi.Size, ModTime: shownTime(oi, time.Time{})}, nil
	}
	if !errors.Is(err, ErrNotExist) {
		return FileInfo{}, err
	}
	// A directory: its marker's time, or now if it has none. Listing
	// first keeps a new file's stat (every upload's) at two requests; the
	// times are only fetched for the one entry found.
	page, err := f.store.List(ctx, ListOptions{Prefix: dirKey(key), Limit: 1, MTimes: true})
	if err != nil {
		return FileInfo{}, err
	}
	if len(page.Entries) == 0 {
		return FileInfo{}, ErrNotExist
	}
	mt := time.Now()
	if e := page.Entries[0]; e.Key == dirKey(key) {
		mt = shownTime(e, mt)
	}
	return FileInfo{Name: base(vp), IsDir: true, ModTime: mt}, nil
}

// shownTime is the modification time clients see: the one a client set,
// else when the store wrote the object, else def (a directory without a
// marker: now, rather than 1970).
func shownTime(oi ObjectInfo, def time.Time) time.Time {
	switch {
	case !oi.MTime.IsZero():
		return oi.MTime
	case !oi.ModTime.IsZero():
		return oi.ModTime
	}
	return def
}

// Lister pages through a directory lazily, so a directory of any size is
// listed with bounded memory.
type Lister struct {
	fs     *FS
	ctx    context.Context
	prefix string
	token  string
	done   bool
	items  []FileInfo
	ev     *opEvent
	err    error
	closed bool
	now    time.Time // the time of directories without a marker
	// pend: the owner's interrupted uploads in this directory, shown with
	// their resumable size (in place of a stored older version, else
	// after the last page).
	pend map[string]*resumeManifest
}

// List opens a directory listing of p. The audit event is recorded when the
// listing is closed (with the number of entries) or fails.
func (f *FS) List(ctx context.Context, p string) (*Lister, error) {
	vp, key, err := f.resolve(p)
	ev := f.begin(OpList, vp)
	fail := func(err error) (*Lister, error) { f.finish(ev, err); return nil, err }
	if err != nil {
		return fail(err)
	}
	if err := f.authorize(ev); err != nil {
		return fail(err)
	}
	l := &Lister{fs: f, ctx: ctx, prefix: dirKey(key), ev: ev, now: time.Now()}
	if l.pend, err = f.pendingIn(ctx, l.prefix); err != nil {
		return fail(err)
	}
	if err := l.fetch(); err != nil {
		return fail(err)
	}
	if len(l.items) == 0 && vp != "/" {
		// Empty page: either an empty directory (marker only), a file, or nothing.
		fi, err := f.stat(ctx, vp, key)
		if err != nil {
			return fail(err)
		}
		if !fi.IsDir {
			return fail(&InvalidPathError{Reason: "not a directory"})
		}
	}
	return l, nil
}

// fetch loads the next page.
func (l *Lister) fetch() error {
	if l.done {
		return nil
	}
	page, err := l.fs.store.List(l.ctx, ListOptions{Prefix: l.prefix, Token: l.token, MTimes: true})
	if err != nil {
		return err
	}
	for _, e := range page.Entries {
		name := strings.TrimSuffix(strings.TrimPrefix(e.Key, l.prefix), "/")
		if name == "" || strings.Contains(name, "/") {
			continue // the directory's own marker
		}
		if vp, err := CleanPath(name); err != nil || vp != "/"+name || reservedKey(l.prefix+name) {
			// A key no client could name again (refused, or stored under
			// a non-NFC spelling by something other than the gateway):
			// hide it rather than mislead.
			continue
		}
		fi := FileInfo{Name: name, Size: e.Size, ModTime: shownTime(e, l.now), IsDir: e.IsDir}
		if m := l.pend[name]; m != nil && !e.IsDir {
			fi.Size, fi.ModTime = m.Upload.Size, m.Saved
			delete(l.pend, name)
		}
		l.items = append(l.items, fi)
	}
	l.token = page.Next
	l.done = page.Next == ""
	if l.done {
		for name, m := range l.pend {
			l.items = append(l.items, FileInfo{Name: name, Size: m.Upload.Size, ModTime: m.Saved})
		}
		l.pend = nil
	}
	return nil
}

// Next returns up to max entries, or io.EOF after the last.
func (l *Lister) Next(max int) ([]FileInfo, error) {
	for len(l.items) < max && !l.done {
		if err := l.fetch(); err != nil {
			l.err = err
			return nil, err
		}
	}
	if len(l.items) == 0 {
		return nil, io.EOF
	}
	n := min(max, len(l.items))
	out := l.items[:n:n]
	l.items = l.items[n:]
	l.ev.bytes += int64(n) // entries listed, reported in the event's bytes field
	return out, nil
}

// Close records the listing's audit event.
func (l *Lister) Close() error {
	if l.closed {
		return nil
	}
	l.closed = true
	l.ev.detail = fmt.Sprintf("%d entries", l.ev.bytes)
	l.ev.bytes = 0
	l.fs.finish(l.ev, l.err)
	return nil
}

// Mkdir creates a directory marker.
func (f *FS) Mkdir(ctx context.Context, p string) (err error) {
	vp, key, ev, err := f.start(OpMkdir, p)
	defer func() { f.finish(ev, err) }()
	if err != nil {
		return err
	}
	if vp == "/" {
		return ErrExist
	}
	if _, err := f.stat(ctx, vp, key); err == nil {
		return ErrExist
	} else if !errors.Is(err, ErrNotExist) {
		return err
	}
	return f.putEmpty(ctx, dirKey(key))
}

func (f *FS) putEmpty(ctx context.Context, key string) error {
	up, err := f.store.Create(ctx, key, CreateOptions{SizeHint: 0})
	if err != nil {
		return err
	}
	if err := up.Commit(ctx); err != nil {
		_ = up.Abort(context.WithoutCancel(ctx))
		return err
	}
	return nil
}

// ErrNotEmpty is returned by Rmdir of a directory with entries.
var ErrNotEmpty = errors.New("directory not empty")

// Rmdir removes an empty directory.
func (f *FS) Rmdir(ctx context.Context, p string) (err error) {
	vp, key, ev, err := f.start(OpRmdir, p)
	defer func() { f.finish(ev, err) }()
	if err != nil {
		return err
	}
	if vp == "/" {
		return ErrPermission // a session never removes its own root
	}
	dk := dirKey(key)
	page, err := f.store.List(ctx, ListOptions{Prefix: dk, Limit: 2})
	if err != nil {
		return err
	}
	marker := false
	for _, e := range page.Entries {
		if e.Key == dk {
			marker = true
			continue
		}
		return ErrNotEmpty
	}
	if !marker {
		if _, err := f.store.Stat(ctx, key); err == nil {
			return &InvalidPathError{Reason: "not a directory"}
		}
		return ErrNotExist
	}
	return f.store.Delete(ctx, dk)
}

// Remove deletes a file.
func (f *FS) Remove(ctx context.Context, p string) (err error) {
	vp, key, ev, err := f.start(OpDelete, p)
	defer func() { f.finish(ev, err) }()
	if err != nil {
		return err
	}
	// An upload in progress is part of the file as clients see it (stat
	// shows it): removing the file discards it, as unlink does on a POSIX
	// server, so its later close stores nothing.
	discarded := f.discardUploads(key)
	if m, perr := f.pending(ctx, key); perr != nil {
		return perr
	} else if m != nil {
		if err := f.discardPending(ctx, m); err != nil {
			return err
		}
		discarded = true
	}
	oi, err := f.store.Stat(ctx, key)
	if err != nil {
		if errors.Is(err, ErrNotExist) {
			if discarded {
				ev.detail = "upload in progress discarded"
				return nil
			}
			if fi, serr := f.stat(ctx, vp, key); serr == nil && fi.IsDir {
				return &InvalidPathError{Reason: "is a directory (use rmdir)"}
			}
		}
		return err
	}
	if discarded {
		ev.detail = "upload in progress discarded"
	}
	ev.bytes = oi.Size
	if err = f.store.Delete(ctx, key); err == nil {
		f.uploads.changed(f.name, key, -oi.Size, -1)
		f.keepParent(ctx, key)
	}
	return err
}

// discardUploads fails every upload of key in progress on this gateway and
// reports whether there was one. Uploads on other instances are not seen
// (see docs/names.md, "Removing a file during its upload").
func (f *FS) discardUploads(key string) bool {
	found := false
	for _, w := range f.uploads.take(f.name, key) {
		found = w.discard() || found
	}
	return found
}

// maxDirRename bounds a directory rename, which S3 can only do object by object.
const maxDirRename = 1000

// Rename moves a file (or a small directory) within the home. Without
// overwrite an existing target is an error (SFTP v3 semantics); with it
// (posix-rename) replacing needs the overwrite permission as well.
func (f *FS) Rename(ctx context.Context, from, to string, overwrite bool) (err error) {
	vp, key, err := f.resolve(from)
	ev := f.begin(OpRename, vp)
	defer func() { f.finish(ev, err) }()
	if err != nil {
		return err
	}
	tvp, tkey, err := f.resolve(to)
	ev.target = tvp
	if err != nil {
		return err
	}
	if err = f.authorize(ev); err != nil {
		return err
	}
	if vp == "/" || tvp == "/" {
		return ErrPermission
	}
	if vp == tvp {
		return nil
	}
	src, err := f.stat(ctx, vp, key)
	if err != nil {
		return err
	}
	if !src.IsDir {
		if err := f.sess.Limits.renameType(vp, tvp); err != nil {
			return err
		}
	}
	var replaced, replacedFiles int64 // for quota accounting
	if dst, err := f.stat(ctx, tvp, tkey); err == nil {
		if !overwrite || src.IsDir || dst.IsDir {
			return ErrExist
		}
		// Replacing the target is an overwrite, decided like any other.
		ow := &opEvent{op: OpOverwrite}
		if err := f.authorize(ow); err != nil {
			ev.detail = ow.detail
			return err
		}
		replaced, replacedFiles = dst.Size, 1
	} else if !errors.Is(err, ErrNotExist) {
		return err
	}
	if !src.IsDir {
		ev.bytes = src.Size
		if err := f.store.Copy(ctx, key, tkey); err != nil {
			return err
		}
		f.uploads.changed(f.name, tkey, src.Size-replaced, 1-replacedFiles)
		if err := f.store.Delete(ctx, key); err != nil {
			return err
		}
		f.uploads.changed(f.name, key, -src.Size, -1)
		f.keepParent(ctx, key)
		return nil
	}
	if strings.HasPrefix(tvp+"/", vp+"/") {
		return &InvalidPathError{Reason: "cannot move a directory into itself"}
	}
	return f.renameDir(ctx, dirKey(key), dirKey(tkey))
}

// renameDir copies every object below src to dst, then deletes the sources.
// Copy-all-then-delete means a failure leaves the source complete.
func (f *FS) renameDir(ctx context.Context, src, dst string) error {
	var keys []string
	token := ""
	for {
		page, err := f.store.List(ctx, ListOptions{Prefix: src, Recursive: true, Token: token})
		if err != nil {
			return err
		}
		for _, e := range page.Entries {
			keys = append(keys, e.Key)
		}
		if len(keys) > maxDirRename {
			return fmt.Errorf("%w: directory has more than %d objects", ErrUnsupported, maxDirRename)
		}
		if page.Next == "" {
			break
		}
		token = page.Next
	}
	if len(keys) == 0 {
		return ErrNotExist
	}
	for _, k := range keys {
		if err := f.store.Copy(ctx, k, dst+strings.TrimPrefix(k, src)); err != nil {
			return err
		}
	}
	// Deepest keys first, the directory's own marker last: a directory store
	// refuses to remove a non-empty directory, and a crash midway leaves the
	// source directory still visible.
	slices.Reverse(keys)
	for _, k := range keys {
		if err := f.store.Delete(ctx, k); err != nil {
			return err
		}
	}
	return nil
}

// Setstat changes what can be changed of p: its modification time (mtime
// not zero). Modes and owners are accepted and ignored: objects carry
// none, and clients send them after every upload. A time for a file still
// being uploaded goes into the upload; for a stored object it costs a
// server-side copy, skipped when the time is already the one stored.
func (f *FS) Setstat(ctx context.Context, p string, mtime time.Time) (err error) {
	vp, key, ev, err := f.start(OpSetstat, p)
	defer func() { f.finish(ev, err) }()
	if err != nil {
		return err
	}
	if mtime.IsZero() {
		_, err = f.stat(ctx, vp, key)
		return err
	}
	ev.detail = "mtime " + mtime.UTC().Format(time.RFC3339)
	if vp == "/" {
		return nil // the session's root has no time of its own
	}
	if w := f.uploads.get(f.name, key); w != nil {
		w.setMTime(mtime)
		return nil
	}
	oi, err := f.store.Stat(ctx, key)
	if errors.Is(err, ErrNotExist) {
		// A directory: its marker keeps the time (one is made if missing).
		key = dirKey(key)
		if oi, err = f.store.Stat(ctx, key); errors.Is(err, ErrNotExist) {
			if _, err := f.stat(ctx, vp, strings.TrimSuffix(key, "/")); err != nil {
				return err
			}
			return f.putMarker(ctx, key, mtime)
		}
	}
	if err != nil {
		return err
	}
	if oi.MTime.Unix() == mtime.Unix() && !oi.MTime.IsZero() {
		return nil // SFTP times are whole seconds: already set
	}
	ev.bytes = oi.Size
	return f.store.SetMTime(ctx, key, mtime)
}

// putMarker creates a directory marker carrying mtime.
func (f *FS) putMarker(ctx context.Context, key string, mtime time.Time) error {
	up, err := f.store.Create(ctx, key, CreateOptions{SizeHint: 0, MTime: mtime})
	if err != nil {
		return err
	}
	if err := up.Commit(ctx); err != nil {
		_ = up.Abort(context.WithoutCancel(ctx))
		return err
	}
	return nil
}

// Truncate handles a size change by setstat: only "no change" is possible
// on an immutable object.
func (f *FS) Truncate(ctx context.Context, p string, size int64) (err error) {
	vp, key, ev, err := f.start(OpSetstat, p)
	defer func() { f.finish(ev, err) }()
	if err != nil {
		return err
	}
	fi, err := f.stat(ctx, vp, key)
	if err != nil {
		return err
	}
	if fi.Size != size {
		ev.detail = "objects cannot be truncated in place"
		return ErrUnsupported
	}
	return nil
}

// Deny records and refuses an operation the gateway never offers (links,
// copy and hash extensions): they are side doors to reading content.
func (f *FS) Deny(op string, p string) error {
	vp, err := CleanPath(p)
	if err != nil {
		vp = p
	}
	f.rec.Record(audit.Event{
		Time: time.Now().UTC(), Kind: "file", Session: f.sess.ID, User: f.sess.User, Role: f.sess.Role,
		Client: f.sess.Client, Op: op, Path: vp, Result: "denied", ErrClass: "unsupported",
		Detail: op + " is not offered by this gateway",
	})
	return ErrUnsupported
}
