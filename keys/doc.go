// Package keys holds an Authorization Server's signing keys, publishes them as
// a JWK set, and signs and verifies JWTs strictly, following the JWT Best
// Current Practices (RFC 8725). It is small on purpose: every token the AS
// issues (RFC 9068 access tokens, token-exchange assertions) is signed by
// Set.Sign, and every token it or a resource server accepts passes Verify.
//
// # Keys on disk
//
// A Set lives in one file the caller names, e.g. DATA/keys/signing.json, mode
// 0600 (Open refuses a file readable by group or others). The file is a
// private JWK set (RFC 7517 §5) with a "meta" array beside "keys":
//
//	{"keys": [{"kty":"EC","crv":"P-256","x":...,"y":...,"d":...,"kid":...,"alg":"ES256","use":"sig"}, ...],
//	 "meta": [{"kid":...,"alg":"ES256","created":...,"retired":...,"verify_until":...}, ...]}
//
// meta[i] describes keys[i]; the current key has zero "retired" and
// "verify_until". Keys are ES256 (P-256); a kid is the key's RFC 7638 SHA-256
// thumbprint. Writes are atomic (temporary file, fsync, rename, fsync of the
// directory) and serialised between processes by flock(2) on the file's name
// plus ".lock". Rotate retires the current key, which keeps verifying until
// retired + Options.MaxTokenLifetime, so nothing it signed stops verifying
// before it expires; the next rotation drops keys past that time. A running
// Set stats its file at most once a second and reloads it when another
// process (`pullmail keys rotate`) has rewritten it.
//
// # What Verify checks, and why
//
//   - Size at most 16 KiB, checked first: parsing cost is bounded before
//     anything is decoded.
//   - Exactly three base64url parts, strictly decoded (no padding, no stray
//     bits): a JWE (5 parts) is not a JWS (RFC 8725 §2.7, §3.6), and a token
//     of many dots cannot make the parser split or allocate without bound
//     (the go-jose < 4.0.5 CVE).
//   - Header and payload are single JSON objects without duplicate member
//     names, compared as encoding/json folds them: {"alg":"ES256","alg":"none"}
//     parses differently in different libraries (RFC 8725 §2.8, §3.12; RFC
//     7515 §4).
//   - alg is from the caller's allow-list (default ES256, EdDSA) and is
//     asymmetric: "none", "None" and HS* are refused whatever the list says
//     (RFC 8725 §2.1, §3.1, §3.2). The algorithm decides the key type, never
//     the key: HS256 keyed by a public key's bytes (§2.1) cannot happen, and a
//     key whose own alg is set must match the header's (§3.1).
//   - typ is explicit and must equal Expect.Typ (RFC 8725 §3.11, §2.8): a DPoP
//     proof (dpop+jwt) or an ID token (JWT) is not an access token (at+jwt,
//     RFC 9068 §4) nor an assertion (pullmail-assertion+jwt).
//   - kid is required, at most 128 bytes, and only ever a map key into the
//     verifier's own JWKS: it never reaches SQL, a path or a URL (RFC 8725
//     §3.10). A kid naming two keys is refused.
//   - jwk, jku, x5u and x5c headers are refused: keys come from the
//     verifier's configuration, never from the token, and nothing is fetched
//     (RFC 8725 §3.10; jwk is for DPoP proofs, which the dpop package checks).
//     crit is refused, as we implement no extension (RFC 7515 §4.1.11), and so
//     are b64 (RFC 7797), enc and zip.
//   - The signature is go-jose's to check (ParseSignedCompact limited to the
//     header's alg, then Verify), once the checks above have passed and the
//     key is known to be of the type, curve and size the alg needs. Nothing
//     here hashes or verifies by hand.
//
// ParseUnverified is the checks of form alone (size, parts, base64url, the
// strict JSON of header and payload), for whoever must read a token before
// its keys are known: the dpop package, which then verifies a proof with its
// jwk header through JWS.VerifyWith, and Peek, with which the authorization
// server and the federation receiver read iss, sub or hop to pick the keys.
// There is no other JWT parser in the module.
//
// Claims are a separate step (Claims.Validate): exp required and not past,
// nbf and iat not in the future, a bounded lifetime, iss equal and aud
// containing the expected value, and optionally no other audience (RFC 8725
// §3.8, §3.9; RFC 7519 §4.1).
//
// ParseJWKS reads another domain's JWKS: it skips unknown kty and crv and
// non-signing keys (RFC 7517 §5), and refuses the set when it carries private
// members, a kid twice, an EC point off its curve, an RSA key under 2048 bits,
// or more than 64 KiB.
package keys
