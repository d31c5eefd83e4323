package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sftpgw/sftpgw/config"
)

const alertUsage = `usage:
  sftpgw alert test --config FILE [--timeout D]
      send one test message through every configured alert webhook and
      email sink now (no queue, no retries) and say what each answered;
      exit 1 if any failed.
`

func runAlert(args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "test" {
		fmt.Fprint(os.Stderr, alertUsage)
		return errUsage
	}
	fl := flag.NewFlagSet("alert test", flag.ContinueOnError)
	fl.Usage = func() { fmt.Fprint(os.Stderr, alertUsage) }
	cfgPath := fl.String("config", "sftpgw.hcl", "configuration file")
	timeout := fl.Duration("timeout", 30*time.Second, "time allowed per sink")
	if err := fl.Parse(args[1:]); err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	for i := range cfg.Alerts {
		cfg.Alerts[i].Timeout = *timeout
	}
	for i := range cfg.Emails {
		cfg.Emails[i].Timeout = *timeout
		cfg.Emails[i].Digest = nil // no schedule for a one-shot test
		if len(cfg.Emails[i].Events) == 0 {
			cfg.Emails[i].Events = []string{"*"}
		}
	}
	s, err := newAlertSender(cfg, hclog.NewNullLogger())
	if err != nil {
		return err
	}
	if s == nil {
		return errors.New("no alert or email block in " + *cfgPath)
	}
	defer s.Close(context.Background())
	failed := 0
	for _, r := range s.Test(context.Background()) {
		if r.Err != nil {
			failed++
			fmt.Fprintf(stdout, "FAIL %s %q (%s): %v\n", r.Kind, r.Sink, r.Target, r.Err)
			continue
		}
		fmt.Fprintf(stdout, "ok   %s %q (%s): accepted in %s\n", r.Kind, r.Sink, r.Target, r.Took.Round(time.Millisecond))
	}
	if failed > 0 {
		return exitCode(1, fmt.Errorf("%d alert sink(s) failed", failed))
	}
	return nil
}
