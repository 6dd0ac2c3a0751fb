package dpop

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/meta"
)

// Error codes of RFC 9449 §12.2, used as errs.Error codes and in
// WWW-Authenticate.
const (
	CodeInvalidProof = "invalid_dpop_proof"
	CodeUseNonce     = "use_dpop_nonce"
)

// Limits and defaults.
const (
	MaxProofSize  = 8 << 10 // bytes of the DPoP header value
	maxJTI        = 256     // bytes; keeps the replay key within meta.Once's 512
	DefaultSkew   = 60 * time.Second
	DefaultMaxAge = 5 * time.Minute
)

// DefaultAlgs are the proof algorithms a Verifier accepts when its Algs is
// empty, in the order they are advertised (dpop_signing_alg_values_supported,
// WWW-Authenticate algs).
var DefaultAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA}

// supported are the algorithms this package can verify; any other entry of
// Verifier.Algs (none, HS256, RS256, ...) is ignored.
var supported = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.ES512, jose.EdDSA}

// Verifier checks DPoP proofs (RFC 9449 §4.3); see the package doc for each
// check. It is safe for concurrent use; do not change its fields while it is
// in use.
type Verifier struct {
	// Replay records each accepted proof's jti (required). Use the domain's
	// metadata store, which every process sees and which survives restarts.
	Replay meta.Once
	// Clock is the time source (nil: time.Now). It must agree with Replay's.
	Clock func() time.Time
	// Skew is how far in the future iat may be (0: DefaultSkew); MaxAge how
	// far in the past (0: DefaultMaxAge).
	Skew, MaxAge time.Duration
	// Nonce, when set, makes a server nonce required (RFC 9449 §8).
	Nonce *NonceSource
	// Algs is the alg allow-list (empty: DefaultAlgs). Entries this package
	// does not implement are ignored, so "none" and HMACs never pass.
	Algs []jose.SignatureAlgorithm
}

// Proof is a verified DPoP proof.
type Proof struct {
	JTI        string
	HTM        string
	HTU        string // as the client sent it
	IssuedAt   time.Time
	ATH        string // empty when the proof has none
	Nonce      string // empty when the proof has none
	JWK        jose.JSONWebKey
	Thumbprint string // RFC 7638, base64url: compare with a token's cnf.jkt
}

// Verify checks the DPoP proof of request r for the endpoint whose external
// URL is htu (from configuration, never from r.Host). accessToken is the
// access token presented with r at a resource server, or "" at the AS token
// endpoint. Refusals are *errs.Error of kind errs.Unauthorized with code
// CodeInvalidProof or CodeUseNonce; a failing replay cache or an unusable
// configuration gives kind errs.Internal. An accepted proof's jti is
// recorded, so that the same proof is refused the next time.
func (v *Verifier) Verify(ctx context.Context, r *http.Request, htu, accessToken string) (*Proof, error) {
	if v.Replay == nil {
		return nil, errs.Wrap(errors.New("dpop: Verifier.Replay is nil"), errs.Internal, "internal", "DPoP replay cache not configured")
	}
	p, expires, err := v.check(r, htu, accessToken)
	if err != nil {
		return nil, err
	}
	fresh, err := v.Replay.UseOnce(ctx, "dpop:"+p.Thumbprint+":"+p.JTI, expires)
	if err != nil {
		return nil, errs.Wrap(fmt.Errorf("dpop: replay cache: %w", err), errs.Internal, "internal", "DPoP replay cache unavailable")
	}
	if !fresh {
		return nil, invalid("jti already used: the proof is a replay")
	}
	return p, nil
}

// WWWAuthenticate is the WWW-Authenticate challenge of a resource server
// (RFC 9449 §7.1), with DefaultAlgs and, unless errCode is empty, the error.
func WWWAuthenticate(errCode string) string {
	return challenge(DefaultAlgs, errCode)
}

// WWWAuthenticate is like the function of the same name, advertising the
// algorithms that v accepts.
func (v *Verifier) WWWAuthenticate(errCode string) string {
	return challenge(v.algs(), errCode)
}

func challenge(algs []jose.SignatureAlgorithm, errCode string) string {
	names := make([]string, len(algs))
	for i, a := range algs {
		names[i] = string(a)
	}
	s := `DPoP algs="` + strings.Join(names, " ") + `"`
	if errCode != "" {
		s += `, error="` + errCode + `"`
	}
	return s
}

// algs is the effective allow-list: Algs (or DefaultAlgs) minus what this
// package does not implement.
func (v *Verifier) algs() []jose.SignatureAlgorithm {
	algs := v.Algs
	if len(algs) == 0 {
		algs = DefaultAlgs
	}
	var out []jose.SignatureAlgorithm
	for _, a := range algs {
		if slices.Contains(supported, a) && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

func invalid(format string, args ...any) *errs.Error {
	return errs.E(errs.Unauthorized, CodeInvalidProof, "DPoP proof: "+format, args...)
}

func useNonce(format string, args ...any) *errs.Error {
	return errs.E(errs.Unauthorized, CodeUseNonce, "DPoP proof: "+format, args...)
}

// check is Verify without the replay cache: every check that needs no
// state. It returns the proof and until when its jti must be remembered.
func (v *Verifier) check(r *http.Request, htu, accessToken string) (*Proof, time.Time, error) {
	var zero time.Time
	want, err := normalizeHTU(htu)
	if err != nil {
		return nil, zero, errs.Wrap(fmt.Errorf("dpop: configured htu %q: %w", htu, err), errs.Internal, "internal", "DPoP endpoint URL misconfigured")
	}

	// RFC 9449 §4.3 items 1-3: one header, one well-formed JWT.
	values := r.Header.Values("DPoP")
	switch {
	case len(values) == 0:
		return nil, zero, invalid("no DPoP header")
	case len(values) > 1:
		return nil, zero, invalid("more than one DPoP header")
	}
	tok := values[0]
	if len(tok) > MaxProofSize {
		return nil, zero, invalid("larger than %d bytes", MaxProofSize)
	}
	h64, p64, s64, err := splitCompact(tok)
	if err != nil {
		return nil, zero, invalid("%v", err)
	}
	hb, err1 := base64.RawURLEncoding.Strict().DecodeString(h64)
	pb, err2 := base64.RawURLEncoding.Strict().DecodeString(p64)
	sig, err3 := base64.RawURLEncoding.Strict().DecodeString(s64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, zero, invalid("bad base64url: %v", err)
	}

	// The header: typ, crit, alg, jwk.
	hdr, err := strictObject(hb)
	if err != nil {
		return nil, zero, invalid("header: %v", err)
	}
	typ, err := stringMember(hdr, "typ")
	if err != nil {
		return nil, zero, invalid("header: %v", err)
	}
	if typ != ProofType {
		return nil, zero, invalid("typ is %q, not %q", typ, ProofType)
	}
	if _, ok := hdr["crit"]; ok {
		return nil, zero, invalid("header: crit is not supported")
	}
	algName, err := stringMember(hdr, "alg")
	if err != nil {
		return nil, zero, invalid("header: %v", err)
	}
	alg := jose.SignatureAlgorithm(algName)
	if !slices.Contains(v.algs(), alg) {
		return nil, zero, invalid("alg %q not allowed", algName)
	}
	jwk, err := publicJWK(hdr["jwk"], alg)
	if err != nil {
		return nil, zero, invalid("jwk: %v", err)
	}
	if !verifySignature(alg, jwk.Key, tok[:len(h64)+1+len(p64)], sig) {
		return nil, zero, invalid("signature does not verify with the header's jwk")
	}
	thumb, err := Thumbprint(jwk)
	if err != nil {
		return nil, zero, invalid("jwk: %v", err)
	}

	// The claims.
	cl, err := strictObject(pb)
	if err != nil {
		return nil, zero, invalid("claims: %v", err)
	}
	p := &Proof{JWK: jwk, Thumbprint: thumb}
	for _, m := range []struct {
		name string
		dst  *string
	}{{"jti", &p.JTI}, {"htm", &p.HTM}, {"htu", &p.HTU}} {
		if *m.dst, err = stringMember(cl, m.name); err != nil {
			return nil, zero, invalid("claims: %v", err)
		}
		if *m.dst == "" {
			return nil, zero, invalid("claims: %s is empty", m.name)
		}
	}
	if len(p.JTI) > maxJTI {
		return nil, zero, invalid("jti longer than %d bytes", maxJTI)
	}
	for _, m := range []struct {
		name string
		dst  *string
	}{{"ath", &p.ATH}, {"nonce", &p.Nonce}} {
		if _, ok := cl[m.name]; ok {
			if *m.dst, err = stringMember(cl, m.name); err != nil {
				return nil, zero, invalid("claims: %v", err)
			}
		}
	}
	raw, ok := cl["iat"]
	if !ok {
		return nil, zero, invalid("claims: no iat")
	}
	var iat float64
	if err := json.Unmarshal(raw, &iat); err != nil {
		return nil, zero, invalid("claims: iat is not a number")
	}

	// RFC 9449 §4.3 items 8, 9, 11, 12, 10.
	if p.HTM != r.Method {
		return nil, zero, invalid("htm %q is not the request method %s", p.HTM, r.Method)
	}
	got, err := normalizeHTU(p.HTU)
	if err != nil {
		return nil, zero, invalid("htu: %v", err)
	}
	if got != want {
		return nil, zero, invalid("htu %q is not this endpoint's URL %q", p.HTU, want)
	}
	now := time.Now()
	if v.Clock != nil {
		now = v.Clock()
	}
	skew, maxAge := v.Skew, v.MaxAge
	if skew <= 0 {
		skew = DefaultSkew
	}
	if maxAge <= 0 {
		maxAge = DefaultMaxAge
	}
	// Compare in float seconds first, so that absurd values cannot overflow.
	sec := float64(now.UnixNano()) / 1e9
	switch {
	case math.IsNaN(iat) || iat < sec-maxAge.Seconds():
		return nil, zero, invalid("iat is more than %v in the past", maxAge)
	case iat > sec+skew.Seconds():
		return nil, zero, invalid("iat is more than %v in the future", skew)
	}
	whole, frac := math.Modf(iat)
	p.IssuedAt = time.Unix(int64(whole), int64(frac*1e9))
	if accessToken != "" {
		if p.ATH == "" {
			return nil, zero, invalid("no ath, but an access token was presented")
		}
		if subtle.ConstantTimeCompare([]byte(p.ATH), []byte(accessTokenHash(accessToken))) != 1 {
			return nil, zero, invalid("ath is not the hash of the presented access token")
		}
	}
	if v.Nonce != nil {
		if p.Nonce == "" {
			return nil, zero, useNonce("the server requires a nonce")
		}
		if !v.Nonce.Valid(p.Nonce) {
			return nil, zero, useNonce("the nonce is stale or unknown")
		}
	}
	return p, p.IssuedAt.Add(maxAge + skew), nil
}

// splitCompact splits a JWS compact serialization (RFC 7515 §7.1) after
// checking that it is three parts of base64url characters: no padding, no
// white space, no JWE (five parts), no JSON serialization.
func splitCompact(tok string) (h, p, s string, err error) {
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return "", "", "", fmt.Errorf("not a compact JWS: byte %d is %q", i, c)
		}
	}
	if n := strings.Count(tok, "."); n != 2 {
		return "", "", "", fmt.Errorf("not a compact JWS: %d parts, not 3", n+1)
	}
	h, rest, _ := strings.Cut(tok, ".")
	p, s, _ = strings.Cut(rest, ".")
	if h == "" || p == "" || s == "" {
		return "", "", "", errors.New("not a compact JWS: an empty part")
	}
	return h, p, s, nil
}

// strictObject decodes one JSON object into its members, refusing duplicate
// members and anything after the object.
func strictObject(data []byte) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) || bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
			return nil, errors.New("not a JSON object")
		}
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	if m == nil {
		return nil, errors.New("not a JSON object")
	}
	if countMembers(data) != len(m) {
		return nil, fmt.Errorf("duplicate member %q", duplicateMember(data))
	}
	return m, nil
}

// countMembers counts the members of the valid JSON object data: the colons
// outside strings at depth 1.
func countMembers(data []byte) int {
	n, depth, inString := 0, 0, false
	for i := 0; i < len(data); i++ {
		c := data[i]
		switch {
		case inString && c == '\\':
			i++
		case inString:
			inString = c != '"'
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			depth--
		case c == ':' && depth == 1:
			n++
		}
	}
	return n
}

// duplicateMember names the first repeated member of the valid JSON object
// data, for the error message.
func duplicateMember(data []byte) string {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.Token() // {
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			break
		}
		k, _ := t.(string)
		if seen[k] {
			return k
		}
		seen[k] = true
		var v json.RawMessage
		if dec.Decode(&v) != nil {
			break
		}
	}
	return ""
}

// stringMember is the string value of a required member.
func stringMember(m map[string]json.RawMessage, name string) (string, error) {
	raw, ok := m[name]
	if !ok {
		return "", fmt.Errorf("no %s", name)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("%s is not a string", name)
	}
	return s, nil
}

// privateMembers are the JWK members of private or symmetric keys (RFC 7518
// §6.2.2, §6.3.2, §6.4; RFC 8037 §2).
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// publicJWK parses the header's jwk and checks that it is a public key of
// the type and curve that alg requires (RFC 9449 §4.3 items 6 and 7).
func publicJWK(raw json.RawMessage, alg jose.SignatureAlgorithm) (jose.JSONWebKey, error) {
	var jwk jose.JSONWebKey
	if raw == nil {
		return jwk, errors.New("missing")
	}
	members, err := strictObject(raw)
	if err != nil {
		return jwk, err
	}
	for _, name := range privateMembers {
		if _, ok := members[name]; ok {
			return jwk, fmt.Errorf("holds the private or symmetric member %q", name)
		}
	}
	kty, err := stringMember(members, "kty")
	if err != nil {
		return jwk, err
	}
	if kty != "EC" && kty != "OKP" {
		return jwk, fmt.Errorf("kty %q is not EC or OKP", kty)
	}
	if err := jwk.UnmarshalJSON(raw); err != nil {
		return jwk, err
	}
	if jwk.Algorithm != "" && jwk.Algorithm != string(alg) {
		return jwk, fmt.Errorf("its alg %q is not the header's %q", jwk.Algorithm, alg)
	}
	if jwk.Use != "" && jwk.Use != "sig" {
		return jwk, fmt.Errorf("its use %q is not sig", jwk.Use)
	}
	if !jwk.IsPublic() {
		return jwk, errors.New("not a public key")
	}
	var ok bool
	switch k := jwk.Key.(type) {
	case *ecdsa.PublicKey:
		ok = alg == jose.ES256 && k.Curve == elliptic.P256() ||
			alg == jose.ES384 && k.Curve == elliptic.P384() ||
			alg == jose.ES512 && k.Curve == elliptic.P521()
	case ed25519.PublicKey:
		ok = alg == jose.EdDSA && len(k) == ed25519.PublicKeySize
	}
	if !ok {
		return jwk, fmt.Errorf("a %s key cannot verify %s", kty, alg)
	}
	return jwk, nil
}

// verifySignature checks a JWS signature (RFC 7518 §3.4, RFC 8037 §3.1).
// publicJWK has already matched the key's type to alg.
func verifySignature(alg jose.SignatureAlgorithm, key any, input string, sig []byte) bool {
	switch alg {
	case jose.EdDSA:
		pub, ok := key.(ed25519.PublicKey)
		return ok && len(sig) == ed25519.SignatureSize && ed25519.Verify(pub, []byte(input), sig)
	case jose.ES256, jose.ES384, jose.ES512:
		pub, ok := key.(*ecdsa.PublicKey)
		if !ok {
			return false
		}
		var size int
		var digest []byte
		switch alg {
		case jose.ES256:
			sum := sha256.Sum256([]byte(input))
			size, digest = 32, sum[:]
		case jose.ES384:
			sum := sha512.Sum384([]byte(input))
			size, digest = 48, sum[:]
		default:
			sum := sha512.Sum512([]byte(input))
			size, digest = 66, sum[:]
		}
		if len(sig) != 2*size {
			return false
		}
		r := new(big.Int).SetBytes(sig[:size])
		s := new(big.Int).SetBytes(sig[size:])
		return ecdsa.Verify(pub, digest, r, s)
	}
	return false
}
