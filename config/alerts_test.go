package config

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const base = `users_file = "u"
storage "files" {
  type = "s3"
  bucket = "b"
  %s
}
role "r" {
  storage = "files"
  home = ""
  permissions = ["list"]
}
%s`

func TestRetentionStrictAndAlerts(t *testing.T) {
	src := fmt.Sprintf(base, `retention = "24h"`, `strict = true
alert "ops" {
  url = "https://hooks.example.com/x"
  events = ["upload_complete", "lockout"]
  secret_env = "OPS_HOOK_SECRET"
}
alert "all" {
  url = "http://127.0.0.1:9/hook"
  events = ["*"]
  secret_file = "hook.secret"
  timeout = "3s"
  queue = 10
}`)
	c, err := Parse("/etc/sftpgw/cfg.hcl", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Storage["files"].RetentionPeriod(); got != 24*time.Hour {
		t.Errorf("retention %s", got)
	}
	if !c.Strict {
		t.Error("strict not set")
	}
	if len(c.Alerts) != 2 || c.Alerts[0].SecretEnv != "OPS_HOOK_SECRET" || c.Alerts[0].Timeout != 10*time.Second {
		t.Fatalf("alerts %+v", c.Alerts)
	}
	if a := c.Alerts[1]; a.SecretFile != filepath.Join("/etc/sftpgw", "hook.secret") || a.Timeout != 3*time.Second || a.Queue != 10 {
		t.Errorf("alert %+v", a)
	}
	c, err = Parse("cfg.hcl", []byte(fmt.Sprintf(base, `retention = "7d"`, "")))
	if err != nil || c.Storage["files"].RetentionPeriod() != 7*24*time.Hour || c.Strict {
		t.Errorf("7d: %v %+v", err, c)
	}
	c, _ = Parse("cfg.hcl", []byte(fmt.Sprintf(base, "", "")))
	if c.Storage["files"].RetentionPeriod() != 0 {
		t.Error("no retention set, but a period")
	}
}

func TestAlertAndRetentionErrors(t *testing.T) {
	hook := func(body string) string { return fmt.Sprintf(base, "", "alert \"h\" {\n"+body+"\n}") }
	cases := map[string]string{
		fmt.Sprintf(base, `retention = "a day"`, ""): `storage "files": retention`,
		fmt.Sprintf(base, `retention = "-1h"`, ""):   `retention`,
		hook(`url = "ftp://x/y"
events = ["download"]
secret_env = "S"`): `url must be an http(s) URL`,
		hook(`url = "https://user:pw@x/y"
events = ["download"]
secret_env = "S"`): `must not contain credentials`,
		hook(`url = "https://x/y"
events = ["download"]`): `exactly one of secret_env`,
		hook(`url = "https://x/y"
events = ["download"]
secret_env = "S"
secret_file = "f"`): `exactly one of secret_env`,
		hook(`url = "https://x/y"
events = ["uploaded"]
secret_env = "S"`): `unknown event "uploaded"`,
		hook(`url = "https://x/y"
events = []
secret_env = "S"`): `events is empty`,
		hook(`url = "https://x/y"
events = ["denied"]
secret_env = "S"
timeout = "soon"`): `timeout`,
	}
	for src, want := range cases {
		_, err := Parse("cfg.hcl", []byte(src))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("config %q:\n got %v\nwant %q", src, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "pw@") {
			t.Errorf("error echoes URL credentials: %v", err)
		}
	}
}

func TestEmailBlock(t *testing.T) {
	src := fmt.Sprintf(base, `retention = "24h"`, `
alert "ops" {
  url = "https://hooks.example.com/x"
  events = ["lockout"]
  secret_env = "S"
}
email "hr" {
  host = "smtp.example.org"
  username = "sftpgw"
  password_file = "smtp.pw"
  from = "sftpgw@example.org"
  to = ["hr@example.org", "ops@example.org"]
  events = ["upload_complete", "mfa_lock"]
  digest {
    daily_at = "07:45"
    time_zone = "Europe/Berlin"
    hourly = true
    roles = ["r"]
  }
}`)
	c, err := Parse("/etc/sftpgw/cfg.hcl", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Emails) != 1 {
		t.Fatalf("emails %+v", c.Emails)
	}
	e := c.Emails[0]
	if e.PasswordFile != "/etc/sftpgw/smtp.pw" || e.Timeout != 30*time.Second || len(e.To) != 2 || e.Digest == nil ||
		e.Digest.DailyAt != "07:45" || e.Digest.Location.String() != "Europe/Berlin" || !e.Digest.Hourly {
		t.Errorf("email %+v digest %+v", e, e.Digest)
	}
	mail := func(body string) string {
		return fmt.Sprintf(base, "", "alert \"ops\" {\nurl = \"https://x/y\"\nevents = [\"lockout\"]\nsecret_env = \"S\"\n}\nemail \"hr\" {\nfrom = \"a@b\"\nto = [\"c@d\"]\n"+body+"\n}")
	}
	for body, want := range map[string]string{
		`host = "h"
tls = "none"
events = ["*"]`: `allow_plaintext = true`,
		`host = "h"
tls = "ssl"
events = ["*"]`: `tls must be`,
		`host = "h"
username = "u"
events = ["*"]`: `username needs password_env or password_file`,
		`host = "h"
password_env = "P"
events = ["*"]`: `username needs`,
		`host = "h"`: `set events, a digest block, or both`,
		`host = "h"
events = ["uploads"]`: `unknown event "uploads"`,
		`host = "h"
digest {
  daily_at = "8:00"
}`: `daily_at "8:00" must be HH:MM`,
		`host = "h"
digest {
  roles = ["applicant"]
}`: `no role "applicant"`,
	} {
		if _, err := Parse("cfg.hcl", []byte(mail(body))); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s:\n  got %v, want %q", body, err, want)
		}
	}
	dup := strings.Replace(mail(`host = "h"
events = ["*"]`), `email "hr"`, `email "ops"`, 1)
	if _, err := Parse("cfg.hcl", []byte(dup)); err == nil || !strings.Contains(err.Error(), "already used") {
		t.Errorf("duplicate name: %v", err)
	}
	ok := mail(`host = "h"
tls = "none"
allow_plaintext = true
events = ["*"]`)
	if c, err := Parse("cfg.hcl", []byte(ok)); err != nil || c.Emails[0].TLS != "none" {
		t.Errorf("explicit plaintext: %v", err)
	}
}
