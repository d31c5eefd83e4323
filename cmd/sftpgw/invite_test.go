package main

import (
	"archive/zip"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sftpgw/sftpgw/authn"
)

// captureStdout redirects the user commands' output for one test.
func captureStdout(t *testing.T) *bytes.Buffer {
	var buf bytes.Buffer
	old := userStdout
	userStdout = &buf
	t.Cleanup(func() { userStdout = old })
	return &buf
}

func writeHostKey(t *testing.T, dir string) (string, ssh.PublicKey) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	blk, _ := ssh.MarshalPrivateKey(priv, "")
	p := filepath.Join(dir, "ssh_host_ed25519_key")
	if err := os.WriteFile(p, pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
	s, _ := ssh.NewSignerFromKey(priv)
	return p, s.PublicKey()
}

func TestInviteCommand(t *testing.T) {
	dir := t.TempDir()
	out := captureStdout(t)
	hk, pub := writeHostKey(t, dir)
	users := filepath.Join(dir, "users.hcl")
	bundle := filepath.Join(dir, "bundle")
	err := runInvite([]string{"--users", users, "--host-key", hk, "--host", "gw.example", "--port", "2022",
		"--expires", "14d", "--out", bundle, "--zip"})
	if err != nil {
		t.Fatal(err)
	}
	set, err := authn.LoadUsers(users)
	if err != nil || set.Len() != 1 {
		t.Fatalf("users: %v %v", set, err)
	}
	u := set.Users()[0]
	if u.Role != "applicant" || u.ExpiresAt.Before(time.Now().Add(13*24*time.Hour)) {
		t.Errorf("user %+v", u)
	}
	for _, want := range []string{"invited user " + u.Name, "role applicant", bundle + ", " + bundle + ".zip",
		ssh.FingerprintSHA256(pub), "exists only in this bundle"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, f := range []string{"key", "key.pub", "key.ppk", "filezilla-site.xml", "known_hosts", "README.txt"} {
		if _, err := os.Stat(filepath.Join(bundle, f)); err != nil {
			t.Error(err)
		}
	}
	readme, _ := os.ReadFile(filepath.Join(bundle, "README.txt"))
	if !strings.Contains(string(readme), "Valid until:   "+u.ExpiresAt.Format("2 January 2006")) {
		t.Errorf("README lacks the expiry:\n%s", readme)
	}
	kh, _ := os.ReadFile(filepath.Join(bundle, "known_hosts"))
	if !strings.Contains(string(kh), "[gw.example]:2022 ssh-ed25519 ") {
		t.Errorf("known_hosts:\n%s", kh)
	}
	zr, err := zip.OpenReader(bundle + ".zip")
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	if len(zr.File) != 6 || !strings.HasPrefix(zr.File[0].Name, "bundle/") {
		t.Errorf("zip entries: %d, first %s", len(zr.File), zr.File[0].Name)
	}

	// The same --out again is refused before any account is created.
	if err := runInvite([]string{"--users", users, "--host-key", hk, "--host", "gw.example", "--out", bundle}); err == nil {
		t.Error("existing --out accepted")
	}
	// So are roles that need TOTP, and a bundle without a host key.
	if err := runInvite([]string{"--users", users, "--host-key", hk, "--host", "gw.example", "--role", "hr"}); err == nil {
		t.Error("hr invited")
	}
	if err := runInvite([]string{"--users", users, "--host", "gw.example"}); err == nil || !strings.Contains(err.Error(), "--host-key") {
		t.Errorf("no host key: %v", err)
	}
	if err := runInvite([]string{"--users", users, "--host-key", hk}); err == nil || !strings.Contains(err.Error(), "--host is required") {
		t.Errorf("no host: %v", err)
	}
	if set, _ := authn.LoadUsers(users); set.Len() != 1 {
		t.Errorf("%d users after refused invitations", set.Len())
	}
}

// TestInviteFromConfig takes users file, host key, port and the role's
// limits from the gateway configuration; the default bundle directory is
// ./invite-NAME.
func TestInviteFromConfig(t *testing.T) {
	dir := t.TempDir()
	out := captureStdout(t)
	_, pub := writeHostKey(t, dir)
	cfg := filepath.Join(dir, "sftpgw.hcl")
	os.WriteFile(cfg, []byte(`
listen     = "0.0.0.0:2222"
host_keys  = ["ssh_host_ed25519_key"]
users_file = "users.hcl"
storage "files" {
  type = "local"
  root = "data"
}
role "applicant" {
  storage       = "files"
  home          = "user/{name}/"
  permissions   = ["list", "upload"]
  max_file_size = "10MiB"
  quota_files   = 5
  allowed_types = ["pdf"]
}
role "staff" {
  storage     = "files"
  home        = "user/"
  permissions = ["*"]
  mfa         = true
}
`), 0o600)
	t.Chdir(dir)
	if err := runInvite([]string{"--config", cfg, "--host", "uploads.example.org", "--expires", "never"}); err != nil {
		t.Fatal(err)
	}
	set, err := authn.LoadUsers(filepath.Join(dir, "users.hcl"))
	if err != nil || set.Len() != 1 {
		t.Fatalf("users: %v", err)
	}
	u := set.Users()[0]
	if !u.ExpiresAt.IsZero() {
		t.Errorf("--expires never stored %v", u.ExpiresAt)
	}
	readme, err := os.ReadFile(filepath.Join(dir, "invite-"+u.Name, "README.txt"))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"Port:          2222", "At most 10 MiB per file", "At most 5 files in total", "PDF (.pdf)",
		ssh.FingerprintSHA256(pub)} {
		if !strings.Contains(string(readme), want) {
			t.Errorf("README lacks %q:\n%s", want, readme)
		}
	}
	if err := runInvite([]string{"--config", cfg, "--host", "uploads.example.org", "--role", "staff"}); err == nil ||
		!strings.Contains(err.Error(), "requires TOTP") {
		t.Errorf("MFA role: %v", err)
	}
	if err := runInvite([]string{"--config", cfg, "--host", "uploads.example.org", "--role", "nope"}); err == nil {
		t.Error("unknown role accepted")
	}
}
