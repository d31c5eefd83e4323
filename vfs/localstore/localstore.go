// Package localstore is a vfs.Store over a local directory, for the demo and
// for unit tests that should not need S3.
//
// Key "a/b" is the file root/a/b. A key ending in "/" is a directory marker
// and maps to a directory, so directories always behave as explicit markers.
// Uploads are written to root/.sftpgw-tmp/ and renamed into place on Commit,
// so a partial file is never visible under its key.
package localstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sftpgw/sftpgw/vfs"
)

// TmpDir is the hidden directory below root that holds uploads in progress.
// It is never listed and no key may name it.
const TmpDir = ".sftpgw-tmp"

const (
	fileMode     = 0o600
	dirMode      = 0o700
	defaultLimit = 1000
)

// Store is a vfs.Store rooted at one directory. It is safe for concurrent use.
type Store struct {
	root *os.Root // every access goes through it, so symlinks cannot escape
}

var _ vfs.Store = (*Store)(nil)

// New opens (creating if needed) root as a store.
func New(root string) (*Store, error) {
	if err := os.MkdirAll(root, dirMode); err != nil {
		return nil, fmt.Errorf("localstore: %w", err)
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, fmt.Errorf("localstore: %w", err)
	}
	if err := r.MkdirAll(TmpDir, dirMode); err != nil {
		r.Close()
		return nil, fmt.Errorf("localstore: %w", err)
	}
	return &Store{root: r}, nil
}

// Close releases the root directory handle.
func (s *Store) Close() error { return s.root.Close() }

// errNotEmpty wraps ENOTEMPTY so callers can match it either way.
var errNotEmpty = fmt.Errorf("directory not empty: %w", syscall.ENOTEMPTY)

// checkKey rejects keys that could leave root or reach the temp directory.
// The VFS above already cleans paths; this is defence in depth.
func checkKey(key string) error {
	bad := func(why string) error { return fmt.Errorf("localstore: invalid key %q: %s", key, why) }
	switch {
	case key == "":
		return bad("empty")
	case strings.HasPrefix(key, "/"):
		return bad("leading /")
	case strings.ContainsRune(key, 0):
		return bad("contains NUL")
	}
	parts := strings.Split(strings.TrimSuffix(key, "/"), "/")
	for _, p := range parts {
		// ".." only matters as a whole component; "a..b" is a fine name.
		if p == "" || p == "." || p == ".." {
			return bad("empty, . or .. component")
		}
	}
	if parts[0] == TmpDir {
		return bad("reserved name")
	}
	return nil
}

// checkPrefix is checkKey for list prefixes, which may be empty or partial.
func checkPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	return checkKey(prefix)
}

func isMarker(key string) bool { return strings.HasSuffix(key, "/") }

// fsName turns a key into a name for os.Root ("a/b/" → "a/b").
func fsName(key string) string {
	if n := strings.TrimSuffix(key, "/"); n != "" {
		return n
	}
	return "."
}

func notExist(key string) error {
	return &fs.PathError{Op: "stat", Path: key, Err: vfs.ErrNotExist}
}

// Stat implements vfs.Store.
func (s *Store) Stat(ctx context.Context, key string) (vfs.ObjectInfo, error) {
	if err := checkKey(key); err != nil {
		return vfs.ObjectInfo{}, err
	}
	fi, err := s.root.Stat(fsName(key))
	if err != nil {
		return vfs.ObjectInfo{}, mapErr(key, err)
	}
	// Like S3, "a" and "a/" are different keys: a directory is only the marker.
	if fi.IsDir() != isMarker(key) || !(fi.IsDir() || fi.Mode().IsRegular()) {
		return vfs.ObjectInfo{}, notExist(key)
	}
	oi := info(key, fi)
	oi.MTime = s.readMTime(fsName(key))
	return oi, nil
}

func info(key string, fi fs.FileInfo) vfs.ObjectInfo {
	oi := vfs.ObjectInfo{Key: key, ModTime: fi.ModTime(), IsDir: fi.IsDir()}
	if !fi.IsDir() {
		oi.Size = fi.Size()
	}
	return oi
}

// mapErr keeps the *fs.PathError (so errors.Is works) but names the key
// instead of the absolute path.
func mapErr(key string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		if errors.Is(pe.Err, syscall.ENOTDIR) {
			// A file where the key needs a directory: the key does not exist.
			return &fs.PathError{Op: pe.Op, Path: key, Err: vfs.ErrNotExist}
		}
		return &fs.PathError{Op: pe.Op, Path: key, Err: pe.Err}
	}
	return err
}

// Read implements vfs.Store. Reading past the end yields an empty stream.
func (s *Store) Read(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, fmt.Errorf("localstore: negative offset %d", offset)
	}
	if isMarker(key) {
		if _, err := s.Stat(ctx, key); err != nil {
			return nil, err
		}
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	f, err := s.root.Open(key)
	if err != nil {
		return nil, mapErr(key, err)
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		if err != nil {
			return nil, mapErr(key, err)
		}
		return nil, notExist(key)
	}
	if offset > 0 {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			return nil, mapErr(key, err)
		}
	}
	if length < 0 {
		return f, nil
	}
	return &limitedFile{Reader: io.LimitReader(f, length), f: f}, nil
}

type limitedFile struct {
	io.Reader
	f *os.File
}

func (l *limitedFile) Close() error { return l.f.Close() }

// Delete implements vfs.Store. A marker's directory is removed only if empty.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	fi, err := s.root.Lstat(fsName(key))
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return nil
	case err != nil:
		return mapErr(key, err)
	case fi.IsDir() != isMarker(key):
		return nil // "a" when only "a/" exists (or vice versa): nothing to delete
	}
	err = s.root.Remove(fsName(key))
	switch {
	case err == nil, errors.Is(err, fs.ErrNotExist):
		return nil
	case errors.Is(err, syscall.ENOTEMPTY), errors.Is(err, syscall.EEXIST):
		return &fs.PathError{Op: "delete", Path: key, Err: errNotEmpty}
	}
	return mapErr(key, err)
}

// Copy implements vfs.Store by streaming through a new upload.
func (s *Store) Copy(ctx context.Context, src, dst string) error {
	if err := checkKey(dst); err != nil {
		return err
	}
	if isMarker(src) != isMarker(dst) {
		return fmt.Errorf("localstore: copy %q to %q: marker and object keys do not mix", src, dst)
	}
	oi, err := s.Stat(ctx, src)
	if err != nil {
		return err
	}
	r, err := s.Read(ctx, src, 0, -1)
	if err != nil {
		return err
	}
	defer r.Close()
	up, err := s.Create(ctx, dst, vfs.CreateOptions{SizeHint: -1, MTime: oi.MTime})
	if err != nil {
		return err
	}
	if _, err := io.Copy(up, r); err != nil {
		up.Abort(ctx)
		return err
	}
	return up.Commit(ctx)
}

// Create implements vfs.Store.
func (s *Store) Create(ctx context.Context, key string, opt vfs.CreateOptions) (vfs.Upload, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if !opt.RetainUntil.IsZero() {
		return nil, fmt.Errorf("localstore: create %q: object lock retention needs S3: %w", key, vfs.ErrUnsupported)
	}
	u := &upload{s: s, key: key, opt: opt, mtime: opt.MTime}
	if isMarker(key) {
		return u, nil // nothing to buffer: Commit makes the directory
	}
	var rnd [12]byte
	rand.Read(rnd[:])
	u.tmp = TmpDir + "/up-" + hex.EncodeToString(rnd[:])
	f, err := s.root.OpenFile(u.tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fileMode)
	if err != nil {
		return nil, fmt.Errorf("localstore: create %q: %w", key, err)
	}
	u.f = f
	return u, nil
}

var (
	errClosed       = fmt.Errorf("localstore: upload already finished: %w", fs.ErrClosed)
	errMarkerData   = fmt.Errorf("localstore: a directory marker holds no data: %w", vfs.ErrUnsupported)
	errAbortedWrite = fmt.Errorf("localstore: upload aborted: %w", fs.ErrClosed)
)

type upload struct {
	s   *Store
	key string
	opt vfs.CreateOptions
	tmp string
	f   *os.File // nil for markers

	mu    sync.Mutex
	done  bool
	err   error     // sticky: the first write error, or why the upload ended
	mtime time.Time // stored with the file on Commit, if set
}

// SetMTime implements vfs.Upload: the time is written on Commit.
func (u *upload) SetMTime(t time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.mtime = t
	return true
}

// storeMTime writes the upload's time on f, if one was set. A file system
// without extended attributes loses it rather than the file.
func (u *upload) storeMTime(f *os.File) error {
	if u.mtime.IsZero() {
		return nil
	}
	if err := writeMTime(f, u.mtime); err != nil && !errors.Is(err, errNoXattr) {
		return mapErr(u.key, err)
	}
	return nil
}

func (u *upload) Write(p []byte) (int, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.err != nil {
		return 0, u.err
	}
	if u.done {
		return 0, errClosed
	}
	if u.f == nil {
		if len(p) > 0 {
			return 0, errMarkerData
		}
		return 0, nil
	}
	n, err := u.f.Write(p)
	if err != nil {
		u.err = fmt.Errorf("localstore: write %q: %w", u.key, err)
		return n, u.err
	}
	return n, nil
}

func (u *upload) Commit(ctx context.Context) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done {
		if u.err != nil {
			return u.err
		}
		return errClosed
	}
	u.done = true
	err := u.err
	if err == nil {
		err = ctx.Err()
	}
	if err == nil {
		err = u.commit()
	}
	if err != nil {
		u.cleanup()
		if u.err == nil {
			u.err = err
		}
	}
	return err
}

func (u *upload) commit() error {
	root := u.s.root
	name := fsName(u.key)
	if dir := path.Dir(name); dir != "." {
		if err := root.MkdirAll(dir, dirMode); err != nil {
			return mapErr(u.key, err)
		}
	}
	if u.f == nil {
		err := root.Mkdir(name, dirMode)
		if errors.Is(err, fs.ErrExist) {
			if fi, serr := root.Stat(name); serr == nil && fi.IsDir() {
				if u.opt.Exclusive {
					return &fs.PathError{Op: "create", Path: u.key, Err: vfs.ErrExist}
				}
				return u.markerMTime(name)
			}
		}
		if err != nil {
			return mapErr(u.key, err)
		}
		if err := u.markerMTime(name); err != nil {
			return err
		}
		return syncDir(root, path.Dir(name))
	}
	if err := u.storeMTime(u.f); err != nil {
		return err
	}
	// Durable before visible: the data must be on disk before the name is.
	if err := u.f.Sync(); err != nil {
		return mapErr(u.key, err)
	}
	if err := u.f.Close(); err != nil {
		return mapErr(u.key, err)
	}
	u.f = nil
	if u.opt.Exclusive {
		// link(2) fails if the target exists, so two racing exclusive
		// commits cannot both succeed.
		if err := root.Link(u.tmp, name); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return &fs.PathError{Op: "create", Path: u.key, Err: vfs.ErrExist}
			}
			return mapErr(u.key, err)
		}
		root.Remove(u.tmp)
	} else {
		if fi, err := root.Lstat(name); err == nil && fi.IsDir() {
			return &fs.PathError{Op: "create", Path: u.key, Err: syscall.EISDIR}
		}
		if err := root.Rename(u.tmp, name); err != nil {
			return mapErr(u.key, err)
		}
	}
	return syncDir(root, path.Dir(name))
}

// markerMTime stores the upload's time on the directory name.
func (u *upload) markerMTime(name string) error {
	if u.mtime.IsZero() {
		return nil
	}
	d, err := u.s.root.Open(name)
	if err != nil {
		return mapErr(u.key, err)
	}
	defer d.Close()
	return u.storeMTime(d)
}

// syncDir makes a rename or link durable.
func syncDir(root *os.Root, dir string) error {
	d, err := root.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}

func (u *upload) cleanup() {
	if u.f != nil {
		u.f.Close()
		u.f = nil
	}
	if u.tmp != "" {
		u.s.root.Remove(u.tmp)
	}
}

func (u *upload) Abort(ctx context.Context) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done {
		return nil
	}
	u.done = true
	if u.err == nil {
		u.err = errAbortedWrite
	}
	u.cleanup()
	return nil
}

// List implements vfs.Store. Entries come back sorted by key, as from S3;
// the Token is the last key of the previous page.
func (s *Store) List(ctx context.Context, opt vfs.ListOptions) (vfs.Page, error) {
	if err := checkPrefix(opt.Prefix); err != nil {
		return vfs.Page{}, err
	}
	limit := opt.Limit
	if limit <= 0 {
		limit = defaultLimit
	}
	// The prefix may end mid-name: list its directory and filter by name.
	dir, namePrefix := "", opt.Prefix
	if i := strings.LastIndex(opt.Prefix, "/"); i >= 0 {
		dir, namePrefix = opt.Prefix[:i+1], opt.Prefix[i+1:]
	}
	l := &lister{s: s, ctx: ctx, after: opt.Token, limit: limit + 1, recursive: opt.Recursive}
	if dir != "" && namePrefix == "" {
		// The directory itself is the prefix's marker, which S3 lists too.
		fi, err := s.root.Stat(fsName(dir))
		if err != nil || !fi.IsDir() {
			return vfs.Page{}, nil
		}
		l.add(info(dir, fi))
	}
	if err := l.walk(dir, namePrefix); err != nil {
		return vfs.Page{}, err
	}
	page := vfs.Page{Entries: l.out}
	if len(page.Entries) > limit {
		page.Entries = page.Entries[:limit]
		page.Next = page.Entries[limit-1].Key
	}
	if opt.MTimes {
		for i := range page.Entries {
			page.Entries[i].MTime = s.readMTime(fsName(page.Entries[i].Key))
		}
	}
	return page, nil
}

type lister struct {
	s         *Store
	ctx       context.Context
	after     string // only keys > after are returned
	limit     int
	recursive bool
	out       []vfs.ObjectInfo
}

func (l *lister) full() bool { return len(l.out) >= l.limit }

func (l *lister) add(oi vfs.ObjectInfo) {
	if oi.Key > l.after && !l.full() {
		l.out = append(l.out, oi)
	}
}

// walk lists dir (a key ending in "/", or "" for root), keeping names that
// start with namePrefix. Children are visited in key order, and all keys
// below "d/" sort right after "d/" itself, so a depth-first walk yields
// globally sorted keys and can stop as soon as the page is full.
func (l *lister) walk(dir, namePrefix string) error {
	if err := l.ctx.Err(); err != nil {
		return err
	}
	f, err := l.s.root.Open(fsName(dir))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil
		}
		return mapErr(dir, err)
	}
	ents, err := f.ReadDir(-1)
	f.Close()
	if err != nil {
		if errors.Is(err, syscall.ENOTDIR) {
			return nil // "a/" where a is a file: nothing below it
		}
		return mapErr(dir, err)
	}
	type child struct {
		key string
		ent fs.DirEntry
	}
	kids := make([]child, 0, len(ents))
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, namePrefix) || (dir == "" && name == TmpDir) {
			continue
		}
		switch {
		case e.IsDir():
			kids = append(kids, child{dir + name + "/", e})
		case e.Type().IsRegular():
			kids = append(kids, child{dir + name, e})
		}
		// Symlinks and special files are not objects.
	}
	sort.Slice(kids, func(i, j int) bool { return kids[i].key < kids[j].key })
	for _, c := range kids {
		if l.full() {
			return nil
		}
		// Skip whole subtrees that lie before the token.
		if c.key <= l.after && !(c.ent.IsDir() && strings.HasPrefix(l.after, c.key)) {
			continue
		}
		fi, err := c.ent.Info()
		if err != nil {
			continue // removed while listing
		}
		l.add(info(c.key, fi))
		if c.ent.IsDir() && l.recursive {
			if err := l.walk(c.key, ""); err != nil {
				return err
			}
		}
	}
	return nil
}
