package vfs_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/sftpgw/sftpgw/vfs"
	"github.com/sftpgw/sftpgw/vfs/storetest"
)

// "é" typed on macOS (NFD: e + U+0301) and on Windows (NFC: U+00E9) names
// one file, stored under the NFC key; names with bidi controls or C1
// controls are refused; keys no client can name (non-NFC, stored by some
// other tool) are not listed.
func TestNamesNFCAndConfusables(t *testing.T) {
	r := newRig(t)
	fs := r.session("", vfs.Limits{})
	ctx := context.Background()
	const nfd, nfc = "/Re\u0301sume\u0301.pdf", "/R\u00e9sum\u00e9.pdf"
	if err := put(fs, nfd, []byte("from a Mac")); err != nil {
		t.Fatal(err)
	}
	if !r.exists(nfc[1:]) || r.exists(nfd[1:]) {
		t.Errorf("stored under NFC %v, under NFD %v", r.exists(nfc[1:]), r.exists(nfd[1:]))
	}
	if fi, err := fs.Stat(ctx, nfc); err != nil || fi.Size != 10 {
		t.Errorf("stat of the NFC spelling: %+v %v", fi, err)
	}
	if err := put(fs, nfc, []byte("from Windows!")); err != nil {
		t.Fatal(err)
	}
	storetest.MustPut(t, r.store, "Cafe\u0301.txt", []byte("put by another tool"))
	l, err := fs.List(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	items, err := l.Next(100)
	if err != nil && err != io.EOF {
		t.Fatal(err)
	}
	l.Close()
	if len(items) != 1 || items[0].Name != nfc[1:] || items[0].Size != 13 {
		t.Errorf("listing: %+v, want one NFC entry of 13 bytes", items)
	}
	for _, bad := range []string{"/cv\u202efdp.exe.pdf", "/a\u2067b", "/a\u0085b"} {
		var ipe *vfs.InvalidPathError
		if _, err := fs.OpenWrite(ctx, bad, false); !errors.As(err, &ipe) {
			t.Errorf("upload of %+q: %v, want an invalid name", bad, err)
		}
		if err := fs.Rename(ctx, nfc, bad, false); !errors.As(err, &ipe) {
			t.Errorf("rename to %+q: %v, want an invalid name", bad, err)
		}
	}
}

// The delete-after-download claims live at the bucket root: a session
// whose home is the root neither sees nor names them.
func TestClaimPrefixIsReserved(t *testing.T) {
	r := newRig(t)
	fs := r.session("", vfs.Limits{})
	ctx := context.Background()
	storetest.MustPut(t, r.store, vfs.ClaimPrefix+"c1", nil)
	storetest.MustPut(t, r.store, "visible.txt", []byte("x"))
	l, err := fs.List(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	items, _ := l.Next(100)
	l.Close()
	if len(items) != 1 || items[0].Name != "visible.txt" {
		t.Errorf("root listing %+v, want only visible.txt", items)
	}
	claimDir := "/" + strings.TrimSuffix(vfs.ClaimPrefix, "/")
	var ipe *vfs.InvalidPathError
	for _, p := range []string{claimDir, claimDir + "/c1", claimDir + "/new"} {
		if _, err := fs.Stat(ctx, p); !errors.As(err, &ipe) {
			t.Errorf("stat %s: %v, want a reserved name", p, err)
		}
		if _, err := fs.OpenWrite(ctx, p, false); !errors.As(err, &ipe) {
			t.Errorf("upload %s: %v, want a reserved name", p, err)
		}
		if err := fs.Remove(ctx, p); !errors.As(err, &ipe) {
			t.Errorf("remove %s: %v, want a reserved name", p, err)
		}
	}
	if !r.exists(vfs.ClaimPrefix + "c1") {
		t.Error("a claim was removed through the session")
	}
	// Below a home the name is an ordinary one.
	sub := r.session("home/", vfs.Limits{})
	if err := put(sub, claimDir+"/x", []byte("y")); err != nil {
		t.Errorf("upload below a home: %v", err)
	}
}
