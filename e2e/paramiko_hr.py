"""HR login (key + verification code) with paramiko, as TestClientParamikoHR
runs it, both ways:

  plain       the obvious paramiko code: auth_publickey, then auth_interactive.
              paramiko sends a new ssh-userauth service request before every
              method; x/crypto/ssh (the gateway's SSH library) takes that as a
              protocol error and closes the connection. Expected to fail.
  workaround  the same, with the second step sent without a new service
              request (auth_interactive_same_service below), as OpenSSH's
              client does. Uploads UPLOAD as hr-paramiko.bin, lists, downloads
              it to OUT_DIR.

Usage: paramiko_hr.py MODE HOST PORT USER KEY KNOWN_HOSTS CODE UPLOAD OUT_DIR
Prints one JSON report; run with /usr/bin/python3 (Debian's paramiko 2.12).
"""

import json
import os
import socket
import sys
import threading

import paramiko
from paramiko.auth_handler import AuthHandler


class _ServiceAlreadyAccepted(AuthHandler):
    """An AuthHandler that does not ask for the ssh-userauth service again:
    the server accepted it before the key step. It goes straight to what
    paramiko does when the server accepts, i.e. sends the userauth request."""

    def _request_auth(self):
        m = paramiko.Message()
        m.add_string("ssh-userauth")
        m.rewind()
        self._parse_service_accept(m)


def auth_interactive_same_service(transport, username, handler):
    """transport.auth_interactive() without the repeated service request.
    Use it for the second step after auth_publickey() returned
    ["keyboard-interactive"] (a partial success)."""
    event = threading.Event()
    transport.auth_handler = _ServiceAlreadyAccepted(transport)
    transport.auth_handler.auth_interactive(username, handler, event)
    return transport.auth_handler.wait_for_response(event)


def main():
    mode, host, port, user, key, known_hosts, code, upload, out_dir = sys.argv[1:10]
    sock = socket.create_connection((host, int(port)), timeout=20)
    t = paramiko.Transport(sock)
    t.start_client(timeout=20)
    # Strict host key check against the test's known_hosts.
    hk = paramiko.HostKeys(known_hosts)
    server_key = t.get_remote_server_key()
    name = "[%s]:%s" % (host, port)
    if hk.lookup(name) is None or hk.lookup(name).get(server_key.get_name()) != server_key:
        raise SystemExit("host key mismatch")
    report = {"mode": mode}
    pkey = paramiko.Ed25519Key.from_private_key_file(key)
    report["after_key"] = t.auth_publickey(user, pkey)  # ["keyboard-interactive"]

    def answer(title, instructions, prompts):
        return [code for _ in prompts]

    try:
        if mode == "plain":
            t.auth_interactive(user, answer)
        else:
            auth_interactive_same_service(t, user, answer)
    except Exception as e:  # noqa: BLE001 - the report says what happened
        report["error"] = "%s: %s" % (type(e).__name__, e)
        print(json.dumps(report))
        return
    report["authenticated"] = t.is_authenticated()
    sftp = paramiko.SFTPClient.from_transport(t)
    sftp.put(upload, "hr-paramiko.bin")
    report["listdir"] = sorted(sftp.listdir("."))
    sftp.get("hr-paramiko.bin", os.path.join(out_dir, "back.bin"))
    sftp.close()
    t.close()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
