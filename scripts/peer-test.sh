#!/usr/bin/env bash
# make peer-test: rclone's own SFTP backend integration suite (fstests, the
# one rclone runs against its SFTP test servers) against the gateway over a
# private MinIO, and against OpenSSH internal-sftp with the same rclone
# settings, for comparison.
#
# rclone's source comes through the Go module proxy as a dependency of a
# throwaway module in $PEER_CACHE (never in this repository); its test binary
# is built once per pinned version and reused.
#
# Every failing test (a leaf: no failing subtest of its own) must be listed
# in scripts/peer-test.expected with a reason; a failure not listed fails the
# run, and a listed one that now passes is reported (and fails the run with
# PEER_STRICT=1) so the list is kept honest.
#
# Knobs (environment):
#   RCLONE_VERSIONS="v1.76.0 v1.75.1"  the rclone module versions run (pinned)
#   PEER_CACHE=~/.cache/sftpgw  test binaries are built in rclone-peer-VERSION there
#   PEER_TARGETS="gw openssh"  which servers to run against
#   PEER_KEEP=1              keep the scratch directory (logs, go test output)
#   PEER_STRICT=1            a listed failure that passes fails the run too
#   SFTPGW_BIN=bin/sftpgw    the gateway binary run
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

# Two versions: v1.75.1 removes a failed upload while its handle is still
# open (as rclone did before 1.76); v1.76.0 closes the handle first.
RCLONE_VERSIONS="${RCLONE_VERSIONS:-v1.76.0 v1.75.1}"
cachebase="${PEER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sftpgw}"
targets="${PEER_TARGETS:-gw openssh}"
expected="$repo/scripts/peer-test.expected"

die() { echo "peer-test: $*" >&2; exit 1; }
say() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

gwbin="${SFTPGW_BIN:-$repo/bin/sftpgw}"
[[ -x "$gwbin" ]] || die "$gwbin is missing: run 'make peer-test' (or 'make build' first)"
[[ -x /usr/sbin/sshd ]] || die "/usr/sbin/sshd is missing: run scripts/deps.sh"
[[ -f "$expected" ]] || die "$expected is missing"

# --- rclone's test binaries ---------------------------------------------------
# build_suite VERSION: rclone's backend/sftp test binary, built once per version.
build_suite() {
	local v="$1" cache="$cachebase/rclone-peer-$1"
	if [[ ! -x "$cache/sftp.test" ]]; then
		say "building rclone $v backend/sftp tests in $cache (once per version)"
		mkdir -p "$cache"
		printf 'module sftpgw.local/rclonepeer\n\ngo 1.26.0\n\nrequire github.com/rclone/rclone %s\n' "$v" >"$cache/go.mod"
		printf '%s\n' '// Package rclonepeer only pins rclone so its SFTP backend tests can be built.' \
			'package rclonepeer' '' 'import (' \
			'	_ "github.com/rclone/rclone/backend/sftp"' \
			'	_ "github.com/rclone/rclone/fstest/fstests"' ')' >"$cache/deps.go"
		(cd "$cache" && go mod tidy && go test -c -o sftp.test.tmp github.com/rclone/rclone/backend/sftp &&
			mv sftp.test.tmp sftp.test) || die "could not build rclone $v's backend/sftp tests"
	fi
	# fstests looks for rclone's test server scripts (init.d/REMOTE) from the
	# working directory up; an empty one means: the servers are already running.
	mkdir -p "$cache/fstest/testserver/init.d"
}
for v in $RCLONE_VERSIONS; do build_suite "$v"; done

# --- scratch, MinIO, keys ---------------------------------------------------
work="$(mktemp -d /tmp/sftpgw-peer.XXXXXX)"
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	./scripts/minio.sh stop "$work/minio" >/dev/null 2>&1 || true
	if [[ -n "${PEER_KEEP:-}" ]]; then
		echo "peer-test: scratch directory kept: $work" >&2
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT

# shellcheck source=scripts/ports.sh
source scripts/ports.sh # the cd above made the repository root the working directory

ssh-keygen -q -t ed25519 -N '' -C peer -f "$work/client_key"
rcconf="$work/rclone.conf"
: >"$rcconf"

# The same rclone settings for both servers: only address and user differ.
# shell_type none: neither server runs commands (no md5sum/sha1sum, no df).
# Each server is run twice: with rclone's default encoding for sftp, and as
# "NAME-enc" with the encoding docs/rclone.md tells users of the gateway to
# set, which maps the characters the gateway refuses to look-alikes.
encoding="Slash,Ctl,Del,Dot,BackSlash,LeftSpace,RightSpace,InvalidUtf8"
remote() { # NAME PORT USER
	remote1 "$@"
	remote1 "$1-enc" "$2" "$3"
	echo "encoding = $encoding" >>"$rcconf"
	echo >>"$rcconf"
}
remote1() { # NAME PORT USER
	cat >>"$rcconf" <<EOF
[$1]
type = sftp
host = 127.0.0.1
port = $2
user = $3
key_file = $work/client_key
shell_type = none
md5sum_command = none
sha1sum_command = none
EOF
}

if [[ " $targets " == *" gw "* ]]; then
	say "starting MinIO"
	./scripts/minio.sh start "$work/minio" >/dev/null
	# shellcheck disable=SC1091
	source "$work/minio/env"
	go run ./bench/raws3 mkbucket peer
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
  bucket     = "peer"
  region     = "us-east-1"
  endpoint   = "${SFTPGW_TEST_S3_ENDPOINT}"
  path_style = true
  sse        = "AES256"
}

# Like the example's partner role, with every permission and no address limit.
role "partner" {
  storage     = "files"
  home        = "partner/{name}/"
  permissions = ["*"]
}
HCL
	"$gwbin" user add --users "$work/gw/users.hcl" --role partner --key "$work/client_key.pub" --name peer >/dev/null
	say "starting the gateway on 127.0.0.1:${gwport}"
	AWS_ACCESS_KEY_ID="$SFTPGW_TEST_S3_ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$SFTPGW_TEST_S3_SECRET_KEY" \
		"$gwbin" serve --config "$work/gw/sftpgw.hcl" >"$work/gw/log" 2>&1 &
	pids+=("$!")
	wait_port "$gwport" "$!" "$work/gw/log"
	remote gw "$gwport" peer
fi

if [[ " $targets " == *" openssh "* ]]; then
	mkdir -p "$work/sshd/home"
	[[ -d /run/sshd ]] || mkdir -p /run/sshd 2>/dev/null || die "sshd needs /run/sshd (create it as root)"
	ssh-keygen -q -t ed25519 -N '' -f "$work/sshd/ssh_host_ed25519_key"
	cp "$work/client_key.pub" "$work/sshd/authorized_keys"
	sshport="$(free_port)"
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
LogLevel ERROR
ForceCommand internal-sftp -d ${work}/sshd/home
Subsystem sftp internal-sftp -d ${work}/sshd/home
CONF
	say "starting OpenSSH sshd (internal-sftp) on 127.0.0.1:${sshport}"
	/usr/sbin/sshd -D -e -f "$work/sshd/sshd_config" 2>"$work/sshd/log" &
	pids+=("$!")
	wait_port "$sshport" "$!" "$work/sshd/log"
	remote openssh "$sshport" "$(id -un)"
fi

# --- run the suite -----------------------------------------------------------
# failed_leaves LOG: failing tests none of whose subtests failed.
failed_leaves() {
	sed -n 's/^ *--- FAIL: \([^ ]*\) .*/\1/p' "$1" | sort -u >"$1.failed"
	awk 'NR==FNR { f[$0]=1; next } { leaf=1; for (g in f) if (index(g, $0 "/") == 1) { leaf=0; break } if (leaf) print }' \
		"$1.failed" "$1.failed"
}

status=0
runs=""
for t in $targets; do runs+=" $t $t-enc"; done
for v in $RCLONE_VERSIONS; do
for t in $runs; do
	cache="$cachebase/rclone-peer-$v"
	testbin="$cache/sftp.test"
	id="$t@$v"
	log="$work/$id.log"
	say "rclone $v fstests against $t"
	start=$SECONDS
	set +e
	(cd "$cache" && RCLONE_CONFIG="$rcconf" "$testbin" -test.run '^TestIntegration$' -test.v \
		-test.timeout 15m -remote "$t:") >"$log" 2>&1
	rc=$?
	set -e
	passed=$(grep -c '^ *--- PASS' "$log" || true)
	failed_leaves "$log" >"$work/$id.fail"
	say "$id: go test exit $rc, $passed passed, $(wc -l <"$work/$id.fail") failed (leaves), $((SECONDS - start))s"
	if [[ $rc -ne 0 && ! -s "$work/$id.fail" ]]; then
		tail -n 30 "$log" >&2
		echo "peer-test: $id: the suite failed without a failing test (build, panic or timeout)" >&2
		status=1
		continue
	fi
	# Expected: "TARGET[@VERSION] TEST  reason" lines; "#" starts a comment.
	awk -v t="$t" -v id="$id" '$1 == t || $1 == id { print $2 }' "$expected" | sort -u >"$work/$id.expected"
	new=$(comm -23 "$work/$id.fail" "$work/$id.expected")
	fixed=$(comm -13 "$work/$id.fail" "$work/$id.expected")
	if [[ -n "$new" ]]; then
		echo "peer-test: $id: NEW failures (not in scripts/peer-test.expected):" >&2
		while read -r n; do
			echo "  $n" >&2
			# The test's own lines: what rclone saw.
			grep -F -A12 -- "=== RUN   $n" "$log" | sed 's/^/      /' | head -14 >&2 || true
		done <<<"$new"
		status=1
	fi
	if [[ -n "$fixed" ]]; then
		# A listed test that neither failed nor passed did not run (a parent stopped).
		echo "peer-test: $id: listed as expected failures but did not fail now (fixed, or not run):" >&2
		while read -r n; do
			if grep -q -- "--- PASS: $n " "$log"; then echo "  $n (passes)" >&2; else echo "  $n (not run)" >&2; fi
		done <<<"$fixed"
		[[ -z "${PEER_STRICT:-}" ]] || status=1
	fi
	[[ -n "$new" ]] || say "$id: every failure is an expected one"
done
done
if [[ $status -ne 0 ]]; then PEER_KEEP=1; fi
exit "$status"
