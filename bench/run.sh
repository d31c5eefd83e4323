#!/usr/bin/env bash
# make bench: the gateway against OpenSSH's own sftp server (local disk) and
# against talking to S3 directly, on this machine, in one run.
#
# Starts a private MinIO (SSE-S3), the gateway binary (bin/sftpgw serve) over
# it, an OpenSSH sshd with internal-sftp on a temp directory, then runs
# bench/driver, which prints a table and writes bench/results/*.json.
#
# Knobs (environment):
#   BENCH_REPS=3        repetitions of each 1 GiB transfer (min and median are reported)
#   BENCH_SIZE=1GiB     size of the big file
#   BENCH_VARIANTS=1    also time 32 KiB requests and each cipher (0: skip, ~3 min less)
#   BENCH_SMALL=1000    number of 64 KiB files; BENCH_LIST=10000 objects listed
#   BENCH_RCLONE=1      also measure `rclone serve sftp` over the same MinIO
#   SFTPGO_BIN=PATH     also measure SFTPGo (portable mode) over the same MinIO
#   BENCH_TLS=1         MinIO over HTTPS, as S3 is in production: the SDK then sends
#                       UNSIGNED-PAYLOAD instead of hashing every part with SHA-256
#   BENCH_KEEP=1        keep the scratch directory (logs, configs)
#   BENCH_QUICK=1       only idle memory and the big transfers (iterating on the data path)
#   BENCH_PART=8MiB BENCH_CONC=4   the storage block's part_size and upload_concurrency
#   BENCH_GW_ENV="..."  extra environment for the gateway, e.g. "GOGC=50 GODEBUG=gctrace=1"
set -euo pipefail
cd "$(dirname "$0")/.."

REPS="${BENCH_REPS:-3}"
SIZE="${BENCH_SIZE:-1GiB}"
VARIANTS="${BENCH_VARIANTS:-1}"
SMALL="${BENCH_SMALL:-1000}"
LIST="${BENCH_LIST:-10000}"
MFA_USERS=200 # a TOTP code is accepted once per user and step: one user per login
BUCKET=bench

die() { echo "bench: $*" >&2; exit 1; }
say() { echo "[$(date +%H:%M:%S)] $*" >&2; }

[[ -x bin/sftpgw ]] || die "bin/sftpgw is missing: run 'make bench' (or 'make build' first)"
command -v sftp >/dev/null || die "OpenSSH sftp is missing: run scripts/deps.sh"
[[ -x /usr/sbin/sshd ]] || die "/usr/sbin/sshd is missing: run scripts/deps.sh"

work="$(mktemp -d /tmp/sftpgw-bench.XXXXXX)"
# The client's own files (the 1 GiB source, downloads) live on tmpfs when
# there is one, so client-side disk writeback does not blur server timings.
# Servers write to disk: MinIO's data and the OpenSSH directory are in $work.
client="$work/client"
if [[ -d /dev/shm && -w /dev/shm ]]; then
	client="$(mktemp -d /dev/shm/sftpgw-bench.XXXXXX)"
fi
mkdir -p "$client"
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	./scripts/minio.sh stop "$work/minio" >/dev/null 2>&1 || true
	[[ "$client" == "$work"/* ]] || rm -rf "$client"
	if [[ -n "${BENCH_KEEP:-}" ]]; then
		echo "bench: scratch directory kept: $work" >&2
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT

# shellcheck source=scripts/ports.sh
source scripts/ports.sh # the cd above made the repository root the working directory

say "building bench tools"
mkdir -p "$work/bin"
go build -o "$work/bin/" ./bench/raws3 ./bench/sshload ./bench/driver

say "starting MinIO"
if [[ "${BENCH_TLS:-}" == 1 ]]; then
	mkdir -p "$work/minio/certs"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=127.0.0.1 \
		-addext subjectAltName=IP:127.0.0.1 -keyout "$work/minio/certs/private.key" \
		-out "$work/minio/certs/public.crt" 2>/dev/null
	# Every SDK client here (gateway, raws3, driver) trusts it through this.
	export AWS_CA_BUNDLE="$work/minio/certs/public.crt"
fi
./scripts/minio.sh start "$work/minio" >/dev/null
# shellcheck disable=SC1091
source "$work/minio/env"
"$work/bin/raws3" mkbucket "$BUCKET"

ssh-keygen -q -t ed25519 -N '' -C bench -f "$work/client_key"

# --- the gateway ---------------------------------------------------------------
mkdir -p "$work/gw"
gwport="$(free_port)"
cat >"$work/gw/sftpgw.hcl" <<HCL
listen     = "127.0.0.1:${gwport}"
host_keys  = ["${work}/gw/ssh_host_ed25519_key"]
users_file = "${work}/gw/users.hcl"
log_level  = "info"
log_format = "json"

storage "files" {
  type       = "s3"
  bucket     = "${BUCKET}"
  region     = "us-east-1"
  endpoint   = "${SFTPGW_TEST_S3_ENDPOINT}"
  path_style = true
  sse        = "AES256"
${BENCH_PART:+  part_size = \"${BENCH_PART}\"}
${BENCH_CONC:+  upload_concurrency = ${BENCH_CONC}}
}

role "bench" {
  storage     = "files"
  home        = "bench/"
  permissions = ["*"]
  max_sessions_per_user = 0 # sshload holds 200 sessions of this one user
}

role "benchmfa" {
  storage     = "files"
  home        = "bench/"
  permissions = ["*"]
  mfa         = true
}
HCL
say "creating users (1 key-only, ${MFA_USERS} key+TOTP)"
bin/sftpgw user add --users "$work/gw/users.hcl" --role bench --key "$work/client_key.pub" --name bench >/dev/null
(
	# A key belongs to one user only, so every MFA user gets its own.
	umask 077
	mkdir -p "$work/mfa"
	for ((i = 0; i < MFA_USERS; i++)); do
		name="$(printf 'mfa%03d' "$i")"
		ssh-keygen -q -t ed25519 -N '' -C "$name" -f "$work/mfa/$name"
		secret="$(bin/sftpgw user add --users "$work/gw/users.hcl" --role benchmfa --mfa \
			--key "$work/mfa/$name.pub" --name "$name" | sed -n 's/^otpauth:.*[?&]secret=\([A-Z2-7]*\).*/\1/p')"
		[[ -n "$secret" ]] || die "no TOTP secret printed for $name"
		echo "$name $secret $work/mfa/$name"
	done >"$work/totp"
)

say "starting the gateway on 127.0.0.1:${gwport}"
AWS_ACCESS_KEY_ID="$SFTPGW_TEST_S3_ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$SFTPGW_TEST_S3_SECRET_KEY" \
	AWS_EC2_METADATA_DISABLED=true env ${BENCH_GW_ENV:-} \
	bin/sftpgw serve --config "$work/gw/sftpgw.hcl" 2>"$work/gw/log" &
gwpid=$!
pids+=("$gwpid")
wait_port "$gwport" "$gwpid" "$work/gw/log"

# --- OpenSSH to local disk --------------------------------------------------------
mkdir -p "$work/sshd/home"
[[ -d /run/sshd ]] || mkdir -p /run/sshd 2>/dev/null || die "sshd needs /run/sshd (create it as root)"
ssh-keygen -q -t ed25519 -N '' -f "$work/sshd/ssh_host_ed25519_key"
cp "$work/client_key.pub" "$work/sshd/authorized_keys"
sshport="$(free_port)"
while [[ "$sshport" == "$gwport" ]]; do sshport="$(free_port)"; done
cat >"$work/sshd/sshd_config" <<CONF
Port ${sshport}
ListenAddress 127.0.0.1
HostKey ${work}/sshd/ssh_host_ed25519_key
PidFile ${work}/sshd/pid
AuthorizedKeysFile ${work}/sshd/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
MaxStartups 100:30:200
LogLevel ERROR
Subsystem sftp internal-sftp -d ${work}/sshd/home
CONF
say "starting OpenSSH sshd on 127.0.0.1:${sshport}"
/usr/sbin/sshd -D -e -f "$work/sshd/sshd_config" 2>"$work/sshd/log" &
sshdpid=$!
pids+=("$sshdpid")
wait_port "$sshport" "$sshdpid" "$work/sshd/log"

# --- optional other gateways over the same MinIO -------------------------------------
extra=""
if [[ "${BENCH_RCLONE:-}" == 1 ]] && command -v rclone >/dev/null; then
	rport="$(free_port)"
	say "starting rclone serve sftp on 127.0.0.1:${rport}"
	ssh-keygen -q -t ed25519 -N '' -f "$work/rclone_host_key"
	# Credentials via the environment, not the command line.
	RCLONE_S3_PROVIDER=Minio RCLONE_S3_ENDPOINT="$SFTPGW_TEST_S3_ENDPOINT" \
		RCLONE_S3_ACCESS_KEY_ID="$SFTPGW_TEST_S3_ACCESS_KEY" RCLONE_S3_SECRET_ACCESS_KEY="$SFTPGW_TEST_S3_SECRET_KEY" \
		RCLONE_S3_SERVER_SIDE_ENCRYPTION=AES256 RCLONE_CONFIG=/dev/null \
		rclone serve sftp ":s3:${BUCKET}/bench" --addr "127.0.0.1:${rport}" --key "$work/rclone_host_key" \
		--authorized-keys "$work/client_key.pub" 2>"$work/rclone.log" &
	pids+=("$!")
	wait_port "$rport" "$!" "$work/rclone.log"
	extra+="rclone=127.0.0.1:${rport},bench,$!;"
fi
if [[ -n "${SFTPGO_BIN:-}" ]]; then
	[[ -x "$SFTPGO_BIN" ]] || die "SFTPGO_BIN=$SFTPGO_BIN is not executable"
	sport="$(free_port)"
	say "starting SFTPGo (portable) on 127.0.0.1:${sport}"
	mkdir -p "$work/sftpgo"
	# Portable mode takes the S3 secret as a flag; it only lives in this
	# private, short-lived process on a loopback bench.
	(cd "$work/sftpgo" && exec "$SFTPGO_BIN" portable --sftpd-port "$sport" --username bench \
		--public-key "$(cat "$work/client_key.pub")" --permissions '*' --fs-provider s3fs \
		--s3-bucket "$BUCKET" --s3-region us-east-1 --s3-endpoint "$SFTPGW_TEST_S3_ENDPOINT" \
		--s3-access-key "$SFTPGW_TEST_S3_ACCESS_KEY" --s3-access-secret "$SFTPGW_TEST_S3_SECRET_KEY" \
		--s3-force-path-style --s3-key-prefix bench/ --log-file-path "$work/sftpgo/log") >"$work/sftpgo/out" 2>&1 &
	pids+=("$!")
	wait_port "$sport" "$!" "$work/sftpgo/out"
	extra+="sftpgo=127.0.0.1:${sport},bench,$!;"
fi

mkdir -p bench/results
out="bench/results/bench-$(date +%Y%m%dT%H%M%S).json"
vflag=true
[[ "$VARIANTS" == 1 ]] || vflag=false
SFTPGW_VERSION="$(bin/sftpgw version 2>/dev/null | awk '{print $2}')" \
	"$work/bin/driver" -work "$work" -client-dir "$client" -bin "$work/bin" -key "$work/client_key" -bucket "$BUCKET" \
	-gw "127.0.0.1:${gwport}" -gw-pid "$gwpid" -gw-hostkey "$work/gw/ssh_host_ed25519_key.pub" \
	-totp "$work/totp" -sshd "127.0.0.1:${sshport}" -sshd-user "$(id -un)" -sshd-dir "$work/sshd/home" \
	-minio-pid "$(cat "$work/minio/pid")" -reps "$REPS" -size "$SIZE" -small "$SMALL" -list "$LIST" \
	-variants="$vflag" -quick="${BENCH_QUICK:-0}" -extra "$extra" -out "$out"
