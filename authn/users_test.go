package authn

import (
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const testSecret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP" // 160 bits

func TestLoadUsersRefusesGroupOrWorldAccess(t *testing.T) {
	k := newTestKey(t, "")
	p := writeUsers(t, t.TempDir(), `user "alice" {
  role = "applicant"
  keys = ["`+k.line+`"]
}
`)
	for _, mode := range []os.FileMode{0o640, 0o604, 0o660, 0o620, 0o644} {
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		_, err := LoadUsers(p)
		if err == nil {
			t.Fatalf("mode %04o accepted", mode)
		}
		if !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("mode %04o: error should name the file and chmod 600: %v", mode, err)
		}
	}
	for _, mode := range []os.FileMode{0o600, 0o400} {
		os.Chmod(p, mode)
		if _, err := LoadUsers(p); err != nil {
			t.Errorf("mode %04o refused: %v", mode, err)
		}
	}
}

func TestLoadUsersErrorsCarryFileAndLine(t *testing.T) {
	k := newTestKey(t, "")
	cases := []struct {
		name, body, want string
		line             int
	}{
		{"syntax", "user \"alice\" {\n  role = \n}\n", "", 2},
		{"unknown attribute", "user \"alice\" {\n  role = \"applicant\"\n  colour = \"red\"\n}\n", "colour", 3},
		{"missing role", "user \"alice\" {\n  keys = []\n}\n", "role", 1},
		{"bad name", "\nuser \"Alice\" {\n  role = \"applicant\"\n}\n", "invalid name", 2},
		{"short name", "user \"a\" {\n  role = \"applicant\"\n}\n", "invalid name", 1},
		{"bad key", "user \"alice\" {\n  role = \"applicant\"\n\n  keys = [\"ssh-ed25519 AAAAnotakey\"]\n}\n", "keys[0]", 4},
		{"key options", "user \"alice\" {\n  role = \"applicant\"\n  keys = [\"from=\\\"1.2.3.4\\\" " + k.line + "\"]\n}\n", "options", 3},
		{"bad cidr", "user \"alice\" {\n  role = \"applicant\"\n  allow_from = [\"10.0.0.0/33\"]\n}\n", "10.0.0.0/33", 3},
		{"host bits", "user \"alice\" {\n  role = \"applicant\"\n  allow_from = [\"10.1.2.3/8\"]\n}\n", "host bits", 3},
		{"bad secret", "user \"alice\" {\n  role = \"hr\"\n  totp_secret = \"not base32!\"\n}\n", "base32", 3},
		{"short secret", "user \"alice\" {\n  role = \"hr\"\n  totp_secret = \"JBSWY3DP\"\n}\n", "too short", 3},
		{"bad expiry", "user \"alice\" {\n  role = \"hr\"\n  expires_at = \"tomorrow\"\n}\n", "RFC 3339", 3},
		{"wrong type", "user \"alice\" {\n  role = \"hr\"\n  disabled = \"maybe\"\n}\n", "disabled", 3},
		{"variable", "user \"alice\" {\n  role = var.x\n}\n", "", 2},
		{"duplicate user", "user \"alice\" {\n  role = \"a1\"\n}\nuser \"alice\" {\n  role = \"a1\"\n}\n", "duplicate user", 4},
		{"duplicate key across users", "user \"alice\" {\n  role = \"a1\"\n  keys = [\"" + k.line + "\"]\n}\nuser \"bob\" {\n  role = \"a1\"\n  keys = [\"" + k.line + " other\"]\n}\n", "already a key of user \"alice\"", 5},
		{"duplicate key in user", "user \"alice\" {\n  role = \"a1\"\n  keys = [\"" + k.line + "\", \"" + k.line + "\"]\n}\n", "listed twice", 1},
		{"top level attribute", "role = \"x\"\n", "", 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeUsers(t, t.TempDir(), c.body)
			_, err := LoadUsers(p)
			if err == nil {
				t.Fatal("accepted")
			}
			wantPos := p + ":" + strconv.Itoa(c.line)
			if !strings.Contains(err.Error(), wantPos+":") && !strings.Contains(err.Error(), wantPos+",") {
				t.Errorf("error lacks %s: %v", wantPos, err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error lacks %q: %v", c.want, err)
			}
			if strings.Contains(err.Error(), "not base32!") {
				t.Errorf("error leaks the secret value: %v", err)
			}
		})
	}
}

func TestLoadUsersFull(t *testing.T) {
	k1, k2 := newTestKey(t, "alice@laptop"), newTestKey(t, "")
	p := writeUsers(t, t.TempDir(), `# comment
user "u12fx" {
  role        = "hr"
  keys        = ["`+k1.line+`", "`+k2.line+`"]
  totp_secret = "jbswy3dpehpk3pxpjbswy3dpehpk3pxp"
  allow_from  = ["203.0.113.0/24", "2001:db8::/32", "192.0.2.7"]
  disabled    = true
  expires_at  = "2026-12-31T00:00:00Z"
}
`)
	set, err := LoadUsers(p)
	if err != nil {
		t.Fatal(err)
	}
	u, ok := set.Lookup("u12fx")
	if !ok {
		t.Fatal("user missing")
	}
	if u.Role != "hr" || len(u.Keys) != 2 || u.Keys[0].Comment != "alice@laptop" || !u.Disabled {
		t.Errorf("decoded wrongly: %+v", u)
	}
	if u.TOTPSecret != testSecret {
		t.Errorf("secret not canonicalised")
	}
	want := []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("192.0.2.7/32")}
	if len(u.AllowFrom) != 3 || u.AllowFrom[0] != want[0] || u.AllowFrom[1] != want[1] || u.AllowFrom[2] != want[2] {
		t.Errorf("allow_from = %v", u.AllowFrom)
	}
	if !u.ExpiresAt.Equal(time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("expires_at = %v", u.ExpiresAt)
	}
	if s := u.String() + u.GoString(); strings.Contains(s, testSecret) {
		t.Errorf("String leaks the secret")
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users.hcl")
	set := NewUserSet()
	const trickyComment = `we"ird \ ${var} %{if} $$ comment`
	tricky := newTestKey(t, trickyComment)
	users := []*User{
		{Name: "alice", Role: "applicant", Keys: []Key{mustKey(t, newTestKey(t, "a").line)}},
		{Name: "bob", Role: "hr", Keys: []Key{mustKey(t, tricky.line), mustKey(t, newTestKey(t, "").line)},
			TOTPSecret: testSecret, AllowFrom: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
			Disabled: true, ExpiresAt: time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)},
		{Name: "carol", Role: "partner"}, // no keys at all
	}
	for _, u := range users {
		if err := set.Add(u); err != nil {
			t.Fatal(err)
		}
	}
	if err := SaveUsers(path, set); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("saved with mode %04o", fi.Mode().Perm())
	}
	got, err := LoadUsers(path)
	if err != nil {
		data, _ := os.ReadFile(path)
		t.Fatalf("%v\n%s", err, data)
	}
	assertSameUsers(t, set, got)
	if u, _ := got.Lookup("bob"); u.Keys[0].Comment != trickyComment {
		t.Errorf("comment = %q", u.Keys[0].Comment)
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, ".users.hcl.tmp-*"))
	if len(leftovers) != 0 {
		t.Errorf("temp files left: %v", leftovers)
	}
}

func TestSaveEditsInPlace(t *testing.T) {
	ka, kb, kc := newTestKey(t, "a"), newTestKey(t, "b"), newTestKey(t, "c")
	orig := `# Operators: keep this file sorted by team.

# Alice is on the applicant desk.
user "alice" {
  role = "applicant"   # trailing comment
  keys = ["` + ka.line + `"]
}

# Bob leaves in March.
user "bob" {
  role = "applicant"
  keys = ["` + kb.line + `"]
}

# end of file
`
	path := writeUsers(t, t.TempDir(), orig)
	set, err := LoadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	RemoveUser(set, "bob")
	if _, err := AddUser(set, AddUserOptions{Name: "carol", Role: "partner", Keys: []string{kc.line}}); err != nil {
		t.Fatal(err)
	}
	if err := SaveUsers(path, set); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	s := string(data)
	for _, want := range []string{"# Operators: keep this file sorted by team.", "# Alice is on the applicant desk.", "# trailing comment", "# end of file", `user "carol"`} {
		if !strings.Contains(s, want) {
			t.Errorf("lost %q:\n%s", want, s)
		}
	}
	for _, gone := range []string{"Bob leaves", `user "bob"`} {
		if strings.Contains(s, gone) {
			t.Errorf("still has %q:\n%s", gone, s)
		}
	}
	got, err := LoadUsers(path)
	if err != nil {
		t.Fatalf("%v\n%s", err, s)
	}
	assertSameUsers(t, set, got)

	// A changed user is rewritten, the others stay byte for byte.
	a, _ := got.Lookup("alice")
	c := a.clone()
	c.Disabled = true
	if err := got.Replace(c); err != nil {
		t.Fatal(err)
	}
	if err := SaveUsers(path, got); err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(path)
	again, err := LoadUsers(path)
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	assertSameUsers(t, got, again)
	if !strings.Contains(string(data), "# Alice is on the applicant desk.") {
		t.Errorf("lead comment of changed user lost:\n%s", data)
	}
}

func TestSaveReplacesInvalidFileWholesale(t *testing.T) {
	path := writeUsers(t, t.TempDir(), "this is { not hcl")
	set := NewUserSet()
	if err := set.Add(&User{Name: "alice", Role: "applicant"}); err != nil {
		t.Fatal(err)
	}
	if err := SaveUsers(path, set); err != nil {
		t.Fatal(err)
	}
	got, err := LoadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	assertSameUsers(t, set, got)
}

func mustKey(t testing.TB, line string) Key {
	t.Helper()
	k, err := ParseKey(line)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func assertSameUsers(t *testing.T, want, got *UserSet) {
	t.Helper()
	if want.Len() != got.Len() {
		t.Fatalf("got %d users, want %d", got.Len(), want.Len())
	}
	for _, w := range want.Users() {
		g, ok := got.Lookup(w.Name)
		if !ok {
			t.Fatalf("user %s missing", w.Name)
		}
		if formatUser(w) != formatUser(g) {
			t.Errorf("user %s differs:\nwant %s\ngot  %s", w.Name, formatUser(w), formatUser(g))
		}
	}
}

func TestParseKeyRefusals(t *testing.T) {
	for _, line := range []string{
		"",
		"ssh-ed25519",
		"not a key at all",
	} {
		if _, err := ParseKey(line); err == nil {
			t.Errorf("%q accepted", line)
		}
	}
	k := newTestKey(t, "c")
	if _, err := ParseKey(k.line + "\n" + k.line); err == nil {
		t.Error("two keys in one string accepted")
	}
	if _, err := ParseKey(`command="ls" ` + k.line); err == nil {
		t.Error("options accepted")
	}
}

func TestGenerateName(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		n := GenerateName(func(s string) bool { return seen[s] })
		if err := ValidateName(n); err != nil || len(n) != 5 || n[0] != 'u' {
			t.Fatalf("bad name %q (%v)", n, err)
		}
		if seen[n] {
			t.Fatalf("duplicate %q", n)
		}
		seen[n] = true
	}
	// Everything of length 5 taken: the generator must lengthen the name.
	n := GenerateName(func(s string) bool { return len(s) == 5 })
	if len(n) != 6 || ValidateName(n) != nil {
		t.Errorf("did not lengthen: %q", n)
	}
}
