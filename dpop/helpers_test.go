package dpop

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/meta/sqlite"
)

// tokenURL is the configured external URL of the endpoint under test.
const tokenURL = "https://as.example.com/token"

// env is a Verifier over a real metadata store in a temporary directory.
type env struct {
	v     *Verifier
	store *sqlite.Store
	path  string
	now   time.Time
}

// newEnv opens a fresh store. The clock is the real time, truncated to the
// second, because the store judges expiry by time.Now.
func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{path: filepath.Join(t.TempDir(), "m.db"), now: time.Now().Truncate(time.Second)}
	e.open(t)
	return e
}

func (e *env) open(t testing.TB) {
	t.Helper()
	s, err := sqlite.Open(t.Context(), e.path)
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	e.store = s
	e.v = &Verifier{Replay: s, Clock: func() time.Time { return e.now }}
}

// request is a request to an attacker-chosen Host, so that a Verifier that
// built htu from the Host header would fail every test.
func request(method string, proofs ...string) *http.Request {
	r := httptest.NewRequest(method, "http://attacker.example:8080/elsewhere?x=1", nil)
	for _, p := range proofs {
		r.Header.Add("DPoP", p)
	}
	return r
}

// signFunc signs a JWS signing input.
type signFunc func(input []byte) []byte

func signES256(priv *ecdsa.PrivateKey) signFunc {
	return func(input []byte) []byte {
		sum := sha256.Sum256(input)
		r, s, err := ecdsa.Sign(rand.Reader, priv, sum[:])
		if err != nil {
			panic(err)
		}
		sig := make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
		return sig
	}
}

func signEdDSA(priv ed25519.PrivateKey) signFunc {
	return func(input []byte) []byte { return ed25519.Sign(priv, input) }
}

func signHS256(key []byte) signFunc {
	return func(input []byte) []byte {
		m := hmac.New(sha256.New, key)
		m.Write(input)
		return m.Sum(nil)
	}
}

// craft builds a compact JWS from a header and claims, each either a string
// of raw JSON or a value to marshal; sign may be nil for no signature.
func craft(t testing.TB, header, claims any, sign signFunc) string {
	t.Helper()
	enc := func(v any) string {
		b, ok := v.(string)
		if !ok {
			j, err := json.Marshal(v)
			if err != nil {
				t.Fatalf("marshal: %v", err)
			}
			b = string(j)
		}
		return base64.RawURLEncoding.EncodeToString([]byte(b))
	}
	input := enc(header) + "." + enc(claims)
	var sig []byte
	if sign != nil {
		sig = sign([]byte(input))
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// rawJWK is a key's JWK as JSON.
func rawJWK(t testing.TB, key any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKey{Key: key})
	if err != nil {
		t.Fatalf("marshal jwk: %v", err)
	}
	return b
}

// jti is a fresh random jti.
func jti() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// proofParts are the header and claims of a proof, to be changed by a test
// case and then signed.
type proofParts struct {
	h, c map[string]any
}

func newParts(t testing.TB, pub any, alg string, now time.Time) proofParts {
	return proofParts{
		h: map[string]any{"typ": "dpop+jwt", "alg": alg, "jwk": rawJWK(t, pub)},
		c: map[string]any{"jti": jti(), "htm": "POST", "htu": tokenURL, "iat": now.Unix()},
	}
}

// wantRefused checks that err is a refusal with the code and a message
// naming the failed check.
func wantRefused(t *testing.T, err error, code, why string) {
	t.Helper()
	var e *errs.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T), want an *errs.Error %s", err, err, code)
	}
	if e.Kind != errs.Unauthorized || e.Code != code {
		t.Fatalf("error %v: kind %v code %q, want unauthorized %q", err, e.Kind, e.Code, code)
	}
	if !strings.Contains(e.Message, why) {
		t.Fatalf("error message %q does not say %q", e.Message, why)
	}
}

func mustKey(t testing.TB) *Key {
	t.Helper()
	k, err := NewKey()
	if err != nil {
		t.Fatalf("NewKey: %v", err)
	}
	return k
}

func mustEC(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	return k
}
