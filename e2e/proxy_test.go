package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/internal/testgw"
	"github.com/sftpgw/sftpgw/proxyproto"
)

// TestHAProxyPROXYv2 runs two gateway instances (one bucket, one host key,
// one users file) behind a real HAProxy that sends PROXY v2 headers, with
// round-robin balancing. Loopback has all of 127/8, so a client binding
// 127.0.0.2 or 127.0.0.3 is a different source than HAProxy (127.0.0.1).
func TestHAProxyPROXYv2(t *testing.T) {
	needTool(t, "haproxy")
	needTool(t, "sftp")
	_, hk, _ := ed25519.GenerateKey(rand.Reader)
	hostKey, _ := ssh.NewSignerFromKey(hk)
	roles := testgw.StandardRoles()
	roles["partner"].AllowFrom = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}
	// Only HAProxy's address is trusted to send headers.
	trusted := proxyproto.Trusted{netip.MustParsePrefix("127.0.0.1/32")}
	g1 := testgw.Start(t, testgw.Options{Roles: roles, HostKey: hostKey, WrapConn: proxyproto.Wrap(trusted, nil)})
	g2 := testgw.Start(t, testgw.Options{Roles: roles, HostKey: hostKey, Stores: g1.Stores, UsersFile: g1.UsersFile(),
		WrapConn: proxyproto.Wrap(trusted, nil)})
	u := g1.AddUser("partner", false)
	if err := g2.Users.Reload(); err != nil {
		t.Fatal(err)
	}
	c, bucket := s3Client(t, g1, "files")

	port := startHAProxy(t, g1.Addr, g2.Addr)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	line := fmt.Sprintf("[127.0.0.1]:%d %s", port, ssh.MarshalAuthorizedKey(hostKey.PublicKey()))
	if err := os.WriteFile(kh, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	// sftp through HAProxy from a given source address. ssh keeps the
	// first value of an option, so these override testgw's known_hosts.
	viaLB := func(from, batch string) (string, error) {
		args := append([]string{"-o", "UserKnownHostsFile=" + kh, "-o", "BindAddress=" + from}, g1.SSHArgs(u)...)
		args = append(args, "-P", fmt.Sprint(port), "-b", "-", u.Name+"@127.0.0.1")
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "sftp", args...)
		cmd.Env = g1.ClientEnv(u, "")
		cmd.Stdin = strings.NewReader(batch)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}

	// Four sessions round-robin over the two instances; each uploads a file.
	dir := t.TempDir()
	sums := map[string]string{}
	for i := range 4 {
		name := fmt.Sprintf("via-lb-%d.bin", i)
		p, sum := randomFile(t, dir, name, int64(1<<20+i*4099))
		sums[name] = sum
		if out, err := viaLB("127.0.0.2", "put "+p+" "+name+"\n"); err != nil {
			t.Fatalf("upload %d through HAProxy from 127.0.0.2: %v\n%s", i, err, out)
		}
	}
	for name, sum := range sums {
		key := "partner/" + u.Name + "/" + name
		if got := objectSHA(t, c, bucket, key); got != sum {
			t.Errorf("%s: object sha %s, uploaded %s", key, got, sum)
		}
		assertSSE(t, c, bucket, key)
	}
	// Both instances served sessions, and every event carries the real
	// client address, never HAProxy's. Not exactly 2 each: the readiness
	// probe in startHAProxy takes a round-robin turn when HAProxy forwards
	// it before seeing it closed, which depends on timing.
	sessions, uploads := 0, 0
	for i, g := range []*testgw.Gateway{g1, g2} {
		starts := g.Events.Find(audit.Event{Kind: "session_start", User: u.Name})
		if len(starts) == 0 {
			t.Errorf("instance %d served none of the 4 sessions (round robin)", i+1)
		}
		sessions += len(starts)
		for _, e := range g.Events.All() {
			if e.User == u.Name && !strings.HasPrefix(e.Client, "127.0.0.2:") {
				t.Errorf("instance %d: %s event with client %q, want the real client 127.0.0.2", i+1, e.Kind, e.Client)
			}
		}
		ups := g.Events.Find(audit.Event{Kind: "file", User: u.Name, Op: "upload", Result: "ok"})
		if len(ups) != len(starts) {
			t.Errorf("instance %d: %d upload events for %d sessions", i+1, len(ups), len(starts))
		}
		uploads += len(ups)
	}
	if sessions != 4 || uploads != 4 {
		t.Errorf("%d sessions and %d upload events over both instances, want 4 and 4", sessions, uploads)
	}

	// The allow list sees the real address: 127.0.0.3 is refused although
	// HAProxy (127.0.0.1) is the TCP peer.
	if out, err := viaLB("127.0.0.3", "ls\n"); err == nil {
		t.Errorf("partner logged in through HAProxy from 127.0.0.3, outside allow_from:\n%s", out)
	}
	waitFor(t, 5*time.Second, "address_not_allowed event", func() bool {
		for _, g := range []*testgw.Gateway{g1, g2} {
			for _, e := range g.Events.Find(audit.Event{Kind: "auth", Result: "failure", ErrClass: "address_not_allowed"}) {
				if strings.HasPrefix(e.Client, "127.0.0.3:") {
					return true
				}
			}
		}
		return false
	})

	// A direct connection from an untrusted source that sends a header
	// claiming the allowed address is refused, and no session starts.
	before := len(g1.Events.Find(audit.Event{Kind: "session_start"}))
	spoof := proxyproto.AppendV2(nil, proxyproto.Header{Source: netip.MustParseAddrPort("127.0.0.2:40000"),
		Destination: netip.MustParseAddrPort("127.0.0.1:2222")})
	spoofV1 := proxyproto.AppendV1(nil, proxyproto.Header{Source: netip.MustParseAddrPort("127.0.0.2:40000"),
		Destination: netip.MustParseAddrPort("127.0.0.1:2222")})
	for _, hdr := range [][]byte{spoof, spoofV1} {
		if err := sshWithPrefix(g1.Addr, "127.0.0.3", hdr, u, hostKey.PublicKey()); err == nil {
			t.Errorf("login with a PROXY header %q from an untrusted source succeeded", hdr[:6])
		}
	}
	// The trusted source must send a header: a plain SSH client from
	// 127.0.0.1 straight to the instance is dropped.
	if err := sshWithPrefix(g1.Addr, "127.0.0.1", nil, u, hostKey.PublicKey()); err == nil {
		t.Error("direct connection from the trusted balancer address without a header was served")
	}
	if n := len(g1.Events.Find(audit.Event{Kind: "session_start"})); n != before {
		t.Errorf("%d sessions started from refused connections", n-before)
	}
	for _, e := range g1.Events.All() {
		if e.Kind == "auth" && e.Result == "ok" && !strings.HasPrefix(e.Client, "127.0.0.2:") {
			t.Errorf("login accepted from %s", e.Client)
		}
	}
}

// sshWithPrefix dials addr from the local address from, writes prefix, and
// attempts an SSH login as u. It returns nil only if the login succeeded.
func sshWithPrefix(addr, from string, prefix []byte, u *testgw.User, host ssh.PublicKey) error {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if len(prefix) > 0 {
		if _, err := conn.Write(prefix); err != nil {
			return err
		}
	}
	sc, chans, reqs, err := ssh.NewClientConn(conn, addr, &ssh.ClientConfig{User: u.Name,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(u.Signer)}, HostKeyCallback: ssh.FixedHostKey(host)})
	if err != nil {
		return err
	}
	c := ssh.NewClient(sc, chans, reqs)
	defer c.Close()
	return nil
}

// startHAProxy runs HAProxy in the foreground on a loopback port with the
// two gateways as round-robin backends that receive PROXY v2 headers.
// Health checks send a PROXY v2 LOCAL header, as in production.
func startHAProxy(t *testing.T, backends ...string) int {
	t.Helper()
	// HAProxy inherits a listening socket of ours (bind fd@3): no port is
	// picked free, released and possibly taken by another process first.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lnFile, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	var b strings.Builder
	fmt.Fprintf(&b, `global
  maxconn 200
defaults
  mode tcp
  timeout connect 5s
  timeout client 2m
  timeout server 2m
frontend sftp
  bind fd@3
  default_backend gateways
backend gateways
  balance roundrobin
`)
	for i, be := range backends {
		fmt.Fprintf(&b, "  server gw%d %s send-proxy-v2 check check-send-proxy inter 2s\n", i+1, be)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("haproxy", "-db", "-f", cfg)
	cmd.ExtraFiles = []*os.File{lnFile} // fd 3
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	err = cmd.Start()
	// HAProxy has its own copy now; until it accepts, the kernel queues.
	lnFile.Close()
	ln.Close()
	if err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("haproxy output:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			// Close without sending: HAProxy forwards it with a header and
			// the gateway drops it in the handshake.
			_ = c.Close()
			break
		}
		select {
		case <-exited:
			t.Fatalf("haproxy exited:\n%s", logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy not listening on %d:\n%s", port, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return port
}
