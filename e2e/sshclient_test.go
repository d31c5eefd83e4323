package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/sftpgw/sftpgw/internal/testgw"
	"github.com/sftpgw/sftpgw/vfs"
)

// sshClient runs the OpenSSH programs (ssh, sftp, scp) as one user.
type sshClient struct {
	g      *testgw.Gateway
	u      *testgw.User
	code   string   // TOTP code the askpass answers ("" = a fresh valid one for MFA users)
	ctl    string   // ControlPath of a logged-in master ("" = every run logs in)
	prefix []string // runs the program through e.g. `ip netns exec NS`
	opts   []string // extra client options (-o BindAddress=...)
	env    []string // extra environment, overriding ClientEnv
}

func (c *sshClient) target() string { return c.u.Name + "@" + c.g.Host }

// command builds the exec.Cmd for tool with the common options first.
func (c *sshClient) command(ctx context.Context, tool string, args ...string) *exec.Cmd {
	port := "-P"
	if tool == "ssh" {
		port = "-p"
	}
	a := append(append([]string{}, c.g.SSHArgs(c.u)...), port, fmt.Sprint(c.g.Port))
	code := c.code
	if c.ctl != "" {
		a = append(a, "-o", "ControlMaster=no", "-o", "ControlPath="+c.ctl)
		if code == "" {
			code = "000000" // never asked: the master is already logged in
		}
	}
	a = append(append(a, c.opts...), args...)
	name := tool
	if len(c.prefix) > 0 {
		name = c.prefix[0]
		a = append(append(append([]string{}, c.prefix[1:]...), tool), a...)
	}
	cmd := exec.CommandContext(ctx, name, a...)
	cmd.Env = append(c.g.ClientEnv(c.u, code), c.env...)
	cmd.Dir = c.g.Dir
	return cmd
}

// run runs tool to completion and returns its combined output.
func (c *sshClient) run(stdin, tool string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := c.command(ctx, tool, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// sftp runs a batch (sftp -b stops at the first failing command).
func (c *sshClient) sftp(batch string) (string, error) {
	args := []string{"-b", "-", c.target()}
	if c.u.Secret != "" {
		// -b makes sftp pass BatchMode=yes, which skips the TOTP prompt;
		// ssh keeps the first value, so this earlier one wins.
		args = append([]string{"-o", "BatchMode=no"}, args...)
	}
	return c.run(batch, "sftp", args...)
}

// ssh runs `ssh [opts] user@host remote...` with no stdin.
func (c *sshClient) ssh(opts []string, remote ...string) (string, error) {
	args := append(append(append([]string{}, opts...), c.target()), remote...)
	return c.run("", "ssh", args...)
}

// startMaster logs in once with a multiplexing master connection; later
// runs of c reuse it. Every login of an MFA user costs a TOTP step (two
// per 30 s), so tests that need many sessions log in once this way: each
// sftp run is then a new session channel on the same authenticated
// connection, which is exactly how the gateway serves any client.
func (c *sshClient) startMaster(t *testing.T, extra ...string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "sgw") // unix socket paths must stay short
	if err != nil {
		t.Fatal(err)
	}
	ctl := filepath.Join(dir, "c")
	args := append(append([]string{"-M", "-N", "-o", "ControlPath=" + ctl, "-o", "ControlPersist=no"}, extra...), c.target())
	save := c.ctl
	c.ctl = ""
	cmd := c.command(context.Background(), "ssh", args...)
	c.ctl = save
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = exec.Command("ssh", "-o", "ControlPath="+ctl, "-O", "exit", c.target()).Run()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		_ = os.RemoveAll(dir)
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-done:
			done <- err // for the cleanup
			t.Fatalf("master login of %s failed: %v\n%s", c.u.Name, err, out.String())
		default:
		}
		if _, err := os.Stat(ctl); err == nil {
			if exec.Command("ssh", "-o", "ControlPath="+ctl, "-O", "check", c.target()).Run() == nil {
				c.ctl = ctl
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("master login of %s did not complete:\n%s", c.u.Name, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *lockedBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *lockedBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// dialGo opens an x/crypto SSH connection as u (for raw protocol tests).
func dialGo(t *testing.T, g *testgw.Gateway, u *testgw.User) *ssh.Client {
	t.Helper()
	hk, err := knownhosts.New(g.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ssh.Dial("tcp", g.Addr, &ssh.ClientConfig{User: u.Name, Auth: []ssh.AuthMethod{ssh.PublicKeys(u.Signer)},
		HostKeyCallback: hk, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatalf("ssh login of %s: %v", u.Name, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// seed writes an object straight into a store, bypassing the gateway.
func seedObject(t *testing.T, g *testgw.Gateway, store, key string, data []byte) {
	t.Helper()
	ctx := context.Background()
	up, err := g.Stores[store].Create(ctx, key, vfs.CreateOptions{SizeHint: int64(len(data))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := up.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// snapshot maps every key of a store's bucket to its ETag and size, to
// prove a refused operation changed nothing.
func bucketSnapshot(t *testing.T, g *testgw.Gateway, store string) map[string]string {
	t.Helper()
	c, bucket := s3Client(t, g, store)
	m := map[string]string{}
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: &bucket})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			m[*o.Key] = fmt.Sprintf("%s/%d", ptrVal(o.ETag), ptrVal(o.Size))
		}
	}
	return m
}

func ptrVal[T any](p *T) T {
	var z T
	if p == nil {
		return z
	}
	return *p
}

// diffSnapshots describes what changed between two snapshots ("" = nothing).
func diffSnapshots(before, after map[string]string) string {
	var d []string
	for k, v := range before {
		if w, ok := after[k]; !ok {
			d = append(d, "removed "+k)
		} else if w != v {
			d = append(d, "changed "+k)
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			d = append(d, "added "+k)
		}
	}
	return strings.Join(d, ", ")
}
