package gateway

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/authn"
	"github.com/sftpgw/sftpgw/vfs"
	"github.com/sftpgw/sftpgw/vfs/localstore"
)

// fakeAuth accepts any key; the user name picks the principal. Unit tests
// only: the real policy is authn's, tested there and end to end.
type fakeAuth struct {
	mu    sync.Mutex
	roles map[string]int // user → Principal.MaxSessions
	wait  chan struct{}  // if set, Principal blocks until it is closed
	in    atomic.Int64   // callers that reached Principal
}

func (f *fakeAuth) Configure(c *ssh.ServerConfig) {
	c.PublicKeyCallback = func(cm ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		return &ssh.Permissions{Extensions: map[string]string{"user": cm.User(), "fp": ssh.FingerprintSHA256(k)}}, nil
	}
}
func (f *fakeAuth) AllowConn(net.Addr) bool { return true }
func (f *fakeAuth) Principal(p *ssh.Permissions) (*authn.Principal, error) {
	f.in.Add(1)
	if f.wait != nil {
		<-f.wait
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	u := p.Extensions["user"]
	return &authn.Principal{User: u, Role: "partner", Storage: "files", Home: u + "/", Perms: vfs.PermAll,
		KeyFP: p.Extensions["fp"], MaxSessions: f.roles[u]}, nil
}

// syncEvents is a concurrency-safe audit recorder.
type syncEvents struct {
	mu  sync.Mutex
	evs []audit.Event
}

func (s *syncEvents) Record(e audit.Event) { s.mu.Lock(); s.evs = append(s.evs, e); s.mu.Unlock() }
func (s *syncEvents) find(kind, class string) []audit.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []audit.Event
	for _, e := range s.evs {
		if e.Kind == kind && (class == "" || e.ErrClass == class) {
			out = append(out, e)
		}
	}
	return out
}

type testServer struct {
	*Server
	addr   string
	events *syncEvents
	auth   *fakeAuth
	client ssh.Signer
}

// startServer runs a gateway on a local directory with fakeAuth.
func startServer(t *testing.T, tweak func(*Config)) *testServer {
	t.Helper()
	st, err := localstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	_, hk, _ := ed25519.GenerateKey(rand.Reader)
	hs, _ := ssh.NewSignerFromKey(hk)
	_, ck, _ := ed25519.GenerateKey(rand.Reader)
	cs, _ := ssh.NewSignerFromKey(ck)
	ev := &syncEvents{}
	fa := &fakeAuth{roles: map[string]int{}}
	cfg := Config{HostKeys: []ssh.Signer{hs}, Auth: fa, Stores: map[string]vfs.Store{"files": st}, Audit: ev}
	if tweak != nil {
		tweak(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return &testServer{Server: srv, addr: ln.Addr().String(), events: ev, auth: fa, client: cs}
}

// dialFrom logs in as user from the local address from ("" : default).
func (ts *testServer) dialFrom(user, from string) (*ssh.Client, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: netip.MustParseAddr(from).AsSlice()}
	}
	c, err := d.Dial("tcp", ts.addr)
	if err != nil {
		return nil, err
	}
	sc, chans, reqs, err := ssh.NewClientConn(c, ts.addr, &ssh.ClientConfig{User: user,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(ts.client)}, HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		Timeout: 10 * time.Second})
	if err != nil {
		c.Close()
		return nil, err
	}
	return ssh.NewClient(sc, chans, reqs), nil
}

func (ts *testServer) dial(t *testing.T, user string) *ssh.Client {
	t.Helper()
	c, err := ts.dialFrom(user, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
