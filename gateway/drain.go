package gateway

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/vfs"
)

// connActivity counts one connection's open file handles, so Shutdown can
// close idle connections at once and give the grace period only to
// connections with a transfer in progress.
type connActivity struct {
	handles   atomic.Int64
	idleSince atomic.Int64 // unix nanoseconds when handles last dropped to 0
	draining  *atomic.Bool // the server's shutdown flag
	rec       audit.Recorder
	sess      vfs.Session
}

func newConnActivity(draining *atomic.Bool, rec audit.Recorder, sess vfs.Session) *connActivity {
	a := &connActivity{draining: draining, rec: rec, sess: sess}
	a.idleSince.Store(time.Now().UnixNano())
	return a
}

// errShuttingDown is what a client sees for an open refused while draining.
var errShuttingDown = errors.New("server is shutting down, please reconnect")

// open counts a handle about to be opened. While draining it refuses (and
// audits the refusal): an open transfer must not start a new one in the
// gap between two files of a batch, or shutdown would never end.
func (a *connActivity) open(op, path string) error {
	if a == nil {
		return nil
	}
	a.handles.Add(1)
	if a.draining != nil && a.draining.Load() {
		a.closed()
		vp, err := vfs.CleanPath(path)
		if err != nil {
			vp = path
		}
		a.rec.Record(audit.Event{Time: time.Now().UTC(), Kind: "file", Session: a.sess.ID, User: a.sess.User,
			Role: a.sess.Role, Client: a.sess.Client, Op: op, Path: vp, Result: "error", ErrClass: "shutdown",
			Detail: "refused: the gateway is shutting down"})
		return errShuttingDown
	}
	return nil
}

// closed counts a handle closed (or an open that failed).
func (a *connActivity) closed() {
	if a == nil {
		return
	}
	if a.handles.Add(-1) == 0 {
		a.idleSince.Store(time.Now().UnixNano())
	}
}

// idleFor reports whether no handle has been open for at least d. The
// short wait lets the reply to a final close reach the client before its
// connection is closed.
func (a *connActivity) idleFor(d time.Duration) bool {
	return a.handles.Load() == 0 && time.Since(time.Unix(0, a.idleSince.Load())) >= d
}

// onceCloser runs a handle's accounting exactly once, whatever pkg/sftp
// does (Close after TransferError, double close).
type onceCloser struct {
	once sync.Once
	a    *connActivity
}

func (o *onceCloser) done() { o.once.Do(o.a.closed) }

// drainPoll is how often Shutdown looks for connections that became idle;
// drainSettle is how long a connection must have been idle to be closed.
const (
	drainPoll   = 50 * time.Millisecond
	drainSettle = 100 * time.Millisecond
)

// closeIdle closes every tracked connection without open handles and
// every connection still in its handshake. It reports how many remain.
func (s *Server) closeIdle() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.pre {
		_ = c.Close()
	}
	busy := 0
	for c, a := range s.conns {
		if a == nil || a.idleFor(drainSettle) {
			_ = c.Close()
			continue
		}
		busy++
	}
	return busy
}

// OpenHandles is the number of SFTP file handles open now, all sessions.
func (s *Server) OpenHandles() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, a := range s.conns {
		if a != nil {
			n += a.handles.Load()
		}
	}
	return n
}

func (s *Server) trackPre(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutdown.Load() {
		return false
	}
	s.pre[c] = struct{}{}
	return true
}

func (s *Server) untrackPre(c net.Conn) {
	s.mu.Lock()
	delete(s.pre, c)
	s.mu.Unlock()
}
