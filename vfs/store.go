// Package vfs maps a session's SFTP view onto object keys, decides every
// permission in one place (FS.authorize) and records every decision as an
// audit event. Storage itself sits behind the small, S3-shaped Store interface.
package vfs

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"time"
)

// Store is an S3-shaped object store. Keys never start with "/"; a key that
// ends in "/" is a directory marker. It knows nothing of users or SFTP.
type Store interface {
	// Stat returns the object at exactly key, or an error wrapping fs.ErrNotExist.
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	// List returns one page of objects below opt.Prefix, including the
	// prefix's own "dir/" marker when it exists (as S3 does).
	List(ctx context.Context, opt ListOptions) (Page, error)
	// Create starts an upload that becomes visible only on Commit. ctx
	// bounds the whole upload: cancelling it aborts the upload.
	Create(ctx context.Context, key string, opt CreateOptions) (Upload, error)
	// Read streams length bytes (length < 0: to the end) from offset.
	Read(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)
	// Delete removes key; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// Copy copies src to dst server side (with the same encryption as any
	// write), keeping src's MTime.
	Copy(ctx context.Context, src, dst string) error
	// SetMTime records t as the modification time of the committed object
	// key (S3: a server-side copy onto itself, metadata replaced).
	SetMTime(ctx context.Context, key string, t time.Time) error
}

// ObjectInfo describes one object or, from a list, one common prefix.
type ObjectInfo struct {
	Key     string
	Size    int64
	ModTime time.Time // when the store last wrote the object (retention ages by it)
	IsDir   bool      // a common prefix or a "dir/" marker
	// MTime is the file's modification time as a client set it (S3:
	// X-Amz-Meta-Mtime, rclone's key), zero if none was set. From List,
	// only filled when ListOptions.MTimes asks for it.
	MTime time.Time
}

// ListOptions selects a page of a listing.
type ListOptions struct {
	Prefix    string
	Recursive bool   // false: delimiter "/", sub-directories come back as IsDir entries
	Token     string // continuation token from the previous Page
	Limit     int    // <= 0: store default (1000 for S3)
	// MTimes fills ObjectInfo.MTime of files and of sub-directories'
	// markers (S3: one HEAD per entry, as a listing carries no metadata).
	MTimes bool
}

// Page is one page of a listing. Next is empty on the last page.
type Page struct {
	Entries []ObjectInfo
	Next    string
}

// CreateOptions tune an upload.
type CreateOptions struct {
	// Exclusive fails Commit with ErrExist if the key exists (If-None-Match: *).
	Exclusive bool
	// SizeHint is the expected size, or -1 when unknown.
	SizeHint int64
	// MTime, if not zero, is stored as the object's MTime.
	MTime time.Time
	// RetainUntil, if set, writes the object under S3 Object Lock in
	// compliance mode until then: nobody can delete or overwrite that
	// version before. A store that cannot lock objects refuses the upload.
	RetainUntil time.Time
	// Progress, if set, is called (from any goroutine, possibly at once
	// from two) whenever the store holds more of the upload durably in a
	// form Resumer can continue: S3, each time the run of completed
	// parts from part 1 grows. It must not block.
	Progress func(SuspendedUpload)
}

// Upload is a sequential writer whose data becomes an object only on Commit.
// After Abort (or a failed Commit) nothing is visible and nothing is left
// pending in the store.
type Upload interface {
	io.Writer
	// SetMTime sets the MTime Commit stores with the object, at no cost,
	// and reports true; false if it is too late for this upload (S3: the
	// multipart upload has started), so the caller sets it after Commit.
	SetMTime(t time.Time) bool
	Commit(ctx context.Context) error
	Abort(ctx context.Context) error
}

var (
	// ErrExist is returned by Commit of an exclusive upload whose key exists.
	ErrExist = fs.ErrExist
	// ErrPermission is returned for every denied operation.
	ErrPermission = fs.ErrPermission
	// ErrNotExist is returned for missing objects.
	ErrNotExist = fs.ErrNotExist
	// ErrUnsupported is returned for operations the gateway does not offer
	// (symlinks, hard links, random writes).
	ErrUnsupported = errors.New("operation unsupported")
)

// SuspendedUpload is what a store keeps of an interrupted upload so it
// can be continued later (see Suspender, Resumer and docs/resume.md).
type SuspendedUpload struct {
	ID    string       `json:"id"`              // S3: multipart upload ID; local store: temp file name
	Parts []PartRecord `json:"parts,omitempty"` // S3: parts 1..n, all complete
	Size  int64        `json:"size"`            // bytes kept: the offset to resume at
}

// PartRecord is one completed part of a suspended multipart upload.
type PartRecord struct {
	Number int32  `json:"n"`
	Size   int64  `json:"size"`
	ETag   string `json:"etag"`
}

// Suspender is an Upload that can stop without discarding what the store
// already holds. Suspend ends the upload like Abort, but keeps the data
// stored so far (S3: the completed parts, contiguous from part 1; bytes
// buffered for a part not yet sent are dropped). A Size of 0 means nothing
// was kept (and nothing is left pending).
type Suspender interface {
	Suspend(ctx context.Context) (SuspendedUpload, error)
}

// Resumer is a Store that can continue a suspended upload.
type Resumer interface {
	// Resume continues su at key: the returned Upload's first Write is
	// byte su.Size of the object. ErrNotExist if the store no longer
	// holds it (expired, aborted).
	Resume(ctx context.Context, key string, su SuspendedUpload, opt CreateOptions) (Upload, error)
	// DiscardSuspended frees what su holds; a missing one is not an error.
	DiscardSuspended(ctx context.Context, key string, su SuspendedUpload) error
}
