package discovery

import (
	"bytes"
	"cmp"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/federation"
	"github.com/pullmail/pullmail/keys"
)

// Well-known paths and SRV services.
const (
	PathASMetadata = federation.PathASMetadata       // RFC 8414 §3
	PathMailbox    = "/.well-known/pullmail-mailbox" // MailboxMetadata
	ServiceAS      = "_federizer._as._tcp."          // + domain: the authorization server
	ServiceRS      = "_federizer._rs._tcp."          // + domain: the mailbox service
)

// Defaults and limits.
const (
	DefaultTimeout  = 10 * time.Second // per fetch, the whole exchange
	DefaultMaxTTL   = time.Hour
	MinTTL          = time.Minute // the shortest a discovery is cached
	RefreshInterval = time.Minute // RefreshKeys refetches a domain at most this often
	maxEntries      = 10000       // per cache
)

// NewResolver returns a resolver that asks the DNS server at addr
// ("127.0.0.1:5353", the --dns flag) over UDP and TCP, with Go's own
// resolver; addr "" returns the system's resolver. Names in /etc/hosts are
// still answered from there first.
func NewResolver(addr string) *net.Resolver {
	if addr == "" {
		return net.DefaultResolver
	}
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
}

// Config configures a Client.
type Config struct {
	// Resolver looks up SRV and address records (nil: the system's).
	Resolver *net.Resolver
	// RootCAs are the roots that remote servers' certificates must chain
	// to (nil: the system's). TLS is always verified.
	RootCAs *x509.CertPool
	// AllowPrivate allows targets on loopback, private and link-local
	// addresses: for tests and the local sandbox only.
	AllowPrivate bool
	Clock        func() time.Time // default time.Now
	// MaxTTL bounds how long a discovery is cached (default 1 hour).
	MaxTTL time.Duration
	// Timeout bounds each fetch (default 10 seconds).
	Timeout time.Duration
	Log     *slog.Logger
}

// Authority is a domain's authorization server, as discovered.
type Authority struct {
	Issuer        string // equal to the base URL the metadata was fetched from
	TokenEndpoint string
	JWKSURI       string
	JWKS          jose.JSONWebKeySet // public keys only (keys.ParseJWKS)
	Raw           []byte             // the JWKS document as fetched
}

// Client discovers remote domains and caches what it found. It is safe for
// concurrent use.
type Client struct {
	cfg   Config
	http  *http.Client
	log   *slog.Logger
	randN func(n int) int // [0, n), for the RFC 2782 weighted order; tests fix it

	mu          sync.Mutex
	authorities map[string]entry[Authority]
	mailboxes   map[string]entry[Mailbox]
	peers       map[string]entry[Peer]
	refreshed   map[string]time.Time // last RefreshKeys fetch per domain
	inflight    map[string]*call
}

type entry[T any] struct {
	v       T
	expires time.Time
}

// call is one discovery in flight, shared by concurrent callers.
type call struct {
	done chan struct{}
	v    any
	err  error
}

// New returns a Client.
func New(cfg Config) *Client {
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.MaxTTL <= 0 {
		cfg.MaxTTL = DefaultMaxTTL
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Client{
		cfg:         cfg,
		http:        newHTTPClient(cfg),
		log:         cfg.Log.With("component", "discovery"),
		randN:       rand.IntN,
		authorities: make(map[string]entry[Authority]),
		mailboxes:   make(map[string]entry[Mailbox]),
		peers:       make(map[string]entry[Peer]),
		refreshed:   make(map[string]time.Time),
		inflight:    make(map[string]*call),
	}
}

// Close closes idle connections. The Client stays usable.
func (c *Client) Close() { c.http.CloseIdleConnections() }

func (c *Client) resolver() *net.Resolver { return c.cfg.Resolver }

func (c *Client) now() time.Time { return c.cfg.Clock() }

// ttl is how long a discovery made of responses with these max-ages (-1:
// none) is cached.
func (c *Client) ttl(ages ...time.Duration) time.Duration {
	t := c.cfg.MaxTTL
	for _, a := range ages {
		if a >= 0 && a < t {
			t = a
		}
	}
	return min(max(t, MinTTL), c.cfg.MaxTTL)
}

// share runs fn once for concurrent callers with the same key. fn runs
// detached from the first caller's cancellation (its fetches have their
// own timeouts), so that one caller giving up does not fail the others.
func (c *Client) share(ctx context.Context, key string, fn func(context.Context) (any, error)) (any, error) {
	c.mu.Lock()
	cl, ok := c.inflight[key]
	if !ok {
		cl = &call{done: make(chan struct{})}
		c.inflight[key] = cl
		go func() {
			cl.v, cl.err = fn(context.WithoutCancel(ctx))
			c.mu.Lock()
			delete(c.inflight, key)
			c.mu.Unlock()
			close(cl.done)
		}()
	}
	c.mu.Unlock()
	select {
	case <-cl.done:
		return cl.v, cl.err
	case <-ctx.Done():
		return nil, errs.Wrap(ctx.Err(), errs.Temporary, "fetch_failed", "discovery interrupted")
	}
}

// put stores v in m, keeping m under maxEntries. c.mu must be held.
func put[T any](m map[string]entry[T], key string, e entry[T], now time.Time) {
	if len(m) >= maxEntries {
		for k, old := range m {
			if !now.Before(old.expires) {
				delete(m, k)
			}
		}
		for k := range m {
			if len(m) < maxEntries {
				break
			}
			delete(m, k)
		}
	}
	m[key] = e
}

// Authority returns the authorization server of domain, from the cache or
// discovered: SRV _federizer._as._tcp.DOMAIN, its RFC 8414 metadata, its
// JWKS (package doc).
func (c *Client) Authority(ctx context.Context, domain string) (Authority, error) {
	domain, err := normalizeDomain(domain)
	if err != nil {
		return Authority{}, err
	}
	c.mu.Lock()
	e, ok := c.authorities[domain]
	c.mu.Unlock()
	if ok && c.now().Before(e.expires) {
		return e.v, nil
	}
	v, err := c.share(ctx, "as "+domain, func(ctx context.Context) (any, error) {
		return c.discoverAuthority(ctx, domain)
	})
	if err != nil {
		return Authority{}, err
	}
	return v.(Authority), nil
}

func (c *Client) discoverAuthority(ctx context.Context, domain string) (Authority, error) {
	var a Authority
	var ttl time.Duration
	err := c.eachTarget(ctx, ServiceAS, domain, func(base string) error {
		var err error
		a, ttl, err = c.authorityAt(ctx, base)
		return err
	})
	if err != nil {
		return Authority{}, err
	}
	now := c.now()
	c.mu.Lock()
	put(c.authorities, domain, entry[Authority]{a, now.Add(ttl)}, now)
	c.mu.Unlock()
	c.log.DebugContext(ctx, "discovered authority", "domain", domain, "issuer", a.Issuer, "keys", len(a.JWKS.Keys), "ttl", ttl)
	return a, nil
}

// eachTarget looks up the SRV records of service+domain and calls try with
// each target's base URL in RFC 2782 order, until one succeeds or fails
// with an error that is not Temporary.
func (c *Client) eachTarget(ctx context.Context, service, domain string, try func(base string) error) error {
	recs, err := c.lookupSRV(ctx, service, domain)
	if err != nil {
		return err
	}
	var lastErr error
	for _, r := range recs {
		host := strings.ToLower(strings.TrimSuffix(r.Target, "."))
		base := "https://" + host
		if r.Port != 443 {
			base = fmt.Sprintf("https://%s:%d", host, r.Port)
		}
		err := try(base)
		if err == nil {
			return nil
		}
		if errs.KindOf(err) != errs.Temporary {
			return err
		}
		c.log.WarnContext(ctx, "discovery target failed", "domain", domain, "service", service, "target", base, "err", err)
		lastErr = err
	}
	return lastErr
}

// lookupSRV returns the usable SRV records of service+domain in RFC 2782
// order.
func (c *Client) lookupSRV(ctx context.Context, service, domain string) ([]*net.SRV, error) {
	name := service + domain
	_, recs, err := c.resolver().LookupSRV(ctx, "", "", name)
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			return nil, errs.Wrap(err, errs.NotFound, "no_srv_record", "no SRV record "+name+": the domain does not take part")
		}
		if len(recs) == 0 {
			return nil, errs.Wrap(err, errs.Temporary, "dns_failed", "looking up SRV "+name)
		}
		// Some records had malformed targets: Go dropped them.
		c.log.WarnContext(ctx, "malformed SRV records ignored", "name", name, "err", err)
	}
	if len(recs) == 0 {
		return nil, errs.E(errs.NotFound, "no_srv_record", "no SRV record %s: the domain does not take part", name)
	}
	if len(recs) == 1 && recs[0].Target == "." {
		return nil, errs.E(errs.NotFound, "service_unavailable", "SRV %s has target \".\": the service is explicitly unavailable (RFC 2782)", name)
	}
	recs = slices.DeleteFunc(recs, func(r *net.SRV) bool { return r.Target == "." })
	return orderSRV(recs, c.randN), nil
}

// orderSRV orders SRV records as RFC 2782 says: by priority, and within a
// priority by repeated weighted random choices, each record chosen with a
// probability proportional to its weight. RFC 2782 draws from [0, sum]
// inclusive, which favours the first record a little and gives weight 0 a
// chance; like Go's net package we draw from [0, sum), so that the shares
// are exact and records of weight 0 come last, in their order. randN
// returns a number in [0, n).
func orderSRV(recs []*net.SRV, randN func(int) int) []*net.SRV {
	s := slices.Clone(recs)
	slices.SortStableFunc(s, func(a, b *net.SRV) int {
		return cmp.Compare(a.Priority, b.Priority)
	})
	out := make([]*net.SRV, 0, len(s))
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && s[j].Priority == s[i].Priority {
			j++
		}
		group := s[i:j]
		for len(group) > 0 {
			sum := 0
			for _, r := range group {
				sum += int(r.Weight)
			}
			k := 0
			if sum > 0 {
				n, run := randN(sum), 0
				for k = range group {
					run += int(group[k].Weight)
					if run > n {
						break
					}
				}
			}
			out = append(out, group[k])
			group = slices.Delete(group, k, k+1)
		}
		i = j
	}
	return out
}

// authorityAt fetches the metadata of the authorization server whose SRV
// target gives base, then its JWKS.
func (c *Client) authorityAt(ctx context.Context, base string) (Authority, time.Duration, error) {
	body, base, age, err := c.fetchWellKnown(ctx, base, PathASMetadata, "bad_metadata")
	if err != nil {
		return Authority{}, 0, err
	}
	var md federation.ASMetadata
	if err := decodeObject(body, &md); err != nil {
		return Authority{}, 0, errs.Wrap(err, errs.Invalid, "bad_metadata", "authorization server metadata at "+base+" is not valid")
	}
	if md.Issuer != base {
		return Authority{}, 0, errs.E(errs.Invalid, "issuer_mismatch",
			"metadata fetched from %s names issuer %q (RFC 8414 §3.3)", base, md.Issuer)
	}
	jwksURL, err := sameOrigin(md.JWKSURI, base)
	if err != nil {
		return Authority{}, 0, errs.Wrap(err, errs.Invalid, "bad_metadata", "jwks_uri must be an https URL on the issuer's host")
	}
	if _, err := sameOrigin(md.TokenEndpoint, base); err != nil {
		return Authority{}, 0, errs.Wrap(err, errs.Invalid, "bad_metadata", "token_endpoint must be an https URL on the issuer's host")
	}
	raw, set, jwksAge, err := c.fetchJWKS(ctx, jwksURL.String())
	if err != nil {
		return Authority{}, 0, err
	}
	a := Authority{Issuer: md.Issuer, TokenEndpoint: md.TokenEndpoint, JWKSURI: md.JWKSURI, JWKS: set, Raw: raw}
	return a, c.ttl(age, jwksAge), nil
}

// fetchJWKS fetches and checks a JWK Set; it follows no redirect.
func (c *Client) fetchJWKS(ctx context.Context, rawURL string) ([]byte, jose.JSONWebKeySet, time.Duration, error) {
	u, err := sameOrigin(rawURL, rawURL)
	if err != nil {
		return nil, jose.JSONWebKeySet{}, 0, errs.Wrap(err, errs.Invalid, "bad_metadata", "bad jwks_uri")
	}
	r, err := c.get(ctx, u, "invalid_jwks")
	if err != nil {
		return nil, jose.JSONWebKeySet{}, 0, err
	}
	if r.location != nil {
		return nil, jose.JSONWebKeySet{}, 0, errs.E(errs.Invalid, "bad_redirect", "JWKS %s redirects to %s: refused", rawURL, r.location.Redacted())
	}
	set, err := keys.ParseJWKS(r.body)
	if err != nil {
		return nil, jose.JSONWebKeySet{}, 0, fmt.Errorf("JWKS at %s: %w", rawURL, err)
	}
	if len(set.Keys) == 0 {
		return nil, jose.JSONWebKeySet{}, 0, errs.E(errs.Invalid, "invalid_jwks", "JWKS at %s has no usable signing key", rawURL)
	}
	return r.body, set, r.maxAge, nil
}

// RefreshKeys refetches the JWKS of domain's authorization server, for a
// signature whose kid is unknown, and forgets its cached mailbox metadata
// (whose mta_jwks a client assertion is checked against), so that the next
// Mailbox call refetches it. It does so at most once per RefreshInterval
// per domain, so that unknown kids sent by an attacker cannot make us
// hammer a peer; within the interval it returns the cached Authority.
// Either way the result is the Authority to verify with.
func (c *Client) RefreshKeys(ctx context.Context, domain string) (Authority, error) {
	domain, err := normalizeDomain(domain)
	if err != nil {
		return Authority{}, err
	}
	now := c.now()
	c.mu.Lock()
	last, limited := c.refreshed[domain]
	limited = limited && now.Sub(last) < RefreshInterval
	cached, haveCached := c.authorities[domain]
	if !limited {
		if len(c.refreshed) >= maxEntries {
			for d, t := range c.refreshed {
				if now.Sub(t) >= RefreshInterval {
					delete(c.refreshed, d)
				}
			}
		}
		c.refreshed[domain] = now
		delete(c.mailboxes, domain)
	}
	c.mu.Unlock()
	if limited || !haveCached {
		return c.Authority(ctx, domain)
	}
	v, err := c.share(ctx, "jwks "+domain, func(ctx context.Context) (any, error) {
		raw, set, _, err := c.fetchJWKS(ctx, cached.v.JWKSURI)
		if err != nil {
			return nil, err
		}
		a := cached.v
		a.JWKS, a.Raw = set, raw
		c.mu.Lock()
		if e, ok := c.authorities[domain]; ok && e.v.Issuer == a.Issuer {
			e.v = a
			c.authorities[domain] = e
		}
		c.mu.Unlock()
		c.log.InfoContext(ctx, "refreshed JWKS", "domain", domain, "keys", len(set.Keys))
		return a, nil
	})
	if err != nil {
		return Authority{}, err
	}
	return v.(Authority), nil
}

// normalizeDomain lower-cases a domain name, drops a final dot and checks
// that it is a host name (not an IP address).
func normalizeDomain(d string) (string, error) {
	n := strings.TrimSuffix(strings.ToLower(d), ".")
	if !validDomain(n) {
		return "", errs.E(errs.Invalid, "bad_domain", "%q is not a domain name", d)
	}
	return n, nil
}

func validDomain(d string) bool {
	if len(d) == 0 || len(d) > 253 || net.ParseIP(d) != nil {
		return false
	}
	for label := range strings.SplitSeq(d, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// decodeObject unmarshals a JSON object into v, refusing duplicate
// top-level members (which parsers resolve differently: RFC 8259 §4) and
// trailing data. Unknown members are ignored (RFC 8414 §3.2).
func decodeObject(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errors.New("not a JSON object")
	}
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		// encoding/json matches names without regard to case, so
		// "issuer" and "Issuer" are duplicates too.
		name, _ := tok.(string)
		if seen[strings.ToLower(name)] {
			return fmt.Errorf("duplicate member %q", name)
		}
		seen[strings.ToLower(name)] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return err
		}
	}
	// Unmarshal refuses data after the object.
	return json.Unmarshal(data, v)
}
