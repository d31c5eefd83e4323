package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
)

// demoRun is a running `sftpgw demo` and what it printed.
type demoRun struct {
	cmd    *exec.Cmd
	out    strings.Builder // everything printed up to "Press Ctrl-C"
	logins map[string]demoLogin
	exited chan error
}

// demoLogin is one printed account: role, user, and the sftp command line.
type demoLogin struct {
	user, secret string
	args         []string // the printed sftp arguments, without the program
}

var (
	demoRole   = regexp.MustCompile(`^(Applicant|HR|Auditor) (\S+):`)
	demoSecret = regexp.MustCompile(`oathtool --totp -b (\S+)\)`)
)

// startDemo runs `sftpgw demo --port 0` on dir and waits for its
// instructions (it prints them once it listens).
func startDemo(t *testing.T, dir string) *demoRun {
	t.Helper()
	d := &demoRun{logins: map[string]demoLogin{}, exited: make(chan error, 1)}
	d.cmd = exec.Command(sftpgwBinary(t), "demo", "--dir", dir, "--port", "0")
	d.cmd.Stderr = io.Discard
	stdout, err := d.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			_ = d.cmd.Process.Kill()
			<-d.exited
		}
	})
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		var role, user, secret string
		for sc.Scan() {
			line := sc.Text()
			select {
			case <-ready:
				continue
			default:
			}
			d.out.WriteString(line + "\n")
			if m := demoRole.FindStringSubmatch(line); m != nil {
				role, user, secret = strings.ToLower(m[1]), m[2], ""
			}
			if m := demoSecret.FindStringSubmatch(line); m != nil {
				secret = m[1]
			}
			if f := strings.Fields(line); len(f) > 1 && f[0] == "sftp" && role != "" {
				d.logins[role] = demoLogin{user: user, secret: secret, args: f[1:]}
			}
			if strings.HasPrefix(line, "Press Ctrl-C to stop.") {
				close(ready)
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		d.exited <- d.cmd.Wait()
	}()
	select {
	case <-ready:
	case err := <-d.exited:
		t.Fatalf("sftpgw demo exited before it was ready: %v\n%s", err, d.out.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("sftpgw demo printed no instructions within 60 s:\n%s", d.out.String())
	}
	for _, r := range []string{"applicant", "hr", "auditor"} {
		if _, ok := d.logins[r]; !ok {
			t.Fatalf("no sftp command printed for %s:\n%s", r, d.out.String())
		}
	}
	return d
}

// sftp runs the printed command line of role in batch mode (answering the
// TOTP prompt for hr with a code from the printed secret).
func (d *demoRun) sftp(t *testing.T, role, batch string) (string, error) {
	t.Helper()
	l := d.logins[role]
	args := append([]string{"-o", "StrictHostKeyChecking=yes", "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "PasswordAuthentication=no", "-o", "LogLevel=ERROR", "-F", "/dev/null"}, l.args[:len(l.args)-1]...)
	env := append(os.Environ(), "DISPLAY=", "SSH_AUTH_SOCK=")
	if l.secret != "" {
		code, err := totp.GenerateCode(l.secret, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		script := filepath.Join(t.TempDir(), "askpass")
		if err := os.WriteFile(script, []byte("#!/bin/sh\necho "+code+"\n"), 0o700); err != nil {
			t.Fatal(err)
		}
		env = append(env, "SSH_ASKPASS="+script, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=:0")
		args = append(args, "-o", "BatchMode=no")
	}
	args = append(args, "-b", "-", l.args[len(l.args)-1])
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sftp", args...)
	cmd.Env = env
	cmd.Stdin = strings.NewReader(batch)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// stop sends SIGTERM and waits for a clean exit.
func (d *demoRun) stop(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.exited:
		if err != nil {
			t.Errorf("sftpgw demo after SIGTERM: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("sftpgw demo still running 60 s after SIGTERM")
	}
}

// TestDemoCommand runs `sftpgw demo` as a user would and follows its
// printed instructions with OpenSSH: the applicant uploads but cannot
// download, HR logs in with key + TOTP from the printed secret and
// downloads, the auditor logs in; SIGTERM stops it cleanly with the audit
// trail written; a second run on the same directory keeps the accounts.
func TestDemoCommand(t *testing.T) {
	needTool(t, "sftp")
	dir := t.TempDir()
	d := startDemo(t, dir)
	app := d.logins["applicant"].user

	local := filepath.Join(t.TempDir(), "cv.txt")
	if err := os.WriteFile(local, []byte("my cv\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := d.sftp(t, "applicant", "put "+local+" cv.txt\n"); err != nil {
		t.Fatalf("applicant upload: %v\n%s", err, out)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "files", "user", app, "cv.txt")); err != nil || string(b) != "my cv\n" {
		t.Fatalf("uploaded file in the demo's files directory: %q, %v", b, err)
	}
	if out, err := d.sftp(t, "applicant", "get cv.txt "+filepath.Join(t.TempDir(), "x")+"\n"); err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("applicant download: %v\n%s", err, out)
	}
	got := filepath.Join(t.TempDir(), "got.txt")
	if out, err := d.sftp(t, "hr", fmt.Sprintf("get %s/cv.txt %s\n", app, got)); err != nil {
		t.Fatalf("hr download with key + TOTP: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(got); string(b) != "my cv\n" {
		t.Errorf("hr downloaded %q", b)
	}
	if out, err := d.sftp(t, "auditor", "pwd\n"); err != nil {
		t.Errorf("auditor login: %v\n%s", err, out)
	}
	d.stop(t)
	// Shutdown flushes the trail: the upload is in a batch on disk.
	var trail strings.Builder
	_ = filepath.WalkDir(filepath.Join(dir, "audit-store", "audit"), func(p string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			b, _ := os.ReadFile(p)
			trail.Write(b)
		}
		return nil
	})
	if !strings.Contains(trail.String(), `"/cv.txt"`) {
		t.Errorf("no audit batch mentions the upload after the demo stopped")
	}

	again := startDemo(t, dir)
	for _, r := range []string{"applicant", "hr", "auditor"} {
		if again.logins[r].user != d.logins[r].user {
			t.Errorf("second run: %s is %s, was %s", r, again.logins[r].user, d.logins[r].user)
		}
	}
	again.stop(t)
}
