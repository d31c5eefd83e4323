package vfs_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sftpgw/sftpgw/vfs"
	"github.com/sftpgw/sftpgw/vfs/storetest"
)

// A role without overwrite may create a file only if it still does not
// exist when the upload commits: one that appeared meanwhile (another
// session, another gateway instance writing the store directly) is kept,
// and the late upload is denied.
func TestNoOverwriteIsCheckedAtCommit(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	fs := vfs.New(vfs.Options{Store: r.store, StoreName: "files", Uploads: r.uploads, Audit: r.ev,
		Session: vfs.Session{ID: "s", User: "u", Role: "dropbox", Perms: vfs.PermAll.Without(vfs.OpOverwrite)}})
	w, err := fs.OpenWrite(ctx, "/f.bin", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt([]byte("late upload"), 0); err != nil {
		t.Fatal(err)
	}
	theirs := []byte("the other instance's file")
	storetest.MustPut(t, r.store, "f.bin", theirs) // as another instance would
	if err := w.Close(); !errors.Is(err, vfs.ErrPermission) {
		t.Errorf("close: %v, want permission denied", err)
	}
	got, err := storetest.Get(t, r.store, "f.bin")
	if err != nil || !bytes.Equal(got, theirs) {
		t.Errorf("the other file was replaced: %q %v", got, err)
	}
	var denied bool
	for _, e := range r.ev.ev {
		if e.Op == "overwrite" && e.Result == "denied" && strings.Contains(e.Detail, "may not overwrite") {
			denied = true
		}
	}
	if !denied {
		t.Errorf("no denied overwrite event: %+v", r.ev.ev)
	}

	// A role with overwrite replaces it, as before.
	all := r.session("", vfs.Limits{})
	if err := put(all, "/f.bin", []byte("replacement")); err != nil {
		t.Fatal(err)
	}
	if got, _ := storetest.Get(t, r.store, "f.bin"); string(got) != "replacement" {
		t.Errorf("overwrite by a role with overwrite: %q", got)
	}
}
