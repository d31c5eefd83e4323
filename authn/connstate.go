package authn

import (
	"net/netip"
	"sync"
	"time"
)

// connState is what the authenticator remembers about one connection
// between authentication requests. The SSH library calls back per request;
// this is how "count a rejected key once per connection, and take it back
// if the connection then logs in" is implemented.
type connState struct {
	created        time.Time
	keyFailCounted bool // a rejected key of this connection was counted...
	keyFailIP      netip.Addr
	keyFailUser    string  // ...against this source and user ("" unknown)
	keyFail        counted // ...in these tables
	secondFactor   bool    // the key step passed; keyboard-interactive is ours now
	// keyStep is the principal the verified key produced, for the audit
	// event of a connection that ends before its second step (Unfinished).
	keyStep *Principal
}

// connTable maps an SSH session id to its state. Entries are removed on
// success; failed connections age out (the library gives no close hook),
// and the table is capped so a flood of connections cannot grow it.
type connTable struct {
	mu        sync.Mutex
	m         map[string]*connState
	ttl       time.Duration
	max       int
	lastPrune time.Time
}

func newConnTable() *connTable {
	return &connTable{m: map[string]*connState{}, ttl: 10 * time.Minute, max: 1 << 15}
}

// update runs fn on the connection's state under the table lock.
func (t *connTable) update(id string, now time.Time, fn func(*connState)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.m[id]
	if !ok {
		if len(t.m) >= t.max || now.Sub(t.lastPrune) >= t.ttl {
			t.prune(now)
		}
		s = &connState{created: now}
		t.m[id] = s
	}
	fn(s)
}

// get returns a copy of the connection's state (zero if none).
func (t *connTable) get(id string) connState {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s, ok := t.m[id]; ok {
		return *s
	}
	return connState{}
}

// take returns and forgets the connection's state (zero if none).
func (t *connTable) take(id string) connState {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.m[id]
	if !ok {
		return connState{}
	}
	delete(t.m, id)
	return *s
}

func (t *connTable) prune(now time.Time) {
	t.lastPrune = now
	for id, s := range t.m {
		if now.Sub(s.created) >= t.ttl {
			delete(t.m, id)
		}
	}
	for id := range t.m { // still full of live entries: drop arbitrary ones
		if len(t.m) < t.max*3/4 {
			break
		}
		delete(t.m, id)
	}
}
