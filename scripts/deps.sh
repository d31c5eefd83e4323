#!/usr/bin/env bash
# Installs what the integration tests and benchmarks drive: real SSH/SFTP
# clients from Debian and a MinIO server built with `go install` (cached in
# $HOME/.cache/sftpgw so it is built once per machine).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
check() { command -v "$1" >/dev/null 2>&1 || need+=("$2"); }
check sftp openssh-client
check sshd openssh-server
check sshfs sshfs
check rsync rsync
check psftp putty-tools
check puttygen putty-tools
check lftp lftp
check rclone rclone
check curl curl
check ssh-audit ssh-audit
check haproxy haproxy
check ip iproute2
check fusermount3 fuse3
/usr/bin/python3 -c 'import paramiko' 2>/dev/null || need+=(python3-paramiko)
# The email alert tests run a real SMTP server (STARTTLS, AUTH).
/usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || need+=(python3-aiosmtpd)
# curl must speak sftp (Debian's does).
if command -v curl >/dev/null && ! curl -V | grep -qw sftp; then need+=(curl); fi

if [ ${#need[@]} -gt 0 ]; then
	mapfile -t uniq < <(printf '%s\n' "${need[@]}" | sort -u)
	echo "deps: installing ${uniq[*]}"
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO="sudo"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${uniq[@]}" >/dev/null
fi
# paramiko from Debian is used with the system python, which may not be first on PATH.
./scripts/minio.sh install
