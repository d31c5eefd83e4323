package vfs_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sftpgw/sftpgw/vfs"
	"github.com/sftpgw/sftpgw/vfs/localstore"
)

// failingCopies fails the copy number failAt (1-based) and counts calls;
// with countOnly it only counts (a local copy syncs, a thousand take long).
type failingCopies struct {
	vfs.Store
	failAt    int64
	countOnly bool
	copies    atomic.Int64
}

func (s *failingCopies) Copy(ctx context.Context, src, dst string) error {
	if s.copies.Add(1) == s.failAt {
		return errors.New("injected copy failure")
	}
	if s.countOnly {
		return nil
	}
	return s.Store.Copy(ctx, src, dst)
}

// renameRig is a local store whose files are written straight to disk
// (no per-file sync), so a directory of a thousand objects is quick.
func renameRig(t *testing.T, files map[string]string) (string, *failingCopies, *vfs.FS) {
	t.Helper()
	dir := memTempDir(t)
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if strings.HasSuffix(name, "/") {
			if err := os.MkdirAll(p, 0o700); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	st, err := localstore.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	fc := &failingCopies{Store: st}
	fs := vfs.New(vfs.Options{Store: fc, StoreName: "files",
		Session: vfs.Session{ID: "s", User: "u", Role: "r", Perms: vfs.PermAll}})
	return dir, fc, fs
}

func tree() map[string]string {
	return map[string]string{
		"d/": "", "d/a.txt": "a", "d/sub/": "", "d/sub/b.txt": "b", "d/sub/deep/": "", "d/sub/deep/c.txt": "c",
		"d/empty/": "", "other.txt": "o",
	}
}

// A directory rename copies every object below it, then deletes the
// sources: afterwards the tree is complete under the new name only.
func TestRenameDirMovesTree(t *testing.T) {
	_, fc, fs := renameRig(t, tree())
	if err := fs.Rename(context.Background(), "/d", "/moved", false); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"moved/": "", "moved/a.txt": "a", "moved/sub/": "", "moved/sub/b.txt": "b", "moved/sub/deep/": "",
		"moved/sub/deep/c.txt": "c", "moved/empty/": "", "other.txt": "o",
	}
	if got := snapshot(t, fc.Store); !maps.Equal(got, want) {
		t.Errorf("after rename:\n got %q\nwant %q", got, want)
	}
}

// A copy failing midway leaves the source directory complete (nothing was
// deleted yet); the rename reports the failure.
func TestRenameDirCopyFailureKeepsSource(t *testing.T) {
	_, fc, fs := renameRig(t, tree())
	fc.failAt = 4
	if err := fs.Rename(context.Background(), "/d", "/moved", false); err == nil {
		t.Fatal("rename with a failing copy succeeded")
	}
	got := snapshot(t, fc.Store)
	for k, v := range tree() {
		if got[k] != v {
			t.Errorf("source %s: %q, want %q (the source must stay complete)", k, got[k], v)
		}
	}
}

// A directory of more than 1000 objects is refused before anything is
// copied; 1000 objects (marker included) still move.
func TestRenameDirCap(t *testing.T) {
	for _, n := range []int{999, 1000} { // files, plus the directory's marker
		files := map[string]string{"big/": ""}
		for i := range n {
			files[fmt.Sprintf("big/f%04d", i)] = "x"
		}
		_, fc, fs := renameRig(t, files)
		fc.countOnly = true
		err := fs.Rename(context.Background(), "/big", "/big2", false)
		objects := n + 1
		if objects > 1000 {
			if !errors.Is(err, vfs.ErrUnsupported) || !strings.Contains(err.Error(), "more than 1000 objects") {
				t.Errorf("%d objects: %v, want unsupported (more than 1000 objects)", objects, err)
			}
			if c := fc.copies.Load(); c != 0 {
				t.Errorf("%d objects: %d copies made before the refusal", objects, c)
			}
			if got := snapshot(t, fc.Store); !maps.Equal(got, files) {
				t.Errorf("%d objects: the refused rename changed the store", objects)
			}
			continue
		}
		if err != nil {
			t.Errorf("%d objects: %v", objects, err)
		}
		if c := fc.copies.Load(); c != int64(objects) {
			t.Errorf("%d objects: %d copies", objects, c)
		}
	}
}

// A directory cannot move into itself (that would copy forever); a sibling
// whose name merely starts with the same letters is fine.
func TestRenameDirIntoItself(t *testing.T) {
	_, fc, fs := renameRig(t, tree())
	before := snapshot(t, fc.Store)
	for _, to := range []string{"/d/sub/x", "/d/inner", "d/./sub/../y"} {
		var ipe *vfs.InvalidPathError
		if err := fs.Rename(context.Background(), "/d", to, false); !errors.As(err, &ipe) || !strings.Contains(err.Error(), "into itself") {
			t.Errorf("rename /d to %s: %v, want refused as a move into itself", to, err)
		}
	}
	if got := snapshot(t, fc.Store); !maps.Equal(got, before) || fc.copies.Load() != 0 {
		t.Errorf("refused renames changed the store (%d copies)", fc.copies.Load())
	}
	if err := fs.Rename(context.Background(), "/d", "/dd", false); err != nil {
		t.Errorf("rename /d to its sibling /dd: %v", err)
	}
}
