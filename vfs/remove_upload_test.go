package vfs_test

import (
	"context"
	"errors"
	"testing"

	"github.com/sftpgw/sftpgw/vfs"
	"github.com/sftpgw/sftpgw/vfs/storetest"
)

// Removing a file while its upload is open succeeds and discards the
// upload: the later close stores nothing, as unlink on a POSIX server
// (rclone removes the target when its source fails mid-upload).
func TestRemoveDiscardsUploadInProgress(t *testing.T) {
	for _, tc := range []struct {
		name     string
		existing bool // an older version of the file is stored
		other    bool // the remove comes from another session of the gateway
	}{
		{"new file", false, false},
		{"replacing a stored file", true, false},
		{"removed by another session", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			up := r.session("", vfs.Limits{})
			rm := up
			if tc.other {
				rm = r.session("", vfs.Limits{})
			}
			ctx := context.Background()
			if tc.existing {
				storetest.MustPut(t, r.store, "f.bin", storetest.Data(3000))
			}
			w, err := up.OpenWrite(ctx, "/f.bin", false)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.WriteAt(storetest.Data(1000), 0); err != nil {
				t.Fatal(err)
			}
			if fi, err := rm.Stat(ctx, "/f.bin"); err != nil || fi.Size != 1000 {
				t.Fatalf("stat during the upload: %+v %v", fi, err)
			}
			if err := rm.Remove(ctx, "/f.bin"); err != nil {
				t.Fatalf("remove during the upload: %v", err)
			}
			if _, err := rm.Stat(ctx, "/f.bin"); !errors.Is(err, vfs.ErrNotExist) {
				t.Errorf("stat after remove: %v, want not exist", err)
			}
			if _, err := w.WriteAt(storetest.Data(1000), 1000); err == nil {
				t.Error("a write after the remove was accepted")
			}
			if err := w.Close(); err == nil {
				t.Error("close after the remove reported success")
			}
			if r.exists("f.bin") {
				t.Error("the removed upload was stored")
			}
			if n := r.uploads.Active(); n != 0 {
				t.Errorf("%d uploads still registered", n)
			}
			// The remove is audited as a success that discarded the upload.
			found := false
			for _, e := range r.ev.ev {
				if e.Op == "delete" && e.Result == "ok" && e.Detail == "upload in progress discarded" {
					found = true
				}
			}
			if !found {
				t.Errorf("no delete event for the discarded upload: %+v", r.ev.ev)
			}
		})
	}
}

// A remove after the upload closed removes the stored file as usual, and
// a new upload after the remove is not affected by it.
func TestRemoveThenNewUpload(t *testing.T) {
	r := newRig(t)
	fs := r.session("", vfs.Limits{})
	ctx := context.Background()
	if err := put(fs, "/f.bin", storetest.Data(2000)); err != nil {
		t.Fatal(err)
	}
	if err := fs.Remove(ctx, "/f.bin"); err != nil || r.exists("f.bin") {
		t.Fatalf("remove: %v, exists %v", err, r.exists("f.bin"))
	}
	if err := put(fs, "/f.bin", storetest.Data(2000)); err != nil || !r.exists("f.bin") {
		t.Fatalf("upload after remove: %v", err)
	}
	if err := fs.Remove(ctx, "/missing"); !errors.Is(err, vfs.ErrNotExist) {
		t.Errorf("remove of a missing file: %v", err)
	}
}
