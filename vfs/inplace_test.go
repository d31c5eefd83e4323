package vfs_test

import (
	"context"
	"errors"
	"testing"

	"github.com/sftpgw/sftpgw/vfs"
	"github.com/sftpgw/sftpgw/vfs/localstore"
)

// An open for writing without O_TRUNC is an in-place edit (append, resume,
// dd conv=notrunc). Committing just the written bytes would cut the rest
// of the file off, so such an open of a non-empty file is refused and the
// object stays as it was. Empty or missing files are plain uploads.
func TestOpenWithoutTruncRefusesInPlaceEdit(t *testing.T) {
	st, err := localstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	fs := vfs.New(vfs.Options{Store: st, Session: vfs.Session{User: "u", Role: "r", Perms: vfs.PermAll}})
	put := func(p string, fl vfs.WriteFlags, data string) error {
		w, err := fs.OpenWriteFlags(ctx, p, fl)
		if err != nil {
			return err
		}
		if _, err := w.WriteAt([]byte(data), 0); err != nil {
			w.Close()
			return err
		}
		return w.Close()
	}
	read := func(p string) string {
		r, err := fs.OpenRead(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		b := make([]byte, r.Size())
		if n, err := r.ReadAt(b, 0); n != len(b) {
			t.Fatalf("read %s: %d bytes, %v", p, n, err)
		}
		return string(b)
	}
	keep := vfs.WriteFlags{}
	if err := put("/f", vfs.WriteFlags{Truncate: true}, "the whole original content"); err != nil {
		t.Fatal(err)
	}
	err = put("/f", keep, "XY")
	if !errors.Is(err, vfs.ErrUnsupported) {
		t.Fatalf("in-place write of a non-empty file: %v, want ErrUnsupported", err)
	}
	if got := read("/f"); got != "the whole original content" {
		t.Fatalf("object changed by a refused in-place write: %q", got)
	}
	if vfs.SafeMessage(err) == "" || vfs.ErrorClass(err) != "unsupported" {
		t.Errorf("message %q class %q", vfs.SafeMessage(err), vfs.ErrorClass(err))
	}
	// Missing and empty files take a non-truncating open (touch, then write).
	if err := put("/new", keep, "fresh"); err != nil {
		t.Fatalf("non-truncating open of a new file: %v", err)
	}
	if err := put("/empty", vfs.WriteFlags{Truncate: true}, ""); err != nil {
		t.Fatal(err)
	}
	if err := put("/empty", keep, "filled"); err != nil {
		t.Fatalf("non-truncating open of an empty file: %v", err)
	}
	if got := read("/empty"); got != "filled" {
		t.Fatalf("empty file after write: %q", got)
	}
	// With O_TRUNC the file is replaced as before.
	if err := put("/f", vfs.WriteFlags{Truncate: true}, "short"); err != nil {
		t.Fatal(err)
	}
	if got := read("/f"); got != "short" {
		t.Fatalf("truncating rewrite: %q", got)
	}
}
