package gateway_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/gateway"
	"github.com/sftpgw/sftpgw/vfs"
	"github.com/sftpgw/sftpgw/vfs/localstore"
)

// panicStore injects panics into the calls pkg/sftp's worker goroutines
// reach through a handle: a body read (ReadAt), an upload write (WriteAt),
// a commit (Close) and a listing's second page (ListAt).
type panicStore struct{ vfs.Store }

type panicBody struct{ io.ReadCloser }

func (panicBody) Read([]byte) (int, error) { panic("injected: body read") }

type panicUpload struct {
	vfs.Upload
	onWrite, onCommit bool
}

func (u *panicUpload) Write(p []byte) (int, error) {
	if u.onWrite {
		panic("injected: upload write")
	}
	return u.Upload.Write(p)
}

func (u *panicUpload) Commit(ctx context.Context) error {
	if u.onCommit {
		panic("injected: commit")
	}
	return u.Upload.Commit(ctx)
}

func (s panicStore) Read(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	rc, err := s.Store.Read(ctx, key, off, n)
	if err == nil && strings.Contains(key, "panic-read") {
		return panicBody{rc}, nil
	}
	return rc, err
}

func (s panicStore) Create(ctx context.Context, key string, opt vfs.CreateOptions) (vfs.Upload, error) {
	up, err := s.Store.Create(ctx, key, opt)
	if err != nil {
		return nil, err
	}
	return &panicUpload{Upload: up, onWrite: strings.Contains(key, "panic-write"),
		onCommit: strings.Contains(key, "panic-close")}, nil
}

func (s panicStore) List(ctx context.Context, opt vfs.ListOptions) (vfs.Page, error) {
	if strings.Contains(opt.Prefix, "panic-list") {
		if opt.Token != "" {
			panic("injected: list page")
		}
		return vfs.Page{Entries: []vfs.ObjectInfo{{Key: opt.Prefix + "a", Size: 1}}, Next: "more"}, nil
	}
	return s.Store.List(ctx, opt)
}

type eventLog struct {
	mu sync.Mutex
	ev []audit.Event
}

func (l *eventLog) Record(e audit.Event) { l.mu.Lock(); l.ev = append(l.ev, e); l.mu.Unlock() }
func (l *eventLog) internal(op string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.ev {
		if e.Op == op && e.Result == "error" && e.ErrClass == "internal" && e.User == "fuzz" {
			n++
		}
	}
	return n
}

// A panic in ReadAt, WriteAt, Close or ListAt (run by pkg/sftp's worker
// goroutines, which recover nothing) ended the whole process, and with it
// every session. Now it fails that request, is audited, leaves nothing
// stored, and the session and the gateway keep serving.
func TestWorkerPanicFailsOnlyThatRequest(t *testing.T) {
	root := t.TempDir()
	st, err := localstore.New(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "home"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "home", "panic-read.txt"), bytes.Repeat([]byte("r"), 5000), 0o644); err != nil {
		t.Fatal(err)
	}
	_, hk, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(hk)
	events := &eventLog{}
	srv, err := gateway.New(gateway.Config{HostKeys: []ssh.Signer{signer}, Auth: fuzzAuth{},
		Stores: map[string]vfs.Store{"files": panicStore{st}}, Audit: events})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	dial := func() *sftp.Client {
		conn, err := ssh.Dial("tcp", ln.Addr().String(), &ssh.ClientConfig{
			User: "fuzz", HostKeyCallback: ssh.FixedHostKey(signer.PublicKey()), Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		c, err := sftp.NewClient(conn)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := dial()
	alive := func(step string) {
		t.Helper()
		if _, err := c.Stat("/"); err != nil {
			t.Fatalf("session unusable after %s: %v", step, err)
		}
	}

	f, err := c.Open("panic-read.txt")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(f); err == nil {
		t.Error("read through a panicking ReadAt succeeded")
	}
	f.Close()
	alive("ReadAt")

	for _, name := range []string{"panic-write.bin", "panic-close.bin"} {
		f, err := c.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		_, werr := f.Write([]byte("data"))
		if cerr := f.Close(); werr == nil && cerr == nil {
			t.Errorf("%s: upload through a panic reported success", name)
		}
		alive(name)
		if _, err := os.Stat(filepath.Join(root, "home", name)); err == nil {
			t.Errorf("%s: a failed upload was stored", name)
		}
	}

	if _, err := c.ReadDir("panic-list"); err == nil {
		t.Error("listing through a panicking ListAt succeeded")
	}
	alive("ListAt")

	for op, min := range map[string]int{"download": 1, "upload": 2, "list": 1} {
		if n := events.internal(op); n < min {
			t.Errorf("%d internal-error events for %s, want at least %d", n, op, min)
		}
	}
	// A new session works too: the process survived.
	if _, err := dial().Stat("/"); err != nil {
		t.Errorf("new session: %v", err)
	}
}
