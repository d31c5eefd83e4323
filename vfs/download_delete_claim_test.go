package vfs_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/sftpgw/sftpgw/vfs"
	"github.com/sftpgw/sftpgw/vfs/storetest"
)

// claimFailStore fails the commit of every upload (in these tests only the
// delete-after-download claim is one) and counts aborts.
type claimFailStore struct {
	vfs.Store
	aborts atomic.Int32
}

func (s *claimFailStore) Create(ctx context.Context, key string, o vfs.CreateOptions) (vfs.Upload, error) {
	up, err := s.Store.Create(ctx, key, o)
	if err != nil {
		return nil, err
	}
	return &failingCommit{Upload: up, s: s}, nil
}

type failingCommit struct {
	vfs.Upload
	s *claimFailStore
}

func (u *failingCommit) Commit(context.Context) error {
	return errors.New("injected: storage unavailable")
}

func (u *failingCommit) Abort(ctx context.Context) error {
	u.s.aborts.Add(1)
	return u.Upload.Abort(ctx)
}

// Without a committed claim the file is not deleted (another instance
// could be deleting it): the skip is audited and the claim upload aborted.
func TestDeleteAfterDownloadNeedsCommittedClaim(t *testing.T) {
	_, st, rec := dadFS(t)
	storetest.MustPut(t, st, "f", storetest.Data(5000))
	fst := &claimFailStore{Store: st}
	hr := vfs.New(vfs.Options{Store: fst, StoreName: "files", Audit: rec,
		Session: vfs.Session{ID: "s", User: "hr1", Role: "hr", Perms: vfs.PermAll, DeleteAfterDownload: true}})
	r, err := hr.OpenRead(context.Background(), "/f")
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, r)
	r.Close()
	if !exists(st, "f") {
		t.Fatal("deleted without a committed claim")
	}
	if n := rec.deletes("error", "delete after download skipped"); n != 1 {
		t.Errorf("%d skip events, want 1: %+v", n, rec.ev)
	}
	if n := fst.aborts.Load(); n != 1 {
		t.Errorf("claim upload aborted %d times, want 1", n)
	}
}

// A delete after download gives the uploader back the file and its bytes.
func TestDeleteAfterDownloadFreesQuota(t *testing.T) {
	r := newRig(t)
	lim := vfs.Limits{QuotaFiles: 1, QuotaBytes: 5000}
	up := r.session("user/a/", lim)
	if err := put(up, "one", make([]byte, 4000)); err != nil {
		t.Fatal(err)
	}
	if err := put(up, "two", make([]byte, 10)); !isLimit(err, "limit of 1 file") {
		t.Fatalf("setup: second file: %v", err)
	}
	hr := vfs.New(vfs.Options{Store: r.store, StoreName: "files", Uploads: r.uploads, Audit: r.ev,
		Session: vfs.Session{ID: "h", User: "hr1", Role: "hr", Perms: vfs.PermAll, DeleteAfterDownload: true}})
	rd, err := hr.OpenRead(context.Background(), "/user/a/one")
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, rd)
	rd.Close()
	if r.exists("user/a/one") {
		t.Fatal("not deleted after download")
	}
	if err := put(up, "two", make([]byte, 4000)); err != nil {
		t.Fatalf("quota not given back: %v", err)
	}
}
