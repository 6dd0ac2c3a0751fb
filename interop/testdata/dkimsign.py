#!/usr/bin/python3
"""Signs message files with dkimpy (Debian's python3-dkim), an outside
DKIM signer: an rsa-sha256 and an ed25519-sha256 signature, relaxed/relaxed,
both prepended.

Usage: dkimsign.py DOMAIN RSA-SELECTOR RSA-KEY.pem ED-SELECTOR ED-KEY.b64 OUTDIR FILE...
Writes OUTDIR/BASENAME for each file and prints
[{"file", "out", "error"}] (error: why a file could not be signed)."""
import json
import os
import sys

import dkim

domain, rsa_sel, rsa_key, ed_sel, ed_key, outdir = sys.argv[1:7]
with open(rsa_key, "rb") as f:
    rsa = f.read()
with open(ed_key, "rb") as f:
    ed = f.read().strip()

out = []
for path in sys.argv[7:]:
    with open(path, "rb") as f:
        msg = f.read()
    res = {"file": path, "out": None, "error": None}
    try:
        sig_rsa = dkim.sign(msg, rsa_sel.encode(), domain.encode(), rsa,
                            canonicalize=(b"relaxed", b"relaxed"))
        sig_ed = dkim.sign(msg, ed_sel.encode(), domain.encode(), ed,
                           canonicalize=(b"relaxed", b"relaxed"),
                           signature_algorithm=b"ed25519-sha256")
        dst = os.path.join(outdir, os.path.basename(path))
        with open(dst, "wb") as f:
            f.write(sig_ed + sig_rsa + msg)
        res["out"] = dst
    except Exception as e:  # dkimpy raises several kinds for odd input
        res["error"] = "%s: %s" % (type(e).__name__, e)
    out.append(res)
print(json.dumps(out))
