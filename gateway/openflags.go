package gateway

import (
	"encoding/binary"
	"io"
)

// openFlagsFilter makes every upload open ask for read access too, so
// pkg/sftp hands the handle to OpenFile ("Open") rather than Filewrite
// ("Put"). On a "Put" handle pkg/sftp turns an SSH_FXP_READ into a WriteAt
// of a recycled buffer: the client got OK and the object stale packet
// bytes. On an "Open" handle a READ reaches ReadAt, which vfs refuses
// (permission denied, audited) and which fails the upload. Our handlers
// ignore the read flag of an upload open; every other byte passes through.
type openFlagsFilter struct {
	io.ReadWriteCloser
	in inbound
}

const (
	fxpOpen = 3
	// SSH_FXF_* open flags (draft-ietf-secsh-filexfer-02).
	pflagRead   = 0x01
	pflagUpload = 0x02 | 0x04 | 0x08 | 0x10 // WRITE, APPEND, CREAT, TRUNC
	// maxOpenPacket bounds an OPEN read whole: pkg/sftp's own packet limit
	// (it ends the session on a longer one), so no OPEN it accepts (long
	// attributes included) escapes the rewrite.
	maxOpenPacket = 256 * 1024
)

func newOpenFlagsFilter(rwc io.ReadWriteCloser) *openFlagsFilter {
	return &openFlagsFilter{ReadWriteCloser: rwc, in: inbound{r: rwc}}
}

func (f *openFlagsFilter) Read(p []byte) (int, error) {
	for {
		if n, ok, err := f.in.pending(p); ok {
			return n, err
		}
		hdr, length, err := f.in.header()
		if err != nil {
			return 0, err
		}
		if hdr[4] != fxpOpen || length > maxOpenPacket || length < 1 {
			f.in.pass(hdr, length) // not ours (or malformed: pkg/sftp answers that)
			continue
		}
		pkt, err := f.in.whole(hdr, length)
		if err != nil {
			return 0, err
		}
		addReadToUploadOpen(pkt[5:])
		f.in.hand(pkt)
	}
}

// addReadToUploadOpen sets the read flag of an OPEN body (uint32 id,
// string filename, uint32 pflags, attrs) that opens for writing.
func addReadToUploadOpen(b []byte) {
	if len(b) < 8 {
		return
	}
	n := uint64(binary.BigEndian.Uint32(b[4:8]))
	at := 8 + n
	if uint64(len(b)) < at+4 {
		return
	}
	fl := binary.BigEndian.Uint32(b[at : at+4])
	if fl&pflagUpload != 0 {
		binary.BigEndian.PutUint32(b[at:at+4], fl|pflagRead)
	}
}
