package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/sftpgw/sftpgw/audit/trail"
	"github.com/sftpgw/sftpgw/config"
)

const auditUsage = "usage: sftpgw audit verify --config FILE [--from T] [--to T|now] [--pubkey FILE] [--pubkey-sha256 HEX]"

// runAudit dispatches `sftpgw audit verify`. Exit status: 0 the trail
// verifies, 1 it does not, 2 it could not be verified (usage, config, key,
// pin, store).
func runAudit(args []string) error {
	if len(args) == 0 || args[0] != "verify" {
		return exitCode(2, fmt.Errorf("%s", auditUsage))
	}
	fl := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	cfgPath := fl.String("config", "sftpgw.hcl", "configuration file")
	from := fl.String("from", "", "first sealing time to verify (RFC 3339 or YYYY-MM-DD, UTC)")
	var to string
	fl.StringVar(&to, "to", "", `last sealing time to verify (RFC 3339 or YYYY-MM-DD, UTC); "now" also requires every instance to have sealed a batch within two flush intervals`)
	fl.StringVar(&to, "until", "", "same as --to")
	pub := fl.String("pubkey", "", "audit public key (default: the signing key's .pub file)")
	pin := fl.String("pubkey-sha256", "", "expected fingerprint of the public key (default: pubkey_sha256 of the audit block)")
	if err := fl.Parse(args[1:]); err != nil {
		return exitCode(2, err)
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return exitCode(2, err)
	}
	if cfg.Audit == nil {
		return exitCode(2, fmt.Errorf("%s has no audit block", *cfgPath))
	}
	want := cfg.Audit.PubKeySHA256
	if *pin != "" {
		if want, err = trail.ParseFingerprint(*pin); err != nil {
			return exitCode(2, fmt.Errorf("audit verify: --pubkey-sha256: %w", err))
		}
	}
	if err := reachStorage(context.Background(), cfg, cfg.Audit.Storage); err != nil {
		return exitCode(2, fmt.Errorf("audit verify: %w", err))
	}
	store, err := cfg.OpenStore(context.Background(), cfg.Audit.Storage)
	if err != nil {
		return exitCode(2, err)
	}
	if *pub == "" {
		*pub = cfg.Audit.SigningKey + ".pub"
	}
	return runAuditVerify(store, cfg.Audit.Prefix, auditKey{path: *pub, pin: want},
		*from, to, 2*cfg.Audit.FlushInterval)
}
