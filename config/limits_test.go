package config

import (
	"strings"
	"testing"
	"time"

	"github.com/sftpgw/sftpgw/gateway"
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

func TestConnLimits(t *testing.T) {
	c, err := Parse("cfg.hcl", []byte(roleCfg("")))
	if err != nil {
		t.Fatal(err)
	}
	l := c.Conn
	if l.KexTimeout != gateway.DefaultKexTimeout || l.Startups != gateway.DefaultStartups ||
		l.MaxUnauthPerSource != 10 || l.MaxSessionsPerUser != 16 || l.MaxSessionsPerSrc != 0 ||
		l.MaxOpenHandles != 16 || l.SessionWriteBuffer != 16<<20 || l.MaxSessionLifetime != 24*time.Hour {
		t.Errorf("defaults %+v", l)
	}
	if c.Roles["applicant"].MaxSessions != 0 {
		t.Errorf("role without max_sessions_per_user: %d, want 0 (the global value)", c.Roles["applicant"].MaxSessions)
	}
	src := `kex_timeout = "5s"
max_startups = "5:50:40"
max_unauthenticated_per_source = 0
max_sessions_per_user = 0
max_sessions_per_source = 20
max_open_handles = 8
session_write_buffer = "8MiB"
max_session_lifetime = "0s"
` + roleCfg("  max_sessions_per_user = 4")
	if c, err = Parse("cfg.hcl", []byte(src)); err != nil {
		t.Fatal(err)
	}
	l = c.Conn
	want := ConnLimits{KexTimeout: 5 * time.Second, Startups: gateway.Startups{Start: 5, Rate: 50, Full: 40},
		MaxUnauthPerSource: -1, MaxSessionsPerUser: -1, MaxSessionsPerSrc: 20, MaxOpenHandles: 8,
		SessionWriteBuffer: 8 << 20}
	if l != want {
		t.Errorf("got %+v\nwant %+v", l, want)
	}
	if n := c.Roles["applicant"].MaxSessions; n != 4 {
		t.Errorf("role max_sessions_per_user %d, want 4", n)
	}
	// The older max_unauthenticated still sets the pool.
	if c, err = Parse("cfg.hcl", []byte("max_unauthenticated = 64\n"+roleCfg(""))); err != nil || c.Conn.Startups != (gateway.Startups{Start: 10, Rate: 30, Full: 64}) {
		t.Errorf("max_unauthenticated = 64: %+v %v", c, err)
	}
	for _, bad := range []string{`max_startups = "50:30:10"`, `kex_timeout = "0s"`, `max_sessions_per_user = -1`,
		`session_write_buffer = "1KiB"`, `max_open_handles = -2`, `max_session_lifetime = "soon"`} {
		if _, err := Parse("cfg.hcl", []byte(bad+"\n"+roleCfg(""))); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
