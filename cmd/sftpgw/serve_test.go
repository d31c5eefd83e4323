package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sftpgw/sftpgw/audit/trail"
	"github.com/sftpgw/sftpgw/config"
	"github.com/sftpgw/sftpgw/vfs/localstore"
)

// serveConfig writes a gateway config over two local directories (files
// and the audit trail) listening on listen, and loads it.
func serveConfig(t *testing.T, dir, listen, extra string) *config.Config {
	t.Helper()
	for _, d := range []string{"files", "logs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "users.hcl"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	src := fmt.Sprintf(`
listen     = %q
users_file = "users.hcl"
log_level  = "error"
shutdown_grace = "1s"
storage "files" {
  type = "local"
  root = "files"
}
storage "logs" {
  type = "local"
  root = "logs"
}
role "applicant" {
  storage     = "files"
  home        = "user/{name}/"
  permissions = ["list", "upload"]
}
audit {
  storage        = "logs"
  flush_interval = "1h"
  instance       = "gw-test"
  %s
}
`, listen, extra)
	p := filepath.Join(dir, "sftpgw.hcl")
	if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// trailOps reads the trail in dir/logs, checks that it verifies and returns
// its admin events as "op result".
func trailOps(t *testing.T, dir string) []string {
	t.Helper()
	st, err := localstore.New(filepath.Join(dir, "logs"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	pub, err := trail.LoadPublicKey(filepath.Join(dir, "audit_ed25519_key.pub"))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := trail.Verify(context.Background(), st, "audit/", pub, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("trail does not verify:\n%s", rep)
	}
	var out []string
	for _, e := range readTrailEvents(t, filepath.Join(dir, "logs", "audit")) {
		if e.Kind == "admin" {
			out = append(out, e.Op+" "+e.Result)
		}
	}
	return out
}

// TestServeFlushesTrailWhenStartFails: a setup step after the trail is
// open fails (the SSH address is taken). The events recorded by then, and
// the stop event naming the failure, reach the bucket, and the spool is
// released for the next start.
func TestServeFlushesTrailWhenStartFails(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	cfg := serveConfig(t, dir, busy.Addr().String(), "")
	err = serve(context.Background(), cfg, func(net.Addr) { t.Error("serve listened on a busy address") })
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("serve = %v, want address already in use", err)
	}
	if got := strings.Join(trailOps(t, dir), ","); got != "stop error" {
		t.Errorf("admin events in the trail: %q, want the stop event", got)
	}
	// The spool lock was released: a new trail can open it.
	key, err := trail.LoadOrCreateKey(cfg.Audit.SigningKey)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := localstore.New(filepath.Join(dir, "logs"))
	defer st.Close()
	tr, err := trail.New(trail.Options{Store: st, Prefix: "audit/", Instance: "gw-test", SpoolDir: cfg.Audit.SpoolDir, Key: key})
	if err != nil {
		t.Fatalf("spool still held after serve returned: %v", err)
	}
	tr.Close(context.Background())
}

// TestServeStopsItsGoroutines: after a clean stop the trail holds the start
// and stop events and no goroutine of serve (the SIGHUP loop) is left.
func TestServeStopsItsGoroutines(t *testing.T) {
	dir := t.TempDir()
	cfg := serveConfig(t, dir, "127.0.0.1:0", "")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, func(net.Addr) { cancel() }) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
	if got := strings.Join(trailOps(t, dir), ","); got != "start ok,stop ok" {
		t.Errorf("admin events in the trail: %q", got)
	}
	// Goroutines that are ending may take a moment to be gone; one stuck in
	// a loop never goes.
	deadline := time.Now().Add(5 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		var left []string
		for _, g := range strings.Split(stacks, "\n\n") {
			if strings.Contains(g, "cmd/sftpgw.serve.func") {
				left = append(left, g)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines of serve still running after it returned:\n%s", strings.Join(left, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readTrailEvents reads every event line of the batch files under root.
func readTrailEvents(t *testing.T, root string) []auditEvent {
	t.Helper()
	var out []auditEvent
	var files []string
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".jsonl") {
			files = append(files, p)
		}
		return nil
	})
	sort.Strings(files)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
			var e auditEvent
			if json.Unmarshal(line, &e) == nil && e.Kind != "" {
				out = append(out, e)
			}
		}
	}
	return out
}

type auditEvent struct {
	Kind   string `json:"kind"`
	Op     string `json:"op"`
	Result string `json:"result"`
	Detail string `json:"detail"`
}

// TestServeFlushesTrailWhenListenerFails: the SSH listener breaks while
// serving. serve shuts down as on SIGTERM, returns the listener's error,
// and the trail holds the start event and a stop event naming the error.
func TestServeFlushesTrailWhenListenerFails(t *testing.T) {
	dir := t.TempDir()
	cfg := serveConfig(t, dir, "127.0.0.1:0", "")
	var ln net.Listener
	listen := func(network, address string) (net.Listener, error) {
		var err error
		ln, err = net.Listen(network, address)
		return ln, err
	}
	done := make(chan error, 1)
	// Closing it behind the server's back makes Accept fail for good.
	go func() { done <- serveOn(context.Background(), cfg, func(net.Addr) { ln.Close() }, listen) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "use of closed network connection") {
			t.Fatalf("serve = %v, want the listener's error", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not return after its listener failed")
	}
	if got := strings.Join(trailOps(t, dir), ","); got != "start ok,stop error" {
		t.Errorf("admin events in the trail: %q, want start ok,stop error", got)
	}
}
