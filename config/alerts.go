package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// AlertBlock is one webhook: alert "name" { url = "...", events = [...] }.
type AlertBlock struct {
	Name       string    `hcl:"name,label"`
	URL        string    `hcl:"url"`
	Events     []string  `hcl:"events"`
	SecretEnv  string    `hcl:"secret_env,optional"`
	SecretFile string    `hcl:"secret_file,optional"`
	Timeout    string    `hcl:"timeout,optional"`
	Queue      int       `hcl:"queue,optional"`
	Attempts   int       `hcl:"max_attempts,optional"`
	DefRange   hcl.Range `hcl:",def_range"`
}

// Alert is a validated webhook. It holds where the HMAC secret is, never the
// secret itself, so a printed Config cannot leak it.
type Alert struct {
	Name       string
	URL        string
	Events     []string
	SecretEnv  string
	SecretFile string
	Timeout    time.Duration
	Queue      int
	Attempts   int
}

// AlertEvents are the event names a webhook or email sink can subscribe to
// ("*" = all); alerts.Names is the same list (a test keeps them equal).
var AlertEvents = []string{"upload_complete", "download", "denied", "login_failure_burst", "lockout", "mfa_lock", "retention_delete",
	"posture_failure", "audit_stuck"}

func validateAlerts(blocks []AlertBlock, rel func(string) string) ([]Alert, error) {
	var out []Alert
	seen := map[string]bool{}
	for _, b := range blocks {
		if seen[b.Name] {
			return nil, at(b.DefRange, "alert %q is defined twice", b.Name)
		}
		seen[b.Name] = true
		u, err := url.Parse(b.URL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			// The URL may carry a token (chat webhooks do): never echo it.
			return nil, at(b.DefRange, "alert %q: url must be an http(s) URL with a host", b.Name)
		}
		if u.User != nil {
			return nil, at(b.DefRange, "alert %q: url must not contain credentials; sign with secret_env or secret_file", b.Name)
		}
		if (b.SecretEnv == "") == (b.SecretFile == "") {
			return nil, at(b.DefRange, "alert %q: set exactly one of secret_env (an environment variable name) or secret_file (a file holding the HMAC secret); secrets are never written inline", b.Name)
		}
		if len(b.Events) == 0 {
			return nil, at(b.DefRange, "alert %q: events is empty; choose from %s or \"*\"", b.Name, strings.Join(AlertEvents, ", "))
		}
		for _, e := range b.Events {
			if e != "*" && !contains(AlertEvents, e) {
				return nil, at(b.DefRange, "alert %q: unknown event %q; choose from %s or \"*\"", b.Name, e, strings.Join(AlertEvents, ", "))
			}
		}
		a := Alert{Name: b.Name, URL: b.URL, Events: b.Events, SecretEnv: b.SecretEnv, SecretFile: rel(b.SecretFile),
			Queue: b.Queue, Attempts: b.Attempts}
		if a.Timeout, err = duration(b.Timeout, 10*time.Second); err != nil {
			return nil, at(b.DefRange, "alert %q: timeout: %v", b.Name, err)
		}
		if b.Queue < 0 || b.Attempts < 0 {
			return nil, at(b.DefRange, "alert %q: queue and max_attempts must not be negative", b.Name)
		}
		out = append(out, a)
	}
	return out, nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// RetentionPeriod is the block's validated retention, 0 when unset.
func (s StorageBlock) RetentionPeriod() time.Duration {
	d, _ := duration(s.Retention, 0)
	return d
}

// EmailBlock is one SMTP alert sink: email "name" { host = "...", ... }.
type EmailBlock struct {
	Name           string       `hcl:"name,label"`
	Host           string       `hcl:"host"`
	Port           int          `hcl:"port,optional"`
	TLS            string       `hcl:"tls,optional"` // starttls (default), implicit, none
	AllowPlaintext bool         `hcl:"allow_plaintext,optional"`
	CAFile         string       `hcl:"ca_file,optional"`
	Username       string       `hcl:"username,optional"`
	PasswordEnv    string       `hcl:"password_env,optional"`
	PasswordFile   string       `hcl:"password_file,optional"`
	From           string       `hcl:"from"`
	To             []string     `hcl:"to"`
	SubjectPrefix  string       `hcl:"subject_prefix,optional"`
	Events         []string     `hcl:"events,optional"`
	Timeout        string       `hcl:"timeout,optional"`
	Queue          int          `hcl:"queue,optional"`
	Attempts       int          `hcl:"max_attempts,optional"`
	Digest         *DigestBlock `hcl:"digest,block"`
	DefRange       hcl.Range    `hcl:",def_range"`
}

// DigestBlock schedules the HR digest of an email sink.
type DigestBlock struct {
	DailyAt  string   `hcl:"daily_at,optional"`  // "HH:MM", default "08:00"
	TimeZone string   `hcl:"time_zone,optional"` // IANA name, default "UTC"
	Hourly   bool     `hcl:"hourly,optional"`
	Roles    []string `hcl:"roles,optional"` // whose uploads are listed; empty: all
}

// Email is a validated email sink. Like Alert it names where the password
// is, never the password.
type Email struct {
	Name           string
	Host           string
	Port           int
	TLS            string
	AllowPlaintext bool
	CAFile         string
	Username       string
	PasswordEnv    string
	PasswordFile   string
	From           string
	To             []string
	SubjectPrefix  string
	Events         []string
	Timeout        time.Duration
	Queue          int
	Attempts       int
	Digest         *Digest
}

// Digest is a validated digest schedule.
type Digest struct {
	DailyAt  string
	Location *time.Location
	Hourly   bool
	Roles    []string
}

func validateEmails(blocks []EmailBlock, webhooks []Alert, roles map[string]bool, rel func(string) string) ([]Email, error) {
	var out []Email
	seen := map[string]bool{}
	for _, a := range webhooks {
		seen[a.Name] = true
	}
	for _, b := range blocks {
		if seen[b.Name] {
			return nil, at(b.DefRange, "email %q: the name is already used by another alert or email block", b.Name)
		}
		seen[b.Name] = true
		e := Email{Name: b.Name, Host: b.Host, Port: b.Port, TLS: b.TLS, AllowPlaintext: b.AllowPlaintext,
			CAFile: rel(b.CAFile), Username: b.Username, PasswordEnv: b.PasswordEnv, PasswordFile: rel(b.PasswordFile),
			From: b.From, To: b.To, SubjectPrefix: b.SubjectPrefix, Events: b.Events, Queue: b.Queue, Attempts: b.Attempts}
		switch b.TLS {
		case "", "starttls", "implicit":
		case "none":
			if !b.AllowPlaintext {
				return nil, at(b.DefRange, "email %q: tls = \"none\" sends the password and applicant names in clear; set allow_plaintext = true only for a relay on this host or a trusted network", b.Name)
			}
		default:
			return nil, at(b.DefRange, "email %q: tls must be \"starttls\" (default), \"implicit\" or \"none\"", b.Name)
		}
		if b.Host == "" || b.From == "" || len(b.To) == 0 {
			return nil, at(b.DefRange, "email %q: host, from and to are required", b.Name)
		}
		if b.Port < 0 || b.Port > 65535 {
			return nil, at(b.DefRange, "email %q: port out of range", b.Name)
		}
		if b.PasswordEnv != "" && b.PasswordFile != "" {
			return nil, at(b.DefRange, "email %q: set at most one of password_env or password_file", b.Name)
		}
		if (b.Username == "") != (b.PasswordEnv == "" && b.PasswordFile == "") {
			return nil, at(b.DefRange, "email %q: username needs password_env or password_file (passwords are never written inline), and a password needs a username", b.Name)
		}
		for _, ev := range b.Events {
			if ev != "*" && !contains(AlertEvents, ev) {
				return nil, at(b.DefRange, "email %q: unknown event %q; choose from %s or \"*\"", b.Name, ev, strings.Join(AlertEvents, ", "))
			}
		}
		if len(b.Events) == 0 && b.Digest == nil {
			return nil, at(b.DefRange, "email %q: set events, a digest block, or both", b.Name)
		}
		var err error
		if e.Timeout, err = duration(b.Timeout, 30*time.Second); err != nil {
			return nil, at(b.DefRange, "email %q: timeout: %v", b.Name, err)
		}
		if b.Queue < 0 || b.Attempts < 0 {
			return nil, at(b.DefRange, "email %q: queue and max_attempts must not be negative", b.Name)
		}
		if d := b.Digest; d != nil {
			dg := &Digest{DailyAt: d.DailyAt, Hourly: d.Hourly, Roles: d.Roles, Location: time.UTC}
			if dg.DailyAt == "" {
				dg.DailyAt = "08:00"
			}
			var h, m int
			if n, err := fmt.Sscanf(dg.DailyAt, "%d:%d", &h, &m); n != 2 || err != nil || len(dg.DailyAt) != 5 || h > 23 || m > 59 || h < 0 || m < 0 {
				return nil, at(b.DefRange, "email %q: digest daily_at %q must be HH:MM", b.Name, dg.DailyAt)
			}
			if d.TimeZone != "" {
				if dg.Location, err = time.LoadLocation(d.TimeZone); err != nil {
					return nil, at(b.DefRange, "email %q: digest time_zone %q: %v", b.Name, d.TimeZone, err)
				}
			}
			for _, r := range d.Roles {
				if !roles[r] {
					return nil, at(b.DefRange, "email %q: digest roles: no role %q", b.Name, r)
				}
			}
			e.Digest = dg
		}
		out = append(out, e)
	}
	return out, nil
}
