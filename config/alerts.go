package config

import (
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

// AlertEvents are the event names a webhook can subscribe to ("*" = all).
var AlertEvents = []string{"upload_complete", "download", "denied", "login_failure_burst", "lockout", "mfa_lock", "retention_delete"}

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
