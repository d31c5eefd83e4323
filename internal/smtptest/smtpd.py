"""A real SMTP server for the email alert tests (Debian's python3-aiosmtpd).

usage: smtpd.py MODE CERT KEY USER PASSWORD OUTFILE
MODE: starttls (STARTTLS and AUTH required), implicit (TLS from the first
byte, AUTH required), plain (no TLS offered, no AUTH), hang (accepts the
connection and never answers). Binds 127.0.0.1:0 and prints the port.
Every message received is appended to OUTFILE as one JSON line.
"""
import asyncio
import json
import socket
import ssl
import sys
import time

from aiosmtpd.smtp import SMTP, AuthResult

mode, certfile, keyfile, user, password, out = sys.argv[1:7]


class Handler:
    async def handle_DATA(self, server, session, envelope):
        rec = {
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "data": envelope.content.decode("utf-8", "replace"),
            "tls": server.transport.get_extra_info("sslcontext") is not None,
            "auth": session.authenticated,
            "login": (session.login_data or b"").decode() if isinstance(session.login_data, bytes) else None,
            "at": time.time(),
        }
        with open(out, "a") as f:
            f.write(json.dumps(rec) + "\n")
        return "250 OK"


def authenticator(server, session, envelope, mechanism, data):
    ok = data.login.decode() == user and data.password.decode() == password
    return AuthResult(success=ok, handled=False)  # handled=False: answer 535


async def main():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    loop = asyncio.get_running_loop()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certfile, keyfile)
    if mode == "hang":
        async def hang(reader, writer):
            await asyncio.sleep(3600)
        await asyncio.start_server(hang, sock=sock)
    elif mode == "starttls":
        await loop.create_server(lambda: SMTP(Handler(), hostname="localhost", tls_context=ctx, require_starttls=True,
                                              auth_required=True, authenticator=authenticator), sock=sock)
    elif mode == "implicit":
        await loop.create_server(lambda: SMTP(Handler(), hostname="localhost", auth_required=True,
                                              auth_require_tls=False, authenticator=authenticator), sock=sock, ssl=ctx)
    elif mode == "plain":
        await loop.create_server(lambda: SMTP(Handler(), hostname="localhost"), sock=sock)
    else:
        sys.exit("unknown mode " + mode)
    print(sock.getsockname()[1], flush=True)
    await asyncio.Event().wait()


asyncio.run(main())
