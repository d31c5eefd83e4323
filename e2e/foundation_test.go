package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/internal/testenv"
	"github.com/sftpgw/sftpgw/internal/testgw"
)

// TestRoundTrip uploads and downloads files of edge sizes with OpenSSH sftp
// and compares SHA-256 at every step: client, S3 object, download.
func TestRoundTrip(t *testing.T) {
	needTool(t, "sftp")
	g := testgw.Start(t, testgw.Options{})
	u := g.AddUser("partner", false)
	c, bucket := s3Client(t, g, "files")
	dir := t.TempDir()
	sizes := map[string]int64{"zero": 0, "one": 1, "five-mib-plus-one": 5<<20 + 1, "hundred-mib": 100 << 20}
	var batch strings.Builder
	sums := map[string]string{}
	for name, n := range sizes {
		p, sum := randomFile(t, dir, name, n)
		sums[name] = sum
		fmt.Fprintf(&batch, "put %s %s\n", p, name)
		fmt.Fprintf(&batch, "get %s %s\n", name, filepath.Join(dir, name+".back"))
	}
	start := time.Now()
	out, err := g.SFTP(u, batch.String())
	if err != nil {
		t.Fatalf("sftp: %v\n%s", err, out)
	}
	t.Logf("round trip of %d files took %s", len(sizes), time.Since(start))
	for name := range sizes {
		key := "partner/" + u.Name + "/" + name
		if got := objectSHA(t, c, bucket, key); got != sums[name] {
			t.Errorf("%s: object sha %s, uploaded %s", name, got, sums[name])
		}
		assertSSE(t, c, bucket, key)
		if got := fileSHA(t, filepath.Join(dir, name+".back")); got != sums[name] {
			t.Errorf("%s: downloaded sha %s, uploaded %s", name, got, sums[name])
		}
	}
	if n := len(testenv.PendingUploads(t, c, bucket, "")); n != 0 {
		t.Errorf("%d multipart uploads left pending", n)
	}
}

// TestDirectoryOperations covers mkdir, ls, rename, posix-rename, rm, rmdir
// and the errors clients rely on, with SSE on markers and renamed copies.
func TestDirectoryOperations(t *testing.T) {
	needTool(t, "sftp")
	g := testgw.Start(t, testgw.Options{})
	u := g.AddUser("partner", false)
	c, bucket := s3Client(t, g, "files")
	home := "partner/" + u.Name + "/"
	p, sum := randomFile(t, t.TempDir(), "doc.pdf", 12345)
	out, err := g.SFTP(u, strings.Join([]string{
		"mkdir inbox",
		"put " + p + " inbox/doc.pdf",
		"ls -l inbox",
		"rename inbox/doc.pdf inbox/renamed.pdf",
		"mkdir empty",
		"ls -1",
		"pwd",
	}, "\n"))
	if err != nil {
		t.Fatalf("sftp: %v\n%s", err, out)
	}
	mustContain(t, out, "12345", "doc.pdf", "inbox", "empty", "Remote working directory: /")
	assertSSE(t, c, bucket, home+"inbox/")
	assertSSE(t, c, bucket, home+"empty/")
	assertSSE(t, c, bucket, home+"inbox/renamed.pdf")
	if got := objectSHA(t, c, bucket, home+"inbox/renamed.pdf"); got != sum {
		t.Error("renamed object content differs")
	}
	if exists(t, c, bucket, home+"inbox/doc.pdf") {
		t.Error("rename left the source")
	}

	// Failures each in their own batch (sftp -b stops at the first error).
	fails := map[string]string{
		"rmdir inbox":                          "Failure", // not empty
		"rm nope":                              "No such file",
		"rename nope x":                        "No such file",
		"mkdir inbox":                          "Failure",     // exists
		"rename inbox/renamed.pdf empty":       "Failure",     // target exists, no overwrite
		"symlink inbox/renamed.pdf inbox/link": "unsupported", // no links
		"get inbox":                            "",
		"ls nope":                              "not found",
	}
	for cmd, want := range fails {
		out, err := g.SFTP(u, cmd)
		if err == nil {
			t.Errorf("%q succeeded:\n%s", cmd, out)
			continue
		}
		if want != "" && !strings.Contains(strings.ToLower(out), strings.ToLower(want)) {
			t.Errorf("%q: want %q in:\n%s", cmd, want, out)
		}
	}
	out, err = g.SFTP(u, "rm inbox/renamed.pdf\nrmdir inbox\nrmdir empty\nls -1")
	if err != nil {
		t.Fatalf("cleanup: %v\n%s", err, out)
	}
	if keys := allKeys(t, c, bucket); len(keys) != 0 {
		t.Errorf("objects left after rm/rmdir: %v", keys)
	}
}

// TestTraversalStaysInHome tries to leave the home with every path trick;
// whatever the client names must land inside the home or be refused.
func TestTraversalStaysInHome(t *testing.T) {
	needTool(t, "sftp")
	g := testgw.Start(t, testgw.Options{})
	a := g.AddUser("applicant", false)
	b := g.AddUser("applicant", false)
	c, bucket := s3Client(t, g, "files")
	p, _ := randomFile(t, t.TempDir(), "f", 10)
	for _, target := range []string{"../" + b.Name + "/x1", "/../../" + b.Name + "/x2", "//../x3", "../../../x4", "./../x5"} {
		out, err := g.SFTP(a, "put "+p+" "+target)
		if err != nil {
			t.Fatalf("put %s: %v\n%s", target, err, out)
		}
	}
	out, err := g.SFTP(a, "cd ..\npwd\nls -1 /..")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	mustContain(t, out, "Remote working directory: /")
	for _, k := range allKeys(t, c, bucket) {
		if !strings.HasPrefix(k, "user/"+a.Name+"/") {
			t.Errorf("key %q is outside %s's home", k, a.Name)
		}
	}
	// Names that cannot be stored faithfully are refused with a clear text.
	// OpenSSH shows only "Failure" for a refused open; the reason is in
	// the status message (shown by other clients) and in the audit event.
	for _, bad := range []string{`"a\\b"`, `"trailing "`} {
		out, err := g.SFTP(a, "put "+p+" "+bad)
		if err == nil || !strings.Contains(out, "Failure") {
			t.Errorf("put %s: err=%v out=%s", bad, err, out)
		}
	}
	if n := len(g.Events.Find(audit.Event{Op: "upload", ErrClass: "invalid_path"})); n != 2 {
		t.Errorf("%d invalid_path events, want 2", n)
	}
}

// TestKilledUploadLeavesNothing kills sftp in the middle of a large upload:
// no object and no pending multipart upload may remain.
func TestKilledUploadLeavesNothing(t *testing.T) {
	needTool(t, "sftp")
	g := testgw.Start(t, testgw.Options{})
	u := g.AddUser("applicant", false)
	c, bucket := s3Client(t, g, "files")
	p, _ := randomFile(t, t.TempDir(), "big", 300<<20)
	args := append(g.SSHArgs(u), "-P", fmt.Sprint(g.Port), "-b", "-", u.Name+"@"+g.Host)
	cmd := exec.Command("sftp", args...)
	cmd.Env = g.ClientEnv(u, "")
	cmd.Stdin = strings.NewReader("put " + p + " big\n")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	key := "user/" + u.Name + "/big"
	// Wait until the upload is well under way (visible with its size).
	waitFor(t, 60*time.Second, "upload past 20 MiB", func() bool { return progressed(g) })
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	waitFor(t, 30*time.Second, "upload to be aborted", func() bool { return g.Server.Uploads().Active() == 0 })
	if exists(t, c, bucket, key) {
		t.Error("a killed upload left an object")
	}
	if n := len(testenv.PendingUploads(t, c, bucket, "")); n != 0 {
		t.Errorf("%d multipart uploads left pending", n)
	}
	if len(g.Events.Find(eventOf("upload", "error"))) == 0 {
		t.Error("no audit event for the aborted upload")
	}
}

// progressed reports an upload past 20 MiB, i.e. into multipart territory.
func progressed(g *testgw.Gateway) bool { return g.Server.Uploads().MaxSize() > 20<<20 }

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestExecAndShellRefused checks that the side doors of SSH (shell, exec,
// scp) are closed for every role, with the session's exit status set.
func TestExecAndShellRefused(t *testing.T) {
	needTool(t, "ssh")
	g := testgw.Start(t, testgw.Options{})
	u := g.AddUser("partner", false)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, remote := range [][]string{{"cat", "/etc/passwd"}, {"scp", "-f", "x"}, {"-s", "nosuch"}} {
		args := append(g.SSHArgs(u), "-p", fmt.Sprint(g.Port), "-T", u.Name+"@"+g.Host)
		args = append(args, remote...)
		cmd := exec.CommandContext(ctx, "ssh", args...)
		cmd.Env = g.ClientEnv(u, "")
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("ssh %v succeeded: %s", remote, out)
		}
	}
	if len(g.Events.Find(eventOf("ssh_request", "denied"))) < 3 {
		t.Errorf("refused requests not audited: %+v", g.Events.All())
	}
	_ = os.Remove
}
