package keys

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"math/big"

	"github.com/go-jose/go-jose/v4"

	"github.com/pullmail/pullmail/errs"
)

// Limits on what ParseJWKS reads.
const (
	MaxJWKSSize = 64 << 10 // bytes of a JWKS document
	minRSABits  = 2048
)

// privateMembers are JWK members that carry secret material (RFC 7518 §6.2.2,
// §6.3.2, §6.4; RFC 8037 uses d for OKP). A published set holding any of
// them is a leak at best and a trap at worst.
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// ParseJWKS parses a JWK set fetched from another domain (RFC 7517 §5) for
// use with Verify. It refuses the whole set when it is larger than
// MaxJWKSSize, is not one JSON object without duplicate members, holds a
// private member, names two keys with one kid, or holds an EC point that is
// not on its curve, an EC coordinate of the wrong length, or an RSA modulus
// under 2048 bits. It skips, as RFC 7517 §5 allows, keys it cannot use for
// signatures: unknown kty (including oct), unknown crv, and use other than
// sig. The keys it returns hold public keys only; x5c, x5u and friends are
// dropped, never fetched.
//
// Errors are *errs.Error of kind Invalid, code invalid_jwks.
func ParseJWKS(data []byte) (jose.JSONWebKeySet, error) {
	bad := func(format string, args ...any) (jose.JSONWebKeySet, error) {
		return jose.JSONWebKeySet{}, errs.E(errs.Invalid, "invalid_jwks", "JWKS: "+format, args...)
	}
	if len(data) > MaxJWKSSize {
		return bad("larger than %d bytes", MaxJWKSSize)
	}
	if err := checkObject(data); err != nil {
		return bad("%v", err)
	}
	var doc struct {
		Keys []map[string]json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return bad("%v", err)
	}
	var set jose.JSONWebKeySet
	kids := make(map[string]bool)
	for i, m := range doc.Keys {
		for _, name := range privateMembers {
			if _, ok := m[name]; ok {
				return bad("key %d has private member %q", i, name)
			}
		}
		str := func(name string) (string, error) {
			raw, ok := m[name]
			if !ok {
				return "", nil
			}
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return "", fmt.Errorf("key %d: %q is not a string", i, name)
			}
			return s, nil
		}
		var kty, kid, alg, use, crv string
		for _, f := range []struct {
			name string
			dst  *string
		}{{"kty", &kty}, {"kid", &kid}, {"alg", &alg}, {"use", &use}, {"crv", &crv}} {
			s, err := str(f.name)
			if err != nil {
				return bad("%v", err)
			}
			*f.dst = s
		}
		if kid != "" {
			if len(kid) > MaxKIDLength {
				return bad("key %d: kid longer than %d bytes", i, MaxKIDLength)
			}
			if kids[kid] {
				return bad("kid %s names more than one key", quote(kid))
			}
			kids[kid] = true
		}
		if use != "" && use != "sig" {
			continue
		}
		bytesOf := func(name string) ([]byte, error) {
			s, err := str(name)
			if err != nil {
				return nil, err
			}
			if s == "" {
				return nil, fmt.Errorf("key %d: %q missing", i, name)
			}
			b, err := b64.DecodeString(s)
			if err != nil {
				return nil, fmt.Errorf("key %d: %q is not base64url", i, name)
			}
			return b, nil
		}
		var key any
		switch kty {
		case "EC":
			var curve elliptic.Curve
			switch crv {
			case "P-256":
				curve = elliptic.P256()
			case "P-384":
				curve = elliptic.P384()
			case "P-521":
				curve = elliptic.P521()
			default:
				continue
			}
			x, err := bytesOf("x")
			if err != nil {
				return bad("%v", err)
			}
			y, err := bytesOf("y")
			if err != nil {
				return bad("%v", err)
			}
			size := (curve.Params().BitSize + 7) / 8
			if len(x) != size || len(y) != size { // RFC 7518 §6.2.1.2, §6.2.1.3
				return bad("key %d: EC coordinate of the wrong length", i)
			}
			// ParseUncompressedPublicKey refuses a point off the curve (the
			// invalid-curve attack needs one) and the point at infinity.
			pub, err := ecdsa.ParseUncompressedPublicKey(curve, append(append([]byte{4}, x...), y...))
			if err != nil {
				return bad("key %d: EC point not on %s", i, crv)
			}
			key = pub
		case "OKP":
			if crv != "Ed25519" { // X25519 and others do not sign
				continue
			}
			x, err := bytesOf("x")
			if err != nil {
				return bad("%v", err)
			}
			if len(x) != ed25519.PublicKeySize {
				return bad("key %d: Ed25519 key of the wrong length", i)
			}
			key = ed25519.PublicKey(x)
		case "RSA":
			n, err := bytesOf("n")
			if err != nil {
				return bad("%v", err)
			}
			e, err := bytesOf("e")
			if err != nil {
				return bad("%v", err)
			}
			nn := new(big.Int).SetBytes(n)
			if nn.BitLen() < minRSABits {
				return bad("key %d: RSA key of %d bits, want at least %d", i, nn.BitLen(), minRSABits)
			}
			if nn.BitLen() > 8192 {
				return bad("key %d: RSA key of %d bits, want at most 8192", i, nn.BitLen())
			}
			ee := new(big.Int).SetBytes(e)
			if ee.BitLen() > 31 || ee.Int64() < 3 || ee.Bit(0) == 0 {
				return bad("key %d: bad RSA exponent", i)
			}
			key = &rsa.PublicKey{N: nn, E: int(ee.Int64())}
		default:
			continue // RFC 7517 §5: ignore keys we do not understand
		}
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: alg, Use: use})
	}
	return set, nil
}
