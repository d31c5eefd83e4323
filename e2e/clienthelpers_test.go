package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/sftpgw/sftpgw/internal/testenv"
	"github.com/sftpgw/sftpgw/internal/testgw"
)

// cliRun describes one run of a client program.
type cliRun struct {
	env     []string
	dir     string
	stdin   string
	timeout time.Duration
	setsid  bool // no controlling terminal: prompts fall back to stdin (PuTTY)
}

// run executes name with args and returns stdout and stderr combined.
func (r cliRun) run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	if r.timeout == 0 {
		r.timeout = 3 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = r.env
	cmd.Dir = r.dir
	cmd.Stdin = strings.NewReader(r.stdin)
	if r.setsid {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s timed out after %s: %w", name, r.timeout, err)
	}
	return out.String(), err
}

// cliHome is the key prefix of u's home for the standard roles.
func cliHome(u *testgw.User) string {
	switch u.Role {
	case "partner":
		return "partner/" + u.Name + "/"
	case "hr":
		return "user/"
	case "auditor":
		return "audit/"
	}
	return "user/" + u.Name + "/"
}

// cliHostKey reads the gateway's host key from the test's known_hosts.
func cliHostKey(t *testing.T, g *testgw.Gateway) ssh.PublicKey {
	t.Helper()
	b, err := os.ReadFile(g.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	_, _, pk, _, _, err := ssh.ParseKnownHosts(b)
	if err != nil {
		t.Fatal(err)
	}
	return pk
}

// cliCheck asserts the object at key has content sum and SSE.
func cliCheck(t *testing.T, c *s3.Client, bucket, key, sum string) {
	t.Helper()
	if got := objectSHA(t, c, bucket, key); got != sum {
		t.Errorf("object %s: sha256 %s, want %s", key, got, sum)
	}
	assertSSE(t, c, bucket, key)
}

// cliCheckAll asserts every object in the bucket (markers included) is
// encrypted at rest, and that no multipart upload is left pending.
func cliCheckAll(t *testing.T, c *s3.Client, bucket string) {
	t.Helper()
	for _, k := range allKeys(t, c, bucket) {
		assertSSE(t, c, bucket, k)
	}
	if n := len(testenv.PendingUploads(t, c, bucket, "")); n != 0 {
		t.Errorf("%d multipart uploads left pending", n)
	}
}

// cliDial dials the gateway as u with the Go client (public key, plus TOTP
// by keyboard-interactive for MFA users), checking the host key.
func cliDial(t testing.TB, g *testgw.Gateway, u *testgw.User, addr string) (*ssh.Client, error) {
	hk, err := os.ReadFile(g.KnownHosts)
	if err != nil {
		return nil, err
	}
	_, _, pk, _, _, err := ssh.ParseKnownHosts(hk)
	if err != nil {
		return nil, err
	}
	auth := []ssh.AuthMethod{ssh.PublicKeys(u.Signer)}
	if u.Secret != "" {
		auth = append(auth, ssh.KeyboardInteractive(func(_, _ string, qs []string, _ []bool) ([]string, error) {
			ans := make([]string, len(qs))
			for i := range qs {
				ans[i] = g.Code(u)
			}
			return ans, nil
		}))
	}
	if addr == "" {
		addr = g.Addr
	}
	return ssh.Dial("tcp", addr, &ssh.ClientConfig{
		User: u.Name, Auth: auth, HostKeyCallback: ssh.FixedHostKey(pk), Timeout: 20 * time.Second,
	})
}

// cliSFTP opens an SFTP session as u; both are closed when the test ends.
func cliSFTP(t testing.TB, g *testgw.Gateway, u *testgw.User, opts ...sftp.ClientOption) (*sftp.Client, *ssh.Client) {
	t.Helper()
	sc, err := cliDial(t, g, u, "")
	if err != nil {
		t.Fatalf("ssh as %s: %v", u.Name, err)
	}
	c, err := sftp.NewClient(sc, opts...)
	if err != nil {
		sc.Close()
		t.Fatalf("sftp as %s: %v", u.Name, err)
	}
	t.Cleanup(func() { c.Close(); sc.Close() })
	return c, sc
}

// cliTree creates files (relative path → size) under dir and returns
// their SHA-256 sums.
func cliTree(t *testing.T, dir string, files map[string]int64) map[string]string {
	t.Helper()
	sums := map[string]string{}
	for rel, n := range files {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(rel)), 0o755); err != nil {
			t.Fatal(err)
		}
		_, sums[rel] = randomFile(t, filepath.Dir(filepath.Join(dir, rel)), filepath.Base(rel), n)
	}
	return sums
}
