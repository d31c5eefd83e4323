package main

import (
	"context"
	"fmt"
	"os"
	"path"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sftpgw/sftpgw/alerts"
	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/config"
	"github.com/sftpgw/sftpgw/metrics"
	"github.com/sftpgw/sftpgw/retention"
	"github.com/sftpgw/sftpgw/vfs"
)

// withAlerts adds the configured webhooks and email sinks to rec. The
// returned stop delivers what is still queued for a few seconds at shutdown.
func withAlerts(cfg *config.Config, rec audit.Recorder, met *metrics.Metrics, log hclog.Logger) (audit.Recorder, func(), error) {
	s, err := newAlertSender(cfg, log)
	if err != nil {
		return nil, nil, err
	}
	if s == nil {
		return rec, func() {}, nil
	}
	if met != nil {
		met.ObserveAlerts(func() []metrics.AlertSink {
			var out []metrics.AlertSink
			for _, st := range s.AllStats() {
				out = append(out, metrics.AlertSink{Name: st.Name, Kind: st.Kind, Delivered: st.Delivered,
					Failed: st.Failed, Dropped: st.Dropped, Queued: st.Queued})
			}
			return out
		})
	}
	for _, a := range cfg.Alerts {
		log.Info("alert webhook", "name", a.Name, "events", fmt.Sprint(a.Events))
	}
	for _, e := range cfg.Emails {
		tlsMode := e.TLS
		if tlsMode == "" {
			tlsMode = alerts.TLSStartTLS
		}
		if tlsMode == alerts.TLSNone {
			log.Warn("alert email without TLS (allow_plaintext): the password and applicant names cross the network in clear", "name", e.Name, "host", e.Host)
		}
		digest := "off"
		if d := e.Digest; d != nil {
			digest = "daily at " + d.DailyAt + " " + d.Location.String()
			if d.Hourly {
				digest += ", and hourly"
			}
		}
		log.Info("alert email", "name", e.Name, "host", e.Host, "tls", tlsMode, "events", fmt.Sprint(e.Events), "digest", digest)
	}
	return audit.Multi(rec, s), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	}, nil
}

// newAlertSender builds the sinks of cfg (nil when there are none).
func newAlertSender(cfg *config.Config, log hclog.Logger) (*alerts.Sender, error) {
	host, _ := os.Hostname()
	s, err := alerts.FromConfig(alerts.Config{Webhooks: cfg.Alerts, Emails: cfg.Emails, Source: host, Log: log,
		Locate: func(user, role, p string) (string, bool) {
			r := cfg.Roles[role]
			if r == nil {
				return "", false
			}
			home, err := r.HomeFor(user)
			if err != nil {
				return "", false
			}
			// The object key, as vfs derives it: home prefix + path.
			return r.Storage + ":" + home + strings.TrimPrefix(path.Clean("/"+p), "/"), true
		},
		Retention: func(role string) time.Duration {
			if r := cfg.Roles[role]; r != nil {
				return cfg.Storage[r.Storage].RetentionPeriod()
			}
			return 0
		}})
	if err != nil {
		return nil, fmt.Errorf("alerts: %w", err)
	}
	return s, nil
}

// startRetention runs a sweeper for every storage block with a retention
// period, each on its own store only, until ctx ends.
func startRetention(ctx context.Context, cfg *config.Config, stores map[string]vfs.Store, rec audit.Recorder, log hclog.Logger) error {
	for name, s := range cfg.Storage {
		d := s.RetentionPeriod()
		if d <= 0 {
			continue
		}
		sw, err := retention.New(retention.Options{Store: stores[name], StoreName: name, Retention: d, Audit: rec, Log: log})
		if err != nil {
			return fmt.Errorf("storage %q: %w", name, err)
		}
		log.Info("retention enabled", "storage", name, "period", d.String(), "sweep_every", sw.Interval().String())
		go sw.Run(ctx)
	}
	return nil
}
