package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sftpgw/sftpgw/authn"
	"github.com/sftpgw/sftpgw/config"
)

const userUsage = `usage:
  sftpgw user add --config FILE --role ROLE --key FILE [--name NAME] [--expires 14d|2w|36h|RFC3339]
                  [--mfa] [--allow-from CIDR,...] [--issuer NAME]
  sftpgw user list --config FILE
  sftpgw user remove NAME --config FILE
  sftpgw user rotate-totp NAME --config FILE [--issuer NAME]
  sftpgw user add-key NAME --key FILE --config FILE
  sftpgw user invite --config FILE --host HOST [--role applicant] [--expires 14d]
                     [--port N] [--out DIR] [--zip]
                     (a key-only account plus a bundle to hand over; see 'sftpgw user invite -h')

--config FILE is the gateway's configuration: its users_file is the file
changed, and --role must be one of its roles. Without a configuration,
--users FILE names the users file explicitly (roles are then not checked).
--key FILE is an OpenSSH public key file (one or more keys; "-" reads stdin).
MFA (key + TOTP) is the default for role hr and for roles with mfa = true;
--mfa enrols a user of any role, who is then always asked for a code.
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

// usersTarget is the users file a user command changes, and the gateway
// configuration it came from (nil with --users alone).
type usersTarget struct {
	cfgPath, users *string
	file           string
	cfg            *config.Config
}

// newUserFlags returns a flag set with the common --config and --users flags.
func newUserFlags(name string) (*flag.FlagSet, *usersTarget) {
	fs := flag.NewFlagSet("sftpgw user "+name, flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	fs.Usage = func() { fmt.Fprint(os.Stderr, userUsage) }
	return fs, addUsersFlags(fs)
}

func addUsersFlags(fs *flag.FlagSet) *usersTarget {
	return &usersTarget{
		cfgPath: fs.String("config", "", "gateway configuration: its users_file is used and roles are checked"),
		users:   fs.String("users", "", "users file, when there is no --config"),
	}
}

// resolve picks the users file. A users file the gateway does not read is
// useless and, for MFA accounts, a stray copy of TOTP secrets: so the file
// must be named explicitly, and with --config it must be the config's.
func (t *usersTarget) resolve(cmd string) error {
	switch {
	case *t.cfgPath != "":
		cfg, err := config.Load(*t.cfgPath)
		if err != nil {
			return err
		}
		t.cfg, t.file = cfg, cfg.UsersFile
		if *t.users != "" && !samePath(*t.users, cfg.UsersFile) {
			return fmt.Errorf("%s: --users %s is not the users_file of %s (%s), which is the one the gateway reads; drop --users, or drop --config to write %s anyway",
				cmd, *t.users, *t.cfgPath, cfg.UsersFile, *t.users)
		}
	case *t.users != "":
		t.file = *t.users
	default:
		return fmt.Errorf("%s: give --config FILE (the gateway configuration; its users_file is used) or --users FILE", cmd)
	}
	return nil
}

// role checks a role name against the configuration, when there is one,
// and says whether it requires MFA.
func (t *usersTarget) role(cmd, name string) (mfa bool, err error) {
	if t.cfg == nil {
		return name == "hr", nil
	}
	r, ok := t.cfg.Roles[name]
	if !ok {
		return false, fmt.Errorf("%s: role %q is not defined in %s (roles: %s)", cmd, name, *t.cfgPath, strings.Join(roleNames(t.cfg), ", "))
	}
	return name == "hr" || r.MFA, nil
}

func roleNames(cfg *config.Config) []string {
	names := make([]string, 0, len(cfg.Roles))
	for n := range cfg.Roles {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func samePath(a, b string) bool {
	aa, err1 := filepath.Abs(a)
	bb, err2 := filepath.Abs(b)
	return err1 == nil && err2 == nil && aa == bb
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
	if err := users.resolve("user add"); err != nil {
		return err
	}
	needMFA, err := users.role("user add", *role)
	if err != nil {
		return err
	}
	mfaSet := false
	fs.Visit(func(f *flag.Flag) { mfaSet = mfaSet || f.Name == "mfa" })
	if !mfaSet {
		*mfa = needMFA
	} else if !*mfa && needMFA {
		return fmt.Errorf("user add: role %s requires MFA; drop --mfa=false", *role)
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
	err = authn.UpdateUsers(users.file, true, func(set *authn.UserSet) error {
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
	fmt.Fprintf(userStdout, ") to %s\n", users.file)
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
	if err := users.resolve("user list"); err != nil {
		return err
	}
	set, err := authn.LoadUsers(users.file)
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
		// MFA "yes" means enrolled, and an enrolled user is always asked
		// for a code. The secret itself is never shown again.
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
	if err := users.resolve("user remove"); err != nil {
		return err
	}
	if err := authn.UpdateUsers(users.file, false, func(set *authn.UserSet) error {
		return authn.RemoveUser(set, pos[0])
	}); err != nil {
		return err
	}
	fmt.Fprintf(userStdout, "removed user %s from %s (sessions already open are not closed)\n", pos[0], users.file)
	return nil
}

func userRotateTOTP(args []string) error {
	fs, users := newUserFlags("rotate-totp")
	issuer := fs.String("issuer", "sftpgw", "issuer shown in the authenticator app")
	pos, err := parseArgs(fs, args, 1)
	if err != nil {
		return err
	}
	if err := users.resolve("user rotate-totp"); err != nil {
		return err
	}
	var secret string
	if err := authn.UpdateUsers(users.file, false, func(set *authn.UserSet) error {
		secret, err = authn.RotateTOTP(set, pos[0])
		return err
	}); err != nil {
		return err
	}
	fmt.Fprintf(userStdout, "new TOTP secret for %s in %s; the old one stops working once the gateway reloads\n", pos[0], users.file)
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
	if err := users.resolve("user add-key"); err != nil {
		return err
	}
	keys, err := readKeys(*keyFile)
	if err != nil {
		return err
	}
	var u *authn.User
	if err := authn.UpdateUsers(users.file, false, func(set *authn.UserSet) error {
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
