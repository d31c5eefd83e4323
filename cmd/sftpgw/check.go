package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/config"
	"github.com/sftpgw/sftpgw/posture"
)

const checkUsage = `usage: sftpgw check --config FILE [--fix] [--strict]

Checks every s3 storage block: endpoint TLS, versioning, default encryption,
public access block, no public ACL or policy, a bucket policy denying plain
HTTP and unencrypted uploads, MFA delete (file buckets), a lifecycle rule
matching retention, and an audit bucket separate from every file bucket.
  --fix     apply what can be applied (create a missing bucket, the audit
            bucket with Object Lock; versioning, default encryption, public
            access block, policy statements, lifecycle rule), then check again
  --strict  also fail on checks the endpoint does not support
Exits non-zero when a check fails.
`

// runCheck implements `sftpgw check`.
func runCheck(args []string, stdout io.Writer) error {
	fl := flag.NewFlagSet("check", flag.ContinueOnError)
	fl.Usage = func() { fmt.Fprint(os.Stderr, checkUsage) }
	cfgPath := fl.String("config", "sftpgw.hcl", "configuration file")
	fix := fl.Bool("fix", false, "apply the fixes that can be automated")
	strict := fl.Bool("strict", false, "fail on checks the endpoint does not support")
	if err := fl.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rs := posture.Run(ctx, posture.Targets(cfg), posture.Options{Fix: *fix})
	posture.Print(stdout, rs)
	if n := posture.Failures(rs, *strict); n > 0 {
		return fmt.Errorf("%d bucket posture check(s) failed", n)
	}
	return nil
}

// startupPosture runs the checks when serve starts: each failure is logged
// as a warning, and with strict = true any failure stops the start.
func startupPosture(ctx context.Context, cfg *config.Config, rec audit.Recorder, log hclog.Logger) error {
	// Each failure is an audit event too, so that it raises the
	// posture_failure alert (webhooks and email) at once.
	fail := func(detail string) {
		rec.Record(audit.Event{Time: time.Now().UTC(), Kind: "admin", Op: "posture_check", Result: "failure", Detail: detail})
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	// Credentials and endpoint first: without them every posture check
	// fails for the same reason, which this says plainly.
	if err := reachStorage(ctx, cfg); err != nil {
		fail("storage unreachable: " + err.Error())
		if cfg.Strict {
			return fmt.Errorf("refusing to start (strict = true): %w", err)
		}
		log.Error("storage unreachable; the gateway runs, but file operations will fail", "error", err.Error())
	}
	rs := posture.Run(ctx, posture.Targets(cfg), posture.Options{})
	for _, r := range rs {
		switch r.Status {
		case posture.Fail:
			fail(fmt.Sprintf("storage %s, bucket %s: %s: %s; fix: %s", r.Storage, r.Bucket, r.Check, r.Detail, r.Fix))
			log.Warn("bucket posture check failed", "storage", r.Storage, "bucket", r.Bucket, "check", r.Check,
				"detail", r.Detail, "fix", r.Fix)
		case posture.Unsupported:
			log.Info("bucket posture check unsupported by endpoint", "storage", r.Storage, "check", r.Check, "detail", r.Detail)
		}
	}
	if n := posture.Failures(rs, false); n > 0 && cfg.Strict {
		return fmt.Errorf("refusing to start: %d bucket posture check(s) failed and strict = true; see 'sftpgw check --config %s'", n, cfg.Path)
	}
	return nil
}
