package account

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
)

func TestNewToken(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		secret, hash := NewToken()
		if !strings.HasPrefix(secret, "pmt_") || len(secret) != 47 || TokenLen != 47 {
			t.Fatalf("secret %q (TokenLen %d)", secret, TokenLen)
		}
		raw, err := base64.RawURLEncoding.Strict().DecodeString(strings.TrimPrefix(secret, "pmt_"))
		if err != nil || len(raw) != 32 {
			t.Fatalf("secret %q: %d bytes, %v", secret, len(raw), err)
		}
		sum := sha256.Sum256([]byte(secret))
		if !bytes.Equal(hash, sum[:]) || !bytes.Equal(HashToken(secret), hash) {
			t.Fatalf("hash of %q is %x", secret, hash)
		}
		if !LooksLikeToken(secret) {
			t.Fatalf("LooksLikeToken(%q) = false", secret)
		}
		if seen[secret] {
			t.Fatalf("secret %q made twice", secret)
		}
		seen[secret] = true
	}
}

func TestHashToken(t *testing.T) {
	// SHA-256 of the ASCII secret (computed with sha256sum).
	const secret = "pmt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	want, _ := hex.DecodeString("7334916231a167c67d1cc268f80789cea5c41de7b2a00d2eaa30f0b6b195afe3")
	got := HashToken(secret)
	if len(got) != 32 {
		t.Fatalf("HashToken returned %d bytes", len(got))
	}
	if !bytes.Equal(got, want) {
		t.Errorf("HashToken(%q) = %x, want %x", secret, got, want)
	}
}

func TestLooksLikeToken(t *testing.T) {
	good, _ := NewToken()
	body := strings.TrimPrefix(good, "pmt_")
	tests := []struct {
		s    string
		want bool
	}{
		{good, true},
		{"pmt_" + strings.Repeat("A", 43), true},
		{"pmt_" + strings.Repeat("_", 42) + "w", true},
		{"", false},
		{"pmt_", false},
		{body, false},
		{"pmx_" + body, false},
		{"PMT_" + body, false},
		{good[:46], false},
		{good + "A", false},
		{"pmt_" + strings.Repeat("A", 42) + "B", false}, // non-canonical last character
		{"pmt_" + strings.Repeat("A", 41) + "==", false},
		{"pmt_" + strings.Repeat("+", 43), false}, // standard alphabet
		{"pmt_" + strings.Repeat("A", 42) + "\n", false},
		{"pmt_\n" + strings.Repeat("A", 42), false},
		{"pmt_" + strings.Repeat("A", 21) + " " + strings.Repeat("A", 21), false},
		{"Bearer " + good, false},
	}
	for _, tc := range tests {
		if got := LooksLikeToken(tc.s); got != tc.want {
			t.Errorf("LooksLikeToken(%q) = %v, want %v", tc.s, got, tc.want)
		}
	}
}

func FuzzLooksLikeToken(f *testing.F) {
	good, _ := NewToken()
	f.Add(good)
	f.Add("pmt_" + strings.Repeat("A", 42) + "\n")
	f.Fuzz(func(t *testing.T, s string) {
		if !LooksLikeToken(s) {
			return
		}
		raw, err := base64.RawURLEncoding.Strict().DecodeString(s[4:])
		if len(s) != TokenLen || !strings.HasPrefix(s, TokenPrefix) || err != nil || len(raw) != 32 ||
			TokenPrefix+base64.RawURLEncoding.EncodeToString(raw) != s {
			t.Fatalf("LooksLikeToken(%q) = true", s)
		}
	})
}
