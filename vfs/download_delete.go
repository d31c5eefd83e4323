package vfs

import (
	"context"
	"errors"
	"time"

	"github.com/sftpgw/sftpgw/audit"
)

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
