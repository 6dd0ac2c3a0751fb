package dpop

import (
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// TestVerify is SECURITY.md's DPoP checklist: every "Bad:" line is a case
// refused with RFC 9449's code and a message naming the check, and the
// "(accept)" lines are accepted.
func TestVerify(t *testing.T) {
	e := newEnv(t)
	now := e.now
	key := mustKey(t)
	priv := mustEC(t, elliptic.P256())
	other := mustEC(t, elliptic.P256())
	p384 := mustEC(t, elliptic.P384())
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	const token = "an-access-token"
	nonces := NewNonceSource(time.Minute, func() time.Time { return now })
	staleNonce := NewNonceSourceKey(nonces.key, time.Minute, func() time.Time { return now.Add(-3 * time.Minute) }).Current()
	foreignNonce := NewNonceSource(time.Minute, func() time.Time { return now }).Current()
	requireNonce := func(v *Verifier) { v.Nonce = nonces }

	// signed makes one ES256 proof with priv, after mut changed its parts.
	signed := func(mut func(*proofParts)) func(*testing.T) []string {
		return func(t *testing.T) []string {
			pp := newParts(t, &priv.PublicKey, "ES256", now)
			if mut != nil {
				mut(&pp)
			}
			return []string{craft(t, pp.h, pp.c, signES256(priv))}
		}
	}
	claim := func(name string, value any) func(*proofParts) {
		return func(pp *proofParts) {
			if value == nil {
				delete(pp.c, name)
			} else {
				pp.c[name] = value
			}
		}
	}
	header := func(name string, value any) func(*proofParts) {
		return func(pp *proofParts) {
			if value == nil {
				delete(pp.h, name)
			} else {
				pp.h[name] = value
			}
		}
	}
	// raw makes one ES256 proof from raw JSON, with %s for a fresh jti and
	// %d for iat in the claims.
	ecJWK := string(rawJWK(t, &priv.PublicKey))
	raw := func(hdr, claims string) func(*testing.T) []string {
		return func(t *testing.T) []string {
			return []string{craft(t, hdr, fmt.Sprintf(claims, jti(), now.Unix()), signES256(priv))}
		}
	}
	literal := func(proofs ...string) func(*testing.T) []string {
		return func(*testing.T) []string { return proofs }
	}
	byKeyAt := func(at time.Time, method, htu, token, nonce string) func(*testing.T) []string {
		return func(t *testing.T) []string {
			p, err := key.Proof(method, htu, token, nonce, at)
			if err != nil {
				t.Fatalf("Proof: %v", err)
			}
			return []string{p}
		}
	}
	byKey := func(method, htu, token, nonce string) func(*testing.T) []string {
		return byKeyAt(now, method, htu, token, nonce)
	}
	goodHeader := `{"typ":"dpop+jwt","alg":"ES256","jwk":` + ecJWK + `}`
	goodClaims := `{"jti":%q,"htm":"POST","htu":"` + tokenURL + `","iat":%d}`

	tests := []struct {
		name     string
		method   string // of the request; "" is POST
		proofs   func(*testing.T) []string
		token    string          // access token presented, if any
		verifier func(*Verifier) // changes to the Verifier
		code     string          // "" for accepted
		why      string          // part of the refusal message
	}{
		// (accept)
		{name: "valid proof", proofs: byKey("POST", tokenURL, "", "")},
		{name: "valid proof, crafted", proofs: signed(nil)},
		{name: "valid EdDSA proof", proofs: func(t *testing.T) []string {
			pp := newParts(t, edPub, "EdDSA", now)
			return []string{craft(t, pp.h, pp.c, signEdDSA(edPriv))}
		}},
		{name: "htu plus a query string", proofs: signed(claim("htu", tokenURL+"?a=b&c=d"))},
		{name: "htu plus a fragment", proofs: signed(claim("htu", tokenURL+"#frag"))},
		{name: "htu in another case, default port", proofs: signed(claim("htu", "HTTPS://AS.Example.COM:443/token"))},
		{name: "htu percent-encoded and with dot segments", proofs: signed(claim("htu", "https://as.example.com/a/../%74oken"))},
		{name: "iat 4 minutes old", proofs: signed(claim("iat", now.Add(-4*time.Minute).Unix()))},
		{name: "iat 30 s ahead", proofs: signed(claim("iat", now.Add(30*time.Second).Unix()))},
		{name: "iat fractional", proofs: signed(claim("iat", float64(now.Unix())+0.5))},
		{name: "ath for the presented token", proofs: byKey("POST", tokenURL, token, ""), token: token},
		{name: "current nonce when required", proofs: byKey("POST", tokenURL, "", nonces.Current()), verifier: requireNonce},
		{name: "unknown claims and header members ignored", proofs: signed(func(pp *proofParts) {
			pp.h["kid"] = "x"
			pp.c["extra"] = map[string]any{"a": 1}
		})},
		{name: "jwk with matching alg and use", proofs: signed(header("jwk", json.RawMessage(
			strings.TrimSuffix(ecJWK, "}")+`,"alg":"ES256","use":"sig","kid":"k1"}`)))},

		// Bad: header missing or doubled.
		{name: "header missing", proofs: literal(), code: CodeInvalidProof, why: "no DPoP header"},
		{name: "header doubled", proofs: func(t *testing.T) []string {
			return append(signed(nil)(t), signed(nil)(t)...)
		}, code: CodeInvalidProof, why: "more than one DPoP header"},
		{name: "two proofs in one header", proofs: func(t *testing.T) []string {
			return []string{signed(nil)(t)[0] + ", " + signed(nil)(t)[0]}
		}, code: CodeInvalidProof, why: "not a compact JWS"},
		{name: "empty header", proofs: literal(""), code: CodeInvalidProof, why: "not a compact JWS"},

		// Bad: GET proof on POST, and htm otherwise wrong.
		{name: "GET proof on POST", proofs: byKey("GET", tokenURL, "", ""), code: CodeInvalidProof, why: "htm"},
		{name: "POST proof on GET", method: "GET", proofs: byKey("POST", tokenURL, "", ""), code: CodeInvalidProof, why: "htm"},
		{name: "htm in lower case", proofs: signed(claim("htm", "post")), code: CodeInvalidProof, why: "htm"},

		// Bad: htu with another host, port, scheme or path.
		{name: "htu another host", proofs: signed(claim("htu", "https://evil.example/token")), code: CodeInvalidProof, why: "htu"},
		{name: "htu the request's Host", proofs: signed(claim("htu", "http://attacker.example:8080/elsewhere")), code: CodeInvalidProof, why: "htu"},
		{name: "htu another port", proofs: signed(claim("htu", "https://as.example.com:8443/token")), code: CodeInvalidProof, why: "htu"},
		{name: "htu another scheme", proofs: signed(claim("htu", "http://as.example.com/token")), code: CodeInvalidProof, why: "htu"},
		{name: "htu another path", proofs: signed(claim("htu", "https://as.example.com/token2")), code: CodeInvalidProof, why: "htu"},
		{name: "htu trailing slash", proofs: signed(claim("htu", "https://as.example.com/token/")), code: CodeInvalidProof, why: "htu"},
		{name: "htu host as a suffix", proofs: signed(claim("htu", "https://as.example.com.evil/token")), code: CodeInvalidProof, why: "htu"},
		{name: "htu with user info", proofs: signed(claim("htu", "https://as.example.com@evil.example/token")), code: CodeInvalidProof, why: "htu"},
		{name: "htu relative", proofs: signed(claim("htu", "/token")), code: CodeInvalidProof, why: "htu"},
		{name: "htu encoded slash", proofs: signed(claim("htu", "https://as.example.com/%2Ftoken")), code: CodeInvalidProof, why: "htu"},

		// Bad: iat 10 min off either way, or malformed.
		{name: "iat 10 min old", proofs: byKeyAt(now.Add(-10*time.Minute), "POST", tokenURL, "", ""), code: CodeInvalidProof, why: "iat is more than 5m0s in the past"},
		{name: "iat 10 min ahead", proofs: byKeyAt(now.Add(10*time.Minute), "POST", tokenURL, "", ""), code: CodeInvalidProof, why: "iat is more than 1m0s in the future"},
		{name: "iat 61 s ahead", proofs: signed(claim("iat", now.Add(61*time.Second).Unix())), code: CodeInvalidProof, why: "in the future"},
		{name: "iat 301 s old", proofs: signed(claim("iat", now.Add(-301*time.Second).Unix())), code: CodeInvalidProof, why: "in the past"},
		{name: "iat huge", proofs: signed(claim("iat", 1e300)), code: CodeInvalidProof, why: "in the future"},
		{name: "iat negative", proofs: signed(claim("iat", -1e300)), code: CodeInvalidProof, why: "in the past"},
		{name: "iat missing", proofs: signed(claim("iat", nil)), code: CodeInvalidProof, why: "no iat"},
		{name: "iat a string", proofs: signed(claim("iat", fmt.Sprint(now.Unix()))), code: CodeInvalidProof, why: "iat is not a number"},

		// Bad: no jti (and the other required claims).
		{name: "no jti", proofs: signed(claim("jti", nil)), code: CodeInvalidProof, why: "no jti"},
		{name: "empty jti", proofs: signed(claim("jti", "")), code: CodeInvalidProof, why: "jti is empty"},
		{name: "jti a number", proofs: signed(claim("jti", 7)), code: CodeInvalidProof, why: "jti is not a string"},
		{name: "jti too long", proofs: signed(claim("jti", strings.Repeat("j", 257))), code: CodeInvalidProof, why: "jti longer"},
		{name: "no htm", proofs: signed(claim("htm", nil)), code: CodeInvalidProof, why: "no htm"},
		{name: "no htu", proofs: signed(claim("htu", nil)), code: CodeInvalidProof, why: "no htu"},

		// Bad: typ=JWT.
		{name: "typ JWT", proofs: signed(header("typ", "JWT")), code: CodeInvalidProof, why: "typ"},
		{name: "typ missing", proofs: signed(header("typ", nil)), code: CodeInvalidProof, why: "no typ"},
		{name: "typ in upper case", proofs: signed(header("typ", "DPOP+JWT")), code: CodeInvalidProof, why: "typ"},
		{name: "typ with a prefix", proofs: signed(header("typ", "application/dpop+jwt")), code: CodeInvalidProof, why: "typ"},

		// Bad: alg=none.
		{name: "alg none", proofs: func(t *testing.T) []string {
			pp := newParts(t, &priv.PublicKey, "none", now)
			return []string{craft(t, pp.h, pp.c, nil)}
		}, code: CodeInvalidProof, why: "not a compact JWS: an empty part"},
		{name: "alg none with a signature", proofs: func(t *testing.T) []string {
			pp := newParts(t, &priv.PublicKey, "none", now)
			return []string{craft(t, pp.h, pp.c, signES256(priv))}
		}, code: CodeInvalidProof, why: `alg "none" not allowed`},
		{name: "alg none even when listed in Algs", proofs: func(t *testing.T) []string {
			pp := newParts(t, &priv.PublicKey, "none", now)
			return []string{craft(t, pp.h, pp.c, signES256(priv))}
		}, verifier: func(v *Verifier) { v.Algs = []jose.SignatureAlgorithm{"none", jose.HS256, jose.ES256} },
			code: CodeInvalidProof, why: `alg "none" not allowed`},
		{name: "alg missing", proofs: signed(header("alg", nil)), code: CodeInvalidProof, why: "no alg"},

		// Bad: HS256 with a kty=oct JWK, and HS256 keyed with the public key.
		{name: "HS256 with an oct jwk", proofs: func(t *testing.T) []string {
			k := []byte("0123456789abcdef0123456789abcdef")
			pp := newParts(t, k, "HS256", now)
			return []string{craft(t, pp.h, pp.c, signHS256(k))}
		}, code: CodeInvalidProof, why: `alg "HS256" not allowed`},
		{name: "HS256 with an oct jwk, HS256 in Algs", proofs: func(t *testing.T) []string {
			k := []byte("0123456789abcdef0123456789abcdef")
			pp := newParts(t, k, "HS256", now)
			return []string{craft(t, pp.h, pp.c, signHS256(k))}
		}, verifier: func(v *Verifier) { v.Algs = []jose.SignatureAlgorithm{jose.HS256, jose.ES256} },
			code: CodeInvalidProof, why: `alg "HS256" not allowed`},
		{name: "oct jwk under ES256", proofs: func(t *testing.T) []string {
			k := []byte("0123456789abcdef0123456789abcdef")
			pp := newParts(t, k, "ES256", now)
			return []string{craft(t, pp.h, pp.c, signHS256(k))}
		}, code: CodeInvalidProof, why: `private or symmetric member "k"`},
		{name: "HS256 keyed with the public jwk", proofs: func(t *testing.T) []string {
			pp := newParts(t, &priv.PublicKey, "HS256", now)
			return []string{craft(t, pp.h, pp.c, signHS256([]byte(ecJWK)))}
		}, verifier: func(v *Verifier) { v.Algs = []jose.SignatureAlgorithm{jose.HS256, jose.ES256} },
			code: CodeInvalidProof, why: `alg "HS256" not allowed`},

		// Bad: jwk containing d, or otherwise not the right public key.
		{name: "jwk containing d", proofs: func(t *testing.T) []string {
			pp := newParts(t, priv, "ES256", now)
			return []string{craft(t, pp.h, pp.c, signES256(priv))}
		}, code: CodeInvalidProof, why: `private or symmetric member "d"`},
		{name: "jwk missing", proofs: signed(header("jwk", nil)), code: CodeInvalidProof, why: "jwk: missing"},
		{name: "jwk a string", proofs: signed(header("jwk", "key")), code: CodeInvalidProof, why: "jwk: not a JSON object"},
		{name: "jwk RSA", proofs: signed(header("jwk", json.RawMessage(`{"kty":"RSA","n":"AQAB","e":"AQAB"}`))), code: CodeInvalidProof, why: `kty "RSA"`},
		{name: "jwk Ed25519 under ES256", proofs: func(t *testing.T) []string {
			pp := newParts(t, edPub, "ES256", now)
			return []string{craft(t, pp.h, pp.c, signEdDSA(edPriv))}
		}, code: CodeInvalidProof, why: "cannot verify ES256"},
		{name: "jwk EC under EdDSA", proofs: func(t *testing.T) []string {
			pp := newParts(t, &priv.PublicKey, "EdDSA", now)
			return []string{craft(t, pp.h, pp.c, signES256(priv))}
		}, code: CodeInvalidProof, why: "cannot verify EdDSA"},
		{name: "jwk P-384 under ES256", proofs: func(t *testing.T) []string {
			pp := newParts(t, &p384.PublicKey, "ES256", now)
			return []string{craft(t, pp.h, pp.c, signES256(priv))}
		}, code: CodeInvalidProof, why: "cannot verify ES256"},
		{name: "jwk alg other than the header's", proofs: signed(header("jwk", json.RawMessage(
			strings.TrimSuffix(ecJWK, "}")+`,"alg":"ES384"}`))), code: CodeInvalidProof, why: `its alg "ES384"`},
		{name: "jwk use enc", proofs: signed(header("jwk", json.RawMessage(
			strings.TrimSuffix(ecJWK, "}")+`,"use":"enc"}`))), code: CodeInvalidProof, why: `its use "enc"`},
		{name: "jwk point not on the curve", proofs: signed(header("jwk", json.RawMessage(
			`{"kty":"EC","crv":"P-256","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","y":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`))),
			code: CodeInvalidProof, why: "jwk: "},
		{name: "jwk duplicate member", proofs: signed(header("jwk", json.RawMessage(
			strings.TrimSuffix(ecJWK, "}")+`,"kty":"EC"}`))), code: CodeInvalidProof, why: `duplicate member "kty"`},

		// Bad: signed by another key than jwk.
		{name: "signed by another key", proofs: func(t *testing.T) []string {
			pp := newParts(t, &priv.PublicKey, "ES256", now)
			return []string{craft(t, pp.h, pp.c, signES256(other))}
		}, code: CodeInvalidProof, why: "signature does not verify"},
		{name: "signature of another proof", proofs: func(t *testing.T) []string {
			a, b := signed(nil)(t)[0], signed(nil)(t)[0]
			return []string{a[:strings.LastIndexByte(a, '.')] + b[strings.LastIndexByte(b, '.'):]}
		}, code: CodeInvalidProof, why: "signature does not verify"},
		{name: "signature in ASN.1", proofs: func(t *testing.T) []string {
			pp := newParts(t, &priv.PublicKey, "ES256", now)
			return []string{craft(t, pp.h, pp.c, func(in []byte) []byte {
				sig := signES256(priv)(in)
				return append([]byte{0x30, 0x44, 0x02, 0x20}, sig...)
			})}
		}, code: CodeInvalidProof, why: "signature does not verify"},

		// Bad: ath missing or for another token.
		{name: "ath missing", proofs: byKey("POST", tokenURL, "", ""), token: token, code: CodeInvalidProof, why: "no ath"},
		{name: "ath for another token", proofs: byKey("POST", tokenURL, "another-token", ""), token: token, code: CodeInvalidProof, why: "ath is not the hash"},

		// Bad: stale or missing nonce when required.
		{name: "nonce missing", proofs: byKey("POST", tokenURL, "", ""), verifier: requireNonce, code: CodeUseNonce, why: "requires a nonce"},
		{name: "nonce stale", proofs: byKey("POST", tokenURL, "", staleNonce), verifier: requireNonce, code: CodeUseNonce, why: "stale"},
		{name: "nonce of another server", proofs: byKey("POST", tokenURL, "", foreignNonce), verifier: requireNonce, code: CodeUseNonce, why: "stale"},
		{name: "nonce made up", proofs: byKey("POST", tokenURL, "", "nonce"), verifier: requireNonce, code: CodeUseNonce, why: "stale"},
		{name: "nonce not a string", proofs: signed(claim("nonce", 42)), verifier: requireNonce, code: CodeInvalidProof, why: "nonce is not a string"},

		// Bad: a proof over 8 KiB.
		{name: "proof over 8 KiB", proofs: signed(claim("pad", strings.Repeat("p", 6<<10))), code: CodeInvalidProof, why: "larger than 8192 bytes"},

		// Bad: duplicate keys, JWE, many dots, unknown crit, and other
		// malformed proofs.
		{name: "duplicate header member", proofs: raw(`{"typ":"dpop+jwt","alg":"ES256","alg":"ES256","jwk":`+ecJWK+`}`, goodClaims),
			code: CodeInvalidProof, why: `duplicate member "alg"`},
		{name: "duplicate header member, escaped", proofs: raw(`{"typ":"dpop+jwt","t\u0079p":"dpop+jwt","alg":"ES256","jwk":`+ecJWK+`}`, goodClaims),
			code: CodeInvalidProof, why: `duplicate member "typ"`},
		{name: "duplicate claim", proofs: raw(goodHeader, `{"jti":%q,"htm":"POST","htu":"https://evil.example/","htu":"`+tokenURL+`","iat":%d}`),
			code: CodeInvalidProof, why: `duplicate member "htu"`},
		{name: "claim in another case", proofs: raw(goodHeader, `{"jti":%q,"HTM":"POST","htu":"`+tokenURL+`","iat":%d}`),
			code: CodeInvalidProof, why: "no htm"},
		{name: "data after the header", proofs: raw(goodHeader+`{}`, goodClaims), code: CodeInvalidProof, why: "after top-level value"},
		{name: "header not JSON", proofs: raw(`typ=dpop+jwt`, goodClaims), code: CodeInvalidProof, why: "header: not JSON"},
		{name: "claims an array", proofs: raw(goodHeader, `[%q,%d]`), code: CodeInvalidProof, why: "claims: not a JSON object"},
		{name: "5-part JWE", proofs: literal("eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.OKOawDo13gRp2ojaHV7LFpZcgV7T6DVZKTyKOMTYUmKoTCVJRgckCL9kiMT03JGeipsEdY3mx_etLbbWSrFr05kLzcSr4qKAq7YN7e9jwQRb23nfa6c9d-StnImGyFDbSv04uVuxIp5Zms1gNxKKK2Da14B8S4rzVRltdYwam_lDp5XnZAYpQdb76FdIKLaVmqgfwX7XWRxv2322i-vDxRfqNzo_tETKzpVLzfiwQyeyPGLBIO56YJ7eObdv0je81860ppamavo35UgoRdbYaBcoh9QcfylQr66oc6vFWXRcZ_ZT2LawVCWTIy3brGPi6UklfCpIMfIjf7iGdXKHzg.48V1_ALb6US04U3b.5eym8TW_c8SuK0ltJ3rpYIzOeDQz7TALvtu6UG9oMo4vpzs9tX_EFShS8iB7j6jiSdiwkIr3ajwQzaBtQD_A.XFBoMYUZodetZdvTiFvSkQ"),
			code: CodeInvalidProof, why: "5 parts, not 3"},
		{name: "many dots", proofs: literal(strings.Repeat("a.", 3000)), code: CodeInvalidProof, why: "not a compact JWS"},
		{name: "only dots", proofs: literal(".."), code: CodeInvalidProof, why: "an empty part"},
		{name: "JSON serialization", proofs: literal(`{"payload":"e30","protected":"e30","signature":"AA"}`), code: CodeInvalidProof, why: "not a compact JWS"},
		{name: "white space", proofs: func(t *testing.T) []string { return []string{" " + signed(nil)(t)[0]} }, code: CodeInvalidProof, why: "not a compact JWS"},
		{name: "base64 padding", proofs: func(t *testing.T) []string { return []string{signed(nil)(t)[0] + "=="} }, code: CodeInvalidProof, why: "not a compact JWS"},
		{name: "base64 with non-zero padding bits", proofs: func(t *testing.T) []string {
			p := signed(nil)(t)[0]
			last := p[len(p)-1]                              // 64 bytes of signature: 86 characters, the last holding 4 padding bits
			i := strings.IndexByte(base64Alphabet, last) | 1 // set a padding bit
			return []string{p[:len(p)-1] + base64Alphabet[i:i+1]}
		}, code: CodeInvalidProof, why: "bad base64url"},
		{name: "unknown crit", proofs: signed(func(pp *proofParts) {
			pp.h["crit"] = []string{"exp"}
			pp.h["exp"] = now.Unix()
		}), code: CodeInvalidProof, why: "crit is not supported"},
		{name: "crit b64 false", proofs: signed(func(pp *proofParts) {
			pp.h["crit"] = []string{"b64"}
			pp.h["b64"] = false
		}), code: CodeInvalidProof, why: "crit is not supported"},
		{name: "an access token instead of a proof", proofs: signed(func(pp *proofParts) {
			pp.h["typ"] = "at+jwt"
			pp.c["aud"] = "https://as.example.com"
		}), code: CodeInvalidProof, why: "typ"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := *e.v
			if tt.verifier != nil {
				tt.verifier(&v)
			}
			method := tt.method
			if method == "" {
				method = "POST"
			}
			p, err := v.Verify(t.Context(), request(method, tt.proofs(t)...), tokenURL, tt.token)
			if tt.code != "" {
				if p != nil {
					t.Errorf("Verify returned a proof with error %v", err)
				}
				wantRefused(t, err, tt.code, tt.why)
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if p.JTI == "" || p.HTM != method || p.HTU == "" || p.IssuedAt.IsZero() || p.Thumbprint == "" || !p.JWK.IsPublic() {
				t.Errorf("Verify returned an incomplete proof: %+v", p)
			}
		})
	}
}

const base64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
