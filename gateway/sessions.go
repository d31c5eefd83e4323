package gateway

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/authn"
)

// DefaultKexTimeout bounds the version exchange and key exchange: a real
// client finishes both in well under a second; a silent socket must not
// hold a pre-authentication slot for the whole authentication timeout.
const DefaultKexTimeout = 10 * time.Second

// DefaultMaxSessionsPerUser caps one account's concurrent sessions unless
// its role says otherwise: enough for a connection pool (rclone, sshfs
// plus a script), not enough to multiply the per-session memory bound.
const DefaultMaxSessionsPerUser = 16

// DefaultMaxHandles is the number of open files and directories per
// session: what limits@openssh.com announces (gateway/limits.go).
const DefaultMaxHandles = 16

// kexConn watches the client's cleartext packets until its NEWKEYS, the
// end of the first key exchange, and then calls onKex once. Before NEWKEYS
// nothing is encrypted: a packet is a 4-byte length, a padding length and
// the message type. After it the watcher is inert.
type kexConn struct {
	net.Conn
	onKex func()
	state int    // 0 version line, 1 packets, 2 done
	line  []byte // first bytes of the current version-exchange line
	hdr   [6]byte
	hdrN  int
	skip  int64
}

const (
	msgNewKeys    = 21
	maxKexPacket  = 256 << 10 // larger than any key exchange packet; beyond: stop watching
	kexStateDone  = 2
	kexStatePkts  = 1
	kexStateLines = 0
)

func (c *kexConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.state != kexStateDone {
		c.scan(p[:n])
	}
	return n, err
}

func (c *kexConn) scan(b []byte) {
	for len(b) > 0 && c.state != kexStateDone {
		if c.state == kexStateLines {
			i := 0
			for i < len(b) && b[i] != '\n' {
				if len(c.line) < 4 {
					c.line = append(c.line, b[i])
				}
				i++
			}
			if i == len(b) {
				return
			}
			if string(c.line) == "SSH-" {
				c.state = kexStatePkts
			}
			c.line = c.line[:0]
			b = b[i+1:]
			continue
		}
		if c.skip > 0 {
			k := min(c.skip, int64(len(b)))
			c.skip -= k
			b = b[k:]
			continue
		}
		k := copy(c.hdr[c.hdrN:], b)
		c.hdrN += k
		b = b[k:]
		if c.hdrN < len(c.hdr) {
			return
		}
		c.hdrN = 0
		length := binary.BigEndian.Uint32(c.hdr[:4])
		if length < 2 || length > maxKexPacket {
			c.state = kexStateDone // not SSH as we know it; the deadline stays short
			return
		}
		c.skip = int64(length) - 2
		if c.hdr[5] == msgNewKeys {
			c.state = kexStateDone
			c.onKex()
		}
	}
}

// sessionCounts admits authenticated connections: the global cap, the cap
// per user and the cap per source are checked and counted in one step, so
// concurrent logins cannot all pass a check before any of them counts.
type sessionCounts struct {
	mu       sync.Mutex
	total    int
	byUser   map[string]int
	bySource map[netip.Addr]int
}

func newSessionCounts() *sessionCounts {
	return &sessionCounts{byUser: map[string]int{}, bySource: map[netip.Addr]int{}}
}

// admit counts a session of user from src, or returns why not (an audit
// class and a text for the client). Limits <= 0 are off.
func (c *sessionCounts) admit(user string, src netip.Addr, maxTotal, perUser, perSource int) (class, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case maxTotal > 0 && c.total >= maxTotal:
		return "overload", fmt.Sprintf("the gateway has reached its maximum of %d sessions; try again later", maxTotal)
	case perUser > 0 && c.byUser[user] >= perUser:
		return "session_limit", fmt.Sprintf("user %s already has %d sessions open (the limit); close one and retry", user, perUser)
	case perSource > 0 && src.IsValid() && c.bySource[src] >= perSource:
		return "session_limit", fmt.Sprintf("your address already has %d sessions open (the limit); close one and retry", perSource)
	}
	c.total++
	c.byUser[user]++
	if src.IsValid() {
		c.bySource[src]++
	}
	return "", ""
}

func (c *sessionCounts) release(user string, src netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total--
	if c.byUser[user]--; c.byUser[user] <= 0 {
		delete(c.byUser, user)
	}
	if src.IsValid() {
		if c.bySource[src]--; c.bySource[src] <= 0 {
			delete(c.bySource, src)
		}
	}
}

// refuseSession tells an authenticated client why it gets no session: the
// SSH layer has no message for that, so the first session channel is
// accepted, the reason written to its stderr (OpenSSH sftp prints it) and
// the connection closed. A client that never opens a channel is closed
// after a few seconds.
func refuseSession(sconn *ssh.ServerConn, chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request, msg string) {
	defer sconn.Close()
	go ssh.DiscardRequests(reqs)
	t := time.AfterFunc(5*time.Second, func() { _ = sconn.Close() })
	defer t.Stop()
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.ResourceShortage, msg)
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			return
		}
		for r := range creqs {
			if r.Type != "subsystem" && r.Type != "exec" && r.Type != "shell" {
				if r.WantReply {
					_ = r.Reply(false, nil)
				}
				continue
			}
			_ = r.Reply(true, nil)
			_, _ = ch.Stderr().Write([]byte("sftpgw: " + msg + "\r\n"))
			_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{1}))
			_ = ch.Close()
			break
		}
		for range creqs { // until the client closed its side: the text is delivered
		}
		return
	}
}

// UserLookup finds an account in the current users file (authn.UserDB).
type UserLookup interface {
	Lookup(name string) (*authn.User, bool)
}

// DefaultRevalidateInterval is how often open sessions are checked against
// the users file and the maximum lifetime. The users file itself is
// re-read by authn's watcher (every 2 s, once it is stable) or on SIGHUP.
const DefaultRevalidateInterval = time.Second

// revokeReason says why a session may not go on, or "".
func (s *Server) revokeReason(a *connActivity, now time.Time) (class, reason string) {
	p := a.principal
	if p == nil {
		return "", ""
	}
	if s.cfg.MaxSessionLifetime > 0 && now.Sub(a.start) >= s.cfg.MaxSessionLifetime {
		return "lifetime", fmt.Sprintf("the maximum session lifetime (%s) was reached; please reconnect", s.cfg.MaxSessionLifetime)
	}
	if s.cfg.Users == nil {
		return "", ""
	}
	u, ok := s.cfg.Users.Lookup(p.User)
	switch {
	case !ok:
		return "revoked", "the account was removed"
	case u.Disabled:
		return "revoked", "the account was disabled"
	case u.Expired(now):
		return "revoked", "the account has expired"
	case u.Role != p.Role:
		return "revoked", fmt.Sprintf("the account's role changed from %s to %s; please reconnect", p.Role, u.Role)
	case p.KeyFP != "" && !hasKey(u, p.KeyFP):
		return "revoked", "the key used to log in was removed from the account"
	}
	return "", ""
}

func hasKey(u *authn.User, fp string) bool {
	for _, k := range u.Keys {
		if k.Fingerprint() == fp {
			return true
		}
	}
	return false
}

// revalidate closes every session that revokeReason refuses: the client is
// told why on stderr, uploads in progress are aborted (never committed),
// and the session_end event carries the reason.
func (s *Server) revalidate(now time.Time) int {
	type entry struct {
		c *ssh.ServerConn
		a *connActivity
	}
	s.mu.Lock()
	list := make([]entry, 0, len(s.conns))
	for c, a := range s.conns {
		if a != nil {
			list = append(list, entry{c, a})
		}
	}
	s.mu.Unlock()
	n := 0
	for _, e := range list {
		class, reason := s.revokeReason(e.a, now)
		if reason == "" || !e.a.end(class, reason) {
			continue
		}
		n++
		s.log.Info("closing session", "session", e.a.sess.ID, "user", e.a.sess.User, "reason", reason)
		go func() {
			e.a.notify("session closed: " + reason)
			_ = e.c.Close()
		}()
	}
	return n
}

// revalidateLoop runs revalidate until the server shuts down.
func (s *Server) revalidateLoop() {
	t := time.NewTicker(s.cfg.RevalidateInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			s.revalidate(s.cfg.Now())
		}
	}
}

// sessionEnd is the session_end event, with the reason if the gateway
// closed the session.
func sessionEnd(a *connActivity, start, now time.Time) audit.Event {
	e := audit.Event{Time: now.UTC(), Kind: "session_end", Session: a.sess.ID, User: a.sess.User,
		Role: a.sess.Role, Client: a.sess.Client, DurationMS: float64(now.Sub(start).Milliseconds()), Result: "ok"}
	if class, reason := a.ended(); reason != "" {
		e.Result, e.ErrClass, e.Detail = "closed", class, "closed by the gateway: "+reason
	}
	return e
}
