"""Read and change a Pullmail mailbox with Python's standard imaplib.

Usage: imaplib_mail.py IMPLICIT_ADDR CA_PEM USER PASSWORD OUTDIR
Fetches every INBOX message's BODY.PEEK[] into OUTDIR/<uid>.eml, flags the
first \\Flagged, moves the second to Archive, deletes and expunges the
third; prints a JSON object of the answers.
"""
import imaplib
import json
import os
import re
import socket
import ssl
import sys

implicit, ca, user, password, outdir = sys.argv[1:6]
h, p = implicit.rsplit(":", 1)


class TLS(imaplib.IMAP4_SSL):
    def _create_socket(self, timeout):
        sock = socket.create_connection((h, int(p)), timeout)
        return self.ssl_context.wrap_socket(sock, server_hostname="a.test")


m = TLS(h, int(p), ssl_context=ssl.create_default_context(cafile=ca))
m.login(user, password)
out = {}
typ, data = m.select("INBOX")
out["exists"] = int(data[0])
typ, data = m.uid("FETCH", "1:*", "(FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[])")
msgs = []
for item in data:
    if not isinstance(item, tuple):
        continue
    meta, body = item
    meta = meta.decode()
    uid = int(re.search(r"UID (\d+)", meta).group(1))
    size = int(re.search(r"RFC822\.SIZE (\d+)", meta).group(1))
    with open(os.path.join(outdir, "%d.eml" % uid), "wb") as f:
        f.write(body)
    msgs.append({"uid": uid, "size": size, "len": len(body), "flags": re.search(r"FLAGS \(([^)]*)\)", meta).group(1)})
out["messages"] = msgs
uids = [str(x["uid"]) for x in msgs]
out["partial"] = m.uid("FETCH", uids[0], "(BODY.PEEK[]<0.10>)")[1][0][1].decode()
out["header_subject"] = m.uid("FETCH", uids[0], "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")[1][0][1].decode()
out["envelope"] = m.uid("FETCH", uids[0], "(ENVELOPE)")[1][0].decode()
out["bodystructure"] = m.uid("FETCH", uids[2], "(BODYSTRUCTURE)")[1][0].decode()
out["store"] = m.uid("STORE", uids[0], "+FLAGS", "(\\Flagged $Work)")[1][0].decode()
out["move"] = m.uid("MOVE", uids[1], "Archive")[0]
out["delete"] = m.uid("STORE", uids[2], "+FLAGS.SILENT", "(\\Deleted)")[0]
out["expunge"] = [d.decode() for d in m.expunge()[1] if d]
out["search_flagged"] = m.uid("SEARCH", "FLAGGED")[1][0].decode()
out["empty_fetch"] = m.select("Junk")[1][0].decode()
out["star_fetch"] = m.fetch("1:*,*:1", "(FLAGS)")[0]
m.logout()
print(json.dumps(out))
