#!/usr/bin/env bash
# govulncheck against a pinned copy of the Go vulnerability database: the
# online database is out of reach here, but the module golang.org/x/vulndb
# comes through the module proxy and its data/osv is a database govulncheck
# reads with -db file://. Fails (exit 3) on any reachable vulnerability.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN="${GOTOOLCHAIN:-go1.27.3}"

VULN_VERSION=v1.9.0
# Bump to the newest pseudo-version (`go mod download -json golang.org/x/vulndb@latest`)
# to pick up new entries.
VULNDB_VERSION=v0.0.0-20261105234957-e22db6528018
BIN_DIR="${HOME}/.cache/sftpgw/bin"
GOVULNCHECK="$BIN_DIR/govulncheck-$VULN_VERSION-$(go env GOVERSION)"

if [[ ! -x "$GOVULNCHECK" ]]; then
	# Built with the toolchain that builds the code: govulncheck analyses the
	# standard library of the Go it was built with's GOROOT otherwise.
	tmp=$(mktemp -d)
	GOBIN="$tmp" GOFLAGS=-mod=mod go install "golang.org/x/vuln/cmd/govulncheck@$VULN_VERSION"
	mkdir -p "$BIN_DIR"
	mv "$tmp/govulncheck" "$GOVULNCHECK"
	rm -rf "$tmp"
fi
db=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "golang.org/x/vulndb@$VULNDB_VERSION" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[[ -d "$db/data/osv" ]] || { echo "vulncheck: no data/osv in $db" >&2; exit 1; }
echo "vulncheck: govulncheck $VULN_VERSION, $(go env GOVERSION), vulndb $VULNDB_VERSION"
exec "$GOVULNCHECK" -db "file://$db/data/osv" ./...
