package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/internal/testenv"
	"github.com/sftpgw/sftpgw/internal/testgw"
)

// TestShutdownClosesIdleFirst: at Shutdown an idle session (OpenSSH sftp
// waiting for commands) is closed at once, while a session with an upload
// in progress keeps going, may not open another file, and is closed right
// after its upload completes; Shutdown returns long before the grace ends.
func TestShutdownClosesIdleFirst(t *testing.T) {
	needTool(t, "sftp")
	g := testgw.Start(t, testgw.Options{})
	u := g.AddUser("partner", false)
	c, bucket := s3Client(t, g, "files")

	idle := startIdleSFTP(t, g, u)
	cl := opsSFTPClient(t, g, u)
	f, err := cl.Create("draining.bin")
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	chunk := make([]byte, 1<<20)
	write := func(n int) {
		t.Helper()
		for range n {
			_, _ = rand.Read(chunk)
			h.Write(chunk)
			if _, err := f.Write(chunk); err != nil {
				t.Fatalf("write during drain: %v", err)
			}
		}
	}
	write(3)
	waitFor(t, 10*time.Second, "idle session to start", func() bool {
		return len(g.Events.Find(audit.Event{Kind: "session_start", User: u.Name})) == 2
	})

	start := time.Now()
	// A grace far longer than anything the test waits for: "at once" and
	// "right after the upload" are then told apart from "at the end of the
	// grace" with minutes to spare, on any machine.
	const grace = 10 * time.Minute
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		shut <- g.Server.Shutdown(ctx)
	}()

	// sftp in batch mode notices only at its next command, so the proof
	// is the server's: the idle session ended, the busy one did not.
	waitFor(t, 30*time.Second, "the idle session to be closed", func() bool {
		return len(g.Events.Find(audit.Event{Kind: "session_end", User: u.Name})) == 1
	})
	t.Logf("idle session closed %s after Shutdown began", time.Since(start).Round(time.Millisecond))
	idle.stop()
	// The transfer goes on, but no new one may start on this connection.
	if _, err := cl.Create("second.bin"); err == nil {
		t.Error("a new upload was opened during shutdown")
	}
	if len(g.Events.Find(audit.Event{Kind: "file", Op: "upload", Result: "error", ErrClass: "shutdown"})) != 1 {
		t.Error("the refused open was not audited")
	}
	write(3)
	if err := f.Close(); err != nil {
		t.Fatalf("closing the upload during the grace period: %v", err)
	}
	select {
	case err := <-shut:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		t.Logf("Shutdown returned %s after it began", time.Since(start).Round(time.Millisecond))
	case <-time.After(time.Minute):
		t.Fatalf("Shutdown did not return within a minute of the last transfer's end (grace %s)", grace)
	}
	key := "partner/" + u.Name + "/draining.bin"
	if got, want := objectSHA(t, c, bucket, key), hex.EncodeToString(h.Sum(nil)); got != want {
		t.Errorf("upload finished during shutdown: object sha %s, sent %s", got, want)
	}
	if exists(t, c, bucket, "partner/"+u.Name+"/second.bin") {
		t.Error("the refused upload left an object")
	}
}

// TestShutdownAbortsAfterGrace: an upload still open when the grace period
// ends is aborted: no object, no pending multipart upload, an audit event.
func TestShutdownAbortsAfterGrace(t *testing.T) {
	g := testgw.Start(t, testgw.Options{})
	u := g.AddUser("partner", false)
	c, bucket := s3Client(t, g, "files")
	cl := opsSFTPClient(t, g, u)
	f, err := cl.Create("too-slow.bin")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 12<<20) // more than one part: a real multipart upload
	_, _ = rand.Read(buf)
	if _, err := f.Write(buf); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a multipart upload in the bucket", func() bool {
		return len(testenv.PendingUploads(t, c, bucket, "")) > 0
	})
	// Real time is the point: the grace period. Shutdown may not give up
	// before it; the abort after it (S3 calls) gets 30 s on a busy machine.
	const grace = time.Second
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err = g.Server.Shutdown(ctx)
	if err == nil || !strings.Contains(err.Error(), "grace period over") {
		t.Errorf("Shutdown with a transfer still open: %v", err)
	}
	if d := time.Since(start); d < grace || d > grace+30*time.Second {
		t.Errorf("Shutdown returned after %s, want the %s grace and then the abort", d, grace)
	}
	if err := f.Close(); err == nil {
		t.Error("the client saw its cut-off upload succeed")
	}
	if exists(t, c, bucket, "partner/"+u.Name+"/too-slow.bin") {
		t.Error("an aborted upload became an object")
	}
	if n := len(testenv.PendingUploads(t, c, bucket, "")); n != 0 {
		t.Errorf("%d multipart uploads left pending", n)
	}
	if len(g.Events.Find(audit.Event{Kind: "file", Op: "upload", Result: "error", ErrClass: "aborted"})) != 1 {
		t.Errorf("no aborted upload event; events: %+v", g.Events.Find(audit.Event{Kind: "file", User: u.Name}))
	}
}

type idleClient struct {
	done chan error
	stop func()
}

// startIdleSFTP runs OpenSSH sftp with an open, silent stdin: a logged-in
// session that does nothing until the server closes it.
func startIdleSFTP(t *testing.T, g *testgw.Gateway, u *testgw.User) idleClient {
	t.Helper()
	args := append(g.SSHArgs(u), "-P", fmt.Sprint(g.Port), "-b", "-", u.Name+"@"+g.Host)
	cmd := exec.Command("sftp", args...)
	cmd.Env = g.ClientEnv(u, "")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ic := idleClient{done: make(chan error, 1)}
	go func() { ic.done <- cmd.Wait() }()
	var once sync.Once
	ic.stop = func() {
		once.Do(func() {
			_ = stdin.Close()
			_ = cmd.Process.Kill()
			<-ic.done
		})
	}
	t.Cleanup(ic.stop)
	return ic
}

// opsSFTPClient logs u in with the Go SSH and SFTP client libraries, which
// let a test hold a file handle open as long as it likes.
func opsSFTPClient(t *testing.T, g *testgw.Gateway, u *testgw.User) *sftp.Client {
	t.Helper()
	hk, err := knownhosts.New(g.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := ssh.Dial("tcp", g.Addr, &ssh.ClientConfig{User: u.Name, Auth: []ssh.AuthMethod{ssh.PublicKeys(u.Signer)},
		HostKeyCallback: hk, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := sftp.NewClient(sc)
	if err != nil {
		sc.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close(); sc.Close() })
	return cl
}
