package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sftpgw/sftpgw/alerts"
	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/config"
	"github.com/sftpgw/sftpgw/retention"
	"github.com/sftpgw/sftpgw/vfs"
)

// withAlerts adds the configured webhooks to rec. The returned stop
// delivers what is still queued for a few seconds at shutdown.
func withAlerts(cfg *config.Config, rec audit.Recorder, log hclog.Logger) (audit.Recorder, func(), error) {
	host, _ := os.Hostname()
	s, err := alerts.FromConfig(cfg.Alerts, host, log)
	if err != nil {
		return nil, nil, fmt.Errorf("alerts: %w", err)
	}
	if s == nil {
		return rec, func() {}, nil
	}
	for _, a := range cfg.Alerts {
		log.Info("alert webhook", "name", a.Name, "events", fmt.Sprint(a.Events))
	}
	return audit.Multi(rec, s), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	}, nil
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
