package e2e

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
	"golang.org/x/crypto/ssh"

	"github.com/sftpgw/sftpgw/authn"
	"github.com/sftpgw/sftpgw/internal/testgw"
)

// runSftpgw runs the gateway binary and returns its stdout and stderr.
func runSftpgw(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(sftpgwBinary(t), args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// mustSftpgw runs the binary and fails the test unless it exits 0.
func mustSftpgw(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := runSftpgw(t, args...)
	if err != nil {
		t.Fatalf("sftpgw %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// newKeyPair writes an ed25519 key pair (path, path.pub) for a client.
func newKeyPair(t *testing.T, path string) {
	t.Helper()
	pk, priv, _ := ed25519.GenerateKey(rand.Reader)
	blk, _ := ssh.MarshalPrivateKey(priv, "")
	sp, _ := ssh.NewPublicKey(pk)
	if err := os.WriteFile(path, pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(sp), 0o644); err != nil {
		t.Fatal(err)
	}
}

var otpSecret = regexp.MustCompile(`otpauth://totp/\S*[?&]secret=([A-Z2-7]+)`)

// TestUserCommands runs every `sftpgw user` subcommand as the operator
// would, on the users file of a running gateway configured with the shipped
// roles, and proves each change with a real OpenSSH login: add (key only
// and with TOTP), add-key, list, rotate-totp, remove, invite, help, and the
// refusals (no --config, unknown role, unknown subcommand) with a non-zero
// exit.
func TestUserCommands(t *testing.T) {
	needTool(t, "sftp")
	dir := t.TempDir()
	hostKeyPath := filepath.Join(dir, "host_key")
	newKeyPair(t, hostKeyPath)
	hkPEM, _ := os.ReadFile(hostKeyPath)
	hostKey, err := ssh.ParsePrivateKey(hkPEM)
	if err != nil {
		t.Fatal(err)
	}
	roles, _ := testgw.ExampleRoles(t)
	// The refused logins below (4 by design) must not ban 127.0.0.1.
	g := testgw.Start(t, testgw.Options{Roles: roles, HostKey: hostKey,
		Lockout: authn.Lockout{MaxIPFailures: 100, MaxPairFailures: 100}})

	// The shipped configuration, pointed at this gateway's users file, host
	// key and address: the commands check roles against it.
	src, err := os.ReadFile(testgw.ExampleConfig())
	if err != nil {
		t.Fatal(err)
	}
	text := string(src)
	for re, repl := range map[string]string{
		`(?m)^users_file\s*=.*$`: `users_file = "` + g.UsersFile() + `"`,
		`(?m)^host_keys\s*=.*$`:  `host_keys = ["` + hostKeyPath + `"]`,
		`(?m)^listen\s*=.*$`:     `listen = "` + g.Addr + `"`,
	} {
		if !regexp.MustCompile(re).MatchString(text) {
			t.Fatalf("example config has no line matching %s", re)
		}
		text = regexp.MustCompile(re).ReplaceAllLiteralString(text, repl)
	}
	cfg := filepath.Join(dir, "sftpgw.hcl")
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	reload := func() {
		t.Helper()
		// The gateway also reloads by itself (authn's own test covers
		// that); reloading here keeps this test free of its poll interval.
		if err := g.Users.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	login := func(u *testgw.User) error {
		t.Helper()
		out, err := g.SFTP(u, "pwd")
		if err != nil {
			t.Logf("login as %s with %s: %v\n%s", u.Name, filepath.Base(u.KeyPath), err, out)
		}
		return err
	}
	k1, k2, k3 := filepath.Join(dir, "k1"), filepath.Join(dir, "k2"), filepath.Join(dir, "k3")
	for _, k := range []string{k1, k2, k3} {
		newKeyPair(t, k)
	}

	// add, key only.
	out := mustSftpgw(t, "user", "add", "--config", cfg, "--role", "partner", "--key", k1+".pub", "--name", "acme")
	if !strings.Contains(out, "added user acme (role partner, 1 key(s), MFA no") {
		t.Errorf("user add output:\n%s", out)
	}
	reload()
	acme := &testgw.User{Name: "acme", Role: "partner", KeyPath: k1}
	if err := login(acme); err != nil {
		t.Fatal("the added user cannot log in")
	}
	acme2 := &testgw.User{Name: "acme", Role: "partner", KeyPath: k2}
	if login(acme2) == nil {
		t.Fatal("a key not added yet logs in")
	}

	// add-key.
	out = mustSftpgw(t, "user", "add-key", "acme", "--key", k2+".pub", "--config", cfg)
	if !strings.Contains(out, "user acme now has 2 key(s)") {
		t.Errorf("user add-key output:\n%s", out)
	}
	reload()
	if err := login(acme2); err != nil {
		t.Fatal("the added key cannot log in")
	}

	// add with TOTP (hr requires it): the secret is printed once.
	out = mustSftpgw(t, "user", "add", "--config", cfg, "--role", "hr", "--key", k3+".pub", "--name", "hr1")
	m := otpSecret.FindStringSubmatch(out)
	if !strings.Contains(out, "MFA yes") || m == nil {
		t.Fatalf("user add --role hr output has no TOTP enrolment:\n%s", out)
	}
	reload()
	hr := &testgw.User{Name: "hr1", Role: "hr", KeyPath: k3, Secret: m[1]}
	if err := login(hr); err != nil {
		t.Fatal("the hr user cannot log in with the printed TOTP secret")
	}

	// list: every account, never a secret.
	out = mustSftpgw(t, "user", "list", "--config", cfg)
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^acme\s+partner\s+2\s+no\s+no\s+-\s*$`),
		regexp.MustCompile(`(?m)^hr1\s+hr\s+1\s+yes\s+no\s+-\s*$`),
	} {
		if !want.MatchString(out) {
			t.Errorf("user list lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, m[1]) {
		t.Error("user list shows a TOTP secret")
	}

	// rotate-totp: the old secret stops working, the new one works.
	out = mustSftpgw(t, "user", "rotate-totp", "hr1", "--config", cfg)
	m2 := otpSecret.FindStringSubmatch(out)
	if m2 == nil || m2[1] == m[1] {
		t.Fatalf("user rotate-totp printed no new secret:\n%s", out)
	}
	reload()
	oldCode, err := totp.GenerateCode(m[1], time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if out, err := g.SFTPWithCode(hr, oldCode, "pwd"); err == nil {
		t.Fatalf("a code from the rotated-out secret still logs in:\n%s", out)
	}
	hr.Secret = m2[1]
	if err := login(hr); err != nil {
		t.Fatal("the new TOTP secret does not log in")
	}

	// remove: both of acme's keys stop working.
	out = mustSftpgw(t, "user", "remove", "acme", "--config", cfg)
	if !strings.Contains(out, "removed user acme") {
		t.Errorf("user remove output:\n%s", out)
	}
	reload()
	if login(acme) == nil || login(acme2) == nil {
		t.Fatal("a removed user still logs in")
	}

	// invite: a bundle whose key logs in (host and port from --config).
	bundle := filepath.Join(dir, "bundle")
	out = mustSftpgw(t, "user", "invite", "--config", cfg, "--host", "127.0.0.1", "--out", bundle)
	mi := regexp.MustCompile(`invited user (\S+) \(role applicant`).FindStringSubmatch(out)
	if mi == nil {
		t.Fatalf("user invite output:\n%s", out)
	}
	reload()
	if err := login(&testgw.User{Name: mi[1], Role: "applicant", KeyPath: filepath.Join(bundle, "key")}); err != nil {
		t.Fatal("the invited user cannot log in with the bundle's key")
	}

	// help, and refusals with a non-zero exit and a reason.
	if out := mustSftpgw(t, "user", "help"); !strings.Contains(out, "sftpgw user add") {
		t.Errorf("user help:\n%s", out)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"user", "add", "--role", "partner", "--key", k1 + ".pub"}, "give --config FILE"},
		{[]string{"user", "add", "--config", cfg, "--role", "hrr", "--key", k1 + ".pub"}, `role "hrr" is not defined`},
		{[]string{"user", "remove", "nobody", "--config", cfg}, "nobody"},
		{[]string{"user", "frobnicate"}, `unknown user subcommand "frobnicate"`},
		{[]string{"user"}, "missing user subcommand"},
	} {
		out, errOut, err := runSftpgw(t, c.args...)
		if err == nil || !strings.Contains(out+errOut, c.want) {
			t.Errorf("sftpgw %s: %v, want a failure saying %q\n%s%s", strings.Join(c.args, " "), err, c.want, out, errOut)
		}
	}
}
