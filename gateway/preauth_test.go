package gateway

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

type closeConn struct {
	net.Conn
	closed bool
}

func (c *closeConn) Close() error { c.closed = true; return nil }

func TestParseStartups(t *testing.T) {
	for in, want := range map[string]Startups{"10:30:100": {10, 30, 100}, "64": {10, 30, 64}, "5": {5, 30, 5}} {
		got, err := ParseStartups(in)
		if err != nil || got != want {
			t.Errorf("%q: %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "a", "10:30", "50:30:10", "1:101:10", "0:30:0", "-1:30:10"} {
		if _, err := ParseStartups(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// One address cannot hold more than its share of handshake slots; the
// others still get in.
func TestPreauthPerSourceCap(t *testing.T) {
	p := newPreauth(DefaultStartups, 4, func() float64 { return 0.99 }) // never randomly dropped
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	var held []*preauthSlot
	for i := range 4 {
		s, why := p.admit(a, nil)
		if s == nil {
			t.Fatalf("slot %d refused: %s", i, why)
		}
		held = append(held, s)
	}
	if s, why := p.admit(a, nil); s != nil || !strings.Contains(why, "from this address (limit 4)") {
		t.Fatalf("5th from one address: %v %q", s, why)
	}
	// An IPv6 host owns its /64.
	v6 := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	for i := range 4 {
		if s, _ := p.admit(v6("2001:db8::"+string(rune('1'+i))), nil); s == nil {
			t.Fatalf("v6 slot %d refused", i)
		}
	}
	if s, _ := p.admit(v6("2001:db8::ffff"), nil); s != nil {
		t.Fatal("a 5th address of one /64 got a slot")
	}
	if s, why := p.admit(b, nil); s == nil {
		t.Fatalf("another address refused: %s", why)
	}
	p.release(held[0])
	p.release(held[0]) // twice: counted once
	if s, _ := p.admit(a, nil); s == nil {
		t.Fatal("a released slot was not given back")
	}
	if n := p.inProgress(); n != 9 { // 4 (a) + 4 (one /64) + 1 (b)
		t.Fatalf("in progress %d, want 9", n)
	}
}

// Above start, connections from an address that already has one in
// progress are dropped with OpenSSH's rising probability; a newcomer is not.
func TestPreauthRandomEarlyDrop(t *testing.T) {
	roll := 0.0
	p := newPreauth(Startups{Start: 2, Rate: 30, Full: 12}, 0, func() float64 { return roll })
	a := netip.MustParseAddr("192.0.2.1")
	roll = 0.29 // below 30 %: dropped as soon as start is reached
	for i := range 2 {
		if s, _ := p.admit(a, nil); s == nil {
			t.Fatalf("below start: slot %d refused", i)
		}
	}
	if s, why := p.admit(a, nil); s != nil || !strings.Contains(why, "random early drop") {
		t.Fatalf("at start with roll 0.29: %v %q", s, why)
	}
	if got := p.dropChance(); got != 0.3 {
		t.Fatalf("drop chance at start %v, want 0.3", got)
	}
	roll = 0.31
	if s, _ := p.admit(a, nil); s == nil {
		t.Fatal("roll above the chance was dropped")
	}
	// 3 of 12: 0.3 + 0.7*1/10 = 0.37.
	if got := p.dropChance(); got < 0.369 || got > 0.371 {
		t.Fatalf("drop chance %v, want 0.37", got)
	}
	roll = 0 // would always drop, but a newcomer holds nothing yet
	if s, why := p.admit(netip.MustParseAddr("192.0.2.9"), nil); s == nil {
		t.Fatalf("newcomer dropped: %s", why)
	}
}

// A full pool gives the newcomer the busiest address's oldest slot, whose
// connection is closed.
func TestPreauthFullEvictsBusiest(t *testing.T) {
	p := newPreauth(Startups{Start: 4, Rate: 30, Full: 4}, 0, func() float64 { return 0.99 })
	a := netip.MustParseAddr("192.0.2.1")
	conns := make([]*closeConn, 3)
	slots := make([]*preauthSlot, 3)
	for i := range conns {
		conns[i] = &closeConn{}
		slots[i], _ = p.admit(a, conns[i])
	}
	b := netip.MustParseAddr("192.0.2.2")
	if s, _ := p.admit(b, &closeConn{}); s == nil {
		t.Fatal("4th slot refused")
	}
	c := netip.MustParseAddr("192.0.2.3")
	if s, why := p.admit(c, &closeConn{}); s == nil {
		t.Fatalf("newcomer refused from a full pool held mostly by one address: %s", why)
	}
	if !conns[0].closed || conns[1].closed || !p.wasEvicted(slots[0]) || p.wasEvicted(slots[1]) {
		t.Fatal("the busiest address's oldest connection was not the one closed")
	}
	p.release(slots[0]) // the evicted connection ends: no double count
	if n := p.inProgress(); n != 4 {
		t.Fatalf("in progress %d, want 4", n)
	}
	// Now a:2 b:1 c:1 — b cannot take from a (2 <= 1+1): even shares stay.
	if s, _ := p.admit(b, &closeConn{}); s != nil {
		t.Fatal("an address with a slot evicted one from an address with only one more")
	}
}

// packet frames an unencrypted SSH packet of message type typ.
func packet(typ byte, body int) []byte {
	payload := append([]byte{typ}, make([]byte, body)...)
	pad := 8 - (5+len(payload))%8
	if pad < 4 {
		pad += 8
	}
	b := binary.BigEndian.AppendUint32(nil, uint32(1+len(payload)+pad))
	b = append(b, byte(pad))
	b = append(b, payload...)
	return append(b, make([]byte, pad)...)
}

type bytesConn struct {
	net.Conn
	r io.Reader
}

func (c *bytesConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func TestKexConnSeesNewKeys(t *testing.T) {
	stream := []byte("SSH-2.0-test\r\n")
	stream = append(stream, packet(20, 1500)...) // KEXINIT
	stream = append(stream, packet(30, 1200)...) // KEX_ECDH_INIT
	withNewKeys := append(append([]byte{}, stream...), packet(msgNewKeys, 0)...)
	withNewKeys = append(withNewKeys, 0xde, 0xad, 0, 0, 0, 21) // encrypted junk after: ignored
	for _, step := range []int{1, 3, 7, 64, 4096} {
		for _, tc := range []struct {
			data []byte
			want int
		}{{stream, 0}, {withNewKeys, 1}} {
			calls := 0
			c := &kexConn{Conn: nil, onKex: func() { calls++ }}
			for i := 0; i < len(tc.data); i += step {
				c.scan(tc.data[i:min(i+step, len(tc.data))])
			}
			if calls != tc.want {
				t.Errorf("step %d: onKex called %d times, want %d", step, calls, tc.want)
			}
		}
	}
}

// A silent socket is closed at the key-exchange deadline, long before the
// authentication deadline; a client that finished the key exchange keeps
// the rest of the authentication time.
func TestKexDeadlineSeparate(t *testing.T) {
	const kex, auth = 300 * time.Millisecond, 4 * time.Second
	ts := startServer(t, func(c *Config) { c.KexTimeout, c.HandshakeTimeout = kex, auth })
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(auth + time.Second))
	_, err = io.Copy(io.Discard, c)
	var ne net.Error
	if took := time.Since(start); (errors.As(err, &ne) && ne.Timeout()) || took >= auth/2 {
		t.Fatalf("silent socket closed after %s (err %v); want about %s, well under %s", took, err, kex, auth)
	} else {
		t.Logf("silent socket closed after %s (kex timeout %s, auth timeout %s)", took.Round(time.Millisecond), kex, auth)
	}

	// The key exchange is over when the client asks for its signers: wait
	// there 3 x the kex timeout (still within the auth timeout).
	slow := ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
		time.Sleep(3 * kex)
		return []ssh.Signer{ts.client}, nil
	})
	sc, err := ssh.Dial("tcp", ts.addr, &ssh.ClientConfig{User: "slow", Auth: []ssh.AuthMethod{slow},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: auth})
	if err != nil {
		t.Fatalf("login that authenticated after the kex deadline failed: %v", err)
	}
	sc.Close()
}
