package discovery

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pullmail/pullmail/errs"
)

// MTA-STS (RFC 8461): an SMTP domain says, by a TXT record and a policy
// document served over HTTPS, that its mail exchangers take mail only over
// verified TLS. docs/PROTOCOL.md §13.10.1.

// STSMode is a policy's mode (RFC 8461 §5).
type STSMode string

const (
	STSEnforce STSMode = "enforce" // only the policy's MX, only over verified TLS
	STSTesting STSMode = "testing" // deliver as without a policy; report what enforce would refuse
	STSNone    STSMode = "none"    // the domain withdrew its policy
)

// Limits of RFC 8461.
const (
	// STSMaxPolicy is the largest policy document read (§3.3: 64 KB).
	STSMaxPolicy = 64 << 10
	// STSMaxAge is the longest max_age honoured (§3.2: 31557600 s, a year).
	STSMaxAge = 31557600 * time.Second
	// STSTimeout bounds the whole fetch of a policy (§3.3 recommends a
	// minute at most; the queue retries anyway).
	STSTimeout = time.Minute
	// STSRecheck is how often the TXT record of a domain whose policy is
	// cached is looked up again: a burst of deliveries makes one lookup.
	STSRecheck = time.Minute
)

// STSPolicy is a domain's MTA-STS policy as fetched.
type STSPolicy struct {
	Domain string        `json:"domain"`
	ID     string        `json:"id"` // the TXT record's id when it was fetched
	Mode   STSMode       `json:"mode"`
	MX     []string      `json:"mx"` // patterns, lower case: "mx.example.com" or "*.example.com"
	MaxAge time.Duration `json:"max_age"`
	// Fetched and Expires bound the cached policy: it is used until
	// Expires (Fetched + MaxAge) even if the TXT record disappears, so that
	// an attacker who removes the record (or blocks the lookup) cannot
	// downgrade a domain that has a policy (§5.1).
	Fetched time.Time `json:"fetched"`
	Expires time.Time `json:"expires"`
}

// MatchMX reports whether host (an MX host name) is permitted by one of the
// policy's mx patterns (§4.1): equal, or "*." followed by the name of its
// parent (a wildcard stands for exactly one leftmost label).
func (p *STSPolicy) MatchMX(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, pat := range p.MX {
		if rest, ok := strings.CutPrefix(pat, "*."); ok {
			if label, parent, ok := strings.Cut(host, "."); ok && label != "" && parent == rest {
				return true
			}
			continue
		}
		if host == pat {
			return true
		}
	}
	return false
}

// ParseSTSRecord parses the TXT records of _mta-sts.DOMAIN (§3.1) and
// returns the policy id. Records that do not start with "v=STSv1" are
// ignored; none is errs NotFound (no_sts_record); more than one, or one
// without a valid id, is errs Invalid (bad_sts_record): the domain is then
// treated as having no policy, as §3.1 says.
func ParseSTSRecord(txts []string) (string, error) {
	var recs []string
	for _, t := range txts {
		if t == "v=STSv1" || strings.HasPrefix(t, "v=STSv1;") {
			recs = append(recs, t)
		}
	}
	switch len(recs) {
	case 0:
		return "", errs.E(errs.NotFound, "no_sts_record", "no v=STSv1 TXT record")
	case 1:
	default:
		return "", errs.E(errs.Invalid, "bad_sts_record", "%d v=STSv1 TXT records, one allowed", len(recs))
	}
	id := ""
	for i, f := range strings.Split(recs[0], ";") {
		f = strings.Trim(f, " \t")
		if i == 0 || f == "" {
			continue
		}
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return "", errs.E(errs.Invalid, "bad_sts_record", "field %q is not key=value", f)
		}
		if k == "id" && id == "" {
			id = v
		}
	}
	if id == "" || len(id) > 32 || !alnum(id) {
		return "", errs.E(errs.Invalid, "bad_sts_record", "the record's id %q is not 1 to 32 letters and digits", id)
	}
	return id, nil
}

func alnum(s string) bool {
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// ParseSTSPolicy parses a policy document (§3.2): "key: value" lines ended
// by LF or CRLF; version STSv1, mode, max_age and (but for mode none) at
// least one mx are required. Unknown keys are ignored; of a repeated key
// but mx, the first counts. Errors are errs Invalid (bad_sts_policy).
func ParseSTSPolicy(b []byte) (STSPolicy, error) {
	var p STSPolicy
	if len(b) > STSMaxPolicy {
		return p, errs.E(errs.Invalid, "bad_sts_policy", "the policy is over %d bytes", STSMaxPolicy)
	}
	seen := map[string]bool{}
	version := ""
	age := ""
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSuffix(line, "\r")
		line = strings.TrimRight(line, " \t")
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return p, errs.E(errs.Invalid, "bad_sts_policy", "line %d is not key: value", i+1)
		}
		v = strings.Trim(v, " \t")
		if k == "mx" {
			pat, err := stsPattern(v)
			if err != nil {
				return p, err
			}
			p.MX = append(p.MX, pat)
			continue
		}
		if seen[k] {
			continue
		}
		seen[k] = true
		switch k {
		case "version":
			version = v
		case "mode":
			p.Mode = STSMode(v)
		case "max_age":
			age = v
		}
	}
	if version != "STSv1" {
		return p, errs.E(errs.Invalid, "bad_sts_policy", "version %q, want STSv1", version)
	}
	switch p.Mode {
	case STSEnforce, STSTesting:
		if len(p.MX) == 0 {
			return p, errs.E(errs.Invalid, "bad_sts_policy", "mode %s without mx", p.Mode)
		}
	case STSNone:
	default:
		return p, errs.E(errs.Invalid, "bad_sts_policy", "mode %q, want enforce, testing or none", p.Mode)
	}
	// max_age is 1 to 10 digits (§3.2); above a year counts as a year.
	n, err := strconv.ParseUint(age, 10, 64)
	if err != nil || len(age) > 10 {
		return p, errs.E(errs.Invalid, "bad_sts_policy", "max_age %q is not a number of seconds", age)
	}
	p.MaxAge = time.Duration(min(n, uint64(STSMaxAge/time.Second))) * time.Second
	return p, nil
}

// stsPattern checks an mx pattern: a host name, or "*." and one.
func stsPattern(v string) (string, error) {
	v = strings.ToLower(strings.TrimSuffix(v, "."))
	host := strings.TrimPrefix(v, "*.")
	if host == "" || len(host) > 253 {
		return "", errs.E(errs.Invalid, "bad_sts_policy", "mx %q is not a host name", v)
	}
	for _, l := range strings.Split(host, ".") {
		if l == "" || len(l) > 63 || strings.HasPrefix(l, "-") || strings.HasSuffix(l, "-") {
			return "", errs.E(errs.Invalid, "bad_sts_policy", "mx %q is not a host name", v)
		}
		for _, c := range []byte(l) {
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return "", errs.E(errs.Invalid, "bad_sts_policy", "mx %q is not a host name", v)
			}
		}
	}
	return v, nil
}

// STSConfig configures an STS.
type STSConfig struct {
	// Resolver looks up the TXT records (nil: the system's); the MTA's.
	Resolver *net.Resolver
	// RootCAs verify https://mta-sts.DOMAIN (nil: the system's): the
	// MTA's, which verify its mail exchangers too.
	RootCAs *x509.CertPool
	// AllowPrivate allows policy hosts on private addresses (tests, the
	// sandbox).
	AllowPrivate bool
	// Port is the port of the policy host: 443, but for tests.
	Port    int
	Timeout time.Duration    // the whole fetch (default STSTimeout)
	Clock   func() time.Time // default time.Now
	Log     *slog.Logger
}

// STS finds and caches SMTP domains' MTA-STS policies. It is safe for
// concurrent use.
//
// The cache is in memory, per node: a policy is a public document that
// each node can fetch for itself (one fetch per domain per max_age, or per
// id change), and sharing it through the metadata store would need a table
// of its own for no gain in correctness. What a restart loses is the
// protection of §5.1 against an attacker who, right after it, both removes
// the TXT record and intercepts the SMTP connection; the first delivery
// after a restart finds the policy again as long as the record stands.
type STS struct {
	cfg  STSConfig
	http *http.Client
	log  *slog.Logger

	mu       sync.Mutex
	policies map[string]*stsEntry
	inflight map[string]*stsCall
}

type stsEntry struct {
	p       STSPolicy
	checked time.Time // when the TXT record last said p.ID
}

type stsCall struct {
	done chan struct{}
	p    *STSPolicy
	err  error
}

// NewSTS returns an STS.
func NewSTS(cfg STSConfig) *STS {
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = STSTimeout
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	hc := newHTTPClient(Config{Resolver: cfg.Resolver, RootCAs: cfg.RootCAs, AllowPrivate: cfg.AllowPrivate,
		Timeout: cfg.Timeout})
	return &STS{cfg: cfg, http: hc, log: cfg.Log.With("component", "mta-sts"),
		policies: map[string]*stsEntry{}, inflight: map[string]*stsCall{}}
}

// Policy returns domain's policy in force (RFC 8461 §5.1), nil when it has
// none: the cached one while the TXT record's id is unchanged and its
// max_age runs; else the one fetched anew, when the record names a new id.
// A cached policy stands when the record cannot be looked up, is gone, or
// the new policy cannot be fetched; with no cached policy, a record whose
// policy cannot be fetched is no policy, and the error says why (for the
// logs: the delivery goes on as without MTA-STS). A mode-none policy is
// returned as such.
func (s *STS) Policy(ctx context.Context, domain string) (*STSPolicy, error) {
	domain, err := normalizeDomain(domain)
	if err != nil {
		return nil, err
	}
	now := s.cfg.Clock()
	s.mu.Lock()
	if e, ok := s.policies[domain]; ok && now.Before(e.p.Expires) && now.Sub(e.checked) < STSRecheck {
		p := e.p
		s.mu.Unlock()
		return &p, nil
	}
	cl, ok := s.inflight[domain]
	if !ok {
		cl = &stsCall{done: make(chan struct{})}
		s.inflight[domain] = cl
		go func() {
			cl.p, cl.err = s.refresh(context.WithoutCancel(ctx), domain)
			s.mu.Lock()
			delete(s.inflight, domain)
			s.mu.Unlock()
			close(cl.done)
		}()
	}
	s.mu.Unlock()
	select {
	case <-cl.done:
		if cl.p == nil {
			return nil, cl.err
		}
		p := *cl.p
		return &p, cl.err
	case <-ctx.Done():
		return nil, errs.Wrap(ctx.Err(), errs.Temporary, "fetch_failed", "MTA-STS lookup interrupted")
	}
}

// refresh looks up the TXT record and fetches the policy if its id is new.
func (s *STS) refresh(ctx context.Context, domain string) (*STSPolicy, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	now := s.cfg.Clock()
	s.mu.Lock()
	var cached *STSPolicy
	if e, ok := s.policies[domain]; ok {
		if now.Before(e.p.Expires) {
			p := e.p
			cached = &p
		} else {
			delete(s.policies, domain)
		}
	}
	s.mu.Unlock()
	id, err := s.lookupID(ctx, domain)
	if err != nil {
		if cached != nil {
			// Gone or unreachable: the cached policy stands (§5.1).
			s.remember(domain, *cached, now)
			return cached, nil
		}
		if errs.KindOf(err) == errs.NotFound {
			return nil, nil
		}
		return nil, err
	}
	if cached != nil && cached.ID == id {
		s.remember(domain, *cached, now)
		return cached, nil
	}
	p, err := s.fetch(ctx, domain)
	if err != nil {
		s.log.Warn("fetching the MTA-STS policy", "domain", domain, "id", id, "err", err)
		if cached != nil {
			s.remember(domain, *cached, now)
			return cached, nil
		}
		return nil, err
	}
	p.Domain, p.ID, p.Fetched, p.Expires = domain, id, now, now.Add(p.MaxAge)
	s.log.Info("MTA-STS policy", "domain", domain, "id", id, "mode", p.Mode, "mx", p.MX, "max_age", p.MaxAge)
	s.remember(domain, p, now)
	return &p, nil
}

func (s *STS) remember(domain string, p STSPolicy, checked time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.policies) >= maxEntries {
		for k, e := range s.policies {
			if !checked.Before(e.p.Expires) || len(s.policies) >= maxEntries {
				delete(s.policies, k)
			}
		}
	}
	s.policies[domain] = &stsEntry{p: p, checked: checked}
}

// lookupID returns the id of _mta-sts.DOMAIN's record; errs NotFound when
// there is none (or it is malformed: no policy either way).
func (s *STS) lookupID(ctx context.Context, domain string) (string, error) {
	txts, err := s.cfg.Resolver.LookupTXT(ctx, "_mta-sts."+domain)
	var de *net.DNSError
	if err != nil && errors.As(err, &de) && de.IsNotFound {
		return "", errs.E(errs.NotFound, "no_sts_record", "no _mta-sts.%s record", domain)
	}
	if err != nil {
		return "", errs.Wrap(err, errs.Temporary, "dns_failed", "looking up TXT _mta-sts."+domain)
	}
	id, err := ParseSTSRecord(txts)
	if err != nil {
		if errs.KindOf(err) == errs.Invalid {
			s.log.Warn("ignoring a malformed MTA-STS record", "domain", domain, "err", err)
		}
		return "", errs.Wrap(err, errs.NotFound, "no_sts_record", "_mta-sts."+domain)
	}
	return id, nil
}

// fetch GETs https://mta-sts.DOMAIN/.well-known/mta-sts.txt (§3.3): TLS
// verified for that name, no redirect followed, 200 with text/plain only,
// at most STSMaxPolicy bytes.
func (s *STS) fetch(ctx context.Context, domain string) (STSPolicy, error) {
	host := "mta-sts." + domain
	if s.cfg.Port != 0 && s.cfg.Port != 443 {
		host = net.JoinHostPort(host, strconv.Itoa(s.cfg.Port))
	}
	u := "https://" + host + "/.well-known/mta-sts.txt"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return STSPolicy{}, errs.Wrap(err, errs.Invalid, "bad_domain", u)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return STSPolicy{}, errs.Wrap(err, errs.Temporary, "fetch_failed", "GET "+u)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// A 3xx is refused too: a policy must not be redirected (§3.3).
		return STSPolicy{}, errs.E(errs.Temporary, "fetch_failed", "GET %s: %s", u, resp.Status)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "text/plain" {
		return STSPolicy{}, errs.E(errs.Invalid, "bad_sts_policy", "GET %s: Content-Type %q, want text/plain", u, resp.Header.Get("Content-Type"))
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, STSMaxPolicy+1))
	if err != nil {
		return STSPolicy{}, errs.Wrap(err, errs.Temporary, "fetch_failed", "reading "+u)
	}
	if len(b) > STSMaxPolicy {
		return STSPolicy{}, errs.E(errs.TooLarge, "response_too_large", "%s is over %d bytes", u, STSMaxPolicy)
	}
	p, err := ParseSTSPolicy(b)
	if err != nil {
		return STSPolicy{}, fmt.Errorf("%s: %w", u, err)
	}
	return p, nil
}
