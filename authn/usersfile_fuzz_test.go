package authn

import (
	"bytes"
	"crypto/ed25519"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// fuzzKeyLine is a fixed (seeded) key, so the corpus is reproducible.
func fuzzKeyLine(seed byte, comment string) string {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
	pk, _ := ssh.NewPublicKey(priv.Public())
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pk)))
	if comment != "" {
		line += " " + comment
	}
	return line
}

// FuzzParseUsers feeds arbitrary users files to the parser. Whatever it
// accepts must survive both ways the gateway writes the file back (fresh,
// and edited in place keeping comments) and parse to the same users: a
// "sftpgw user ..." edit must never produce a file the gateway then
// refuses, or silently change an account. A TOTP seed that was accepted
// must not appear in any error text.
func FuzzParseUsers(f *testing.F) {
	k1, k2 := fuzzKeyLine(1, "alice@laptop"), fuzzKeyLine(2, `odd "${x}" %{y} \ comment`)
	f.Add([]byte(`user "alice" {
  role = "partner"
  keys = ["` + k1 + `"]
}
`))
	f.Add([]byte(`# staff
user "bob" {
  # lead comment
  role        = "hr"
  keys        = [
    "` + k1 + `",
  ]
  totp_secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
  allow_from  = ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]
  disabled    = true
  expires_at  = "2030-01-02T03:04:05Z"
}

user "carol" { role = "applicant" }
`))
	f.Add([]byte(`user "dave" {
  role = "auditor"
  keys = [` + hclQuote(k2) + `]
}
user "dave" { role = "auditor" }
`))
	f.Add([]byte("user \"x\" {\n role = 1\n keys = [\"ssh-ed25519 AAAA\"]\n totp_secret = \"short\"\n}\n"))
	f.Add([]byte("user \"eve\" { role = \"partner\" expires_at = \"tomorrow\" }"))
	f.Add([]byte("user \"fred\" {\n  role = \"partner\"\n  keys = [\"" + k1 + "\", \"" + k1 + "\"]\n}\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return
		}
		set, err := parseUsers("users.hcl", data)
		if err != nil {
			return
		}
		for _, u := range set.Users() {
			if u.TOTPSecret != "" && strings.Contains(u.String()+u.GoString(), u.TOTPSecret) {
				t.Fatalf("user %s formats its TOTP seed", u.Name)
			}
		}
		want := canonicalUsers(set)
		for _, mode := range []struct {
			name string
			old  []byte
		}{{"fresh", nil}, {"in place", data}} {
			out := renderUsers("users.hcl", mode.old, set)
			again, err := parseUsers("users.hcl", out)
			if err != nil {
				t.Fatalf("%s rewrite of an accepted file does not parse: %v\ninput:\n%s\noutput:\n%s", mode.name, err, data, out)
			}
			if got := canonicalUsers(again); got != want {
				t.Fatalf("%s rewrite changed the users:\nbefore:\n%s\nafter:\n%s\noutput file:\n%s", mode.name, want, got, out)
			}
		}
	})
}

// canonicalUsers renders a set in one normal form for comparison.
func canonicalUsers(set *UserSet) string {
	var b strings.Builder
	for _, u := range set.Users() {
		b.WriteString(formatUser(u))
	}
	return b.String()
}
