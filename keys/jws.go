package keys

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/go-jose/go-jose/v4"

	"github.com/pullmail/pullmail/errs"
)

// JWS is a compact JWS whose form ParseUnverified checked; its signature is
// not checked yet, so nothing in it may be trusted until VerifyWith (or
// Verify, which calls it) says so. It is the one place where this module
// splits and decodes a JWT: Verify, the dpop package and the peeks of the
// authorization server and the federation receiver all start here, so that
// one token has one parse (RFC 8725 §3.12).
type JWS struct {
	// Header is the protected header's members; Payload the decoded
	// payload, a JSON object. Both passed CheckObject.
	Header  map[string]json.RawMessage
	Payload []byte
	compact string
	sigLen  int
}

// ParseUnverified checks the form of a compact JWS (RFC 7515 §7.1) and
// decodes its header and payload: at most MaxTokenSize bytes, checked
// before anything is decoded; three parts, strictly base64url (no padding,
// no stray bits), so that a JWE or a token of many dots never reaches a
// parser; a header and a payload that are each one JSON object without
// duplicate members (CheckObject). It checks no header value: that is
// Verify's (alg, typ, kid, refused headers) or the caller's (a DPoP proof's
// jwk). Errors are *errs.Error of kind Unauthorized, code invalid_token.
func ParseUnverified(compact string) (*JWS, error) {
	if len(compact) > MaxTokenSize {
		return nil, invalid("token larger than %d bytes", MaxTokenSize)
	}
	switch n := strings.Count(compact, "."); {
	case n == 4:
		return nil, invalid("token is a JWE (5 parts), want a JWS")
	case n != 2:
		return nil, invalid("token is not a compact JWS: %d parts, want 3", n+1)
	}
	h64, rest, _ := strings.Cut(compact, ".")
	p64, s64, _ := strings.Cut(rest, ".")

	hdr, err := b64.DecodeString(h64)
	if err != nil {
		return nil, invalid("header is not base64url")
	}
	if err := checkObject(hdr); err != nil {
		return nil, malformed("header", err)
	}
	t := &JWS{compact: compact}
	if err := json.Unmarshal(hdr, &t.Header); err != nil {
		return nil, invalid("header: %v", err)
	}
	if t.Payload, err = b64.DecodeString(p64); err != nil {
		return nil, invalid("payload is not base64url")
	}
	sig, err := b64.DecodeString(s64)
	if err != nil {
		return nil, invalid("signature is not base64url")
	}
	t.sigLen = len(sig)
	if err := checkObject(t.Payload); err != nil {
		return nil, malformed("payload", err)
	}
	return t, nil
}

// malformed is the error for a header or payload that CheckObject refused:
// its cause stays reachable (errors.As a *DuplicateMemberError), so that a
// caller such as the dpop package can word its own message.
func malformed(part string, err error) error {
	return errs.Wrap(err, errs.Unauthorized, "invalid_token", part+": "+err.Error())
}

// Peek decodes the claims of a compact JWS into claims without verifying
// it, after ParseUnverified's checks, and returns its typ header ("" when
// there is none). It is for choosing which keys verify a token (its iss, its
// sub's domain, its hop number); nothing it returns is trusted until the
// token passes Verify.
func Peek(compact string, claims any) (typ string, err error) {
	t, err := ParseUnverified(compact)
	if err != nil {
		return "", err
	}
	if err := json.Unmarshal(t.Payload, claims); err != nil {
		return "", fmt.Errorf("payload: %w", err)
	}
	json.Unmarshal(t.Header["typ"], &typ) // absent or not a string: ""
	return typ, nil
}

// SameType compares media types, such as a typ header and the type
// expected, as RFC 7515 §4.1.9 says: case-insensitively, "application/"
// being implied when there is no slash.
func SameType(got, want string) bool {
	norm := func(s string) string {
		return strings.TrimPrefix(strings.ToLower(s), "application/")
	}
	return norm(got) == norm(want)
}

// VerifyWith checks the signature with the public key key for the
// algorithm alg, which the caller has taken from the header and checked
// against its allow-list. The algorithm decides the key type, never the key
// (RFC 8725 §3.1): a key of another type, curve or an RSA modulus under
// 2048 bits is refused before go-jose sees it, so an HMAC keyed by a public
// key's bytes cannot arise. The signature itself is go-jose's to check:
// ParseSignedCompact limited to alg, then Verify with key. Errors are
// *errs.Error of kind Unauthorized, code invalid_token: "key type does not
// match alg ..." or "signature does not verify".
func (t *JWS) VerifyWith(alg jose.SignatureAlgorithm, key any) error {
	if !keyFits(alg, key) {
		return invalid("key type does not match alg %s", alg)
	}
	bad := invalid("signature does not verify")
	if t.sigLen == 0 {
		return bad
	}
	obj, err := jose.ParseSignedCompact(t.compact, []jose.SignatureAlgorithm{alg})
	if err != nil {
		return invalid("token: %v", err)
	}
	if _, err := obj.Verify(key); err != nil {
		return bad
	}
	return nil
}

// keyFits reports whether key is a usable public key of the type alg needs.
// Validity is go-jose's JSONWebKey.Valid (an EC key has a point, an RSA key
// a modulus), so that this package never touches the deprecated coordinates
// of ecdsa.PublicKey; a point off the curve passes here and fails in Verify.
func keyFits(alg jose.SignatureAlgorithm, key any) bool {
	switch alg {
	case jose.ES256, jose.ES384, jose.ES512:
		pub, ok := key.(*ecdsa.PublicKey)
		if !ok || pub == nil || pub.Curve == nil {
			return false
		}
		want := "P-521"
		switch alg {
		case jose.ES256:
			want = "P-256"
		case jose.ES384:
			want = "P-384"
		}
		return pub.Curve.Params().Name == want && (&jose.JSONWebKey{Key: pub}).Valid()
	case jose.EdDSA:
		pub, ok := key.(ed25519.PublicKey)
		return ok && len(pub) == ed25519.PublicKeySize
	case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512:
		pub, ok := key.(*rsa.PublicKey)
		return ok && pub != nil && pub.N != nil && pub.N.BitLen() >= minRSABits && (&jose.JSONWebKey{Key: pub}).Valid()
	}
	return false
}
