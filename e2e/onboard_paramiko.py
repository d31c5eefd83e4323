"""Applicant uploads with paramiko, as TestUploadLimitsClients runs it.

Usage: onboard_paramiko.py HOST PORT USER KEY KNOWN_HOSTS LOCAL=REMOTE...

Tries each upload and prints one JSON object mapping REMOTE to "ok" or to
the error text paramiko raised (the server's SFTP status message), so the
Go test can check what an applicant using paramiko is told.
Run with /usr/bin/python3 (Debian's paramiko).
"""

import json
import sys

import paramiko


def main():
    host, port, user, key, known_hosts = sys.argv[1:6]
    client = paramiko.SSHClient()
    client.load_host_keys(known_hosts)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(host, port=int(port), username=user, key_filename=key,
                   allow_agent=False, look_for_keys=False, timeout=20)
    sftp = client.open_sftp()
    report = {}
    for pair in sys.argv[6:]:
        local, remote = pair.split("=", 1)
        try:
            sftp.put(local, remote)
            report[remote] = "ok"
        except IOError as e:
            report[remote] = "error: " + str(e)
    sftp.close()
    client.close()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
