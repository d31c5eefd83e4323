# sftpgw example configuration: the four roles of the source documents over
# two buckets. Relative paths are taken from this file's directory.

# Address to accept SSH connections on.
listen = "0.0.0.0:2222"

# Host keys (OpenSSH private key format, mode 0600). A missing file is
# generated as ed25519 on first start.
host_keys = ["/var/lib/sftpgw/ssh_host_ed25519_key"]

# Users: pseudonymous names, roles, public keys, TOTP secrets (mode 0600).
# Managed with `sftpgw user ...`; reloaded on change and on SIGHUP.
users_file = "/etc/sftpgw/users.hcl"

handshake_timeout   = "30s" # whole pre-authentication phase
kex_timeout         = "10s" # version and key exchange (a silent socket is closed then)
idle_timeout        = "15m" # a connection that moves no bytes is closed
# Connections not yet authenticated (docs/security-limits.md): OpenSSH's
# MaxStartups start:rate:full, and a cap per source address (IPv6: /64).
max_startups                   = "10:30:100"
max_unauthenticated_per_source = 10
max_sessions            = 0     # authenticated connections, 0 = unlimited
max_sessions_per_user   = 16    # 0 = unlimited; a role may set its own
max_sessions_per_source = 0     # 0 = unlimited (NAT, load balancers without PROXY)
max_open_handles        = 16    # open files and directories per session
session_write_buffer    = "16MiB" # out-of-order upload data held per session
max_session_lifetime    = "24h" # "0s" = no limit
log_level           = "info" # trace, debug, info, warn, error
log_format          = "json" # text or json
banner              = "Authorised use only. All activity is logged.\n"
# Only for curl and other libssh2 < 1.11 clients, which know neither
# encrypt-then-MAC MACs nor AES-GCM: also offer hmac-sha2-256/512.
allow_non_etm_macs = false

# A storage block is one bucket. Every object written carries server-side
# encryption; a store that refuses it fails the operation.
storage "files" {
  type       = "s3"
  bucket     = "altairxfile"
  region     = "ap-southeast-2"
  sse        = "AES256" # or "aws:kms" with kms_key_id
  # kms_key_id = "arn:aws:kms:..."
  # For MinIO or another S3-compatible store:
  # endpoint   = "http://127.0.0.1:9000"
  # path_style = true
  # part_size          = "8MiB" # multipart part size (grows for huge files)
  # upload_concurrency = 2      # parts in flight per upload (memory: +1 part each)
  # Files are to be collected within a day: anything older is deleted (a
  # sweeper in the gateway; `sftpgw check --fix` adds the same S3 lifecycle
  # rule as a backstop). Accepts "36h", "7d", ...
  retention = "24h"
}

storage "logs" {
  type   = "s3"
  bucket = "altairxlog"
  region = "ap-southeast-2"
  sse    = "AES256"
}

# Roles. home: key prefix each session is chrooted to ({name} = user name).
# permissions: list, stat, download, upload, overwrite, delete, rename,
# mkdir, rmdir, setstat, or "*".

# Applicants upload their documents; they can never read anything back.
# Upload limits: per file, in total under the home (a quota, counted from
# the bucket), and the accepted file types, checked by extension and by the
# first bytes of the content (pdf, jpeg, png, docx, xlsx, odt, txt). A user
# block in the users file may override the three numbers.
role "applicant" {
  storage       = "files"
  home          = "user/{name}/"
  permissions   = ["list", "stat", "upload", "overwrite", "delete", "rename", "mkdir", "rmdir", "setstat"]
  max_file_size = "50MiB"
  quota_bytes   = "200MiB"
  quota_files   = 50
  allowed_types = ["pdf", "jpeg", "png", "docx", "odt", "txt"]
  max_sessions_per_user = 4
}

# HR collects documents from every applicant: key + TOTP, downloads only
# from the office, and a complete download deletes the object.
role "hr" {
  storage               = "files"
  home                  = "user/"
  permissions           = ["*"]
  mfa                   = true
  download_from         = ["203.0.113.0/24"]
  delete_after_download = true
}

# Partners automate transfers with keys from known addresses only.
role "partner" {
  storage     = "files"
  home        = "partner/{name}/"
  permissions = ["list", "stat", "upload", "overwrite", "download", "delete", "rename", "mkdir", "rmdir", "setstat"]
  allow_from  = ["198.51.100.0/24"]
}

# Auditors read the audit trail, nothing else, and cannot change it.
role "auditor" {
  storage     = "logs"
  home        = "audit/"
  permissions = ["list", "stat", "download"]
}

# The audit trail: batches of JSON-lines events, hash-chained and signed,
# in a bucket of their own. Spooled locally while the bucket is unreachable.
audit {
  storage        = "logs"
  prefix         = "audit/"
  spool_dir      = "/var/lib/sftpgw/audit-spool"
  spool_max      = "1GiB"
  signing_key    = "/var/lib/sftpgw/audit_ed25519_key" # generated if missing; .pub beside it
  flush_interval = "5s" # also the heartbeat: a batch is sealed every interval, events or not
  # The signing key's fingerprint, as printed at start ("audit signing key"):
  # serve refuses another key and audit verify refuses another public key.
  # pubkey_sha256 = "4d4572022ab295276cf2e7d96ba3b48b8d6f5ba0e9a31e3d1f58b08eebb4dd2f"
  # Write each batch under S3 Object Lock, compliance mode, for this long. The
  # bucket must be created with Object Lock; strict = true requires both.
  # object_lock_retention = "400d"
}

# Alerts: signed JSON webhooks (X-Sftpgw-Signature: sha256=HMAC of the body).
# Events: upload_complete, download, denied, login_failure_burst, lockout,
# mfa_lock, retention_delete, posture_failure, audit_stuck, or "*". The secret comes
# from the environment or a 0600 file, never from this file.
# alert "security" {
#   url        = "https://hooks.example.com/sftpgw"
#   events     = ["denied", "login_failure_burst", "lockout", "mfa_lock"]
#   secret_env = "SFTPGW_ALERT_SECRET" # or secret_file = "/etc/sftpgw/alert.secret"
#   # timeout = "10s"  queue = 1000  max_attempts = 6
# }

# Email alerts and the HR digest (docs/alerts.md). TLS is required
# (starttls, or tls = "implicit"); plaintext only with allow_plaintext = true.
# Check with `sftpgw alert test --config FILE`.
# email "hr" {
#   host         = "smtp.example.org"
#   username     = "sftpgw"
#   password_env = "SFTPGW_SMTP_PASSWORD" # or password_file (mode 0600)
#   from         = "sftpgw@example.org"
#   to           = ["hr@example.org"]
#   events       = ["upload_complete"]
#   digest {
#     daily_at  = "08:00"
#     time_zone = "Europe/Berlin"
#     roles     = ["applicant"]
#   }
# }

# Refuse to start when a bucket posture check fails (see `sftpgw check`).
# strict = true

# Brute-force protection (docs/security-authentication.md): failures per
# source address and per (user, source); wrong TOTP codes per account from
# all sources together. Behind a load balancer, enable PROXY protocol, or
# every client shares the balancer's address.
lockout {
  max_ip_failures   = 5
  max_pair_failures = 5
  max_user_failures = 10
  window            = "10m"
  base_ban          = "1m"
  max_ban           = "1h"
  max_mfa_failures  = 10    # wrong codes per account within mfa_window...
  mfa_window        = "15m"
  mfa_lock          = "15m" # ...lock its TOTP step, doubling per repeat
  max_mfa_lock      = "24h"
  max_mfa_prompts   = 2     # connections of one account at the code prompt
}

# On SIGTERM: stop accepting, close idle sessions at once, let transfers in
# progress run for this long, abort the rest (nothing partial is stored),
# flush the audit trail, exit 0. Keep the service manager's stop timeout
# above it (systemd TimeoutStopSec, docker stop -t, Kubernetes
# terminationGracePeriodSeconds).
shutdown_grace = "30s"

# Prometheus metrics (/metrics), liveness (/healthz) and readiness (/readyz:
# every bucket answers a one-key List, and the gateway is not draining).
# Off without this block. Loopback by default: metrics show user activity.
# In a container use "0.0.0.0:9090" to be scraped from outside.
metrics {
  listen = "127.0.0.1:9090"
}

# Behind a TCP load balancer (HAProxy send-proxy-v2, AWS NLB with proxy
# protocol v2, ...): the PROXY header carries the real client address for
# allow lists, bans and audit events. Connections from these sources MUST
# send a header; a header from anywhere else is refused. List only the
# balancers' own addresses.
# proxy_protocol {
#   trusted = ["10.0.0.0/24"]
# }
