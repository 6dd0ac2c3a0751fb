package federation

import (
	"context"
	"encoding/json"
	"fmt"
	"net/mail"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/pullmail/pullmail/account"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/keys"
	"github.com/pullmail/pullmail/placeholder"
)

// ChainElement is one hop of a chain of signed envelope headers
// (docs/PROTOCOL.md §12.1): the envelope headers the hop signs and the
// assertion that signs them. A chain is carried newest hop first.
type ChainElement struct {
	Headers   json.RawMessage `json:"headers"`
	Assertion string          `json:"jwt-assertion"`
}

// ChainKeys finds the authorization server of another domain: its issuer
// and JWKS document. Remote (package discovery) implements it.
type ChainKeys interface {
	IssuerKeys(ctx context.Context, domain string) (issuer string, jwks []byte, err error)
}

// ChainCheck says what a chain must prove, and with which keys.
type ChainCheck struct {
	// Final is the domain the newest hop must be addressed to: the
	// verifier itself (a receiver) or the domain a fetch token is for.
	Final string
	// Origin, when set, is the issuer the oldest hop must come from: the
	// origin serving the resources checks that the chain starts with it.
	Origin string
	// Placeholder, when set, is the message the chain carries, checked by
	// CheckChainMessage. The token endpoint, which never sees the message,
	// leaves it nil.
	Placeholder *placeholder.Message
	// Domain, OwnIssuer and Own verify the hops this domain signed without
	// discovery; Remote finds every other domain's keys, and Refresh, if
	// set, fetches them again once when a signature does not verify (a
	// key rotated since they were cached).
	Domain    string
	OwnIssuer string
	Own       *keys.Set
	Remote    ChainKeys
	Refresh   func(ctx context.Context, domain string) (issuer string, jwks []byte, err error)
	Now       time.Time
	Limits    placeholder.Limits
	// MaxHops bounds the chain (default MaxChainHops).
	MaxHops int
}

// MaxChainHops is the longest chain accepted: the author's hop and seven
// forwards.
const MaxChainHops = 8

// Link is one verified hop.
type Link struct {
	Claims  Claims
	Headers placeholder.Header
	// Domain is the domain that sent the hop: its assertion's sub's domain.
	Domain string
}

// Codes of chain verification errors (docs/PROTOCOL.md §12.3). Each names
// one way a chain can be wrong, so that a refusal says what to look at.
const (
	CodeChainTooLong      = "chain_too_long"     // more hops than allowed, or none
	CodeChainLinkMissing  = "chain_link_missing" // the hop numbers have a gap: a link was removed
	CodeChainOrder        = "chain_order"        // every hop is there, out of order: links swapped
	CodeChainBroken       = "chain_broken"       // a link does not follow from the one before it
	CodeForwardingLoop    = "forwarding_loop"    // a hop goes back to a domain the chain passed
	CodeNotARecipient     = "not_a_recipient"    // a forwarder was not a recipient of the hop before
	CodeForwarderMismatch = "forwarder_mismatch" // Forwarded-From is not the hop's signer
)

// VerifyChain checks a chain link by link, oldest first, and returns the
// verified links in chain order (newest first). Errors are *errs.Error with
// the codes of docs/PROTOCOL.md §12.3; a failure to reach another domain's
// keys is returned as it is (temporary). It does not check the newest
// hop's expiry or replay: that is the receiver's business; older hops may
// be long expired (a forward can come days after a delivery), but each must
// still look like an assertion an AS issues.
func VerifyChain(ctx context.Context, chain []ChainElement, c ChainCheck) ([]Link, error) {
	max := c.MaxHops
	if max <= 0 {
		max = MaxChainHops
	}
	n := len(chain)
	if n == 0 || n > max {
		return nil, errs.E(errs.Invalid, CodeChainTooLong, "a chain holds 1 to %d hops, not %d", max, n)
	}
	// The hop numbers first: a removed or swapped link is named as such,
	// before any signature is checked.
	hops := make([]int, n)
	for i, el := range chain {
		var peek Claims
		if _, err := keys.Peek(el.Assertion, &peek); err != nil {
			return nil, errs.Wrap(err, errs.Unauthorized, "invalid_token", fmt.Sprintf("hop %d: the assertion is not a JWT", n-i))
		}
		hops[i] = peek.Hop
	}
	if err := checkHopNumbers(hops); err != nil {
		return nil, err
	}

	links := make([]Link, n)
	for i := n - 1; i >= 0; i-- {
		var older *Link
		var olderAssertion string
		if i < n-1 {
			older, olderAssertion = &links[i+1], chain[i+1].Assertion
		}
		l, err := c.verifyLink(ctx, chain[i], n-i, older, olderAssertion)
		if err != nil {
			return nil, err
		}
		links[i] = l
	}
	newest := links[0].Claims
	if len(newest.Audience) != 1 || !strings.EqualFold(newest.Audience[0], c.Final) {
		return nil, errs.E(errs.Forbidden, "wrong_audience", "the newest hop is not addressed to %s alone", c.Final)
	}
	if c.Origin != "" && links[n-1].Claims.Issuer != c.Origin {
		return nil, errs.E(errs.Forbidden, "issuer_mismatch", "the chain does not start at %s", c.Origin)
	}
	if c.Placeholder != nil {
		if err := CheckChainMessage(links, c.Placeholder); err != nil {
			return nil, err
		}
	}
	return links, nil
}

// CheckChainMessage checks the message a verified chain carries: the
// author's hop signs its headers, its digests hold, and the first
// forwarder was one of its recipients. (Later forwarders are checked
// against the Forwarded-To of the hop before them by VerifyChain.)
func CheckChainMessage(links []Link, m *placeholder.Message) error {
	first := links[len(links)-1]
	for _, name := range first.Claims.EH.EHL {
		if !m.Header.Get(name).Equal(first.Headers.Get(name)) {
			return errs.E(errs.Invalid, "eht_mismatch", "the placeholder's %s differs from the signed one", name)
		}
	}
	if !m.Header.Has(placeholder.HBodyDigest) || !m.Header.Has(placeholder.HRecipientsDigest) {
		return errs.E(errs.Invalid, placeholder.CodeDigestMismatch, "Body-Digest and Recipients-Digest are required")
	}
	if err := placeholder.VerifyDigests(m); err != nil {
		return err
	}
	if len(links) < 2 {
		return nil
	}
	var rcpts []string
	for _, name := range []string{placeholder.HTo, placeholder.HCc, placeholder.HBcc} {
		rcpts = append(rcpts, Addresses(m.Header.Get(name))...)
	}
	return wasRecipient(links[len(links)-2], rcpts)
}

// wasRecipient checks that the forwarder of l received the hop before it.
// A hop cannot widen who may fetch beyond what each hop's recipients pass
// on.
func wasRecipient(l Link, prev []string) error {
	fwd, _ := placeholder.NormalizeAddress(l.Headers.Get(placeholder.HForwardedFrom).String())
	if !slices.ContainsFunc(prev, func(r string) bool { return strings.EqualFold(r, fwd) }) {
		return errs.E(errs.Forbidden, CodeNotARecipient, "hop %d: %s was not a recipient of hop %d", l.Claims.Hop, fwd, l.Claims.Hop-1)
	}
	return nil
}

// checkHopNumbers wants n, n-1, ..., 1.
func checkHopNumbers(hops []int) error {
	n := len(hops)
	ok := true
	for i, h := range hops {
		ok = ok && h == n-i
	}
	if ok {
		return nil
	}
	sorted := slices.Clone(hops)
	slices.Sort(sorted)
	for i, h := range sorted {
		if h != i+1 {
			return errs.E(errs.Invalid, CodeChainLinkMissing, "the chain's hops are %v: a hop is missing", hops)
		}
	}
	return errs.E(errs.Invalid, CodeChainOrder, "the chain's hops are %v: they must be newest first", hops)
}

// verifyLink checks hop number hop, given the verified hop before it (nil
// for the first).
func (c *ChainCheck) verifyLink(ctx context.Context, el ChainElement, hop int, older *Link, olderAssertion string) (Link, error) {
	var peek Claims
	typ, err := keys.Peek(el.Assertion, &peek)
	if err != nil || !keys.SameType(typ, TypAssertion) {
		return Link{}, errs.E(errs.Unauthorized, "invalid_token", "hop %d: not a %s", hop, TypAssertion)
	}
	h, err := placeholder.ParseHeader(el.Headers, c.Limits)
	if err != nil {
		return Link{}, err
	}
	domain := domainOf(peek.Subject)
	switch {
	case older == nil:
		addr, _ := placeholder.NormalizeAddress(h.Get(placeholder.HFrom).String())
		if domain == "" || domainOf(addr) != domain {
			return Link{}, errs.E(errs.Forbidden, "from_domain_mismatch", "hop 1: the assertion's sub is not of the From domain")
		}
	case len(older.Claims.Audience) != 1 || !strings.EqualFold(older.Claims.Audience[0], domain):
		return Link{}, errs.E(errs.Invalid, CodeChainBroken, "hop %d is sent by %s, but hop %d was addressed to %v", hop, domain, hop-1, older.Claims.Audience)
	}

	// Who signed it.
	payload, err := c.verifySignature(ctx, el.Assertion, peek.Issuer, domain, hop)
	if err != nil {
		return Link{}, err
	}
	var a Claims
	if err := json.Unmarshal(payload, &a); err != nil {
		return Link{}, errs.Wrap(err, errs.Unauthorized, "invalid_token", fmt.Sprintf("hop %d: malformed claims", hop))
	}
	if a.AZP != "mta@"+domain {
		return Link{}, errs.E(errs.Forbidden, "wrong_client", "hop %d: azp is not the MTA of %s", hop, domain)
	}
	exp, iat := a.Expiry.Time(), a.IssuedAt.Time()
	switch {
	case a.Expiry == 0 || a.IssuedAt == 0 || exp.Sub(iat) > 10*time.Minute:
		return Link{}, errs.E(errs.Unauthorized, "expired_assertion", "hop %d: an assertion lives at most 10 minutes", hop)
	case iat.After(c.Now.Add(time.Minute)):
		return Link{}, errs.E(errs.Unauthorized, "expired_assertion", "hop %d: the assertion is not valid yet", hop)
	case !HasScope(a.Scope, ScopeInternetMail):
		return Link{}, errs.E(errs.Forbidden, "invalid_token", "hop %d: the assertion does not grant %s", hop, ScopeInternetMail)
	case len(a.Audience) != 1 || account.CheckDomain(a.Audience[0]) != nil:
		return Link{}, errs.E(errs.Forbidden, "wrong_audience", "hop %d: an assertion names one domain", hop)
	case a.Hop != hop:
		return Link{}, errs.E(errs.Invalid, CodeChainBroken, "hop %d: the assertion says hop %d", hop, a.Hop)
	}
	if a.EH == nil {
		return Link{}, errs.E(errs.Invalid, placeholder.CodeBadEHL, "hop %d: the assertion has no eh claim", hop)
	}
	kind := placeholder.FirstHop
	if older != nil {
		kind = placeholder.ForwardHop
	}
	if err := placeholder.CheckEHL(a.EH.EHL, kind); err != nil {
		return Link{}, err
	}
	if eht, err := placeholder.EHT(h, a.EH.EHL); err != nil || eht != a.EH.EHT {
		return Link{}, errs.E(errs.Invalid, "eht_mismatch", "hop %d: the headers are not those the assertion signs", hop)
	}
	if h.Len() != len(a.EH.EHL) {
		return Link{}, errs.E(errs.Invalid, "eht_mismatch", "hop %d: the headers hold names the assertion does not sign", hop)
	}
	if h.Get(placeholder.HMessageID).String() != a.MessageID {
		return Link{}, errs.E(errs.Invalid, "eht_mismatch", "hop %d: the assertion is for another Message-ID", hop)
	}
	l := Link{Claims: a, Headers: h, Domain: domain}
	if older == nil {
		return l, c.checkFirst(l)
	}
	return l, c.checkForward(&l, older, olderAssertion)
}

// verifySignature checks the assertion with the keys of the issuer of
// domain, found by discovery (or this domain's own).
func (c *ChainCheck) verifySignature(ctx context.Context, compact, iss, domain string, hop int) ([]byte, error) {
	if c.Own != nil && strings.EqualFold(domain, c.Domain) {
		if iss != c.OwnIssuer {
			return nil, errs.E(errs.Forbidden, "issuer_mismatch", "hop %d: the assertion's iss is not the issuer of %s", hop, domain)
		}
		payload, _, err := c.Own.Verify(compact, keys.Expect{Typ: TypAssertion})
		if err != nil {
			return nil, errs.Wrap(err, errs.Unauthorized, "bad_signature", fmt.Sprintf("hop %d: the assertion does not verify with the keys of %s", hop, domain))
		}
		return payload, nil
	}
	if c.Remote == nil {
		return nil, errs.E(errs.Forbidden, "issuer_mismatch", "hop %d: the keys of %s cannot be looked up here", hop, domain)
	}
	wantIss, doc, err := c.Remote.IssuerKeys(ctx, domain)
	if err != nil {
		return nil, fmt.Errorf("discovering the authorization server of %s: %w", domain, err)
	}
	if iss != wantIss {
		return nil, errs.E(errs.Forbidden, "issuer_mismatch", "hop %d: the assertion's iss is not the issuer of %s", hop, domain)
	}
	payload, err := verifyWithDoc(compact, doc)
	if err != nil && c.Refresh != nil {
		if iss2, doc2, rerr := c.Refresh(ctx, domain); rerr == nil && iss2 == iss {
			payload, err = verifyWithDoc(compact, doc2)
		}
	}
	if err != nil {
		return nil, errs.Wrap(err, errs.Unauthorized, "bad_signature", fmt.Sprintf("hop %d: the assertion does not verify with the keys of %s", hop, domain))
	}
	return payload, nil
}

func verifyWithDoc(compact string, doc []byte) ([]byte, error) {
	set, err := keys.ParseJWKS(doc)
	if err != nil {
		return nil, err
	}
	return verifyWith(compact, set)
}

func verifyWith(compact string, set jose.JSONWebKeySet) ([]byte, error) {
	payload, _, err := keys.Verify(compact, set, keys.Expect{Typ: TypAssertion})
	return payload, err
}

// checkFirst checks the author's hop: path, and the message it carries.
func (c *ChainCheck) checkFirst(l Link) error {
	a := l.Claims
	if a.Prev != "" || len(a.Path) != 1 || !strings.EqualFold(a.Path[0], l.Domain) {
		return errs.E(errs.Invalid, CodeChainBroken, "hop 1: path must be [%s] and prev empty", l.Domain)
	}
	return nil
}

// checkForward checks a forwarding hop against the hop before it.
func (c *ChainCheck) checkForward(l, older *Link, olderAssertion string) error {
	a, hop := l.Claims, l.Claims.Hop
	digest := placeholder.JWTAssertionDigest(olderAssertion)
	switch {
	case a.Prev != digest || l.Headers.Get(placeholder.HJWTAssertionDigest).String() != digest:
		return errs.E(errs.Invalid, CodeChainBroken, "hop %d does not name the assertion of hop %d", hop, hop-1)
	case a.MessageID != older.Claims.MessageID:
		return errs.E(errs.Invalid, CodeChainBroken, "hop %d is for another message than hop %d", hop, hop-1)
	case !slices.Equal(a.Path, append(slices.Clone(older.Claims.Path), l.Domain)):
		return errs.E(errs.Invalid, CodeChainBroken, "hop %d: path %v does not extend %v by %s", hop, a.Path, older.Claims.Path, l.Domain)
	}
	if slices.ContainsFunc(a.Path, func(d string) bool { return strings.EqualFold(d, a.Audience[0]) }) {
		return errs.E(errs.Forbidden, CodeForwardingLoop, "hop %d goes back to %s", hop, a.Audience[0])
	}
	fwd, err := placeholder.NormalizeAddress(l.Headers.Get(placeholder.HForwardedFrom).String())
	if err != nil || !strings.EqualFold(fwd, a.Subject) {
		return errs.E(errs.Forbidden, CodeForwarderMismatch, "hop %d: Forwarded-From is not the assertion's sub", hop)
	}
	if want, err := placeholder.ForwardRecipientsDigest(l.Headers); err != nil ||
		l.Headers.Get(placeholder.HRecipientsDigest).String() != want {
		return errs.E(errs.Invalid, placeholder.CodeDigestMismatch, "hop %d: Recipients-Digest is not that of Forwarded-To", hop)
	}
	if older.Claims.Hop == 1 {
		return nil // against the message's recipients: CheckChainMessage
	}
	return wasRecipient(*l, Addresses(older.Headers.Get(placeholder.HForwardedTo)))
}

// Addresses returns the normalized addr-specs of an address-list header
// value; what does not parse is left out.
func Addresses(v placeholder.Value) []string {
	if v.IsZero() {
		return nil
	}
	list, err := mail.ParseAddressList(strings.Join(v.List(), ", "))
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range list {
		if n, err := placeholder.NormalizeAddress(a.Address); err == nil {
			out = append(out, n)
		}
	}
	return out
}

func domainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 || i == len(addr)-1 {
		return ""
	}
	return strings.ToLower(addr[i+1:])
}
