#!/usr/bin/env bash
# Mutation testing with gremlins (github.com/go-gremlins/gremlins): each
# mutant (a flipped condition, a changed boundary or operator) is compiled
# into a copy of the module and the package's tests are run; a mutant the
# tests do not notice "lived". See docs/mutation.md.
#
#   scripts/mutate.sh install           build the pinned gremlins into $HOME/.cache/sftpgw/bin
#   scripts/mutate.sh run [PKG...]      mutate PKG (default: vfs authn audit/trail gateway vfs/s3store)
#   scripts/mutate.sh integration [PKG...]
#                                       the same with MinIO up (scripts/minio.sh), so the
#                                       tests that need S3 run too
#
# Settings (environment):
#   MUTATE_OUT      report directory (default /tmp/sftpgw-mutate); per package
#                   PKG.json (gremlins' machine-readable report) and PKG.log
#   MUTATE_WORKERS  parallel mutants (default 1: the build dominates, and a busy
#                   machine turns slow runs into false "timed out")
#   MUTATE_TIMEOUT_COEFFICIENT
#                   a mutant's test run may take this many times the coverage
#                   run (default 10: generous, for the same reason)
#   MUTATE_NICE     niceness of the whole run (default 10)
#   MUTATE_EXCLUDE  regexp of files to leave out, relative to the package
#                   directory (e.g. '^(fs|writer)\.go$')
#
# The run works on a snapshot of the working tree (tracked and untracked,
# not ignored files): gremlins reads each source file only when it reaches
# it, so a rebase during a long run would otherwise mix two versions.
#
# Each package is mutated on its own: its subpackages' files are excluded (a
# subpackage is listed separately, e.g. vfs/s3store), and only the package's
# own tests run against its mutants. Not part of make test: it takes hours on
# a small machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN="${GOTOOLCHAIN:-go1.27.3}"
# gremlins times each mutant's run against its coverage run: a coverage run
# answered from the test cache would make that budget seconds.
export GOFLAGS="${GOFLAGS:-} -count=1"

GREMLINS_VERSION=v0.6.0
BIN_DIR="${HOME}/.cache/sftpgw/bin"
GREMLINS="$BIN_DIR/gremlins-$GREMLINS_VERSION"
DEFAULT_PKGS=(vfs authn audit/trail gateway vfs/s3store)
OUT="${MUTATE_OUT:-/tmp/sftpgw-mutate}"
WORKERS="${MUTATE_WORKERS:-1}"
COEFF="${MUTATE_TIMEOUT_COEFFICIENT:-10}"
NICE="${MUTATE_NICE:-10}"

die() { echo "mutate.sh: $*" >&2; exit 1; }

cmd_install() {
	[[ -x "$GREMLINS" ]] && return 0
	mkdir -p "$BIN_DIR"
	local tmp
	tmp="$(mktemp -d)"
	# Outside the repo, so our go.mod does not pick gremlins' dependencies.
	(cd "$tmp" && GOBIN="$tmp" GOFLAGS=-mod=mod go install "github.com/go-gremlins/gremlins/cmd/gremlins@$GREMLINS_VERSION")
	mv "$tmp/gremlins" "$GREMLINS"
	rm -rf "$tmp"
}

# summary PKG: one line from gremlins' JSON report.
summary() {
	local json="$OUT/${1//\//_}.json"
	[[ -f "$json" ]] || { printf '%-12s no report (%s)\n' "$1" "$json"; return; }
	jq -r --arg p "$1" '
		[.files[].mutations[].status] as $s
		| def n(x): [$s[] | select(. == x)] | length;
		"\($p)\ttotal \($s | length)\tkilled \(n("KILLED"))\tlived \(n("LIVED"))\tnot covered \(n("NOT COVERED"))\ttimed out \(n("TIMED OUT"))\tnot viable \(n("NOT VIABLE"))\tefficacy \(.test_efficacy * 100 | round / 100)%"' "$json"
}

# survivors PKG: file:line:col TYPE of each mutant that lived.
survivors() {
	local json="$OUT/${1//\//_}.json"
	[[ -f "$json" ]] || return 0
	jq -r --arg p "$1" '.files[] | .file_name as $f | .mutations[]
		| select(.status == "LIVED") | "\($p)/\($f):\(.line):\(.column) \(.type)"' "$json"
}

cmd_run() {
	cmd_install
	(($# > 0)) || set -- "${DEFAULT_PKGS[@]}"
	mkdir -p "$OUT"
	local snap pkg name
	snap="$(mktemp -d /tmp/sftpgw-mutate-src.XXXXXX)"
	trap 'rm -rf "'"$snap"'"' RETURN
	git ls-files -z -co --exclude-standard | xargs -0 cp --parents -t "$snap"
	{ git rev-parse HEAD && git status --short; } >"$OUT/commit" 2>/dev/null || true
	local exclude=(-E /) # files in subdirectories are other packages
	[[ -n "${MUTATE_EXCLUDE:-}" ]] && exclude+=(-E "$MUTATE_EXCLUDE")
	for pkg in "$@"; do
		[[ -d "$pkg" ]] || die "no package directory $pkg"
		name="${pkg//\//_}"
		echo "mutate.sh: $pkg (report $OUT/$name.json)" >&2
		(cd "$snap/$pkg" && nice -n "$NICE" "$GREMLINS" unleash --workers "$WORKERS" \
			--timeout-coefficient "$COEFF" "${exclude[@]}" -o "$OUT/$name.json") >"$OUT/$name.log" 2>&1 ||
			echo "mutate.sh: gremlins failed on $pkg, see $OUT/$name.log" >&2
	done
	echo
	for pkg in "$@"; do summary "$pkg"; done | column -t -s $'\t'
	echo
	echo "survivors:"
	for pkg in "$@"; do survivors "$pkg"; done
}

cmd_integration() {
	./scripts/minio.sh install
	local dir
	dir="$(mktemp -d /tmp/sftpgw-mutate-minio.XXXXXX)"
	./scripts/minio.sh start "$dir"
	trap './scripts/minio.sh stop "'"$dir"'"' EXIT
	# shellcheck disable=SC1091
	source "$dir/env"
	export SFTPGW_REQUIRE_INTEGRATION=1
	OUT="${MUTATE_OUT:-/tmp/sftpgw-mutate-integration}"
	cmd_run "$@"
}

case "${1:-}" in
install) cmd_install ;;
run) shift; cmd_run "$@" ;;
integration) shift; cmd_integration "$@" ;;
summary) shift; (($# > 0)) || set -- "${DEFAULT_PKGS[@]}"; for p in "$@"; do summary "$p"; done | column -t -s $'\t' ;;
*) die "usage: $0 install | run [PKG...] | integration [PKG...] | summary [PKG...]" ;;
esac
