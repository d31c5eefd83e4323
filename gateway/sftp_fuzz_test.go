package gateway_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

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

// fuzzConn starts a gateway over a local directory for the fuzz run and
// returns an SSH connection to it (one channel per input).
func fuzzConn(f *testing.F) *ssh.Client {
	st, err := localstore.New(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	_, hk, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(hk)
	srv, err := gateway.New(gateway.Config{HostKeys: []ssh.Signer{signer}, Auth: fuzzAuth{},
		Stores: map[string]vfs.Store{"files": st}})
	if err != nil {
		f.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	go srv.Serve(ln)
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	conn, err := ssh.Dial("tcp", ln.Addr().String(), &ssh.ClientConfig{
		User: "fuzz", HostKeyCallback: ssh.FixedHostKey(signer.PublicKey()), Timeout: 10 * time.Second})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { conn.Close() })
	return conn
}

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
	conn := fuzzConn(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := conn.NewSession()
		if err != nil {
			t.Skip("connection gone:", err) // only after a gateway failure, which the crash would show
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
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		select {
		case <-done:
		case <-ctx.Done():
			// Requests still in flight (e.g. an open handle) keep the
			// channel; closing it must end them.
		}
	})
}
