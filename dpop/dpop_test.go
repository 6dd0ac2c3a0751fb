package dpop

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/pullmail/pullmail/errs"
)

// TestReplay: a proof is accepted once, also after the store is reopened
// (the cache survives restarts); a refused proof records nothing; jtis are
// per key; a failing cache is an internal error, not an acceptance.
func TestReplay(t *testing.T) {
	e := newEnv(t)
	key := mustKey(t)
	proof, err := key.Proof("POST", tokenURL, "", "", e.now)
	if err != nil {
		t.Fatal(err)
	}

	// Refused for another reason first: nothing is recorded.
	_, err = e.v.Verify(t.Context(), request("GET", proof), tokenURL, "")
	wantRefused(t, err, CodeInvalidProof, "htm")

	if _, err := e.v.Verify(t.Context(), request("POST", proof), tokenURL, ""); err != nil {
		t.Fatalf("first use: %v", err)
	}
	_, err = e.v.Verify(t.Context(), request("POST", proof), tokenURL, "")
	wantRefused(t, err, CodeInvalidProof, "replay")

	// After a restart.
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	e.open(t)
	_, err = e.v.Verify(t.Context(), request("POST", proof), tokenURL, "")
	wantRefused(t, err, CodeInvalidProof, "replay")

	// The same jti from two keys: two clients do not collide.
	for _, priv := range []*ecdsa.PrivateKey{mustEC(t, elliptic.P256()), mustEC(t, elliptic.P256())} {
		pp := newParts(t, &priv.PublicKey, "ES256", e.now)
		pp.c["jti"] = "same-jti"
		if _, err := e.v.Verify(t.Context(), request("POST", craft(t, pp.h, pp.c, signES256(priv))), tokenURL, ""); err != nil {
			t.Fatalf("a jti another key used: %v", err)
		}
	}

	// The store is down.
	e.store.Close()
	fresh, _ := key.Proof("POST", tokenURL, "", "", e.now)
	_, err = e.v.Verify(t.Context(), request("POST", fresh), tokenURL, "")
	if err == nil || errs.KindOf(err) != errs.Internal {
		t.Fatalf("Verify with the store closed: %v, want an internal error", err)
	}
	if status, body := errs.Public(err); status != 500 || strings.Contains(body.Error.Message, "sqlite") {
		t.Errorf("public error %d %+v leaks the cause", status, body)
	}

	// No replay cache configured: refuse, never accept.
	v := &Verifier{Clock: e.v.Clock}
	if _, err := v.Verify(t.Context(), request("POST", fresh), tokenURL, ""); errs.KindOf(err) != errs.Internal {
		t.Fatalf("Verify without Replay: %v, want an internal error", err)
	}
}

// TestRFC9449Examples verifies the RFC's own proofs at their time.
func TestRFC9449Examples(t *testing.T) {
	var vec struct {
		JKT    string `json:"jkt"`
		Proofs []struct {
			Name, Proof, Method, HTU, JTI string
			AccessToken                   string `json:"access_token"`
			IAT                           int64
		}
	}
	readJSON(t, "testdata/rfc9449.json", &vec)
	e := newEnv(t)
	for _, x := range vec.Proofs {
		t.Run(x.Name, func(t *testing.T) {
			v := *e.v
			v.Clock = func() time.Time { return time.Unix(x.IAT, 0) }
			p, err := v.Verify(t.Context(), request(x.Method, x.Proof), x.HTU, x.AccessToken)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if p.Thumbprint != vec.JKT || p.JTI != x.JTI || p.IssuedAt.Unix() != x.IAT || p.HTU != x.HTU {
				t.Errorf("got %+v, want jkt %s jti %s iat %d", p, vec.JKT, x.JTI, x.IAT)
			}
			if x.AccessToken != "" && p.ATH != accessTokenHash(x.AccessToken) {
				t.Errorf("ath %q", p.ATH)
			}
			// An hour later it is stale.
			v.Clock = func() time.Time { return time.Unix(x.IAT+3600, 0) }
			_, err = v.Verify(t.Context(), request(x.Method, x.Proof), x.HTU, x.AccessToken)
			wantRefused(t, err, CodeInvalidProof, "in the past")
		})
	}
}

// TestProofStructure: Key.Proof makes what RFC 9449 figure 2 shows (same
// header and claim members; a public jwk), plus ath and nonce when asked,
// and go-jose, an independent verifier, accepts it.
func TestProofStructure(t *testing.T) {
	var vec struct {
		Proofs []struct{ Proof string }
	}
	readJSON(t, "testdata/rfc9449.json", &vec)
	rfcHeader, rfcClaims := decodeParts(t, vec.Proofs[0].Proof)

	key := mustKey(t)
	now := time.Unix(1700000000, 0)
	const token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
	for _, tt := range []struct {
		name         string
		token, nonce string
		extra        []string
	}{
		{name: "token endpoint"},
		{name: "resource with nonce", token: token, nonce: "n-1", extra: []string{"ath", "nonce"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			proof, err := key.Proof("POST", "https://Server.example.com/token?q=1#f", tt.token, tt.nonce, now)
			if err != nil {
				t.Fatal(err)
			}
			h, c := decodeParts(t, proof)
			if got, want := sortedKeys(h), sortedKeys(rfcHeader); !slices.Equal(got, want) {
				t.Errorf("header members %v, RFC's %v", got, want)
			}
			var jwk, rfcJWK map[string]any
			json.Unmarshal(h["jwk"], &jwk)
			json.Unmarshal(rfcHeader["jwk"], &rfcJWK)
			if got, want := slices.Sorted(maps.Keys(jwk)), slices.Sorted(maps.Keys(rfcJWK)); !slices.Equal(got, want) {
				t.Errorf("jwk members %v, RFC's %v", got, want)
			}
			if got, want := sortedKeys(c), slices.Sorted(slices.Values(append(sortedKeys(rfcClaims), tt.extra...))); !slices.Equal(got, want) {
				t.Errorf("claim members %v, want %v", got, want)
			}
			var claims struct {
				JTI, HTM, HTU, ATH, Nonce string
				IAT                       int64
			}
			if err := json.Unmarshal(mustDecode(t, strings.Split(proof, ".")[1]), &claims); err != nil {
				t.Fatal(err)
			}
			if b, err := base64.RawURLEncoding.DecodeString(claims.JTI); err != nil || len(b) != 16 {
				t.Errorf("jti %q is not 128 bits of base64url", claims.JTI)
			}
			if claims.HTM != "POST" || claims.HTU != "https://Server.example.com/token" || claims.IAT != now.Unix() || claims.Nonce != tt.nonce {
				t.Errorf("claims %+v", claims)
			}
			if tt.token != "" && claims.ATH != "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo" { // RFC 9449 figure 14
				t.Errorf("ath %q is not the RFC's", claims.ATH)
			}
			jws, err := jose.ParseSignedCompact(proof, []jose.SignatureAlgorithm{jose.ES256})
			if err != nil {
				t.Fatalf("go-jose parse: %v", err)
			}
			sig := jws.Signatures[0]
			if sig.Protected.ExtraHeaders["typ"] != "dpop+jwt" || sig.Protected.JSONWebKey == nil || !sig.Protected.JSONWebKey.IsPublic() {
				t.Fatalf("go-jose header %+v", sig.Protected)
			}
			if _, err := jws.Verify(sig.Protected.JSONWebKey); err != nil {
				t.Errorf("go-jose verify: %v", err)
			}
			if tp, _ := Thumbprint(*sig.Protected.JSONWebKey); tp != key.Thumbprint() {
				t.Errorf("embedded jwk thumbprint %s, key's %s", tp, key.Thumbprint())
			}
		})
	}
}

func TestProofArguments(t *testing.T) {
	key := mustKey(t)
	for _, tt := range []struct{ htm, htu string }{
		{"", tokenURL}, {"POST", ""}, {"POST", "/token"}, {"POST", "as.example.com/token"}, {"POST", "http://%zz"},
	} {
		if p, err := key.Proof(tt.htm, tt.htu, "", "", time.Now()); err == nil {
			t.Errorf("Proof(%q, %q) = %s, want an error", tt.htm, tt.htu, p)
		}
	}
	var zero Key
	if _, err := zero.Proof("POST", tokenURL, "", "", time.Now()); err == nil {
		t.Error("the zero Key signed a proof")
	}
}

// TestKeyStorage: a key survives marshalling, and only P-256 private keys
// load.
func TestKeyStorage(t *testing.T) {
	e := newEnv(t)
	key := mustKey(t)
	data, err := json.Marshal(key)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(data, &m)
	if m["kty"] != "EC" || m["crv"] != "P-256" || m["d"] == nil {
		t.Fatalf("stored key %s is not a private P-256 JWK", data)
	}
	back, err := ParseKey(data)
	if err != nil {
		t.Fatal(err)
	}
	if back.Thumbprint() != key.Thumbprint() {
		t.Fatalf("thumbprint %s after reload, %s before", back.Thumbprint(), key.Thumbprint())
	}
	proof, err := back.Proof("POST", tokenURL, "", "", e.now)
	if err != nil {
		t.Fatal(err)
	}
	p, err := e.v.Verify(t.Context(), request("POST", proof), tokenURL, "")
	if err != nil {
		t.Fatalf("proof of the reloaded key: %v", err)
	}
	if p.Thumbprint != key.Thumbprint() {
		t.Errorf("proof thumbprint %s, key's %s", p.Thumbprint, key.Thumbprint())
	}
	if tp, _ := Thumbprint(key.PublicJWK()); tp != key.Thumbprint() {
		t.Errorf("PublicJWK thumbprint %s, key's %s", tp, key.Thumbprint())
	}
	if pub := key.PublicJWK(); !pub.IsPublic() {
		t.Error("PublicJWK is not public")
	}

	public, _ := json.Marshal(key.PublicJWK())
	p384, _ := json.Marshal(jose.JSONWebKey{Key: mustEC(t, elliptic.P384())})
	for name, bad := range map[string][]byte{"public": public, "P-384": p384, "garbage": []byte(`{"kty":`), "oct": []byte(`{"kty":"oct","k":"AAAA"}`)} {
		if _, err := ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%s key) succeeded", name)
		}
	}
	if _, err := json.Marshal(&Key{}); err == nil {
		t.Error("the zero Key marshalled")
	}
}

// TestThumbprint is RFC 7638 §3.1; optional members do not change it.
func TestThumbprint(t *testing.T) {
	var vec struct {
		JWK        json.RawMessage
		Thumbprint string
	}
	readJSON(t, "testdata/rfc7638.json", &vec)
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(vec.JWK); err != nil {
		t.Fatal(err)
	}
	for _, k := range []jose.JSONWebKey{jwk, {Key: jwk.Key}} {
		got, err := Thumbprint(k)
		if err != nil {
			t.Fatal(err)
		}
		if got != vec.Thumbprint {
			t.Errorf("Thumbprint = %s, want %s", got, vec.Thumbprint)
		}
	}
	if _, err := Thumbprint(jose.JSONWebKey{}); err == nil {
		t.Error("Thumbprint of no key succeeded")
	}
}

func TestNonceSource(t *testing.T) {
	now := time.Unix(1700000000, 0)
	clock := func() time.Time { return now }
	s := NewNonceSource(time.Minute, clock)
	other := NewNonceSource(time.Minute, clock)
	n := s.Current()
	if len(n) != nonceLen || s.Current() != n {
		t.Fatalf("Current %q is not stable within a window", n)
	}
	for _, tt := range []struct {
		name  string
		after time.Duration
		nonce string
		valid bool
	}{
		{"same window", 0, n, true},
		{"next window", time.Minute, n, true},
		{"two windows later", 2 * time.Minute, n, false},
		{"issued in the future", -time.Minute, n, false},
		{"another source's", 0, other.Current(), false},
		{"empty", 0, "", false},
		{"truncated", 0, n[:42], false},
		{"garbage of the right length", 0, strings.Repeat("A", nonceLen), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := NewNonceSourceKey(s.key, time.Minute, func() time.Time { return now.Add(tt.after) })
			if got := s.Valid(tt.nonce); got != tt.valid {
				t.Errorf("Valid = %v, want %v", got, tt.valid)
			}
		})
	}
	before1970 := NewNonceSource(time.Minute, func() time.Time { return time.Unix(-30, 0) })
	if n := before1970.Current(); !before1970.Valid(n) {
		t.Error("a nonce before 1970 is not valid")
	}
	if d := NewNonceSource(0, nil); d.window != DefaultNonceWindow || d.Current() == "" {
		t.Errorf("defaults: window %v", d.window)
	}
}

func TestNormalizeHTU(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"https://as.example.com/token", "https://as.example.com/token"},
		{"HTTPS://AS.EXAMPLE.COM/token", "https://as.example.com/token"},
		{"https://as.example.com:443/token", "https://as.example.com/token"},
		{"http://as.example.com:80/token", "http://as.example.com/token"},
		{"http://as.example.com:443/token", "http://as.example.com:443/token"},
		{"https://as.example.com:/token", "https://as.example.com/token"},
		{"https://as.example.com", "https://as.example.com/"},
		{"https://as.example.com?x#y", "https://as.example.com/"},
		{"https://as.example.com/token?x=1#y", "https://as.example.com/token"},
		{"https://as.example.com/a/./b/../c", "https://as.example.com/a/c"},
		{"https://as.example.com/../../c", "https://as.example.com/c"},
		{"https://as.example.com/a/..", "https://as.example.com/"},
		{"https://as.example.com/%7euser/%2f%41", "https://as.example.com/~user/%2FA"},
		{"https://as.example.com/Token", "https://as.example.com/Token"},
		{"https://[::1]:8443/t", "https://[::1]:8443/t"},
		{"https://[::1]:443/t", "https://[::1]/t"},
		{"https://127.0.0.1:8443/t", "https://127.0.0.1:8443/t"},
		{"https://as.example.com/a b", "https://as.example.com/a%20b"},
		{"https://as.example.com/a%20b", "https://as.example.com/a%20b"},
		{"https://as.example.com/.hidden/...", "https://as.example.com/.hidden/..."},
	} {
		got, err := normalizeHTU(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("normalizeHTU(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{
		"", "/token", "as.example.com/token", "ftp://as.example.com/token", "https:///token", "https:as.example.com",
		"https://user@as.example.com/token", "https://user:pw@as.example.com/token", "https://as.example.com:x/", "mailto:a@b",
	} {
		if got, err := normalizeHTU(bad); err == nil {
			t.Errorf("normalizeHTU(%q) = %q, want an error", bad, got)
		}
	}
}

func TestWWWAuthenticate(t *testing.T) {
	for _, tt := range []struct {
		got, want string
	}{
		{WWWAuthenticate(""), `DPoP algs="ES256 EdDSA"`},
		{WWWAuthenticate(CodeInvalidProof), `DPoP algs="ES256 EdDSA", error="invalid_dpop_proof"`},
		{WWWAuthenticate(CodeUseNonce), `DPoP algs="ES256 EdDSA", error="use_dpop_nonce"`},
		{(&Verifier{Algs: []jose.SignatureAlgorithm{jose.ES384, "none", jose.HS256, jose.ES384}}).WWWAuthenticate("invalid_token"),
			`DPoP algs="ES384", error="invalid_token"`},
	} {
		if tt.got != tt.want {
			t.Errorf("got %s, want %s", tt.got, tt.want)
		}
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func mustDecode(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decodeParts decodes a compact JWS's header and claims.
func decodeParts(t *testing.T, jws string) (header, claims map[string]json.RawMessage) {
	t.Helper()
	parts := strings.Split(jws, ".")
	if len(parts) != 3 {
		t.Fatalf("%d parts", len(parts))
	}
	if err := json.Unmarshal(mustDecode(t, parts[0]), &header); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(mustDecode(t, parts[1]), &claims); err != nil {
		t.Fatal(err)
	}
	return header, claims
}

func sortedKeys(m map[string]json.RawMessage) []string { return slices.Sorted(maps.Keys(m)) }
