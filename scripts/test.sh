#!/usr/bin/env bash
# Runs every test with the integration suites enabled: starts one shared
# MinIO (SSE-S3 via a KMS secret key) for the run and stops it afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d /tmp/sftpgw-test.XXXXXX)
cleanup() { ./scripts/minio.sh stop "$work/minio" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

./scripts/minio.sh start "$work/minio"
# shellcheck disable=SC1091
source "$work/minio/env"
export SFTPGW_REQUIRE_INTEGRATION=1
export SFTPGW_BIN="$PWD/bin/sftpgw"

echo "== go vet"
go vet ./...
echo "== vulncheck (no reachable vulnerability)"
./scripts/vulncheck.sh
echo "== tests (unit + integration against MinIO and real clients)"
set +e
go test -count=1 -timeout 25m ./... 2>&1 | tee "$work/test.log"
status=${PIPESTATUS[0]}
set -e
echo "== fuzz (short)"
./scripts/fuzz.sh 10s || status=1
echo "== peer suite: rclone's SFTP backend tests against the gateway and OpenSSH (make peer-test)"
./scripts/peer-test.sh || status=1
exit "$status"
