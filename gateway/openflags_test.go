package gateway

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"
)

type pipeRWC struct{ io.Reader }

func (pipeRWC) Write(p []byte) (int, error) { return len(p), nil }
func (pipeRWC) Close() error                { return nil }

func openPacket(id uint32, name string, pflags uint32) []byte {
	body := binary.BigEndian.AppendUint32(nil, id)
	body = binary.BigEndian.AppendUint32(body, uint32(len(name)))
	body = append(body, name...)
	body = binary.BigEndian.AppendUint32(body, pflags)
	body = binary.BigEndian.AppendUint32(body, 0) // no attributes
	pkt := binary.BigEndian.AppendUint32(nil, uint32(1+len(body)))
	return append(append(pkt, fxpOpen), body...)
}

// Every open for writing reaches pkg/sftp with the read flag, so its
// handle is an "Open" one whose reads go to ReadAt (refused), never to
// WriteAt; other packets and read-only opens pass through unchanged.
func TestOpenFlagsFilter(t *testing.T) {
	write := []byte{0, 0, 0, 9, 6, 1, 2, 3, 4, 5, 6, 7, 8} // a WRITE-typed packet, untouched
	var in []byte
	in = append(in, openPacket(1, "a", 0x02|0x08|0x10)...) // write|creat|trunc
	in = append(in, write...)
	in = append(in, openPacket(2, "b", 0x01)...)      // read only
	in = append(in, openPacket(3, "c", 0x01|0x02)...) // read|write
	in = append(in, openPacket(4, "d", 0x04)...)      // append
	want := append([]byte(nil), openPacket(1, "a", 0x01|0x02|0x08|0x10)...)
	want = append(want, write...)
	want = append(want, openPacket(2, "b", 0x01)...)
	want = append(want, openPacket(3, "c", 0x01|0x02)...)
	want = append(want, openPacket(4, "d", 0x01|0x04)...)
	f := newOpenFlagsFilter(pipeRWC{bytes.NewReader(in)})
	got, err := io.ReadAll(iotestOneByte{f})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("filtered stream\n got %x\nwant %x", got, want)
	}
	// Long attributes do not make an upload open escape the rewrite.
	long := openPacket(6, "f", 0x02)
	long = append(long, make([]byte, 200<<10)...)
	binary.BigEndian.PutUint32(long, uint32(len(long)-4))
	got, _ = io.ReadAll(newOpenFlagsFilter(pipeRWC{bytes.NewReader(long)}))
	if len(got) != len(long) || binary.BigEndian.Uint32(got[5+4+4+1:]) != 0x03 {
		t.Errorf("OPEN with 200 KiB of attributes: flags %#x", binary.BigEndian.Uint32(got[5+4+4+1:]))
	}
	// A truncated OPEN is passed on as it is (pkg/sftp answers it).
	short := openPacket(5, "e", 0x02)[:12]
	binary.BigEndian.PutUint32(short, uint32(len(short)-4))
	got, _ = io.ReadAll(newOpenFlagsFilter(pipeRWC{bytes.NewReader(short)}))
	if !bytes.Equal(got, short) {
		t.Errorf("short OPEN changed: %x", got)
	}
}

// iotestOneByte reads in small steps, as pkg/sftp's reader may.
type iotestOneByte struct{ r io.Reader }

func (o iotestOneByte) Read(p []byte) (int, error) {
	if len(p) > 3 {
		p = p[:3]
	}
	return o.r.Read(p)
}
