package gateway

import (
	"bytes"
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/vfs"
	"github.com/sftpgw/sftpgw/vfs/localstore"
)

// markerConn panics when the bytes read or written contain the marker:
// a stand-in for a parsing bug in the packet filters under pkg/sftp.
type markerConn struct {
	net.Conn
	onRead, onWrite bool
}

var panicMarker = []byte("PANIC-HERE")

func (c *markerConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.onRead && bytes.Contains(p[:n], panicMarker) {
		panic("injected: stream read")
	}
	return n, err
}

func (c *markerConn) Write(p []byte) (int, error) {
	if c.onWrite && bytes.Contains(p, panicMarker) {
		panic("injected: stream write")
	}
	return c.Conn.Write(p)
}

type recorded struct {
	mu sync.Mutex
	ev []audit.Event
}

func (r *recorded) Record(e audit.Event) { r.mu.Lock(); r.ev = append(r.ev, e); r.mu.Unlock() }
func (r *recorded) count(op, class string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.ev {
		if e.Op == op && e.ErrClass == class {
			n++
		}
	}
	return n
}

// A panic in the stream under pkg/sftp (the limits, long-name and
// open-flags filters parse client bytes; pkg/sftp writes from its own
// goroutine) ended the process. It now ends that channel with an error
// and an audit event.
func TestStreamPanicEndsOnlyThatChannel(t *testing.T) {
	st, err := localstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"read", "write"} {
		t.Run(dir, func(t *testing.T) {
			rec := &recorded{}
			sess := vfs.Session{ID: "s1", User: "u", Role: "r", Perms: vfs.PermAll}
			fs := vfs.New(vfs.Options{Store: st, Session: sess, Audit: rec})
			act := newConnActivity(&atomic.Bool{}, rec, sess)
			cli, srvSide := net.Pipe()
			defer cli.Close()
			ch := &markerConn{Conn: srvSide, onRead: dir == "read", onWrite: dir == "write"}
			done := make(chan error, 1)
			go func() {
				done <- serveSFTP(context.Background(), ch, fs, SFTPOptions{}, act, hclog.NewNullLogger())
			}()
			go func() { // drain replies
				buf := make([]byte, 1<<16)
				for {
					if _, err := cli.Read(buf); err != nil {
						return
					}
				}
			}()
			// INIT, then REALPATH of a name carrying the marker: read on the
			// way in, written back in the NAME reply.
			req := append(lpkt(1, lu32(3)), lpkt(16, lu32(1), lstr(string(panicMarker)))...)
			if _, err := cli.Write(req); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if err == nil {
					t.Error("serveSFTP ended without an error after the panic")
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the channel did not end after the panic")
			}
			if n := rec.count("sftp_stream", "internal"); n == 0 {
				t.Error("the panic was not audited")
			}
		})
	}
}
