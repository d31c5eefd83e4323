package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/sftpgw/sftpgw/audit/trail"
	"github.com/sftpgw/sftpgw/vfs"
)

// runAuditVerify implements "sftpgw audit verify": it checks the audit trail
// under prefix against the public key in pubKeyPath, prints a report and
// fails if anything is missing, altered, reordered or inserted. from and to
// bound the batches by sealing time; either may be empty.
func runAuditVerify(store vfs.Store, prefix string, pubKeyPath string, from, to string) error {
	pub, err := trail.LoadPublicKey(pubKeyPath)
	if err != nil {
		return fmt.Errorf("audit verify: %w", err)
	}
	fromT, err := parseAuditTime(from, false)
	if err != nil {
		return fmt.Errorf("audit verify: --from: %w", err)
	}
	toT, err := parseAuditTime(to, true)
	if err != nil {
		return fmt.Errorf("audit verify: --to: %w", err)
	}
	if !fromT.IsZero() && !toT.IsZero() && toT.Before(fromT) {
		return fmt.Errorf("audit verify: --to %s is before --from %s", to, from)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rep, err := trail.Verify(ctx, store, prefix, pub, fromT, toT)
	if err != nil {
		return fmt.Errorf("audit verify: %w", err)
	}
	fmt.Fprint(os.Stdout, rep.String())
	if !rep.OK() {
		return fmt.Errorf("audit verify: trail failed verification (%d problem(s))", len(rep.Problems))
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
	return time.Time{}, fmt.Errorf("%q is not RFC 3339 or YYYY-MM-DD[THH:MM[:SS]] (UTC)", s)
}
