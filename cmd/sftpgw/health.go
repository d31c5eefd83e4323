package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/sftpgw/sftpgw/config"
)

const healthUsage = `usage: sftpgw health [--config FILE | --url URL] [--path /healthz|/readyz] [--wait DURATION]

Exits 0 when the gateway's metrics listener answers 200. The address comes
from the metrics block of --config (default sftpgw.hcl; a wildcard listen
address is probed on loopback), or --url names the full URL.
  --path   /healthz (the process answers) or /readyz (buckets reachable, not draining)
  --wait   keep trying for this long (e.g. 30s) before giving up: for scripts
           that start the gateway and wait until it is ready
`

// runHealth is the container HEALTHCHECK: the distroless image has no
// shell or curl, so the binary probes its own metrics listener.
func runHealth(args []string) error {
	fl := flag.NewFlagSet("health", flag.ContinueOnError)
	fl.Usage = func() { fmt.Fprint(os.Stderr, healthUsage) }
	cfgPath := fl.String("config", "sftpgw.hcl", "configuration file (its metrics block gives the address)")
	target := fl.String("url", "", "URL that must answer 200 (instead of the address from --config)")
	path := fl.String("path", "/healthz", "path to probe with --config: /healthz or /readyz")
	timeout := fl.Duration("timeout", 5*time.Second, "give up on one attempt after this long")
	wait := fl.Duration("wait", 0, "retry until this long has passed (0: one attempt)")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *target == "" {
		cfg, err := config.Load(*cfgPath)
		if err != nil {
			return fmt.Errorf("health: %w (or give --url)", err)
		}
		if *target, err = healthURL(cfg, *path); err != nil {
			return fmt.Errorf("health: %w", err)
		}
	}
	u, err := url.Parse(*target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("health: --url %q is not an http(s) URL", *target)
	}
	deadline := time.Now().Add(*wait)
	for {
		body, err := probe(u, *timeout)
		if err == nil {
			fmt.Printf("%s", body)
			return nil
		}
		if !time.Now().Before(deadline) {
			return err
		}
		// A poll, not a race: each failed attempt is simply retried until
		// --wait is used up.
		time.Sleep(500 * time.Millisecond)
	}
}

// healthURL is the probe URL for the config's metrics listener.
func healthURL(cfg *config.Config, path string) (string, error) {
	if cfg.Metrics == nil {
		return "", fmt.Errorf("%s has no metrics block: add `metrics { listen = \"127.0.0.1:9090\" }` (health is served there)", cfg.Path)
	}
	host, port, err := net.SplitHostPort(cfg.Metrics.Listen)
	if err != nil || port == "0" {
		return "", fmt.Errorf("%s: metrics listen %q has no fixed port to probe", cfg.Path, cfg.Metrics.Listen)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port) + path, nil
}

func probe(u *url.URL, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	// No proxy from the environment: the probe is for this host only.
	c := &http.Client{Transport: &http.Transport{Proxy: nil}, CheckRedirect: func(*http.Request, []*http.Request) error {
		return errors.New("redirects are not followed")
	}}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("health: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("health: %s answered %s: %s", u.Redacted(), resp.Status, body)
	}
	return body, nil
}
