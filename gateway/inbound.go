package gateway

import (
	"encoding/binary"
	"io"
)

// inbound is the client-to-server half of a packet filter below pkg/sftp:
// it hands packets on either whole (read by the filter to inspect or
// rewrite them) or passed through unread after their header, so a filter
// buffers only the packets it cares about.
type inbound struct {
	r      io.Reader
	remain int    // bytes left of the packet being passed through
	buf    []byte // a packet read whole, not yet handed over
}

// pending copies what is already due to pkg/sftp into p; ok is false when
// nothing is, and the filter must read the next packet's header.
func (in *inbound) pending(p []byte) (n int, ok bool, err error) {
	if len(in.buf) > 0 {
		n = copy(p, in.buf)
		in.buf = in.buf[n:]
		return n, true, nil
	}
	if in.remain > 0 {
		if len(p) > in.remain {
			p = p[:in.remain]
		}
		n, err = in.r.Read(p)
		in.remain -= n
		return n, true, err
	}
	return 0, false, nil
}

// header reads the next packet's length field and type byte.
func (in *inbound) header() (hdr [5]byte, length int, err error) {
	if _, err = io.ReadFull(in.r, hdr[:]); err != nil {
		return hdr, 0, err
	}
	return hdr, int(binary.BigEndian.Uint32(hdr[:4])), nil
}

// pass hands the packet on unread (a malformed length is pkg/sftp's to answer).
func (in *inbound) pass(hdr [5]byte, length int) {
	in.buf = append(in.buf[:0], hdr[:]...)
	in.remain = length - 1
}

// whole reads the rest of a packet of length >= 1 and returns it with its header.
func (in *inbound) whole(hdr [5]byte, length int) ([]byte, error) {
	pkt := make([]byte, 4+length)
	copy(pkt, hdr[:])
	if _, err := io.ReadFull(in.r, pkt[5:]); err != nil {
		return nil, err
	}
	return pkt, nil
}

// hand gives a packet read whole on to pkg/sftp.
func (in *inbound) hand(pkt []byte) { in.buf = pkt }
