package e2e

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// SFTP v3 packet types and status codes used by the raw client.
const (
	fxpInit     = 1
	fxpVersion  = 2
	fxpOpen     = 3
	fxpClose    = 4
	fxpRead     = 5
	fxpWrite    = 6
	fxpStatus   = 101
	fxpHandle   = 102
	fxpData     = 103
	fxpExtended = 200
	fxpExtReply = 201

	fxOK               = 0
	fxPermissionDenied = 3
	fxOpUnsupported    = 8

	pflagRead  = 0x01
	pflagWrite = 0x02
	pflagCreat = 0x08
	pflagTrunc = 0x10
)

// rawSFTP speaks SFTP packets directly over a session channel, to send
// requests no client library offers (arbitrary extensions).
type rawSFTP struct {
	t    *testing.T
	sess *ssh.Session
	w    io.WriteCloser
	r    io.Reader
	id   uint32
	exts map[string]string
	seen [][]byte // every reply payload, for "never leaked" checks
}

func newRawSFTP(t *testing.T, c *ssh.Client) *rawSFTP {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RequestSubsystem("sftp"); err != nil {
		t.Fatal(err)
	}
	p := &rawSFTP{t: t, sess: s, w: w, r: r, exts: map[string]string{}}
	t.Cleanup(func() { _ = w.Close(); _ = s.Close() })
	p.send(fxpInit, rawU32(3))
	typ, body := p.recv()
	if typ != fxpVersion || len(body) < 4 {
		t.Fatalf("no VERSION reply (type %d)", typ)
	}
	for rest := body[4:]; len(rest) > 0; {
		var name, data string
		name, rest = rawParseStr(t, rest)
		data, rest = rawParseStr(t, rest)
		p.exts[name] = data
	}
	return p
}

func rawU32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func rawU64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
func rawStr(s string) []byte {
	return append(rawU32(uint32(len(s))), s...)
}
func rawCat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func rawParseStr(t *testing.T, b []byte) (string, []byte) {
	t.Helper()
	if len(b) < 4 || uint32(len(b)-4) < binary.BigEndian.Uint32(b) {
		t.Fatalf("short string in reply")
	}
	n := binary.BigEndian.Uint32(b)
	return string(b[4 : 4+n]), b[4+n:]
}

func (p *rawSFTP) send(typ byte, payload []byte) {
	p.t.Helper()
	pkt := append(rawU32(uint32(len(payload)+1)), typ)
	if _, err := p.w.Write(append(pkt, payload...)); err != nil {
		p.t.Fatalf("send: %v", err)
	}
}

// readPacketTimeout reads one SFTP packet (type and body) of at most max
// bytes from r; a server silent for 20 s fails the test instead of hanging it.
func readPacketTimeout(t *testing.T, r io.Reader, max uint32) (byte, []byte, error) {
	t.Helper()
	type res struct {
		typ  byte
		body []byte
		err  error
	}
	ch := make(chan res, 1)
	go func() {
		var hdr [5]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			ch <- res{err: err}
			return
		}
		n := binary.BigEndian.Uint32(hdr[:4])
		if n < 1 || n > max {
			ch <- res{err: fmt.Errorf("%w: length %d", errBadLength, n)}
			return
		}
		body := make([]byte, n-1)
		_, err := io.ReadFull(r, body)
		ch <- res{typ: hdr[4], body: body, err: err}
	}()
	select {
	case r := <-ch:
		return r.typ, r.body, r.err
	case <-time.After(20 * time.Second):
		t.Fatal("no reply within 20 s")
		return 0, nil, nil
	}
}

var errBadLength = errors.New("bad packet length")

// recv reads one packet; any error fails the test.
func (p *rawSFTP) recv() (byte, []byte) {
	p.t.Helper()
	typ, body, err := readPacketTimeout(p.t, p.r, 1<<20)
	if err != nil {
		p.t.Fatalf("recv: %v", err)
	}
	p.seen = append(p.seen, body)
	return typ, body
}

// request sends a packet with a fresh id and returns the reply to it.
func (p *rawSFTP) request(typ byte, payload []byte) (byte, []byte) {
	p.t.Helper()
	p.id++
	p.send(typ, rawCat(rawU32(p.id), payload))
	rt, body := p.recv()
	if len(body) < 4 || binary.BigEndian.Uint32(body) != p.id {
		p.t.Fatalf("reply type %d does not answer request %d", rt, p.id)
	}
	return rt, body[4:]
}

// status decodes a STATUS reply; other reply types are an error.
func rawStatus(typ byte, body []byte) (uint32, error) {
	if typ != fxpStatus {
		return 0, fmt.Errorf("reply type %d, not STATUS", typ)
	}
	if len(body) < 4 {
		return 0, errors.New("short STATUS")
	}
	return binary.BigEndian.Uint32(body), nil
}

// open returns a handle, or the status code of the refusal.
func (p *rawSFTP) open(name string, pflags uint32) (string, uint32) {
	p.t.Helper()
	typ, body := p.request(fxpOpen, rawCat(rawStr(name), rawU32(pflags), rawU32(0)))
	if typ == fxpHandle {
		h, _ := rawParseStr(p.t, body)
		return h, fxOK
	}
	code, err := rawStatus(typ, body)
	if err != nil {
		p.t.Fatal(err)
	}
	return "", code
}

// extended sends SSH_FXP_EXTENDED name with data.
func (p *rawSFTP) extended(name string, data []byte) (byte, []byte) {
	p.t.Helper()
	return p.request(fxpExtended, rawCat(rawStr(name), data))
}
