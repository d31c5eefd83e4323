// Package testgw runs a real gateway in the test process (real SSH server,
// authenticator, VFS and store; audit events are kept in memory, and an
// audit trail is added with Options.Trail) for the e2e suites, which drive
// it with real client programs; Gateway.SFTP runs OpenSSH sftp itself. The
// wiring is its own, not serve's: no metrics, alerts or retention sweeper.
package testgw

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	"golang.org/x/crypto/ssh"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/audit/trail"
	"github.com/sftpgw/sftpgw/authn"
	"github.com/sftpgw/sftpgw/config"
	"github.com/sftpgw/sftpgw/gateway"
	"github.com/sftpgw/sftpgw/internal/testenv"
	"github.com/sftpgw/sftpgw/vfs"
	"github.com/sftpgw/sftpgw/vfs/s3store"
)

// Options tune a test gateway. Zero values give the shipped roles over a
// fresh MinIO bucket.
type Options struct {
	Roles    map[string]*authn.Role
	Stores   map[string]vfs.Store // default: "files" and "logs" on fresh buckets
	Lockout  authn.Lockout
	Listen   string // default 127.0.0.1:0
	Tweak    func(*gateway.Config)
	WrapConn func(net.Conn) (net.Conn, error)
	// HostKey replaces the generated host key (gateways behind one load
	// balancer must share theirs).
	HostKey ssh.Signer
	// UsersFile shares an existing users file (created by another test
	// gateway) instead of a fresh one; call Users.Reload after AddUser there.
	UsersFile string
	// Trail ships audit events to Stores["logs"] under "audit/" as the real
	// gateway does (hash-chained, signed batches), flushing every 200 ms.
	Trail bool
	// Audit receives every event too (authentication and files), as the
	// alert webhooks do in the real gateway.
	Audit audit.Recorder
	// Now is the authenticator's clock (bans, lockout windows, TOTP);
	// default time.Now. See Clock.
	Now func() time.Time
}

// Clock is a manual clock for Options.Now: time moves only by Advance.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock starts a manual clock at the real current time (TOTP codes a
// test computes from time.Now stay valid until it is advanced).
func NewClock() *Clock { return &Clock{t: time.Now()} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Gateway is a running test gateway.
type Gateway struct {
	t          testing.TB
	Addr       string
	Host       string
	Port       int
	Dir        string
	S3         map[string]s3store.Config // S3 config of each default store
	Stores     map[string]vfs.Store
	Events     *Events
	Auth       *authn.Authenticator
	Users      *authn.UserDB
	Server     *gateway.Server
	KnownHosts string
	usersPath  string
	// Trail and TrailKey are set with Options.Trail.
	Trail    *trail.Trail
	TrailKey ed25519.PrivateKey

	mu       sync.Mutex
	usedStep map[string]map[uint64]bool
}

// User is a test account with its private key on disk.
type User struct {
	Name, Role, KeyPath, Secret string
	Signer                      ssh.Signer
}

// StandardRoles are the four roles of configs/sftpgw.example.hcl, with
// addresses that fit a loopback test (HR may download from 127.0.0.1 only).
func StandardRoles() map[string]*authn.Role {
	lo := netip.MustParsePrefix("127.0.0.0/8")
	applicant, _ := vfs.ParsePermSet([]string{"list", "stat", "upload", "overwrite", "delete", "rename", "mkdir", "rmdir", "setstat"})
	partner, _ := vfs.ParsePermSet([]string{"list", "stat", "upload", "overwrite", "download", "delete", "rename", "mkdir", "rmdir", "setstat"})
	auditor, _ := vfs.ParsePermSet([]string{"list", "stat", "download"})
	return map[string]*authn.Role{
		"applicant": {Name: "applicant", Storage: "files", Home: "user/{name}/", Perms: applicant},
		"hr": {Name: "hr", Storage: "files", Home: "user/", Perms: vfs.PermAll, MFA: true,
			DownloadFrom: []netip.Prefix{lo}},
		"partner": {Name: "partner", Storage: "files", Home: "partner/{name}/", Perms: partner,
			AllowFrom: []netip.Prefix{lo}},
		"auditor": {Name: "auditor", Storage: "logs", Home: "audit/", Perms: auditor},
	}
}

// ExampleConfig is the path of configs/sftpgw.example.hcl, the shipped
// configuration (found from this source file, so from any test directory).
func ExampleConfig() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "configs", "sftpgw.example.hcl")
}

// ExampleRoles are the roles of the shipped configuration as parsed by the
// gateway, in the order the file defines them, with only one change: every
// address range (allow_from, download_from) becomes 127.0.0.0/8, so that a
// client on loopback is inside it.
func ExampleRoles(t testing.TB) (roles map[string]*authn.Role, order []string) {
	t.Helper()
	path := ExampleConfig()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`(?m)^role "([^"]+)"`).FindAllStringSubmatch(string(src), -1) {
		order = append(order, m[1])
	}
	if len(order) != len(cfg.Roles) {
		t.Fatalf("%s: found roles %v in the text but the config has %d", path, order, len(cfg.Roles))
	}
	lo := netip.MustParsePrefix("127.0.0.0/8")
	local := func(ps []netip.Prefix) []netip.Prefix {
		if len(ps) == 0 {
			return nil // no restriction stays no restriction
		}
		return []netip.Prefix{lo}
	}
	for _, name := range order {
		r := cfg.Roles[name]
		if r == nil {
			t.Fatalf("%s: role %q not parsed", path, name)
		}
		r.AllowFrom, r.DownloadFrom = local(r.AllowFrom), local(r.DownloadFrom)
	}
	return cfg.Roles, order
}

// Start runs a gateway until the test ends.
func Start(t testing.TB, o Options) *Gateway {
	t.Helper()
	g := &Gateway{t: t, Dir: t.TempDir(), Events: &Events{}, S3: map[string]s3store.Config{},
		usedStep: map[string]map[uint64]bool{}}
	ctx := context.Background()
	if o.Roles == nil {
		o.Roles = StandardRoles()
	}
	if o.Stores == nil {
		o.Stores = map[string]vfs.Store{}
		for _, name := range []string{"files", "logs"} {
			cfg := testenv.S3(t)
			st, err := s3store.New(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			o.Stores[name] = st
			g.S3[name] = cfg
		}
	}
	g.Stores = o.Stores
	g.usersPath = o.UsersFile
	if g.usersPath == "" {
		g.usersPath = filepath.Join(g.Dir, "users.hcl")
		if err := authn.SaveUsers(g.usersPath, authn.NewUserSet()); err != nil {
			t.Fatal(err)
		}
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "gw", Level: hclog.Warn, Output: testWriter{t}})
	db, err := authn.NewUserDB(g.usersPath, log)
	if err != nil {
		t.Fatal(err)
	}
	g.Users = db
	rec := audit.Multi(g.Events, audit.NewLogRecorder(log), o.Audit)
	if o.Trail {
		g.TrailKey, err = trail.LoadOrCreateKey(filepath.Join(g.Dir, "audit_key"))
		if err != nil {
			t.Fatal(err)
		}
		tr, err := trail.New(trail.Options{Store: o.Stores["logs"], Prefix: "audit/", Instance: "gw-test",
			SpoolDir: filepath.Join(g.Dir, "spool"), FlushInterval: 200 * time.Millisecond, Key: g.TrailKey, Log: log})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		go tr.Run(ctx)
		g.Trail = tr
		t.Cleanup(func() {
			cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer ccancel()
			_ = tr.Close(cctx)
			cancel()
		})
		rec = audit.Multi(rec, tr)
	}
	g.Auth = authn.New(authn.Options{Users: db, Roles: o.Roles, Lockout: o.Lockout, Log: log, Audit: rec, Now: o.Now})
	signer := o.HostKey
	if signer == nil {
		_, hk, _ := ed25519.GenerateKey(rand.Reader)
		signer, _ = ssh.NewSignerFromKey(hk)
	}
	gc := gateway.Config{HostKeys: []ssh.Signer{signer}, Auth: g.Auth, Stores: o.Stores, Audit: rec, Log: log,
		WrapConn: o.WrapConn, Users: db}
	if o.Tweak != nil {
		o.Tweak(&gc)
	}
	srv, err := gateway.New(gc)
	if err != nil {
		t.Fatal(err)
	}
	g.Server = srv
	listen := o.Listen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	g.Addr = ln.Addr().String()
	ap := netip.MustParseAddrPort(g.Addr)
	g.Host, g.Port = ap.Addr().String(), int(ap.Port())
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	g.KnownHosts = filepath.Join(g.Dir, "known_hosts")
	line := fmt.Sprintf("[%s]:%d %s", g.Host, g.Port, ssh.MarshalAuthorizedKey(signer.PublicKey()))
	if err := os.WriteFile(g.KnownHosts, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	return g
}

// UsersFile is the users file this gateway reads.
func (g *Gateway) UsersFile() string { return g.usersPath }

// AddUser creates an account of role with a new ed25519 key (and TOTP for mfa).
func (g *Gateway) AddUser(role string, mfa bool) *User {
	g.t.Helper()
	pk, priv, _ := ed25519.GenerateKey(rand.Reader)
	sp, _ := ssh.NewPublicKey(pk)
	signer, _ := ssh.NewSignerFromKey(priv)
	var u *authn.User
	err := authn.UpdateUsers(g.usersPath, false, func(set *authn.UserSet) error {
		var err error
		u, err = authn.AddUser(set, authn.AddUserOptions{Role: role, MFA: mfa,
			Keys: []string{strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp)))}})
		return err
	})
	if err != nil {
		g.t.Fatal(err)
	}
	if err := g.Users.Reload(); err != nil {
		g.t.Fatal(err)
	}
	blk, _ := ssh.MarshalPrivateKey(priv, "")
	keyPath := filepath.Join(g.Dir, "key-"+u.Name)
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(blk), 0o600); err != nil {
		g.t.Fatal(err)
	}
	return &User{Name: u.Name, Role: role, KeyPath: keyPath, Secret: u.TOTPSecret, Signer: signer}
}

// RemoveUser deletes an account from the users file and reloads.
func (g *Gateway) RemoveUser(u *User) {
	g.t.Helper()
	err := authn.UpdateUsers(g.usersPath, false, func(set *authn.UserSet) error { return authn.RemoveUser(set, u.Name) })
	if err != nil {
		g.t.Fatal(err)
	}
	if err := g.Users.Reload(); err != nil {
		g.t.Fatal(err)
	}
}

// Code returns a TOTP code for u that the gateway has not seen yet: the
// current 30 s step, else the next (both valid for a while), else it waits.
func (g *Gateway) Code(u *User) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	used := g.usedStep[u.Name]
	if used == nil {
		used = map[uint64]bool{}
		g.usedStep[u.Name] = used
	}
	for {
		now := time.Now()
		step := uint64(now.Unix() / 30)
		for _, s := range []uint64{step, step + 1} {
			if !used[s] {
				used[s] = true
				code, err := totp.GenerateCodeCustom(u.Secret, time.Unix(int64(s)*30, 0),
					totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
				if err != nil {
					g.t.Fatal(err)
				}
				return code
			}
		}
		time.Sleep(time.Until(time.Unix(int64(step+1)*30, 0)) + 100*time.Millisecond)
	}
}

// ClientEnv prepares the environment for an OpenSSH client run as u: for
// MFA users an SSH_ASKPASS script answers the verification-code prompt.
func (g *Gateway) ClientEnv(u *User, code string) []string {
	env := append(os.Environ(), "DISPLAY=", "SSH_AUTH_SOCK=")
	if u.Secret != "" || code != "" {
		if code == "" {
			code = g.Code(u)
		}
		script := filepath.Join(g.Dir, "askpass-"+u.Name+"-"+randHex())
		body := fmt.Sprintf("#!/bin/sh\necho %s\n", code)
		if err := os.WriteFile(script, []byte(body), 0o700); err != nil {
			g.t.Fatal(err)
		}
		env = append(env, "SSH_ASKPASS="+script, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=:0")
	}
	return env
}

// SSHArgs are the OpenSSH options every client run uses: strict host key
// checking against the test's known_hosts, this key only.
func (g *Gateway) SSHArgs(u *User) []string {
	return []string{"-i", u.KeyPath, "-o", "IdentitiesOnly=yes", "-o", "UserKnownHostsFile=" + g.KnownHosts,
		"-o", "StrictHostKeyChecking=yes", "-o", "GlobalKnownHostsFile=/dev/null", "-o", "ConnectTimeout=20",
		"-o", "PasswordAuthentication=no", "-o", "LogLevel=ERROR", "-F", "/dev/null"}
}

// SFTP runs `sftp -b -` with batch as u and returns the combined output.
func (g *Gateway) SFTP(u *User, batch string, extra ...string) (string, error) {
	return g.SFTPWithCode(u, "", batch, extra...)
}

// SFTPWithCode is SFTP with a given TOTP code ("" = a fresh valid one).
func (g *Gateway) SFTPWithCode(u *User, code, batch string, extra ...string) (string, error) {
	args := append(g.SSHArgs(u), "-P", fmt.Sprint(g.Port))
	args = append(args, extra...)
	if u.Secret != "" || code != "" {
		// -b makes sftp pass BatchMode=yes to ssh, which never asks the
		// TOTP prompt; ssh keeps the first value given, so this one wins.
		args = append(args, "-o", "BatchMode=no")
	}
	args = append(args, "-b", "-", u.Name+"@"+g.Host)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sftp", args...)
	cmd.Env = g.ClientEnv(u, code)
	cmd.Stdin = strings.NewReader(batch)
	cmd.Dir = g.Dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// Events collects audit events in memory for assertions.
type Events struct {
	mu sync.Mutex
	ev []audit.Event
}

// Record implements audit.Recorder.
func (e *Events) Record(ev audit.Event) {
	e.mu.Lock()
	e.ev = append(e.ev, ev)
	e.mu.Unlock()
}

// All returns a copy of the events so far.
func (e *Events) All() []audit.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]audit.Event(nil), e.ev...)
}

// Find returns events matching every non-empty field of want.
func (e *Events) Find(want audit.Event) []audit.Event {
	var out []audit.Event
	for _, ev := range e.All() {
		if (want.Kind == "" || ev.Kind == want.Kind) && (want.User == "" || ev.User == want.User) &&
			(want.Op == "" || ev.Op == want.Op) && (want.Path == "" || ev.Path == want.Path) &&
			(want.Result == "" || ev.Result == want.Result) && (want.ErrClass == "" || ev.ErrClass == want.ErrClass) {
			out = append(out, ev)
		}
	}
	return out
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", bytes.TrimRight(p, "\n"))
	return len(p), nil
}

func randHex() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}
