#!/usr/bin/env bash
# Runs every fuzz target of the project for a while each; the one list of
# targets (make fuzz and scripts/test.sh both call this).
#
#   scripts/fuzz.sh [FUZZTIME [TARGET...]]   default 10s per target, all targets
#   scripts/fuzz.sh --list
#
# Any failure fails the run: a crasher, a handler panic the gateway
# recovered, a hang, a lost connection, or a fuzz worker that died (go test
# -fuzz discards a worker's stderr; the targets that run a server write the
# crash text to $SFTPGW_FUZZ_CRASH_DIR, printed here). The failing input is
# saved by go test under PKG/testdata/fuzz/TARGET/: rerun it with
# `go test ./PKG -run TARGET/NAME`, and keep it there as a regression seed
# once fixed.
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime=${1:-10s}
only=("${@:2}")

# package target
targets=(
	"./vfs FuzzCleanPath"
	"./proxyproto FuzzRead"
	"./gateway FuzzSFTPPackets"
	"./authn FuzzParseUsers"
	"./config FuzzParse"
)

if [[ "${1:-}" == --list ]]; then
	printf '%s\n' "${targets[@]}"
	exit 0
fi

# A fuzz target added to the code but not to the list above fails the run.
missing=0
while IFS=: read -r file fn; do
	pkg="./$(dirname "$file")"
	if ! printf '%s\n' "${targets[@]}" | grep -qx "$pkg $fn"; then
		echo "fuzz.sh: $fn in $file is not in the list of targets" >&2
		missing=1
	fi
done < <(git grep -o '^func Fuzz[A-Za-z0-9_]*' -- '*_test.go' | sed 's/func //')
((missing == 0)) || exit 1

crashdir=$(mktemp -d /tmp/sftpgw-fuzz.XXXXXX)
trap 'rm -rf "$crashdir"' EXIT
export SFTPGW_FUZZ_CRASH_DIR=$crashdir

status=0
for t in "${targets[@]}"; do
	read -r pkg target <<<"$t"
	if ((${#only[@]} > 0)) && ! printf '%s\n' "${only[@]}" | grep -qx "$target"; then
		continue
	fi
	rm -f "$crashdir"/*
	if out=$(go test "$pkg" -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" 2>&1); then
		echo "fuzz $target: ok ($(grep -o 'execs: [0-9]*' <<<"$out" | tail -1))"
		continue
	fi
	echo "$out" | tail -40
	for c in "$crashdir"/*; do
		[[ -s "$c" ]] || continue
		echo "--- crash output of a fuzz worker ($target):"
		head -c 20000 "$c"
	done
	if ! grep -q "Failing input written to" <<<"$out"; then
		echo "(a seed or an input already in the cached corpus failed: it is named above)"
	fi
	echo "fuzz $target: FAILED"
	status=1
done
exit "$status"
