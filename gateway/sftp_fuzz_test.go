package gateway_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/crypto/ssh"

	"github.com/sftpgw/sftpgw/authn"
	"github.com/sftpgw/sftpgw/gateway"
	"github.com/sftpgw/sftpgw/vfs"
	"github.com/sftpgw/sftpgw/vfs/localstore"
)

// fuzzAuth lets every client in as one fixed principal: the fuzz target is
// the SFTP layer behind authentication, where any logged-in user can send
// whatever bytes they like.
type fuzzAuth struct{}

func (fuzzAuth) Configure(c *ssh.ServerConfig) { c.NoClientAuth = true }
func (fuzzAuth) AllowConn(net.Addr) bool       { return true }
func (fuzzAuth) Principal(*ssh.Permissions) (*authn.Principal, error) {
	return &authn.Principal{User: "fuzz", Role: "fuzz", Storage: "files", Home: "home/", Perms: vfs.PermAll}, nil
}

// fuzzGateway is the gateway under fuzz: one per fuzz process, with an SSH
// connection that is replaced when an input broke it (after that input has
// been reported).
type fuzzGateway struct {
	addr   string
	signer ssh.Signer
	conn   *ssh.Client
	panics *panicLog
}

// panicLog counts the handler panics the gateway recovered from: they keep
// the process alive, so only the log tells the fuzzer an input found one.
type panicLog struct {
	mu   sync.Mutex
	msgs []string
}

func (p *panicLog) Write(b []byte) (int, error) {
	if bytes.Contains(b, []byte("panic")) {
		p.mu.Lock()
		p.msgs = append(p.msgs, string(b))
		p.mu.Unlock()
	}
	return len(b), nil
}

func (p *panicLog) take() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.msgs
	p.msgs = nil
	return m
}

func startFuzzGateway(f *testing.F) *fuzzGateway {
	st, err := localstore.New(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	_, hk, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(hk)
	g := &fuzzGateway{signer: signer, panics: &panicLog{}}
	log := hclog.New(&hclog.LoggerOptions{Level: hclog.Error, Output: g.panics})
	srv, err := gateway.New(gateway.Config{HostKeys: []ssh.Signer{signer}, Auth: fuzzAuth{},
		Stores: map[string]vfs.Store{"files": st}, Log: log})
	if err != nil {
		f.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	g.addr = ln.Addr().String()
	go srv.Serve(ln)
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	if err := g.dial(); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { g.conn.Close() })
	return g
}

func (g *fuzzGateway) dial() error {
	conn, err := ssh.Dial("tcp", g.addr, &ssh.ClientConfig{
		User: "fuzz", HostKeyCallback: ssh.FixedHostKey(g.signer.PublicKey()), Timeout: 10 * time.Second})
	if err != nil {
		return err
	}
	g.conn = conn
	return nil
}

// session opens a channel. The gateway caps open channels per connection
// and counts one as closed a moment after the client saw it end, so a
// refusal for that reason is retried; channels still counted after
// fuzzHang were leaked, which fails the input.
func (g *fuzzGateway) session() (*ssh.Session, error) {
	deadline := time.Now().Add(fuzzHang)
	for {
		s, err := g.conn.NewSession()
		var oce *ssh.OpenChannelError
		if err == nil || !errors.As(err, &oce) || oce.Reason != ssh.ResourceShortage || time.Now().After(deadline) {
			return s, err
		}
		time.Sleep(time.Millisecond)
	}
}

// alive reports whether the SSH connection still carries requests: the
// gateway answers every global request (keepalive included) while it is up.
func (g *fuzzGateway) alive() error {
	_, _, err := g.conn.SendRequest("keepalive@openssh.com", true, nil)
	return err
}

// crashOutput sends the fatal error text of this process (an unrecovered
// panic in a gateway goroutine, a runtime fatal error) to a file in
// $SFTPGW_FUZZ_CRASH_DIR: go test -fuzz discards its workers' stderr, so
// without this a crash shows only as "fuzzing process hung or terminated
// unexpectedly" with the input saved but not the reason.
func crashOutput(f *testing.F) {
	dir := os.Getenv("SFTPGW_FUZZ_CRASH_DIR")
	if dir == "" {
		return
	}
	out, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%d.txt", f.Name(), os.Getpid())))
	if err != nil {
		f.Fatal(err)
	}
	if err := debug.SetCrashOutput(out, debug.CrashOptions{}); err != nil {
		f.Fatal(err)
	}
	out.Close() // SetCrashOutput keeps its own copy of the descriptor
}

// fuzzHang is how long the gateway may take to end an SFTP channel after the
// client closed its side. An input is a few KiB against a local directory,
// done in milliseconds; 3 s leaves a margin of over 100× for a busy 2-core
// machine yet stays short next to -fuzztime. A hang ends the input as a
// failure (saved under testdata/fuzz) with the gateway's goroutines printed.
const fuzzHang = 3 * time.Second

// pkt frames one SFTP packet.
func pkt(typ byte, parts ...[]byte) []byte {
	body := []byte{typ}
	for _, p := range parts {
		body = append(body, p...)
	}
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
func sstr(s string) []byte { return append(be32(uint32(len(s))), s...) }

// FuzzSFTPPackets sends INIT and then arbitrary bytes as the SFTP stream
// of one channel. Whatever arrives, the gateway must not panic (a panic in
// a request handler takes down every session), and must answer or close.
func FuzzSFTPPackets(f *testing.F) {
	cat := func(ps ...[]byte) []byte {
		var b []byte
		for _, p := range ps {
			b = append(b, p...)
		}
		return b
	}
	f.Add(cat(pkt(3, be32(1), sstr("f"), be32(0x1a), be32(0)), pkt(6, be32(2), sstr("0"), be64(0), sstr("hello")), pkt(4, be32(3), sstr("0"))))
	f.Add(pkt(9, be32(1), sstr("f"), be32(0xffffffff)))    // truncated attributes (crashed the gateway once)
	f.Add(pkt(10, be32(1), sstr("0"), be32(0x1), be32(1))) // fsetstat, short size
	f.Add(cat(pkt(11, be32(1), sstr("/")), pkt(12, be32(2), sstr("0")), pkt(12, be32(3), sstr("0"))))
	f.Add(pkt(18, be32(1), sstr("a"), sstr("../../b")))
	f.Add(pkt(200, be32(1), sstr("posix-rename@openssh.com"), sstr("a")))
	f.Add(pkt(200, be32(1), sstr("statvfs@openssh.com"), sstr("/")))
	f.Add(pkt(200, be32(1), sstr("limits@openssh.com")))
	f.Add(pkt(17, be32(1), sstr("\xff\xfe")))
	f.Add(pkt(5, be32(1), sstr("nohandle"), be64(1<<63), be32(0xffffffff)))
	crashOutput(f)
	g := startFuzzGateway(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		// A connection broken by the previous input failed that input; each
		// input starts from a live one.
		if g.alive() != nil {
			if err := g.dial(); err != nil {
				t.Fatal("gateway no longer accepts connections:", err)
			}
		}
		s, err := g.session()
		if err != nil {
			t.Fatal("opening a channel:", err)
		}
		defer s.Close()
		w, _ := s.StdinPipe()
		r, _ := s.StdoutPipe()
		if err := s.RequestSubsystem("sftp"); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { io.Copy(io.Discard, r); close(done) }()
		w.Write(pkt(1, be32(3)))
		w.Write(data)
		w.Close()
		select {
		case <-done:
		case <-time.After(fuzzHang):
			// The client has closed its side: open handles and requests in
			// flight must end with the channel, or a session can pin the
			// gateway (and its shutdown) forever.
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("gateway still holds the SFTP channel %v after the client closed it; goroutines:\n%s", fuzzHang, buf)
		}
		if err := g.alive(); err != nil {
			t.Fatal("the input broke the SSH connection:", err)
		}
		if p := g.panics.take(); len(p) > 0 {
			t.Fatalf("a request handler panicked (recovered, but a bug):\n%s", strings.Join(p, "\n"))
		}
	})
}
