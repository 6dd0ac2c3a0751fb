package keys

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/pullmail/pullmail/errs"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

const testLifetime = time.Hour

func openSet(t testing.TB, path string, clk *fakeClock) *Set {
	t.Helper()
	s, err := Open(path, Options{MaxTokenLifetime: testLifetime, Clock: clk.Now, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func newSet(t testing.TB) (*Set, *fakeClock, string) {
	t.Helper()
	clk := newClock()
	path := filepath.Join(t.TempDir(), "keys", "signing.json")
	return openSet(t, path, clk), clk, path
}

// mint assembles a compact JWS from a raw header and payload, signed by sign
// (nil: an empty signature).
func mint(header, payload string, sign func(input []byte) []byte) string {
	input := b64.EncodeToString([]byte(header)) + "." + b64.EncodeToString([]byte(payload))
	var sig []byte
	if sign != nil {
		sig = sign([]byte(input))
	}
	return input + "." + b64.EncodeToString(sig)
}

// es256 signs as RFC 7518 §3.4 says: R || S, 32 bytes each.
func es256(priv *ecdsa.PrivateKey) func([]byte) []byte {
	return func(input []byte) []byte {
		d := sha256.Sum256(input)
		r, s, err := ecdsa.Sign(rand.Reader, priv, d[:])
		if err != nil {
			panic(err)
		}
		sig := make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
		return sig
	}
}

func header(fields map[string]any) string {
	b, err := json.Marshal(fields)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// wantInvalidToken fails t unless err is an Unauthorized invalid_token error
// whose message contains msg.
func wantInvalidToken(t *testing.T, err error, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted; want refusal %q", msg)
	}
	var e *errs.Error
	if !errors.As(err, &e) || e.Kind != errs.Unauthorized || e.Code != "invalid_token" {
		t.Fatalf("error %v: want kind Unauthorized, code invalid_token", err)
	}
	if !strings.Contains(e.Message, msg) {
		t.Fatalf("error %q: want message containing %q", e.Message, msg)
	}
}

func jwkOf(priv *ecdsa.PrivateKey) jose.JSONWebKey {
	return jose.JSONWebKey{Key: &priv.PublicKey}
}

func jsonUnmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }
