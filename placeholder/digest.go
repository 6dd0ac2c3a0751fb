package placeholder

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/mail"
	"strings"

	"github.com/pullmail/pullmail/account"
	"github.com/pullmail/pullmail/errs"
)

// b64sum returns the unpadded base64url SHA-256 of b.
func b64sum(b []byte) string {
	s := sha256.Sum256(b)
	return base64.RawURLEncoding.EncodeToString(s[:])
}

// BodyDigest returns "<" b64u(SHA-256(JCS(m.Parts))) ">" (docs/PROTOCOL.md §5.1).
func BodyDigest(m *Message) string { return "<" + b64sum(m.CanonicalParts()) + ">" }

// RecipientsDigest returns the Recipients-Digest of a first hop
// (docs/PROTOCOL.md §5.2): "<" b64u(SHA-256(JCS({"bcc": [...], "cc": [...],
// "to": [...]}))) ">", each list the normalized addr-specs of that header in
// header order, [] when the header is missing.
func RecipientsDigest(h Header) (string, error) {
	obj := map[string]any{}
	for key, name := range map[string]string{"to": HTo, "cc": HCc, "bcc": HBcc} {
		l, err := headerAddresses(h, name)
		if err != nil {
			return "", err
		}
		obj[key] = l
	}
	return "<" + b64sum(appendAny(nil, obj)) + ">", nil
}

// ForwardRecipientsDigest returns the Recipients-Digest of a forwarding hop:
// the same, over {"forwarded-to": [...]} from the Forwarded-To header.
func ForwardRecipientsDigest(h Header) (string, error) {
	l, err := headerAddresses(h, HForwardedTo)
	if err != nil {
		return "", err
	}
	return "<" + b64sum(appendAny(nil, map[string]any{"forwarded-to": l})) + ">", nil
}

func headerAddresses(h Header, name string) ([]string, error) {
	v, ok := h.Lookup(name)
	if !ok {
		return []string{}, nil
	}
	l, err := addressList(v)
	if err != nil {
		return nil, wrapInvalid(err, CodeBadAddress, "header %q: bad address list", name)
	}
	return l, nil
}

// addressList parses the value's strings joined by ", " as an RFC 5322
// address-list and returns the normalized addr-specs in order.
func addressList(v Value) ([]string, error) {
	as, err := mail.ParseAddressList(strings.Join(v.vals, ", "))
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(as))
	for _, a := range as {
		n, err := normalizeAddrSpec(a.Address)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// NormalizeAddress parses one RFC 5322 address ("Alice <alice@Example.COM>"
// or "alice@example.com") and returns its addr-spec in the form that
// Recipients-Digest hashes: the display name dropped, the domain in ASCII
// lower case, the local part unchanged (quoted only when it is not a
// dot-atom, as net/mail writes it). Non-ASCII domains are refused for now.
func NormalizeAddress(s string) (string, error) {
	a, err := mail.ParseAddress(s)
	if err != nil {
		return "", wrapInvalid(err, CodeBadAddress, "bad address %q", s)
	}
	return normalizeAddrSpec(a.Address)
}

var errBadDomain = errors.New("the domain must be an ASCII host name")

func normalizeAddrSpec(addr string) (string, error) {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return "", invalid(CodeBadAddress, "address %q has no domain", addr)
	}
	local, domain := addr[:at], strings.ToLower(addr[at+1:])
	if err := account.CheckDomain(domain); err != nil {
		var e *errs.Error
		errors.As(err, &e)
		return "", wrapInvalid(errBadDomain, CodeBadAddress, "address %q: %s", addr, e.Message)
	}
	// mail.Address.String quotes the local part when it is not a dot-atom,
	// so that the result is one unambiguous addr-spec.
	s := (&mail.Address{Address: local + "@" + domain}).String()
	return s[1 : len(s)-1], nil
}

// Hop says which kind of hop an envelope belongs to.
type Hop int

const (
	FirstHop   Hop = iota // the author's domain sends: From, To/Cc/Bcc, Body-Digest
	ForwardHop            // a recipient's domain forwards: Forwarded-From, Forwarded-To, JWT-Assertion-Digest
)

// RequiredEHL returns the names that every ehl of the hop must contain
// (docs/PROTOCOL.md §5.3), in the recommended order. The slice is new.
func (h Hop) RequiredEHL() []string {
	if h == ForwardHop {
		return []string{HMessageID, HForwardedFrom, HRecipientsDigest, HJWTAssertionDigest}
	}
	return []string{HMessageID, HFrom, HRecipientsDigest, HBodyDigest}
}

// CheckEHL checks that ehl names no header twice and contains every name of
// hop.RequiredEHL(); a signer may add more names, in any order.
func CheckEHL(ehl []string, hop Hop) error {
	seen := make(map[string]bool, len(ehl))
	for _, n := range ehl {
		if seen[n] {
			return invalid(CodeBadEHL, "ehl names %q twice", n)
		}
		seen[n] = true
	}
	for _, n := range hop.RequiredEHL() {
		if !seen[n] {
			return invalid(CodeBadEHL, "ehl lacks %q", n)
		}
	}
	return nil
}

// EHT returns the envelope-headers thumbprint over the headers named by ehl
// (docs/PROTOCOL.md §5.3): b64u(SHA-256(JCS([[name, value], ...]))) in ehl
// order, each value exactly as in h (string or array). Names are matched
// exactly; each must be present in h and appear once in ehl.
func EHT(h Header, ehl []string) (string, error) {
	if len(ehl) == 0 {
		return "", invalid(CodeBadEHL, "ehl is empty")
	}
	list := make([]any, 0, len(ehl))
	seen := make(map[string]bool, len(ehl))
	for _, n := range ehl {
		if seen[n] {
			return "", invalid(CodeBadEHL, "ehl names %q twice", n)
		}
		seen[n] = true
		i := h.index(n)
		if i < 0 || h.fields[i].Name != n {
			return "", invalid(CodeBadEHL, "ehl names %q, which the headers lack", n)
		}
		list = append(list, []any{n, h.fields[i].Value})
	}
	return b64sum(appendAny(nil, list)), nil
}

// JWTAssertionDigest returns "<" b64u(SHA-256(compact)) ">", compact being the
// JWS Compact Serialization of the assertion exactly as sent
// (docs/PROTOCOL.md §5.4).
func JWTAssertionDigest(compact string) string { return "<" + b64sum([]byte(compact)) + ">" }

// VerifyDigests checks that the Body-Digest and Recipients-Digest headers of
// a sent first-hop message match what it holds. Each header is checked only
// when present; use it on receipt, where both must be present.
func VerifyDigests(m *Message) error {
	if v, ok := m.Header.Lookup(HBodyDigest); ok && v.String() != BodyDigest(m) {
		return invalid(CodeDigestMismatch, "Body-Digest does not match the parts")
	}
	if v, ok := m.Header.Lookup(HRecipientsDigest); ok {
		rd, err := RecipientsDigest(m.Header)
		if err != nil {
			return err
		}
		if v.String() != rd {
			return invalid(CodeDigestMismatch, "Recipients-Digest does not match To, Cc and Bcc")
		}
	}
	return nil
}
