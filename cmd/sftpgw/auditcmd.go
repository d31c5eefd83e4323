package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/sftpgw/sftpgw/config"
)

// runAudit dispatches `sftpgw audit verify --config FILE [--from T] [--to T]`.
func runAudit(args []string) error {
	if len(args) == 0 || args[0] != "verify" {
		return fmt.Errorf("usage: sftpgw audit verify --config FILE [--from T] [--to T] [--pubkey FILE]")
	}
	fl := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	cfgPath := fl.String("config", "sftpgw.hcl", "configuration file")
	from := fl.String("from", "", "first time to verify (RFC 3339 or YYYY-MM-DD)")
	to := fl.String("to", "", "last time to verify (RFC 3339 or YYYY-MM-DD)")
	pub := fl.String("pubkey", "", "audit public key (default: the signing key's .pub file)")
	if err := fl.Parse(args[1:]); err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	if cfg.Audit == nil {
		return fmt.Errorf("%s has no audit block", *cfgPath)
	}
	if err := reachStorage(context.Background(), cfg, cfg.Audit.Storage); err != nil {
		return fmt.Errorf("audit verify: %w", err)
	}
	store, err := cfg.OpenStore(context.Background(), cfg.Audit.Storage)
	if err != nil {
		return err
	}
	if *pub == "" {
		*pub = cfg.Audit.SigningKey + ".pub"
	}
	return runAuditVerify(store, cfg.Audit.Prefix, *pub, *from, *to)
}
