package keys

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fixedSet is a Set whose key is the same in every process, so that the
// fuzzing workers verify the seed tokens the coordinator made.
func fixedSet(tb testing.TB) *Set {
	tb.Helper()
	d := sha256.Sum256([]byte("pullmail keys fuzz"))
	priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d[:])
	if err != nil {
		tb.Fatal(err)
	}
	e := &entry{info: KeyInfo{Alg: "ES256", Created: time.Unix(0, 0).UTC()}, priv: priv}
	e.info.KID, err = Thumbprint(jwkOf(priv))
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(tb.TempDir(), "signing.json")
	if err := save(path, []*entry{e}); err != nil {
		tb.Fatal(err)
	}
	s, err := Open(path, Options{MaxTokenLifetime: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// FuzzVerify checks that Verify never panics and never accepts a token whose
// header and payload the set did not sign.
func FuzzVerify(f *testing.F) {
	s := fixedSet(f)
	signed := make(map[string]bool)
	add := func(typ string, claims any) {
		tok, err := s.Sign(typ, claims)
		if err != nil {
			f.Fatal(err)
		}
		signed[tok[:strings.LastIndexByte(tok, '.')]] = true
		f.Add(tok, typ)
	}
	add(typAT, Claims{Issuer: "https://a.example", Subject: "alice", Audience: Audience{"https://b.example"}, Expiry: 1900000000})
	add("pullmail-assertion+jwt", map[string]any{"sub": "bob", "cnf": map[string]string{"jkt": "x"}, "aud": []string{"a", "b"}})
	add(typAT, json.RawMessage(`{}`))
	kid := s.CurrentKID()
	priv := s.st.Load().current.priv
	// Unsigned variants, and signed ones the set never made: none may pass.
	f.Add(mint(`{"alg":"none","kid":"`+kid+`","typ":"at+jwt"}`, `{"sub":"admin"}`, nil), typAT)
	f.Add(mint(`{"alg":"ES256","alg":"none","kid":"`+kid+`","typ":"at+jwt"}`, `{"sub":"admin"}`, es256(priv)), typAT)
	f.Add(mint(`{"alg":"HS256","kid":"`+kid+`","typ":"at+jwt"}`, `{"sub":"admin"}`, nil), typAT)
	f.Add(mint(`{"alg":"ES256","kid":"`+kid+`","typ":"at+jwt","jwk":{}}`, `{"sub":"admin"}`, nil), typAT)
	f.Add("a.b.c.d.e", typAT)
	f.Add(strings.Repeat(".", 100), typAT)
	f.Fuzz(func(t *testing.T, token, typ string) {
		if typ == "" {
			typ = typAT
		}
		payload, key, err := s.Verify(token, Expect{Typ: typ})
		if err != nil {
			if payload != nil || key != nil {
				t.Fatal("refused, yet returned a payload or key")
			}
			return
		}
		input := token[:strings.LastIndexByte(token, '.')]
		if !signed[input] {
			t.Fatalf("accepted a token the set did not sign: %q", token)
		}
		if key.KeyID != kid {
			t.Fatalf("accepted with key %q", key.KeyID)
		}
		var obj map[string]any
		if err := json.Unmarshal(payload, &obj); err != nil {
			t.Fatalf("accepted a payload that is not an object: %v", err)
		}
	})
}

// FuzzParseJWKS checks that ParseJWKS never panics and that what it accepts
// is public, valid, has unique kids, and survives a round trip.
func FuzzParseJWKS(f *testing.F) {
	for _, name := range []string{"rfc7638-3.1.json"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	s := fixedSet(f)
	pub, err := json.Marshal(s.PublicJWKS())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(pub)
	f.Add([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"ed"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA","d":"AA"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"AA"},{"kty":"EC","kty":"RSA"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		set, err := ParseJWKS(data)
		if err != nil {
			return
		}
		seen := make(map[string]bool)
		for _, k := range set.Keys {
			if !k.IsPublic() || !k.Valid() {
				t.Fatalf("accepted key %+v", k)
			}
			if k.KeyID != "" && seen[k.KeyID] {
				t.Fatalf("accepted kid %q twice", k.KeyID)
			}
			seen[k.KeyID] = true
		}
		out, err := json.Marshal(set)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		again, err := ParseJWKS(out)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", out, err)
		}
		if len(again.Keys) != len(set.Keys) {
			t.Fatalf("round trip: %d keys, then %d", len(set.Keys), len(again.Keys))
		}
	})
}

// FuzzCheckObject checks CheckObject, the one duplicate-member check of
// every JWT (keys.Verify, DPoP proofs, the peeks), against a token-by-token
// walk of the same JSON. It was dpop's FuzzStrictObject, whose duplicate
// check now is this one: what encoding/json cannot read into a map is
// refused, and otherwise CheckObject refuses exactly the objects that have,
// at some depth, two member names equal under strings.EqualFold (the
// folding encoding/json matches struct fields with), or that nest deeper
// than maxJSONDepth.
func FuzzCheckObject(f *testing.F) {
	for _, s := range []string{
		`{"a":1,"b":2}`, `{"a":1,"a":2}`, `{"a":{"a":1},"b":[{"a":1}]}`, `{"t\u0079p":1,"typ":2}`,
		`{"a":"x:y\"","b":"\\"}`, `{"":1,"":2}`, `[1]`, `null`, `{"a":1} {}`, `{`, `"s"`,
		`{"a":1,"A":2}`, `{"scope":1,"ſcope":2}`, `{"a":{"b":1,"b":2}}`, `{"a":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		err := CheckObject(data)
		var m map[string]json.RawMessage
		if json.Unmarshal(data, &m) != nil || m == nil {
			if err == nil {
				t.Fatalf("CheckObject(%q) accepted what is not a JSON object", data)
			}
			return
		}
		dec := json.NewDecoder(strings.NewReader(string(data)))
		bad := refWalk(dec, 0)
		if bad != (err != nil) {
			t.Fatalf("CheckObject(%q) = %v; the walk finds duplicates or depth: %v", data, err, bad)
		}
	})
}

// refWalk reads one JSON value of a valid document and reports whether an
// object in it has two names equal under strings.EqualFold, or whether it
// nests deeper than maxJSONDepth; depth is that of the enclosing value.
func refWalk(dec *json.Decoder, depth int) bool {
	tok, _ := dec.Token()
	d, ok := tok.(json.Delim)
	if !ok {
		return false
	}
	bad := depth+1 > maxJSONDepth
	var names []string
	for dec.More() {
		if d == '{' {
			tok, _ := dec.Token()
			name := tok.(string)
			for _, n := range names {
				bad = bad || strings.EqualFold(n, name)
			}
			names = append(names, name)
		}
		bad = refWalk(dec, depth+1) || bad
	}
	dec.Token() // the closing delimiter
	return bad
}
