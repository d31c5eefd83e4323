package config

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

const opsBase = `users_file = "u"
storage "s" {
  type = "local"
  root = "d"
}
role "r" {
  storage = "s"
  home = "x/"
  permissions = ["list"]
}
`

func TestOpsBlocks(t *testing.T) {
	c, err := Parse("/etc/sftpgw/cfg.hcl", []byte(opsBase))
	if err != nil {
		t.Fatal(err)
	}
	if c.Metrics != nil || c.ProxyTrusted != nil || c.ShutdownGrace != DefaultShutdownGrace {
		t.Errorf("defaults: metrics %v, trusted %v, grace %v", c.Metrics, c.ProxyTrusted, c.ShutdownGrace)
	}

	c, err = Parse("/etc/sftpgw/cfg.hcl", []byte(opsBase+`
shutdown_grace = "2m"
metrics {}
proxy_protocol {
  trusted = ["10.0.0.0/8", "192.0.2.7", "2001:db8::/64"]
}
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Metrics == nil || c.Metrics.Listen != "127.0.0.1:9090" {
		t.Errorf("metrics {} should listen on loopback 9090: %+v", c.Metrics)
	}
	if c.ShutdownGrace != 2*time.Minute {
		t.Errorf("grace %v", c.ShutdownGrace)
	}
	for addr, want := range map[string]bool{"10.9.8.7:1": true, "192.0.2.7:1": true, "192.0.2.8:1": false, "[2001:db8::9]:1": true} {
		if got := c.ProxyTrusted.Contains(net.TCPAddrFromAddrPort(netip.MustParseAddrPort(addr))); got != want {
			t.Errorf("trusted(%s) = %v", addr, got)
		}
	}

	c, err = Parse("/etc/sftpgw/cfg.hcl", []byte(opsBase+`metrics { listen = "0.0.0.0:9100" }`))
	if err != nil || c.Metrics.Listen != "0.0.0.0:9100" {
		t.Errorf("explicit listen: %+v %v", c.Metrics, err)
	}
}

func TestOpsErrors(t *testing.T) {
	cases := map[string]string{
		`metrics { listen = "9090" }`:                     `cfg.hcl:11: metrics: listen "9090" is not host:port`,
		`metrics { listen = "metrics.example.com:9090" }`: `host must be an IP address`,
		`proxy_protocol { trusted = [] }`:                 `cfg.hcl:11: proxy_protocol: trusted must list`,
		`proxy_protocol { trusted = ["10.0.0.0/33"] }`:    `proxy_protocol: trusted: "10.0.0.0/33" is not a CIDR`,
		`proxy_protocol { trusted = ["0.0.0.0/0"] }`:      `covers every address`,
		`proxy_protocol { }`:                              `Missing required argument`,
		`shutdown_grace = "soon"`:                         `shutdown_grace: "soon" is not a duration`,
		"metrics {\n  listen = \"127.0.0.1:9090\"\n}":     ``,
	}
	for src, want := range cases {
		_, err := Parse("/etc/sftpgw/cfg.hcl", []byte(opsBase+src))
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: %v", src, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%s: error %v, want it to contain %q", src, err, want)
		}
	}
}

func TestResumeWindow(t *testing.T) {
	c, err := Parse("/etc/sftpgw/cfg.hcl", []byte(opsBase))
	if err != nil || c.ResumeWindow != 0 {
		t.Fatalf("default resume_window: %v %v, want 0 (off)", c.ResumeWindow, err)
	}
	c, err = Parse("/etc/sftpgw/cfg.hcl", []byte(opsBase+"resume_window = \"24h\"\n"))
	if err != nil || c.ResumeWindow != 24*time.Hour {
		t.Fatalf("resume_window 24h: %v %v", c.ResumeWindow, err)
	}
	for _, bad := range []string{"-1h", "soon"} {
		if _, err := Parse("/etc/sftpgw/cfg.hcl", []byte(opsBase+"resume_window = \""+bad+"\"\n")); err == nil || !strings.Contains(err.Error(), "resume_window") {
			t.Errorf("resume_window %q: %v, want an error naming it", bad, err)
		}
	}
}
