package vfs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sftpgw/sftpgw/audit"
)

// ClaimPrefix holds delete-after-download claims: one empty object per
// (key, version) being deleted, created with If-None-Match: * (an exclusive
// link on the local store). Whoever creates it deletes the file; everyone
// else (another handle, another session, another gateway instance) leaves
// it alone. S3 conditional deletes (If-Match) would do without it, but
// MinIO ignores If-Match on DeleteObject. No client can name this prefix.
const ClaimPrefix = ".sftpgw-claims/"

func claimKey(key string, oi ObjectInfo) string {
	h := sha256.Sum256(fmt.Appendf(nil, "%s\x00%d\x00%d", key, oi.Size, oi.ModTime.UnixNano()))
	return ClaimPrefix + hex.EncodeToString(h[:16])
}

// reservedKey reports whether key lies in the gateway's own bookkeeping.
func reservedKey(key string) bool {
	return strings.HasPrefix(key+"/", ClaimPrefix) || strings.HasPrefix(key+"/", ResumePrefix)
}

// deleteAfterDownload removes the object a complete download served,
// exactly once: the claim serialises every download of this version, and
// the check after the claim sees a delete or a replacement made by an
// earlier claimant. A crash between claim and release leaves the object
// and its claim for retention; the file is never deleted twice.
func (r *Reader) deleteAfterDownload(ctx context.Context) {
	f := r.fs
	ck := claimKey(r.key, r.opened)
	up, err := f.store.Create(ctx, ck, CreateOptions{Exclusive: true, SizeHint: 0})
	if err == nil {
		if err = up.Commit(ctx); err != nil {
			_ = up.Abort(ctx)
		}
	}
	switch {
	case errors.Is(err, ErrExist):
		return // another download of this version is deleting it
	case err != nil:
		f.skipDelete(r.ev.path, ErrorClass(err), "delete after download skipped: "+SafeMessage(err))
		return
	}
	defer func() { _ = f.store.Delete(ctx, ck) }()
	if !r.sameObject(ctx) {
		return
	}
	ev := f.begin(OpDelete, r.ev.path)
	ev.detail = "delete after download"
	err = f.store.Delete(ctx, r.key)
	if err == nil {
		f.uploads.changed(f.name, r.key, -r.size, -1) // frees the uploader's quota
		f.keepParent(ctx, r.key)
	}
	f.finish(ev, err)
}

// sameObject reports whether the object at r.key is still the one this
// download opened. A delete after download must remove only what was
// served: not a newer upload of the same name that arrived meanwhile, and
// not a second time when two handles read the same file (the first close
// already removed it). Anything unclear keeps the object; retention
// removes it later.
func (r *Reader) sameObject(ctx context.Context) bool {
	oi, err := r.fs.store.Stat(ctx, r.key)
	switch {
	case errors.Is(err, ErrNotExist):
		return false
	case err != nil:
		r.fs.skipDelete(r.ev.path, ErrorClass(err), "delete after download skipped: "+SafeMessage(err))
		return false
	case oi.Size == r.opened.Size && oi.ModTime.Equal(r.opened.ModTime):
		return true
	}
	r.fs.skipDelete(r.ev.path, "changed", "delete after download skipped: the file changed since the download began")
	return false
}

// skipDelete audits a delete after download that did not happen.
func (f *FS) skipDelete(vp, class, detail string) {
	f.rec.Record(audit.Event{
		Time: time.Now().UTC(), Kind: "file", Session: f.sess.ID, User: f.sess.User, Role: f.sess.Role,
		Client: f.sess.Client, Op: OpDelete.String(), Path: vp, Result: "error", ErrClass: class, Detail: detail,
	})
}
