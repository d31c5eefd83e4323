package gateway

import (
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sftpgw/sftpgw/audit"
)

// unfinishedAuditor is implemented by an Authenticator that records, with
// the steps it saw passed, how a connection ended during authentication
// (authn.Authenticator does).
type unfinishedAuditor interface {
	Unfinished(c ssh.ConnMetadata, why string)
}

// handshake runs the SSH handshake and authentication of one connection.
// Every connection that does not log in leaves an audit event here (the
// authenticator's own events record each refused request, but a client
// that gives up, times out or breaks the protocol after a passed key step
// left none): "handshake" before authentication started, "auth_incomplete"
// after, with the steps passed.
func (s *Server) handshake(c net.Conn, remote net.Addr) (*ssh.ServerConn, <-chan ssh.NewChannel, <-chan *ssh.Request, error) {
	cfg := *s.sshCfg // per connection, to learn its metadata if authentication starts
	var meta ssh.ConnMetadata
	prev := cfg.PreAuthConnCallback
	cfg.PreAuthConnCallback = func(pc ssh.ServerPreAuthConn) {
		meta = pc
		if prev != nil {
			prev(pc)
		}
	}
	sconn, chans, reqs, err := ssh.NewServerConn(c, &cfg)
	if err == nil {
		return sconn, chans, reqs, nil
	}
	why := handshakeEnd(err)
	if ua, ok := s.cfg.Auth.(unfinishedAuditor); ok && meta != nil {
		ua.Unfinished(meta, why)
	} else {
		ev := audit.Event{Time: time.Now().UTC(), Kind: "connect", Client: remote.String(), Result: "error",
			ErrClass: "handshake", Detail: "connection ended before authentication: " + why}
		if meta != nil {
			ev.ErrClass, ev.Detail = "auth_incomplete", "connection ended during authentication: "+why
		}
		s.cfg.Audit.Record(ev)
	}
	return nil, nil, nil, err
}

// handshakeEnd says in fixed words why a handshake ended: x/crypto's error
// texts can quote what the client sent, and audit details must not.
func handshakeEnd(err error) string {
	var ne net.Error
	msg := err.Error()
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		return "timed out"
	case strings.Contains(msg, "too many authentication"):
		return "too many authentication attempts"
	case strings.Contains(msg, "unexpected message type 5 "):
		// paramiko sends ssh-userauth's service request again before each
		// method; x/crypto/ssh (rightly, per RFC 4252) closes the connection.
		return "protocol error: the client repeated the ssh-userauth service request (paramiko does this; see docs)"
	case strings.Contains(msg, "unexpected message"), strings.Contains(msg, "parse error"),
		strings.Contains(msg, "no common algorithm"), strings.Contains(msg, "overflow"):
		return "protocol error"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, net.ErrClosed), errors.Is(err, syscall.EPIPE):
		return "closed by the client"
	}
	var ae *ssh.ServerAuthError
	if errors.As(err, &ae) {
		return "closed by the client"
	}
	return "connection error"
}
