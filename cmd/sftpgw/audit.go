package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/sftpgw/sftpgw/audit/trail"
	"github.com/sftpgw/sftpgw/vfs"
)

// auditKey is where the verification key comes from and the fingerprint
// it must have (empty: not pinned).
type auditKey struct {
	path, pin string
}

// runAuditVerify implements "sftpgw audit verify": it checks the audit trail
// under prefix against the public key, prints a report and fails if
// anything is missing, altered, reordered or inserted. from and to bound the
// batches by sealing time; either may be empty. to = "now" also requires
// each instance's newest batch to be younger than fresh.
func runAuditVerify(store vfs.Store, prefix string, k auditKey, from, to string, fresh time.Duration) error {
	pub, err := trail.LoadPublicKey(k.path)
	if err != nil {
		return exitCode(2, fmt.Errorf("audit verify: %w", err))
	}
	// Printed every time, so that whoever runs this can compare it with
	// the fingerprint they hold.
	pinned := "NOT PINNED (set pubkey_sha256 in the audit block or pass --pubkey-sha256)"
	if k.pin != "" {
		pinned = "pinned"
	}
	fmt.Fprintf(os.Stdout, "audit public key %s: sha256:%s, %s\n", k.path, trail.Fingerprint(pub), pinned)
	if err := trail.CheckPin(pub, k.pin, k.path); err != nil {
		return exitCode(2, fmt.Errorf("audit verify: %w", err))
	}
	o := trail.VerifyOptions{}
	if o.From, err = parseAuditTime(from, false); err != nil {
		return exitCode(2, fmt.Errorf("audit verify: --from: %w", err))
	}
	if strings.EqualFold(to, "now") {
		now := time.Now().UTC()
		o.To, o.FreshWithin, o.Now = now, fresh, func() time.Time { return now }
	} else if o.To, err = parseAuditTime(to, true); err != nil {
		return exitCode(2, fmt.Errorf("audit verify: --to: %w", err))
	}
	if !o.From.IsZero() && !o.To.IsZero() && o.To.Before(o.From) {
		return exitCode(2, fmt.Errorf("audit verify: --to %s is before --from %s", to, from))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rep, err := trail.VerifyWith(ctx, store, prefix, pub, o)
	if err != nil {
		return exitCode(2, fmt.Errorf("audit verify: %w", err))
	}
	fmt.Fprint(os.Stdout, rep.String())
	if !rep.OK() {
		return exitCode(1, fmt.Errorf("audit verify: trail failed verification (%d problem(s))", len(rep.Problems)))
	}
	return nil
}

// parseAuditTime accepts RFC 3339 or a UTC date/time without zone. A date
// alone as the upper bound means the end of that day.
func parseAuditTime(s string, upper bool) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	for _, layout := range []string{"2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04:05", "2006-01-02 15:04"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		if upper {
			t = t.Add(24*time.Hour - time.Millisecond)
		}
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is not RFC 3339, YYYY-MM-DD[THH:MM[:SS]] (UTC) or now", s)
}

// exitError carries the process exit status of a failed command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitCode(code int, err error) error { return &exitError{code: code, err: err} }
