package config

import (
	"net"
	"net/netip"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/sftpgw/sftpgw/proxyproto"
)

// MetricsBlock enables the metrics and health HTTP listener.
type MetricsBlock struct {
	Listen   string    `hcl:"listen,optional"` // default 127.0.0.1:9090
	DefRange hcl.Range `hcl:",def_range"`
}

// ProxyProtocolBlock names the load balancers that send a PROXY header.
type ProxyProtocolBlock struct {
	Trusted  []string  `hcl:"trusted"`
	DefRange hcl.Range `hcl:",def_range"`
}

// Metrics is the validated metrics block.
type Metrics struct {
	Listen string
}

// DefaultMetricsListen is loopback: metrics reveal user activity, so
// exposing them is a deliberate choice.
const DefaultMetricsListen = "127.0.0.1:9090"

// DefaultShutdownGrace is how long transfers may run on after SIGTERM.
const DefaultShutdownGrace = 30 * time.Second

// validateOps checks the operations settings: metrics, proxy_protocol and
// shutdown_grace.
func validateOps(c *Config, raw *File, whole hcl.Range) error {
	var err error
	if c.ShutdownGrace, err = duration(raw.ShutdownGrace, DefaultShutdownGrace); err != nil {
		return at(whole, "shutdown_grace: %v (write e.g. \"30s\")", err)
	}
	if c.ResumeWindow, err = duration(raw.ResumeWindow, 0); err != nil || c.ResumeWindow < 0 {
		return at(whole, "resume_window: %q: write how long interrupted uploads are kept for resume, e.g. \"24h\" (\"0s\": off)", raw.ResumeWindow)
	}
	if m := raw.Metrics; m != nil {
		listen := or(m.Listen, DefaultMetricsListen)
		host, port, err := net.SplitHostPort(listen)
		if err != nil || port == "" {
			return at(m.DefRange, "metrics: listen %q is not host:port (e.g. \"127.0.0.1:9090\")", listen)
		}
		if host != "" {
			if _, err := netip.ParseAddr(host); err != nil && host != "localhost" {
				return at(m.DefRange, "metrics: listen %q: host must be an IP address", listen)
			}
		}
		c.Metrics = &Metrics{Listen: listen}
	}
	if p := raw.ProxyProtocol; p != nil {
		if len(p.Trusted) == 0 {
			return at(p.DefRange, "proxy_protocol: trusted must list the load balancers' addresses or CIDRs")
		}
		t, err := proxyproto.ParseTrusted(p.Trusted)
		if err != nil {
			return at(p.DefRange, "proxy_protocol: trusted: %v", err)
		}
		for _, pr := range t {
			if pr.Bits() == 0 {
				// Everyone could then claim any address.
				return at(p.DefRange, "proxy_protocol: trusted %s covers every address; list only the load balancers", pr)
			}
		}
		c.ProxyTrusted = t
	}
	return nil
}
