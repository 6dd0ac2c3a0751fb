package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/json"
	"math/big"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/pullmail/pullmail/errs"
)

const typAT = "at+jwt"

func TestVerifyRefusals(t *testing.T) {
	s, _, _ := newSet(t)
	cur := s.st.Load().current
	kid := cur.info.KID
	sign := es256(cur.priv)
	payload := `{"iss":"https://a.example","sub":"alice","aud":"https://b.example","exp":1900000000}`
	hdr := func(extra map[string]any) string {
		h := map[string]any{"alg": "ES256", "kid": kid, "typ": typAT}
		for k, v := range extra {
			if v == nil {
				delete(h, k)
			} else {
				h[k] = v
			}
		}
		return header(h)
	}

	// Another set's key, claiming our kid.
	other, _, _ := newSet(t)
	otherPriv := other.st.Load().current.priv

	// The public key's bytes, as an attacker would use them for HS256: the
	// published JWK, and the uncompressed point.
	pubJWK, err := json.Marshal(s.PublicJWKS().Keys[0])
	if err != nil {
		t.Fatal(err)
	}
	ecdhPub, err := cur.priv.PublicKey.ECDH()
	if err != nil {
		t.Fatal(err)
	}
	hs256 := func(key []byte) func([]byte) []byte {
		return func(input []byte) []byte {
			m := hmac.New(sha256.New, key)
			m.Write(input)
			return m.Sum(nil)
		}
	}

	// An attacker's key, put in a jwk header.
	attacker, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	attackerJWK := jose.JSONWebKey{Key: &attacker.PublicKey}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	derSign := func(input []byte) []byte {
		d := sha256.Sum256(input)
		sig, err := ecdsa.SignASN1(rand.Reader, cur.priv, d[:])
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}

	valid := mint(hdr(nil), payload, sign)
	h64, rest, _ := strings.Cut(valid, ".")
	p64, s64, _ := strings.Cut(rest, ".")

	tests := []struct {
		name  string
		token string
		want  Expect
		msg   string // "" means accepted
	}{
		{"valid", valid, Expect{Typ: typAT}, ""},
		{"typ with application/ prefix", mint(hdr(map[string]any{"typ": "application/at+jwt"}), payload, sign), Expect{Typ: typAT}, ""},
		{"typ in upper case", mint(hdr(map[string]any{"typ": "AT+JWT"}), payload, sign), Expect{Typ: typAT}, ""},

		// Size and shape.
		{"over 16 KiB", mint(hdr(nil), `{"x":"`+strings.Repeat("a", 16<<10)+`"}`, sign), Expect{Typ: typAT}, "larger than 16384"},
		{"two parts", h64 + "." + p64, Expect{Typ: typAT}, "2 parts, want 3"},
		{"four parts", valid + ".x", Expect{Typ: typAT}, "4 parts"},
		{"5-part JWE", b64.EncodeToString([]byte(`{"alg":"RSA-OAEP","enc":"A256GCM","kid":"`+kid+`"}`)) + ".a.b.c.d", Expect{Typ: typAT}, "JWE"},
		{"many dots", strings.Repeat(".", 8000), Expect{Typ: typAT}, "8001 parts"},
		{"empty", "", Expect{Typ: typAT}, "1 parts"},
		{"header padded", h64 + "=." + p64 + "." + s64, Expect{Typ: typAT}, "header is not base64url"},
		{"header std alphabet", strings.NewReplacer("-", "+", "_", "/").Replace(h64) + "+." + p64 + "." + s64, Expect{Typ: typAT}, "header is not base64url"},
		{"payload padded", h64 + "." + p64 + "==." + s64, Expect{Typ: typAT}, "payload is not base64url"},
		{"signature not base64url", h64 + "." + p64 + ".***", Expect{Typ: typAT}, "signature is not base64url"},
		{"header not an object", mint(`["ES256"]`, payload, sign), Expect{Typ: typAT}, "not a JSON object"},
		{"header not JSON", mint(`{"alg":`, payload, sign), Expect{Typ: typAT}, "header"},
		{"header with trailing data", mint(hdr(nil)+`{}`, payload, sign), Expect{Typ: typAT}, "data after the JSON object"},

		// alg (RFC 8725 §2.1, §3.1, §3.2).
		{"alg none", mint(hdr(map[string]any{"alg": "none"}), payload, nil), Expect{Typ: typAT}, "alg none"},
		{"alg None", mint(hdr(map[string]any{"alg": "None"}), payload, nil), Expect{Typ: typAT}, "alg none"},
		{"alg NONE even if allowed", mint(hdr(map[string]any{"alg": "NONE"}), payload, nil), Expect{Typ: typAT, Algs: []jose.SignatureAlgorithm{"NONE", "none"}}, "alg none"},
		{"HS256 keyed by the public JWK", mint(hdr(map[string]any{"alg": "HS256"}), payload, hs256(pubJWK)), Expect{Typ: typAT}, "symmetric alg"},
		{"HS256 keyed by the public point", mint(hdr(map[string]any{"alg": "HS256"}), payload, hs256(ecdhPub.Bytes())), Expect{Typ: typAT}, "symmetric alg"},
		{"HS256 even if allowed", mint(hdr(map[string]any{"alg": "HS256"}), payload, hs256(pubJWK)), Expect{Typ: typAT, Algs: []jose.SignatureAlgorithm{jose.HS256}}, "symmetric alg"},
		{"hs512 lower case", mint(hdr(map[string]any{"alg": "hs512"}), payload, hs256(pubJWK)), Expect{Typ: typAT}, "symmetric alg"},
		{"alg not in the list", mint(hdr(map[string]any{"alg": "ES256"}), payload, sign), Expect{Typ: typAT, Algs: []jose.SignatureAlgorithm{jose.EdDSA}}, `alg "ES256" is not allowed`},
		{"ES384 not in the default list", mint(hdr(map[string]any{"alg": "ES384"}), payload, nil), Expect{Typ: typAT}, `alg "ES384" is not allowed`},
		{"RS256 not in the default list", mint(hdr(map[string]any{"alg": "RS256"}), payload, nil), Expect{Typ: typAT}, `alg "RS256" is not allowed`},
		{"unknown alg even if allowed", mint(hdr(map[string]any{"alg": "ES256K"}), payload, nil), Expect{Typ: typAT, Algs: []jose.SignatureAlgorithm{"ES256K"}}, `alg "ES256K" is not allowed`},
		{"alg missing", mint(hdr(map[string]any{"alg": nil}), payload, sign), Expect{Typ: typAT}, `"alg" missing`},
		{"alg empty", mint(hdr(map[string]any{"alg": ""}), payload, sign), Expect{Typ: typAT}, `"alg" is empty`},
		{"alg not a string", mint(hdr(map[string]any{"alg": 256}), payload, sign), Expect{Typ: typAT}, `"alg" is not a string`},
		{"ES384 with a P-256 key", mint(hdr(map[string]any{"alg": "ES384"}), payload, sign), Expect{Typ: typAT, Algs: []jose.SignatureAlgorithm{jose.ES384}}, `alg "ES384" does not match the key's alg "ES256"`},
		{"EdDSA with an EC key", mint(hdr(map[string]any{"alg": "EdDSA"}), payload, sign), Expect{Typ: typAT}, `alg "EdDSA" does not match the key's alg "ES256"`},

		// typ (RFC 8725 §3.11).
		{"typ missing", mint(hdr(map[string]any{"typ": nil}), payload, sign), Expect{Typ: typAT}, `"typ" missing`},
		{"typ JWT", mint(hdr(map[string]any{"typ": "JWT"}), payload, sign), Expect{Typ: typAT}, `typ "JWT", want "at+jwt"`},
		{"DPoP proof as an access token", mint(hdr(map[string]any{"typ": "dpop+jwt"}), payload, sign), Expect{Typ: typAT}, `typ "dpop+jwt"`},
		{"DPoP proof as an assertion", mint(header(map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": attackerJWK}), `{"jti":"j","htm":"POST","htu":"https://a.example/token","iat":1900000000}`, es256(attacker)), Expect{Typ: "pullmail-assertion+jwt"}, `header "jwk" is refused`},
		{"access token as an assertion", valid, Expect{Typ: "pullmail-assertion+jwt"}, `typ "at+jwt"`},
		{"typ with a suffix", mint(hdr(map[string]any{"typ": "at+jwt; x"}), payload, sign), Expect{Typ: typAT}, `typ "at+jwt; x"`},
		{"typ not a string", mint(hdr(map[string]any{"typ": []string{"at+jwt"}}), payload, sign), Expect{Typ: typAT}, `"typ" is not a string`},

		// kid (RFC 8725 §3.10).
		{"kid missing", mint(hdr(map[string]any{"kid": nil}), payload, sign), Expect{Typ: typAT}, `"kid" missing`},
		{"kid of 129 bytes", mint(hdr(map[string]any{"kid": strings.Repeat("k", 129)}), payload, sign), Expect{Typ: typAT}, "kid longer than 128"},
		{"kid of 10 KB", mint(hdr(map[string]any{"kid": strings.Repeat("k", 10000)}), payload, sign), Expect{Typ: typAT}, "kid longer than 128"},
		{"kid path traversal", mint(hdr(map[string]any{"kid": "../../etc/passwd"}), payload, sign), Expect{Typ: typAT}, "not found"},
		{"kid SQL injection", mint(hdr(map[string]any{"kid": "' OR 1=1--"}), payload, sign), Expect{Typ: typAT}, "not found"},
		{"kid NUL", mint(hdr(map[string]any{"kid": kid + "\x00"}), payload, sign), Expect{Typ: typAT}, "not found"},
		{"kid not a string", mint(hdr(map[string]any{"kid": 7}), payload, sign), Expect{Typ: typAT}, `"kid" is not a string`},

		// Keys from the token (RFC 8725 §3.10).
		{"jwk header", mint(hdr(map[string]any{"jwk": attackerJWK}), payload, es256(attacker)), Expect{Typ: typAT}, `header "jwk" is refused`},
		{"jku header", mint(hdr(map[string]any{"jku": "https://evil.example/jwks"}), payload, sign), Expect{Typ: typAT}, `header "jku" is refused`},
		{"x5u header", mint(hdr(map[string]any{"x5u": "https://evil.example/cert"}), payload, sign), Expect{Typ: typAT}, `header "x5u" is refused`},
		{"x5c header", mint(hdr(map[string]any{"x5c": []string{"MIIB"}}), payload, sign), Expect{Typ: typAT}, `header "x5c" is refused`},
		{"unknown crit", mint(hdr(map[string]any{"crit": []string{"exp"}, "exp": 1}), payload, sign), Expect{Typ: typAT}, `header "crit" is refused`},
		{"b64 false", mint(hdr(map[string]any{"crit": []string{"b64"}, "b64": false}), payload, sign), Expect{Typ: typAT}, "is refused"},
		{"zip", mint(hdr(map[string]any{"zip": "DEF"}), payload, sign), Expect{Typ: typAT}, `header "zip" is refused`},

		// Duplicate members (RFC 8725 §3.12; RFC 7515 §4).
		{"duplicate alg", mint(`{"alg":"ES256","alg":"none","kid":"`+kid+`","typ":"at+jwt"}`, payload, sign), Expect{Typ: typAT}, `duplicate JSON member "alg"`},
		{"duplicate alg, none first", mint(`{"alg":"none","alg":"ES256","kid":"`+kid+`","typ":"at+jwt"}`, payload, sign), Expect{Typ: typAT}, `duplicate JSON member "alg"`},
		{"alg and ALG", mint(`{"alg":"ES256","ALG":"none","kid":"`+kid+`","typ":"at+jwt"}`, payload, sign), Expect{Typ: typAT}, `duplicate JSON member "ALG"`},
		{"duplicate typ, escaped", mint(`{"alg":"ES256","kid":"`+kid+`","typ":"at+jwt","\u0074yp":"dpop+jwt"}`, payload, sign), Expect{Typ: typAT}, "duplicate JSON member"},
		{"duplicate in payload", mint(hdr(nil), `{"sub":"alice","sub":"admin","exp":1900000000}`, sign), Expect{Typ: typAT}, `payload: duplicate JSON member "sub"`},
		{"duplicate in payload by Unicode folding", mint(hdr(nil), `{"scope":"read","ſcope":"admin"}`, sign), Expect{Typ: typAT}, "payload: duplicate JSON member"},
		{"duplicate nested in payload", mint(hdr(nil), `{"cnf":{"jkt":"a","jkt":"b"}}`, sign), Expect{Typ: typAT}, `payload: duplicate JSON member "jkt"`},
		{"payload not an object", mint(hdr(nil), `"alice"`, sign), Expect{Typ: typAT}, "payload: not a JSON object"},
		{"payload nested too deep", mint(hdr(nil), `{"a":`+strings.Repeat("[", 40)+strings.Repeat("]", 40)+`}`, sign), Expect{Typ: typAT}, "nested too deep"},

		// Signature.
		{"another set's key with our kid", mint(hdr(nil), payload, es256(otherPriv)), Expect{Typ: typAT}, "signature does not verify"},
		{"payload tampered", h64 + "." + b64.EncodeToString([]byte(strings.Replace(payload, "alice", "admin", 1))) + "." + s64, Expect{Typ: typAT}, "signature does not verify"},
		{"signature truncated", h64 + "." + p64 + "." + b64.EncodeToString(sign([]byte(h64 + "." + p64))[:60]), Expect{Typ: typAT}, "signature does not verify"},
		{"signature empty", h64 + "." + p64 + ".", Expect{Typ: typAT}, "signature does not verify"},
		{"signature zero", h64 + "." + p64 + "." + b64.EncodeToString(make([]byte, 64)), Expect{Typ: typAT}, "signature does not verify"},
		{"signature in DER", mint(hdr(nil), payload, derSign), Expect{Typ: typAT}, "signature does not verify"},
		{"signed by a P-384 key", mint(hdr(nil), payload, func(in []byte) []byte {
			d := sha256.Sum256(in)
			r, s, _ := ecdsa.Sign(rand.Reader, p384, d[:])
			sig := make([]byte, 96)
			r.FillBytes(sig[:48])
			s.FillBytes(sig[48:])
			return sig
		}), Expect{Typ: typAT}, "signature does not verify"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, key, err := s.Verify(tt.token, tt.want)
			if tt.msg == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if string(got) != payload || key.KeyID != kid {
					t.Fatalf("got payload %q key %q", got, key.KeyID)
				}
				return
			}
			wantInvalidToken(t, err, tt.msg)
			if got != nil || key != nil {
				t.Fatalf("refused but returned payload %q", got)
			}
		})
	}
}

// TestVerifyKeyChecks covers checks that depend on the JWKS given to Verify.
func TestVerifyKeyChecks(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaPriv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	payload := `{"sub":"alice"}`
	tok := func(alg, kid string, sign func([]byte) []byte) string {
		return mint(header(map[string]any{"alg": alg, "kid": kid, "typ": typAT}), payload, sign)
	}
	edSign := func(in []byte) []byte { return ed25519.Sign(edPriv, in) }
	rsaSign := func(k *rsa.PrivateKey, pss bool, h crypto.Hash) func([]byte) []byte {
		return func(in []byte) []byte {
			var d []byte
			switch h {
			case crypto.SHA256:
				s := sha256.Sum256(in)
				d = s[:]
			case crypto.SHA512:
				s := sha512.Sum512(in)
				d = s[:]
			}
			var sig []byte
			var err error
			if pss {
				sig, err = rsa.SignPSS(rand.Reader, k, h, d, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
			} else {
				sig, err = rsa.SignPKCS1v15(rand.Reader, k, h, d)
			}
			if err != nil {
				t.Fatal(err)
			}
			return sig
		}
	}
	set := func(ks ...jose.JSONWebKey) jose.JSONWebKeySet { return jose.JSONWebKeySet{Keys: ks} }
	ecKey := jose.JSONWebKey{Key: &priv.PublicKey, KeyID: "ec"}
	all := []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA, jose.RS256, jose.PS256, jose.RS512}
	tests := []struct {
		name  string
		token string
		jwks  jose.JSONWebKeySet
		algs  []jose.SignatureAlgorithm
		msg   string
	}{
		{"ES256", tok("ES256", "ec", es256(priv)), set(ecKey), nil, ""},
		{"ES256, key alg set", tok("ES256", "ec", es256(priv)), set(jose.JSONWebKey{Key: &priv.PublicKey, KeyID: "ec", Algorithm: "ES256", Use: "sig"}), nil, ""},
		{"ES256, private key in the set", tok("ES256", "ec", es256(priv)), set(jose.JSONWebKey{Key: priv, KeyID: "ec"}), nil, ""},
		{"EdDSA", tok("EdDSA", "ed", edSign), set(jose.JSONWebKey{Key: edPub, KeyID: "ed"}), nil, ""},
		{"RS256 when allowed", tok("RS256", "rsa", rsaSign(rsaPriv, false, crypto.SHA256)), set(jose.JSONWebKey{Key: &rsaPriv.PublicKey, KeyID: "rsa"}), all, ""},
		{"PS256 when allowed", tok("PS256", "rsa", rsaSign(rsaPriv, true, crypto.SHA256)), set(jose.JSONWebKey{Key: &rsaPriv.PublicKey, KeyID: "rsa"}), all, ""},
		{"RS512 when allowed", tok("RS512", "rsa", rsaSign(rsaPriv, false, crypto.SHA512)), set(jose.JSONWebKey{Key: &rsaPriv.PublicKey, KeyID: "rsa"}), all, ""},

		{"key alg differs from the header's", tok("EdDSA", "ed", edSign), set(jose.JSONWebKey{Key: edPub, KeyID: "ed", Algorithm: "ES256"}), nil, `does not match the key's alg "ES256"`},
		{"key alg differs, RS256 vs PS256", tok("RS256", "rsa", rsaSign(rsaPriv, false, crypto.SHA256)), set(jose.JSONWebKey{Key: &rsaPriv.PublicKey, KeyID: "rsa", Algorithm: "PS256"}), all, `does not match the key's alg "PS256"`},
		{"key for encryption", tok("ES256", "ec", es256(priv)), set(jose.JSONWebKey{Key: &priv.PublicKey, KeyID: "ec", Use: "enc"}), nil, "not for signatures"},
		{"kid names two keys", tok("ES256", "ec", es256(priv)), set(ecKey, jose.JSONWebKey{Key: edPub, KeyID: "ec"}), nil, "more than one key"},
		{"kid not in the set", tok("ES256", "nope", es256(priv)), set(ecKey), nil, "not found"},
		{"empty set", tok("ES256", "ec", es256(priv)), set(), nil, "not found"},
		{"ES256 on an Ed25519 key", tok("ES256", "ed", es256(priv)), set(jose.JSONWebKey{Key: edPub, KeyID: "ed"}), nil, "key type does not match alg ES256"},
		{"ES256 on a symmetric key", tok("ES256", "oct", es256(priv)), set(jose.JSONWebKey{Key: []byte("secret"), KeyID: "oct"}), nil, "key type does not match"},
		{"RS256 on a 1024-bit key", tok("RS256", "rsa", rsaSign(rsa1024, false, crypto.SHA256)), set(jose.JSONWebKey{Key: &rsa1024.PublicKey, KeyID: "rsa"}), all, "key type does not match"},
		{"RS256 on an EC key", tok("RS256", "ec", rsaSign(rsaPriv, false, crypto.SHA256)), set(ecKey), all, "key type does not match"},
		{"PS256 signature for RS256", tok("RS256", "rsa", rsaSign(rsaPriv, true, crypto.SHA256)), set(jose.JSONWebKey{Key: &rsaPriv.PublicKey, KeyID: "rsa"}), all, "signature does not verify"},
		{"Ed25519 by another key", tok("EdDSA", "ed", func(in []byte) []byte {
			_, k, _ := ed25519.GenerateKey(rand.Reader)
			return ed25519.Sign(k, in)
		}), set(jose.JSONWebKey{Key: edPub, KeyID: "ed"}), nil, "signature does not verify"},
		{"nil EC key", tok("ES256", "ec", es256(priv)), set(jose.JSONWebKey{Key: (*ecdsa.PublicKey)(nil), KeyID: "ec"}), nil, "key type does not match"},
		{"EC key without a point", tok("ES256", "ec", es256(priv)), set(jose.JSONWebKey{Key: &ecdsa.PublicKey{Curve: elliptic.P256()}, KeyID: "ec"}), nil, "key type does not match"},
		//lint:ignore SA1019 an off-curve key can only be made from raw coordinates
		{"EC key off the curve", tok("ES256", "ec", es256(priv)), set(jose.JSONWebKey{Key: &ecdsa.PublicKey{Curve: elliptic.P256(), X: big.NewInt(1), Y: big.NewInt(1)}, KeyID: "ec"}), nil, "signature does not verify"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, key, err := Verify(tt.token, tt.jwks, Expect{Typ: typAT, Algs: tt.algs})
			if tt.msg == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if string(got) != payload {
					t.Fatalf("payload %q", got)
				}
				if _, private := key.Key.(*ecdsa.PrivateKey); private {
					t.Fatal("Verify returned a private key")
				}
				return
			}
			wantInvalidToken(t, err, tt.msg)
		})
	}
}

func TestVerifyNeedsTyp(t *testing.T) {
	s, _, _ := newSet(t)
	tok, err := s.Sign(typAT, map[string]any{"sub": "alice"})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = s.Verify(tok, Expect{})
	if err == nil || errs.KindOf(err) != errs.Internal {
		t.Fatalf("Verify with no Expect.Typ: %v, want an Internal error", err)
	}
}

// TestInterop checks that go-jose verifies what Sign makes, and that Verify
// accepts what go-jose signs.
func TestInterop(t *testing.T) {
	s, _, _ := newSet(t)
	tok, err := s.Sign(typAT, Claims{Subject: "alice", Audience: Audience{"https://b.example"}})
	if err != nil {
		t.Fatal(err)
	}
	jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	jwks := s.PublicJWKS()
	got, err := jws.Verify(&jwks)
	if err != nil {
		t.Fatalf("go-jose refuses Sign's token: %v", err)
	}
	if string(got) != `{"sub":"alice","aud":"https://b.example"}` {
		t.Fatalf("payload %s", got)
	}
	h := jws.Signatures[0].Protected
	if h.Algorithm != "ES256" || h.KeyID != s.CurrentKID() || h.ExtraHeaders["typ"] != typAT {
		t.Fatalf("header %+v", h)
	}

	priv := s.st.Load().current.priv
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: priv, KeyID: s.CurrentKID()}},
		(&jose.SignerOptions{}).WithType(typAT))
	if err != nil {
		t.Fatal(err)
	}
	obj, err := signer.Sign([]byte(`{"sub":"bob"}`))
	if err != nil {
		t.Fatal(err)
	}
	compact, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	got, _, err = s.Verify(compact, Expect{Typ: typAT})
	if err != nil {
		t.Fatalf("Verify refuses go-jose's token: %v", err)
	}
	if string(got) != `{"sub":"bob"}` {
		t.Fatalf("payload %s", got)
	}
}

// TestSignHeader checks the header Sign writes (RFC 8725 §3.11).
func TestSignHeader(t *testing.T) {
	s, _, _ := newSet(t)
	for _, typ := range []string{typAT, "pullmail-assertion+jwt"} {
		tok, err := s.Sign(typ, json.RawMessage(`{"sub":"alice"}`))
		if err != nil {
			t.Fatal(err)
		}
		h64, _, _ := strings.Cut(tok, ".")
		h, err := b64.DecodeString(h64)
		if err != nil {
			t.Fatal(err)
		}
		want := `{"alg":"ES256","kid":"` + s.CurrentKID() + `","typ":"` + typ + `"}`
		if string(h) != want {
			t.Fatalf("header %s, want %s", h, want)
		}
		if _, _, err := s.Verify(tok, Expect{Typ: typ}); err != nil {
			t.Fatalf("Verify: %v", err)
		}
	}
	for _, tt := range []struct {
		name   string
		typ    string
		claims any
	}{
		{"no typ", "", map[string]any{}},
		{"typ with a quote", `at"jwt`, map[string]any{}},
		{"typ with a space", "at jwt", map[string]any{}},
		{"claims not an object", typAT, "alice"},
		{"claims not JSON", typAT, func() {}},
	} {
		if _, err := s.Sign(tt.typ, tt.claims); err == nil {
			t.Errorf("%s: Sign succeeded", tt.name)
		}
	}
}
