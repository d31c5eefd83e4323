// Command sftpgw is an SFTP gateway to S3. It wires configuration, storage,
// authentication, audit and the SSH server together; the logic lives in the
// packages it calls.
package main

import (
	"errors"
	"fmt"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `sftpgw: an SFTP gateway to S3

usage:
  sftpgw serve --config FILE          run the gateway
  sftpgw demo [--dir DIR] [--port N]  run a demo on a local directory with generated users
  sftpgw user add|list|remove|rotate-totp|add-key|invite ...   manage users (see 'sftpgw user help')
  sftpgw audit verify --config FILE [--from T] [--to T|now] [--pubkey-sha256 HEX]  verify the audit trail
  sftpgw check --config FILE [--fix] [--strict]        check (and fix) the buckets' security settings
  sftpgw alert test --config FILE      send a test message through every alert webhook and email sink
  sftpgw health [--config FILE | --url URL] [--wait D]  exit 0 if the config's metrics listener answers 200
  sftpgw version
`

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "sftpgw:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("see 'sftpgw help'")

func run(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "serve":
		return runServe(args[1:])
	case "demo":
		return runDemo(args[1:])
	case "user":
		return runUser(args[1:])
	case "audit":
		return runAudit(args[1:])
	case "check":
		return runCheck(args[1:], os.Stdout)
	case "health":
		return runHealth(args[1:])
	case "alert":
		return runAlert(args[1:], os.Stdout)
	case "version", "--version":
		fmt.Println("sftpgw", version)
		return nil
	case "help", "-h", "--help":
		fmt.Print(usage)
		return nil
	}
	fmt.Fprint(os.Stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}
