package keys

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"math/big"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/pullmail/pullmail/errs"
)

// jwkMap is a key's public JWK as a map, for editing.
func jwkMap(t *testing.T, key any, kid string) map[string]any {
	t.Helper()
	data, err := json.Marshal(jose.JSONWebKey{Key: key, KeyID: kid})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func jwksOf(t *testing.T, keys ...map[string]any) string {
	t.Helper()
	data, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func edit(m map[string]any, kv ...any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

func TestParseJWKS(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecJWK := jwkMap(t, &ec.PublicKey, "ec")
	ecPriv := jwkMap(t, ec, "ec")
	edJWK := jwkMap(t, edPub, "ed")
	rsaJWK := jwkMap(t, &rsaKey.PublicKey, "rsa")
	rsaPriv := jwkMap(t, rsaKey, "rsa")

	// An EC point off the curve: y+1.
	y := new(big.Int).Add(ec.Y, big.NewInt(1))
	offCurve := edit(ecJWK, "y", b64.EncodeToString(y.FillBytes(make([]byte, 32))))
	// RSA-1024: a 1024-bit modulus (primality is not ParseJWKS's business).
	n1024 := make([]byte, 128)
	n1024[0] = 0xc3
	rsa1024 := edit(rsaJWK, "n", b64.EncodeToString(n1024))

	tests := []struct {
		name string
		in   string
		kids []string // the keys kept
		msg  string   // "" means accepted
	}{
		{"EC, OKP and RSA", jwksOf(t, ecJWK, edJWK, rsaJWK), []string{"ec", "ed", "rsa"}, ""},
		{"P-384", jwksOf(t, jwkMap(t, &ec384.PublicKey, "p384")), []string{"p384"}, ""},
		{"empty", `{"keys":[]}`, nil, ""},
		{"no keys member", `{}`, nil, ""},
		{"unknown kty skipped", jwksOf(t, ecJWK, map[string]any{"kty": "ML-DSA", "kid": "pq", "pub": "AAAA"}), []string{"ec"}, ""},
		{"no kty skipped", jwksOf(t, ecJWK, map[string]any{"kid": "x"}), []string{"ec"}, ""},
		{"unknown crv skipped", jwksOf(t, ecJWK, edit(ecJWK, "kid", "k1", "crv", "secp256k1")), []string{"ec"}, ""},
		{"X25519 skipped", jwksOf(t, ecJWK, edit(edJWK, "crv", "X25519")), []string{"ec"}, ""},
		{"encryption key skipped", jwksOf(t, ecJWK, edit(rsaJWK, "use", "enc")), []string{"ec"}, ""},
		{"x5c and x5u dropped, key kept", jwksOf(t, edit(ecJWK, "x5c", []string{"MIIB"}, "x5u", "https://evil.example/")), []string{"ec"}, ""},
		{"alg and use kept", jwksOf(t, edit(ecJWK, "alg", "ES256", "use", "sig")), []string{"ec"}, ""},

		{"over 64 KiB", `{"keys":[],"pad":"` + strings.Repeat("a", 64<<10) + `"}`, nil, "larger than 65536"},
		{"EC private key (d)", jwksOf(t, ecPriv), nil, `private member "d"`},
		{"RSA private key", jwksOf(t, edit(rsaPriv, "d", nil)), nil, `private member "p"`},
		{"symmetric key (k)", jwksOf(t, map[string]any{"kty": "oct", "kid": "hs", "k": "c2VjcmV0"}), nil, `private member "k"`},
		{"one kid for two keys", jwksOf(t, ecJWK, edit(edJWK, "kid", "ec")), nil, `kid "ec" names more than one key`},
		{"one kid for two keys, one skipped", jwksOf(t, ecJWK, edit(rsaJWK, "kid", "ec", "use", "enc")), nil, "more than one key"},
		{"EC point off the curve", jwksOf(t, offCurve), nil, "EC point not on P-256"},
		{"EC point at zero", jwksOf(t, edit(ecJWK, "x", b64.EncodeToString(make([]byte, 32)), "y", b64.EncodeToString(make([]byte, 32)))), nil, "not on P-256"},
		{"EC coordinate short", jwksOf(t, edit(ecJWK, "x", b64.EncodeToString(ec.X.Bytes()[1:]))), nil, "wrong length"},
		{"EC P-384 point as P-256", jwksOf(t, edit(jwkMap(t, &ec384.PublicKey, "p"), "crv", "P-256")), nil, "wrong length"},
		{"EC y missing", jwksOf(t, edit(ecJWK, "y", nil)), nil, `"y" missing`},
		{"EC x padded", jwksOf(t, edit(ecJWK, "x", ecJWK["x"].(string)+"=")), nil, "not base64url"},
		{"Ed25519 short", jwksOf(t, edit(edJWK, "x", "AAAA")), nil, "wrong length"},
		{"RSA-1024", jwksOf(t, rsa1024), nil, "RSA key of 1024 bits"},
		{"RSA exponent 1", jwksOf(t, edit(rsaJWK, "e", "AQ")), nil, "bad RSA exponent"},
		{"RSA exponent even", jwksOf(t, edit(rsaJWK, "e", "AQAA")), nil, "bad RSA exponent"},
		{"kid of 129 bytes", jwksOf(t, edit(ecJWK, "kid", strings.Repeat("k", 129))), nil, "kid longer than 128"},
		{"kid not a string", jwksOf(t, edit(ecJWK, "kid", 7)), nil, `"kid" is not a string`},
		{"duplicate member", `{"keys":[{"kty":"EC","kty":"RSA"}]}`, nil, `duplicate JSON member "kty"`},
		{"keys not an array", `{"keys":{}}`, nil, "JWKS"},
		{"not an object", `[]`, nil, "not a JSON object"},
		{"trailing data", `{"keys":[]} {}`, nil, "data after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, err := ParseJWKS([]byte(tt.in))
			if tt.msg != "" {
				if err == nil {
					t.Fatalf("accepted %d keys", len(set.Keys))
				}
				var e *errs.Error
				if !errs.Is(err, errs.Invalid) || errs.CodeOf(err) != "invalid_jwks" {
					t.Fatalf("error %v: want Invalid, invalid_jwks", err)
				}
				if e = err.(*errs.Error); !strings.Contains(e.Message, tt.msg) {
					t.Fatalf("error %q, want %q", e.Message, tt.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := kids(set)
			if strings.Join(got, ",") != strings.Join(tt.kids, ",") {
				t.Fatalf("kept %v, want %v", got, tt.kids)
			}
			for _, k := range set.Keys {
				if !k.IsPublic() || !k.Valid() || k.Certificates != nil || k.CertificatesURL != nil {
					t.Fatalf("key %+v", k)
				}
			}
		})
	}
}

// TestParseJWKSThenVerify checks that a JWKS parsed from another domain
// verifies that domain's tokens and only those.
func TestParseJWKSThenVerify(t *testing.T) {
	remote, _, _ := newSet(t)
	data, err := json.Marshal(remote.PublicJWKS())
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := ParseJWKS(data)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := remote.Sign("pullmail-assertion+jwt", Claims{Subject: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Verify(tok, jwks, Expect{Typ: "pullmail-assertion+jwt"}); err != nil {
		t.Fatal(err)
	}
	// A kid found only in another domain's JWKS.
	local, _, _ := newSet(t)
	_, _, err = local.Verify(tok, Expect{Typ: "pullmail-assertion+jwt"})
	wantInvalidToken(t, err, "not found")
}
