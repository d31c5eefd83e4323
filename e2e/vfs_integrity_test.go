package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/internal/testenv"
	"github.com/sftpgw/sftpgw/internal/testgw"
	"github.com/sftpgw/sftpgw/vfs"
)

// A READ on a write-only upload handle: pkg/sftp used to hand it to WriteAt
// with a recycled buffer, so the client got OK and the object held stale
// packet bytes. It must be refused, audited, and fail the upload.
func TestReadOnUploadHandleFailsUpload(t *testing.T) {
	g := testgw.Start(t, testgw.Options{})
	u := g.AddUser("partner", false)
	c, bucket := s3Client(t, g, "files")
	for i, fl := range []uint32{pflagWrite | pflagCreat | pflagTrunc, pflagRead | pflagWrite | pflagCreat | pflagTrunc} {
		name := fmt.Sprintf("up%d.bin", i)
		p := newRawSFTP(t, dialGo(t, g, u))
		h, code := p.open(name, fl)
		if code != fxOK {
			t.Fatalf("open (flags %#x): status %d", fl, code)
		}
		data := bytes.Repeat([]byte("D"), 4096)
		if code, err := rawStatus(p.request(fxpWrite, rawCat(rawStr(h), rawU64(0), rawStr(string(data))))); err != nil || code != fxOK {
			t.Fatalf("write: status %d %v", code, err)
		}
		if code, err := rawStatus(p.request(fxpRead, rawCat(rawStr(h), rawU64(4096), rawU32(4096)))); err != nil || code != fxPermissionDenied {
			t.Errorf("READ on an upload handle (flags %#x): status %d %v, want permission denied", fl, code, err)
		}
		if code, err := rawStatus(p.request(fxpClose, rawStr(h))); err != nil || code == fxOK {
			t.Errorf("close after the refused read (flags %#x): status %d %v, want a failure", fl, code, err)
		}
		if exists(t, c, bucket, "partner/"+u.Name+"/"+name) {
			t.Errorf("flags %#x: the upload was stored after a read through its handle", fl)
		}
	}
	if n := len(g.Events.Find(audit.Event{Op: "read_from_upload_handle", Result: "denied"})); n != 2 {
		t.Errorf("%d denied read_from_upload_handle events, want 2", n)
	}
	if n := len(g.Events.Find(audit.Event{Op: "upload", Result: "denied"})); n != 2 {
		t.Errorf("%d denied upload events, want 2", n)
	}
	cliCheckAll(t, c, bucket)
}

// Removing a file while its upload is open (rclone does this when its
// source fails mid-upload) succeeds, stat stops showing it, the later close
// fails and nothing is stored, nor left pending: as with OpenSSH, where the
// unlinked file simply vanishes.
func TestRemoveDuringUpload(t *testing.T) {
	g := testgw.Start(t, testgw.Options{})
	u := g.AddUser("partner", false)
	c, bucket := s3Client(t, g, "files")
	sc, _ := cliSFTP(t, g, u)
	data := make([]byte, 9<<20) // past one 8 MiB part: a multipart upload is under way
	rand.Read(data)
	for _, name := range []string{"small.bin", "big.bin"} {
		f, err := sc.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		n := 1000
		if name == "big.bin" {
			n = len(data)
		}
		if _, err := f.Write(data[:n]); err != nil {
			t.Fatal(err)
		}
		if err := sc.Remove(name); err != nil {
			t.Errorf("%s: remove during the upload: %v", name, err)
		}
		if _, err := sc.Stat(name); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: stat after the remove: %v, want not exist", name, err)
		}
		if err := f.Close(); err == nil {
			t.Errorf("%s: close after the remove succeeded", name)
		}
		if exists(t, c, bucket, "partner/"+u.Name+"/"+name) {
			t.Errorf("%s: the removed upload was stored", name)
		}
	}
	if n := len(testenv.PendingUploads(t, c, bucket, "")); n != 0 {
		t.Errorf("%d multipart uploads left pending", n)
	}
	n := 0
	for _, e := range g.Events.Find(audit.Event{Op: "delete", Result: "ok"}) {
		if e.Detail == "upload in progress discarded" {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d delete events discarding an upload, want 2", n)
	}
}

// A role without overwrite cannot replace a file through a second gateway
// instance either: both open the same new name (neither sees the other's
// upload), the first close creates it, the second is refused at commit by
// the store itself (If-None-Match: *), and the first file stays.
func TestNoOverwriteAcrossInstances(t *testing.T) {
	roles := testgw.StandardRoles()
	drop := *roles["applicant"]
	drop.Name = "dropbox"
	drop.Perms = drop.Perms.Without(vfs.OpOverwrite)
	roles["dropbox"] = &drop
	g1 := testgw.Start(t, testgw.Options{Roles: roles})
	g2 := testgw.Start(t, testgw.Options{Roles: roles, Stores: g1.Stores, UsersFile: g1.UsersFile()})
	u := g1.AddUser("dropbox", false)
	if err := g2.Users.Reload(); err != nil {
		t.Fatal(err)
	}
	c, bucket := s3Client(t, g1, "files")
	key := "user/" + u.Name + "/cv.pdf"
	for _, size := range []int{1000, 9 << 20} { // one PutObject; a multipart upload
		a, _ := cliSFTP(t, g1, u)
		b, _ := cliSFTP(t, g2, u)
		first, second := make([]byte, size), make([]byte, size)
		rand.Read(first)
		rand.Read(second)
		fa, err := a.Create("cv.pdf")
		if err != nil {
			t.Fatal(err)
		}
		fb, err := b.Create("cv.pdf")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fa.Write(first); err != nil {
			t.Fatal(err)
		}
		if _, err := fb.Write(second); err != nil {
			t.Fatal(err)
		}
		if err := fa.Close(); err != nil {
			t.Fatalf("size %d: first close: %v", size, err)
		}
		if err := fb.Close(); !isFxPermission(err) {
			t.Errorf("size %d: second instance's close: %v, want permission denied", size, err)
		}
		sum := sha256.Sum256(first)
		if got := objectSHA(t, c, bucket, key); got != hex.EncodeToString(sum[:]) {
			t.Errorf("size %d: the first file was replaced by the second instance's upload", size)
		}
		if err := a.Remove("cv.pdf"); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(g2.Events.Find(audit.Event{Op: "overwrite", Result: "denied"})); n != 2 {
		t.Errorf("%d denied overwrite events on the second instance, want 2", n)
	}
	cliCheckAll(t, c, bucket)
}

// OpenSSH's sftp: a name typed on macOS (NFD) and on Windows (NFC) is one
// file, stored under the NFC key; a name with a bidi override is refused
// with a reason, and nothing is stored for it.
func TestNamesNFCWithOpenSSH(t *testing.T) {
	needTool(t, "sftp")
	g := testgw.Start(t, testgw.Options{})
	u := g.AddUser("partner", false)
	c, bucket := s3Client(t, g, "files")
	local := filepath.Join(t.TempDir(), "x.pdf")
	if err := os.WriteFile(local, []byte("%PDF-1.7\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const nfd, nfc, bidi = "Re\u0301sume\u0301.pdf", "R\u00e9sum\u00e9.pdf", "cv\u202efdp.exe.pdf"
	out, err := g.SFTP(u, fmt.Sprintf("put %s %s\nput %s %s\nls -1\n-put %s %s\n", local, nfd, local, nfc, local, bidi))
	if err != nil {
		t.Fatalf("sftp: %v\n%s", err, out)
	}
	mustContain(t, out, "Failure")
	refused := false
	for _, e := range g.Events.Find(audit.Event{Op: "upload", Result: "error", ErrClass: "invalid_path"}) {
		refused = refused || strings.Contains(e.Detail, "bidirectional text control character")
	}
	if !refused {
		t.Error("no audit event gives the reason for the refused name")
	}
	prefix := "partner/" + u.Name + "/"
	keys := allKeys(t, c, bucket)
	if !slices.Contains(keys, prefix+nfc) || slices.Contains(keys, prefix+nfd) || len(keys) != 1 {
		t.Errorf("keys %q, want only the NFC name", keys)
	}
	n := 0
	for _, line := range strings.Split(out, "\n") {
		if line == nfc || line == nfd {
			n++
		}
	}
	if n != 1 {
		t.Errorf("ls shows the file %d times:\n%s", n, out)
	}
}
