package vfs

import (
	"context"
	"strings"
)

// keepParent gives the directory that held key a marker when key was its
// last object. On S3 a folder is only the common prefix of its objects and
// vanishes with the last one; a folder should outlive its last file, as on
// a disk: HR finds an applicant's home again after collecting (and so
// deleting) the last file in it. The marker is a side effect of a delete
// authorize already allowed, not an operation of its own, so it has no
// audit event; retention removes it once it is old and still empty.
func (f *FS) keepParent(ctx context.Context, key string) {
	i := strings.LastIndex(strings.TrimSuffix(key, "/"), "/")
	if i < 0 {
		return // top level of the bucket: nothing to keep
	}
	parent := key[:i+1]
	page, err := f.store.List(ctx, ListOptions{Prefix: parent, Limit: 1})
	if err != nil || len(page.Entries) > 0 {
		return // not empty (or unknown: leave it as it is)
	}
	if err := f.putEmpty(ctx, parent); err != nil {
		f.log.Warn("could not keep the emptied directory", "key", parent, "error", SafeMessage(err))
	}
}
