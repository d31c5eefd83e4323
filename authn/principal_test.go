package authn

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/sftpgw/sftpgw/vfs"
)

func TestHomeFor(t *testing.T) {
	cases := []struct{ tmpl, want string }{
		{"user/{name}/", "user/u12fx/"},
		{"user/{name}", "user/u12fx/"},
		{"/partner/{name}/", "partner/u12fx/"},
		{"user/", "user/"},
		{"", ""},
		{"/", ""},
	}
	for _, c := range cases {
		got, err := (&Role{Name: "r", Home: c.tmpl}).HomeFor("u12fx")
		if err != nil || got != c.want {
			t.Errorf("%q: %q, %v; want %q", c.tmpl, got, err, c.want)
		}
	}
	for _, bad := range []string{"user/../{name}", "user//{name}", "user/{user}/", "./x", `a\b`} {
		if got, err := (&Role{Name: "r", Home: bad}).HomeFor("u12fx"); err == nil {
			t.Errorf("%q accepted as %q", bad, got)
		}
	}
}

func TestDownloadFromReduction(t *testing.T) {
	hr := &Role{Name: "hr", Storage: "data", Home: "user/", Perms: vfs.PermAll,
		DownloadFrom: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}}
	u := &User{Name: "u12fx", Role: "hr"}
	cases := []struct {
		client   string
		download bool
	}{
		{"10.1.2.3:50000", true},
		{"[2001:db8::5]:22", true},
		{"192.0.2.1:50000", false},
		{"[2001:db9::5]:22", false},
	}
	for _, c := range cases {
		p, err := buildPrincipal(u, hr.clone(), netip.MustParseAddrPort(c.client), "SHA256:x")
		if err != nil {
			t.Fatal(err)
		}
		if p.Perms.Has(vfs.OpDownload) != c.download {
			t.Errorf("%s: download=%v, want %v", c.client, p.Perms.Has(vfs.OpDownload), c.download)
		}
		if want := vfs.PermAll.Without(vfs.OpDownload); p.Perms|vfs.PermSet(vfs.OpDownload) != vfs.PermAll || (!c.download && p.Perms != want) {
			t.Errorf("%s: other permissions changed: %v", c.client, p.Perms.Names())
		}
		if c.download != (p.DownloadDenied == "") {
			t.Errorf("%s: DownloadDenied = %q", c.client, p.DownloadDenied)
		}
		if !c.download && !strings.Contains(p.DownloadDenied, "download_from") {
			t.Errorf("reason unclear: %q", p.DownloadDenied)
		}
		if p.Home != "user/" || p.Storage != "data" || p.User != "u12fx" || p.Role != "hr" {
			t.Errorf("principal %+v", p)
		}
	}
	// No DownloadFrom: download from anywhere; a role without download
	// has nothing to remove and no reason to give.
	open := &Role{Name: "auditor", Perms: vfs.PermSet(vfs.OpList | vfs.OpDownload)}
	p, _ := buildPrincipal(u, open, netip.MustParseAddrPort("192.0.2.1:1"), "")
	if !p.Perms.Has(vfs.OpDownload) || p.DownloadDenied != "" {
		t.Errorf("unrestricted role reduced: %+v", p)
	}
	noDL := &Role{Name: "applicant", Perms: vfs.PermSet(vfs.OpList | vfs.OpUpload),
		DownloadFrom: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	p, _ = buildPrincipal(u, noDL, netip.MustParseAddrPort("192.0.2.1:1"), "")
	if p.DownloadDenied != "" {
		t.Errorf("reason given for a permission the role never had: %q", p.DownloadDenied)
	}
}

func TestPrefixes(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.0/8":          "10.0.0.0/8",
		"192.0.2.7":           "192.0.2.7/32",
		"2001:db8::1":         "2001:db8::1/128",
		"::ffff:10.0.0.0/104": "10.0.0.0/8",
		"::ffff:192.0.2.7":    "192.0.2.7/32",
		"::ffff:0.0.0.0/96":   "0.0.0.0/0", // the whole 4-in-6 range is all of IPv4
	} {
		p, err := ParsePrefix(in)
		if err != nil || p.String() != want {
			t.Errorf("%s: %v %v, want %s", in, p, err, want)
		}
	}
	for _, bad := range []string{"", "10.0.0.0/40", "example.com", "10.1.0.0/8", "fe80::1%eth0"} {
		if _, err := ParsePrefix(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	// A 4-in-6 client (dual-stack listener) matches IPv4 prefixes.
	if !inPrefixes([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, netip.MustParseAddr("::ffff:10.9.9.9")) {
		t.Error("4-in-6 client did not match")
	}
}
