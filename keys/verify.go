package keys

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"

	"github.com/go-jose/go-jose/v4"

	"github.com/pullmail/pullmail/errs"
)

// Limits on what Verify reads.
const (
	MaxTokenSize = 16 << 10 // bytes of a compact JWS
	MaxKIDLength = 128      // bytes of a kid
)

// DefaultAlgs is the allow-list Verify uses when Expect.Algs is empty.
var DefaultAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA}

// Expect says what kind of token Verify accepts.
type Expect struct {
	// Typ is the required "typ" header, e.g. "at+jwt" (RFC 9068) or
	// "pullmail-assertion+jwt". Required: explicit typing (RFC 8725 §3.11)
	// is what keeps a DPoP proof from passing for an access token. Compared
	// case-insensitively, with an optional "application/" prefix (RFC 7515
	// §4.1.9).
	Typ string
	// Algs is the allow-list of signature algorithms; nil means DefaultAlgs.
	// Only asymmetric algorithms can be allowed: "none" and HS* are refused
	// whatever this says (RFC 8725 §3.1, §3.2).
	Algs []jose.SignatureAlgorithm
}

// asymmetric is every algorithm Verify knows how to check. Anything else, in
// particular "none" and the HMAC family, can never be allowed.
var asymmetric = []jose.SignatureAlgorithm{
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
}

// refusedHeaders are header parameters whose presence fails the token. The key
// comes from the verifier's JWKS, never from the token (RFC 8725 §3.10; a jwk
// header is for DPoP proofs, which the dpop package verifies); we understand
// no critical extension (RFC 7515 §4.1.11), in particular not b64=false (RFC
// 7797); enc and zip mark a JWE (RFC 8725 §2.7, §3.6).
var refusedHeaders = []string{"jwk", "jku", "x5u", "x5c", "crit", "b64", "enc", "zip"}

func invalid(format string, args ...any) error {
	return errs.E(errs.Unauthorized, "invalid_token", format, args...)
}

// b64 is the only encoding a compact JWS may use (RFC 7515 §2): no padding,
// URL alphabet, and no stray bits in the last character, so that one token
// has one spelling.
var b64 = base64.RawURLEncoding.Strict()

// Verify checks a compact JWS against jwks and returns its payload and the key
// that verified it. It checks the form (ParseUnverified), the header (refused
// members, alg, typ, kid), the key the kid names, and the signature
// (JWS.VerifyWith, through go-jose); claims (exp, aud, iss, ...) are
// the caller's: decode the payload into a Claims and call Validate.
//
// jwks is trusted as given: for a remote domain's set, pass what ParseJWKS
// returned. Every error is an *errs.Error of kind Unauthorized with code
// invalid_token, whose message names the check that failed.
func Verify(compact string, jwks jose.JSONWebKeySet, want Expect) ([]byte, *jose.JSONWebKey, error) {
	if want.Typ == "" {
		return nil, nil, errs.E(errs.Internal, "internal", "keys.Verify: Expect.Typ is empty")
	}
	t, err := ParseUnverified(compact)
	if err != nil {
		return nil, nil, err
	}
	h := t.Header
	for _, name := range refusedHeaders {
		if _, ok := h[name]; ok {
			return nil, nil, invalid("header %q is refused", name)
		}
	}

	alg, err := headerString(h, "alg")
	if err != nil {
		return nil, nil, err
	}
	if strings.EqualFold(alg, "none") {
		return nil, nil, invalid("alg none is never accepted")
	}
	if strings.HasPrefix(strings.ToUpper(alg), "HS") {
		return nil, nil, invalid("symmetric alg %s is never accepted", quote(alg))
	}
	sigAlg := jose.SignatureAlgorithm(alg)
	allowed := want.Algs
	if allowed == nil {
		allowed = DefaultAlgs
	}
	if !slices.Contains(allowed, sigAlg) || !slices.Contains(asymmetric, sigAlg) {
		return nil, nil, invalid("alg %s is not allowed", quote(alg))
	}

	typ, err := headerString(h, "typ")
	if err != nil {
		return nil, nil, err
	}
	if !SameType(typ, want.Typ) {
		return nil, nil, invalid("typ %s, want %q", quote(typ), want.Typ)
	}

	kid, err := headerString(h, "kid")
	if err != nil {
		return nil, nil, err
	}
	if len(kid) > MaxKIDLength {
		return nil, nil, invalid("kid longer than %d bytes", MaxKIDLength)
	}
	key, err := lookup(jwks, kid)
	if err != nil {
		return nil, nil, err
	}
	if key.Algorithm != "" && key.Algorithm != alg {
		return nil, nil, invalid("alg %s does not match the key's alg %q", quote(alg), key.Algorithm)
	}
	if key.Use != "" && key.Use != "sig" {
		return nil, nil, invalid("key %s is not for signatures", quote(kid))
	}

	if err := t.VerifyWith(sigAlg, key.Key); err != nil {
		return nil, nil, err
	}
	return t.Payload, key, nil
}

// headerString returns a required string member of the header.
func headerString(h map[string]json.RawMessage, name string) (string, error) {
	raw, ok := h[name]
	if !ok {
		return "", invalid("header %q missing", name)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", invalid("header %q is not a string", name)
	}
	if s == "" {
		return "", invalid("header %q is empty", name)
	}
	return s, nil
}

// lookup finds the one key named kid. The kid is only ever a map key: it
// never reaches a path, a query or a URL (RFC 8725 §3.10).
func lookup(jwks jose.JSONWebKeySet, kid string) (*jose.JSONWebKey, error) {
	var found *jose.JSONWebKey
	for i := range jwks.Keys {
		if jwks.Keys[i].KeyID != kid {
			continue
		}
		if found != nil {
			return nil, invalid("kid %s names more than one key", quote(kid))
		}
		found = &jwks.Keys[i]
	}
	if found == nil {
		return nil, invalid("kid %s not found", quote(kid))
	}
	k := *found
	k.Key = publicOf(k.Key)
	return &k, nil
}

// publicOf is the public half of a private key, and k itself otherwise.
func publicOf(k any) any {
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		return &k.PublicKey
	case ed25519.PrivateKey:
		return k.Public()
	case *rsa.PrivateKey:
		return &k.PublicKey
	}
	return k
}
