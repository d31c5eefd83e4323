package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sftpgw/sftpgw/authn"
)

const userUsage = `usage:
  sftpgw user add --role ROLE --key FILE [--name NAME] [--expires 14d|2w|36h|RFC3339]
                  [--mfa] [--allow-from CIDR,...] [--issuer NAME] [--users FILE]
  sftpgw user list [--users FILE]
  sftpgw user remove NAME [--users FILE]
  sftpgw user rotate-totp NAME [--issuer NAME] [--users FILE]
  sftpgw user add-key NAME --key FILE [--users FILE]
  sftpgw user invite --host HOST [--role applicant] [--expires 14d] [--config FILE]
                     [--host-key FILE] [--users FILE] [--port N] [--out DIR] [--zip]
                     (a key-only account plus a bundle to hand over; see 'sftpgw user invite -h')

--key FILE is an OpenSSH public key file (one or more keys; "-" reads stdin).
--users defaults to ./users.hcl. MFA (key + TOTP) is the default for role hr.
For MFA users the TOTP secret is printed once, as an otpauth:// URI and a QR
code, and never again. A running gateway picks up changes within seconds.
`

// userStdout is where the command writes; tests may replace it.
var userStdout io.Writer = os.Stdout

// runUser implements "sftpgw user ...".
func runUser(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, userUsage)
		return errors.New("missing user subcommand")
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "add":
		return userAdd(args)
	case "list", "ls":
		return userList(args)
	case "remove", "rm":
		return userRemove(args)
	case "rotate-totp":
		return userRotateTOTP(args)
	case "add-key":
		return userAddKey(args)
	case "invite":
		return runInvite(args)
	case "help", "-h", "--help":
		fmt.Fprint(userStdout, userUsage)
		return nil
	}
	fmt.Fprint(os.Stderr, userUsage)
	return fmt.Errorf("unknown user subcommand %q", cmd)
}

// newUserFlags returns a flag set with the common --users flag.
func newUserFlags(name string) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("sftpgw user "+name, flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	fs.Usage = func() { fmt.Fprint(os.Stderr, userUsage) }
	users := fs.String("users", "./users.hcl", "users file")
	return fs, users
}

// parseArgs parses flags placed before or after positional arguments
// ("remove NAME --users f" as well as "remove --users f NAME") and checks
// the number of positional arguments.
func parseArgs(fs *flag.FlagSet, args []string, positional int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != positional {
		fs.Usage()
		return nil, fmt.Errorf("%s: want %d argument(s), got %d", fs.Name(), positional, len(pos))
	}
	return pos, nil
}

func userAdd(args []string) error {
	fs, users := newUserFlags("add")
	role := fs.String("role", "", "role name (required)")
	keyFile := fs.String("key", "", "public key file (required; - for stdin)")
	name := fs.String("name", "", "user name (default: a random pseudonym)")
	expires := fs.String("expires", "", "account lifetime (14d, 2w, 36h) or expiry time (RFC 3339)")
	mfa := fs.Bool("mfa", false, "require public key + TOTP (default true for role hr)")
	allow := fs.String("allow-from", "", "comma-separated CIDRs the user may log in from (narrows the role)")
	issuer := fs.String("issuer", "sftpgw", "issuer shown in the authenticator app")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	if *role == "" || *keyFile == "" {
		fs.Usage()
		return errors.New("user add: --role and --key are required")
	}
	mfaSet := false
	fs.Visit(func(f *flag.Flag) { mfaSet = mfaSet || f.Name == "mfa" })
	if !mfaSet {
		*mfa = *role == "hr"
	} else if !*mfa && *role == "hr" {
		return errors.New("user add: role hr requires MFA; drop --mfa=false")
	}
	keys, err := readKeys(*keyFile)
	if err != nil {
		return err
	}
	o := authn.AddUserOptions{Name: *name, Role: *role, Keys: keys, MFA: *mfa}
	if *allow != "" {
		o.AllowFrom = strings.Split(*allow, ",")
	}
	if *expires != "" {
		if o.ExpiresAt, err = authn.ParseExpiry(*expires, time.Now()); err != nil {
			return err
		}
	}
	var added *authn.User
	err = authn.UpdateUsers(*users, true, func(set *authn.UserSet) error {
		added, err = authn.AddUser(set, o)
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(userStdout, "added user %s (role %s, %d key(s), MFA %s", added.Name, added.Role, len(added.Keys), yesNo(added.TOTPSecret != ""))
	if !added.ExpiresAt.IsZero() {
		fmt.Fprintf(userStdout, ", expires %s", added.ExpiresAt.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(userStdout, ") to %s\n", *users)
	if added.TOTPSecret != "" {
		printEnrollment(*issuer, added.Name, added.TOTPSecret)
	}
	return nil
}

func userList(args []string) error {
	fs, users := newUserFlags("list")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	set, err := authn.LoadUsers(*users)
	if err != nil {
		return err
	}
	now := time.Now()
	tw := tabwriter.NewWriter(userStdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tKEYS\tMFA\tDISABLED\tEXPIRES")
	for _, u := range set.Users() {
		exp := "-"
		if !u.ExpiresAt.IsZero() {
			exp = u.ExpiresAt.UTC().Format(time.RFC3339)
			if u.Expired(now) {
				exp += " (expired)"
			}
		}
		// MFA here means "enrolled"; whether it is required is the role's
		// business. The secret itself is never shown again.
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", u.Name, u.Role, len(u.Keys),
			yesNo(u.TOTPSecret != ""), yesNo(u.Disabled), exp)
	}
	return tw.Flush()
}

func userRemove(args []string) error {
	fs, users := newUserFlags("remove")
	pos, err := parseArgs(fs, args, 1)
	if err != nil {
		return err
	}
	if err := authn.UpdateUsers(*users, false, func(set *authn.UserSet) error {
		return authn.RemoveUser(set, pos[0])
	}); err != nil {
		return err
	}
	fmt.Fprintf(userStdout, "removed user %s from %s (sessions already open are not closed)\n", pos[0], *users)
	return nil
}

func userRotateTOTP(args []string) error {
	fs, users := newUserFlags("rotate-totp")
	issuer := fs.String("issuer", "sftpgw", "issuer shown in the authenticator app")
	pos, err := parseArgs(fs, args, 1)
	if err != nil {
		return err
	}
	var secret string
	if err := authn.UpdateUsers(*users, false, func(set *authn.UserSet) error {
		secret, err = authn.RotateTOTP(set, pos[0])
		return err
	}); err != nil {
		return err
	}
	fmt.Fprintf(userStdout, "new TOTP secret for %s in %s; the old one stops working once the gateway reloads\n", pos[0], *users)
	printEnrollment(*issuer, pos[0], secret)
	return nil
}

func userAddKey(args []string) error {
	fs, users := newUserFlags("add-key")
	keyFile := fs.String("key", "", "public key file (required; - for stdin)")
	pos, err := parseArgs(fs, args, 1)
	if err != nil {
		return err
	}
	if *keyFile == "" {
		fs.Usage()
		return errors.New("user add-key: --key is required")
	}
	keys, err := readKeys(*keyFile)
	if err != nil {
		return err
	}
	var u *authn.User
	if err := authn.UpdateUsers(*users, false, func(set *authn.UserSet) error {
		u, err = authn.AddKeys(set, pos[0], keys)
		return err
	}); err != nil {
		return err
	}
	fmt.Fprintf(userStdout, "user %s now has %d key(s)\n", u.Name, len(u.Keys))
	return nil
}

// readKeys reads public keys from a file, or stdin for "-".
func readKeys(path string) ([]string, error) {
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("reading key: %w", err)
	}
	if strings.Contains(string(data), "PRIVATE KEY") {
		// Nothing private belongs in the users file; say so before parsing.
		return nil, fmt.Errorf("%s is a private key; give the .pub file", path)
	}
	keys, err := authn.ParseKeyFile(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return keys, nil
}

// printEnrollment is the only place a TOTP secret is ever shown: once, on
// stdout, because the operator asked for it.
func printEnrollment(issuer, user, secret string) {
	uri := authn.URI(issuer, user, secret)
	fmt.Fprintf(userStdout, "\nGive this to %s to add to an authenticator app (shown only this once):\n\n%s\n\n%s", user, uri, authn.QR(uri))
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
