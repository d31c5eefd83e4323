package s3store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/smithy-go"

	"github.com/sftpgw/sftpgw/vfs"
)

const (
	mib = 1 << 20
	gib = 1 << 30
	tib = 1 << 40
)

func TestPartSizeUnknownSize(t *testing.T) {
	base := int64(DefaultPartSize)
	for _, c := range []struct {
		n    int
		want int64
	}{{1, 8 * mib}, {1000, 8 * mib}, {1001, 16 * mib}, {2000, 16 * mib}, {2001, 32 * mib}, {9001, 4 * gib}, {10000, 4 * gib}} {
		if got := partSizeFor(base, 0, c.n); got != c.want {
			t.Errorf("part %d: %d MiB; want %d MiB", c.n, got/mib, c.want/mib)
		}
	}
	var total int64
	for n := 1; n <= maxParts; n++ {
		size := partSizeFor(base, 0, n)
		if size > maxPartSize || size < minPartSize {
			t.Fatalf("part %d: size %d out of S3 limits", n, size)
		}
		total += size
	}
	if total < tib {
		t.Fatalf("10000 parts hold only %d GiB; want >= 1 TiB", total/gib)
	}
}

func TestPartSizeHinted(t *testing.T) {
	for _, c := range []struct {
		hint, want int64
	}{
		{-1, 0},
		{0, 0},
		{1, 8 * mib},
		{100 * mib, 8 * mib},
		{9000 * 8 * mib, 8 * mib},
		{9000*8*mib + 1, 9 * mib},
		{tib, 117 * mib},
		{5 * tib, 583 * mib},
	} {
		got := fixedPartSize(DefaultPartSize, c.hint)
		if got != c.want {
			t.Errorf("hint %d: part size %d; want %d", c.hint, got, c.want)
		}
		if got > 0 && (got%mib != 0 || got*9000 < c.hint) {
			t.Errorf("hint %d: part size %d is not whole MiB or too small for 9000 parts", c.hint, got)
		}
	}
	// A hint that was too small still fits: parts beyond 9000 grow.
	fixed := fixedPartSize(DefaultPartSize, 100*gib)
	var total int64
	for n := 1; n <= maxParts; n++ {
		size := partSizeFor(DefaultPartSize, fixed, n)
		if n <= 9000 && size != fixed {
			t.Fatalf("part %d: %d; want the fixed %d", n, size, fixed)
		}
		total += size
	}
	if total < 10*100*gib {
		t.Fatalf("10000 parts after a 100 GiB hint hold only %d GiB", total/gib)
	}
}

func TestCopySource(t *testing.T) {
	for key, want := range map[string]string{
		"a/b.txt":          "bkt/a/b.txt",
		"sp ace/x+y%z":     "bkt/sp%20ace/x%2By%25z",
		"ü?#&=":            "bkt/%C3%BC%3F%23%26%3D",
		"a-_.~/B9":         "bkt/a-_.~/B9",
		"dir/":             "bkt/dir/",
		"semi;colon,comma": "bkt/semi%3Bcolon%2Ccomma",
	} {
		if got := copySource("bkt", key); got != want {
			t.Errorf("copySource(%q) = %q; want %q", key, got, want)
		}
	}
}

func TestMapErr(t *testing.T) {
	secret := "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	for _, c := range []struct {
		err  error
		kind error
		msg  string
	}{
		{&smithy.GenericAPIError{Code: "NoSuchKey", Message: secret}, vfs.ErrNotExist, "storage error: op: NoSuchKey"},
		{&smithy.GenericAPIError{Code: "NotFound"}, vfs.ErrNotExist, "storage error: op: NotFound"},
		{&smithy.GenericAPIError{Code: "PreconditionFailed"}, vfs.ErrExist, "storage error: op: PreconditionFailed"},
		{&smithy.GenericAPIError{Code: "AccessDenied", Message: secret}, vfs.ErrPermission, "storage error: op: AccessDenied"},
		{&smithy.GenericAPIError{Code: "SlowDown"}, nil, "storage error: op: SlowDown"},
		{&smithy.GenericAPIError{Code: "Weird <code> \n" + strings.Repeat("x", 100)}, nil, "storage error: op: Weirdcode" + strings.Repeat("x", 50)},
		{fmt.Errorf("wrapped: %w", context.Canceled), nil, "storage error: op: canceled"},
		{context.DeadlineExceeded, nil, "storage error: op: timeout"},
		{errors.New("dial tcp: secret " + secret), nil, "storage error: op: request failed"},
	} {
		err := mapErr("op", c.err)
		if err.Error() != c.msg {
			t.Errorf("mapErr(%v) = %q; want %q", c.err, err.Error(), c.msg)
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("mapErr(%v) leaks the message", c.err)
		}
		for _, k := range []error{vfs.ErrNotExist, vfs.ErrExist, vfs.ErrPermission} {
			if errors.Is(err, k) != (k == c.kind) {
				t.Errorf("mapErr(%v): errors.Is(%v) = %v", c.err, k, !(k == c.kind))
			}
		}
		if !errors.Is(err, c.err) {
			t.Errorf("mapErr(%v) lost the original error", c.err)
		}
		if mapErr("other", err) != err {
			t.Errorf("mapErr is not idempotent")
		}
	}
}

func TestNewValidates(t *testing.T) {
	ctx := context.Background()
	for _, cfg := range []Config{
		{},
		{Bucket: "b", SSE: "none"},
		{Bucket: "b", KMSKeyID: "k"},
		{Bucket: "b", PartSize: 1 << 20},
		{Bucket: "b", Concurrency: -1},
	} {
		if _, err := New(ctx, cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	s, err := New(ctx, Config{Bucket: "b", Region: "eu-west-1", AccessKeyID: "a", SecretAccessKey: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if s.partSize != DefaultPartSize || s.concurrency != DefaultConcurrency || s.sse != "AES256" {
		t.Errorf("defaults: %+v", s)
	}
}
