package localstore_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/sftpgw/sftpgw/vfs"
	"github.com/sftpgw/sftpgw/vfs/localstore"
	"github.com/sftpgw/sftpgw/vfs/storetest"
)

func newStore(t *testing.T) (*localstore.Store, string) {
	t.Helper()
	root := t.TempDir()
	s, err := localstore.New(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, root
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) vfs.Store {
		s, _ := newStore(t)
		return s
	})
}

func TestBadKeys(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	for _, k := range []string{"", "/abs", "../up", "a/../../b", "a/..", "nul\x00", "a//b", "./a", localstore.TmpDir + "/x", localstore.TmpDir + "/"} {
		if _, err := s.Stat(ctx, k); err == nil || errors.Is(err, vfs.ErrNotExist) {
			t.Errorf("stat %q: %v; want an invalid-key error", k, err)
		}
		if _, err := s.Create(ctx, k, vfs.CreateOptions{SizeHint: -1}); err == nil {
			t.Errorf("create %q accepted", k)
		}
		if _, err := s.Read(ctx, k, 0, -1); err == nil {
			t.Errorf("read %q accepted", k)
		}
		if err := s.Delete(ctx, k); err == nil && k != "" {
			t.Errorf("delete %q accepted", k)
		}
		if k != "" {
			if _, err := s.List(ctx, vfs.ListOptions{Prefix: k}); err == nil {
				t.Errorf("list %q accepted", k)
			}
		}
	}
}

// A symlink inside root pointing outside must not let keys escape.
func TestSymlinkEscape(t *testing.T) {
	s, root := newStore(t)
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o600)
	if err := os.Symlink(outside, filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Read(t.Context(), "link/secret", 0, -1); err == nil {
		t.Fatal("read through a symlink out of root")
	}
	if err := storetest.Put(t, s, "link/new", []byte("x"), vfs.CreateOptions{SizeHint: -1}); err == nil {
		t.Fatal("wrote through a symlink out of root")
	}
	if _, err := os.Stat(filepath.Join(outside, "new")); err == nil {
		t.Fatal("file created outside root")
	}
}

func TestLayoutAndModes(t *testing.T) {
	s, root := newStore(t)
	storetest.MustPut(t, s, "a/b/c.txt", []byte("hello"))
	storetest.MustPut(t, s, "d/", nil)
	fi, err := os.Stat(filepath.Join(root, "a", "b", "c.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v; want 0600", fi.Mode().Perm())
	}
	for _, d := range []string{"a", "a/b", "d"} {
		fi, err := os.Stat(filepath.Join(root, d))
		if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
			t.Errorf("dir %s: %v, %v; want a 0700 directory", d, fi, err)
		}
	}
	// The temp dir is never listed, and uploads leave nothing in it.
	got := ListKeys(t, s, vfs.ListOptions{Recursive: true})
	want := []string{"a/", "a/b/", "a/b/c.txt", "d/"}
	if !slices.Equal(got, want) {
		t.Errorf("list: %v; want %v", got, want)
	}
	up, _ := s.Create(t.Context(), "aborted", vfs.CreateOptions{SizeHint: -1})
	up.Write([]byte("x"))
	up.Abort(t.Context())
	if ents, _ := os.ReadDir(filepath.Join(root, localstore.TmpDir)); len(ents) != 0 {
		t.Errorf("temp files left: %v", ents)
	}
}

func TestUploadInvisibleUntilCommit(t *testing.T) {
	s, root := newStore(t)
	up, err := s.Create(t.Context(), "f", vfs.CreateOptions{SizeHint: -1})
	if err != nil {
		t.Fatal(err)
	}
	up.Write([]byte("partial"))
	if _, err := os.Stat(filepath.Join(root, "f")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("partial upload visible: %v", err)
	}
	if err := up.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "f")); string(b) != "partial" {
		t.Fatalf("content %q", b)
	}
}

func TestDeleteNonEmptyMarker(t *testing.T) {
	s, _ := newStore(t)
	storetest.MustPut(t, s, "d/f", []byte("x"))
	err := s.Delete(t.Context(), "d/")
	if err == nil || !errors.Is(err, syscall.ENOTEMPTY) {
		t.Fatalf("delete non-empty marker: %v; want ENOTEMPTY", err)
	}
	// Deleting "d" (no slash) does not touch the directory.
	if err := s.Delete(t.Context(), "d"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(t.Context(), "d/"); err != nil {
		t.Fatal(err)
	}
}

func TestNewCreatesRoot(t *testing.T) {
	root := filepath.Join(t.TempDir(), "x", "y")
	s, err := localstore.New(root)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if fi, err := os.Stat(filepath.Join(root, localstore.TmpDir)); err != nil || !fi.IsDir() {
		t.Fatalf("temp dir: %v", err)
	}
}

func ListKeys(t *testing.T, s vfs.Store, opt vfs.ListOptions) []string {
	var out []string
	for _, e := range storetest.ListAll(t, s, opt) {
		out = append(out, e.Key)
	}
	return out
}
