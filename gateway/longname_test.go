package gateway

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"testing"
	"time"

	"github.com/pkg/sftp"

	"github.com/sftpgw/sftpgw/vfs"
)

// A fixed clock and zones, so these tests read the same on any day and in
// any TZ. Chatham is UTC+13:45 in December: its date differs from UTC's.
var (
	lsNow     = time.Date(2026, 12, 1, 22, 40, 0, 0, time.UTC)
	lsChatham = time.FixedZone("CHADT", 13*3600+45*60)
)

func TestLongNameFormat(t *testing.T) {
	file := fileAttrs{flags: attrSize | attrPerms | attrACMTime, perms: 0o100640}
	at := func(a fileAttrs, size uint64, mtime time.Time) fileAttrs {
		a.size, a.mtime = size, uint32(mtime.Unix())
		return a
	}
	for _, c := range []struct {
		name string
		a    fileAttrs
		loc  *time.Location
		want string
	}{
		{"today", at(file, 1000, lsNow.Add(-12*time.Hour-35*time.Minute)), time.UTC,
			"-rw-r-----    1 0        0            1000 Dec  1 10:05 a.txt"},
		{"day 1-9 elsewhere", at(file, 0, time.Date(2026, 10, 9, 23, 59, 0, 0, time.UTC)), time.UTC,
			"-rw-r-----    1 0        0               0 Oct  9 23:59 a.txt"},
		{"other zone", at(file, 0, time.Date(2026, 10, 9, 23, 59, 0, 0, time.UTC)), lsChatham,
			"-rw-r-----    1 0        0               0 Oct 10 13:44 a.txt"},
		{"over six months", at(file, 5, time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)), time.UTC,
			"-rw-r-----    1 0        0               5 Mar  4  2025 a.txt"},
		{"exactly half a year", at(file, 5, lsNow.Add(-15768000*time.Second)), time.UTC,
			"-rw-r-----    1 0        0               5 Jun  2  2026 a.txt"},
		{"just within half a year", at(file, 5, lsNow.Add(-15767999*time.Second)), time.UTC,
			"-rw-r-----    1 0        0               5 Jun  2 10:40 a.txt"},
		{"now", at(file, 5, lsNow), time.UTC,
			"-rw-r-----    1 0        0               5 Dec  1 22:40 a.txt"},
		{"future", at(file, 5, lsNow.Add(time.Second)), time.UTC,
			"-rw-r-----    1 0        0               5 Dec  1  2026 a.txt"},
		{"big", at(file, 5<<40+3, lsNow), time.UTC,
			"-rw-r-----    1 0        0        5497558138883 Dec  1 22:40 a.txt"},
		{"1970", at(fileAttrs{flags: attrPerms | attrACMTime, perms: 0o40750}, 0, time.Unix(0, 0)), time.UTC,
			"drwxr-x---    1 0        0               0 Jan  1  1970 a.txt"},
		{"ids and special bits", at(fileAttrs{flags: attrPerms | attrACMTime | attrUIDGID, perms: 0o107755,
			uid: 1234567890, gid: 7}, 0, lsNow), time.UTC,
			"-rwsr-sr-t    1 1234567890 7               0 Dec  1 22:40 a.txt"},
		{"unset execute", at(fileAttrs{flags: attrPerms | attrACMTime, perms: 0o127644}, 0, lsNow), time.UTC,
			"lrwSr-Sr-T    1 0        0               0 Dec  1 22:40 a.txt"},
	} {
		if got := lsLong("a.txt", c.a, lsNow, c.loc); got != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
		}
	}
}

// namePacket builds an SSH_FXP_NAME packet of (name, longname, attrs).
func namePacket(id uint32, entries ...[3][]byte) []byte {
	b := []byte{0, 0, 0, 0, fxpName}
	b = binary.BigEndian.AppendUint32(b, id)
	b = binary.BigEndian.AppendUint32(b, uint32(len(entries)))
	for _, e := range entries {
		b = binary.BigEndian.AppendUint32(b, uint32(len(e[0])))
		b = append(b, e[0]...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(e[1])))
		b = append(b, e[1]...)
		b = append(b, e[2]...)
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

func attrBytes(flags uint32, vals ...uint32) []byte {
	b := binary.BigEndian.AppendUint32(nil, flags)
	for _, v := range vals {
		b = binary.BigEndian.AppendUint32(b, v)
	}
	return b
}

type sink struct{ bytes.Buffer }

func (*sink) Read([]byte) (int, error) { return 0, io.EOF }
func (*sink) Close() error             { return nil }

// The rewrite sees whole packets however the writes are cut, leaves other
// packets and attribute-less entries (realpath) byte for byte, and keeps
// extended attributes.
func TestLongNameWriterSplits(t *testing.T) {
	mt := uint32(lsNow.Add(-time.Hour).Unix())
	ext := append(binary.BigEndian.AppendUint32(nil, 1), 0, 0, 0, 1, 'k', 0, 0, 0, 2, 'v', 'v')
	in := namePacket(7,
		[3][]byte{[]byte("a.txt"), []byte("-rw-r----- 1 0 0 1000 Dec 1 21:40 a.txt"),
			append(attrBytes(attrSize|attrPerms|attrACMTime|attrExt, 0, 1000, 0o100640, mt, mt), ext...)},
		[3][]byte{[]byte("sub"), []byte("whatever"), attrBytes(attrPerms|attrACMTime, 0o40750, mt, mt)},
	)
	want := namePacket(7,
		[3][]byte{[]byte("a.txt"), []byte("-rw-r-----    1 0        0            1000 Dec  1 21:40 a.txt"),
			append(attrBytes(attrSize|attrPerms|attrACMTime|attrExt, 0, 1000, 0o100640, mt, mt), ext...)},
		[3][]byte{[]byte("sub"), []byte("drwxr-x---    1 0        0               0 Dec  1 21:40 sub"),
			attrBytes(attrPerms|attrACMTime, 0o40750, mt, mt)},
	)
	realpath := namePacket(8, [3][]byte{[]byte("/x"), []byte("/x"), attrBytes(0)})
	// A DATA packet whose payload looks like NAME headers.
	data := append([]byte{0, 0, 0, 13, 103, 0, 0, 0, 9, 0, 0, 0, 4}, fxpName, fxpName, 0, 0)
	stream := append(append(append(append([]byte{}, data...), in...), realpath...), data...)
	wantOut := append(append(append(append([]byte{}, data...), want...), realpath...), data...)

	for _, cut := range []int{1, 2, 3, 5, 9, 13, 64, len(stream)} {
		s := &sink{}
		w := newLongNames(s, func() time.Time { return lsNow }, time.UTC)
		for off := 0; off < len(stream); off += cut {
			chunk := stream[off:min(off+cut, len(stream))]
			if n, err := w.Write(chunk); n != len(chunk) || err != nil {
				t.Fatalf("cut %d: Write = %d, %v", cut, n, err)
			}
		}
		if !bytes.Equal(s.Bytes(), wantOut) {
			t.Errorf("cut %d:\n got %q\nwant %q", cut, s.Bytes(), wantOut)
		}
	}
}

// Malformed NAME packets pass unchanged rather than being mangled.
func TestLongNameMalformedUntouched(t *testing.T) {
	mt := uint32(lsNow.Unix())
	good := namePacket(1, [3][]byte{[]byte("a"), []byte("x"), attrBytes(attrPerms|attrACMTime, 0o100640, mt, mt)})
	for _, pkt := range [][]byte{
		namePacket(1, [3][]byte{[]byte("a"), []byte("x"), attrBytes(attrPerms|attrACMTime, 0o100640, mt)}),
		append(good[:len(good)-1:len(good)-1], 0, 0), // trailing garbage
		{0, 0, 0, 5, fxpName, 0, 0, 0, 1},
	} {
		binary.BigEndian.PutUint32(pkt, uint32(len(pkt)-4))
		if got := rewriteNamePacket(pkt, lsNow, time.UTC); !bytes.Equal(got, pkt) {
			t.Errorf("malformed packet changed:\n%q\n%q", pkt, got)
		}
	}
}

// listOnly answers directory listings with fixed entries.
type listOnly struct{ entries []os.FileInfo }

func (l listOnly) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	return statList(l.entries), nil
}

// Through pkg/sftp's real request server (which writes a NAME packet's
// header and payload separately), the client receives OpenSSH long names.
func TestLongNameThroughRequestServer(t *testing.T) {
	srvEnd, cliEnd := pipePair()
	mt := lsNow.Add(-2 * time.Hour)
	h := sftp.InMemHandler()
	h.FileList = listOnly{[]os.FileInfo{
		fileInfo{vfs.FileInfo{Name: "a.txt", Size: 1000, ModTime: mt}},
		fileInfo{vfs.FileInfo{Name: "old", Size: 123456789, ModTime: time.Date(2024, 2, 3, 4, 5, 6, 0, time.UTC)}},
		fileInfo{vfs.FileInfo{Name: "sub", IsDir: true, ModTime: mt}},
	}}
	srv := sftp.NewRequestServer(newLongNames(srvEnd, func() time.Time { return lsNow }, lsChatham), h)
	go func() { _ = srv.Serve() }()
	defer srv.Close()

	send := func(typ byte, payload []byte) {
		b := binary.BigEndian.AppendUint32(nil, uint32(1+len(payload)))
		b = append(append(b, typ), payload...)
		if _, err := cliEnd.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	recv := func() (byte, []byte) {
		var hdr [5]byte
		if _, err := io.ReadFull(cliEnd, hdr[:]); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, binary.BigEndian.Uint32(hdr[:4])-1)
		if _, err := io.ReadFull(cliEnd, b); err != nil {
			t.Fatal(err)
		}
		return hdr[4], b
	}
	str := func(s string) []byte { return append(binary.BigEndian.AppendUint32(nil, uint32(len(s))), s...) }
	send(1, binary.BigEndian.AppendUint32(nil, 3)) // INIT
	recv()
	send(11, append(binary.BigEndian.AppendUint32(nil, 1), str("/")...)) // OPENDIR
	typ, b := recv()
	if typ != 102 {
		t.Fatalf("opendir: type %d", typ)
	}
	handle, _, _ := sshString(b[4:])
	send(12, append(binary.BigEndian.AppendUint32(nil, 2), str(string(handle))...)) // READDIR
	typ, b = recv()
	if typ != fxpName {
		t.Fatalf("readdir: type %d", typ)
	}
	var longs []string
	rest := b[8:]
	for range binary.BigEndian.Uint32(b[4:8]) {
		var long []byte
		var ok bool
		_, rest, _ = sshString(rest)
		long, rest, _ = sshString(rest)
		if _, rest, _, ok = parseAttrs(rest); !ok {
			t.Fatal("bad attrs")
		}
		longs = append(longs, string(long))
	}
	want := []string{
		"-rw-r-----    1 0        0            1000 Dec  2 10:25 a.txt",
		"-rw-r-----    1 0        0        123456789 Feb  3  2024 old",
		"drwxr-x---    1 0        0               0 Dec  2 10:25 sub",
	}
	if len(longs) != len(want) {
		t.Fatalf("got %q", longs)
	}
	for i := range want {
		if longs[i] != want[i] {
			t.Errorf("entry %d:\n got %q\nwant %q", i, longs[i], want[i])
		}
	}
	send(16, append(binary.BigEndian.AppendUint32(nil, 3), str("/a/../b")...)) // REALPATH
	typ, b = recv()
	if typ != fxpName {
		t.Fatalf("realpath: type %d", typ)
	}
	_, rest, _ = sshString(b[8:])
	if long, _, _ := sshString(rest); string(long) != "/b" {
		t.Errorf("realpath long name %q, want it untouched", long)
	}
}

type pipeEnd struct {
	io.Reader
	io.WriteCloser
}

func pipePair() (a, b io.ReadWriteCloser) {
	r1, w1 := io.Pipe()
	r2, w2 := io.Pipe()
	return pipeEnd{r1, w2}, pipeEnd{r2, w1}
}
