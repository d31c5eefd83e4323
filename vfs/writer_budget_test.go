package vfs_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sftpgw/sftpgw/vfs"
)

// The reorder memory is bounded per session, not only per upload: many
// open uploads of one session share one budget, and a finished or failed
// upload gives its share back.
func TestSessionWindowSharedByUploads(t *testing.T) {
	fs := vfs.New(vfs.Options{Store: &memStore{}, Session: vfs.Session{Perms: vfs.PermAll}, WriteWindow: 1 << 20, SessionWindow: 1 << 20})
	ctx := context.Background()
	chunk := bytes.Repeat([]byte("x"), 256<<10)
	var ws []*vfs.Writer
	for _, name := range []string{"/a", "/b", "/c"} {
		w, err := fs.OpenWrite(ctx, name, false)
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
	}
	// a and b each hold 512 KiB ahead of order: the session's 1 MiB.
	for _, w := range ws[:2] {
		for _, off := range []int64{1, 2} {
			if _, err := w.WriteAt(chunk, off*int64(len(chunk))); err != nil {
				t.Fatalf("within the budget: %v", err)
			}
		}
	}
	_, err := ws[2].WriteAt(chunk, int64(len(chunk)))
	var le *vfs.LimitError
	if !errors.As(err, &le) || !strings.Contains(err.Error(), "this session's uploads together") {
		t.Fatalf("over the session budget: %v, want errSessionWindow", err)
	}
	// a catches up: its pending chunks are written, the budget is free.
	if _, err := ws[0].WriteAt(chunk, 0); err != nil {
		t.Fatal(err)
	}
	if err := ws[0].Close(); err != nil {
		t.Fatal(err)
	}
	ws[1].TransferError(errors.New("client gone")) // b fails: its share comes back too
	_ = ws[1].Close()
	w, err := fs.OpenWrite(ctx, "/d", false)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{1, 2, 3} {
		if _, err := w.WriteAt(chunk, off*int64(len(chunk))); err != nil {
			t.Fatalf("budget not given back: %v", err)
		}
	}
	if _, err := w.WriteAt(chunk, 0); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}
