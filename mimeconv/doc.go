// Package mimeconv converts Internet messages (RFC 5322 with MIME, as SMTP
// carries them) to Placeholder Messages and back, losslessly.
//
// Convert reads a message once, as it streams in: every leaf part is decoded
// from its transfer encoding (base64, quoted-printable) to its original bytes
// and stored content-addressed, so a file that arrives by SMTP and the same
// file from a Pullmail domain are one resource. The result is a placeholder
// (the message as Pullmail users and the webmail see it) and a Record: what
// decoding set aside (header blocks as sent, preamble and epilogue,
// boundaries, line lengths, line ends, transfer encodings) as a flat list of
// operations. Render replays the operations over the resources and writes
// the original message byte for byte; it checks the result against the
// record's SHA-256 of the original.
//
// Why a flat list of operations, not a tree: the placeholder already is the
// tree, and one kind of writer (append literal bytes, copy or re-encode the
// next bytes of a resource) cannot disagree with the parser about structure.
// Whatever the parser did not understand (a broken boundary, a header
// without a colon, an unterminated part) is literal bytes, so losslessness
// does not depend on the parser being right, only on the encoders being
// deterministic: Convert checks each re-encoding while it reads, and a body
// that the encoders would not reproduce exactly (a base64 line of odd length,
// quoted-printable from another encoder) keeps its original text as literal
// bytes beside the decoded resource. Large literal text goes to a resource
// of its own (Record.LitsID), so a record stays small.
//
// The normative description, with a test vector, is docs/PROTOCOL.md §13.
package mimeconv
