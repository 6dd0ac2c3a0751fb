#!/usr/bin/python3
"""Verifies every DKIM-Signature of each message file with dkimpy
(Debian's python3-dkim), its DNS answered from a JSON file of
{"selector._domainkey.domain": "TXT record"} instead of the network.

Usage: dkimcheck.py RECORDS.json FILE...
Prints [{"file", "signatures": [{"d", "s", "a", "ok", "error"}]}]."""
import json
import sys

import dkim

with open(sys.argv[1]) as f:
    records = json.load(f)


def dnsfunc(name, timeout=5):
    name = name.decode() if isinstance(name, bytes) else name
    return records.get(name.rstrip(".").lower(), "").encode()


out = []
for path in sys.argv[2:]:
    with open(path, "rb") as f:
        msg = f.read()
    d = dkim.DKIM(msg)
    n = sum(1 for k, _ in d.headers if k.lower() == b"dkim-signature")
    sigs = []
    for i in range(n):
        v = dkim.DKIM(msg)
        ok, err = False, None
        try:
            ok = bool(v.verify(idx=i, dnsfunc=dnsfunc))
        except dkim.DKIMException as e:
            err = str(e)
        tags = v.signature_fields or {}
        sigs.append({
            "d": tags.get(b"d", b"").decode(),
            "s": tags.get(b"s", b"").decode(),
            "a": tags.get(b"a", b"").decode(),
            "ok": ok,
            "error": err,
        })
    out.append({"file": path, "signatures": sigs})
print(json.dumps(out))
