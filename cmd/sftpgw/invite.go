package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sftpgw/sftpgw/authn"
	"github.com/sftpgw/sftpgw/onboard"
)

const inviteUsage = `usage:
  sftpgw user invite --host HOST [--role applicant] [--expires 14d|never|...]
                     (--config FILE | --host-key FILE[,FILE] --users FILE)
                     [--port N] [--out DIR] [--zip] [--keyfile-path PATH]

Creates a pseudonymous key-only account and writes the bundle to hand over:
key (OpenSSH), key.ppk (PuTTY/FileZilla), filezilla-site.xml, known_hosts
and README.txt. Only the public key is stored in the users file; the private
key exists only in the bundle (--out, default ./invite-NAME; --zip also
writes NAME.zip beside it). With --config the users file, host keys, port
and the role's upload limits come from the gateway configuration.
`

// runInvite implements "sftpgw user invite".
func runInvite(args []string) error {
	fs := flag.NewFlagSet("sftpgw user invite", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	fs.Usage = func() { fmt.Fprint(os.Stderr, inviteUsage) }
	ut := addUsersFlags(fs) // --config (users file, host keys, port, role limits) or --users
	role := fs.String("role", "applicant", "role of the new account")
	expires := fs.String("expires", "14d", `account lifetime (14d, 2w, 36h), expiry time (RFC 3339) or "never"`)
	host := fs.String("host", "", "host name applicants connect to (required)")
	port := fs.Int("port", 0, "port applicants connect to (default: from --config, else 22)")
	hostKeys := fs.String("host-key", "", "gateway host key file(s), comma-separated (private key or .pub)")
	out := fs.String("out", "", "bundle directory (default ./invite-NAME); must not exist")
	zipToo := fs.Bool("zip", false, "also write the bundle as DIR.zip")
	keyfile := fs.String("keyfile-path", "", "key file path in the FileZilla site (default key.ppk, picked after import)")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	if *host == "" {
		fs.Usage()
		return errors.New("user invite: --host is required (the name applicants connect to)")
	}
	if err := ut.resolve("user invite"); err != nil {
		return err
	}
	opt := onboard.InviteOptions{Role: *role, UsersFile: ut.file,
		Bundle: onboard.Options{Host: *host, Port: *port, KeyfilePath: *keyfile}}
	var err error
	if *expires != "never" {
		if opt.ExpiresAt, err = authn.ParseExpiry(*expires, time.Now()); err != nil {
			return err
		}
	}
	keyPaths := splitList(*hostKeys)
	mfa := *role == "hr" // as in "user add": hr always needs TOTP
	if cfg := ut.cfg; cfg != nil {
		r, ok := cfg.Roles[*role]
		if !ok {
			return fmt.Errorf("user invite: role %q is not defined in %s", *role, *ut.cfgPath)
		}
		mfa = mfa || r.MFA
		opt.Bundle.Limits = r.Limits
		if len(keyPaths) == 0 {
			keyPaths = cfg.HostKeys
		}
		if opt.Bundle.Port == 0 {
			if _, p, err := net.SplitHostPort(cfg.Listen); err == nil {
				opt.Bundle.Port, _ = strconv.Atoi(p)
			}
		}
	}
	if mfa {
		return fmt.Errorf("user invite: role %s requires TOTP, which an invitation bundle cannot carry; use 'sftpgw user add --mfa'", *role)
	}
	if len(keyPaths) == 0 {
		fs.Usage()
		return errors.New("user invite: give --host-key or --config: the bundle must let the applicant check the server's identity")
	}
	if opt.Bundle.HostKeys, err = onboard.ReadHostKeys(keyPaths...); err != nil {
		return err
	}
	if *out != "" {
		for _, p := range []string{*out, zipPathFor(*out)} {
			if _, err := os.Lstat(p); err == nil && (p == *out || *zipToo) {
				return fmt.Errorf("user invite: %s already exists; choose another --out", p)
			}
		}
	}

	u, files, err := onboard.Invite(opt)
	if err != nil {
		return err
	}
	dir := *out
	if dir == "" {
		dir = "invite-" + u.Name
	}
	written := []string{dir}
	err = onboard.WriteDir(dir, files) // removes what it wrote if it fails
	if err == nil && *zipToo {
		zipPath := zipPathFor(dir)
		if err = writeZipFile(zipPath, filepath.Base(filepath.Clean(dir)), files); err != nil {
			os.RemoveAll(dir) // ours: WriteDir created it
		}
		written = append(written, zipPath)
	}
	if err != nil {
		// No bundle, no account: an account nobody holds the key of is useless.
		return errors.Join(fmt.Errorf("user invite: writing the bundle: %w", err), onboard.Revoke(opt.UsersFile, u.Name))
	}
	exp := "never"
	if !u.ExpiresAt.IsZero() {
		exp = u.ExpiresAt.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(userStdout, "invited user %s (role %s, expires %s) in %s\n", u.Name, u.Role, exp, opt.UsersFile)
	fmt.Fprintf(userStdout, "bundle: %s\n", strings.Join(written, ", "))
	for _, k := range opt.Bundle.HostKeys {
		fmt.Fprintf(userStdout, "host key: %s %s\n", k.Type(), ssh.FingerprintSHA256(k))
	}
	fmt.Fprintf(userStdout, "The private key exists only in this bundle: hand it to the applicant over a\n"+
		"secure channel, then delete your copy. A running gateway picks up the user within seconds.\n")
	return nil
}

func writeZipFile(path, root string, files []onboard.File) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := onboard.WriteZip(f, root, files); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

func zipPathFor(dir string) string { return filepath.Clean(dir) + ".zip" }

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
