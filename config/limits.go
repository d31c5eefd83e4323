package config

import (
	"fmt"
	"time"

	"github.com/sftpgw/sftpgw/gateway"
	"github.com/sftpgw/sftpgw/vfs"
)

// roleLimits validates a role's upload limits: sizes like "50MiB", a file
// count, and type names from vfs.FileTypes.
func roleLimits(r RoleBlock) (vfs.Limits, error) {
	var l vfs.Limits
	var err error
	if r.MaxFileSize != "" {
		if l.MaxFileSize, err = vfs.ParseSize(r.MaxFileSize); err != nil {
			return l, fmt.Errorf("max_file_size: %v", err)
		}
	}
	if r.QuotaBytes != "" {
		if l.QuotaBytes, err = vfs.ParseSize(r.QuotaBytes); err != nil {
			return l, fmt.Errorf("quota_bytes: %v", err)
		}
	}
	if r.QuotaFiles < 0 {
		return l, fmt.Errorf("quota_files: %d is negative (0 means no limit)", r.QuotaFiles)
	}
	l.QuotaFiles = r.QuotaFiles
	if l.AllowedTypes, err = vfs.ValidateFileTypes(r.AllowedTypes); err != nil {
		return l, fmt.Errorf("allowed_types: %v", err)
	}
	return l, nil
}

// ConnLimits are the pre-authentication and per-session limits
// (docs/security-limits.md). Zero values mean "off" only where noted.
type ConnLimits struct {
	KexTimeout         time.Duration    // version + key exchange
	Startups           gateway.Startups // MaxStartups start:rate:full
	MaxUnauthPerSource int              // < 0: no cap
	MaxSessionsPerUser int              // < 0: no cap (roles may override)
	MaxSessionsPerSrc  int              // 0: no cap
	MaxOpenHandles     int              // files and directories per session
	SessionWriteBuffer int64            // reorder memory per session
	MaxSessionLifetime time.Duration    // 0: no limit
}

// Defaults of the limits that are on unless configured off.
const (
	DefaultMaxSessionLifetime = 24 * time.Hour
)

func connLimits(raw *File) (ConnLimits, error) {
	l := ConnLimits{
		Startups:           gateway.DefaultStartups,
		MaxUnauthPerSource: gateway.DefaultPerSourceStartups,
		MaxSessionsPerUser: gateway.DefaultMaxSessionsPerUser,
		MaxSessionsPerSrc:  raw.MaxSessionsPerSource,
		MaxOpenHandles:     gateway.DefaultMaxHandles,
		SessionWriteBuffer: vfs.DefaultSessionWindow,
	}
	var err error
	if l.KexTimeout, err = duration(raw.KexTimeout, gateway.DefaultKexTimeout); err != nil {
		return l, fmt.Errorf("kex_timeout: %v (write e.g. \"10s\")", err)
	}
	if l.KexTimeout == 0 {
		return l, fmt.Errorf("kex_timeout: must be more than 0 (e.g. \"10s\")")
	}
	switch {
	case raw.MaxStartups != "":
		if l.Startups, err = gateway.ParseStartups(raw.MaxStartups); err != nil {
			return l, fmt.Errorf("max_startups: %v", err)
		}
	case raw.MaxUnauthenticated > 0: // the older setting: the full pool
		l.Startups = gateway.Startups{Start: min(gateway.DefaultStartups.Start, raw.MaxUnauthenticated),
			Rate: gateway.DefaultStartups.Rate, Full: raw.MaxUnauthenticated}
	case raw.MaxUnauthenticated < 0:
		return l, fmt.Errorf("max_unauthenticated: %d is negative", raw.MaxUnauthenticated)
	}
	if v := raw.MaxUnauthPerSource; v != nil {
		if *v < 0 {
			return l, fmt.Errorf("max_unauthenticated_per_source: %d is negative (0 means no limit)", *v)
		}
		l.MaxUnauthPerSource = offIfZero(*v)
	}
	if v := raw.MaxSessionsPerUser; v != nil {
		if *v < 0 {
			return l, fmt.Errorf("max_sessions_per_user: %d is negative (0 means no limit)", *v)
		}
		l.MaxSessionsPerUser = offIfZero(*v)
	}
	if raw.MaxSessionsPerSource < 0 {
		return l, fmt.Errorf("max_sessions_per_source: %d is negative (0 means no limit)", raw.MaxSessionsPerSource)
	}
	switch {
	case raw.MaxOpenHandles < 0:
		return l, fmt.Errorf("max_open_handles: %d is negative", raw.MaxOpenHandles)
	case raw.MaxOpenHandles > 0:
		l.MaxOpenHandles = raw.MaxOpenHandles
	}
	if raw.SessionWriteBuffer != "" {
		if l.SessionWriteBuffer, err = vfs.ParseSize(raw.SessionWriteBuffer); err != nil || l.SessionWriteBuffer < 1<<20 {
			return l, fmt.Errorf("session_write_buffer: %q: write a size of at least 1MiB, e.g. \"16MiB\"", raw.SessionWriteBuffer)
		}
	}
	if l.MaxSessionLifetime, err = duration(raw.MaxSessionLifetime, DefaultMaxSessionLifetime); err != nil {
		return l, fmt.Errorf("max_session_lifetime: %v (\"0s\" for no limit)", err)
	}
	return l, nil
}

// offIfZero maps the file's "0 = no limit" to the gateway's "< 0 = no
// limit" (0 there takes the default).
func offIfZero(v int) int {
	if v == 0 {
		return -1
	}
	return v
}

// roleSessions is a role's max_sessions_per_user: unset takes the global
// value (0 in authn.Role), 0 means no limit.
func roleSessions(r RoleBlock) (int, error) {
	if r.MaxSessionsPerUser == nil {
		return 0, nil
	}
	if *r.MaxSessionsPerUser < 0 {
		return 0, fmt.Errorf("max_sessions_per_user: %d is negative (0 means no limit)", *r.MaxSessionsPerUser)
	}
	return offIfZero(*r.MaxSessionsPerUser), nil
}
