package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestReadV1(t *testing.T) {
	cases := []struct {
		in       string
		src, dst string
		local    bool
	}{
		{in: "PROXY TCP4 192.0.2.10 198.51.100.1 56324 2222\r\n", src: "192.0.2.10:56324", dst: "198.51.100.1:2222"},
		{in: "PROXY TCP6 2001:db8::1 2001:db8::2 65535 22\r\n", src: "[2001:db8::1]:65535", dst: "[2001:db8::2]:22"},
		{in: "PROXY TCP4 0.0.0.0 255.255.255.255 0 0\r\n", src: "0.0.0.0:0", dst: "255.255.255.255:0"},
		{in: "PROXY UNKNOWN\r\n", local: true},
		{in: "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n", local: true},
	}
	for _, c := range cases {
		// The client's first bytes follow the header and must stay unread.
		r := strings.NewReader(c.in + "SSH-2.0-OpenSSH_9.2\r\n")
		h, err := Read(r)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if rest, _ := io.ReadAll(r); string(rest) != "SSH-2.0-OpenSSH_9.2\r\n" {
			t.Errorf("%q: header reader consumed client bytes, left %q", c.in, rest)
		}
		if h.Version != 1 || h.Local != c.local {
			t.Errorf("%q: got %+v", c.in, h)
		}
		if !c.local && (h.Source.String() != c.src || h.Destination.String() != c.dst) {
			t.Errorf("%q: source %s destination %s", c.in, h.Source, h.Destination)
		}
	}
}

func TestReadV1Invalid(t *testing.T) {
	bad := []string{
		"PROXY TCP4 192.0.2.10 198.51.100.1 56324 2222\n",          // LF only
		"PROXY TCP4 192.0.2.10 198.51.100.1 56324\r\n",             // missing field
		"PROXY TCP4 192.0.2.10 198.51.100.1 56324 2222 x\r\n",      // extra field
		"PROXY TCP4 2001:db8::1 198.51.100.1 56324 2222\r\n",       // family mismatch
		"PROXY TCP6 192.0.2.10 2001:db8::2 1 2\r\n",                // family mismatch
		"PROXY TCP4 192.0.2.10 198.51.100.1 65536 2222\r\n",        // port range
		"PROXY TCP4 192.0.2.10 198.51.100.1 022 2222\r\n",          // leading zero
		"PROXY TCP4 192.0.2.10 198.51.100.1 +22 2222\r\n",          // sign
		"PROXY TCP4 192.0.2.010 198.51.100.1 22 2222\r\n",          // octal-looking address
		"PROXY TCP4  192.0.2.10 198.51.100.1 22 2222\r\n",          // double space
		"PROXY UDP4 192.0.2.10 198.51.100.1 22 2222\r\n",           // not TCP
		"PROXY TCP6 fe80::1%eth0 2001:db8::2 22 2222\r\n",          // zone
		"PROXY TCP4 192.0.2.10 198.51.100.1 56324 2222",            // truncated, EOF
		"PROXY TCP4 192.0.2.10 198.51.100.1 56324 2222\r",          // truncated before LF
		"PROXY " + strings.Repeat("A", 200) + "\r\n",               // oversize
		"PROXY TCP6 " + strings.Repeat("1:", 60) + "1 ::1 1 2\r\n", // oversize
		"PROXY",                 // truncated prefix
		"PROXYTCP4 1.2.3.4\r\n", // no space
		"SSH-2.0-OpenSSH_9.2\r\n",
		"GET / HTTP/1.0\r\n\r\n",
		"",
	}
	for _, in := range bad {
		if h, err := Read(strings.NewReader(in)); err == nil {
			t.Errorf("%q accepted as %+v", in, h)
		}
	}
	// An over-long line must be refused without reading past the limit.
	r := &countingReader{r: strings.NewReader("PROXY " + strings.Repeat("A", 10000))}
	if _, err := Read(r); err == nil || r.n > maxV1Len {
		t.Errorf("oversize v1: err %v after reading %d bytes (limit %d)", err, r.n, maxV1Len)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// v2 builds a binary header by hand (not with AppendV2, so the encoder is
// not tested against itself).
func v2(verCmd, fam byte, body []byte) []byte {
	b := []byte("\r\n\r\n\x00\r\nQUIT\n")
	b = append(b, verCmd, fam)
	b = binary.BigEndian.AppendUint16(b, uint16(len(body)))
	return append(b, body...)
}

func TestReadV2(t *testing.T) {
	tcp4 := []byte{192, 0, 2, 10, 198, 51, 100, 1, 0xdc, 0x04, 0x08, 0xae} // ports 56324, 2222
	tlv := []byte{0x04, 0x00, 0x03, 'a', 'b', 'c'}                         // PP2_TYPE_NOOP with 3 bytes
	tcp6 := append(append(netip.MustParseAddr("2001:db8::1").AsSlice(), netip.MustParseAddr("2001:db8::2").AsSlice()...), 0xff, 0xff, 0x00, 0x16)
	cases := []struct {
		name     string
		in       []byte
		src, dst string
		local    bool
	}{
		{"tcp4", v2(0x21, 0x11, tcp4), "192.0.2.10:56324", "198.51.100.1:2222", false},
		{"tcp4 with TLV", v2(0x21, 0x11, append(append([]byte{}, tcp4...), tlv...)), "192.0.2.10:56324", "198.51.100.1:2222", false},
		{"tcp6", v2(0x21, 0x21, tcp6), "[2001:db8::1]:65535", "[2001:db8::2]:22", false},
		{"local", v2(0x20, 0x00, nil), "", "", true},
		{"local ignores family", v2(0x20, 0x11, tcp4), "", "", true},
		{"proxy unspec", v2(0x21, 0x00, nil), "", "", true},
	}
	for _, c := range cases {
		r := bytes.NewReader(append(append([]byte{}, c.in...), "SSH-2.0-x\r\n"...))
		h, err := Read(r)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if rest, _ := io.ReadAll(r); string(rest) != "SSH-2.0-x\r\n" {
			t.Errorf("%s: left %q after the header", c.name, rest)
		}
		if h.Version != 2 || h.Local != c.local {
			t.Errorf("%s: got %+v", c.name, h)
		}
		if !c.local && (h.Source.String() != c.src || h.Destination.String() != c.dst) {
			t.Errorf("%s: source %s destination %s", c.name, h.Source, h.Destination)
		}
	}
}

func TestReadV2Invalid(t *testing.T) {
	tcp4 := []byte{192, 0, 2, 10, 198, 51, 100, 1, 0xdc, 0x04, 0x08, 0xae}
	whole := v2(0x21, 0x11, tcp4)
	cases := map[string][]byte{
		"bad signature":       append([]byte("\r\n\r\n\x00\r\nQUIX\n"), whole[12:]...),
		"version 1 nibble":    v2(0x11, 0x11, tcp4),
		"version 3 nibble":    v2(0x31, 0x11, tcp4),
		"command 2":           v2(0x22, 0x11, tcp4),
		"udp4":                v2(0x21, 0x12, tcp4),
		"unix stream":         v2(0x21, 0x31, make([]byte, 216)),
		"tcp4 short body":     v2(0x21, 0x11, tcp4[:11]),
		"tcp6 with tcp4 body": v2(0x21, 0x21, tcp4),
		"truncated fixed":     whole[:10],
		"truncated body":      whole[:len(whole)-3],
		"oversize":            v2(0x21, 0x11, make([]byte, MaxV2Len)),
		"max length claim":    append(append([]byte{}, whole[:14]...), 0xff, 0xff),
		"empty":               {},
		"cr only":             {'\r'},
	}
	for name, in := range cases {
		if h, err := Read(bytes.NewReader(in)); err == nil {
			t.Errorf("%s accepted as %+v", name, h)
		}
	}
	// The length field is checked before anything is allocated or read.
	r := &countingReader{r: io.MultiReader(bytes.NewReader(append(append([]byte{}, whole[:14]...), 0xff, 0xff)), zeros{})}
	if _, err := Read(r); err == nil || r.n > v2FixedLen {
		t.Errorf("oversize v2: err %v after %d bytes", err, r.n)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestParseDirect(t *testing.T) {
	if _, err := ParseV2(v2(0x21, 0x11, make([]byte, 12))[:20]); err == nil {
		t.Error("ParseV2 accepted a length mismatch")
	}
	if _, err := ParseV1([]byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n")); err != nil {
		t.Error(err)
	}
	if _, err := ParseV1([]byte("HELLO\r\n")); !errors.Is(err, ErrNotProxy) {
		t.Errorf("ParseV1 of a non-header: %v", err)
	}
}

func TestRoundTripEncoders(t *testing.T) {
	for _, h := range []Header{
		{Source: netip.MustParseAddrPort("203.0.113.7:40000"), Destination: netip.MustParseAddrPort("10.0.0.1:2222")},
		{Source: netip.MustParseAddrPort("[2001:db8::7]:1"), Destination: netip.MustParseAddrPort("[2001:db8::1]:2222")},
		{Local: true},
	} {
		for v, enc := range map[int][]byte{1: AppendV1(nil, h), 2: AppendV2(nil, h)} {
			got, err := Read(bytes.NewReader(enc))
			if err != nil {
				t.Fatalf("v%d %+v: %v", v, h, err)
			}
			if got.Version != v || got.Local != h.Local || got.Source != h.Source || got.Destination != h.Destination {
				t.Errorf("v%d: wrote %+v, read %+v", v, h, got)
			}
		}
	}
}

func TestParseTrusted(t *testing.T) {
	tr, err := ParseTrusted([]string{"10.0.0.0/8", "192.0.2.7", "::ffff:172.16.0.0/108", "2001:db8::/32"})
	if err != nil {
		t.Fatal(err)
	}
	in := map[string]bool{"10.1.2.3:1": true, "[::ffff:10.1.2.3]:1": true, "192.0.2.7:5": true, "192.0.2.8:5": false,
		"172.16.5.5:9": true, "172.32.0.1:9": false, "[2001:db8::5]:1": true, "[2001:db9::5]:1": false}
	for a, want := range in {
		addr := net.TCPAddrFromAddrPort(netip.MustParseAddrPort(a))
		if got := tr.Contains(addr); got != want {
			t.Errorf("Contains(%s) = %v, want %v", a, got, want)
		}
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com", "fe80::1%eth0"} {
		if _, err := ParseTrusted([]string{bad}); err == nil {
			t.Errorf("ParseTrusted(%q) accepted", bad)
		}
	}
}

// TestWrap runs the wrapper over real loopback TCP: a trusted peer's header
// replaces the addresses; a trusted peer without one is refused; an
// untrusted peer's bytes, header or not, pass through untouched.
func TestWrap(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dial := func(payload []byte) net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := c.Write(payload); err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		_ = s.SetDeadline(time.Now().Add(5 * time.Second))
		return s
	}
	trustLo := Wrap(Trusted{netip.MustParsePrefix("127.0.0.0/8")}, nil)
	trustOther := Wrap(Trusted{netip.MustParsePrefix("10.0.0.0/8")}, nil)
	hdr := AppendV2(nil, Header{Source: netip.MustParseAddrPort("203.0.113.9:4242"), Destination: netip.MustParseAddrPort("198.51.100.2:22")})

	c, err := trustLo(dial(append(append([]byte{}, hdr...), "SSH-2.0-x\r\n"...)))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.RemoteAddr().String(); got != "203.0.113.9:4242" {
		t.Errorf("RemoteAddr %s, want the header's source", got)
	}
	if _, ok := c.RemoteAddr().(*net.TCPAddr); !ok {
		t.Errorf("RemoteAddr is %T, want *net.TCPAddr (allow lists type-switch on it)", c.RemoteAddr())
	}
	if got := c.LocalAddr().String(); got != "198.51.100.2:22" {
		t.Errorf("LocalAddr %s", got)
	}
	buf := make([]byte, 11)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "SSH-2.0-x\r\n" {
		t.Errorf("client bytes after header: %q %v", buf, err)
	}

	if _, err := trustLo(dial([]byte("SSH-2.0-OpenSSH_9.2\r\n"))); err == nil {
		t.Error("trusted peer without a header was accepted")
	}

	// Untrusted: addresses and bytes stay as they are for a real client...
	raw := dial([]byte("SSH-2.0-OpenSSH_9.2\r\n"))
	c, err = trustOther(raw)
	if err != nil {
		t.Fatal(err)
	}
	if c.RemoteAddr().String() != raw.RemoteAddr().String() {
		t.Error("untrusted connection's address was altered")
	}
	buf = make([]byte, 21)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "SSH-2.0-OpenSSH_9.2\r\n" {
		t.Errorf("untrusted client's bytes: %q %v", buf, err)
	}
	// ...but a header from an untrusted peer fails the first read, whole
	// or in pieces, v1 or v2, and its address is never used.
	for _, h := range [][]byte{hdr, AppendV1(nil, Header{Source: netip.MustParseAddrPort("203.0.113.9:1"), Destination: netip.MustParseAddrPort("198.51.100.2:22")})} {
		for _, step := range []int{1, 3, 64} {
			c, err := trustOther(dial(append(append([]byte{}, h...), "SSH-2.0-x\r\n"...)))
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(c.RemoteAddr().String(), "203.0.113.9") {
				t.Fatal("untrusted header was parsed")
			}
			var rerr error
			for i := 0; i < 20 && rerr == nil; i++ {
				_, rerr = c.Read(make([]byte, step))
			}
			if !errors.Is(rerr, ErrUntrustedHeader) {
				t.Errorf("v%d header from an untrusted peer read in steps of %d: %v, want ErrUntrustedHeader", h[0]%2+1, step, rerr)
			}
		}
	}

	c, err = trustLo(dial(AppendV1(nil, Header{Local: true})))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(c.RemoteAddr().String(), "127.0.0.1:") {
		t.Errorf("LOCAL header changed the address to %s", c.RemoteAddr())
	}
}

// FuzzRead checks that no input panics or over-reads, and that whatever is
// accepted re-encodes to an equal header.
func FuzzRead(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.10 198.51.100.1 56324 2222\r\nSSH-2.0-x\r\n"))
	f.Add([]byte("PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add(v2(0x21, 0x11, []byte{192, 0, 2, 10, 198, 51, 100, 1, 0xdc, 0x04, 0x08, 0xae}))
	f.Add(v2(0x21, 0x21, make([]byte, 36)))
	f.Add(v2(0x20, 0x00, nil))
	f.Add([]byte("SSH-2.0-OpenSSH_9.2\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		h, err := Read(r)
		if err != nil {
			return
		}
		used := data[:len(data)-r.Len()]
		switch h.Version {
		case 1:
			if !bytes.HasSuffix(used, []byte("\r\n")) || bytes.Count(used, []byte("\n")) != 1 || len(used) > maxV1Len {
				t.Fatalf("v1 header consumed %q", used)
			}
		case 2:
			if len(used) != v2FixedLen+int(binary.BigEndian.Uint16(used[14:16])) || len(used) > MaxV2Len {
				t.Fatalf("v2 header consumed %d bytes", len(used))
			}
		default:
			t.Fatalf("version %d", h.Version)
		}
		if h.Local {
			return
		}
		if h.Source.Addr().Is4() != h.Destination.Addr().Is4() {
			t.Fatalf("mixed families accepted: %+v", h)
		}
		for _, enc := range [][]byte{AppendV1(nil, h), AppendV2(nil, h)} {
			back, err := Read(bytes.NewReader(enc))
			if err != nil || back.Source != h.Source || back.Destination != h.Destination {
				t.Fatalf("re-encoding %+v: %+v, %v", h, back, err)
			}
		}
	})
}
