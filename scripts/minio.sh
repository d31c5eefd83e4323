#!/usr/bin/env bash
# Manage the MinIO server used by integration tests.
#
#   scripts/minio.sh install      build the pinned MinIO into $HOME/.cache/sftpgw/bin (idempotent)
#   scripts/minio.sh start DIR    start MinIO on 127.0.0.1, data/log/pid/env under DIR
#   scripts/minio.sh stop DIR     stop the MinIO started with DIR
#
# After start, `source DIR/env` exports SFTPGW_TEST_S3_ENDPOINT,
# SFTPGW_TEST_S3_ACCESS_KEY, SFTPGW_TEST_S3_SECRET_KEY and SFTPGW_MINIO_BIN.
set -euo pipefail

MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
BIN_DIR="${HOME}/.cache/sftpgw/bin"
MINIO_BIN="${SFTPGW_MINIO_BIN:-${BIN_DIR}/minio}"

die() { echo "minio.sh: $*" >&2; exit 1; }

randhex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }

# port_busy PORT: true if something accepts connections on 127.0.0.1:PORT.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# owns_port PID PORT: PID listens on 127.0.0.1:PORT (ss from iproute2, which
# make test installs; without it, assume yes).
owns_port() {
	command -v ss >/dev/null || return 0
	ss -Hltnp "sport = :$2" 2>/dev/null | grep -q "pid=$1,"
}

# ready PORT [SCHEME]: true once MinIO's liveness endpoint answers 200.
ready() {
	if [[ "${2:-http}" == https ]]; then
		# TLS (a certificate in DIR/certs, e.g. from make bench): curl only.
		curl -fsSk -o /dev/null "https://127.0.0.1:$1/minio/health/live" 2>/dev/null
		return
	fi
	if command -v curl >/dev/null; then
		curl -fsS -o /dev/null "http://127.0.0.1:$1/minio/health/live" 2>/dev/null
		return
	fi
	# No curl (minimal CI images): speak just enough HTTP through bash.
	local status=""
	{ exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
	printf 'GET /minio/health/live HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
	read -r -t 2 status <&3 || true
	exec 3<&-
	[[ "$status" == *" 200 "* ]]
}

# alive DIR: true if the pid recorded in DIR/pid is a running process and
# that process is the MinIO serving DIR/data. A stale pid file (a reboot, a
# MinIO that died) may name an unrelated process that reused the number:
# never signal that one.
alive() {
	[[ -f "$1/pid" ]] || return 1
	local pid
	pid="$(cat "$1/pid")"
	[[ "$pid" =~ ^[0-9]+$ ]] || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	is_our_minio "$pid" "$1"
}

# is_our_minio PID DIR: the process runs a minio binary with DIR/data as its
# data directory (read from /proc: argv is NUL-separated).
is_our_minio() {
	local args=()
	[[ -r "/proc/$1/cmdline" ]] || return 1
	mapfile -d '' -t args <"/proc/$1/cmdline" 2>/dev/null || return 1
	((${#args[@]} > 1)) || return 1
	[[ "$(basename "${args[0]}")" == minio ]] || return 1
	local a
	for a in "${args[@]:1}"; do
		[[ "$a" == "$2/data" ]] && return 0
	done
	return 1
}

cmd_install() {
	if [[ -x "$MINIO_BIN" ]]; then
		return 0
	fi
	mkdir -p "$BIN_DIR"
	# Serialise concurrent installs (parallel CI jobs, several shells): the
	# build takes minutes and two of them racing on one GOBIN helps nobody.
	exec 9>"${BIN_DIR}/.install.lock"
	flock 9
	if [[ -x "$MINIO_BIN" ]]; then
		return 0
	fi
	local tmp
	tmp="$(mktemp -d)"
	# Build outside the repo so our go.mod does not interfere.
	echo "building MinIO ${MINIO_VERSION} (takes a few minutes)..." >&2
	(cd "$tmp" && GOBIN="$BIN_DIR" GOFLAGS= go install "github.com/minio/minio@${MINIO_VERSION}")
	rm -rf "$tmp"
	[[ -x "$MINIO_BIN" ]] || die "install finished but $MINIO_BIN is missing"
}

cmd_start() {
	local dir="${1:?usage: minio.sh start DIR}"
	mkdir -p "$dir"
	dir="$(cd "$dir" && pwd)"
	[[ -x "$MINIO_BIN" ]] || die "no MinIO at $MINIO_BIN; run: scripts/minio.sh install"
	if alive "$dir"; then
		echo "MinIO already running (pid $(cat "$dir/pid")); env in $dir/env"
		return 0
	fi

	local fixed="${SFTPGW_MINIO_PORT:-}" port
	if [[ -n "$fixed" ]] && port_busy "$fixed"; then
		die "port $fixed (SFTPGW_MINIO_PORT) is in use"
	fi

	chmod 700 "$dir"
	mkdir -p "$dir/data" "$dir/certs"
	# Keep the credentials and KMS key with the data: a restart with a new
	# KMS key could not decrypt what is already stored.
	if [[ ! -f "$dir/secrets" ]]; then
		(
			umask 077
			printf 'user=sftpgw%s\npass=%s\nkms=sftpgw-test:%s\n' "$(randhex 6)" "$(randhex 20)" \
				"$(head -c 32 /dev/urandom | base64 | tr -d '\n')" >"$dir/secrets"
		)
	fi
	local user pass kms
	user="$(sed -n 's/^user=//p' "$dir/secrets")"
	pass="$(sed -n 's/^pass=//p' "$dir/secrets")"
	kms="$(sed -n 's/^kms=//p' "$dir/secrets")"

	# MinIO serves TLS when DIR/certs holds public.crt and private.key.
	local scheme=http
	[[ -f "$dir/certs/public.crt" ]] && scheme=https
	# Two runs on one machine (parallel make test, a developer's and CI's)
	# may both find a port free and start on it: the second MinIO cannot
	# bind, and its readiness probe would reach the first one, whose keys
	# it does not have. So a start counts only when our own process holds
	# the port; otherwise it is retried on another port.
	local attempt pid i
	for ((attempt = 0; attempt < 5; attempt++)); do
		port="$fixed"
		if [[ -z "$port" ]]; then
			port=$((19000 + RANDOM % 900))
			while port_busy "$port"; do
				port=$((port + 1))
				((port < 19990)) || die "no free port in 19000-19989"
			done
		fi
		# Credentials go through the environment, never the command line (ps).
		MINIO_ROOT_USER="$user" MINIO_ROOT_PASSWORD="$pass" \
			MINIO_KMS_SECRET_KEY="$kms" MINIO_BROWSER=off MINIO_UPDATE=off \
			nohup "$MINIO_BIN" server --quiet --address "127.0.0.1:${port}" \
			--certs-dir "$dir/certs" "$dir/data" >"$dir/minio.log" 2>&1 &
		pid=$!
		echo "$pid" >"$dir/pid"
		for ((i = 0; i < 300; i++)); do
			if ready "$port" "$scheme"; then
				break
			fi
			# Our own child: kill -0 is enough. Not alive(): until the forked
			# shell has exec'd minio, its cmdline is still bash's.
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if ((i < 300)) && kill -0 "$pid" 2>/dev/null && owns_port "$pid" "$port"; then
			break
		fi
		if kill -0 "$pid" 2>/dev/null && ((i >= 300)); then
			kill "$pid"
			die "MinIO not ready after 30s (log: $dir/minio.log)"
		fi
		# Died, or another server answers on the port: try another one.
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		rm -f "$dir/pid"
		[[ -z "$fixed" ]] || { tail -n 20 "$dir/minio.log" >&2 || true; die "MinIO could not start on port $fixed (log: $dir/minio.log)"; }
		echo "minio.sh: port $port taken by another server; retrying" >&2
	done
	((attempt < 5)) || { tail -n 20 "$dir/minio.log" >&2 || true; die "MinIO exited during startup (log: $dir/minio.log)"; }
	local endpoint="${scheme}://127.0.0.1:${port}"

	umask 077
	cat >"$dir/env" <<ENV
export SFTPGW_TEST_S3_ENDPOINT=${endpoint}
export SFTPGW_TEST_S3_ACCESS_KEY=${user}
export SFTPGW_TEST_S3_SECRET_KEY=${pass}
export SFTPGW_MINIO_BIN=${MINIO_BIN}
ENV
	echo "MinIO running at $endpoint (pid $(cat "$dir/pid")); source $dir/env"
}

cmd_stop() {
	local dir="${1:?usage: minio.sh stop DIR}"
	[[ -d "$dir" ]] || return 0
	dir="$(cd "$dir" && pwd)"
	if ! alive "$dir"; then
		rm -f "$dir/pid"
		return 0
	fi
	local pid
	pid="$(cat "$dir/pid")"
	kill "$pid"
	local i
	for ((i = 0; i < 100; i++)); do
		is_our_minio "$pid" "$dir" || break
		sleep 0.1
	done
	# Checked again right before SIGKILL: the pid may have been reused.
	if is_our_minio "$pid" "$dir"; then kill -9 "$pid"; fi
	rm -f "$dir/pid"
}

case "${1:-}" in
install) cmd_install ;;
start) cmd_start "${2:-}" ;;
stop) cmd_stop "${2:-}" ;;
*) die "usage: $0 install | start DIR | stop DIR" ;;
esac
