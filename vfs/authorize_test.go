package vfs_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sftpgw/sftpgw/config"
	"github.com/sftpgw/sftpgw/vfs"
	"github.com/sftpgw/sftpgw/vfs/localstore"
	"github.com/sftpgw/sftpgw/vfs/storetest"
)

// authzCase is one operation on one path. decides lists the permissions
// that must all be held; when they are, the operation ends with wantErr
// (nil, or a not-found for paths the home does not have) and check sees
// its effect.
type authzCase struct {
	name    string
	decides []vfs.Op
	wantErr error
	run     func(ctx context.Context, fs *vfs.FS) error
	check   func(t *testing.T, st vfs.Store) // allowed runs only; nil: nothing to see
}

const authzHome = "home/u/"

var authzTime = time.Date(2020, 2, 29, 12, 0, 0, 0, time.UTC)

// authzSeed is the store every case starts from: a home, and a sibling
// home the session must never reach.
var authzSeed = map[string]string{
	authzHome + "f.txt":     "file content",
	authzHome + "d/":        "",
	authzHome + "d/g.txt":   "g content",
	authzHome + "e/":        "",
	"home/other/secret.txt": "someone else's",
}

func download(ctx context.Context, fs *vfs.FS, p string) error {
	r, err := fs.OpenRead(ctx, p)
	if err != nil {
		return err
	}
	buf := make([]byte, r.Size())
	if _, err := r.ReadAt(buf, 0); err != nil && err != io.EOF {
		return err
	}
	return r.Close()
}

func upload(ctx context.Context, fs *vfs.FS, p, data string) error {
	w, err := fs.OpenWrite(ctx, p, false)
	if err != nil {
		return err
	}
	if _, err := w.WriteAt([]byte(data), 0); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

func list(ctx context.Context, fs *vfs.FS, p string) error {
	l, err := fs.List(ctx, p)
	if err != nil {
		return err
	}
	defer l.Close()
	for {
		if _, err := l.Next(100); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
	}
}

func want(key, content string) func(*testing.T, vfs.Store) {
	return func(t *testing.T, st vfs.Store) {
		t.Helper()
		got, err := storetest.Get(t, st, key)
		if err != nil || string(got) != content {
			t.Errorf("%s: %q, %v; want %q", key, got, err, content)
		}
	}
}

func gone(key string) func(*testing.T, vfs.Store) {
	return func(t *testing.T, st vfs.Store) {
		t.Helper()
		if _, err := st.Stat(context.Background(), key); !errors.Is(err, vfs.ErrNotExist) {
			t.Errorf("%s still exists (%v)", key, err)
		}
	}
}

func both(fs ...func(*testing.T, vfs.Store)) func(*testing.T, vfs.Store) {
	return func(t *testing.T, st vfs.Store) {
		t.Helper()
		for _, f := range fs {
			f(t, st)
		}
	}
}

func authzCases() []authzCase {
	op := func(ops ...vfs.Op) []vfs.Op { return ops }
	nf := vfs.ErrNotExist
	h := authzHome
	return []authzCase{
		{"list root", op(vfs.OpList), nil, func(c context.Context, fs *vfs.FS) error { return list(c, fs, "/") }, nil},
		{"list dir", op(vfs.OpList), nil, func(c context.Context, fs *vfs.FS) error { return list(c, fs, "d") }, nil},
		{"list outside home", op(vfs.OpList), nf, func(c context.Context, fs *vfs.FS) error { return list(c, fs, "../../other") }, nil},
		{"stat file", op(vfs.OpStat), nil, func(c context.Context, fs *vfs.FS) error { _, err := fs.Stat(c, "f.txt"); return err }, nil},
		{"stat dir", op(vfs.OpStat), nil, func(c context.Context, fs *vfs.FS) error { _, err := fs.Stat(c, "/d"); return err }, nil},
		{"stat missing", op(vfs.OpStat), nf, func(c context.Context, fs *vfs.FS) error { _, err := fs.Stat(c, "nope"); return err }, nil},
		{"stat outside home", op(vfs.OpStat), nf, func(c context.Context, fs *vfs.FS) error {
			_, err := fs.Stat(c, "../other/secret.txt")
			return err
		}, nil},
		{"download file", op(vfs.OpDownload), nil, func(c context.Context, fs *vfs.FS) error { return download(c, fs, "f.txt") }, nil},
		{"download in dir", op(vfs.OpDownload), nil, func(c context.Context, fs *vfs.FS) error { return download(c, fs, "/d/g.txt") }, nil},
		{"download missing", op(vfs.OpDownload), nf, func(c context.Context, fs *vfs.FS) error { return download(c, fs, "nope") }, nil},
		{"download outside home", op(vfs.OpDownload), nf, func(c context.Context, fs *vfs.FS) error {
			return download(c, fs, "../../other/secret.txt")
		}, nil},
		{"upload new", op(vfs.OpUpload), nil, func(c context.Context, fs *vfs.FS) error { return upload(c, fs, "new.txt", "new") },
			want(h+"new.txt", "new")},
		{"upload in dir", op(vfs.OpUpload), nil, func(c context.Context, fs *vfs.FS) error { return upload(c, fs, "d/new.txt", "new") },
			want(h+"d/new.txt", "new")},
		{"upload outside home", op(vfs.OpUpload), nil, func(c context.Context, fs *vfs.FS) error {
			return upload(c, fs, "../../other/secret.txt", "mine")
		}, both(want(h+"other/secret.txt", "mine"), want("home/other/secret.txt", "someone else's"))},
		{"overwrite", op(vfs.OpUpload, vfs.OpOverwrite), nil, func(c context.Context, fs *vfs.FS) error {
			return upload(c, fs, "f.txt", "replaced")
		}, want(h+"f.txt", "replaced")},
		{"delete", op(vfs.OpDelete), nil, func(c context.Context, fs *vfs.FS) error { return fs.Remove(c, "f.txt") }, gone(h + "f.txt")},
		{"delete missing", op(vfs.OpDelete), nf, func(c context.Context, fs *vfs.FS) error { return fs.Remove(c, "nope") }, nil},
		{"delete outside home", op(vfs.OpDelete), nf, func(c context.Context, fs *vfs.FS) error {
			return fs.Remove(c, "/../other/secret.txt")
		}, nil},
		{"rename file", op(vfs.OpRename), nil, func(c context.Context, fs *vfs.FS) error { return fs.Rename(c, "f.txt", "r.txt", false) },
			both(gone(h+"f.txt"), want(h+"r.txt", "file content"))},
		{"rename over a file", op(vfs.OpRename, vfs.OpOverwrite), nil, func(c context.Context, fs *vfs.FS) error {
			return fs.Rename(c, "f.txt", "d/g.txt", true)
		}, both(gone(h+"f.txt"), want(h+"d/g.txt", "file content"))},
		{"rename dir", op(vfs.OpRename), nil, func(c context.Context, fs *vfs.FS) error { return fs.Rename(c, "d", "d2", false) },
			both(gone(h+"d/g.txt"), want(h+"d2/g.txt", "g content"))},
		{"rename out of home", op(vfs.OpRename), nil, func(c context.Context, fs *vfs.FS) error {
			return fs.Rename(c, "f.txt", "../../other/x.txt", false)
		}, both(want(h+"other/x.txt", "file content"), gone("home/other/x.txt"))},
		{"mkdir", op(vfs.OpMkdir), nil, func(c context.Context, fs *vfs.FS) error { return fs.Mkdir(c, "nd") }, want(h+"nd/", "")},
		{"mkdir outside home", op(vfs.OpMkdir), nil, func(c context.Context, fs *vfs.FS) error { return fs.Mkdir(c, "../../other/nd") },
			both(want(h+"other/nd/", ""), gone("home/other/nd/"))},
		{"rmdir", op(vfs.OpRmdir), nil, func(c context.Context, fs *vfs.FS) error { return fs.Rmdir(c, "e") }, gone(h + "e/")},
		{"rmdir missing", op(vfs.OpRmdir), nf, func(c context.Context, fs *vfs.FS) error { return fs.Rmdir(c, "nope") }, nil},
		{"setstat", op(vfs.OpSetstat), nil, func(c context.Context, fs *vfs.FS) error { return fs.Setstat(c, "f.txt", time.Time{}) }, nil},
		{"setstat mtime", op(vfs.OpSetstat), nil, func(c context.Context, fs *vfs.FS) error {
			return fs.Setstat(c, "f.txt", authzTime)
		}, nil}, // where the time goes is the store's business (see the times tests)
		{"truncate to its size", op(vfs.OpSetstat), nil, func(c context.Context, fs *vfs.FS) error {
			return fs.Truncate(c, "f.txt", int64(len("file content")))
		}, nil},
	}
}

// authzRole is a session's permissions as the gateway would build them.
type authzRole struct {
	name           string
	perms          vfs.PermSet
	downloadDenied string
}

// authzRoles are the roles of the shipped example config (HR both inside
// and outside its download_from), every "all but one" set, and nothing.
func authzRoles(t *testing.T) []authzRole {
	cfg, err := config.Load("../configs/sftpgw.example.hcl")
	if err != nil {
		t.Fatal(err)
	}
	var roles []authzRole
	for _, name := range slices.Sorted(maps.Keys(cfg.Roles)) {
		r := cfg.Roles[name]
		roles = append(roles, authzRole{name: name, perms: r.Perms})
		if r.Perms.Has(vfs.OpDownload) && len(r.DownloadFrom) > 0 {
			roles = append(roles, authzRole{name: name + "-outside-download_from", perms: r.Perms.Without(vfs.OpDownload),
				downloadDenied: "client 192.0.2.1 is outside download_from of role " + name})
		}
	}
	if len(roles) < 4 {
		t.Fatalf("example config has %d roles", len(roles))
	}
	for _, op := range []vfs.Op{vfs.OpList, vfs.OpStat, vfs.OpDownload, vfs.OpUpload, vfs.OpOverwrite,
		vfs.OpDelete, vfs.OpRename, vfs.OpMkdir, vfs.OpRmdir, vfs.OpSetstat} {
		roles = append(roles, authzRole{name: "all-but-" + op.String(), perms: vfs.PermAll.Without(op)})
	}
	return append(roles, authzRole{name: "nothing"})
}

// memTempDir is a temporary directory in memory (/dev/shm) where there is
// one, else t.TempDir(): the local store syncs every commit, and on a busy
// disk hundreds of syncs take many seconds. Results do not depend on it.
func memTempDir(t *testing.T) string {
	t.Helper()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "sftpgw-vfs-test-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	return t.TempDir()
}

// snapshot is every key and content of the store.
func snapshot(t *testing.T, st vfs.Store) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, e := range storetest.ListAll(t, st, vfs.ListOptions{Recursive: true}) {
		b, err := storetest.Get(t, st, e.Key)
		if err != nil {
			t.Fatal(err)
		}
		m[e.Key] = string(b)
	}
	return m
}

// TestAuthorizeMatrix runs every operation on every kind of path as every
// role on the local store: a role lacking a deciding permission is refused
// with ErrPermission, changes nothing and leaves one denied audit event
// naming the reason; a role holding them all gets the operation done.
// vfs.FS.authorize is the only place these decisions are made, so this
// test alone catches a broken policy.
func TestAuthorizeMatrix(t *testing.T) {
	// Seed once and copy the directory for each case: localstore syncs
	// every commit, which would dominate the test's time.
	seed := memTempDir(t)
	seedStore, err := localstore.New(seed)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range slices.Sorted(maps.Keys(authzSeed)) {
		storetest.MustPut(t, seedStore, k, []byte(authzSeed[k]))
	}
	seedStore.Close()
	for _, role := range authzRoles(t) {
		for _, tc := range authzCases() {
			t.Run(role.name+"/"+tc.name, func(t *testing.T) {
				dir := memTempDir(t)
				if err := os.CopyFS(dir, os.DirFS(seed)); err != nil {
					t.Fatal(err)
				}
				st, err := localstore.New(dir)
				if err != nil {
					t.Fatal(err)
				}
				defer st.Close()
				rec := &dadRecorder{}
				fs := vfs.New(vfs.Options{Store: st, StoreName: "files", Audit: rec, Session: vfs.Session{
					ID: "s", User: "u", Role: role.name, Home: authzHome, Perms: role.perms,
					DownloadDenied: role.downloadDenied}})
				before := snapshot(t, st)
				err = tc.run(context.Background(), fs)

				var missing vfs.Op
				for _, op := range tc.decides {
					if !role.perms.Has(op) {
						missing = op
						break
					}
				}
				var denied []string
				for _, e := range rec.ev {
					if e.Result == "denied" {
						denied = append(denied, e.Detail)
					}
				}
				if missing == 0 {
					if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
						t.Fatalf("allowed: err %v, want %v", err, tc.wantErr)
					}
					if len(denied) > 0 {
						t.Errorf("allowed, but denied events: %q", denied)
					}
					if tc.check != nil {
						tc.check(t, st)
					}
					return
				}
				if !errors.Is(err, vfs.ErrPermission) {
					t.Fatalf("role without %s: err %v, want permission denied", missing, err)
				}
				if after := snapshot(t, st); !maps.Equal(before, after) {
					t.Errorf("a denied %s changed the store:\nbefore %q\nafter  %q", tc.name, before, after)
				}
				reason := fmt.Sprintf("role %s may not %s", role.name, missing)
				if missing == vfs.OpDownload && role.downloadDenied != "" {
					reason = role.downloadDenied
				}
				if len(denied) != 1 || denied[0] != reason {
					t.Errorf("denied events %q, want exactly one with %q", denied, reason)
				}
			})
		}
	}
}

// Reading through an upload handle is refused and audited, and fails the
// upload: nothing is stored, even for a role that may download.
func TestReadThroughUploadHandle(t *testing.T) {
	fs, st, rec := dadFS(t)
	ctx := context.Background()
	w, err := fs.OpenWrite(ctx, "/up.bin", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt([]byte("first part"), 0); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if n, err := w.ReadAt(buf, 0); !errors.Is(err, vfs.ErrPermission) || n != 0 {
		t.Errorf("ReadAt on an upload: %d, %v; want permission denied", n, err)
	}
	if _, err := w.WriteAt([]byte("more"), 10); err == nil {
		t.Error("a write after the refused read was accepted")
	}
	if err := w.Close(); !errors.Is(err, vfs.ErrPermission) {
		t.Errorf("close: %v, want permission denied", err)
	}
	if exists(st, "up.bin") {
		t.Error("the upload was stored after a read through its handle")
	}
	var read, up bool
	for _, e := range rec.ev {
		read = read || (e.Op == "read_from_upload_handle" && e.Result == "denied")
		up = up || (e.Op == "upload" && e.Result == "denied" && strings.Contains(e.Detail, "read through the upload handle"))
	}
	if !read || !up {
		t.Errorf("audit: refused read %v, failed upload %v: %+v", read, up, rec.ev)
	}
}
