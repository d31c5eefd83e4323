// Package metrics exposes Prometheus metrics, /healthz and /readyz.
//
// Nothing here decides or observes file operations on its own: the
// Recorder turns the audit events that vfs.FS, authn and the gateway already
// emit into counters, so the audit trail and the metrics can never disagree
// about what happened. The only direct measurement is the Store decorator,
// which times the requests the gateway makes to S3.
//
// Every collector lives in a private registry (no global state), so tests
// and several gateways in one process do not collide.
package metrics

import (
	"regexp"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sftpgw/sftpgw/audit"
	"github.com/sftpgw/sftpgw/audit/trail"
	"github.com/sftpgw/sftpgw/authn"
	"github.com/sftpgw/sftpgw/vfs"
)

// Metrics holds the collectors of one gateway process.
type Metrics struct {
	reg *prometheus.Registry

	connRejected   *prometheus.CounterVec
	connUnauth     *prometheus.CounterVec
	sessionsActive *prometheus.GaugeVec
	sessionsTotal  *prometheus.CounterVec
	logins         *prometheus.CounterVec
	loginFailures  *prometheus.CounterVec
	bans           *prometheus.CounterVec
	ops            *prometheus.CounterVec
	bytes          *prometheus.CounterVec
	transferDur    *prometheus.HistogramVec
	reloads        *prometheus.CounterVec
	storeDur       *prometheus.HistogramVec
	storeErr       *prometheus.CounterVec
}

// Options configure New.
type Options struct {
	Version string // reported in sftpgw_build_info
	// NoRuntime leaves out the Go runtime and process collectors (tests).
	NoRuntime bool
}

// transferBuckets span a small file on a LAN to a multi-GiB upload.
var transferBuckets = prometheus.ExponentialBuckets(0.01, 4, 10) // 10ms .. ~44min

// storeBuckets span a HEAD on a local MinIO to a slow multipart commit.
var storeBuckets = prometheus.ExponentialBuckets(0.001, 3, 11) // 1ms .. ~59s

// New builds the collectors in a fresh registry.
func New(o Options) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{reg: reg}
	f := factory{reg}
	m.connRejected = f.counter("sftpgw_connections_rejected_total",
		"Connections closed before the SSH handshake, by reason (banned, overload).", "reason")
	m.connUnauth = f.counter("sftpgw_connections_unauthenticated_total",
		"Connections that ended without logging in and without a refusal, by stage: handshake (before authentication), auth_incomplete (during it), proxy_protocol.", "stage")
	m.sessionsActive = f.gauge("sftpgw_sessions_active", "Authenticated SSH sessions open now, by role.", "role")
	m.sessionsTotal = f.counter("sftpgw_sessions_total", "Authenticated SSH sessions started, by role.", "role")
	m.logins = f.counter("sftpgw_logins_total",
		"Authentication requests by method and result (ok, failure).", "method", "result")
	m.loginFailures = f.counter("sftpgw_login_failures_total",
		"Refused authentication requests by reason (bad_key, unknown_user, bad_totp, banned, ...).", "reason")
	m.bans = f.counter("sftpgw_bans_total",
		"Bans imposed by the lockout: scope source (an address or /64), user (a user from one source) or mfa (an account's TOTP step, from all sources).", "scope")
	m.ops = f.counter("sftpgw_operations_total",
		"File operations decided by the VFS choke point, by role, operation and result (ok, denied, error).",
		"role", "op", "result")
	m.bytes = f.counter("sftpgw_transfer_bytes_total",
		"Bytes uploaded or downloaded, by role and direction, including transfers that failed.", "role", "direction")
	m.transferDur = f.histogram("sftpgw_transfer_duration_seconds",
		"Duration of completed uploads and downloads (open to close), by role and direction.",
		transferBuckets, "role", "direction")
	m.reloads = f.counter("sftpgw_config_reloads_total", "Configuration and users reloads by result.", "result")
	m.storeDur = f.histogram("sftpgw_store_request_duration_seconds",
		"Latency of requests to the object store (S3), by storage block and operation.",
		storeBuckets, "store", "op")
	m.storeErr = f.counter("sftpgw_store_errors_total",
		"Failed object store requests by storage block and operation (missing objects and cancelled requests are not errors).",
		"store", "op")
	// Series that alert rules use with increase()/rate() exist from the
	// start at 0: a counter born at its first event has no series before it,
	// so a rule on it sees nothing rather than a rise.
	for _, r := range []string{"banned", "overload"} {
		m.connRejected.WithLabelValues(r)
	}
	for _, s := range []string{"source", "user", "mfa"} {
		m.bans.WithLabelValues(s)
	}
	bi := f.gauge("sftpgw_build_info", "Always 1; the version label names the running build.", "version")
	bi.WithLabelValues(orDefault(o.Version, "dev")).Set(1)
	if !o.NoRuntime {
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return m
}

// Registry is the private registry (for tests and extra collectors).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// ObserveTrail publishes the audit trail's queue and spool.
func (m *Metrics) ObserveTrail(stats func() trail.Stats) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sftpgw_audit_queue_events",
			Help: "Audit events waiting in memory to be written to the spool."},
			func() float64 { return float64(stats().Queued) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sftpgw_audit_spool_bytes",
			Help: "Bytes in the local audit spool not yet shipped to the audit bucket."},
			func() float64 { return float64(stats().SpoolBytes) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sftpgw_audit_dropped_events_total",
			Help: "Audit events lost because the spool was full or failing."},
			func() float64 { return float64(stats().Dropped) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sftpgw_audit_store_up",
			Help: "1 if the last upload to the audit bucket succeeded, 0 while batches wait in the spool."},
			func() float64 {
				if stats().StoreDown {
					return 0
				}
				return 1
			}),
	)
}

// ObserveHandles publishes the number of open SFTP file handles.
func (m *Metrics) ObserveHandles(open func() int64) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sftpgw_open_file_handles",
		Help: "SFTP file handles open now (transfers in progress)."},
		func() float64 { return float64(open()) }))
}

// Record turns one audit event into counters. It implements audit.Recorder
// and never blocks.
func (m *Metrics) Record(e audit.Event) {
	switch e.Kind {
	case "connect":
		switch e.Result {
		case "ok":
		case "error": // ended on its own: timeout, client gone, protocol error
			m.connUnauth.WithLabelValues(label(e.ErrClass)).Inc()
		default:
			m.connRejected.WithLabelValues(label(e.ErrClass)).Inc()
		}
	case "session_start":
		m.sessionsTotal.WithLabelValues(label(e.Role)).Inc()
		m.sessionsActive.WithLabelValues(label(e.Role)).Inc()
	case "session_end":
		m.sessionsActive.WithLabelValues(label(e.Role)).Dec()
	case "auth":
		result := "ok"
		if e.Result != "ok" {
			result = "failure"
			m.loginFailures.WithLabelValues(label(e.ErrClass)).Inc()
			m.countBans(e.Detail)
		}
		m.logins.WithLabelValues(method(e.Method), result).Inc()
	case "file":
		role := label(e.Role)
		m.ops.WithLabelValues(role, opLabel(e.Op), label(e.Result)).Inc()
		dir := ""
		switch e.Op {
		case "upload", "overwrite":
			dir = "upload"
		case "download":
			dir = "download"
		}
		if dir == "" {
			return
		}
		if e.Bytes > 0 {
			m.bytes.WithLabelValues(role, dir).Add(float64(e.Bytes))
		}
		if e.Result == "ok" {
			m.transferDur.WithLabelValues(role, dir).Observe(e.DurationMS / 1000)
		}
	case "admin":
		if e.Op == "reload" {
			m.reloads.WithLabelValues(label(e.Result)).Inc()
		}
	}
}

// countBans reads the bans a failure triggered from its detail, which authn
// writes as "...; source 192.0.2.7 banned for 1m0s; user banned from this
// source for 2m0s" (see authn/outcome.go; TestBansFromAuthn pins the text).
func (m *Metrics) countBans(detail string) {
	for part := range strings.SplitSeq(detail, "; ") {
		switch {
		case strings.HasPrefix(part, "user banned from this source for "):
			m.bans.WithLabelValues("user").Inc()
		case strings.HasPrefix(part, "source ") && strings.Contains(part, " banned for "):
			m.bans.WithLabelValues("source").Inc()
		case strings.HasPrefix(part, authn.MFALockDetail):
			m.bans.WithLabelValues("mfa").Inc()
		}
	}
}

// method maps the auth method to a fixed set: the client chooses the name
// of a refused method, and a label per invented name would let anyone grow
// the metrics without bound.
func method(m string) string {
	switch m {
	case "publickey", "keyboard-interactive", "password", "none", "hostbased", "gssapi-with-mic":
		return m
	case "publickey,keyboard-interactive":
		return "publickey+totp"
	}
	return "other"
}

// opLabels are the operation names the gateway writes into file events.
// A client chooses the names of the extensions it asks for (each refused
// one is audited as "extension:<name>"), so the op label takes only these
// values; anything else, including invented extensions, counts as "other"
// and its details are in the audit trail.
var opLabels = func() map[string]bool {
	m := map[string]bool{}
	for _, op := range vfs.PermAll.Names() {
		m[op] = true
	}
	for _, op := range []string{
		// refusals by the gateway and vfs
		"ssh_request", "link", "symlink", "readlink", "read_from_upload_handle", "request_before_init",
		"statvfs", "realpath", "sftp_stream",
		// an interrupted upload continued (docs/resume.md)
		"upload_resumed",
		// pkg/sftp request methods that reach the default refusal
		"Setstat", "Rename", "Rmdir", "Mkdir", "Remove", "Link", "Symlink", "Readlink",
	} {
		m[op] = true
	}
	// Extensions real clients send that pkg/sftp refuses.
	for _, ext := range []string{
		"copy-data", "check-file", "check-file-name", "check-file-handle", "md5-hash", "md5-hash-handle",
		"copy-file", "space-available", "home-directory", "fsync@openssh.com", "lsetstat@openssh.com",
		"expand-path@openssh.com", "users-groups-by-id@openssh.com", "limits@openssh.com",
		"fstatvfs@openssh.com", "text-seek", "vendor-id", "newline", "supported2",
	} {
		m["extension:"+ext] = true
	}
	return m
}()

func opLabel(op string) string {
	if opLabels[op] {
		return op
	}
	return "other"
}

var labelRE = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,48}$`)

// label passes values that come from our own code or configuration (role
// names, operations, error classes) and folds anything unexpected into
// "other", so a bug can never turn client input into label values.
func label(s string) string {
	if s == "" {
		return "none"
	}
	if !labelRE.MatchString(s) {
		return "other"
	}
	return s
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// factory registers collectors as it builds them.
type factory struct{ reg *prometheus.Registry }

func (f factory) counter(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f factory) gauge(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(g)
	return g
}

func (f factory) histogram(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	f.reg.MustRegister(h)
	return h
}

// AlertSink is one alert webhook or email sink's counters.
type AlertSink struct {
	Name, Kind                 string // kind: webhook or email
	Delivered, Failed, Dropped uint64
	Queued                     int
}

// ObserveAlerts publishes the alert sinks' deliveries, failures (out of
// attempts or refused for good), drops (queue full) and queue length.
func (m *Metrics) ObserveAlerts(sinks func() []AlertSink) {
	m.reg.MustRegister(alertCollector(sinks))
}

var (
	alertDelivered = prometheus.NewDesc("sftpgw_alerts_delivered_total", "Alerts and digests accepted by a webhook or SMTP server.", []string{"sink", "kind"}, nil)
	alertFailed    = prometheus.NewDesc("sftpgw_alerts_failed_total", "Alerts and digests given up after their attempts, or refused for good.", []string{"sink", "kind"}, nil)
	alertDropped   = prometheus.NewDesc("sftpgw_alerts_dropped_total", "Alerts dropped because the sink's queue was full.", []string{"sink", "kind"}, nil)
	alertQueued    = prometheus.NewDesc("sftpgw_alerts_queued", "Alerts waiting for delivery.", []string{"sink", "kind"}, nil)
)

type alertCollector func() []AlertSink

func (alertCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- alertDelivered
	ch <- alertFailed
	ch <- alertDropped
	ch <- alertQueued
}

func (c alertCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c() {
		ch <- prometheus.MustNewConstMetric(alertDelivered, prometheus.CounterValue, float64(s.Delivered), s.Name, s.Kind)
		ch <- prometheus.MustNewConstMetric(alertFailed, prometheus.CounterValue, float64(s.Failed), s.Name, s.Kind)
		ch <- prometheus.MustNewConstMetric(alertDropped, prometheus.CounterValue, float64(s.Dropped), s.Name, s.Kind)
		ch <- prometheus.MustNewConstMetric(alertQueued, prometheus.GaugeValue, float64(s.Queued), s.Name, s.Kind)
	}
}
