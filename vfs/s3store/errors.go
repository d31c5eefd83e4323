package s3store

import (
	"context"
	"errors"
	"net/http"
	"strings"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"

	"github.com/sftpgw/sftpgw/vfs"
)

// Error is a failed S3 operation. Error() is short and safe to show or log
// anywhere ("storage error: <op>: <code>"); the SDK error (with request IDs,
// never credentials or signatures) stays reachable through Unwrap for logs,
// and so does the vfs sentinel it maps to.
type Error struct {
	Op   string // stat, list, read, put, upload part, ...
	Code string // S3 error code, HTTP status or a short class
	kind error  // vfs.ErrNotExist, vfs.ErrExist, vfs.ErrPermission or nil
	Err  error  // the original error
}

func (e *Error) Error() string {
	if e.Op == "" {
		return "storage error: " + e.Code
	}
	return "storage error: " + e.Op + ": " + e.Code
}

// Unwrap exposes both the vfs sentinel and the original error to errors.Is/As.
func (e *Error) Unwrap() []error {
	if e.kind == nil {
		return []error{e.Err}
	}
	return []error{e.kind, e.Err}
}

// Detail is the full original error text, for server-side logs only.
func (e *Error) Detail() string { return e.Err.Error() }

func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// mapErr classifies an SDK error. Anything already mapped passes through.
func mapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	var done *Error
	if errors.As(err, &done) {
		return err
	}
	e := &Error{Op: op, Err: err}
	status := httpStatus(err)
	var api smithy.APIError
	if errors.As(err, &api) {
		e.Code = safeCode(api.ErrorCode())
	}
	switch {
	case e.Code == "NoSuchKey", e.Code == "NotFound", e.Code == "NoSuchBucket", status == http.StatusNotFound:
		e.kind = vfs.ErrNotExist
	case e.Code == "PreconditionFailed", status == http.StatusPreconditionFailed:
		// Only our If-None-Match: * writes are conditional.
		e.kind = vfs.ErrExist
	case e.Code == "ConditionalRequestConflict":
		// Another conditional write of the same key is in flight.
		e.kind = vfs.ErrExist
	case e.Code == "AccessDenied", e.Code == "InvalidAccessKeyId", e.Code == "SignatureDoesNotMatch",
		e.Code == "AllAccessDisabled", status == http.StatusForbidden:
		e.kind = vfs.ErrPermission
	}
	switch {
	case e.Code != "":
	case errors.Is(err, context.Canceled):
		e.Code = "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		e.Code = "timeout"
	case status != 0:
		e.Code = http.StatusText(status)
	default:
		e.Code = "request failed"
	}
	return e
}

// safeCode keeps an S3 error code printable and short: it comes from the
// server and ends up in client-visible messages.
func safeCode(code string) string {
	if len(code) > 64 {
		code = code[:64]
	}
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_' {
			return r
		}
		return -1
	}, code)
}
