package localstore

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/sftpgw/sftpgw/vfs"
)

var (
	_ vfs.Suspender = (*upload)(nil)
	_ vfs.Resumer   = (*Store)(nil)
)

// Suspend implements vfs.Suspender: the temp file is synced and kept
// under TmpDir; every byte written so far can be resumed.
func (u *upload) Suspend(ctx context.Context) (vfs.SuspendedUpload, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done {
		return vfs.SuspendedUpload{}, errClosed
	}
	u.done = true
	if u.err != nil || u.f == nil {
		err := u.err
		u.cleanup()
		return vfs.SuspendedUpload{}, err
	}
	u.err = errAbortedWrite
	fi, err := u.f.Stat()
	if err == nil {
		err = u.f.Sync()
	}
	if err != nil || fi.Size() == 0 {
		u.cleanup()
		return vfs.SuspendedUpload{}, err
	}
	u.f.Close()
	u.f = nil
	return vfs.SuspendedUpload{ID: strings.TrimPrefix(u.tmp, TmpDir+"/"), Size: fi.Size()}, nil
}

// suspendedName maps a suspended upload's ID back to its temp file,
// accepting only names Create makes.
func suspendedName(id string) (string, error) {
	h, ok := strings.CutPrefix(id, "up-")
	if _, err := hex.DecodeString(h); !ok || err != nil || len(h) != 24 {
		return "", fmt.Errorf("localstore: not a suspended upload %q: %w", id, vfs.ErrNotExist)
	}
	return TmpDir + "/" + id, nil
}

// Resume implements vfs.Resumer: the temp file is reopened at su.Size
// (anything beyond is cut off).
func (s *Store) Resume(ctx context.Context, key string, su vfs.SuspendedUpload, opt vfs.CreateOptions) (vfs.Upload, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if isMarker(key) || !opt.RetainUntil.IsZero() {
		return nil, fmt.Errorf("localstore: resume %q: %w", key, vfs.ErrUnsupported)
	}
	name, err := suspendedName(su.ID)
	if err != nil {
		return nil, err
	}
	f, err := s.root.OpenFile(name, os.O_WRONLY, fileMode)
	if err != nil {
		return nil, mapErr(key, err)
	}
	fi, err := f.Stat()
	if err == nil && fi.Size() < su.Size {
		err = fmt.Errorf("localstore: resume %q: %d bytes kept, not %d: %w", key, fi.Size(), su.Size, vfs.ErrNotExist)
	}
	if err == nil {
		err = f.Truncate(su.Size)
	}
	if err == nil {
		_, err = f.Seek(su.Size, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return &upload{s: s, key: key, opt: opt, mtime: opt.MTime, tmp: name, f: f}, nil
}

// DiscardSuspended implements vfs.Resumer.
func (s *Store) DiscardSuspended(ctx context.Context, key string, su vfs.SuspendedUpload) error {
	name, err := suspendedName(su.ID)
	if err != nil {
		return nil
	}
	if err := s.root.Remove(name); err != nil && !os.IsNotExist(err) {
		return mapErr(key, err)
	}
	return nil
}
