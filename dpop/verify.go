package dpop

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/keys"
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
	if err := compactForm(tok); err != nil {
		return nil, zero, invalid("%v", err)
	}
	// The one strict parse of every JWT here (keys.ParseUnverified): strict
	// base64url, header and claims each one JSON object without duplicate
	// members, nested or not.
	jws, err := keys.ParseUnverified(tok)
	if err != nil {
		return nil, zero, formRefusal(err)
	}

	// The header: typ, crit, alg, jwk.
	hdr := jws.Header
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
	// publicJWK matched the key to alg (RFC 9449 §4.3 items 6, 7); go-jose
	// checks the signature with it (item 7).
	if err := jws.VerifyWith(alg, jwk.Key); err != nil {
		return nil, zero, invalid("signature does not verify with the header's jwk")
	}
	thumb, err := Thumbprint(jwk)
	if err != nil {
		return nil, zero, invalid("jwk: %v", err)
	}

	// The claims.
	var cl map[string]json.RawMessage
	if err := json.Unmarshal(jws.Payload, &cl); err != nil { // cannot fail: ParseUnverified checked it is an object
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

// compactForm checks, before anything is decoded, that tok is three
// non-empty parts of base64url characters (RFC 7515 §7.1): no padding, no
// white space, no JWE (five parts), no JSON serialization. It is stricter
// than keys.ParseUnverified, which lets an empty signature through to fail
// its verification: a proof always has one.
func compactForm(tok string) error {
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("not a compact JWS: byte %d is %q", i, c)
		}
	}
	if n := strings.Count(tok, "."); n != 2 {
		return fmt.Errorf("not a compact JWS: %d parts, not 3", n+1)
	}
	if strings.HasPrefix(tok, ".") || strings.HasSuffix(tok, ".") || strings.Contains(tok, "..") {
		return errors.New("not a compact JWS: an empty part")
	}
	return nil
}

// formRefusal words a refusal of keys.ParseUnverified as this package's
// messages always have: "bad base64url", "header: ...", "claims: ...", and
// duplicate member "x".
func formRefusal(err error) *errs.Error {
	msg := err.Error()
	var ke *errs.Error
	if errors.As(err, &ke) {
		msg = ke.Message
	}
	if strings.HasSuffix(msg, "is not base64url") {
		return invalid("bad base64url: %s", msg)
	}
	part, rest, ok := strings.Cut(msg, ": ")
	if !ok {
		return invalid("%s", msg)
	}
	if part == "payload" {
		part = "claims"
	}
	var dup *keys.DuplicateMemberError
	if errors.As(err, &dup) {
		return invalid("%s: duplicate member %q", part, dup.Name)
	}
	return invalid("%s: %s", part, rest)
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
	// Duplicates were refused with the header's: only the shape is left.
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil || members == nil {
		return jwk, errors.New("not a JSON object")
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
