package vfs

import (
	"context"
	"errors"
)

// classify is the one mapping of errors to an audit class and to the short
// text a client may see: the reason for our own errors, a fixed text for
// store errors (never raw S3 detail).
func classify(err error) (class, message string) {
	var ipe *InvalidPathError
	var le *LimitError
	switch {
	case err == nil:
		return "", ""
	case errors.Is(err, ErrPermission):
		return "permission", "permission denied"
	case errors.Is(err, ErrNotExist):
		return "not_found", "no such file"
	case errors.Is(err, ErrExist):
		return "exists", "file exists"
	case errors.Is(err, ErrUnsupported):
		return "unsupported", err.Error()
	case errors.Is(err, ErrNotEmpty):
		return "not_empty", "directory not empty"
	case errors.As(err, &ipe):
		return "invalid_path", ipe.Error()
	case errors.As(err, &le):
		return "limit", le.Error()
	case errors.Is(err, errNotSequential), errors.Is(err, errWindow), errors.Is(err, errGap):
		return "not_sequential", err.Error()
	case errors.Is(err, context.Canceled), errors.Is(err, errAborted):
		return "aborted", "transfer aborted"
	default:
		return "store", "storage error, please retry later"
	}
}

// ErrorClass names the kind of an error for audit events and metrics.
func ErrorClass(err error) string {
	c, _ := classify(err)
	return c
}

// SafeMessage is the short text a client may see for err.
func SafeMessage(err error) string {
	_, m := classify(err)
	return m
}

// LimitError is an upload refused by a size, quota or type limit.
type LimitError struct{ Reason string }

func (e *LimitError) Error() string { return e.Reason }

// RefusedError is an operation refused for a reason the client is told
// (status message and stderr), of the kind Kind (ErrUnsupported...), which
// decides its status code and audit class.
type RefusedError struct {
	Reason string
	Kind   error
}

func (e *RefusedError) Error() string { return e.Reason }
func (e *RefusedError) Unwrap() error { return e.Kind }
