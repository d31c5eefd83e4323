package alerts

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sftpgw/sftpgw/config"
)

// LoadSecret reads an HMAC secret from the environment variable env or from
// file (exactly one is set). A secret file must not be readable by others.
// Errors name the variable or file, never the value.
func LoadSecret(env, file string) ([]byte, error) {
	if env != "" {
		v := os.Getenv(env)
		if v == "" {
			return nil, fmt.Errorf("environment variable %s is empty or unset", env)
		}
		return []byte(v), nil
	}
	fi, err := os.Stat(file)
	if err != nil {
		return nil, fmt.Errorf("secret file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("secret file %s is readable by others (mode %o): chmod 600 %s", file, fi.Mode().Perm(), file)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("secret file: %w", err)
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, fmt.Errorf("secret file %s is empty", file)
	}
	return b, nil
}

// FromConfig builds a Sender for the configured alert and email blocks
// (nil, nil when there are none). retention gives a role's retention
// period and locate maps a user's path to its object, for the digest.
func FromConfig(cfg Config) (*Sender, error) {
	if len(cfg.Webhooks) == 0 && len(cfg.Emails) == 0 {
		return nil, nil
	}
	var hooks []Webhook
	for _, a := range cfg.Webhooks {
		secret, err := LoadSecret(a.SecretEnv, a.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("alert %q: %w", a.Name, err)
		}
		hooks = append(hooks, Webhook{Name: a.Name, URL: a.URL, Events: a.Events, Secret: secret,
			Timeout: a.Timeout, Queue: a.Queue, Attempts: a.Attempts})
	}
	var mails []Email
	for _, e := range cfg.Emails {
		m := Email{Name: e.Name, Host: e.Host, Port: e.Port, TLS: e.TLS, AllowPlaintext: e.AllowPlaintext,
			Username: e.Username, From: e.From, To: e.To, SubjectPrefix: e.SubjectPrefix, Events: e.Events,
			Timeout: e.Timeout, Queue: e.Queue, Attempts: e.Attempts}
		if e.Username != "" {
			pw, err := LoadSecret(e.PasswordEnv, e.PasswordFile)
			if err != nil {
				return nil, fmt.Errorf("email %q: password: %w", e.Name, err)
			}
			m.Password = pw
		}
		if e.CAFile != "" {
			pem, err := os.ReadFile(e.CAFile)
			if err != nil {
				return nil, fmt.Errorf("email %q: ca_file: %w", e.Name, err)
			}
			m.RootCAs = x509.NewCertPool()
			if !m.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("email %q: ca_file %s holds no PEM certificate", e.Name, e.CAFile)
			}
		}
		if d := e.Digest; d != nil {
			m.Digest = &DigestSchedule{DailyAt: d.DailyAt, Location: d.Location, Hourly: d.Hourly, Roles: d.Roles,
				Locate: cfg.Locate, Retention: cfg.Retention}
		}
		mails = append(mails, m)
	}
	return New(Options{Webhooks: hooks, Emails: mails, Log: cfg.Log, Source: cfg.Source, Clock: cfg.Clock})
}

// Config is what FromConfig needs from the gateway's configuration.
type Config struct {
	Webhooks []config.Alert
	Emails   []config.Email
	Source   string
	Log      hclog.Logger
	Clock    Clock
	// For the digest (see DigestSchedule).
	Locate    func(user, role, path string) (string, bool)
	Retention func(role string) time.Duration
}
