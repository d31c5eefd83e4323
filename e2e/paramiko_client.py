"""Partner automation with paramiko, as TestClientParamiko runs it.

Usage: paramiko_client.py HOST PORT USER KEY KNOWN_HOSTS LOCAL_FILE STREAM_FILE OUT_DIR

Uploads LOCAL_FILE with put() and STREAM_FILE through a pipe with putfo()
(a non-seekable stream, as a partner's export job would produce), stats,
lists, renames, downloads and removes, then prints one JSON report that the
Go test checks against S3. Any failure exits non-zero with the traceback.
Run with /usr/bin/python3 (Debian's paramiko).
"""

import json
import os
import sys
import threading

import paramiko


def main():
    host, port, user, key, known_hosts, local, stream, out_dir = sys.argv[1:9]
    client = paramiko.SSHClient()
    # Strict host key checking against the test's known_hosts only.
    client.load_host_keys(known_hosts)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        host,
        port=int(port),
        username=user,
        key_filename=key,
        allow_agent=False,
        look_for_keys=False,
        timeout=20,
    )
    sftp = client.open_sftp()
    report = {}

    sftp.mkdir("pm")
    # put() stats the file afterwards and fails if the size differs.
    attrs = sftp.put(local, "pm/put.bin")
    report["put_size"] = attrs.st_size
    report["stat_size"] = sftp.stat("pm/put.bin").st_size

    # putfo() from a pipe: nothing to seek, the size is only known at the end.
    r, w = os.pipe()

    def feed():
        with open(stream, "rb") as src, os.fdopen(w, "wb") as dst:
            while True:
                chunk = src.read(100_003)  # odd sizes: writes do not align
                if not chunk:
                    break
                dst.write(chunk)

    t = threading.Thread(target=feed)
    t.start()
    with os.fdopen(r, "rb") as pipe:
        attrs = sftp.putfo(pipe, "pm/stream.bin")
    t.join()
    report["putfo_size"] = attrs.st_size
    report["stream_stat_size"] = sftp.stat("pm/stream.bin").st_size

    report["listdir"] = sorted(sftp.listdir("pm"))
    sftp.rename("pm/put.bin", "pm/renamed.bin")
    report["listdir_after_rename"] = sorted(sftp.listdir("pm"))
    sftp.get("pm/renamed.bin", os.path.join(out_dir, "renamed.bin"))
    sftp.get("pm/stream.bin", os.path.join(out_dir, "stream.bin"))
    # Read in the middle of a file with a seek, as partners' scripts do
    # to check a header or trailer.
    with sftp.open("pm/stream.bin", "rb") as f:
        f.seek(12345)
        report["middle"] = f.read(16).hex()
    sftp.remove("pm/stream.bin")
    report["listdir_after_remove"] = sorted(sftp.listdir("pm"))
    try:
        sftp.stat("pm/stream.bin")
        report["removed"] = False
    except FileNotFoundError:
        report["removed"] = True
    sftp.close()
    client.close()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
