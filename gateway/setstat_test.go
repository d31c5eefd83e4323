package gateway

import (
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/pkg/sftp"

	"github.com/sftpgw/sftpgw/vfs"
	"github.com/sftpgw/sftpgw/vfs/localstore"
)

// setstatReq builds a setstat request as pkg/sftp hands it over: flags and
// the raw SFTP v3 attribute block.
func setstatReq(p string, flags uint32, vals ...uint64) *sftp.Request {
	r := sftp.NewRequest("Setstat", p)
	r.Flags = flags
	for i, v := range vals {
		if flags&attrSize != 0 && i == 0 {
			r.Attrs = binary.BigEndian.AppendUint64(r.Attrs, v)
			continue
		}
		r.Attrs = binary.BigEndian.AppendUint32(r.Attrs, uint32(v))
	}
	return r
}

// A setstat's time is applied (with or without an unchanged size, whatever
// the mode bits); a real size change is refused and leaves the time; a
// truncated attribute block is a bad message.
func TestSetstatHandler(t *testing.T) {
	st, err := localstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	fs := vfs.New(vfs.Options{Store: st, Session: vfs.Session{User: "u", Role: "r", Perms: vfs.PermAll}})
	ctx := context.Background()
	w, err := fs.OpenWrite(ctx, "/f", false)
	if err != nil {
		t.Fatal(err)
	}
	w.WriteAt([]byte("12345"), 0)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	h := &handlers{fs: fs, ctx: ctx, guard: &guard{log: hclog.NewNullLogger()}}
	mtime := func() int64 {
		fi, err := fs.Stat(ctx, "/f")
		if err != nil {
			t.Fatal(err)
		}
		return fi.ModTime.Unix()
	}
	const t1, t2 = 1577934245, 1609459200
	// OpenSSH put -p: permissions and times.
	if err := h.Filecmd(setstatReq("/f", attrPerms|attrACMTime, 0o100644, t1, t1)); err != nil {
		t.Fatal(err)
	}
	if got := mtime(); got != t1 {
		t.Errorf("mtime %d after perms+times; want %d", got, t1)
	}
	// Same size and a time: both fine.
	if err := h.Filecmd(setstatReq("/f", attrSize|attrACMTime, 5, t2, t2)); err != nil {
		t.Fatal(err)
	}
	if got := mtime(); got != t2 {
		t.Errorf("mtime %d after size+times; want %d", got, t2)
	}
	// A size change is refused before the time is touched.
	if err := h.Filecmd(setstatReq("/f", attrSize|attrACMTime, 3, t1, t1)); !errors.Is(err, sftp.ErrSSHFxOpUnsupported) {
		t.Errorf("truncate to 3: %v; want unsupported", err)
	}
	if got := mtime(); got != t2 {
		t.Errorf("mtime %d after a refused truncate; want %d", got, t2)
	}
	// Modes only: accepted, nothing changes.
	if err := h.Filecmd(setstatReq("/f", attrPerms, 0o100600)); err != nil || mtime() != t2 {
		t.Errorf("chmod: %v, mtime %d", err, mtime())
	}
	// Times announced, attribute block cut short.
	if err := h.Filecmd(setstatReq("/f", attrACMTime, t1)); !errors.Is(err, sftp.ErrSSHFxBadMessage) {
		t.Errorf("truncated attributes: %v; want bad message", err)
	}
	if got := time.Unix(mtime(), 0); got.Unix() != t2 {
		t.Errorf("mtime %v after a malformed request", got)
	}
}
