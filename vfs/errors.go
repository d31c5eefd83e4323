package vfs

import (
	"context"
	"errors"
)

// ErrorClass names the kind of an error for audit events and metrics.
func ErrorClass(err error) string {
	var ipe *InvalidPathError
	var le *LimitError
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrPermission):
		return "permission"
	case errors.Is(err, ErrNotExist):
		return "not_found"
	case errors.Is(err, ErrExist):
		return "exists"
	case errors.Is(err, ErrUnsupported):
		return "unsupported"
	case errors.Is(err, ErrNotEmpty):
		return "not_empty"
	case errors.As(err, &ipe):
		return "invalid_path"
	case errors.As(err, &le):
		return "limit"
	case errors.Is(err, errNotSequential), errors.Is(err, errWindow), errors.Is(err, errGap):
		return "not_sequential"
	case errors.Is(err, context.Canceled), errors.Is(err, errAborted):
		return "aborted"
	default:
		return "store"
	}
}

// LimitError is an upload refused by a size, quota or type limit.
type LimitError struct{ Reason string }

func (e *LimitError) Error() string { return e.Reason }

// SafeMessage is the short text a client may see for err: the reason for
// our own errors, and a fixed text for store errors (never raw S3 detail).
func SafeMessage(err error) string {
	var ipe *InvalidPathError
	var le *LimitError
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrPermission):
		return "permission denied"
	case errors.Is(err, ErrNotExist):
		return "no such file"
	case errors.Is(err, ErrExist):
		return "file exists"
	case errors.Is(err, ErrUnsupported):
		return err.Error()
	case errors.Is(err, ErrNotEmpty):
		return "directory not empty"
	case errors.As(err, &ipe):
		return ipe.Error()
	case errors.As(err, &le):
		return le.Error()
	case errors.Is(err, errNotSequential), errors.Is(err, errWindow), errors.Is(err, errGap):
		return err.Error()
	case errors.Is(err, context.Canceled), errors.Is(err, errAborted):
		return "transfer aborted"
	default:
		return "storage error, please retry later"
	}
}
