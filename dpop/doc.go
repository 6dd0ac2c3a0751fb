// Package dpop implements DPoP proofs (OAuth 2.0 Demonstrating Proof of
// Possession, RFC 9449) on both sides: a client Key that signs a proof for
// each HTTP request, and a server Verifier that the Authorization Server's
// token endpoint and every resource server run before they trust a
// DPoP-bound token. A DPoP proof ties a request to a key the client holds, so
// that a stolen access token, refresh token or cross-domain assertion is
// useless without that key.
//
// # Client
//
// A Key is an ECDSA P-256 key (ES256, RFC 7518 §3.4). Key.Proof makes a
// compact JWS (RFC 7515 §7.1) whose header is typ "dpop+jwt", alg "ES256" and
// the public jwk, and whose claims are jti (128 random bits), htm, htu
// (without query and fragment), iat, ath when an access token is sent, and
// nonce when the server asked for one (RFC 9449 §4.2). Key.Thumbprint is the
// RFC 7638 thumbprint that the AS puts in a token's cnf.jkt. Keys marshal to
// a private JWK for storage; keep that file mode 0600.
//
// # Server
//
// Verifier.Verify checks, in order, and refuses with the RFC 9449 §12.2
// error code invalid_dpop_proof (use_dpop_nonce for the nonce checks), each
// error saying which check failed (RFC 9449 §4.3 unless noted):
//
//   - exactly one DPoP header (§4.3 item 1) holding one compact JWS of three
//     base64url parts and at most 8 KiB (MaxProofSize): a JWE, a JSON
//     serialization or a token with more dots is refused before any parsing;
//   - header and claims are JSON objects without duplicate members, at any
//     depth and compared as encoding/json folds names (RFC 7515 §4 lets a
//     parser pick either; we refuse, so that we and any other parser see the
//     same values): keys.ParseUnverified, the module's one JWT parser;
//   - typ is exactly "dpop+jwt" (§4.3 item 4), so that no other JWT (an
//     access token, an ID token, an assertion) passes as a proof;
//   - no crit member: no JWS extension is understood (RFC 7515 §4.1.11),
//     in particular not b64=false (RFC 7797);
//   - alg is in Verifier.Algs (default ES256 and EdDSA) and is one this
//     package implements (ES256, ES384, ES512, EdDSA): never "none" and never
//     an HMAC, whatever Algs says (§4.3 item 5, RFC 8725 §3.1);
//   - jwk is present, a public EC or OKP key only (no "d" or any other
//     private or symmetric member), of the type and curve that alg names
//     (RFC 8725 §3.1: the key decides, not the attacker's alg), and the
//     signature verifies with it through go-jose (§4.3 items 6 and 7);
//   - jti, htm, htu and iat are present (§4.2); htm equals the request
//     method (§4.3 item 8); htu equals the endpoint's configured external
//     URL (§4.3 item 9), both normalised per RFC 3986 §6.2.2 and §6.2.3
//     (case of scheme and host, percent-encoding, dot segments, default port,
//     empty path as "/"), ignoring the proof's query and fragment (§4.2).
//     The configured URL is a parameter: it is never built from the Host
//     header, which the client controls;
//   - iat is within [now-MaxAge, now+Skew] (default 5 minutes and 60
//     seconds; §4.3 item 11, §11.1);
//   - when an access token is presented, ath is present and equals
//     base64url(SHA-256(token)) (§4.3 item 12, §7.1);
//   - when the Verifier has a NonceSource, nonce is present and was issued
//     by it in the current or previous window, else use_dpop_nonce, and the
//     caller answers with a fresh DPoP-Nonce header (§8, §9);
//   - last, the jti is recorded in the replay cache (meta.Once) under
//     "dpop:"+thumbprint+":"+jti until iat+MaxAge+Skew, the whole time the
//     proof could pass the iat check; a jti seen before is refused (§11.1).
//     The cache is the metadata store, so it survives restarts and is shared
//     by every process of the domain. Only a proof that passed every other
//     check is recorded, so a refused request changes no state.
//
// The replay cache judges expiry by its own clock (meta/sqlite uses
// time.Now), so Verifier.Clock must agree with it in production.
//
// What Verify does not check, because it needs the token: that a DPoP-bound
// access token's cnf.jkt equals Proof.Thumbprint, and that such a token was
// sent with the DPoP scheme and not as Bearer (RFC 9449 §7.1, §7.2). The
// resource server does that, and answers failures with WWWAuthenticate.
package dpop
