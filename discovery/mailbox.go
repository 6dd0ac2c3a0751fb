package discovery

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/keys"
)

// MailboxMetadata is the document that a domain's mailbox service publishes
// at PathMailbox: where other domains push Placeholder Messages and pull
// External Resources, and which OAuth client is the domain's MTA, with its
// public keys (seed 004 Note 2: a DNS-bound client identity through the
// sibling SRV record). For example:
//
//	{
//	  "domain": "a.test",
//	  "url": "https://mail.a.test",
//	  "inbound_endpoint": "https://mail.a.test/federation/inbound",
//	  "fetch_endpoint": "https://mail.a.test/federation/fetch",
//	  "mta_client_id": "mta@a.test",
//	  "mta_jwks": {"keys": [{"kty": "EC", "crv": "P-256", "x": "…", "y": "…", "kid": "…"}]}
//	}
//
// Rules (ParseMailboxMetadata): domain is a lower-case domain name; url is
// the mailbox service's base URL, https, without a trailing slash, query or
// fragment, and equal to the base URL the document was fetched from (as the
// AS metadata's issuer is); both endpoints are https URLs on url's host and
// port; mta_client_id is "mta@" + domain; mta_jwks is a public JWK Set that
// keys.ParseJWKS accepts, with at least one usable key. Unknown members are
// ignored, duplicate members refused; the document is at most MaxBody bytes.
type MailboxMetadata struct {
	Domain          string          `json:"domain"`
	URL             string          `json:"url"`
	InboundEndpoint string          `json:"inbound_endpoint"`
	FetchEndpoint   string          `json:"fetch_endpoint"`
	MTAClientID     string          `json:"mta_client_id"`
	MTAJWKS         json.RawMessage `json:"mta_jwks"`
}

// Mailbox is a domain's mailbox service, as discovered.
type Mailbox struct {
	MailboxMetadata
	MTAKeys jose.JSONWebKeySet // mta_jwks, parsed
	Raw     []byte             // the document as fetched
}

// MTAClientID is the client_id of domain's MTA (docs/PROTOCOL.md §10.1).
func MTAClientID(domain string) string { return "mta@" + domain }

// ParseMailboxMetadata parses and checks a mailbox metadata document (the
// rules are on MailboxMetadata). It does not check that the document is the
// one of a given domain and base URL: Client.Mailbox does. Errors are
// *errs.Error of kind Invalid or TooLarge.
func ParseMailboxMetadata(data []byte) (Mailbox, error) {
	bad := func(format string, args ...any) (Mailbox, error) {
		return Mailbox{}, errs.E(errs.Invalid, "bad_mailbox_metadata", "mailbox metadata: "+format, args...)
	}
	if len(data) > MaxBody {
		return Mailbox{}, errs.E(errs.TooLarge, "response_too_large", "mailbox metadata: more than %d bytes", MaxBody)
	}
	var m MailboxMetadata
	if err := decodeObject(data, &m); err != nil {
		return bad("%v", err)
	}
	if m.Domain != strings.ToLower(m.Domain) || !validDomain(m.Domain) {
		return bad("domain %q is not a lower-case domain name", m.Domain)
	}
	base, err := url.Parse(m.URL)
	if err != nil || base.Scheme != "https" || base.Host == "" || base.User != nil || base.RawQuery != "" ||
		base.ForceQuery || base.Fragment != "" || base.Opaque != "" || strings.HasSuffix(m.URL, "/") || base.Port() == "443" {
		return bad("url %q is not an https base URL (no trailing slash, query, fragment or :443)", m.URL)
	}
	for _, ep := range []struct{ name, v string }{
		{"inbound_endpoint", m.InboundEndpoint}, {"fetch_endpoint", m.FetchEndpoint},
	} {
		u, err := sameOrigin(ep.v, m.URL)
		if err != nil {
			return bad("%s: %v", ep.name, err)
		}
		if u.RawQuery != "" || u.ForceQuery {
			return bad("%s %q has a query", ep.name, ep.v)
		}
	}
	if m.MTAClientID != MTAClientID(m.Domain) {
		return bad("mta_client_id %q is not %q", m.MTAClientID, MTAClientID(m.Domain))
	}
	if len(m.MTAJWKS) == 0 || string(m.MTAJWKS) == "null" {
		return bad("mta_jwks missing")
	}
	set, err := keys.ParseJWKS(m.MTAJWKS)
	if err != nil {
		return bad("mta_jwks: %v", err)
	}
	if len(set.Keys) == 0 {
		return bad("mta_jwks has no usable signing key")
	}
	m.MTAJWKS = append(json.RawMessage(nil), m.MTAJWKS...)
	return Mailbox{MailboxMetadata: m, MTAKeys: set, Raw: append([]byte(nil), data...)}, nil
}

// MailboxHandler serves doc at PathMailbox (GET and HEAD), cacheable for
// five minutes. A doc that ParseMailboxMetadata would refuse is answered
// with 500 internal, never published: fix the configuration.
func MailboxHandler(doc MailboxMetadata) http.Handler {
	body, err := json.Marshal(doc)
	if err == nil {
		_, err = ParseMailboxMetadata(body)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			errs.WriteHTTP(w, errs.E(errs.Invalid, "method_not_allowed", "use GET"))
			return
		}
		if err != nil {
			errs.WriteHTTP(w, errs.Wrap(err, errs.Internal, "internal", "mailbox metadata misconfigured"))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Write(body)
	})
}

// Mailbox returns the mailbox service of domain, from the cache or
// discovered: SRV _federizer._rs._tcp.DOMAIN, then its MailboxMetadata,
// whose domain must be domain and whose url the base URL it was fetched
// from.
func (c *Client) Mailbox(ctx context.Context, domain string) (Mailbox, error) {
	domain, err := normalizeDomain(domain)
	if err != nil {
		return Mailbox{}, err
	}
	c.mu.Lock()
	e, ok := c.mailboxes[domain]
	c.mu.Unlock()
	if ok && c.now().Before(e.expires) {
		return e.v, nil
	}
	v, err := c.share(ctx, "rs "+domain, func(ctx context.Context) (any, error) {
		return c.discoverMailbox(ctx, domain)
	})
	if err != nil {
		return Mailbox{}, err
	}
	return v.(Mailbox), nil
}

func (c *Client) discoverMailbox(ctx context.Context, domain string) (Mailbox, error) {
	var m Mailbox
	var ttl time.Duration
	err := c.eachTarget(ctx, ServiceRS, domain, func(base string) error {
		body, base, age, err := c.fetchWellKnown(ctx, base, PathMailbox, "bad_mailbox_metadata")
		if err != nil {
			return err
		}
		if m, err = ParseMailboxMetadata(body); err != nil {
			return err
		}
		if m.Domain != domain {
			return errs.E(errs.Invalid, "domain_mismatch", "mailbox metadata at %s is for %q, not %q", base, m.Domain, domain)
		}
		if m.URL != base {
			return errs.E(errs.Invalid, "bad_mailbox_metadata", "mailbox metadata fetched from %s names url %q", base, m.URL)
		}
		ttl = c.ttl(age)
		return nil
	})
	if err != nil {
		return Mailbox{}, err
	}
	now := c.now()
	c.mu.Lock()
	put(c.mailboxes, domain, entry[Mailbox]{m, now.Add(ttl)}, now)
	c.mu.Unlock()
	c.log.DebugContext(ctx, "discovered mailbox", "domain", domain, "url", m.URL, "ttl", ttl)
	return m, nil
}
