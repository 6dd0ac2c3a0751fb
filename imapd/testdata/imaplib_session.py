"""Drive Pullmail's IMAP server with Python's standard imaplib.

Usage: imaplib_session.py IMPLICIT_ADDR STARTTLS_ADDR CA_PEM USER PASSWORD TOKEN
Prints one JSON object of what the server answered, for the Go test to check.
The certificate is a.test's: the sockets go to the loopback address, and TLS
checks the name a.test against the sandbox's CA.
"""
import base64
import imaplib
import json
import socket
import ssl
import sys

implicit, starttls, ca, user, password, token = sys.argv[1:7]
out = {}


def addr(a):
    h, p = a.rsplit(":", 1)
    return h, int(p)


class Loopback:
    """Connects to the loopback address but names a.test to TLS."""

    def _create_socket(self, timeout):
        sock = socket.create_connection(self.addr, timeout)
        self.host = "a.test"  # what starttls() and IMAP4_SSL verify
        if isinstance(self, imaplib.IMAP4_SSL):
            return self.ssl_context.wrap_socket(sock, server_hostname="a.test")
        return sock


class TLS(Loopback, imaplib.IMAP4_SSL):
    def __init__(self, a, ctx):
        self.addr = a
        super().__init__(a[0], a[1], ssl_context=ctx)


class Plain(Loopback, imaplib.IMAP4):
    def __init__(self, a):
        self.addr = a
        super().__init__(a[0], a[1])


def err(f):
    """The answer's status and text, whether imaplib raises or returns."""
    try:
        typ, data = f()
        return "%s %s" % (typ, data)
    except imaplib.IMAP4.error as e:
        return "NO " + str(e)


ctx = ssl.create_default_context(cafile=ca)

# Implicit TLS, LOGIN.
m = TLS(addr(implicit), ctx)
out["capabilities"] = sorted(m.capabilities)
out["wrong_password"] = err(lambda: m.login(user, "wrong"))
out["login"] = m.login(user, password)[0]
out["auth_capabilities"] = sorted(m.capability()[1][0].decode().upper().split())
out["list"] = [d.decode() for d in m.list()[1]]
out["namespace"] = m.namespace()[1][0].decode()
out["status_inbox"] = m.status("INBOX", "(MESSAGES UNSEEN)")[1][0].decode()
out["create"] = m.create("Receipts")[0]
out["create_system"] = m.create("Sent")[0]
out["list_pattern"] = [d.decode() for d in m.list('""', "Rec*")[1]]
out["select"] = m.select("INBOX")[0]
m.logout()

# STARTTLS, then AUTHENTICATE OAUTHBEARER (RFC 7628) with a token.
m = Plain(addr(starttls))
out["starttls_capabilities"] = sorted(m.capabilities)
out["login_before_tls"] = err(lambda: m.login(user, password))
m.starttls(ssl_context=ctx)
bearer = "n,a=%s,\x01auth=Bearer %s\x01\x01" % (user, token)
out["oauthbearer"] = m.authenticate("OAUTHBEARER", lambda _: bearer.encode())[0]
out["delete"] = m.delete("Receipts")[0]
out["delete_system"] = err(lambda: m.delete("INBOX"))
out["list_after"] = [d.decode() for d in m.list()[1]]
m.logout()
print(json.dumps(out))
