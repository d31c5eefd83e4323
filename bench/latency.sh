#!/usr/bin/env bash
# bench/latency.sh: the gateway with S3 at a round-trip time, not on loopback.
#
# Starts a private MinIO, bench/delayproxy in front of it (each chunk
# delayed BENCH_S3_DELAY each way: 10ms = 20 ms RTT, like S3 in-region),
# the gateway over the proxy, then with stock OpenSSH sftp:
#   - `ls -1` of BENCH_LIST objects (made directly in MinIO): the first
#     listing, then the same listing again twice;
#   - BENCH_SMALL x 64 KiB put in one session, and the same number of
#     sequential PUTs through the proxy (the floor for any S3 gateway).
# Prints one line per figure. Knobs: BENCH_S3_DELAY=10ms (0: no proxy),
# BENCH_LIST=10000, BENCH_SMALL=200, SFTPGW_BIN (default bin/sftpgw: compare
# two builds by pointing it at each). With SFTPGW_TEST_S3_ENDPOINT (and its
# keys) set, that MinIO is used (a new bucket per run) instead of a new one.
set -euo pipefail
cd "$(dirname "$0")/.."

DELAY="${BENCH_S3_DELAY:-10ms}"
LIST="${BENCH_LIST:-10000}"
SMALL="${BENCH_SMALL:-200}"
GW="${SFTPGW_BIN:-bin/sftpgw}"
BUCKET="bench-$(date +%s)-$$"

die() { echo "latency: $*" >&2; exit 1; }
[[ -x "$GW" ]] || die "$GW is missing: make build (or set SFTPGW_BIN)"

work="$(mktemp -d /tmp/sftpgw-latency.XXXXXX)"
own_minio="${SFTPGW_TEST_S3_ENDPOINT:-}"
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	[[ -n "$own_minio" ]] || ./scripts/minio.sh stop "$work/minio" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

# shellcheck source=scripts/ports.sh
source scripts/ports.sh # the cd above made the repository root the working directory
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }

go build -o "$work/bin/" ./bench/raws3 ./bench/delayproxy
if [[ -z "$own_minio" ]]; then
	./scripts/minio.sh start "$work/minio" >/dev/null
	# shellcheck disable=SC1091
	source "$work/minio/env"
fi
"$work/bin/raws3" mkbucket "$BUCKET"
"$work/bin/raws3" mkobjects "$BUCKET" "bench/list/f" "$LIST"

s3="$SFTPGW_TEST_S3_ENDPOINT"
if [[ "$DELAY" != 0 ]]; then
	coproc PROXY { exec "$work/bin/delayproxy" -to "${SFTPGW_TEST_S3_ENDPOINT#http://}" -delay "$DELAY"; }
	pids+=("$PROXY_PID")
	read -r addr <&"${PROXY[0]}"
	s3="http://$addr"
fi

ssh-keygen -q -t ed25519 -N '' -C bench -f "$work/client_key"
mkdir -p "$work/gw"
gwport="$(free_port)"
cat >"$work/gw/sftpgw.hcl" <<HCL
listen     = "127.0.0.1:${gwport}"
host_keys  = ["${work}/gw/ssh_host_ed25519_key"]
users_file = "${work}/gw/users.hcl"
log_level  = "warn"

storage "files" {
  type       = "s3"
  bucket     = "${BUCKET}"
  region     = "us-east-1"
  endpoint   = "${s3}"
  path_style = true
  sse        = "AES256"
}

role "bench" {
  storage     = "files"
  home        = "bench/"
  permissions = ["*"]
}
HCL
"$GW" user add --users "$work/gw/users.hcl" --role bench --key "$work/client_key.pub" --name bench >/dev/null
AWS_ACCESS_KEY_ID="$SFTPGW_TEST_S3_ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$SFTPGW_TEST_S3_SECRET_KEY" \
	AWS_EC2_METADATA_DISABLED=true "$GW" serve --config "$work/gw/sftpgw.hcl" 2>"$work/gw/log" &
pids+=("$!")
wait_port "$gwport" "$!" "$work/gw/log"

sftp_b() {
	printf '%s\n' "$@" >"$work/batch"
	sftp -q -b "$work/batch" -P "$gwport" -i "$work/client_key" -o StrictHostKeyChecking=no \
		-o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR bench@127.0.0.1
}

echo "S3 delay ${DELAY} each way; gateway $GW ($("$GW" version 2>/dev/null | awk '{print $2}'))"
sleep 2 # times are only remembered for objects at least 2 s old (docs/file-times.md)
for what in first again again; do
	t=$(now)
	n=$(sftp_b "ls -1 list" | grep -c '^list/f' || true)
	[[ "$n" == "$LIST" ]] || die "ls showed $n entries, want $LIST"
	printf 'ls -1 of %d (%s): %.2f s\n' "$LIST" "$what" "$(since "$t")"
done

mkdir -p "$work/small"
for ((i = 0; i < SMALL; i++)); do head -c 65536 /dev/urandom >"$work/small/f$i"; done
t=$(now)
SFTPGW_TEST_S3_ENDPOINT="$s3" "$work/bin/raws3" mkobjects -size 65536 -workers 1 "$BUCKET" raw/f "$SMALL"
printf '%d x 64 KiB, sequential PUTs: %.2f s\n' "$SMALL" "$(since "$t")"
t=$(now)
sftp_b "-mkdir small" "put $work/small/* small/" >/dev/null
printf '%d x 64 KiB, sftp put: %.2f s\n' "$SMALL" "$(since "$t")"
for what in first again; do
	t=$(now)
	sftp_b "ls -l small" >/dev/null
	printf 'ls -l of %d just written (%s): %.2f s\n' "$SMALL" "$what" "$(since "$t")"
done
