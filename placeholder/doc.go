// Package placeholder holds the Placeholder Message: the small JSON document
// that travels between mailboxes in place of the message bodies, which stay
// behind as content-addressed External Resources (package resource). It is
// both the message and the access control list of the resources it names,
// so every server must read it the same way, byte for byte: this package is
// the one place that parses it, checks it, serializes it canonically and
// computes the digests that the Cross-Domain Authorization Grant signs.
//
// The normative rules are docs/PROTOCOL.md §2–§7; this package implements
// them and testdata/ holds their vectors.
//
// # Shape
//
// A message is {"headers": {NAME: VALUE, ...}, "parts": [PART, ...]} and a
// part has the same shape with "parts" optional. A VALUE is a JSON string or
// a non-empty array of strings (Value). A part without "parts" is a leaf and
// references one External Resource:
//
//	"Content-ID":   "<ID>"  (resource.ID: base64url(SHA-256(plain bytes)))
//	"Content-Type": ["message/external-body; access-type=\"x-content-addressed-uri\"; hash-algorithm=\"sha256\"; size=\"N\"",
//	                 "<the resource's own media type>"]
//
// # Canonical form and digests
//
// Everything that is hashed is first serialized with RFC 8785 (JCS), which for
// our documents (objects, arrays and strings only) means: no whitespace,
// object members sorted by their UTF-16 code units, and JCS string escaping.
//
//	Body-Digest       = "<" b64u(SHA-256(JCS(parts))) ">"
//	Recipients-Digest = "<" b64u(SHA-256(JCS({"bcc":[..],"cc":[..],"to":[..]}))) ">"
//	                    or, on a forwarding hop, JCS({"forwarded-to":[..]})
//	eht               = b64u(SHA-256(JCS([[name, value], ...])))  over ehl, in ehl order
//	JWT-Assertion-Digest = "<" b64u(SHA-256(compact JWS)) ">"
//
// b64u is unpadded base64url (RFC 4648 §5).
//
// # Errors
//
// Every refusal is an *errs.Error of kind errs.Invalid with a stable code
// (the Code* constants), so the mailbox can hand it to the client as is.
package placeholder
