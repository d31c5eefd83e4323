package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// runHealth is the container HEALTHCHECK: the distroless image has no
// shell or curl, so the binary probes its own metrics listener.
func runHealth(args []string) error {
	fl := flag.NewFlagSet("health", flag.ContinueOnError)
	target := fl.String("url", "http://127.0.0.1:9090/healthz", "URL that must answer 200 (/healthz or /readyz)")
	timeout := fl.Duration("timeout", 5*time.Second, "give up after this long")
	if err := fl.Parse(args); err != nil {
		return err
	}
	u, err := url.Parse(*target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("health: --url %q is not an http(s) URL", *target)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	// No proxy from the environment: the probe is for this host only.
	c := &http.Client{Transport: &http.Transport{Proxy: nil}, CheckRedirect: func(*http.Request, []*http.Request) error {
		return errors.New("redirects are not followed")
	}}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health: %s answered %s: %s", u.Redacted(), resp.Status, body)
	}
	fmt.Printf("%s", body)
	return nil
}
