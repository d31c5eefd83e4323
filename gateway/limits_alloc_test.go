package gateway

import (
	"bytes"
	"io"
	"net"
	"runtime"
	"testing"

	"github.com/pkg/sftp"
)

// byteRWC reads from a fixed input and discards writes.
type byteRWC struct{ io.Reader }

func (byteRWC) Write(p []byte) (int, error) { return len(p), nil }
func (byteRWC) Close() error                { return nil }

// The filter reads an extended packet whole (to answer limits@openssh.com)
// only up to 64 KiB: the length field is the client's, and a longer packet
// is streamed through to pkg/sftp instead. 16 MiB announced must not cost
// 16 MiB here (4 GiB would not either).
func TestLimitsFilterDoesNotBufferLargePackets(t *testing.T) {
	const announced = 16 << 20
	in := lpkt(1, lu32(3))
	in = append(in, lu32(announced)...)
	in = append(in, 200)
	in = append(in, lu32(1)...) // a few bytes of the body, then the client stops
	f := newLimitsFilter(byteRWC{bytes.NewReader(in)}, 255*1024, nil, nil)
	buf := make([]byte, 9) // the INIT packet
	if _, err := io.ReadFull(f, buf); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	n, err := f.Read(buf)
	runtime.ReadMemStats(&after)
	if err != nil || n != 5 || buf[4] != 200 {
		t.Fatalf("Read after INIT: %d bytes %x, %v; want the 5-byte header passed through", n, buf[:n], err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Errorf("reading the header of a packet announcing %d bytes allocated %d bytes", announced, got)
	}
}

// At exactly 64 KiB a limits request is still the filter's to answer (an
// EXTENDED_REPLY); one byte more and pkg/sftp gets it (and answers
// "unsupported", as it does not know the extension).
func TestLimitsFilterBufferBoundary(t *testing.T) {
	cli, srvSide := net.Pipe()
	defer cli.Close()
	h := &slowHandlers{}
	rs := sftp.NewRequestServer(newLimitsFilter(srvSide, 100_000, nil, nil),
		sftp.Handlers{FileGet: h, FilePut: h, FileCmd: h, FileList: h})
	go func() { _ = rs.Serve(); _ = rs.Close() }()
	send := func(b []byte) {
		go func() { _, _ = cli.Write(b) }()
	}
	send(lpkt(1, lu32(3)))
	if typ, _, err := readPkt(cli); err != nil || typ != 2 {
		t.Fatalf("VERSION: type %d, %v", typ, err)
	}
	limits := func(id uint32, length int) []byte {
		body := append(lu32(id), lstr(limitsExt)...)
		body = append(body, make([]byte, length-1-len(body))...) // padding after the name
		return lpkt(200, body)
	}
	for _, c := range []struct {
		length int
		want   byte
	}{{64 * 1024, 201}, {64*1024 + 1, 101}} {
		send(limits(uint32(c.length), c.length))
		typ, body, err := readPkt(cli)
		if err != nil || typ != c.want || len(body) < 4 {
			t.Fatalf("limits request of length %d: reply type %d, %v; want %d", c.length, typ, err, c.want)
		}
	}
}
