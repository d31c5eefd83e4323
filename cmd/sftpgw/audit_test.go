package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"github.com/sftpgw/sftpgw/config"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/audit/trail"
	"github.com/sftpgw/sftpgw/vfs/localstore"
)

// TestMain lets a test run this test binary as the sftpgw command itself
// (runCommand), with its real exit status.
func TestMain(m *testing.M) {
	if os.Getenv("SFTPGW_TEST_AS_COMMAND") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runCommand runs `sftpgw args...` as a process and returns its stdout,
// stderr and exit status.
func runCommand(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), "SFTPGW_TEST_AS_COMMAND=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run %v: %v", args, err)
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

// writeDailyTrail writes one batch a day, 2020-01-10 .. 2020-01-13 at noon
// UTC, to the trail of cfg (local storage) and returns the signing key's
// fingerprint and the batch files in order.
func writeDailyTrail(t *testing.T, dir string) (string, []string) {
	t.Helper()
	cfg := serveConfig(t, dir, "127.0.0.1:0", "")
	key, err := trail.LoadOrCreateKey(cfg.Audit.SigningKey)
	if err != nil {
		t.Fatal(err)
	}
	st, err := localstore.New(filepath.Join(dir, "logs"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for day := 10; day <= 13; day++ {
		now := time.Date(2020, 1, day, 12, 0, 0, 0, time.UTC)
		tr, err := trail.New(trail.Options{Store: st, Prefix: cfg.Audit.Prefix, Instance: "gw-test",
			SpoolDir: cfg.Audit.SpoolDir, Key: key, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		tr.Record(audit.Event{Kind: "file", Op: "upload", User: "alice", Path: "/a", Result: "ok"})
		if err := tr.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	var files []string
	filepath.WalkDir(filepath.Join(dir, "logs", "audit"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return err
	})
	if len(files) != 4 {
		t.Fatalf("setup: %d batch files", len(files))
	}
	return trail.Fingerprint(key.Public().(ed25519PublicKey)), files
}

// TestAuditVerifyCommand runs `sftpgw audit verify` as an auditor would:
// exit 0 for a good trail, 1 for a tampered or stale one, 2 when it cannot
// verify (a key that is not the pinned one, bad arguments).
func TestAuditVerifyCommand(t *testing.T) {
	dir := t.TempDir()
	fp, files := writeDailyTrail(t, dir)
	cfg := filepath.Join(dir, "sftpgw.hcl")
	other := strings.Repeat("0f", 32)
	check := func(wantCode int, want []string, args ...string) {
		t.Helper()
		out, errOut, code := runCommand(t, append([]string{"audit", "verify", "--config", cfg}, args...)...)
		all := out + errOut
		if code != wantCode {
			t.Errorf("audit verify %v: exit %d, want %d\n%s", args, code, wantCode, all)
			return
		}
		for _, w := range want {
			if !strings.Contains(all, w) {
				t.Errorf("audit verify %v: output lacks %q:\n%s", args, w, all)
			}
		}
	}
	check(0, []string{"sha256:" + fp, "NOT PINNED", "4 batches (seq 1..4)", "OK"})
	check(0, []string{"sha256:" + fp + ", pinned", "OK"}, "--pubkey-sha256", "SHA256:"+strings.ToUpper(fp))
	check(2, []string{"sha256:" + other + " is pinned", "not trusted"}, "--pubkey-sha256", other)
	check(2, []string{"not a key fingerprint"}, "--pubkey-sha256", "abc")
	// The gateway stopped in 2020: "now" finds its trail stale.
	check(1, []string{"[stale]", "2020-01-13T12:00:00.000Z", "FAILED"}, "--to", "now")
	check(1, []string{"[stale]"}, "--until", "now")
	check(0, []string{"1 batches (seq 2..2)", "OK"}, "--from", "2020-01-11", "--to", "2020-01-11")
	check(2, []string{"--to 2020-01-10 is before --from 2020-01-12"}, "--from", "2020-01-12", "--to", "2020-01-10")
	check(2, []string{"--from", "not RFC 3339"}, "--from", "yesterday")
	check(2, []string{"flag provided but not defined"}, "--no-such-flag")
	check(2, []string{"no-such.pub"}, "--pubkey", filepath.Join(dir, "no-such.pub"))

	// The pin in the config: a replaced key file is refused.
	pinned := filepath.Join(dir, "pinned.hcl")
	src, _ := os.ReadFile(cfg)
	os.WriteFile(pinned, bytes.Replace(src, []byte(`instance       = "gw-test"`),
		[]byte(`instance       = "gw-test"
  pubkey_sha256  = "`+other+`"`), 1), 0o600)
	out, errOut, code := runCommand(t, "audit", "verify", "--config", pinned)
	if code != 2 || !strings.Contains(out+errOut, "is pinned") {
		t.Errorf("config pin: exit %d\n%s%s", code, out, errOut)
	}

	// Delete the second day's batch: the whole trail fails, windows that
	// do not reach the gap still verify.
	os.Remove(files[1])
	check(1, []string{"[missing]", "FAILED"})
	check(1, []string{"[missing]"}, "--from", "2020-01-12")
	check(0, []string{"OK"}, "--to", "2020-01-10")
	check(0, []string{"OK"}, "--from", "2020-01-13")
}

// TestServePinnedKey: serve logs the signing key's fingerprint and refuses
// to start with a key other than the pinned one.
func TestServePinnedKey(t *testing.T) {
	dir := t.TempDir()
	fp, _ := writeDailyTrail(t, dir)
	cfg := filepath.Join(dir, "sftpgw.hcl")
	src, _ := os.ReadFile(cfg)
	src = bytes.Replace(src, []byte(`log_level  = "error"`), []byte(`log_level  = "info"`), 1)
	// Should the pin be ignored, the start fails at once rather than serve.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busySrc := bytes.Replace(src, []byte(`"127.0.0.1:0"`), []byte(`"`+busy.Addr().String()+`"`), 1)
	pin := func(src []byte, fp string) []byte {
		return bytes.Replace(src, []byte(`instance       = "gw-test"`),
			[]byte(`instance       = "gw-test"
  pubkey_sha256  = "`+fp+`"`), 1)
	}
	// Unpinned, the fingerprint is printed even at the default log level.
	os.WriteFile(cfg, bytes.Replace(busySrc, []byte(`log_level  = "info"`), []byte(`log_level  = "warn"`), 1), 0o600)
	if _, errOut, _ := runCommand(t, "serve", "--config", cfg); !strings.Contains(errOut, "not pinned") ||
		!strings.Contains(errOut, "sha256:"+fp) {
		t.Errorf("unpinned start does not print the fingerprint:\n%s", errOut)
	}
	os.WriteFile(cfg, pin(busySrc, strings.Repeat("0f", 32)), 0o600)
	out, errOut, code := runCommand(t, "serve", "--config", cfg)
	if code == 0 || !strings.Contains(errOut, "refusing to start") || !strings.Contains(errOut, "sha256:"+fp) {
		t.Fatalf("serve with another pinned key: exit %d\n%s%s", code, out, errOut)
	}

	// The right pin starts (and stops at once); quietly, in this process.
	os.WriteFile(cfg, bytes.Replace(pin(src, fp), []byte(`log_level  = "info"`), []byte(`log_level  = "error"`), 1), 0o600)
	c, err := loadConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := serve(ctx, c, func(net.Addr) { cancel() }); err != nil {
		t.Fatalf("serve with the pinned key: %v", err)
	}
}

type ed25519PublicKey = ed25519.PublicKey

var loadConfig = config.Load
