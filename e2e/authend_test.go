package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/internal/testenv"
	"github.com/sftpgw/sftpgw/internal/testgw"
)

// unfinished returns the audit events for connections that ended without
// logging in (stage: handshake or auth_incomplete).
func unfinished(g *testgw.Gateway, stage string) []audit.Event {
	return g.Events.Find(audit.Event{Kind: "connect", Result: "error", ErrClass: stage})
}

// TestConnectionEndsAudited: every connection leaves an audit event, also
// when it ends during authentication. A client whose HR key was accepted
// and that then leaves before the verification code (a stolen key being
// tried) used to leave nothing at all.
func TestConnectionEndsAudited(t *testing.T) {
	g := testgw.Start(t, testgw.Options{})
	hr := g.AddUser("hr", true)
	pk := cliHostKey(t, g)

	// 1. Key step passed, then the client gives up at the code prompt.
	errGiveUp := errors.New("no code")
	_, err := ssh.Dial("tcp", g.Addr, &ssh.ClientConfig{User: hr.Name, HostKeyCallback: ssh.FixedHostKey(pk),
		Timeout: 10 * time.Second, Auth: []ssh.AuthMethod{ssh.PublicKeys(hr.Signer),
			ssh.KeyboardInteractive(func(string, string, []string, []bool) ([]string, error) { return nil, errGiveUp })}})
	if err == nil {
		t.Fatal("login without a code succeeded")
	}
	fp := ssh.FingerprintSHA256(hr.Signer.PublicKey())
	waitFor(t, 10*time.Second, "an event for the connection that passed the key step", func() bool {
		for _, e := range unfinished(g, "auth_incomplete") {
			if e.User == hr.Name && e.Method == "publickey" && e.KeyFP == fp && e.Role == "hr" && e.Session != "" {
				t.Logf("event: %+v", e)
				return true
			}
		}
		return false
	})

	// 2. A TCP connection that never speaks SSH.
	before := len(unfinished(g, "handshake"))
	nc, err := net.Dial("tcp", g.Addr)
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	waitFor(t, 10*time.Second, "an event for a connection closed before the handshake", func() bool {
		return len(unfinished(g, "handshake")) > before
	})

	// 3. An unknown user who leaves after one refused key: the refusal has its
	// event, and the end of the connection has one too.
	other := g.AddUser("partner", false)
	_, err = ssh.Dial("tcp", g.Addr, &ssh.ClientConfig{User: "nobody-" + other.Name, HostKeyCallback: ssh.FixedHostKey(pk),
		Timeout: 10 * time.Second, Auth: []ssh.AuthMethod{ssh.PublicKeys(other.Signer)}})
	if err == nil {
		t.Fatal("unknown user logged in")
	}
	waitFor(t, 10*time.Second, "an event for the unknown user's connection", func() bool {
		for _, e := range unfinished(g, "auth_incomplete") {
			if e.User == "nobody-"+other.Name && e.Method == "" && strings.Contains(e.Detail, "no step passed") {
				return true
			}
		}
		return false
	})
	// Nothing of this is a login.
	if n := len(g.Events.Find(audit.Event{Kind: "session_start"})); n != 0 {
		t.Errorf("%d sessions started", n)
	}
}

// TestClientParamikoHR: HR (key + TOTP) with Debian's paramiko 2.12. The
// plain paramiko code cannot log in to an x/crypto/ssh server (paramiko
// repeats the ssh-userauth service request before the keyboard-interactive
// step); the failed attempt is audited with the key step it passed. With the
// documented workaround (paramiko_hr.py: second step without a new service
// request) the login works and files go up and down.
func TestClientParamikoHR(t *testing.T) {
	const py = "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import paramiko").Run(); err != nil {
		if os.Getenv(testenv.EnvRequire) == "1" {
			t.Fatalf("%s cannot import paramiko: %v", py, err)
		}
		t.Skip("no paramiko for " + py)
	}
	g := testgw.Start(t, testgw.Options{})
	hr := g.AddUser("hr", true)
	c, bucket := s3Client(t, g, "files")
	dir := t.TempDir()
	local, sum := randomFile(t, dir, "hr.bin", 2<<20+3)
	script, err := filepath.Abs("paramiko_hr.py")
	if err != nil {
		t.Fatal(err)
	}
	type report struct {
		AfterKey      []string `json:"after_key"`
		Error         string   `json:"error"`
		Authenticated bool     `json:"authenticated"`
		Listdir       []string `json:"listdir"`
	}
	run := func(mode string) report {
		t.Helper()
		out, err := cliRun{dir: dir, env: append(os.Environ(), "HOME="+dir)}.run(t, py, script, mode,
			g.Host, fmt.Sprint(g.Port), hr.Name, hr.KeyPath, g.KnownHosts, g.Code(hr), local, dir)
		if err != nil {
			t.Fatalf("paramiko %s: %v\n%s", mode, err, out)
		}
		var rep report
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rep); err != nil {
			t.Fatalf("report: %v\n%s", err, out)
		}
		t.Logf("%s: %+v", mode, rep)
		return rep
	}

	plain := run("plain")
	if !slices.Equal(plain.AfterKey, []string{"keyboard-interactive"}) || plain.Error == "" || plain.Authenticated {
		t.Errorf("plain paramiko: %+v; want a partial success after the key, then a failure", plain)
	}
	fp := ssh.FingerprintSHA256(hr.Signer.PublicKey())
	waitFor(t, 10*time.Second, "the plain attempt audited with its key step", func() bool {
		for _, e := range unfinished(g, "auth_incomplete") {
			if e.User == hr.Name && e.Method == "publickey" && e.KeyFP == fp &&
				strings.Contains(e.Detail, "service request") && strings.Contains(e.ClientVer, "paramiko") {
				return true
			}
		}
		return false
	})

	fixed := run("workaround")
	if fixed.Error != "" || !fixed.Authenticated || !slices.Contains(fixed.Listdir, "hr-paramiko.bin") {
		t.Fatalf("paramiko with the workaround: %+v", fixed)
	}
	if got := fileSHA(t, filepath.Join(dir, "back.bin")); got != sum {
		t.Errorf("downloaded sha %s, want %s", got, sum)
	}
	cliCheck(t, c, bucket, cliHome(hr)+"hr-paramiko.bin", sum)
	if n := len(g.Events.Find(audit.Event{Kind: "auth", User: hr.Name, Result: "ok"})); n != 1 {
		t.Errorf("%d successful HR logins audited, want 1", n)
	}
}
