package alerts

import (
	"bytes"
	"fmt"
	"os"

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

// FromConfig builds a Sender for the configured alert blocks (nil, nil
// when there are none).
func FromConfig(as []config.Alert, source string, log hclog.Logger) (*Sender, error) {
	if len(as) == 0 {
		return nil, nil
	}
	var hooks []Webhook
	for _, a := range as {
		secret, err := LoadSecret(a.SecretEnv, a.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("alert %q: %w", a.Name, err)
		}
		hooks = append(hooks, Webhook{Name: a.Name, URL: a.URL, Events: a.Events, Secret: secret,
			Timeout: a.Timeout, Queue: a.Queue, Attempts: a.Attempts})
	}
	return New(Options{Webhooks: hooks, Log: log, Source: source})
}
