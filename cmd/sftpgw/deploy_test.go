package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/crypto/ssh"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/audit/trail"
	"github.com/sftpgw/sftpgw/authn"
	"github.com/sftpgw/sftpgw/config"
	"github.com/sftpgw/sftpgw/vfs"
)

// writeConfig writes a gateway configuration on local storage into dir,
// with extra appended, and returns its path.
func writeConfig(t *testing.T, dir, extra string) string {
	t.Helper()
	p := filepath.Join(dir, "sftpgw.hcl")
	src := `
listen     = "127.0.0.1:0"
host_keys  = ["ssh_host_ed25519_key"]
users_file = "users.hcl"
storage "files" {
  type = "local"
  root = "data"
}
role "applicant" {
  storage     = "files"
  home        = "user/{name}/"
  permissions = ["list", "upload"]
}
role "hr" {
  storage     = "files"
  home        = "user/"
  permissions = ["*"]
  mfa         = true
}
` + extra
	if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestHealthReadsConfig: without --url, health probes the metrics listener
// the config names (a wildcard address on loopback), not a fixed :9090.
func TestHealthReadsConfig(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var paths []string
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		fmt.Fprint(w, `{"status":"ok"}`)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	cfg := writeConfig(t, t.TempDir(), fmt.Sprintf("metrics {\n  listen = \"0.0.0.0:%d\"\n}\n", port))
	if err := runHealth([]string{"--config", cfg}); err != nil {
		t.Fatalf("health --config: %v", err)
	}
	if err := runHealth([]string{"--config", cfg, "--path", "/readyz"}); err != nil {
		t.Fatalf("health --config --path /readyz: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(paths, " ") != "/healthz /readyz" {
		t.Errorf("probed %v, want /healthz then /readyz", paths)
	}

	noMetrics := writeConfig(t, t.TempDir(), "")
	err = runHealth([]string{"--config", noMetrics})
	if err == nil || !strings.Contains(err.Error(), "no metrics block") {
		t.Errorf("config without metrics: %v, want a 'no metrics block' error", err)
	}
}

func writePubKey(t *testing.T, dir string) string {
	t.Helper()
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	k, _ := ssh.NewPublicKey(pub)
	p := filepath.Join(dir, "id.pub")
	if err := os.WriteFile(p, ssh.MarshalAuthorizedKey(k), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestUserCommandsUseConfig: `user` commands write the users file the
// gateway reads (the config's users_file), never a stray ./users.hcl, and
// a role the config does not define is refused.
func TestUserCommandsUseConfig(t *testing.T) {
	dir := t.TempDir()
	out := captureStdout(t)
	cfg := writeConfig(t, dir, "")
	key := writePubKey(t, dir)
	cwd := t.TempDir()
	t.Chdir(cwd)

	// Neither --config nor --users: refused, and nothing written here.
	err := runUser([]string{"add", "--role", "applicant", "--key", key})
	if err == nil || !strings.Contains(err.Error(), "give --config FILE") {
		t.Errorf("add without --config/--users: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cwd, "users.hcl")); err == nil {
		t.Error("a stray ./users.hcl was written")
	}

	// A typo in the role: refused with the roles that exist.
	err = runUser([]string{"add", "--config", cfg, "--role", "hrr", "--key", key})
	if err == nil || !strings.Contains(err.Error(), `role "hrr" is not defined`) || !strings.Contains(err.Error(), "applicant, hr") {
		t.Errorf("add --role hrr: %v", err)
	}

	// --users that is not the config's users_file: refused.
	err = runUser([]string{"add", "--config", cfg, "--users", filepath.Join(cwd, "users.hcl"), "--role", "applicant", "--key", key})
	if err == nil || !strings.Contains(err.Error(), "is not the users_file of") {
		t.Errorf("add --config with another --users: %v", err)
	}

	// The right way: the config's users_file (relative to the config).
	if err := runUser([]string{"add", "--config", cfg, "--role", "hr", "--key", key, "--name", "hr1"}); err != nil {
		t.Fatal(err)
	}
	set, err := authn.LoadUsers(filepath.Join(dir, "users.hcl"))
	if err != nil || set.Len() != 1 || set.Users()[0].Role != "hr" || set.Users()[0].TOTPSecret == "" {
		t.Fatalf("users file next to the config: %v %v", set, err)
	}
	if err := runUser([]string{"list", "--config", cfg}); err != nil || !strings.Contains(out.String(), "hr1") {
		t.Errorf("list --config: %v\n%s", err, out)
	}
	if err := runUser([]string{"remove", "hr1", "--config", cfg}); err != nil {
		t.Errorf("remove --config: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cwd, "users.hcl")); err == nil {
		t.Error("a stray ./users.hcl was written")
	}

	// Without a config, --users is the explicit choice and still works.
	other := filepath.Join(cwd, "other.hcl")
	if err := runUser([]string{"add", "--users", other, "--role", "applicant", "--key", key}); err != nil {
		t.Errorf("add --users: %v", err)
	}
}

// TestUserAddMFAFromConfigRole: a role with mfa = true gets TOTP by default,
// like hr, and cannot be added without it.
func TestUserAddMFAFromConfigRole(t *testing.T) {
	dir := t.TempDir()
	captureStdout(t)
	cfg := writeConfig(t, dir, "role \"staff\" {\n  storage = \"files\"\n  home = \"staff/\"\n  permissions = [\"list\"]\n  mfa = true\n}\n")
	key := writePubKey(t, dir)
	if err := runUser([]string{"add", "--config", cfg, "--role", "staff", "--key", key, "--mfa=false"}); err == nil {
		t.Error("staff (mfa = true) added without MFA")
	}
	if err := runUser([]string{"add", "--config", cfg, "--role", "staff", "--key", key, "--name", "s1"}); err != nil {
		t.Fatal(err)
	}
	set, _ := authn.LoadUsers(filepath.Join(dir, "users.hcl"))
	if u := set.Users(); len(u) != 1 || u[0].TOTPSecret == "" {
		t.Errorf("staff user without TOTP: %+v", u)
	}
}

// TestServeWithoutUsersFile: a missing users file stops serve with the
// command that creates it, and nothing is created behind the operator.
func TestServeWithoutUsersFile(t *testing.T) {
	dir := t.TempDir()
	cfg, err := config.Load(writeConfig(t, dir, ""))
	if err != nil {
		t.Fatal(err)
	}
	err = serve(t.Context(), cfg, nil)
	if err == nil {
		t.Fatal("serve started without a users file")
	}
	for _, want := range []string{"does not exist", "sftpgw user add --config " + cfg.Path + " --role ROLE --key KEY.pub",
		"install -m 600 /dev/null " + cfg.UsersFile} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "users.hcl")); err == nil {
		t.Error("serve created a users file")
	}
}

// noCredentials removes every source of AWS credentials the SDK would try
// (environment, shared files, instance metadata) for one test.
func noCredentials(t *testing.T) {
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
		"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"} {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

// s3Config is a configuration with s3 storage at endpoint, strict and
// with an audit block.
func s3Config(t *testing.T, dir, endpoint string) string {
	t.Helper()
	if _, err := trail.LoadOrCreateKey(filepath.Join(dir, "audit_key")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "users.hcl"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "sftpgw.hcl")
	src := fmt.Sprintf(`
listen     = "127.0.0.1:0"
host_keys  = ["ssh_host_ed25519_key"]
users_file = "users.hcl"
strict     = true
storage "files" {
  type       = "s3"
  bucket     = "files"
  region     = "us-east-1"
  endpoint   = %[1]q
  path_style = true
}
storage "logs" {
  type       = "s3"
  bucket     = "logs"
  region     = "us-east-1"
  endpoint   = %[1]q
  path_style = true
}
role "applicant" {
  storage     = "files"
  home        = "user/{name}/"
  permissions = ["list", "upload"]
}
audit {
  storage     = "logs"
  prefix      = "audit/"
  spool_dir   = "spool"
  signing_key = "audit_key"
}
`, endpoint)
	if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestNoCredentialsSaysSo: without credentials, `audit verify` and a strict
// `serve` say it is a credentials problem (and what to set) instead of the
// store's "request failed"; an endpoint that is down is named as such.
func TestNoCredentialsSaysSo(t *testing.T) {
	noCredentials(t)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("request without credentials reached the endpoint: %s %s", r.Method, r.URL)
		w.WriteHeader(http.StatusForbidden)
	}))
	defer ts.Close()
	dir := t.TempDir()
	p := s3Config(t, dir, ts.URL)

	err := runAudit([]string{"verify", "--config", p})
	if err == nil || !strings.Contains(err.Error(), "credentials problem") || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID") {
		t.Errorf("audit verify without credentials: %v", err)
	}

	cfg, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	err = serve(t.Context(), cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "refusing to start (strict = true)") || !strings.Contains(err.Error(), "credentials problem") {
		t.Errorf("strict serve without credentials: %v", err)
	}

	// Credentials, but nothing listens at the endpoint.
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	err = runAudit([]string{"verify", "--config", s3Config(t, t.TempDir(), closed)})
	if err == nil || !strings.Contains(err.Error(), "endpoint problem") || strings.Contains(err.Error(), "secret") {
		t.Errorf("audit verify with the endpoint down: %v", err)
	}
}

// TestDocsQuoteReloadMessages: the log lines docs/operations.md tells
// operators to look for after a rejected reload are the ones reload writes.
func TestDocsQuoteReloadMessages(t *testing.T) {
	dir := t.TempDir()
	p := writeConfig(t, dir, "")
	users := filepath.Join(dir, "users.hcl")
	if err := authn.SaveUsers(users, authn.NewUserSet()); err != nil {
		t.Fatal(err)
	}
	db, err := authn.NewUserDB(users, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	auth := authn.New(authn.Options{Users: db, Roles: cfg.Roles})
	// Both files broken: each reload step logs its rejection.
	os.WriteFile(users, []byte("user {"), 0o600)
	os.WriteFile(p, []byte("listen = "), 0o600)
	var logs strings.Builder
	log := hclog.New(&hclog.LoggerOptions{Output: &logs})
	reload(p, db, auth, map[string]vfs.Store{}, audit.Discard, log)

	readme, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	quoted := regexp.MustCompile("`((config|users) reload rejected;[^`]*)`").FindAllStringSubmatch(
		strings.Join(strings.Fields(string(readme)), " "), -1)
	if len(quoted) < 2 {
		t.Fatalf("docs/operations.md quotes %d reload-rejected lines, want the users and the config one", len(quoted))
	}
	for _, q := range quoted {
		if !strings.Contains(logs.String(), q[1]) {
			t.Errorf("docs/operations.md quotes %q, which reload does not log:\n%s", q[1], logs.String())
		}
	}
}
