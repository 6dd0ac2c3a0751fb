#!/usr/bin/env python3
# Writes testdata/corpus: MIME messages of the shapes seen in the wild, byte
# for byte (line ends included), for mimeconv's round-trip tests. Run from
# this directory; the files are committed, this script says how they were
# made.
import base64, quopri, os, textwrap

out = "corpus"
os.makedirs(out, exist_ok=True)

def w(name, data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)

def crlf(s):
    return s.replace("\r\n", "\n").replace("\n", "\r\n")

def b64lines(data, n=76, eol="\r\n"):
    s = base64.b64encode(data).decode()
    return eol.join(s[i:i+n] for i in range(0, len(s), n))

# deterministic pseudo-random bytes
def blob(n, seed):
    x = seed
    b = bytearray()
    for _ in range(n):
        x = (x * 1103515245 + 12345) & 0x7fffffff
        b.append(x >> 16 & 0xff)
    return bytes(b)

FILE = blob(10000, 7)  # the attachment several messages share
open(os.path.join(out, "..", "attachment.bin"), "wb").write(FILE)

HDR = "From: Alice <alice@example.org>\nTo: bob@example.net\nSubject: {subj}\nDate: Thu, 03 Dec 2026 09:00:00 +0000\nMessage-ID: <{mid}@example.org>\nMIME-Version: 1.0\n"

w("01-plain.eml", crlf(HDR.format(subj="plain", mid="m01") + "Content-Type: text/plain; charset=us-ascii\n\nHello Bob,\n\njust text.\n"))

w("02-attachment.eml", crlf(HDR.format(subj="a file", mid="m02") + 'Content-Type: multipart/mixed; boundary="b1"\n\nThis is a multi-part message in MIME format.\n--b1\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 7bit\n\nThe file.\n--b1\nContent-Type: application/octet-stream; name="data.bin"\nContent-Transfer-Encoding: base64\nContent-Disposition: attachment; filename="data.bin"\n\n') + b64lines(FILE) + crlf("\n--b1--\n"))

# the same file, encoded in 64-character lines with LF (another encoder)
w("03-attachment-lf64.eml", (HDR.format(subj="same file", mid="m03") + 'Content-Type: multipart/mixed; boundary=XyZ\n\n--XyZ\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\nContent-Disposition: attachment; filename=data.bin\n\n' + b64lines(FILE, 64, "\n") + "\n\n--XyZ--\n").encode())

html = '<html><body><p>Gr\u00fc\u00dfe, see <img src="cid:logo@x"></p>' + "<p>" + "long line of html " * 12 + "</p></body></html>\n"
text = "Gr\u00fc\u00dfe =  trailing space \nand a line of exactly seventy-six characters, which the encoder has to break.\n"
def qp(s):
    return quopri.encodestring(s.encode("utf-8")).decode().replace("\n", "\r\n")
w("04-alternative-related.eml", crlf(HDR.format(subj="=?utf-8?q?Gr=C3=BC=C3=9Fe?=", mid="m04") + 'References: <root@example.org> <m02@example.org>\nIn-Reply-To: <m02@example.org>\nContent-Type: multipart/alternative; boundary="alt"\n\n--alt\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n') + qp(text) + crlf('\n--alt\nContent-Type: multipart/related; boundary="rel"; type="text/html"\n\n--rel\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n') + qp(html) + crlf('\n--rel\nContent-Type: image/png\nContent-Transfer-Encoding: base64\nContent-ID: <logo@x>\nContent-Disposition: inline\n\n') + b64lines(blob(700, 3)) + crlf("\n--rel--\n\n--alt--\nan epilogue\n"))

w("05-rfc822.eml", crlf(HDR.format(subj="Fwd: a file", mid="m05") + 'Content-Type: multipart/mixed; boundary="outer"\n\npreamble line 1\npreamble line 2\n--outer\nContent-Type: text/plain\n\nSee below.\n--outer\nContent-Type: message/rfc822\nContent-Disposition: attachment; filename="orig.eml"\n\nFrom: x@example.com\nSubject: inner\nContent-Type: multipart/mixed; boundary="inner"\n\n--inner\nContent-Type: text/plain\n\ninner text\n--inner--\n--outer--\n'))

w("06-calendar.eml", crlf(HDR.format(subj="Invitation", mid="m06") + 'Content-Type: multipart/alternative; boundary="cal"\n\n--cal\nContent-Type: text/plain; charset=utf-8\n\nMeeting on Friday.\n--cal\nContent-Type: text/calendar; charset=utf-8; method=REQUEST\nContent-Transfer-Encoding: 7bit\n\nBEGIN:VCALENDAR\nVERSION:2.0\nMETHOD:REQUEST\nBEGIN:VEVENT\nUID:1@example.org\nDTSTART:20261204T100000Z\nSUMMARY:Meeting\nEND:VEVENT\nEND:VCALENDAR\n--cal--\n'))

w("07-smime-signed.eml", crlf(HDR.format(subj="signed", mid="m07") + 'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256; boundary="----sig"\n\nThis is an S/MIME signed message\n\n------sig\nContent-Type: text/plain; charset=utf-8\n\nSigned text.\n\n------sig\nContent-Type: application/pkcs7-signature; name="smime.p7s"\nContent-Transfer-Encoding: base64\nContent-Disposition: attachment; filename="smime.p7s"\n\n') + b64lines(blob(1500, 11), 64) + crlf("\n\n------sig--\n\n"))

w("08-pgp-signed.eml", crlf(HDR.format(subj="pgp", mid="m08") + 'Content-Type: multipart/signed; micalg=pgp-sha256; protocol="application/pgp-signature"; boundary="pgp"\n\n--pgp\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\nSigned =E2=9C=93\n--pgp\nContent-Type: application/pgp-signature; name="signature.asc"\n\n-----BEGIN PGP SIGNATURE-----\n\niQEzBAEBCAAdFiEE\n=abcd\n-----END PGP SIGNATURE-----\n--pgp--\n'))

latin = ("From: =?iso-8859-1?q?J=F6rg?= <joerg@example.de>\nTo: bob@example.net\nSubject: =?ISO-8859-1?B?R3L832U=?=\nDate: Thu, 03 Dec 2026 09:00:00 +0100\nMessage-ID: <m09@example.de>\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"l1\"\n\n--l1\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: 8bit\n\n").encode() + "Grüße aus Köln\n".encode("latin-1") + b"--l1\nContent-Type: application/pdf\nContent-Transfer-Encoding: base64\nContent-Disposition: attachment;\n filename*=iso-8859-1''%FCbersicht.pdf\n\n" + b64lines(b"%PDF-1.4 tiny", 76, "\n").encode() + b"\n--l1--\n"
w("09-latin1-2231.eml", latin.replace(b"\n", b"\r\n"))

w("10-long-lines.eml", crlf(HDR.format(subj="long", mid="m10") + "Content-Type: text/plain\nContent-Transfer-Encoding: 8bit\n\n" + "x" * 1500 + "\n" + "y" * 70000 + "\nend\n"))

w("11-broken-boundaries.eml", crlf(HDR.format(subj="broken", mid="m11") + 'Content-Type: multipart/mixed; boundary="missing"\n\n--missing\nContent-Type: text/plain\n\nfirst part\n--missingX\nnot a delimiter\n--missing\nContent-Type: text/plain\n\nno close delimiter follows\n'))

w("12-no-trailing-newline.eml", crlf(HDR.format(subj="no newline", mid="m12") + "Content-Type: text/plain\n\nlast line without a line end").rstrip("\r\n"))

w("13-lf-only.eml", (HDR.format(subj="lf", mid="m13") + 'Content-Type: multipart/mixed; boundary="lf"\n\n--lf\nContent-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\nsoft=\nbreak and =3D sign\n--lf--\n').encode())

irregular = base64.b64encode(blob(3000, 5)).decode()
lines = [irregular[0:72], irregular[72:136], irregular[136:140] + " ", irregular[140:]]
w("14-irregular-base64.eml", crlf(HDR.format(subj="odd base64", mid="m14") + 'Content-Type: multipart/mixed; boundary="ib"\n\n--ib\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n' + "\n".join(lines) + "\n--ib--\n"))

w("15-odd-qp.eml", crlf(HDR.format(subj="odd qp", mid="m15") + 'Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\nlower=c3=bccase hex and a soft break at forty=\n characters =41 needlessly escaped \nend\n'))

w("16-odd-headers.eml", crlf("Received: from a by b; Thu, 03 Dec 2026 08:00:00 +0000\nReceived: from c\n by d; Thu, 03 Dec 2026 07:00:00 +0000\nFrom: alice@example.org\nTo: bob@example.net,\n\tcarol@example.net\nSubject: folded\n  subject line\nthis line has no colon\nX-Empty:\nsubject: a second subject\nBody-Digest: <forged>\nContent-ID: <not-a-resource@x>\nMessage-ID: not-an-id\n\nbody\n"))

many = crlf(HDR.format(subj="many parts", mid="m17") + 'Content-Type: multipart/mixed; boundary="m"\n\n' + "".join("--m\nContent-Type: text/plain\n\npart %d\n" % i for i in range(1100)) + "--m--\n")
w("17-many-parts.eml", many)

deep = HDR.format(subj="deep", mid="m18")
for i in range(20):
    deep += 'Content-Type: multipart/mixed; boundary="d%d"\n\n--d%d\n' % (i, i)
deep += "Content-Type: text/plain\n\ndeepest\n"
for i in reversed(range(20)):
    deep += "--d%d--\n" % i
w("18-deep.eml", crlf(deep))

w("19-headers-only.eml", crlf(HDR.format(subj="no body", mid="m19")).rstrip("\r\n"))
w("20-empty.eml", b"")
w("21-bare-cr-and-smuggling.eml", (HDR.format(subj="smuggle", mid="m21").replace("\n", "\r\n") + "\r\nline\n.\nMAIL FROM:<x@y>\r\nbare\rcr\r\n.\r\n").encode())
w("22-digest.eml", crlf(HDR.format(subj="digest", mid="m22") + 'Content-Type: multipart/digest; boundary="dg"\n\n--dg\n\nFrom: a@example.com\nSubject: one\n\nfirst\n--dg\n\nFrom: b@example.com\nSubject: two\n\nsecond\n--dg--\n'))
