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
	"github.com/sftpgw/sftpgw/audit/trail"
	"github.com/sftpgw/sftpgw/config"
	"github.com/sftpgw/sftpgw/metrics"
	"github.com/sftpgw/sftpgw/retention"
	"github.com/sftpgw/sftpgw/vfs"
)

// startAlerts starts the configured webhooks and email sinks (audit.Discard
// when there are none). The returned stop delivers what is still queued
// for a few seconds at shutdown.
func startAlerts(cfg *config.Config, met *metrics.Metrics, log hclog.Logger) (audit.Recorder, func(), error) {
	s, err := newAlertSender(cfg, log)
	if err != nil {
		return nil, nil, err
	}
	if s == nil {
		return audit.Discard, func() {}, nil
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
	return s, func() {
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

// auditStuckAfter is how long the audit trail may fail to reach its bucket
// before the audit_stuck alert: longer than a routine S3 hiccup, short
// enough that the spool does not fill unnoticed.
const auditStuckAfter = 10 * time.Minute

// watchTrail raises audit_stuck (an admin audit event) once the trail has
// been unable to ship for after, and notes the recovery, checking at each
// tick until ctx ends.
func watchTrail(ctx context.Context, stats func() trail.Stats, after time.Duration, tick <-chan time.Time, now func() time.Time, rec audit.Recorder) {
	var downSince time.Time
	alerted := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		}
		st := stats()
		if !st.StoreDown {
			if alerted {
				rec.Record(audit.Event{Time: now().UTC(), Kind: "admin", Op: "audit_stuck", Result: "ok",
					Detail: "audit trail ships to its bucket again after " + now().Sub(downSince).Round(time.Second).String()})
			}
			downSince, alerted = time.Time{}, false
			continue
		}
		if downSince.IsZero() {
			downSince = now()
		}
		if d := now().Sub(downSince); !alerted && d >= after {
			alerted = true
			rec.Record(audit.Event{Time: now().UTC(), Kind: "admin", Op: "audit_stuck", Result: "failure",
				Detail: fmt.Sprintf("audit trail has not reached its bucket for %s; %d bytes wait in the local spool", d.Round(time.Second), st.SpoolBytes)})
		}
	}
}
