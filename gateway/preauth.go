package gateway

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
)

// Startups is OpenSSH's MaxStartups "start:rate:full" for connections that
// have not authenticated yet: below Start every connection is admitted;
// from Start on, a connection from a source that already has one in
// progress is dropped with a probability rising linearly from Rate percent
// to 100 % at Full; at Full the pool is full.
type Startups struct {
	Start, Rate, Full int
}

// DefaultStartups is OpenSSH's default, 10:30:100.
var DefaultStartups = Startups{Start: 10, Rate: 30, Full: 100}

// DefaultPerSourceStartups caps the handshakes in progress from one source
// (an IPv4 address or an IPv6 /64). Ten covers a client that opens a
// connection pool at once (rclone: transfers + checkers) and an office
// behind one NAT address; a flood from one address holds no more.
const DefaultPerSourceStartups = 10

// ParseStartups reads "start:rate:full" (or a single number: the full
// pool, with start = min(10, full) and rate 30).
func ParseStartups(s string) (Startups, error) {
	f := strings.Split(s, ":")
	n := make([]int, len(f))
	for i, x := range f {
		v, err := strconv.Atoi(strings.TrimSpace(x))
		if err != nil || v < 0 {
			return Startups{}, fmt.Errorf("%q is not start:rate:full, e.g. \"10:30:100\"", s)
		}
		n[i] = v
	}
	var st Startups
	switch len(n) {
	case 1:
		st = Startups{Start: min(10, n[0]), Rate: 30, Full: n[0]}
	case 3:
		st = Startups{Start: n[0], Rate: n[1], Full: n[2]}
	default:
		return Startups{}, fmt.Errorf("%q is not start:rate:full, e.g. \"10:30:100\"", s)
	}
	if st.Full < 1 || st.Start > st.Full || st.Rate > 100 {
		return Startups{}, fmt.Errorf("%q: need 1 <= full, start <= full and rate <= 100", s)
	}
	return st, nil
}

func (s Startups) String() string { return fmt.Sprintf("%d:%d:%d", s.Start, s.Rate, s.Full) }

// preauthSlot is one connection holding a pre-authentication slot.
type preauthSlot struct {
	src     netip.Addr
	conn    net.Conn // closed when the slot is evicted
	gone    bool     // released or evicted
	evicted bool     // closed to make room for another source
}

// preauth admits connections to the handshake. It is the only place that
// counts them, under one lock, so the per-source cap, the random early
// drop and the hard limit see the same numbers.
type preauth struct {
	mu        sync.Mutex
	st        Startups
	perSource int
	total     int
	bySource  map[netip.Addr][]*preauthSlot // oldest first
	rand      func() float64                // [0,1); tests inject it
}

func newPreauth(st Startups, perSource int, rnd func() float64) *preauth {
	if rnd == nil {
		rnd = rand.Float64
	}
	return &preauth{st: st, perSource: perSource, bySource: map[netip.Addr][]*preauthSlot{}, rand: rnd}
}

// preauthKey groups addresses as the lockout does: IPv4 address, IPv6 /64.
func preauthKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// admit takes a slot for conn from ip, or says why not (a reason for the
// audit trail and the client). When the pool is full, a newcomer from a
// source with fewer handshakes in progress than the busiest source takes
// the busiest source's oldest slot: a flood from a few addresses cannot
// keep everyone else out.
func (p *preauth) admit(ip netip.Addr, conn net.Conn) (*preauthSlot, string) {
	src := preauthKey(ip)
	p.mu.Lock()
	defer p.mu.Unlock()
	mine := len(p.bySource[src])
	if p.perSource > 0 && mine >= p.perSource {
		return nil, fmt.Sprintf("too many unauthenticated connections from this address (limit %d)", p.perSource)
	}
	if p.total >= p.st.Full {
		victim := p.busiest()
		if victim == src || len(p.bySource[victim]) <= mine+1 {
			return nil, fmt.Sprintf("too many unauthenticated connections (limit %d)", p.st.Full)
		}
		p.evict(victim)
	} else if mine > 0 && p.total >= p.st.Start && p.rand() < p.dropChance() {
		return nil, fmt.Sprintf("too many unauthenticated connections (random early drop above %d)", p.st.Start)
	}
	s := &preauthSlot{src: src, conn: conn}
	p.bySource[src] = append(p.bySource[src], s)
	p.total++
	return s, ""
}

// dropChance is OpenSSH's: rate % at start, rising linearly to 100 % at full.
func (p *preauth) dropChance() float64 {
	if p.st.Full <= p.st.Start {
		return 1
	}
	r := float64(p.st.Rate) / 100
	return r + (1-r)*float64(p.total-p.st.Start)/float64(p.st.Full-p.st.Start)
}

// busiest is the source with the most slots; called with mu held.
func (p *preauth) busiest() netip.Addr {
	var best netip.Addr
	n := 0
	for src, ss := range p.bySource {
		if len(ss) > n {
			best, n = src, len(ss)
		}
	}
	return best
}

// evict closes the oldest slot of src; called with mu held. The slot is
// forgotten at once; its connection's release is then a no-op.
func (p *preauth) evict(src netip.Addr) {
	ss := p.bySource[src]
	s := ss[0]
	p.drop(s)
	s.gone, s.evicted = true, true
	if s.conn != nil {
		_ = s.conn.Close()
	}
}

// drop forgets s; called with mu held.
func (p *preauth) drop(s *preauthSlot) {
	ss := p.bySource[s.src]
	for i, x := range ss {
		if x == s {
			ss = append(ss[:i], ss[i+1:]...)
			p.total--
			break
		}
	}
	if len(ss) == 0 {
		delete(p.bySource, s.src)
	} else {
		p.bySource[s.src] = ss
	}
}

// release frees s once the handshake ended (either way).
func (p *preauth) release(s *preauthSlot) {
	if s == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !s.gone {
		p.drop(s)
		s.gone = true // a second release is a no-op
	}
}

// wasEvicted reports whether s lost its slot to a newcomer.
func (p *preauth) wasEvicted(s *preauthSlot) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return s.evicted
}

// inProgress is the number of handshakes holding a slot.
func (p *preauth) inProgress() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total
}
