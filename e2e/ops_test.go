package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"debug/elf"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/audit/trail"
	"github.com/sftpgw/sftpgw/authn"
	"github.com/sftpgw/sftpgw/internal/testenv"
	"github.com/sftpgw/sftpgw/internal/testgw"
	"github.com/sftpgw/sftpgw/metrics"
	"github.com/sftpgw/sftpgw/vfs/s3store"
)

// The tests in this file drive the real binary (bin/sftpgw from `make
// build`, or one built here) against MinIO: metrics and health endpoints,
// the health command, reload by SIGHUP and by users-file change, and the
// SIGTERM drain.

var (
	opsBinOnce sync.Once
	opsBinPath string
	opsBinErr  error
)

// sftpgwBinary returns SFTPGW_BIN (set by scripts/test.sh after `make
// build`) or builds the command once, static as `make build` does.
func sftpgwBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SFTPGW_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("SFTPGW_BIN=%s: %v", p, err)
		}
		return p
	}
	opsBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sftpgw-bin-")
		if err != nil {
			opsBinErr = err
			return
		}
		opsBinPath = filepath.Join(dir, "sftpgw")
		cmd := exec.Command("go", "build", "-trimpath", "-o", opsBinPath, "../cmd/sftpgw")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			opsBinErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if opsBinErr != nil {
		t.Fatal(opsBinErr)
	}
	return opsBinPath
}

// binGateway is one run of `sftpgw serve` with its own directory.
type binGateway struct {
	t           *testing.T
	bin, dir    string
	cfgPath     string
	usersPath   string
	sshPort     int
	metricsPort int
	knownHosts  string
	files, logs s3store.Config
	instance    string
	grace       string
	cmd         *exec.Cmd
	log         *opsBuffer
	exited      chan struct{}
	exitErr     error
}

type opsBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *opsBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *opsBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var partnerPerms = `["list", "stat", "upload", "overwrite", "download", "delete", "rename", "mkdir", "rmdir", "setstat"]`

// config renders the HCL; partner's permissions can be varied for reloads.
func (b *binGateway) config(partner string) string {
	s3 := func(name string, c s3store.Config) string {
		return fmt.Sprintf("storage %q {\n  type = \"s3\"\n  bucket = %q\n  region = %q\n  endpoint = %q\n  path_style = true\n  sse = \"AES256\"\n}\n",
			name, c.Bucket, c.Region, c.Endpoint)
	}
	return fmt.Sprintf(`listen = "127.0.0.1:%d"
host_keys = ["host_key"]
users_file = "users.hcl"
log_level = "info"
log_format = "json"
shutdown_grace = %q
%s%s
role "partner" {
  storage = "files"
  home = "partner/{name}/"
  permissions = %s
  allow_from = ["127.0.0.0/8"]
}
role "auditor" {
  storage = "logs"
  home = "audit/"
  permissions = ["list", "stat", "download"]
}
audit {
  storage = "logs"
  prefix = "audit/"
  spool_dir = "spool"
  signing_key = "audit_key"
  flush_interval = "1s"
  instance = %q
}
metrics {
  listen = "127.0.0.1:%d"
}
`, b.sshPort, b.grace, s3("files", b.files), s3("logs", b.logs), partner, b.instance, b.metricsPort)
}

// startBinGateway starts the binary with n partner accounts, created
// before the start so that no reload is involved.
func startBinGateway(t *testing.T, grace string, n int) (*binGateway, []*testgw.User) {
	t.Helper()
	needTool(t, "sftp")
	// Ports 0 in the config: the gateway binds free ones and logs them, so
	// no port is picked here and lost to another process before the start.
	b := &binGateway{t: t, bin: sftpgwBinary(t), dir: t.TempDir(),
		files: testenv.S3(t), logs: testenv.S3(t), instance: "gw-" + randomSuffixOps(), grace: grace, log: &opsBuffer{},
		exited: make(chan struct{})}
	b.cfgPath = filepath.Join(b.dir, "sftpgw.hcl")
	b.usersPath = filepath.Join(b.dir, "users.hcl")
	if err := authn.SaveUsers(b.usersPath, authn.NewUserSet()); err != nil {
		t.Fatal(err)
	}
	var us []*testgw.User
	for range n {
		us = append(us, b.addUser("partner"))
	}
	b.writeConfig(b.config(partnerPerms))
	b.cmd = exec.Command(b.bin, "serve", "--config", b.cfgPath)
	b.cmd.Dir = b.dir
	// Credentials through the environment, as on a host without a role.
	b.cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+b.files.AccessKeyID, "AWS_SECRET_ACCESS_KEY="+b.files.SecretAccessKey,
		"AWS_REGION="+b.files.Region, "AWS_EC2_METADATA_DISABLED=true")
	b.cmd.Stdout, b.cmd.Stderr = b.log, b.log
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { b.exitErr = b.cmd.Wait(); close(b.exited) }()
	t.Cleanup(func() {
		select {
		case <-b.exited:
		default:
			_ = b.cmd.Process.Kill()
			<-b.exited
		}
		if t.Failed() {
			t.Logf("sftpgw log:\n%s", b.log.String())
		}
	})
	b.waitLog(`"@message":"metrics and health listening"`, 20*time.Second)
	b.waitLog(`"@message":"listening"`, 5*time.Second)
	b.metricsPort = b.loggedPort("metrics and health listening")
	b.sshPort = b.loggedPort("listening")
	pub, err := os.ReadFile(filepath.Join(b.dir, "host_key.pub"))
	if err != nil {
		t.Fatal(err)
	}
	b.knownHosts = filepath.Join(b.dir, "known_hosts")
	if err := os.WriteFile(b.knownHosts, fmt.Appendf(nil, "[127.0.0.1]:%d %s", b.sshPort, pub), 0o644); err != nil {
		t.Fatal(err)
	}
	return b, us
}

func (b *binGateway) writeConfig(s string) {
	b.t.Helper()
	if err := os.WriteFile(b.cfgPath, []byte(s), 0o600); err != nil {
		b.t.Fatal(err)
	}
}

// waitLog waits for a substring in the process log (or fails on exit).
func (b *binGateway) waitLog(sub string, d time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(b.log.String(), sub) {
		select {
		case <-b.exited:
			b.t.Fatalf("sftpgw exited (%v) before logging %s", b.exitErr, sub)
		default:
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("sftpgw did not log %s within %s", sub, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// loggedPort is the port in the "address" of the first log line with msg.
func (b *binGateway) loggedPort(msg string) int {
	b.t.Helper()
	re := regexp.MustCompile(`"address":"127\.0\.0\.1:([0-9]+)"`)
	for _, line := range strings.Split(b.log.String(), "\n") {
		if !strings.Contains(line, `"@message":"`+msg+`"`) {
			continue
		}
		if m := re.FindStringSubmatch(line); m != nil {
			p, _ := strconv.Atoi(m[1])
			return p
		}
	}
	b.t.Fatalf("no address logged with %q:\n%s", msg, b.log.String())
	return 0
}

func (b *binGateway) logCount(sub string) int { return strings.Count(b.log.String(), sub) }

// addUser writes a new account into the users file (as `sftpgw user add`).
func (b *binGateway) addUser(role string) *testgw.User {
	b.t.Helper()
	pk, priv, _ := ed25519.GenerateKey(rand.Reader)
	sp, _ := ssh.NewPublicKey(pk)
	signer, _ := ssh.NewSignerFromKey(priv)
	var u *authn.User
	err := authn.UpdateUsers(b.usersPath, false, func(set *authn.UserSet) error {
		var err error
		u, err = authn.AddUser(set, authn.AddUserOptions{Role: role,
			Keys: []string{strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp)))}})
		return err
	})
	if err != nil {
		b.t.Fatal(err)
	}
	blk, _ := ssh.MarshalPrivateKey(priv, "")
	keyPath := filepath.Join(b.dir, "key-"+u.Name)
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(blk), 0o600); err != nil {
		b.t.Fatal(err)
	}
	return &testgw.User{Name: u.Name, Role: role, KeyPath: keyPath, Signer: signer}
}

func (b *binGateway) sftpArgs(u *testgw.User) []string {
	return []string{"-i", u.KeyPath, "-o", "IdentitiesOnly=yes", "-o", "UserKnownHostsFile=" + b.knownHosts,
		"-o", "StrictHostKeyChecking=yes", "-o", "GlobalKnownHostsFile=/dev/null", "-o", "ConnectTimeout=20",
		"-o", "PasswordAuthentication=no", "-o", "LogLevel=ERROR", "-F", "/dev/null",
		"-P", strconv.Itoa(b.sshPort), "-b", "-", u.Name + "@127.0.0.1"}
}

// sftp runs one batch and returns the output.
func (b *binGateway) sftp(u *testgw.User, batch string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sftp", b.sftpArgs(u)...)
	cmd.Env = append(os.Environ(), "DISPLAY=", "SSH_AUTH_SOCK=")
	cmd.Stdin = strings.NewReader(batch)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// session starts sftp reading commands from a pipe the test writes later.
type pipedSFTP struct {
	stdin io.WriteCloser
	out   *opsBuffer
	done  chan error
}

func (b *binGateway) session(u *testgw.User) *pipedSFTP {
	b.t.Helper()
	cmd := exec.Command("sftp", b.sftpArgs(u)...)
	cmd.Env = append(os.Environ(), "DISPLAY=", "SSH_AUTH_SOCK=")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.t.Fatal(err)
	}
	ps := &pipedSFTP{stdin: stdin, out: &opsBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = ps.out, ps.out
	if err := cmd.Start(); err != nil {
		b.t.Fatal(err)
	}
	go func() { ps.done <- cmd.Wait() }()
	b.t.Cleanup(func() { _ = stdin.Close(); _ = cmd.Process.Kill() })
	return ps
}

func (b *binGateway) get(path string) (int, string) {
	b.t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d%s", b.metricsPort, path))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// metric returns the value of one series ("name{labels}") in /metrics.
func (b *binGateway) metric(series string) float64 {
	b.t.Helper()
	code, body := b.get("/metrics")
	if code != 200 {
		b.t.Fatalf("/metrics: %d %s", code, body)
	}
	return metricValue(body, series)
}

func metricValue(body, series string) float64 {
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

func (b *binGateway) signal(s os.Signal) {
	b.t.Helper()
	if err := b.cmd.Process.Signal(s); err != nil {
		b.t.Fatal(err)
	}
}

func (b *binGateway) wait(d time.Duration) error {
	b.t.Helper()
	select {
	case <-b.exited:
		return b.exitErr
	case <-time.After(d):
		b.t.Fatalf("sftpgw still running %s after SIGTERM", d)
		return nil
	}
}

// trailEventsOf reads the audit bucket and verifies the chain.
func (b *binGateway) trailEventsOf() []audit.Event {
	b.t.Helper()
	st, err := s3store.New(context.Background(), b.logs)
	if err != nil {
		b.t.Fatal(err)
	}
	pub, err := trail.LoadPublicKey(filepath.Join(b.dir, "audit_key.pub"))
	if err != nil {
		b.t.Fatal(err)
	}
	rep, err := trail.Verify(context.Background(), st, "audit/", pub, time.Time{}, time.Time{})
	if err != nil {
		b.t.Fatal(err)
	}
	if !rep.OK() {
		b.t.Errorf("audit trail does not verify:\n%s", rep)
	}
	evs, _ := trailEvents(b.t, st)
	return evs
}

func randomSuffixOps() string {
	var r [4]byte
	_, _ = rand.Read(r[:])
	return fmt.Sprintf("%x", r)
}

// TestBinaryMetricsHealthReload: the real binary serves metrics derived
// from what happened, /healthz and /readyz (also through `sftpgw health`),
// and reloads users and roles on SIGHUP and on a users-file change without
// dropping sessions, keeping the old config when the new one is invalid.
func TestBinaryMetricsHealthReload(t *testing.T) {
	b, us := startBinGateway(t, "30s", 1)
	u := us[0]
	for _, path := range []string{"/healthz", "/readyz"} {
		out, err := exec.Command(b.bin, "health", "--url", fmt.Sprintf("http://127.0.0.1:%d%s", b.metricsPort, path)).CombinedOutput()
		if err != nil {
			t.Fatalf("sftpgw health %s: %v\n%s", path, err, out)
		}
	}
	if code, body := b.get("/readyz"); code != 200 || !strings.Contains(body, `"storage files":"ok"`) || !strings.Contains(body, `"storage logs":"ok"`) {
		t.Errorf("/readyz: %d %s", code, body)
	}
	if err := exec.Command(b.bin, "health", "--url", fmt.Sprintf("http://127.0.0.1:%d/nope", b.metricsPort)).Run(); err == nil {
		t.Error("sftpgw health exited 0 for a 404")
	}

	p, _ := randomFile(t, t.TempDir(), "m.bin", 300000)
	if out, err := b.sftp(u, "put "+p+" m.bin\nget m.bin "+p+".back\nget missing.bin\n"); err == nil {
		t.Fatalf("batch with a missing file should fail at its last line:\n%s", out)
	} else if !strings.Contains(out, "missing.bin") {
		t.Fatalf("sftp: %v\n%s", err, out)
	}
	waitFor(t, 10*time.Second, "the session to end and the audit trail to ship", func() bool {
		return b.metric(`sftpgw_sessions_active{role="partner"}`) == 0 &&
			b.metric(`sftpgw_store_request_duration_seconds_count{op="upload_commit",store="logs"}`) >= 1
	})
	code, body := b.get("/metrics")
	if code != 200 {
		t.Fatalf("/metrics %d", code)
	}
	for series, want := range map[string]float64{
		`sftpgw_sessions_total{role="partner"}`:                                     1,
		`sftpgw_logins_total{method="publickey",result="ok"}`:                       1,
		`sftpgw_operations_total{op="upload",result="ok",role="partner"}`:           1,
		`sftpgw_operations_total{op="download",result="ok",role="partner"}`:         1,
		`sftpgw_transfer_bytes_total{direction="upload",role="partner"}`:            300000,
		`sftpgw_transfer_bytes_total{direction="download",role="partner"}`:          300000,
		`sftpgw_transfer_duration_seconds_count{direction="upload",role="partner"}`: 1,
		`sftpgw_store_errors_total{op="stat",store="files"}`:                        0,
		`sftpgw_open_file_handles`:                                                  0,
		`sftpgw_audit_store_up`:                                                     1,
	} {
		if got := metricValue(body, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	for _, series := range []string{`sftpgw_store_request_duration_seconds_count{op="upload_commit",store="files"}`,
		`sftpgw_store_request_duration_seconds_count{op="read",store="files"}`,
		`sftpgw_store_request_duration_seconds_count{op="upload_commit",store="logs"}`, // the audit trail's uploads
		`sftpgw_operations_total{op="stat",result="error",role="partner"}`,             // get of a missing file
		`go_goroutines`, `process_resident_memory_bytes`} {
		if got := metricValue(body, series); got < 1 {
			t.Errorf("%s = %v, want >= 1", series, got)
		}
	}
	if !regexp.MustCompile(`sftpgw_build_info\{version="[^"]+"\} 1`).MatchString(body) {
		t.Error("no sftpgw_build_info")
	}

	// Reload. A session opened before it must survive every reload.
	old := b.session(u)
	fmt.Fprintln(old.stdin, "pwd")
	waitFor(t, 10*time.Second, "the long session to log in", func() bool {
		return strings.Contains(old.out.String(), "Remote working directory")
	})
	b.writeConfig(b.config(partnerPerms) + "\nrole \"broken\" {\n")
	b.signal(syscall.SIGHUP)
	b.waitLog("config reload rejected; keeping the previous roles", 5*time.Second)
	if out, err := b.sftp(u, "mkdir still-allowed\n"); err != nil {
		t.Errorf("after an invalid reload the old roles must stay in force: %v\n%s", err, out)
	}
	// A role naming storage the process never opened is rejected too.
	b.writeConfig(strings.Replace(b.config(partnerPerms), `storage = "files"`, `storage = "elsewhere"`, 1) +
		"storage \"elsewhere\" {\n  type = \"local\"\n  root = \"elsewhere\"\n}\n")
	b.signal(syscall.SIGHUP)
	waitFor(t, 5*time.Second, "second rejection", func() bool {
		return b.logCount("config reload rejected") == 2 && strings.Contains(b.log.String(), "was not configured at start")
	})

	noMkdir := `["list", "stat", "upload", "overwrite", "download", "delete", "rename", "rmdir", "setstat"]`
	b.writeConfig(b.config(noMkdir))
	b.signal(syscall.SIGHUP)
	b.waitLog("reloaded users and roles", 5*time.Second)
	if out, _ := b.sftp(u, "mkdir new-session-dir\n"); !strings.Contains(out, "ermission denied") {
		t.Errorf("a new session after the reload may still mkdir:\n%s", out)
	}
	fmt.Fprintln(old.stdin, "mkdir old-session-dir")
	fmt.Fprintln(old.stdin, "ls -1")
	_ = old.stdin.Close()
	select {
	case err := <-old.done:
		if err != nil || !strings.Contains(old.out.String(), "old-session-dir") {
			t.Errorf("the session opened before the reloads was dropped or lost its role: %v\n%s", err, old.out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("long session did not finish")
	}

	// A user added to the file (no signal) can log in once it is picked
	// up (the file is polled every 2s). Logging in before that would count
	// towards the lockout, so wait for the log line.
	loaded := b.logCount(`"@message":"users file reloaded"`)
	u2 := b.addUser("partner")
	waitFor(t, 10*time.Second, "the users file change to be picked up", func() bool {
		return b.logCount(`"@message":"users file reloaded"`) > loaded
	})
	if out, err := b.sftp(u2, "pwd\n"); err != nil {
		t.Errorf("user added to the users file cannot log in: %v\n%s", err, out)
	}
	// And a broken users file keeps the previous users.
	if err := os.WriteFile(b.usersPath, []byte("user {"), 0o600); err != nil {
		t.Fatal(err)
	}
	b.waitLog("users file reload failed, keeping the previous users", 10*time.Second)
	if out, err := b.sftp(u2, "pwd\n"); err != nil {
		t.Errorf("a broken users file locked out existing users: %v\n%s", err, out)
	}
	if got := b.metric(`sftpgw_config_reloads_total{result="error"}`); got != 2 {
		t.Errorf("failed reloads = %v, want 2", got)
	}
	if got := b.metric(`sftpgw_config_reloads_total{result="ok"}`); got != 1 {
		t.Errorf("successful reloads = %v, want 1", got)
	}

	b.signal(syscall.SIGTERM)
	if err := b.wait(60 * time.Second); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
	evs := b.trailEventsOf()
	var reloads []string
	for _, e := range evs {
		if e.Kind == "admin" && e.Op == "reload" {
			reloads = append(reloads, e.Result)
		}
	}
	if strings.Join(reloads, ",") != "error,error,ok" {
		t.Errorf("reload events in the audit trail: %v", reloads)
	}
}

// TestBinarySIGTERMDuringUpload: SIGTERM while a ~200 MiB upload runs.
// With a long grace the upload completes (object hash right) and an idle
// session is closed at once; with a short one it is aborted and leaves
// nothing. Either way the process exits 0 after flushing the audit trail,
// which holds the sessions' events.
func TestBinarySIGTERMDuringUpload(t *testing.T) {
	if testing.Short() {
		t.Skip("200 MiB upload")
	}
	src, sum := randomFile(t, t.TempDir(), "big.bin", 200<<20)
	for _, tc := range []struct {
		name, grace  string
		wantComplete bool
	}{{"long grace", "60s", true}, {"short grace", "100ms", false}} {
		t.Run(tc.name, func(t *testing.T) {
			b, us := startBinGateway(t, tc.grace, 1)
			u := us[0]
			idle := b.session(u)
			fmt.Fprintln(idle.stdin, "pwd")
			waitFor(t, 10*time.Second, "the idle session", func() bool {
				return strings.Contains(idle.out.String(), "Remote working directory")
			})
			up := b.session(u)
			fmt.Fprintf(up.stdin, "put %s big.bin\n", src)
			_ = up.stdin.Close()
			waitFor(t, 20*time.Second, "the upload to start", func() bool {
				return b.metric("sftpgw_open_file_handles") >= 1
			})
			time.Sleep(200 * time.Millisecond)
			sigAt := time.Now()
			b.signal(syscall.SIGTERM)
			// While draining: not ready (the signal is handled asynchronously,
			// so poll), unless the process is already gone.
			code, body := b.get("/readyz")
			for deadline := time.Now().Add(2 * time.Second); code == 200 && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
				code, body = b.get("/readyz")
			}
			if code != 0 && (code != 503 || !strings.Contains(body, "draining")) {
				t.Errorf("/readyz while draining: %d %s", code, body)
			}
			if err := b.wait(90 * time.Second); err != nil {
				t.Errorf("exit status after SIGTERM: %v (want 0)", err)
			}
			t.Logf("process exited %s after SIGTERM", time.Since(sigAt).Round(time.Millisecond))
			var upErr error
			select {
			case upErr = <-up.done:
			case <-time.After(30 * time.Second):
				t.Fatal("sftp upload client did not finish")
			}
			c := testenv.Client(t, b.files)
			key := "partner/" + u.Name + "/big.bin"
			complete := exists(t, c, b.files.Bucket, key)
			switch {
			case complete:
				if got := objectSHA(t, c, b.files.Bucket, key); got != sum {
					t.Errorf("object after drain has sha %s, uploaded %s", got, sum)
				}
				if upErr != nil {
					t.Errorf("object complete but the client saw an error: %v\n%s", upErr, up.out.String())
				}
			case upErr == nil:
				t.Errorf("client reported success but there is no object:\n%s", up.out.String())
			}
			if n := len(testenv.PendingUploads(t, c, b.files.Bucket, "")); n != 0 {
				t.Errorf("%d multipart uploads left pending", n)
			}
			if complete != tc.wantComplete {
				t.Errorf("upload complete = %v with grace %s, want %v", complete, tc.grace, tc.wantComplete)
			}
			mustContain(t, b.log.String(), "audit trail flushed", `"@message":"stopped"`)

			evs := b.trailEventsOf()
			var idleEnd, uploadEv time.Time
			var sessions, ends int
			for _, e := range evs {
				if e.User != u.Name {
					continue
				}
				switch {
				case e.Kind == "session_start":
					sessions++
				case e.Kind == "session_end":
					ends++
					if idleEnd.IsZero() {
						idleEnd = e.Time
					}
				case e.Kind == "file" && e.Op == "upload" && e.Path == "/big.bin":
					uploadEv = e.Time
					wantResult := "error"
					if complete {
						wantResult = "ok"
					}
					if e.Result != wantResult {
						t.Errorf("upload event result %s (class %s), want %s", e.Result, e.ErrClass, wantResult)
					}
				}
			}
			if sessions != 2 || ends != 2 || uploadEv.IsZero() {
				t.Errorf("audit trail holds %d session starts, %d ends, upload event %v; want 2, 2, yes", sessions, ends, !uploadEv.IsZero())
			}
			if complete && !idleEnd.Before(uploadEv) {
				t.Errorf("the idle session ended at %s, not before the upload finished at %s", idleEnd, uploadEv)
			}
		})
	}
}

// TestStaticBinary: `make build` (CGO_ENABLED=0) gives a static ELF, which
// the distroless/static image needs: no interpreter, no shared libraries.
func TestStaticBinary(t *testing.T) {
	p := sftpgwBinary(t)
	f, err := elf.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			t.Errorf("%s has an ELF interpreter: not a static binary", p)
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) != 0 {
		t.Errorf("%s needs shared libraries %v (%v)", p, libs, err)
	}
}

// TestDockerfile reads the Dockerfile (hadolint is not packaged in Debian)
// and checks what the image promises: multi-stage, static build, non-root
// final stage without a toolchain, health check through the binary, the
// two ports, no remote ADD, exec-form entrypoint, and a .dockerignore that
// keeps .git and local state out of the build context.
func TestDockerfile(t *testing.T) {
	src, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	type instr struct{ op, args string }
	var ins []instr
	var cont strings.Builder
	for _, line := range strings.Split(string(src), "\n") {
		line = strings.TrimSpace(line)
		if cont.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if s, ok := strings.CutSuffix(line, "\\"); ok {
			cont.WriteString(s + " ")
			continue
		}
		cont.WriteString(line)
		full := cont.String()
		cont.Reset()
		op, args, _ := strings.Cut(full, " ")
		ins = append(ins, instr{strings.ToUpper(op), strings.TrimSpace(args)})
	}
	var froms []string
	final := map[string][]string{} // instructions of the last stage
	for _, in := range ins {
		if in.op == "FROM" {
			froms = append(froms, in.args)
			final = map[string][]string{}
		}
		final[in.op] = append(final[in.op], in.args)
		if in.op == "ADD" && regexp.MustCompile(`https?://`).MatchString(in.args) {
			t.Errorf("ADD of a URL: %s (download in a RUN with a checksum instead)", in.args)
		}
		if in.op == "RUN" && strings.Contains(in.args, "go build") && !strings.Contains(in.args, "CGO_ENABLED=0") {
			t.Errorf("go build without CGO_ENABLED=0: %s", in.args)
		}
	}
	if len(froms) < 2 || !regexp.MustCompile(`(?i)^\S+\s+AS\s+\w+`).MatchString(froms[0]) {
		t.Errorf("not a multi-stage build with a named build stage: FROM %v", froms)
	}
	if last := froms[len(froms)-1]; strings.Contains(last, "golang") || !strings.Contains(last, "static") {
		t.Errorf("final stage %q should be a static base without a toolchain", last)
	}
	if len(final["COPY"]) == 0 || !strings.Contains(strings.Join(final["COPY"], " "), "--from=") {
		t.Error("final stage does not copy the binary from the build stage")
	}
	users := final["USER"]
	if len(users) == 0 {
		t.Fatal("final stage runs as root (no USER)")
	}
	if u := strings.Split(users[len(users)-1], ":")[0]; u == "root" || u == "0" {
		t.Errorf("final stage USER %s is root", users[len(users)-1])
	}
	hc := strings.Join(final["HEALTHCHECK"], " ")
	if !strings.Contains(hc, `"sftpgw", "health"`) && !strings.Contains(hc, `sftpgw", "health`) {
		t.Errorf("HEALTHCHECK does not use `sftpgw health`: %s", hc)
	}
	exposed := strings.Fields(strings.Join(final["EXPOSE"], " "))
	for _, port := range []string{"2222", "9090"} {
		if !strings.Contains(" "+strings.Join(exposed, " ")+" ", " "+port+" ") {
			t.Errorf("EXPOSE lacks %s: %v", port, exposed)
		}
	}
	if ep := strings.Join(final["ENTRYPOINT"], ""); !strings.HasPrefix(ep, "[") {
		t.Errorf("ENTRYPOINT %q is not exec form: signals would go to a shell", ep)
	}
	ignore, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatalf(".dockerignore: %v", err)
	}
	for _, want := range []string{".git", "bin", "demo-data"} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(want) + `/?$`).Match(ignore) {
			t.Errorf(".dockerignore does not exclude %s", want)
		}
	}
}

// TestSystemdUnit checks configs/sftpgw.service with systemd-analyze
// (verify: no warnings; security: exposure score) and for the directives
// the deployment relies on.
func TestSystemdUnit(t *testing.T) {
	src, err := os.ReadFile("../configs/sftpgw.service")
	if err != nil {
		t.Fatal(err)
	}
	directives := map[string][]string{}
	for _, line := range strings.Split(string(src), "\n") {
		line = strings.TrimSpace(line)
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			directives[k] = append(directives[k], v)
		}
	}
	for k, want := range map[string]string{
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
		"CapabilityBoundingSet": "", "StateDirectory": "sftpgw", "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"SystemCallFilter": "@system-service", "ExecReload": "/bin/kill -HUP $MAINPID", "KillSignal": "SIGTERM",
		"ReadWritePaths": "/var/lib/sftpgw",
	} {
		vs := directives[k]
		if len(vs) == 0 || vs[0] != want {
			t.Errorf("%s=%v, want %q", k, vs, want)
		}
	}
	if u := directives["User"]; len(u) == 0 || u[0] == "root" {
		if len(directives["DynamicUser"]) == 0 {
			t.Error("the unit runs as root")
		}
	}
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not installed: directive checks only")
	}
	// verify wants ExecStart to exist: point it at the binary under test.
	unit := filepath.Join(t.TempDir(), "sftpgw.service")
	body := strings.ReplaceAll(string(src), "/usr/local/bin/sftpgw", sftpgwBinary(t))
	if err := os.WriteFile(unit, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", unit).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command("systemd-analyze", "security", "--offline=yes", "--no-pager", unit).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("systemd-analyze security exposure: %.1f (0 = fully confined, 10 = unconfined)", score)
	if score > 2.0 {
		t.Errorf("exposure %.1f is above 2.0:\n%s", score, out)
	}
}

// TestReadyzFollowsStoreOutage: /readyz probes the real buckets (a List of
// one key, cached briefly), turns 503 when MinIO goes away without showing
// the S3 error, counts the failed requests, and recovers when it is back.
func TestReadyzFollowsStoreOutage(t *testing.T) {
	mio := testenv.StartMinIO(t)
	ctx := context.Background()
	var stores []metrics.Check
	m := metrics.New(metrics.Options{NoRuntime: true})
	for _, name := range []string{"files", "logs"} {
		st, err := s3store.New(ctx, mio.Config(name+"-"+randomSuffixOps()))
		if err != nil {
			t.Fatal(err)
		}
		stores = append(stores, metrics.StoreCheck("storage "+name, "", m.WrapStore(name, st)))
	}
	// A TTL of 1 ns: every request runs the checks, so the test needs no
	// sleep to get past a cached answer.
	h := metrics.NewHealth(metrics.HealthOptions{Checks: stores, TTL: time.Nanosecond, Timeout: 2 * time.Second})
	srv := httptest.NewServer(m.Handler(h))
	defer srv.Close()
	ready := func() (int, string) {
		resp, err := http.Get(srv.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := ready(); code != 200 {
		t.Fatalf("/readyz with MinIO up: %d %s", code, body)
	}
	mio.Stop() // returns once the process has exited
	start := time.Now()
	code, body := ready()
	t.Logf("/readyz answered %d in %s with MinIO down", code, time.Since(start).Round(time.Millisecond))
	if code != http.StatusServiceUnavailable || strings.Count(body, "unreachable")+strings.Count(body, "timeout") != 2 {
		t.Errorf("/readyz with MinIO down: %d %s", code, body)
	}
	if strings.Contains(body, "127.0.0.1") || strings.Contains(body, "connection refused") {
		t.Errorf("/readyz leaks the store error: %s", body)
	}
	// Both checks run at once, each bounded by the 2 s Timeout: 5 s leaves
	// 3 s for a busy machine, and a check that waited for the store's own
	// retries (tens of seconds) would still fail.
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("/readyz took %s with the store down; checks must be bounded", d)
	}
	rec := httptest.NewRecorder()
	m.Handler(nil).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if v := metricValue(rec.Body.String(), `sftpgw_store_errors_total{op="list",store="files"}`); v < 1 {
		t.Errorf("failed probes not counted as store errors: %v", v)
	}
	mio.Start() // returns once MinIO answers its liveness probe
	if code, body := ready(); code != 200 {
		t.Errorf("/readyz after MinIO came back: %d %s", code, body)
	}
}
