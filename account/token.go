package account

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"strings"
)

// TokenPrefix starts every admin-made bearer token: junk is refused without a
// database lookup, and secret scanners can find leaked tokens.
const TokenPrefix = "pmt_"

const (
	tokenBytes = 32 // 256 bits of entropy
	// TokenLen is the length of a token secret: the prefix and 43 characters
	// of unpadded base64url.
	TokenLen = len(TokenPrefix) + (tokenBytes*8+5)/6
)

// NewToken returns a new bearer token secret, "pmt_" followed by 32 bytes
// from crypto/rand in unpadded base64url (RFC 4648 §5), and its SHA-256,
// which is what the metadata store keeps (meta.Token.Hash): a stolen
// database reveals no usable token. The secret is shown once and never
// stored. A plain hash is enough (no salt, no argon2) because the secret has
// 256 bits of entropy: it cannot be guessed from its hash.
func NewToken() (secret string, hash []byte) {
	b := make([]byte, tokenBytes)
	rand.Read(b) // never fails (crypto/rand, Go 1.24+): it crashes the program instead
	secret = TokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	return secret, HashToken(secret)
}

// HashToken returns the SHA-256 of a token secret, the key under which the
// token is stored.
func HashToken(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

// LooksLikeToken reports whether s has the shape of a NewToken secret: the
// prefix, the length, and canonical base64url. Callers use it to refuse junk
// before any database lookup; it says nothing about whether s is valid.
func LooksLikeToken(s string) bool {
	if len(s) != TokenLen || !strings.HasPrefix(s, TokenPrefix) {
		return false
	}
	body := s[len(TokenPrefix):]
	for i := 0; i < len(body); i++ {
		// The decoder below skips CR and LF: check the alphabet first.
		if c := body[i]; !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	_, err := base64.RawURLEncoding.Strict().DecodeString(body)
	return err == nil
}
