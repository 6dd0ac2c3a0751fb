package account

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"

	"github.com/pullmail/pullmail/errs"
)

// Password length limits, in bytes. The minimum follows NIST SP 800-63B
// §5.1.1.2 (at least 8); the maximum bounds the work an attacker can make us
// do per login attempt while allowing any passphrase.
const (
	MinPasswordLen = 8
	MaxPasswordLen = 1024
)

// CodeBadPassword is the errs code of ValidatePassword's errors.
const CodeBadPassword = "bad_password"

// ValidatePassword checks a new password: 8 to 1024 bytes. Errors are
// errs.Invalid with code bad_password.
func ValidatePassword(pw string) error {
	if len(pw) < MinPasswordLen {
		return errs.E(errs.Invalid, CodeBadPassword, "the password must be at least %d bytes long", MinPasswordLen)
	}
	if len(pw) > MaxPasswordLen {
		return errs.E(errs.Invalid, CodeBadPassword, "the password must be at most %d bytes long", MaxPasswordLen)
	}
	return nil
}

// params are argon2id parameters, as written in a PHC string.
type params struct {
	Memory  uint32 // m, KiB
	Time    uint32 // t, passes
	Threads uint8  // p, lanes
}

// The argon2id parameters of new hashes are OWASP's Password Storage Cheat
// Sheet's first argon2id choice, m=19 MiB, t=2, p=1. One hash takes
// about 16 ms of one core and 19 MiB on this project's 2-core machine (see
// BenchmarkHashPassword), which keeps logins quick and lets a small server
// survive a burst of them; RFC 9106's 64 MiB or 2 GiB choices would make each
// login cost too much memory there. p=1 because a server gains nothing from
// spreading one login over cores that serve other requests. Hashes record
// their parameters, so these can be raised later: CheckPassword reads them
// from each hash, and NeedsRehash says when to re-hash at the next login.
const (
	DefaultMemory  = 19 * 1024 // KiB
	DefaultTime    = 2
	DefaultThreads = 1
)

func defaultParams() params {
	return params{Memory: DefaultMemory, Time: DefaultTime, Threads: DefaultThreads}
}

const (
	saltLen = 16 // bytes, RFC 9106 §3.1 recommends 16
	keyLen  = 32 // bytes of tag

	// Bounds on what a stored hash may ask for, so that a corrupted or
	// hostile hash cannot make one check take minutes or gigabytes.
	maxMemory  = 1 << 20 // KiB: 1 GiB
	maxTime    = 64
	minSaltLen = 8
	maxSaltLen = 64
	minKeyLen  = 16
	maxKeyLen  = 64
)

// b64 is the PHC string format's base64: standard alphabet, no padding,
// canonical last character.
var b64 = base64.RawStdEncoding.Strict()

// HashPassword validates pw (ValidatePassword) and hashes it with argon2id,
// the Default parameters (DefaultMemory etc.) and a random 16-byte salt, returning the PHC string
//
//	$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>
//
// where salt and hash are unpadded standard base64 (RFC 9106 §4, PHC string
// format).
func HashPassword(pw string) (string, error) {
	if err := ValidatePassword(pw); err != nil {
		return "", err
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("password salt: %w", err)
	}
	return hashWith(pw, salt, defaultParams()), nil
}

func hashWith(pw string, salt []byte, p params) string {
	key := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, keyLen)
	return encodePHC(p, salt, key)
}

func encodePHC(p params, salt, key []byte) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// ErrMalformedHash is returned (wrapped) for a stored hash that is not an
// argon2id PHC string this package can check.
var ErrMalformedHash = errors.New("malformed password hash")

// CheckPassword reports whether pw matches hash, a PHC string from
// HashPassword, using the parameters written in hash. The comparison takes
// constant time. A password longer than MaxPasswordLen never matches (it is
// not hashed at all). A hash that cannot be parsed, or whose parameters are
// out of bounds, is an error wrapping ErrMalformedHash: that is a fault in
// the stored data, not a wrong password.
func CheckPassword(hash, pw string) (bool, error) {
	p, salt, want, err := parsePHC(hash)
	if err != nil {
		return false, err
	}
	if len(pw) > MaxPasswordLen {
		return false, nil
	}
	got := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// NeedsRehash reports whether hash was made with weaker parameters than the
// Default ones (or cannot be parsed), so that a caller that has just checked
// the password can store HashPassword's result instead.
func NeedsRehash(hash string) bool {
	p, salt, key, err := parsePHC(hash)
	if err != nil {
		return true
	}
	d := defaultParams()
	return p.Memory < d.Memory || p.Time < d.Time || len(salt) < saltLen || len(key) < keyLen
}

// parsePHC parses an argon2id PHC string strictly: the exact field order
// that HashPassword writes, decimal numbers without sign or leading zeros,
// canonical unpadded base64, and bounded parameters.
func parsePHC(s string) (p params, salt, key []byte, err error) {
	bad := func(why string) (params, []byte, []byte, error) {
		return params{}, nil, nil, fmt.Errorf("%w: %s", ErrMalformedHash, why)
	}
	f := strings.Split(s, "$")
	if len(f) != 6 || f[0] != "" {
		return bad("want $argon2id$v=19$m=M,t=T,p=P$SALT$HASH")
	}
	if f[1] != "argon2id" {
		return bad(fmt.Sprintf("algorithm %.20q is not argon2id", f[1]))
	}
	if f[2] != "v="+strconv.Itoa(argon2.Version) {
		return bad(fmt.Sprintf("version %.20q is not v=19", f[2]))
	}
	ps := strings.Split(f[3], ",")
	if len(ps) != 3 {
		return bad("want parameters m=M,t=T,p=P")
	}
	var vals [3]uint64
	for i, name := range []string{"m", "t", "p"} {
		num, ok := strings.CutPrefix(ps[i], name+"=")
		if !ok {
			return bad("want parameters m=M,t=T,p=P in that order")
		}
		v, err := strconv.ParseUint(num, 10, 32)
		if err != nil || strconv.FormatUint(v, 10) != num {
			return bad(fmt.Sprintf("parameter %s=%.20q is not a canonical decimal", name, num))
		}
		vals[i] = v
	}
	p = params{Memory: uint32(vals[0]), Time: uint32(vals[1])}
	switch {
	case vals[2] < 1 || vals[2] > 255:
		return bad("p must be 1 to 255")
	case p.Time < 1 || p.Time > maxTime:
		return bad(fmt.Sprintf("t must be 1 to %d", maxTime))
	case uint64(p.Memory) < 8*vals[2] || p.Memory > maxMemory:
		return bad(fmt.Sprintf("m must be 8*p to %d KiB", maxMemory))
	}
	p.Threads = uint8(vals[2])
	if salt, err = decodeB64(f[4]); err != nil || len(salt) < minSaltLen || len(salt) > maxSaltLen {
		return bad(fmt.Sprintf("the salt must be %d to %d bytes of unpadded base64", minSaltLen, maxSaltLen))
	}
	if key, err = decodeB64(f[5]); err != nil || len(key) < minKeyLen || len(key) > maxKeyLen {
		return bad(fmt.Sprintf("the hash must be %d to %d bytes of unpadded base64", minKeyLen, maxKeyLen))
	}
	return p, salt, key, nil
}

// decodeB64 decodes canonical unpadded standard base64. The decoder skips
// CR and LF, so the alphabet is checked first.
func decodeB64(s string) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/') {
			return nil, errors.New("not base64")
		}
	}
	return b64.DecodeString(s)
}
