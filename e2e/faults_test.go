package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/gateway"
	"github.com/sftpgw/sftpgw/internal/testenv"
	"github.com/sftpgw/sftpgw/internal/testgw"
	"github.com/sftpgw/sftpgw/vfs"
	"github.com/sftpgw/sftpgw/vfs/s3store"
)

// Faults: whatever breaks (client, store, network, the gateway itself) no
// data is lost, nothing partial becomes visible, nothing stays pending in
// the bucket, and the gateway keeps serving without a restart.

// sftpProc starts OpenSSH sftp running batch as u; throttle is sftp's -l
// (Kbit/s, 0 = none) so a transfer lasts long enough to be interrupted.
func sftpProc(t *testing.T, g *testgw.Gateway, u *testgw.User, addr string, throttle int, batch string) (*exec.Cmd, *lockedOutput) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	args := append(g.SSHArgs(u), "-P", port)
	if addr != g.Addr {
		// Through a proxy: check the host key recorded for the gateway.
		args = append(args, "-o", fmt.Sprintf("HostKeyAlias=[%s]:%d", g.Host, g.Port))
	}
	if throttle > 0 {
		args = append(args, "-l", fmt.Sprint(throttle))
	}
	args = append(args, "-b", "-", u.Name+"@"+host)
	cmd := exec.Command("sftp", args...)
	cmd.Env = g.ClientEnv(u, "")
	cmd.Stdin = strings.NewReader(batch)
	out := &lockedOutput{}
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, so killClient takes the ssh child down too
	// (like a crashed client machine), and Wait never hangs on the
	// child's copy of the output pipe.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			killClient(cmd)
			_ = cmd.Wait()
		}
	})
	return cmd, out
}

// killClient SIGKILLs the client and every process it started.
func killClient(cmd *exec.Cmd) { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }

// lockedOutput collects a process's output while the test reads it.
type lockedOutput struct {
	mu sync.Mutex
	b  strings.Builder
}

func (o *lockedOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

func (o *lockedOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// waitExit waits for cmd with a deadline and returns its error.
func waitExit(t *testing.T, cmd *exec.Cmd, d time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		killClient(cmd)
		<-done
		t.Fatalf("%s did not exit within %s", cmd.Path, d)
		return nil
	}
}

// seedBig puts n random bytes at key through the gateway's own store and
// returns their SHA-256.
func seedBig(t *testing.T, g *testgw.Gateway, key string, n int64) string {
	t.Helper()
	p, sum := randomFile(t, t.TempDir(), "seed", n)
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx := context.Background()
	up, err := g.Stores["files"].Create(ctx, key, vfs.CreateOptions{SizeHint: n})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(up, f); err != nil {
		t.Fatal(err)
	}
	if err := up.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return sum
}

// rawS3Leak lists texts that would mean a raw store error reached a client.
var rawS3Leak = []string{"dial tcp", "connection refused", "StatusCode", "api error", "RequestID", "operation error", "minio", "http://"}

func noRawS3(t *testing.T, what, msg string) {
	t.Helper()
	for _, s := range rawS3Leak {
		if strings.Contains(strings.ToLower(msg), strings.ToLower(s)) {
			t.Errorf("%s shows a raw store error (%q): %s", what, s, msg)
		}
	}
}

// TestFaultKilledDownload kills sftp in the middle of a download. The
// object must be untouched, also for a role that deletes after download
// (an interrupted download does not count), the event records the
// aborted transfer, and the next download works.
func TestFaultKilledDownload(t *testing.T) {
	needTool(t, "sftp")
	roles := testgw.StandardRoles()
	pickup := *roles["partner"]
	pickup.Name, pickup.DeleteAfterDownload = "pickup", true
	roles["pickup"] = &pickup
	g := testgw.Start(t, testgw.Options{Roles: roles})
	u := g.AddUser("pickup", false)
	c, bucket := s3Client(t, g, "files")
	key := "partner/" + u.Name + "/big.bin"
	sum := seedBig(t, g, key, 64<<20)
	dir := t.TempDir()
	local := filepath.Join(dir, "big.bin")
	// 80 Mbit/s: the 64 MiB take about 7 s, plenty of time to interrupt.
	cmd, out := sftpProc(t, g, u, g.Addr, 80000, "get big.bin "+local+"\n")
	waitFor(t, 30*time.Second, "download under way", func() bool {
		fi, err := os.Stat(local)
		return err == nil && fi.Size() > 8<<20
	})
	killClient(cmd)
	_ = waitExit(t, cmd, 10*time.Second)
	waitFor(t, 10*time.Second, "the download's audit event", func() bool {
		return len(g.Events.Find(audit.Event{Op: "download", Path: "/big.bin"})) > 0
	})
	ev := g.Events.Find(audit.Event{Op: "download", Path: "/big.bin"})[0]
	if ev.Result == "ok" && ev.Detail == "" {
		t.Errorf("killed download recorded as a complete one: %+v", ev)
	}
	if ev.Bytes <= 0 || ev.Bytes >= 64<<20 {
		t.Errorf("killed download event bytes %d", ev.Bytes)
	}
	if len(g.Events.Find(audit.Event{Op: "delete", Path: "/big.bin"})) != 0 {
		t.Error("an interrupted download triggered delete-after-download")
	}
	cliCheck(t, c, bucket, key, sum)
	t.Logf("killed download: %s; event %s/%s %q after %d bytes", strings.TrimSpace(out.String()), ev.Result, ev.ErrClass, ev.Detail, ev.Bytes)

	// The gateway keeps serving: a complete download, which now deletes.
	if o, err := g.SFTP(u, "get big.bin "+local); err != nil {
		t.Fatalf("download after the kill: %v\n%s", err, o)
	}
	if got := fileSHA(t, local); got != sum {
		t.Errorf("download after the kill: sha %s, want %s", got, sum)
	}
	waitFor(t, 10*time.Second, "delete after the complete download", func() bool { return !exists(t, c, bucket, key) })
}

// privateGateway runs a gateway whose "files" store is on a private MinIO
// the test can stop and start.
// With proxied, the gateway reaches MinIO for "files" through a
// stallProxy (returned) whose Cut is a network outage that, unlike a MinIO
// restart, keeps the server's state: MinIO forgets pending multipart
// uploads when it restarts, which would hide an upload we failed to abort.
func privateGateway(t *testing.T, proxied bool) (*testgw.Gateway, *testenv.MinIO, *stallProxy, *s3.Client, string) {
	t.Helper()
	m := testenv.StartMinIO(t)
	files := m.Config("files")
	logs := m.Config("logs")
	direct := files
	var px *stallProxy
	if proxied {
		px = newStallProxy(t, strings.TrimPrefix(m.Endpoint(), "http://"))
		files.Endpoint = "http://" + px.Addr()
	}
	stores := map[string]vfs.Store{}
	for name, cfg := range map[string]s3store.Config{"files": files, "logs": logs} {
		st, err := s3store.New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		stores[name] = st
	}
	g := testgw.Start(t, testgw.Options{Stores: stores})
	return g, m, px, testenv.Client(t, direct), files.Bucket
}

// TestFaultStoreOutageMidUpload takes the store away while a multipart
// upload is in flight: MinIO stopped (a crash), or the network to it cut
// (MinIO keeps its state, so a multipart upload we failed to abort would
// still be there). The client gets an error (a safe text, not the S3
// error), no object appears, no multipart upload stays pending once the
// store is back, and the next upload succeeds without a gateway restart.
func TestFaultStoreOutageMidUpload(t *testing.T) {
	needTool(t, "sftp")
	p, sum := randomFile(t, t.TempDir(), "big.bin", 96<<20)
	for _, mode := range []string{"minio stopped", "network cut"} {
		t.Run(mode, func(t *testing.T) {
			g, m, px, c, bucket := privateGateway(t, mode == "network cut")
			down, up := m.Stop, m.Start
			if px != nil {
				down, up = px.Cut, px.Restore
			}
			storeOutage(t, g, c, bucket, p, sum, down, up)
		})
	}
}

// TestFaultStoreOutageMidDownload cuts the network to the store while a
// client downloads: the client must fail, never end up with a shorter
// file reported as complete.
func TestFaultStoreOutageMidDownload(t *testing.T) {
	needTool(t, "sftp")
	g, _, px, _, _ := privateGateway(t, true)
	u := g.AddUser("partner", false)
	seedBig(t, g, "partner/"+u.Name+"/big.bin", 48<<20)
	local := filepath.Join(t.TempDir(), "big.bin")
	cmd, out := sftpProc(t, g, u, g.Addr, 80000, "get big.bin "+local+"\n")
	waitFor(t, 30*time.Second, "download under way", func() bool {
		fi, err := os.Stat(local)
		return err == nil && fi.Size() > 8<<20
	})
	px.Cut()
	err := waitExit(t, cmd, 2*time.Minute)
	fi, serr := os.Stat(local)
	if err == nil {
		t.Fatalf("download reported success with the store cut off (local size %v, %v):\n%s", fi.Size(), serr, out)
	}
	t.Logf("client failed: %s", strings.TrimSpace(out.String()))
	noRawS3(t, "sftp output", out.String())
	evs := g.Events.Find(audit.Event{Op: "download", Path: "/big.bin"})
	if len(evs) != 1 || evs[0].Result != "error" {
		t.Errorf("download events: %+v", evs)
	}
	px.Restore()
}

func storeOutage(t *testing.T, g *testgw.Gateway, c *s3.Client, bucket, p, sum string, down, up func()) {
	u := g.AddUser("partner", false)
	key := "partner/" + u.Name + "/big.bin"
	cmd, out := sftpProc(t, g, u, g.Addr, 160000, "put "+p+" big.bin\n")
	waitFor(t, 60*time.Second, "upload past the first parts", func() bool { return g.Server.Uploads().MaxSize() > 24<<20 })
	down()
	stopped := time.Now()
	err := waitExit(t, cmd, 2*time.Minute)
	if err == nil {
		t.Fatalf("upload succeeded with the store down:\n%s", out)
	}
	t.Logf("client failed %s after the outage began: %s", time.Since(stopped).Round(time.Millisecond), strings.TrimSpace(out.String()))
	noRawS3(t, "sftp output", out.String())

	// During the outage a Go client sees the gateway's safe text.
	sc, _ := cliSFTP(t, g, u)
	if _, err := sc.Stat("big.bin"); err == nil {
		t.Error("stat succeeded with the store down")
	} else {
		noRawS3(t, "stat error", err.Error())
		if !strings.Contains(err.Error(), "storage error") {
			t.Errorf("stat with the store down: %v", err)
		}
	}
	time.Sleep(2 * time.Second) // an outage, not a blip
	up()
	restarted := time.Now()
	t.Logf("pending multipart uploads when the store came back: %d", len(testenv.PendingUploads(t, c, bucket, "")))
	waitFor(t, 30*time.Second, "upload to be aborted", func() bool { return g.Server.Uploads().Active() == 0 })
	if exists(t, c, bucket, key) {
		t.Error("a failed upload left an object")
	}
	// The abort ran while the store was away; once it is back, nothing may
	// stay pending.
	deadline := time.Now().Add(time.Minute)
	for {
		n := len(testenv.PendingUploads(t, c, bucket, ""))
		if n == 0 {
			t.Logf("no multipart upload pending %s after the store came back", time.Since(restarted).Round(10*time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d multipart uploads still pending a minute after the store came back", n)
		}
		time.Sleep(200 * time.Millisecond)
	}
	evs := g.Events.Find(audit.Event{Op: "upload", Path: "/big.bin", Result: "error"})
	if len(evs) == 0 {
		t.Error("no error event for the failed upload")
	} else {
		noRawS3(t, "audit detail", evs[0].Detail)
	}

	// Same gateway, no restart: the retry works.
	if o, err := g.SFTP(u, "put "+p+" big.bin"); err != nil {
		t.Fatalf("upload after the outage: %v\n%s", err, o)
	}
	cliCheck(t, c, bucket, key, sum)
	if n := len(testenv.PendingUploads(t, c, bucket, "")); n != 0 {
		t.Errorf("%d multipart uploads pending after the retry", n)
	}
}

// stallProxy forwards TCP to the gateway and can stop forwarding (in both
// directions) without closing anything: a network stall.
type stallProxy struct {
	ln     net.Listener
	target string
	paused atomic.Bool
	cut    atomic.Bool // refuse all traffic: an outage of the path
	mu     sync.Mutex
	resume chan struct{}
	conns  []net.Conn
}

func newStallProxy(t *testing.T, target string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, target: target, resume: make(chan struct{})}
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.Resume()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
	})
	return p
}

func (p *stallProxy) Addr() string { return p.ln.Addr().String() }

func (p *stallProxy) Pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.paused.Load() {
		p.resume = make(chan struct{})
		p.paused.Store(true)
	}
}

func (p *stallProxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.paused.Load() {
		p.paused.Store(false)
		close(p.resume)
	}
}

// Cut drops every connection and refuses new ones until Restore.
func (p *stallProxy) Cut() {
	p.cut.Store(true)
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
}

func (p *stallProxy) Restore() { p.cut.Store(false) }

func (p *stallProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.cut.Load() {
			c.Close()
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		go p.pipe(c, s)
		go p.pipe(s, c)
	}
}

// pipe copies in small chunks and holds each chunk while paused.
func (p *stallProxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 16<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			wait := p.resume
			paused := p.paused.Load()
			p.mu.Unlock()
			if paused {
				<-wait
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if tc, ok := dst.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
			return
		}
	}
}

// TestFaultNetworkStall pauses the network in the middle of uploads. A
// stall shorter than the idle timeout is ridden out and the file arrives
// intact; a longer one gets the connection closed by the gateway and the
// upload aborted: no object, nothing pending.
//
// Real time is the point here (the idle timeout is a socket deadline).
// Margins: the short stall is a quarter of the idle timeout (3 s to
// spare); the cut must come no sooner than the idle timeout and within 30 s.
func TestFaultNetworkStall(t *testing.T) {
	needTool(t, "sftp")
	const idle = 4 * time.Second
	g := testgw.Start(t, testgw.Options{Tweak: func(c *gateway.Config) { c.IdleTimeout = idle }})
	u := g.AddUser("partner", false)
	c, bucket := s3Client(t, g, "files")
	dir := t.TempDir()
	p, sum := randomFile(t, dir, "data.bin", 40<<20)

	t.Run("short stall completes", func(t *testing.T) {
		px := newStallProxy(t, g.Addr)
		cmd, out := sftpProc(t, g, u, px.Addr(), 160000, "put "+p+" short.bin\n")
		waitFor(t, 60*time.Second, "upload under way", func() bool { return g.Server.Uploads().MaxSize() > 8<<20 })
		px.Pause()
		time.Sleep(idle / 4)
		px.Resume()
		if err := waitExit(t, cmd, 2*time.Minute); err != nil {
			t.Fatalf("upload across a %v stall: %v\n%s", idle/4, err, out)
		}
		cliCheck(t, c, bucket, cliHome(u)+"short.bin", sum)
	})

	t.Run("long stall is cut off", func(t *testing.T) {
		px := newStallProxy(t, g.Addr)
		cmd, out := sftpProc(t, g, u, px.Addr(), 160000, "put "+p+" long.bin\n")
		waitFor(t, 60*time.Second, "upload under way", func() bool { return g.Server.Uploads().MaxSize() > 8<<20 })
		px.Pause()
		start := time.Now()
		waitFor(t, 30*time.Second, "the idle timeout to close the connection", func() bool {
			return g.Server.Uploads().Active() == 0
		})
		// Bytes already in socket buffers may still arrive after the pause,
		// so the cut can come later than idle, never sooner.
		took := time.Since(start)
		t.Logf("gateway dropped the stalled connection after %s", took.Round(100*time.Millisecond))
		if took < idle-100*time.Millisecond {
			t.Errorf("connection cut after %s, before the idle timeout %s", took, idle)
		}
		px.Resume()
		if err := waitExit(t, cmd, time.Minute); err == nil {
			t.Errorf("client reported success for a cut-off upload:\n%s", out)
		}
		if exists(t, c, bucket, cliHome(u)+"long.bin") {
			t.Error("a cut-off upload left an object")
		}
		if len(g.Events.Find(audit.Event{Op: "upload", Path: "/long.bin", Result: "error"})) != 1 {
			t.Error("no error event for the cut-off upload")
		}
	})
	cliCheckAll(t, c, bucket)
}

// TestFaultTimeouts checks that dead connections do not linger: one that
// never finishes the handshake (silent, or stuck after the banner) is
// closed after HandshakeTimeout, an authenticated session with no traffic
// after IdleTimeout, while a session that keeps working stays up.
//
// Real time is the point (socket deadlines). Margins: a close is awaited
// for 10× the timeout; the busy session pauses 500 ms between requests
// against a 3 s idle timeout (6×).
func TestFaultTimeouts(t *testing.T) {
	const handshake, idle = time.Second, 3 * time.Second
	g := testgw.Start(t, testgw.Options{Tweak: func(c *gateway.Config) {
		c.HandshakeTimeout = handshake
		c.IdleTimeout = idle
	}})
	u := g.AddUser("partner", false)

	closedWithin := func(t *testing.T, conn net.Conn, d time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		_ = conn.SetReadDeadline(time.Now().Add(10 * d))
		_, err := io.Copy(io.Discard, conn)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("connection still open after %s", 10*d)
		}
		took := time.Since(start)
		// The gateway's deadline started a moment before ours: half is
		// a lower bound that catches an immediate close on any machine.
		if took < d/2 {
			t.Errorf("closed after %s, well before the timeout %s", took, d)
		}
		return took
	}
	t.Run("silent client", func(t *testing.T) {
		conn, err := net.Dial("tcp", g.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		t.Logf("closed after %s", closedWithin(t, conn, handshake).Round(10*time.Millisecond))
	})
	t.Run("stuck after banner", func(t *testing.T) {
		conn, err := net.Dial("tcp", g.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.Write([]byte("SSH-2.0-stuck\r\n")); err != nil {
			t.Fatal(err)
		}
		t.Logf("closed after %s", closedWithin(t, conn, handshake).Round(10*time.Millisecond))
	})
	t.Run("idle session", func(t *testing.T) {
		sc, err := cliDial(t, g, u, "")
		if err != nil {
			t.Fatal(err)
		}
		defer sc.Close()
		start := time.Now()
		done := make(chan error, 1)
		go func() { done <- sc.Wait() }()
		select {
		case <-done:
			took := time.Since(start)
			t.Logf("idle session closed after %s", took.Round(10*time.Millisecond))
			if took < idle/2 { // the gateway's timer started before ours
				t.Errorf("idle session closed after %s, well before the idle timeout %s", took, idle)
			}
		case <-time.After(10 * idle):
			t.Fatalf("idle session still open after %s", 10*idle)
		}
	})
	t.Run("busy session stays", func(t *testing.T) {
		c, _ := cliSFTP(t, g, u)
		for start := time.Now(); time.Since(start) < idle+time.Second; { // activity for longer than the idle timeout
			if _, err := c.Getwd(); err != nil {
				t.Fatal(err)
			}
			if _, err := c.ReadDir("/"); err != nil {
				t.Fatalf("a working session was cut: %v", err)
			}
			time.Sleep(500 * time.Millisecond)
		}
	})
	// The gateway still takes logins after all that.
	if out, err := g.SFTP(u, "ls"); err != nil {
		t.Fatalf("login after timeouts: %v\n%s", err, out)
	}
}

// TestFaultShutdownDuringUpload shuts the gateway down while uploads run.
// Within the grace period an upload finishes and is committed; when the
// grace period ends first, the upload is aborted: no object, nothing
// pending. New connections are refused as soon as shutdown begins.
func TestFaultShutdownDuringUpload(t *testing.T) {
	needTool(t, "sftp")
	dir := t.TempDir()
	p, sum := randomFile(t, dir, "data.bin", 48<<20)

	t.Run("finishes within grace", func(t *testing.T) {
		g := testgw.Start(t, testgw.Options{})
		u := g.AddUser("partner", false)
		c, bucket := s3Client(t, g, "files")
		cmd, out := sftpProc(t, g, u, g.Addr, 80000, "put "+p+" grace.bin\n")
		waitFor(t, 60*time.Second, "upload under way", func() bool { return g.Server.Uploads().MaxSize() > 4<<20 })
		res := make(chan error, 1)
		start := time.Now()
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			res <- g.Server.Shutdown(ctx)
		}()
		waitFor(t, 5*time.Second, "listener closed", func() bool {
			conn, err := net.DialTimeout("tcp", g.Addr, time.Second)
			if err == nil {
				conn.Close()
			}
			return err != nil
		})
		if err := waitExit(t, cmd, 2*time.Minute); err != nil {
			t.Fatalf("upload during graceful shutdown: %v\n%s", err, out)
		}
		if err := <-res; err != nil {
			t.Errorf("shutdown: %v", err)
		}
		t.Logf("shutdown waited %s for the upload", time.Since(start).Round(100*time.Millisecond))
		cliCheck(t, c, bucket, cliHome(u)+"grace.bin", sum)
		cliCheckAll(t, c, bucket)
	})

	t.Run("grace runs out", func(t *testing.T) {
		g := testgw.Start(t, testgw.Options{})
		u := g.AddUser("partner", false)
		c, bucket := s3Client(t, g, "files")
		cmd, out := sftpProc(t, g, u, g.Addr, 40000, "put "+p+" cut.bin\n")
		waitFor(t, 60*time.Second, "upload into multipart", func() bool { return g.Server.Uploads().MaxSize() > 10<<20 })
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := g.Server.Shutdown(ctx); err == nil {
			t.Error("shutdown reported a clean end with an upload still running")
		}
		if err := waitExit(t, cmd, time.Minute); err == nil {
			t.Errorf("client reported success for an upload cut by shutdown:\n%s", out)
		}
		waitFor(t, 30*time.Second, "upload to be aborted", func() bool { return g.Server.Uploads().Active() == 0 })
		if exists(t, c, bucket, cliHome(u)+"cut.bin") {
			t.Error("an upload cut by shutdown left an object")
		}
		waitFor(t, 30*time.Second, "no pending multipart upload", func() bool {
			return len(testenv.PendingUploads(t, c, bucket, "")) == 0
		})
		if len(g.Events.Find(audit.Event{Op: "upload", Path: "/cut.bin", Result: "error"})) != 1 {
			t.Error("no error event for the upload cut by shutdown")
		}
	})
}

// TestFaultGatewayKilledMidUpload SIGKILLs the gateway process (the real
// binary) in the middle of a multipart upload: the client fails and no
// object, partial or whole, becomes visible. The multipart upload itself
// cannot be aborted by a dead process; it stays pending until a bucket
// lifecycle rule (AbortIncompleteMultipartUpload) removes it, which the
// test reports.
func TestFaultGatewayKilledMidUpload(t *testing.T) {
	b, us := startBinGateway(t, "5s", 1)
	u := us[0]
	c := testenv.Client(t, b.files)
	p, _ := randomFile(t, t.TempDir(), "big.bin", 64<<20)
	cmd := exec.Command("sftp", append([]string{"-l", "80000"}, b.sftpArgs(u)...)...)
	cmd.Env = append(os.Environ(), "DISPLAY=", "SSH_AUTH_SOCK=")
	cmd.Stdin = strings.NewReader("put " + p + " big.bin\n")
	out := &lockedOutput{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { killClient(cmd) })
	waitFor(t, 60*time.Second, "a multipart upload in the bucket", func() bool {
		return len(testenv.PendingUploads(t, c, b.files.Bucket, "")) > 0
	})
	time.Sleep(time.Second) // a part or two more
	_ = b.cmd.Process.Kill()
	<-b.exited
	if err := waitExit(t, cmd, time.Minute); err == nil {
		t.Errorf("client reported success although the gateway died:\n%s", out)
	}
	if exists(t, c, b.files.Bucket, "partner/"+u.Name+"/big.bin") {
		t.Error("a killed gateway left a visible object")
	}
	t.Logf("multipart uploads left pending by the killed gateway: %d (removed by the bucket's AbortIncompleteMultipartUpload rule)",
		len(testenv.PendingUploads(t, c, b.files.Bucket, "")))
}
