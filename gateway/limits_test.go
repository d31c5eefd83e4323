package gateway

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pkg/sftp"
)

func lpkt(typ byte, parts ...[]byte) []byte {
	body := []byte{typ}
	for _, p := range parts {
		body = append(body, p...)
	}
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

func lu32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func lu64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
func lstr(s string) []byte { return append(lu32(uint32(len(s))), s...) }

func readPkt(r io.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	body := make([]byte, binary.BigEndian.Uint32(hdr[:4])-1)
	_, err := io.ReadFull(r, body)
	return hdr[4], body, err
}

// slowHandlers answers reads at once and holds every Mkdir until released:
// a slow request at the head of pkg/sftp's answer order.
type slowHandlers struct {
	reads   atomic.Int64
	release chan struct{}
}

func (h *slowHandlers) Fileread(*sftp.Request) (io.ReaderAt, error) { return h, nil }
func (h *slowHandlers) ReadAt(p []byte, off int64) (int, error) {
	h.reads.Add(1)
	return len(p), nil
}
func (h *slowHandlers) Filewrite(*sftp.Request) (io.WriterAt, error) { return nil, os.ErrPermission }
func (h *slowHandlers) Filecmd(*sftp.Request) error                  { <-h.release; return nil }
func (h *slowHandlers) Filelist(*sftp.Request) (sftp.ListerAt, error) {
	return nil, os.ErrNotExist
}

// While one request is slow, pkg/sftp keeps every later answer (with its
// request's buffer) until the slow one is done; a client streaming reads
// behind it grew the gateway's memory without bound. The filter lets at
// most maxInFlight requests wait, and nothing deadlocks when the slow
// request ends.
func TestLimitsFilterBoundsRequestsInFlight(t *testing.T) {
	cli, srvSide := net.Pipe()
	defer cli.Close()
	h := &slowHandlers{release: make(chan struct{})}
	rs := sftp.NewRequestServer(newLimitsFilter(srvSide, 255*1024, nil, nil),
		sftp.Handlers{FileGet: h, FilePut: h, FileCmd: h, FileList: h}, sftp.WithRSAllocator())
	go func() { _ = rs.Serve(); _ = rs.Close() }()

	if _, err := cli.Write(lpkt(1, lu32(3))); err != nil {
		t.Fatal(err)
	}
	if typ, _, err := readPkt(cli); err != nil || typ != 2 {
		t.Fatalf("VERSION: type %d, %v", typ, err)
	}
	if _, err := cli.Write(lpkt(3, lu32(1), lstr("/f"), lu32(1), lu32(0))); err != nil {
		t.Fatal(err)
	}
	typ, body, err := readPkt(cli)
	if err != nil || typ != 102 {
		t.Fatalf("OPEN: type %d, %v", typ, err)
	}
	handle := string(body[8:])

	// Replies are read concurrently, as a real client would.
	var replies atomic.Int64
	go func() {
		for {
			if _, _, err := readPkt(cli); err != nil {
				return
			}
			replies.Add(1)
		}
	}()
	const reads = 1000
	go func() {
		_, _ = cli.Write(lpkt(14, lu32(2), lstr("/slow"), lu32(0))) // MKDIR, held
		for i := range reads {
			if _, err := cli.Write(lpkt(5, lu32(uint32(10+i)), lstr(handle), lu64(0), lu32(32<<10))); err != nil {
				return
			}
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for h.reads.Load() < maxInFlight-1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	// The reads behind the held Mkdir are answered by pkg/sftp's workers
	// and kept; give them 300 ms to pile up (they took ~10 ms for 1000).
	time.Sleep(300 * time.Millisecond)
	if got := h.reads.Load(); got >= maxInFlight {
		t.Errorf("%d reads served behind one slow request, want fewer than %d", got, maxInFlight)
	}
	close(h.release)
	deadline = time.Now().Add(10 * time.Second)
	for replies.Load() < reads+1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := replies.Load(); got != reads+1 {
		t.Fatalf("%d replies after the slow request ended, want %d", got, reads+1)
	}
}

// The first packet must be INIT: a limits request before it is not
// answered (the reply was queued until VERSION, which never came), the
// session ends, and the violation is reported for the audit trail.
func TestLimitsFilterRefusesRequestBeforeInit(t *testing.T) {
	cli, srvSide := net.Pipe()
	defer cli.Close()
	var told []string
	f := newLimitsFilter(srvSide, 255*1024, nil, func(what string) { told = append(told, what) })
	go func() { _, _ = cli.Write(lpkt(200, lu32(1), lstr(limitsExt))) }()
	_, err := f.Read(make([]byte, 4))
	if !errors.Is(err, errNoInit) {
		t.Fatalf("Read before INIT: %v, want errNoInit", err)
	}
	if len(told) != 1 || told[0] != "request_before_init" {
		t.Errorf("violation reported as %q", told)
	}
}

// A limits request right after INIT is answered after VERSION, never
// before it and never inside another packet.
func TestLimitsFilterAnswersAfterVersion(t *testing.T) {
	cli, srvSide := net.Pipe()
	defer cli.Close()
	rs := sftp.NewRequestServer(newLimitsFilter(srvSide, 100_000, nil, nil),
		sftp.Handlers{FileGet: &slowHandlers{}, FilePut: &slowHandlers{}, FileCmd: &slowHandlers{}, FileList: &slowHandlers{}})
	go func() { _ = rs.Serve(); _ = rs.Close() }()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = cli.Write(append(lpkt(1, lu32(3)), lpkt(200, lu32(7), lstr(limitsExt))...))
	}()
	typ, body, err := readPkt(cli)
	if err != nil || typ != 2 {
		t.Fatalf("first reply: type %d, %v", typ, err)
	}
	if want := lstr(limitsExt); !bytes.Contains(body, want) {
		t.Errorf("VERSION does not offer %s", limitsExt)
	}
	typ, body, err = readPkt(cli)
	if err != nil || typ != 201 || binary.BigEndian.Uint32(body) != 7 {
		t.Fatalf("second reply: type %d, %v", typ, err)
	}
	if got := binary.BigEndian.Uint64(body[12:]); got != 100_000 {
		t.Errorf("max read length %d, want 100000", got)
	}
	wg.Wait()
}
