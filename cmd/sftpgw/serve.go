package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/crypto/ssh"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/audit/trail"
	"github.com/sftpgw/sftpgw/authn"
	"github.com/sftpgw/sftpgw/config"
	"github.com/sftpgw/sftpgw/gateway"
	"github.com/sftpgw/sftpgw/metrics"
	"github.com/sftpgw/sftpgw/proxyproto"
	"github.com/sftpgw/sftpgw/vfs"
)

func runServe(args []string) error {
	fl := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfgPath := fl.String("config", "sftpgw.hcl", "configuration file")
	if err := fl.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return serve(ctx, cfg, nil)
}

// newLogger builds the operator log from the config.
func newLogger(cfg *config.Config) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name: "sftpgw", Level: hclog.LevelFromString(cfg.LogLevel), JSONFormat: cfg.LogFormat == "json",
		Output: os.Stderr, TimeFormat: "2006-01-02T15:04:05.000Z07:00",
	})
}

// serve runs the gateway until ctx ends, then shuts down gracefully.
// ready, if non-nil, receives the listening address. Whichever way it
// returns (a failed setup step, a listener error, ctx), the background work
// it started ends and the audit trail is flushed.
func serve(ctx context.Context, cfg *config.Config, ready func(net.Addr)) error {
	return serveOn(ctx, cfg, ready, net.Listen)
}

// serveOn is serve with the SSH listener made by listen (tests pass one
// that fails).
func serveOn(ctx context.Context, cfg *config.Config, ready func(net.Addr),
	listen func(network, address string) (net.Listener, error)) (result error) {
	if err := usersFileReady(cfg); err != nil {
		return err
	}
	log := newLogger(cfg)
	defer func() { // last, after the trail's flush
		if result == nil {
			log.Info("stopped")
		}
	}()
	// Background work (users watch, retention, posture, SIGHUP) ends with
	// serve, not only with the caller's ctx.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var met *metrics.Metrics
	if cfg.Metrics != nil {
		met = metrics.New(metrics.Options{Version: version})
	}
	stores := map[string]vfs.Store{}
	var checks []metrics.Check
	for name := range cfg.Storage {
		st, err := cfg.OpenStore(ctx, name)
		if err != nil {
			return fmt.Errorf("storage %q: %w", name, err)
		}
		checks = append(checks, metrics.StoreCheck("storage "+name, "", st))
		if met != nil {
			st = met.WrapStore(name, st)
		}
		stores[name] = st
	}

	// Alerts first, so that a posture failure at start raises one even
	// when strict refuses to start.
	alertRec, stopAlerts, err := startAlerts(cfg, met, log.Named("alerts"))
	if err != nil {
		return err
	}
	defer func() { // after Shutdown, so the last sessions' alerts are sent too
		cancel() // background recorders first
		stopAlerts()
	}()
	if cfg.Strict {
		if err := startupPosture(ctx, cfg, audit.Multi(audit.NewLogRecorder(log.Named("audit")), alertRec), log.Named("posture")); err != nil {
			return err
		}
	}

	rec := audit.NewLogRecorder(log.Named("audit"))
	var tr *trail.Trail
	startDetail := "sftpgw " + version
	if a := cfg.Audit; a != nil {
		key, err := trail.LoadOrCreateKey(a.SigningKey)
		if err != nil {
			return fmt.Errorf("audit signing key: %w", err)
		}
		// Auditors pin this fingerprint (pubkey_sha256, audit verify
		// --pubkey-sha256); a key that is not the pinned one signs nothing.
		pub := key.Public().(ed25519.PublicKey)
		if a.PubKeySHA256 != "" {
			log.Info("audit signing key", "path", a.SigningKey, "fingerprint", "sha256:"+trail.Fingerprint(pub), "pinned", true)
		} else {
			log.Warn("audit signing key not pinned: give auditors this fingerprint and set pubkey_sha256 in the audit block",
				"path", a.SigningKey, "fingerprint", "sha256:"+trail.Fingerprint(pub))
		}
		if err := trail.CheckPin(pub, a.PubKeySHA256, a.SigningKey); err != nil {
			return fmt.Errorf("refusing to start: %w", err)
		}
		startDetail += ", audit key sha256:" + trail.Fingerprint(pub)
		instance := a.Instance
		if instance == "" {
			instance, _ = os.Hostname()
		}
		tr, err = trail.New(trail.Options{Store: stores[a.Storage], Prefix: a.Prefix, Instance: instance,
			SpoolDir: a.SpoolDir, SpoolMaxBytes: a.SpoolMax, BatchMaxEvents: a.BatchEvents,
			FlushInterval: a.FlushInterval, LockRetention: a.LockRetention, Key: key, Log: log.Named("trail")})
		if err != nil {
			return fmt.Errorf("audit trail: %w", err)
		}
		// Not ctx: events of transfers finishing during the grace period
		// must keep flowing; Close stops it.
		go tr.Run(context.Background())
		// From here on every return flushes the trail, so the events of a
		// start that fails later (or of a listener error) are not lost.
		defer func() {
			cancel() // background recorders first: nothing records after Close
			// result, not err: err is shadowed in this block.
			if cerr := closeTrail(tr, result, log); result == nil {
				result = cerr
			}
		}()
		rec = audit.Multi(rec, tr)
	}
	if met != nil {
		rec = audit.Multi(rec, met)
		if tr != nil {
			met.ObserveTrail(tr.Stats)
		}
	}

	rec = audit.Multi(rec, alertRec)
	if tr != nil {
		t := time.NewTicker(30 * time.Second)
		go func() { defer t.Stop(); watchTrail(ctx, tr.Stats, auditStuckAfter, t.C, time.Now, rec) }()
	}
	if !cfg.Strict { // in the background, with every recorder in place
		go func() { _ = startupPosture(ctx, cfg, rec, log.Named("posture")) }()
	}

	if err := startRetention(ctx, cfg, stores, rec, log.Named("retention")); err != nil {
		return err
	}

	users, err := authn.NewUserDB(cfg.UsersFile, log.Named("users"))
	if err != nil {
		return err
	}
	go users.Watch(ctx, 2*time.Second)
	auth := authn.New(authn.Options{Users: users, Roles: cfg.Roles, Lockout: cfg.Lockout,
		Log: log.Named("authn"), Audit: rec})

	var signers []ssh.Signer
	for _, p := range cfg.HostKeys {
		s, err := loadOrCreateHostKey(p, log)
		if err != nil {
			return err
		}
		signers = append(signers, s)
	}
	srv, err := gateway.New(gateway.Config{
		HostKeys: signers, Auth: auth, Stores: stores, Audit: rec, Log: log.Named("gateway"),
		HandshakeTimeout: cfg.HandshakeTimeout, IdleTimeout: cfg.IdleTimeout,
		MaxSessions: cfg.MaxSessions, Banner: cfg.Banner,
		KexTimeout: cfg.Conn.KexTimeout, Startups: cfg.Conn.Startups, MaxUnauthPerSource: cfg.Conn.MaxUnauthPerSource,
		MaxSessionsPerUser: cfg.Conn.MaxSessionsPerUser, MaxSessionsPerSource: cfg.Conn.MaxSessionsPerSrc,
		MaxHandles: cfg.Conn.MaxOpenHandles, SessionWriteBuffer: cfg.Conn.SessionWriteBuffer,
		ResumeWindow: cfg.ResumeWindow,
		Users:        users, MaxSessionLifetime: cfg.Conn.MaxSessionLifetime,
		WrapConn: wrapConn(cfg, log), Algorithms: algorithms(cfg, log),
	})
	if err != nil {
		return err
	}
	var health *metrics.Health
	if met != nil {
		met.ObserveHandles(srv.OpenHandles)
		health = metrics.NewHealth(metrics.HealthOptions{Checks: checks, Log: log.Named("health")})
		msrv, err := metrics.Listen(cfg.Metrics.Listen, met.Handler(health), log.Named("metrics"))
		if err != nil {
			return fmt.Errorf("metrics listener: %w", err)
		}
		log.Info("metrics and health listening", "address", msrv.Addr().String())
		go func() {
			if err := msrv.Serve(); err != nil {
				log.Error("metrics listener stopped", "error", err.Error())
			}
		}()
		// Closed last, so /healthz answers while transfers drain.
		defer func() {
			c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = msrv.Shutdown(c)
		}()
	}
	ln, err := listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	log.Info("listening", "address", ln.Addr().String(), "version", version)
	rec.Record(audit.Event{Time: time.Now().UTC(), Kind: "admin", Op: "start", Result: "ok",
		Detail: startDetail + ", listening on " + ln.Addr().String()})
	if ready != nil {
		ready(ln.Addr())
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-hup:
				reload(cfg.Path, users, auth, stores, rec, log)
			case <-ctx.Done():
				return
			}
		}
	}()

	if cfg.ResumeWindow > 0 {
		go sweepResumable(ctx, stores, cfg.ResumeWindow, log.Named("resume"))
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	var serveErr error
	select {
	case serveErr = <-errc:
		// Sessions already open still get the grace period below.
		log.Error("listener failed; shutting down", "error", serveErr.Error())
	case <-ctx.Done():
	}
	grace := cfg.ShutdownGrace
	log.Info("shutting down: no new connections, idle sessions closed, transfers get the grace period",
		"grace", grace.String(), "open_handles", srv.OpenHandles())
	if health != nil {
		health.SetDraining()
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("shutdown", "detail", err.Error())
	}
	return serveErr
}

// closeTrail records how serve ended and flushes the trail. A fresh
// deadline: the grace period may be used up, and the events of the last
// sessions must still reach the bucket (or at least the spool).
func closeTrail(tr *trail.Trail, serveErr error, log hclog.Logger) error {
	e := audit.Event{Kind: "admin", Op: "stop", Result: "ok", Detail: "sftpgw stopped"}
	if serveErr != nil {
		e.Result, e.ErrClass, e.Detail = "error", "internal", "sftpgw stopped: "+serveErr.Error()
	}
	tr.Record(e)
	fctx, fcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer fcancel()
	if err := tr.Close(fctx); err != nil {
		log.Error("audit trail flush", "error", err.Error())
		return err
	}
	log.Info("audit trail flushed")
	return nil
}

// wrapConn enables the PROXY protocol for the configured load balancers.
func wrapConn(cfg *config.Config, log hclog.Logger) func(net.Conn) (net.Conn, error) {
	if len(cfg.ProxyTrusted) == 0 {
		return nil
	}
	log.Info("PROXY protocol required from trusted load balancers", "trusted", fmt.Sprint(cfg.ProxyTrusted))
	return proxyproto.Wrap(cfg.ProxyTrusted, log.Named("proxyproto"))
}

// reload re-reads users and roles; an invalid new config keeps the old one.
// Sessions already open keep the role they logged in with. Only users and
// roles change: listeners, storage, audit and the like need a restart.
func reload(path string, users *authn.UserDB, auth *authn.Authenticator, stores map[string]vfs.Store,
	rec audit.Recorder, log hclog.Logger) {
	var problems []string
	if err := users.Reload(); err != nil {
		log.Error("users reload rejected; keeping the previous users", "error", err.Error())
		problems = append(problems, "users file rejected")
	}
	cfg, err := config.Load(path)
	if err == nil {
		err = rolesFitStores(cfg, stores)
	}
	if err != nil {
		log.Error("config reload rejected; keeping the previous roles", "error", err.Error())
		problems = append(problems, "config rejected")
	} else {
		auth.SetRoles(cfg.Roles)
	}
	e := audit.Event{Time: time.Now().UTC(), Kind: "admin", Op: "reload", Result: "ok", Detail: "users and roles reloaded"}
	if len(problems) > 0 {
		e.Result, e.ErrClass = "error", "invalid_config"
		e.Detail = strings.Join(problems, "; ") + "; previous settings stay in force"
	} else {
		log.Info("reloaded users and roles")
	}
	rec.Record(e)
}

// rolesFitStores refuses roles that name storage opened only at start.
func rolesFitStores(cfg *config.Config, stores map[string]vfs.Store) error {
	for name, r := range cfg.Roles {
		if _, ok := stores[r.Storage]; !ok {
			return fmt.Errorf("role %q uses storage %q, which was not configured at start (restart to add storage)", name, r.Storage)
		}
	}
	return nil
}

// loadOrCreateHostKey reads an OpenSSH private key, or generates an ed25519
// key there (0600) on first start.
func loadOrCreateHostKey(path string, log hclog.Logger) (ssh.Signer, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		_, priv, gerr := ed25519.GenerateKey(rand.Reader)
		if gerr != nil {
			return nil, gerr
		}
		blk, merr := ssh.MarshalPrivateKey(priv, "sftpgw host key")
		if merr != nil {
			return nil, merr
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, pem.EncodeToMemory(blk), 0o600); err != nil {
			return nil, err
		}
		s, serr := ssh.NewSignerFromKey(priv)
		if serr == nil {
			log.Info("generated host key", "path", path, "fingerprint", ssh.FingerprintSHA256(s.PublicKey()))
			_ = os.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(s.PublicKey()), 0o644)
		}
		return s, serr
	}
	if err != nil {
		return nil, fmt.Errorf("host key: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("host key %s is readable by others (mode %o): chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	s, err := ssh.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("host key %s: %w", path, err)
	}
	return s, nil
}

// algorithms returns nil (the gateway's defaults) unless the config asks for
// the MAC-then-encrypt MACs that libssh2 < 1.11 (curl) needs.
func algorithms(cfg *config.Config, log hclog.Logger) *ssh.Algorithms {
	if !cfg.AllowNonETMMACs {
		return nil
	}
	log.Warn("allow_non_etm_macs: also offering hmac-sha2-256/512 for old libssh2 clients such as curl")
	a := gateway.DefaultAlgorithms()
	a.MACs = append(a.MACs, ssh.HMACSHA256, ssh.HMACSHA512)
	return &a
}

// sweepResumable aborts interrupted uploads kept longer than window and
// removes their manifests (docs/resume.md), at start and then every
// window/24 (at least a minute, at most an hour). Several instances
// sharing a bucket may sweep together: removing twice is harmless.
func sweepResumable(ctx context.Context, stores map[string]vfs.Store, window time.Duration, log hclog.Logger) {
	every := min(max(window/24, time.Minute), time.Hour)
	for {
		for name, st := range stores {
			n, err := vfs.SweepResumable(ctx, st, window, time.Now())
			if err != nil && ctx.Err() == nil {
				log.Warn("sweeping expired interrupted uploads failed", "storage", name, "error", vfs.SafeMessage(err))
			}
			if n > 0 {
				log.Info("expired interrupted uploads removed", "storage", name, "count", n)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}
