package config

import (
	"strings"
	"testing"
)

func roleCfg(extra string) string {
	return `users_file = "u"
storage "s" {
  type = "local"
  root = "d"
}
role "applicant" {
  storage     = "s"
  home        = "user/{name}/"
  permissions = ["upload"]
` + extra + `
}
`
}

func TestRoleLimits(t *testing.T) {
	c, err := Parse("cfg.hcl", []byte(roleCfg(`  max_file_size = "50MiB"
  quota_bytes   = "200MiB"
  quota_files   = 50
  allowed_types = ["pdf", "JPEG", "png", "docx", "odt", "txt"]`)))
	if err != nil {
		t.Fatal(err)
	}
	l := c.Roles["applicant"].Limits
	if l.MaxFileSize != 50<<20 || l.QuotaBytes != 200<<20 || l.QuotaFiles != 50 ||
		strings.Join(l.AllowedTypes, ",") != "pdf,jpeg,png,docx,odt,txt" {
		t.Errorf("limits %+v", l)
	}
	c, err = Parse("cfg.hcl", []byte(roleCfg("")))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Roles["applicant"].Limits.IsZero() {
		t.Errorf("limits without settings: %+v", c.Roles["applicant"].Limits)
	}
	for extra, want := range map[string]string{
		`max_file_size = "big"`:   `cfg.hcl:6: role "applicant": max_file_size: "big" is not a size`,
		`quota_bytes = "1.5GiB"`:  `quota_bytes: "1.5GiB" is not a size`,
		`quota_files = -3`:        `quota_files: -3 is negative`,
		`allowed_types = ["exe"]`: `allowed_types: unknown file type "exe" (known: pdf, jpeg, png, docx, xlsx, odt, txt)`,
	} {
		_, err := Parse("cfg.hcl", []byte(roleCfg(extra)))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", extra, err, want)
		}
	}
}

func TestExampleApplicantLimits(t *testing.T) {
	c, err := Load("../configs/sftpgw.example.hcl")
	if err != nil {
		t.Fatal(err)
	}
	l := c.Roles["applicant"].Limits
	if l.MaxFileSize == 0 || l.QuotaBytes == 0 || l.QuotaFiles == 0 || len(l.AllowedTypes) == 0 {
		t.Errorf("example applicant role ships without limits: %+v", l)
	}
	if !c.Roles["partner"].Limits.IsZero() {
		t.Errorf("partner limited: %+v", c.Roles["partner"].Limits)
	}
}
