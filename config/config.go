// Package config loads the gateway's HCL configuration into a Config
// struct: parsed durations, sizes, address ranges, roles (as authn roles),
// limits, and the storage blocks, which Config.OpenStore turns into an S3
// or local vfs.Store. Every error names the file and line and says what to
// change; nothing is kept in package-level state, so a reload builds new
// values to swap in.
package config

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"

	"github.com/sftpgw/sftpgw/audit/trail"
	"github.com/sftpgw/sftpgw/authn"
	"github.com/sftpgw/sftpgw/proxyproto"
	"github.com/sftpgw/sftpgw/vfs"
	"github.com/sftpgw/sftpgw/vfs/localstore"
	"github.com/sftpgw/sftpgw/vfs/s3store"
)

// File is the HCL schema, field for field (see configs/sftpgw.example.hcl).
type File struct {
	Listen             string   `hcl:"listen,optional"`
	HostKeys           []string `hcl:"host_keys,optional"`
	UsersFile          string   `hcl:"users_file"`
	HandshakeTimeout   string   `hcl:"handshake_timeout,optional"`
	IdleTimeout        string   `hcl:"idle_timeout,optional"`
	MaxUnauthenticated int      `hcl:"max_unauthenticated,optional"`
	MaxSessions        int      `hcl:"max_sessions,optional"`
	// Connection and session limits (config/limits.go).
	KexTimeout           string         `hcl:"kex_timeout,optional"`
	MaxStartups          string         `hcl:"max_startups,optional"`
	MaxUnauthPerSource   *int           `hcl:"max_unauthenticated_per_source,optional"`
	MaxSessionsPerUser   *int           `hcl:"max_sessions_per_user,optional"`
	MaxSessionsPerSource int            `hcl:"max_sessions_per_source,optional"`
	MaxOpenHandles       int            `hcl:"max_open_handles,optional"`
	SessionWriteBuffer   string         `hcl:"session_write_buffer,optional"`
	MaxSessionLifetime   string         `hcl:"max_session_lifetime,optional"`
	LogLevel             string         `hcl:"log_level,optional"`
	LogFormat            string         `hcl:"log_format,optional"`
	Banner               string         `hcl:"banner,optional"`
	AllowNonETMMACs      bool           `hcl:"allow_non_etm_macs,optional"`
	Storage              []StorageBlock `hcl:"storage,block"`
	Roles                []RoleBlock    `hcl:"role,block"`
	Audit                *AuditBlock    `hcl:"audit,block"`
	Lockout              *LockoutBlock  `hcl:"lockout,block"`
	Alerts               []AlertBlock   `hcl:"alert,block"`
	Emails               []EmailBlock   `hcl:"email,block"`
	// Strict refuses to start when a bucket posture check fails.
	Strict bool `hcl:"strict,optional"`
	// Operations (config/ops.go).
	ShutdownGrace string `hcl:"shutdown_grace,optional"`
	// ResumeWindow keeps interrupted uploads for resume (docs/resume.md).
	ResumeWindow  string              `hcl:"resume_window,optional"`
	Metrics       *MetricsBlock       `hcl:"metrics,block"`
	ProxyProtocol *ProxyProtocolBlock `hcl:"proxy_protocol,block"`
}

// StorageBlock is one bucket (or local directory).
type StorageBlock struct {
	Name        string `hcl:"name,label"`
	Type        string `hcl:"type"` // "s3" or "local"
	Bucket      string `hcl:"bucket,optional"`
	Region      string `hcl:"region,optional"`
	Endpoint    string `hcl:"endpoint,optional"`
	PathStyle   bool   `hcl:"path_style,optional"`
	SSE         string `hcl:"sse,optional"`
	KMSKeyID    string `hcl:"kms_key_id,optional"`
	Root        string `hcl:"root,optional"`
	PartSize    string `hcl:"part_size,optional"`
	Concurrency int    `hcl:"upload_concurrency,optional"`
	// MTimeCache is how many objects' times listings remember
	// (docs/file-times.md); 0: the default, negative: none.
	MTimeCache int       `hcl:"mtime_cache,optional"`
	Retention  string    `hcl:"retention,optional"` // e.g. "24h": objects older are deleted
	DefRange   hcl.Range `hcl:",def_range"`
}

// RoleBlock is one role.
type RoleBlock struct {
	Name                string    `hcl:"name,label"`
	Storage             string    `hcl:"storage"`
	Home                string    `hcl:"home"`
	Permissions         []string  `hcl:"permissions"`
	MFA                 bool      `hcl:"mfa,optional"`
	AllowFrom           []string  `hcl:"allow_from,optional"`
	DownloadFrom        []string  `hcl:"download_from,optional"`
	DeleteAfterDownload bool      `hcl:"delete_after_download,optional"`
	MaxFileSize         string    `hcl:"max_file_size,optional"` // upload limits, see roleLimits
	QuotaBytes          string    `hcl:"quota_bytes,optional"`
	QuotaFiles          int64     `hcl:"quota_files,optional"`
	AllowedTypes        []string  `hcl:"allowed_types,optional"`
	MaxSessionsPerUser  *int      `hcl:"max_sessions_per_user,optional"`
	DefRange            hcl.Range `hcl:",def_range"`
}

// AuditBlock configures the audit trail.
type AuditBlock struct {
	Storage       string `hcl:"storage"`
	Prefix        string `hcl:"prefix,optional"`
	SpoolDir      string `hcl:"spool_dir,optional"`
	SpoolMax      string `hcl:"spool_max,optional"`
	SigningKey    string `hcl:"signing_key,optional"`
	FlushInterval string `hcl:"flush_interval,optional"`
	BatchEvents   int    `hcl:"batch_events,optional"`
	Instance      string `hcl:"instance,optional"`
	// PubKeySHA256 pins the signing key: serve refuses another key and
	// audit verify refuses a public key file with another fingerprint.
	PubKeySHA256 string `hcl:"pubkey_sha256,optional"`
	// ObjectLockRetention writes every batch with S3 Object Lock in
	// compliance mode, retained this long (e.g. "400d").
	ObjectLockRetention string    `hcl:"object_lock_retention,optional"`
	DefRange            hcl.Range `hcl:",def_range"`
}

// LockoutBlock tunes brute-force protection (defaults: authn.DefaultLockout).
type LockoutBlock struct {
	MaxIPFailures   int    `hcl:"max_ip_failures,optional"`
	MaxPairFailures int    `hcl:"max_pair_failures,optional"`
	MaxUserFailures int    `hcl:"max_user_failures,optional"`
	Window          string `hcl:"window,optional"`
	BaseBan         string `hcl:"base_ban,optional"`
	MaxBan          string `hcl:"max_ban,optional"`
	MaxMFAFailures  int    `hcl:"max_mfa_failures,optional"`
	MFAWindow       string `hcl:"mfa_window,optional"`
	MFALock         string `hcl:"mfa_lock,optional"`
	MaxMFALock      string `hcl:"max_mfa_lock,optional"`
	MaxMFAPrompts   int    `hcl:"max_mfa_prompts,optional"`
}

// Config is the validated configuration.
type Config struct {
	Path               string
	Listen             string
	HostKeys           []string
	UsersFile          string
	HandshakeTimeout   time.Duration
	IdleTimeout        time.Duration
	MaxUnauthenticated int
	MaxSessions        int
	Conn               ConnLimits // pre-authentication and session limits
	LogLevel           string
	LogFormat          string
	Banner             string
	// AllowNonETMMACs adds hmac-sha2-256/512 (MAC-then-encrypt) for clients
	// built on libssh2 < 1.11 (curl), which know neither ETM MACs nor AES-GCM.
	AllowNonETMMACs bool
	Storage         map[string]StorageBlock
	Roles           map[string]*authn.Role
	Audit           *Audit
	Lockout         authn.Lockout
	Alerts          []Alert
	Emails          []Email
	Strict          bool
	ShutdownGrace   time.Duration
	ResumeWindow    time.Duration      // 0: interrupted uploads are aborted (resume off)
	Metrics         *Metrics           // nil: no metrics listener
	ProxyTrusted    proxyproto.Trusted // nil: no PROXY protocol
}

// Audit is the validated audit block.
type Audit struct {
	Storage       string
	Prefix        string
	SpoolDir      string
	SpoolMax      int64
	SigningKey    string
	FlushInterval time.Duration
	BatchEvents   int
	Instance      string
	PubKeySHA256  string        // canonical (trail.ParseFingerprint); empty: not pinned
	LockRetention time.Duration // 0: batches are written without Object Lock
}

// Load reads and validates the file at path. Relative paths inside it are
// taken from the file's directory.
func Load(path string) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, src)
}

// Parse validates src as if read from path.
func Parse(path string, src []byte) (*Config, error) {
	p := hclparse.NewParser()
	f, diags := p.ParseHCL(src, path)
	if diags.HasErrors() {
		return nil, diagError(diags)
	}
	var raw File
	if diags := gohcl.DecodeBody(f.Body, nil, &raw); diags.HasErrors() {
		return nil, diagError(diags)
	}
	return validate(path, &raw)
}

func diagError(d hcl.Diagnostics) error {
	var b strings.Builder
	for i, e := range d.Errs() {
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString("config: " + e.Error())
	}
	return fmt.Errorf("%s", b.String())
}

// at formats a validation error at a block's position.
func at(r hcl.Range, format string, args ...any) error {
	return fmt.Errorf("config: %s:%d: %s", r.Filename, r.Start.Line, fmt.Sprintf(format, args...))
}

func validate(path string, raw *File) (*Config, error) {
	dir := filepath.Dir(path)
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	c := &Config{
		Path:               path,
		Listen:             or(raw.Listen, "0.0.0.0:2222"),
		UsersFile:          rel(raw.UsersFile),
		MaxUnauthenticated: raw.MaxUnauthenticated,
		MaxSessions:        raw.MaxSessions,
		LogLevel:           or(raw.LogLevel, "info"),
		LogFormat:          or(raw.LogFormat, "text"),
		Banner:             raw.Banner,
		AllowNonETMMACs:    raw.AllowNonETMMACs,
		Storage:            map[string]StorageBlock{},
		Roles:              map[string]*authn.Role{},
		Strict:             raw.Strict,
	}
	whole := hcl.Range{Filename: path, Start: hcl.Pos{Line: 1}}
	for _, k := range raw.HostKeys {
		c.HostKeys = append(c.HostKeys, rel(k))
	}
	if len(c.HostKeys) == 0 {
		c.HostKeys = []string{rel("ssh_host_ed25519_key")}
	}
	var err error
	if c.HandshakeTimeout, err = duration(raw.HandshakeTimeout, 30*time.Second); err != nil {
		return nil, at(whole, "handshake_timeout: %v (write e.g. \"30s\")", err)
	}
	if c.IdleTimeout, err = duration(raw.IdleTimeout, 15*time.Minute); err != nil {
		return nil, at(whole, "idle_timeout: %v (write e.g. \"15m\")", err)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return nil, at(whole, "log_format must be \"text\" or \"json\", not %q", c.LogFormat)
	}
	if hclog.LevelFromString(c.LogLevel) == hclog.NoLevel {
		return nil, at(whole, "log_level %q is not one of trace, debug, info, warn, error", c.LogLevel)
	}
	for _, s := range raw.Storage {
		if _, dup := c.Storage[s.Name]; dup {
			return nil, at(s.DefRange, "storage %q is defined twice", s.Name)
		}
		switch s.Type {
		case "s3":
			if s.Bucket == "" {
				return nil, at(s.DefRange, "storage %q: bucket is required for type \"s3\"", s.Name)
			}
			s.SSE = or(s.SSE, "AES256")
			if s.SSE != "AES256" && s.SSE != "aws:kms" {
				return nil, at(s.DefRange, "storage %q: sse must be \"AES256\" or \"aws:kms\" (objects are always encrypted)", s.Name)
			}
			if s.SSE == "AES256" && s.KMSKeyID != "" {
				return nil, at(s.DefRange, "storage %q: kms_key_id needs sse = \"aws:kms\"", s.Name)
			}
			s.Region = or(s.Region, "us-east-1")
		case "local":
			if s.Root == "" {
				return nil, at(s.DefRange, "storage %q: root (a directory) is required for type \"local\"", s.Name)
			}
			s.Root = rel(s.Root)
		default:
			return nil, at(s.DefRange, "storage %q: type must be \"s3\" or \"local\", not %q", s.Name, s.Type)
		}
		if s.PartSize != "" {
			if _, err := ParseSize(s.PartSize); err != nil {
				return nil, at(s.DefRange, "storage %q: part_size: %v", s.Name, err)
			}
		}
		if _, err := duration(s.Retention, 0); err != nil {
			return nil, at(s.DefRange, "storage %q: retention: %v", s.Name, err)
		}
		c.Storage[s.Name] = s
	}
	if len(c.Storage) == 0 {
		return nil, at(whole, "no storage block: add e.g. storage \"files\" { type = \"s3\" bucket = \"...\" }")
	}
	for _, r := range raw.Roles {
		if _, dup := c.Roles[r.Name]; dup {
			return nil, at(r.DefRange, "role %q is defined twice", r.Name)
		}
		if _, ok := c.Storage[r.Storage]; !ok {
			return nil, at(r.DefRange, "role %q: storage %q is not defined", r.Name, r.Storage)
		}
		if err := checkHome(r.Home); err != nil {
			return nil, at(r.DefRange, "role %q: home: %v", r.Name, err)
		}
		perms, err := vfs.ParsePermSet(r.Permissions)
		if err != nil {
			return nil, at(r.DefRange, "role %q: permissions: %v", r.Name, err)
		}
		allow, err := prefixes(r.AllowFrom)
		if err != nil {
			return nil, at(r.DefRange, "role %q: allow_from: %v", r.Name, err)
		}
		dl, err := prefixes(r.DownloadFrom)
		if err != nil {
			return nil, at(r.DefRange, "role %q: download_from: %v", r.Name, err)
		}
		lim, err := roleLimits(r)
		if err != nil {
			return nil, at(r.DefRange, "role %q: %v", r.Name, err)
		}
		maxSess, err := roleSessions(r)
		if err != nil {
			return nil, at(r.DefRange, "role %q: %v", r.Name, err)
		}
		c.Roles[r.Name] = &authn.Role{Name: r.Name, Storage: r.Storage, Home: r.Home, Perms: perms,
			MFA: r.MFA, AllowFrom: allow, DownloadFrom: dl, DeleteAfterDownload: r.DeleteAfterDownload, Limits: lim,
			MaxSessions: maxSess}
	}
	if len(c.Roles) == 0 {
		return nil, at(whole, "no role block: add at least one role (see configs/sftpgw.example.hcl)")
	}
	if a := raw.Audit; a != nil {
		if _, ok := c.Storage[a.Storage]; !ok {
			return nil, at(a.DefRange, "audit: storage %q is not defined", a.Storage)
		}
		au := &Audit{Storage: a.Storage, Prefix: or(a.Prefix, "audit/"), SpoolDir: rel(or(a.SpoolDir, "audit-spool")),
			SigningKey: rel(or(a.SigningKey, "audit_ed25519_key")), BatchEvents: a.BatchEvents, Instance: a.Instance}
		if !strings.HasSuffix(au.Prefix, "/") {
			return nil, at(a.DefRange, "audit: prefix must end with \"/\"")
		}
		if au.FlushInterval, err = duration(a.FlushInterval, 5*time.Second); err != nil {
			return nil, at(a.DefRange, "audit: flush_interval: %v", err)
		}
		if au.SpoolMax, err = ParseSize(or(a.SpoolMax, "1GiB")); err != nil {
			return nil, at(a.DefRange, "audit: spool_max: %v", err)
		}
		if a.PubKeySHA256 != "" {
			if au.PubKeySHA256, err = trail.ParseFingerprint(a.PubKeySHA256); err != nil {
				return nil, at(a.DefRange, "audit: pubkey_sha256: %v", err)
			}
		}
		if au.LockRetention, err = duration(a.ObjectLockRetention, 0); err != nil {
			return nil, at(a.DefRange, "audit: object_lock_retention: %v", err)
		}
		if au.LockRetention > 0 && c.Storage[a.Storage].Type != "s3" {
			return nil, at(a.DefRange, "audit: object_lock_retention needs an s3 storage block (S3 Object Lock)")
		}
		// The trail is append-only through the gateway: no role may change
		// the bucket that holds it, under whatever storage block name.
		loc := c.Storage[a.Storage].Location()
		for name, r := range c.Roles {
			if c.Storage[r.Storage].Location() == loc && r.Perms&writePerms != 0 {
				what := fmt.Sprintf("storage %q", a.Storage)
				if r.Storage != a.Storage {
					what = fmt.Sprintf("storage %q (the same bucket as audit storage %q)", r.Storage, a.Storage)
				}
				return nil, at(a.DefRange, "audit: role %q can modify %s, which holds the audit trail; give it only list, stat and download", name, what)
			}
		}
		c.Audit = au
	}
	if c.Alerts, err = validateAlerts(raw.Alerts, rel); err != nil {
		return nil, err
	}
	roleNames := map[string]bool{}
	for n := range c.Roles {
		roleNames[n] = true
	}
	if c.Emails, err = validateEmails(raw.Emails, c.Alerts, roleNames, rel); err != nil {
		return nil, err
	}
	c.Lockout = authn.Lockout{}
	if l := raw.Lockout; l != nil {
		for _, n := range []struct {
			v   int
			dst *int
			n   string
		}{{l.MaxIPFailures, &c.Lockout.MaxIPFailures, "max_ip_failures"}, {l.MaxPairFailures, &c.Lockout.MaxPairFailures, "max_pair_failures"},
			{l.MaxUserFailures, &c.Lockout.MaxUserFailures, "max_user_failures"}, {l.MaxMFAFailures, &c.Lockout.MaxMFAFailures, "max_mfa_failures"},
			{l.MaxMFAPrompts, &c.Lockout.MaxMFAPrompts, "max_mfa_prompts"}} {
			if n.v < 0 { // 0 (unset) takes the default; a negative number is a typo, not "unlimited"
				return nil, at(whole, "lockout: %s must not be negative", n.n)
			}
			*n.dst = n.v
		}
		for _, d := range []struct {
			s   string
			dst *time.Duration
			n   string
		}{{l.Window, &c.Lockout.Window, "window"}, {l.BaseBan, &c.Lockout.BaseBan, "base_ban"}, {l.MaxBan, &c.Lockout.MaxBan, "max_ban"},
			{l.MFAWindow, &c.Lockout.MFAWindow, "mfa_window"}, {l.MFALock, &c.Lockout.MFALock, "mfa_lock"}, {l.MaxMFALock, &c.Lockout.MaxMFALock, "max_mfa_lock"}} {
			if *d.dst, err = duration(d.s, 0); err != nil {
				return nil, at(whole, "lockout: %s: %v", d.n, err)
			}
		}
	}
	if c.Conn, err = connLimits(raw); err != nil {
		return nil, at(whole, "%v", err)
	}
	if err := validateOps(c, raw, whole); err != nil {
		return nil, err
	}
	return c, nil
}

// Location names what a storage block points at: two blocks with the same
// location are one bucket (or directory), whatever their names and other
// settings. An empty endpoint is AWS.
func (s StorageBlock) Location() string {
	if s.Type == "local" {
		return "local|" + filepath.Clean(s.Root)
	}
	ep := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(s.Endpoint), "/"))
	if ep == "" {
		ep = "aws"
	}
	return "s3|" + ep + "|" + s.Bucket
}

// writePerms are the operations that change a storage block.
const writePerms = vfs.PermSet(vfs.OpUpload | vfs.OpOverwrite | vfs.OpDelete | vfs.OpRename | vfs.OpMkdir | vfs.OpRmdir)

// checkHome accepts "" (bucket root) or a relative prefix ending in "/".
func checkHome(h string) error {
	if h == "" {
		return nil
	}
	if strings.HasPrefix(h, "/") || !strings.HasSuffix(h, "/") || strings.Contains(h, "..") || strings.Contains(h, "//") {
		return fmt.Errorf("%q must be relative and end with \"/\", e.g. \"user/{name}/\"", h)
	}
	return nil
}

func prefixes(ss []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range ss {
		if !strings.Contains(s, "/") {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("%q is not an address or CIDR", s)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR (e.g. 203.0.113.0/24)", s)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func duration(s string, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	if strings.HasSuffix(s, "d") {
		var n int
		if _, err := fmt.Sscanf(s, "%dd", &n); err == nil && n >= 0 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q is not a duration like \"30s\", \"15m\", \"24h\" or \"7d\"", s)
	}
	return d, nil
}

// ParseSize parses "8MiB", "1GiB", "512KiB", "100MB" or a byte count: the
// one size syntax of the configuration and the users file.
func ParseSize(s string) (int64, error) { return vfs.ParseSize(s) }

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// OpenStore connects the named storage block.
func (c *Config) OpenStore(ctx context.Context, name string) (vfs.Store, error) {
	s, ok := c.Storage[name]
	if !ok {
		return nil, fmt.Errorf("config: storage %q is not defined", name)
	}
	switch s.Type {
	case "local":
		if err := os.MkdirAll(s.Root, 0o700); err != nil {
			return nil, err
		}
		return localstore.New(s.Root)
	default:
		return s3store.New(ctx, s.s3Config())
	}
}

// s3Config is what an s3 storage block asks of s3store.
func (s *StorageBlock) s3Config() s3store.Config {
	part := int64(0)
	if s.PartSize != "" {
		part, _ = ParseSize(s.PartSize)
	}
	return s3store.Config{Bucket: s.Bucket, Region: s.Region, Endpoint: s.Endpoint,
		PathStyle: s.PathStyle, SSE: s.SSE, KMSKeyID: s.KMSKeyID, PartSize: part, Concurrency: s.Concurrency,
		MTimeCache: s.MTimeCache}
}
