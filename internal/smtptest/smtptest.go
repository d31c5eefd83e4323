// Package smtptest runs a real SMTP server (Debian's python3-aiosmtpd) for
// tests: STARTTLS or implicit TLS with a throwaway certificate, AUTH, a
// plaintext server, or one that accepts connections and never answers.
package smtptest

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	_ "embed"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

//go:embed smtpd.py
var script []byte

// Python is Debian's interpreter, where python3-aiosmtpd is installed.
const Python = "/usr/bin/python3"

// Modes of the server.
const (
	StartTLS = "starttls" // STARTTLS and AUTH required
	Implicit = "implicit" // TLS from the first byte, AUTH required
	Plain    = "plain"    // no TLS, no AUTH
	Hang     = "hang"     // accepts and never answers
)

// Server is one running SMTP server.
type Server struct {
	Host    string // "localhost": the name in its certificate
	Port    int
	RootCAs *x509.CertPool
	CertPEM []byte // the server's self-signed certificate (a ca_file)
	out     string
}

// Message is one message the server accepted.
type Message struct {
	From string   `json:"from"`
	To   []string `json:"to"`
	Data string   `json:"data"` // the whole message, headers included
	TLS  bool     `json:"tls"`
	Auth bool     `json:"auth"`
	At   float64  `json:"at"` // Unix time of acceptance
}

// Need skips the test when aiosmtpd is missing, unless integration tests
// are required (SFTPGW_REQUIRE_INTEGRATION=1, as in `make test`).
func Need(t testing.TB) {
	t.Helper()
	if err := exec.Command(Python, "-c", "import aiosmtpd").Run(); err != nil {
		if os.Getenv("SFTPGW_REQUIRE_INTEGRATION") == "1" {
			t.Fatalf("python3-aiosmtpd is required (scripts/deps.sh installs it): %v", err)
		}
		t.Skip("python3-aiosmtpd not installed")
	}
}

// Start runs a server in mode; user and password are what AUTH accepts.
// It stops when the test ends.
func Start(t testing.TB, mode, user, password string) *Server {
	t.Helper()
	Need(t)
	dir := t.TempDir()
	cert, key, pool := selfSigned(t)
	paths := map[string][]byte{"smtpd.py": script, "cert.pem": cert, "key.pem": key}
	for n, b := range paths {
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "messages.jsonl")
	cmd := exec.Command(Python, filepath.Join(dir, "smtpd.py"), mode, filepath.Join(dir, "cert.pem"),
		filepath.Join(dir, "key.pem"), user, password, out)
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	port, perr := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || perr != nil {
		t.Fatalf("smtp server did not start: %v %v\n%s", err, perr, stderr.String())
	}
	return &Server{Host: "localhost", Port: port, RootCAs: pool, CertPEM: cert, out: out}
}

// Messages returns what the server accepted so far.
func (s *Server) Messages() []Message {
	b, _ := os.ReadFile(s.out)
	var out []Message
	for _, l := range bytes.Split(b, []byte("\n")) {
		var m Message
		if len(l) > 0 && json.Unmarshal(l, &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// Wait returns the messages once there are at least n, or fails after d.
func (s *Server) Wait(t testing.TB, n int, d time.Duration) []Message {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if m := s.Messages(); len(m) >= n {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("smtp server: %d messages after %s, want %d", len(s.Messages()), d, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Addr is host:port.
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

func selfSigned(t testing.TB) (certPEM, keyPEM []byte, pool *x509.CertPool) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(c)
	kb, _ := x509.MarshalECPrivateKey(k)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), pool
}
