// Package proxyproto reads the PROXY protocol header (v1 text and v2
// binary, https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt) that a
// load balancer sends before the client's bytes, so the gateway sees the
// real client address.
//
// Only connections from trusted load balancers are parsed, and those must
// send a header. Everything else is passed through with its bytes
// untouched, but guarded: if it starts with a PROXY header, its first read
// fails (ErrUntrustedHeader) and a warning names the peer, so nobody can
// spoof an address by sending a header directly.
package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// Limits. v1 lines are at most 107 bytes by specification. v2 headers may
// carry TLVs (AWS, Azure and GCP add a few dozen bytes); 4 KiB is far above
// what any load balancer sends and keeps a hostile peer from making us
// allocate 64 KiB per connection.
const (
	maxV1Len      = 107
	MaxV2Len      = 4096
	v2FixedLen    = 16
	v1Prefix      = "PROXY "
	cmdLocal      = 0x0
	cmdProxy      = 0x1
	famUnspec     = 0x00
	famTCP4       = 0x11
	famTCP6       = 0x21
	v2AddrLenTCP4 = 12
	v2AddrLenTCP6 = 36
)

var v2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

// Header is a parsed PROXY header.
type Header struct {
	Version int // 1 or 2
	// Local is true for a v2 LOCAL command, v1 "UNKNOWN" or v2 with an
	// unspecified family: the load balancer speaks for itself (a health
	// check) and the connection's own addresses stay in force.
	Local       bool
	Source      netip.AddrPort // the real client; invalid when Local
	Destination netip.AddrPort // the address the client connected to
}

// ErrNotProxy means the first bytes are not a PROXY header at all.
var ErrNotProxy = errors.New("proxyproto: no PROXY protocol header")

// Read reads exactly one header from r and nothing after it, so the
// caller's next read starts with the client's own first byte.
func Read(r io.Reader) (Header, error) {
	var first [6]byte
	if _, err := io.ReadFull(r, first[:1]); err != nil {
		return Header{}, fmt.Errorf("proxyproto: reading header: %w", err)
	}
	switch first[0] {
	case 'P':
		if _, err := io.ReadFull(r, first[1:]); err != nil {
			return Header{}, fmt.Errorf("proxyproto: reading header: %w", err)
		}
		if string(first[:]) != v1Prefix {
			return Header{}, ErrNotProxy
		}
		return readV1(r)
	case '\r':
		return readV2(r)
	}
	return Header{}, ErrNotProxy
}

// readV1 reads the rest of a text header after "PROXY ".
func readV1(r io.Reader) (Header, error) {
	// Byte by byte: a header is read once per connection and reading past
	// the CRLF would swallow the client's SSH version line.
	line := make([]byte, 0, maxV1Len)
	line = append(line, v1Prefix...)
	var b [1]byte
	for {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return Header{}, fmt.Errorf("proxyproto: v1 header truncated: %w", err)
		}
		line = append(line, b[0])
		if b[0] == '\n' {
			break
		}
		if len(line) >= maxV1Len {
			return Header{}, errors.New("proxyproto: v1 header longer than 107 bytes")
		}
	}
	return ParseV1(line)
}

// ParseV1 parses a complete v1 line including "PROXY " and the CRLF.
func ParseV1(line []byte) (Header, error) {
	if len(line) > maxV1Len {
		return Header{}, errors.New("proxyproto: v1 header longer than 107 bytes")
	}
	s, ok := strings.CutSuffix(string(line), "\r\n")
	if !ok {
		return Header{}, errors.New("proxyproto: v1 header does not end with CRLF")
	}
	s, ok = strings.CutPrefix(s, v1Prefix)
	if !ok {
		return Header{}, ErrNotProxy
	}
	f := strings.Split(s, " ")
	if f[0] == "UNKNOWN" {
		// The rest of the line is to be ignored by specification.
		return Header{Version: 1, Local: true}, nil
	}
	if len(f) != 5 {
		return Header{}, errors.New("proxyproto: v1 header must have 6 fields")
	}
	var want4 bool
	switch f[0] {
	case "TCP4":
		want4 = true
	case "TCP6":
	default:
		return Header{}, fmt.Errorf("proxyproto: v1 protocol %q is not TCP4, TCP6 or UNKNOWN", clip(f[0]))
	}
	src, err := v1Addr(f[1], f[3], want4)
	if err != nil {
		return Header{}, fmt.Errorf("proxyproto: v1 source: %w", err)
	}
	dst, err := v1Addr(f[2], f[4], want4)
	if err != nil {
		return Header{}, fmt.Errorf("proxyproto: v1 destination: %w", err)
	}
	return Header{Version: 1, Source: src, Destination: dst}, nil
}

func v1Addr(ip, port string, want4 bool) (netip.AddrPort, error) {
	a, err := netip.ParseAddr(ip)
	if err != nil || a.Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", clip(ip))
	}
	if a.Is4() != want4 {
		return netip.AddrPort{}, fmt.Errorf("address %s does not match the protocol", a)
	}
	// Decimal without sign or leading zeros, as the specification writes it.
	if port == "" || len(port) > 5 || (len(port) > 1 && port[0] == '0') || strings.TrimLeft(port, "0123456789") != "" {
		return netip.AddrPort{}, fmt.Errorf("bad port %q", clip(port))
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad port %q", clip(port))
	}
	return netip.AddrPortFrom(a, uint16(p)), nil
}

// readV2 reads the rest of a binary header after its first byte.
func readV2(r io.Reader) (Header, error) {
	var fixed [v2FixedLen]byte
	fixed[0] = '\r'
	if _, err := io.ReadFull(r, fixed[1:]); err != nil {
		return Header{}, fmt.Errorf("proxyproto: v2 header truncated: %w", err)
	}
	if !bytes.Equal(fixed[:12], v2Sig) {
		return Header{}, ErrNotProxy
	}
	n := int(binary.BigEndian.Uint16(fixed[14:16]))
	if v2FixedLen+n > MaxV2Len {
		return Header{}, fmt.Errorf("proxyproto: v2 header of %d bytes is over the %d byte limit", v2FixedLen+n, MaxV2Len)
	}
	buf := make([]byte, v2FixedLen+n)
	copy(buf, fixed[:])
	if _, err := io.ReadFull(r, buf[v2FixedLen:]); err != nil {
		return Header{}, fmt.Errorf("proxyproto: v2 header truncated: %w", err)
	}
	return ParseV2(buf)
}

// ParseV2 parses a complete binary header (signature, fixed part, addresses
// and TLVs). TLVs are skipped: nothing in them is needed or trusted.
func ParseV2(b []byte) (Header, error) {
	if len(b) < v2FixedLen || !bytes.Equal(b[:12], v2Sig) {
		return Header{}, ErrNotProxy
	}
	if len(b) > MaxV2Len {
		return Header{}, fmt.Errorf("proxyproto: v2 header of %d bytes is over the %d byte limit", len(b), MaxV2Len)
	}
	if v := b[12] >> 4; v != 2 {
		return Header{}, fmt.Errorf("proxyproto: v2 version nibble %d, want 2", v)
	}
	n := int(binary.BigEndian.Uint16(b[14:16]))
	if len(b) != v2FixedLen+n {
		return Header{}, fmt.Errorf("proxyproto: v2 header says %d address bytes, got %d", n, len(b)-v2FixedLen)
	}
	body := b[v2FixedLen:]
	switch b[12] & 0x0f {
	case cmdLocal:
		// Health checks of the balancer itself; the family is ignored.
		return Header{Version: 2, Local: true}, nil
	case cmdProxy:
	default:
		return Header{}, fmt.Errorf("proxyproto: v2 command %d is neither LOCAL nor PROXY", b[12]&0x0f)
	}
	switch b[13] {
	case famUnspec:
		return Header{Version: 2, Local: true}, nil
	case famTCP4:
		if len(body) < v2AddrLenTCP4 {
			return Header{}, errors.New("proxyproto: v2 TCP4 addresses truncated")
		}
		src := netip.AddrFrom4([4]byte(body[0:4]))
		dst := netip.AddrFrom4([4]byte(body[4:8]))
		return Header{Version: 2,
			Source:      netip.AddrPortFrom(src, binary.BigEndian.Uint16(body[8:10])),
			Destination: netip.AddrPortFrom(dst, binary.BigEndian.Uint16(body[10:12]))}, nil
	case famTCP6:
		if len(body) < v2AddrLenTCP6 {
			return Header{}, errors.New("proxyproto: v2 TCP6 addresses truncated")
		}
		src := netip.AddrFrom16([16]byte(body[0:16]))
		dst := netip.AddrFrom16([16]byte(body[16:32]))
		return Header{Version: 2,
			Source:      netip.AddrPortFrom(src, binary.BigEndian.Uint16(body[32:34])),
			Destination: netip.AddrPortFrom(dst, binary.BigEndian.Uint16(body[34:36]))}, nil
	}
	// UDP and unix sockets cannot carry an SSH client.
	return Header{}, fmt.Errorf("proxyproto: v2 address family 0x%02x is not TCP over IPv4 or IPv6", b[13])
}

// clip keeps attacker-supplied text short in error messages.
func clip(s string) string {
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	q := strconv.QuoteToASCII(s)
	return q[1 : len(q)-1]
}

// AppendV1 and AppendV2 encode a header (tests and tools that play load balancer).
func AppendV1(b []byte, h Header) []byte {
	if h.Local {
		return append(b, "PROXY UNKNOWN\r\n"...)
	}
	proto := "TCP6"
	if h.Source.Addr().Is4() {
		proto = "TCP4"
	}
	return fmt.Appendf(b, "PROXY %s %s %s %d %d\r\n", proto, h.Source.Addr(), h.Destination.Addr(),
		h.Source.Port(), h.Destination.Port())
}

// AppendV2 encodes h as a binary header without TLVs.
func AppendV2(b []byte, h Header) []byte {
	b = append(b, v2Sig...)
	if h.Local {
		return append(b, 0x20, famUnspec, 0, 0)
	}
	if h.Source.Addr().Is4() {
		b = append(b, 0x21, famTCP4, 0, v2AddrLenTCP4)
		s, d := h.Source.Addr().As4(), h.Destination.Addr().As4()
		b = append(append(b, s[:]...), d[:]...)
	} else {
		b = append(b, 0x21, famTCP6, 0, v2AddrLenTCP6)
		s, d := h.Source.Addr().As16(), h.Destination.Addr().As16()
		b = append(append(b, s[:]...), d[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, h.Source.Port())
	return binary.BigEndian.AppendUint16(b, h.Destination.Port())
}

// Conn is a connection whose addresses come from a PROXY header.
type Conn struct {
	net.Conn
	Header Header
	remote net.Addr
	local  net.Addr
}

// RemoteAddr is the real client (the balancer's address for LOCAL headers).
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// LocalAddr is the address the client connected to.
func (c *Conn) LocalAddr() net.Addr { return c.local }

// Trusted decides which peers may (and must) send a header.
type Trusted []netip.Prefix

// ParseTrusted parses CIDRs or single addresses.
func ParseTrusted(ss []string) (Trusted, error) {
	var t Trusted
	for _, s := range ss {
		s = strings.TrimSpace(s)
		if !strings.Contains(s, "/") {
			a, err := netip.ParseAddr(s)
			if err != nil || a.Zone() != "" {
				return nil, fmt.Errorf("%q is not an address or CIDR", s)
			}
			a = a.Unmap()
			t = append(t, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR (e.g. 10.0.0.0/8)", s)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		t = append(t, p.Masked())
	}
	return t, nil
}

// Contains reports whether addr (an ip:port net.Addr) is a trusted balancer.
func (t Trusted) Contains(addr net.Addr) bool {
	ip := addrIP(addr)
	if !ip.IsValid() {
		return false
	}
	for _, p := range t {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func addrIP(a net.Addr) netip.Addr {
	if a == nil {
		return netip.Addr{}
	}
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort().Addr().Unmap().WithZone("")
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap().WithZone("")
}

// Wrap returns a function for gateway.Config.WrapConn. A connection from a
// trusted source must start with a valid header or it is refused (the
// caller closes it). Any other connection is returned with its bytes
// untouched, only guarded: if it starts with a PROXY header, the first read
// fails, so the handshake fails and a warning names the peer (a spoofing
// attempt, or a balancer missing from the trusted list). The SSH library
// would otherwise skip a v1 header as a harmless pre-version line.
// The caller sets the read deadline.
func Wrap(trusted Trusted, log hclog.Logger) func(net.Conn) (net.Conn, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return func(c net.Conn) (net.Conn, error) {
		if !trusted.Contains(c.RemoteAddr()) {
			return &guardConn{Conn: c, log: log}, nil
		}
		h, err := Read(c)
		if err != nil {
			if errors.Is(err, ErrNotProxy) {
				return nil, errors.New("trusted load balancer sent no PROXY protocol header")
			}
			return nil, err
		}
		pc := &Conn{Conn: c, Header: h, remote: c.RemoteAddr(), local: c.LocalAddr()}
		if !h.Local {
			pc.remote = net.TCPAddrFromAddrPort(unmap(h.Source))
			pc.local = net.TCPAddrFromAddrPort(unmap(h.Destination))
		}
		return pc, nil
	}
}

// ErrUntrustedHeader is returned by the first read of an untrusted
// connection that starts with a PROXY header.
var ErrUntrustedHeader = errors.New("proxyproto: PROXY header from a source not in the trusted list")

// guardConn watches the first bytes of an untrusted connection. It never
// withholds or changes bytes: SSH clients send "SSH-" first, which differs
// from both signatures at the first byte.
type guardConn struct {
	net.Conn
	log     hclog.Logger
	decided bool
	head    []byte
}

func (g *guardConn) Read(p []byte) (int, error) {
	n, err := g.Conn.Read(p)
	if g.decided || n == 0 {
		return n, err
	}
	g.head = append(g.head, p[:min(n, len(v2Sig)-len(g.head))]...)
	switch {
	case bytes.HasPrefix(g.head, []byte(v1Prefix)), bytes.Equal(g.head, v2Sig):
		g.decided = true
		g.log.Warn("PROXY protocol header from an untrusted source; connection refused (add the load balancer to proxy_protocol.trusted if it is one)",
			"remote", g.Conn.RemoteAddr().String())
		return 0, ErrUntrustedHeader
	case bytes.HasPrefix([]byte(v1Prefix), g.head), bytes.HasPrefix(v2Sig, g.head):
		// Still a possible header: decide with the next bytes.
	default:
		g.decided, g.head = true, nil
	}
	return n, err
}

// unmap turns ::ffff:a.b.c.d into a.b.c.d so IPv4 allow lists match
// clients a dual-stack balancer reports in mapped form.
func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
