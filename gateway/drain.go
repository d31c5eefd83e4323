package gateway

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/authn"
	"github.com/sftpgw/sftpgw/vfs"
)

// connActivity counts one connection's open file handles, so Shutdown can
// close idle connections at once and give the grace period only to
// connections with a transfer in progress.
type connActivity struct {
	handles   atomic.Int64
	dirs      atomic.Int64 // open directory handles: limited, but not a transfer
	idleSince atomic.Int64 // unix nanoseconds when handles last dropped to 0
	draining  *atomic.Bool // the server's shutdown flag
	rec       audit.Recorder
	sess      vfs.Session
	// maxHandles caps file and directory handles together (0: no cap).
	// pkg/sftp keeps any number open; the gateway announces this number
	// in limits@openssh.com, and each upload handle holds memory.
	maxHandles int64

	principal *authn.Principal // who, for revalidation (nil: not checked)
	start     time.Time        // login, on the server's clock

	mu       sync.Mutex
	stderrs  []io.Writer // of the channels serving SFTP, for a closing notice
	endClass string      // why the gateway closed the session ("" : it did not)
	endWhy   string
}

// end records why the gateway closes the session; false if it already is.
func (a *connActivity) end(class, reason string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.endWhy != "" {
		return false
	}
	a.endClass, a.endWhy = class, reason
	return true
}

func (a *connActivity) ended() (class, reason string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.endClass, a.endWhy
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
	n := a.handles.Add(1)
	if a.draining != nil && a.draining.Load() {
		a.closed()
		a.refuse(op, path, "error", "shutdown", "refused: the gateway is shutting down")
		return errShuttingDown
	}
	if a.overLimit(n + a.dirs.Load()) {
		a.closed()
		return a.refuseLimit(op, path)
	}
	return nil
}

// openDir counts a directory handle about to be opened (OPENDIR).
func (a *connActivity) openDir(path string) error {
	if a == nil {
		return nil
	}
	if a.overLimit(a.dirs.Add(1) + a.handles.Load()) {
		a.dirClosed()
		return a.refuseLimit("list", path)
	}
	return nil
}

// dirClosed counts a directory handle closed.
func (a *connActivity) dirClosed() {
	if a != nil {
		a.dirs.Add(-1)
	}
}

func (a *connActivity) overLimit(n int64) bool { return a.maxHandles > 0 && n > a.maxHandles }

// refuseLimit audits and explains an open over the handle limit. The text
// is a LimitError, so the client sees it (status message and stderr).
func (a *connActivity) refuseLimit(op, path string) error {
	err := &vfs.LimitError{Reason: fmt.Sprintf("too many open files and directories in this session (limit %d); close some and retry", a.maxHandles)}
	a.refuse(op, path, "denied", "limit", err.Reason)
	return err
}

func (a *connActivity) refuse(op, path, result, class, detail string) {
	vp, err := vfs.CleanPath(path)
	if err != nil {
		vp = path
	}
	a.rec.Record(audit.Event{Time: time.Now().UTC(), Kind: "file", Session: a.sess.ID, User: a.sess.User,
		Role: a.sess.Role, Client: a.sess.Client, Op: op, Path: vp, Result: result, ErrClass: class,
		Detail: detail})
}

// addStderr remembers a channel's stderr for notices to the client.
func (a *connActivity) addStderr(w io.Writer) {
	a.mu.Lock()
	a.stderrs = append(a.stderrs, w)
	a.mu.Unlock()
}

// notify writes msg on the stderr of every SFTP channel (OpenSSH sftp,
// psftp and sshfs print it) without waiting on a client that reads none.
func (a *connActivity) notify(msg string) {
	a.mu.Lock()
	ws := append([]io.Writer(nil), a.stderrs...)
	a.mu.Unlock()
	for _, w := range ws {
		done := make(chan struct{})
		go func() { _, _ = io.WriteString(w, "sftpgw: "+msg+"\r\n"); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Second):
		}
	}
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
