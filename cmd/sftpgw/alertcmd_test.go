package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sftpgw/sftpgw/internal/smtptest"
)

// `sftpgw alert test` sends through a real SMTP server (STARTTLS, AUTH,
// the password from a 0600 file), reports a sink that fails, and never
// prints the password.
func TestAlertTestCommand(t *testing.T) {
	const pw = "alert-cmd-Pa55word"
	srv := smtptest.Start(t, smtptest.StartTLS, "gw", pw)
	dir := t.TempDir()
	// The test server's certificate, as an operator would give ca_file.
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, srv.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "smtp.pw"), []byte(pw+"\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "wrong.pw"), []byte("not-"+pw+"\n"), 0o600)
	cfg := fmt.Sprintf(`users_file = "users.hcl"
storage "files" {
  type = "local"
  root = %q
}
role "applicant" {
  storage = "files"
  home = "applicant/{name}/"
  permissions = ["list", "upload"]
}
email "hr" {
  host = "localhost"
  port = %d
  ca_file = "ca.pem"
  username = "gw"
  password_file = "smtp.pw"
  from = "sftpgw@example.org"
  to = ["hr@example.org"]
  digest {}
}
email "wrong" {
  host = "localhost"
  port = %d
  ca_file = "ca.pem"
  username = "gw"
  password_file = "wrong.pw"
  from = "sftpgw@example.org"
  to = ["hr@example.org"]
  events = ["*"]
}
`, filepath.Join(dir, "data"), srv.Port, srv.Port)
	p := filepath.Join(dir, "sftpgw.hcl")
	os.WriteFile(p, []byte(cfg), 0o600)
	var out bytes.Buffer
	err := runAlert([]string{"test", "--config", p, "--timeout", "10s"}, &out)
	t.Logf("sftpgw alert test:\n%s", out.String())
	if err == nil || !strings.Contains(err.Error(), "1 alert sink(s) failed") {
		t.Errorf("err %v", err)
	}
	if !strings.Contains(out.String(), `ok   email "hr"`) || !strings.Contains(out.String(), `FAIL email "wrong"`) ||
		!strings.Contains(out.String(), "535") {
		t.Errorf("output:\n%s", out.String())
	}
	if strings.Contains(out.String(), pw) {
		t.Error("output holds the password")
	}
	m := srv.Wait(t, 1, 0)
	if len(m) != 1 || !m[0].TLS || !m[0].Auth || !strings.Contains(m[0].Data, "alert_test") {
		t.Errorf("messages %+v", m)
	}
}
