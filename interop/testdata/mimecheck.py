#!/usr/bin/python3
"""Parses a message file with Python's email package (an MIME parser no one
at Pullmail wrote) and prints what it found as JSON: the decoded headers and
every leaf part with its type, file name, charset, decoded size and SHA-256
(and its text, for text parts), plus the parser's defects."""
import email
import email.policy
import hashlib
import json
import sys

with open(sys.argv[1], "rb") as f:
    msg = email.message_from_binary_file(f, policy=email.policy.default)

parts = []
for part in msg.walk():
    if part.is_multipart():
        continue
    payload = part.get_payload(decode=True) or b""
    p = {
        "content_type": part.get_content_type(),
        "filename": part.get_filename(),
        "charset": part.get_content_charset(),
        "size": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
        "defects": [type(d).__name__ for d in part.defects],
    }
    if part.get_content_maintype() == "text":
        p["text"] = part.get_content()
    parts.append(p)

print(json.dumps({
    "subject": str(msg["Subject"]),
    "from": str(msg["From"]),
    "to": str(msg["To"]),
    "message_id": str(msg["Message-ID"]),
    "content_type": msg.get_content_type(),
    "received": [str(r) for r in msg.get_all("Received", [])],
    "defects": [type(d).__name__ for d in msg.defects],
    "parts": parts,
}))
