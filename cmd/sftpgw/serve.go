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
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/crypto/ssh"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/audit/trail"
	"github.com/sftpgw/sftpgw/authn"
	"github.com/sftpgw/sftpgw/config"
	"github.com/sftpgw/sftpgw/gateway"
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
// ready, if non-nil, receives the listening address.
func serve(ctx context.Context, cfg *config.Config, ready func(net.Addr)) error {
	log := newLogger(cfg)
	stores := map[string]vfs.Store{}
	for name := range cfg.Storage {
		st, err := cfg.OpenStore(ctx, name)
		if err != nil {
			return fmt.Errorf("storage %q: %w", name, err)
		}
		stores[name] = st
	}

	rec := audit.NewLogRecorder(log.Named("audit"))
	var tr *trail.Trail
	if a := cfg.Audit; a != nil {
		key, err := trail.LoadOrCreateKey(a.SigningKey)
		if err != nil {
			return fmt.Errorf("audit signing key: %w", err)
		}
		instance := a.Instance
		if instance == "" {
			instance, _ = os.Hostname()
		}
		tr, err = trail.New(trail.Options{Store: stores[a.Storage], Prefix: a.Prefix, Instance: instance,
			SpoolDir: a.SpoolDir, SpoolMaxBytes: a.SpoolMax, BatchMaxEvents: a.BatchEvents,
			FlushInterval: a.FlushInterval, Key: key, Log: log.Named("trail")})
		if err != nil {
			return fmt.Errorf("audit trail: %w", err)
		}
		go tr.Run(ctx)
		rec = audit.Multi(rec, tr)
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
		MaxUnauthConns: cfg.MaxUnauthenticated, MaxSessions: cfg.MaxSessions, Banner: cfg.Banner,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	log.Info("listening", "address", ln.Addr().String(), "version", version)
	if ready != nil {
		ready(ln.Addr())
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			reload(cfg.Path, users, auth, log)
		}
	}()

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: no new connections; waiting for transfers", "grace", "30s")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("shutdown", "detail", err.Error())
	}
	if tr != nil {
		if err := tr.Close(sctx); err != nil {
			log.Error("audit trail flush", "error", err.Error())
			return err
		}
	}
	log.Info("stopped")
	return nil
}

// reload re-reads users and roles; an invalid new config keeps the old one.
func reload(path string, users *authn.UserDB, auth *authn.Authenticator, log hclog.Logger) {
	if err := users.Reload(); err != nil {
		log.Error("users reload rejected; keeping the previous users", "error", err.Error())
	}
	cfg, err := config.Load(path)
	if err != nil {
		log.Error("config reload rejected; keeping the previous roles", "error", err.Error())
		return
	}
	auth.SetRoles(cfg.Roles)
	log.Info("reloaded users and roles")
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
