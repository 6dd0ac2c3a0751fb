package dpop

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"time"
)

// NonceSource issues and checks server-provided DPoP nonces (RFC 9449 §8,
// §9) without storing them: a nonce is the HMAC-SHA256, under a secret key,
// of the number of the current time window. A nonce is valid during the
// window it was issued in and the next one, so it lives between one and two
// windows. Nonces bound how far in the future a client can pre-compute
// proofs, which the iat check alone cannot (RFC 9449 §11.2).
//
// A NonceSource is safe for concurrent use. Processes that serve one domain
// must share the key (NewNonceSourceKey), or a nonce from one is stale at
// the other.
type NonceSource struct {
	key    []byte
	window time.Duration
	clock  func() time.Time
}

// DefaultNonceWindow is the window of a NonceSource made with window ≤ 0.
const DefaultNonceWindow = 5 * time.Minute

// nonceLen is the length of a nonce: base64url of a SHA-256 sum.
const nonceLen = 43

// NewNonceSource makes a NonceSource with a fresh random key. window ≤ 0
// means DefaultNonceWindow; a nil clock means time.Now.
func NewNonceSource(window time.Duration, clock func() time.Time) *NonceSource {
	key := make([]byte, 32)
	rand.Read(key) // never fails (crypto/rand)
	return NewNonceSourceKey(key, window, clock)
}

// NewNonceSourceKey makes a NonceSource with the given secret key (at least
// 32 random bytes), for processes that must accept each other's nonces.
func NewNonceSourceKey(key []byte, window time.Duration, clock func() time.Time) *NonceSource {
	if window <= 0 {
		window = DefaultNonceWindow
	}
	if clock == nil {
		clock = time.Now
	}
	return &NonceSource{key: append([]byte(nil), key...), window: window, clock: clock}
}

// Current is the nonce to send now in a DPoP-Nonce header.
func (s *NonceSource) Current() string {
	return s.nonce(s.counter())
}

// Valid reports whether nonce was issued by s in the current or the
// previous window.
func (s *NonceSource) Valid(nonce string) bool {
	if len(nonce) != nonceLen {
		return false
	}
	c := s.counter()
	ok := hmac.Equal([]byte(nonce), []byte(s.nonce(c)))
	ok = hmac.Equal([]byte(nonce), []byte(s.nonce(c-1))) || ok
	return ok
}

func (s *NonceSource) counter() int64 {
	n := s.clock().UnixNano()
	c := n / int64(s.window)
	if n < 0 && n%int64(s.window) != 0 {
		c-- // floor, so that windows before 1970 are as wide as the others
	}
	return c
}

func (s *NonceSource) nonce(counter int64) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte("pullmail dpop nonce v1\x00"))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(counter))
	m.Write(b[:])
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}
