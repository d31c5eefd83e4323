package testenv

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sftpgw/sftpgw/vfs/s3store"
)

// MinIO is a private MinIO server owned by one test, for fault tests that
// stop and restart the store. Clients reach it through a listener the test
// process holds for the whole test (Endpoint), which forwards to wherever
// the current MinIO process listens: the address stays the same across
// Stop/Start without a port being released and taken back (another
// process could take it meanwhile). The data directory is kept.
type MinIO struct {
	t        testing.TB
	bin      string
	dir      string // data
	ln       net.Listener
	user     string
	password string
	kmsKey   string

	mu      sync.Mutex
	cmd     *exec.Cmd
	backend string // address of the running MinIO; "" while stopped
	conns   map[net.Conn]bool
	exited  chan struct{}
	log     *syncWriter
}

// MinIOBin returns the MinIO binary to use, or "" if there is none.
func MinIOBin() string {
	bin := os.Getenv(EnvMinIOBin)
	if bin == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		bin = filepath.Join(home, ".cache", "sftpgw", "bin", "minio")
	}
	if fi, err := os.Stat(bin); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return ""
	}
	return bin
}

// StartMinIO starts a private MinIO and waits until it serves requests. It
// is killed when the test ends.
func StartMinIO(t testing.TB) *MinIO {
	t.Helper()
	bin := MinIOBin()
	if bin == "" {
		unavailable(t, "integration: no MinIO binary (run 'scripts/minio.sh install' or set "+EnvMinIOBin+")")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: listen: %v", err)
	}
	m := &MinIO{
		t:        t,
		bin:      bin,
		dir:      t.TempDir(),
		ln:       ln,
		user:     "u" + randHex(8),
		password: randHex(20),
		kmsKey:   "sftpgw-test:" + base64.StdEncoding.EncodeToString(randBytes(32)),
		conns:    map[net.Conn]bool{},
	}
	go m.forward()
	t.Cleanup(func() { ln.Close(); m.kill() })
	m.Start()
	return m
}

// Endpoint is the server's http:// URL (the same across Stop/Start).
func (m *MinIO) Endpoint() string { return "http://" + m.ln.Addr().String() }

// forward relays each connection to the running MinIO. While it is
// stopped a connection is reset at once, as a closed port refuses it.
func (m *MinIO) forward() {
	for {
		c, err := m.ln.Accept()
		if err != nil {
			return
		}
		go m.relay(c)
	}
}

func (m *MinIO) relay(c net.Conn) {
	m.mu.Lock()
	backend := m.backend
	m.mu.Unlock()
	var b net.Conn
	var err error
	if backend != "" {
		b, err = net.DialTimeout("tcp", backend, 5*time.Second)
	}
	if backend == "" || err != nil {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // a reset, not an orderly close
		}
		c.Close()
		return
	}
	m.mu.Lock()
	if m.backend != backend { // stopped meanwhile
		m.mu.Unlock()
		b.Close()
		c.Close()
		return
	}
	m.conns[c], m.conns[b] = true, true
	m.mu.Unlock()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(b, c)
	go pipe(c, b)
	<-done
	<-done
	m.mu.Lock()
	delete(m.conns, c)
	delete(m.conns, b)
	m.mu.Unlock()
	c.Close()
	b.Close()
}

// Config returns a store config for bucket on this server (SSE AES256,
// path style), creating the bucket if needed.
func (m *MinIO) Config(bucket string) s3store.Config {
	m.t.Helper()
	cfg := s3store.Config{
		Bucket:          bucket,
		Region:          region,
		Endpoint:        m.Endpoint(),
		PathStyle:       true,
		SSE:             s3store.SSEAES256,
		AccessKeyID:     m.user,
		SecretAccessKey: m.password,
	}
	// No removal: the whole data directory goes when the test ends, and
	// the server may well be stopped by then.
	createBucket(m.t, cfg)
	return cfg
}

// Start (re)starts the server on the same port and data directory and
// waits until it is ready. Starting a running server is a no-op.
func (m *MinIO) Start() {
	m.t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		return
	}
	// MinIO cannot take a listener, so its own port is picked free here;
	// if another process takes it first, MinIO exits and another is tried.
	for range 5 {
		if m.startOnce(freePort(m.t)) {
			return
		}
	}
	m.t.Fatalf("testenv: MinIO found its port taken 5 times:\n%s", m.log.String())
}

// startOnce starts MinIO on port and waits until it is ready; false if it
// exited during startup because the port was taken.
func (m *MinIO) startOnce(port int) bool {
	m.t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(m.bin, "server", "--quiet",
		"--address", addr,
		"--certs-dir", filepath.Join(m.dir, "certs"),
		filepath.Join(m.dir, "data"))
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+m.user,
		"MINIO_ROOT_PASSWORD="+m.password,
		"MINIO_KMS_SECRET_KEY="+m.kmsKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
	)
	m.log = &syncWriter{w: &bytes.Buffer{}}
	cmd.Stdout = m.log
	cmd.Stderr = m.log
	if err := cmd.Start(); err != nil {
		m.t.Fatalf("testenv: start MinIO: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	m.cmd, m.exited = cmd, exited

	deadline := time.Now().Add(30 * time.Second)
	url := "http://" + addr + "/minio/health/live"
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				m.backend = addr
				return true
			}
		}
		select {
		case <-exited:
			m.cmd = nil
			if l := m.log.String(); strings.Contains(l, "port is already in use") || strings.Contains(l, "address already in use") {
				return false
			}
			m.t.Fatalf("testenv: MinIO exited during startup:\n%s", m.log.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("testenv: MinIO not ready after 30s:\n%s", m.log.String())
		}
	}
}

// Stop kills the server abruptly (like a crash or a network outage) and
// waits for it to exit. The port and data stay for Start.
func (m *MinIO) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	// Like a crash: no new connection gets through, open ones break.
	m.backend = ""
	for c := range m.conns {
		c.Close()
	}
	m.cmd.Process.Kill()
	select {
	case <-m.exited:
	case <-time.After(10 * time.Second):
		m.t.Errorf("testenv: MinIO (pid %d) did not exit after SIGKILL", m.cmd.Process.Pid)
	}
	m.cmd = nil
}

func (m *MinIO) kill() { m.Stop() }

// syncWriter lets the process goroutines and the test share the log.
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w.Len() > 64<<10 {
		return len(p), nil // enough to diagnose a failed start
	}
	return s.w.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func randHex(n int) string { return hex.EncodeToString(randBytes(n)) }
