package authn

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sftpgw/sftpgw/vfs"
)

func TestUserLimitOverridesRoundTrip(t *testing.T) {
	k := newTestKey(t, "")
	path := writeUsers(t, t.TempDir(), `
user "alice" {
  role          = "applicant"
  keys          = ["`+k.line+`"]
  max_file_size = "100MiB"
  quota_bytes   = 1073741824
  quota_files   = 200
}
`)
	set, err := LoadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := set.Lookup("alice")
	if u.MaxFileSize != 100<<20 || u.QuotaBytes != 1<<30 || u.QuotaFiles != 200 {
		t.Fatalf("overrides %d %d %d", u.MaxFileSize, u.QuotaBytes, u.QuotaFiles)
	}
	if err := SaveUsers(path, set); err != nil {
		t.Fatal(err)
	}
	again, err := LoadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	assertSameUsers(t, set, again)
	// A changed user is rewritten with sizes that read back exactly.
	c := u.clone()
	c.QuotaBytes = 3<<20 + 1
	if err := set.Replace(c); err != nil {
		t.Fatal(err)
	}
	if err := SaveUsers(path, set); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), `max_file_size = "100MiB"`) || !strings.Contains(string(data), `quota_bytes   = "3145729"`) {
		t.Errorf("saved:\n%s", data)
	}
	again, err = LoadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	assertSameUsers(t, set, again)
}

func TestUserLimitOverridesRefused(t *testing.T) {
	k := newTestKey(t, "")
	for _, bad := range []string{`max_file_size = "lots"`, `quota_bytes = "-5MiB"`, `quota_files = -1`, `quota_files = "many"`} {
		dir := t.TempDir()
		path := writeUsers(t, dir, "user \"alice\" {\n  role = \"applicant\"\n  keys = [\""+k.line+"\"]\n  "+bad+"\n}\n")
		_, err := LoadUsers(path)
		if err == nil {
			t.Errorf("%s accepted", bad)
			continue
		}
		if !strings.Contains(err.Error(), filepath.Join(dir, "users.hcl")+":4") {
			t.Errorf("%s: error lacks file:line: %v", bad, err)
		}
	}
}

func TestPrincipalLimits(t *testing.T) {
	role := &Role{Name: "applicant", Storage: "files", Home: "user/{name}/", Perms: vfs.PermAll,
		Limits: vfs.Limits{MaxFileSize: 50 << 20, QuotaBytes: 200 << 20, QuotaFiles: 50, AllowedTypes: []string{"pdf"}}}
	client := netip.MustParseAddrPort("192.0.2.1:5000")
	p, err := buildPrincipal(&User{Name: "u1", Role: "applicant"}, role.clone(), client, "")
	if err != nil {
		t.Fatal(err)
	}
	if p.Limits.MaxFileSize != 50<<20 || p.Limits.QuotaBytes != 200<<20 || p.Limits.QuotaFiles != 50 || p.Limits.AllowedTypes[0] != "pdf" {
		t.Errorf("role limits not carried: %+v", p.Limits)
	}
	p, err = buildPrincipal(&User{Name: "u1", Role: "applicant", MaxFileSize: 1 << 30, QuotaFiles: 5}, role.clone(), client, "")
	if err != nil {
		t.Fatal(err)
	}
	if p.Limits.MaxFileSize != 1<<30 || p.Limits.QuotaBytes != 200<<20 || p.Limits.QuotaFiles != 5 {
		t.Errorf("overrides not applied: %+v", p.Limits)
	}
}
