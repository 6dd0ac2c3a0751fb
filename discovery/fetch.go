package discovery

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pullmail/pullmail/errs"
)

// MaxBody is the most bytes of a response body that discovery reads.
const MaxBody = 64 << 10

// nonPublic are ranges refused as targets, besides those that netip.Addr
// classifies (loopback, RFC 1918 and ULA, link-local, multicast,
// unspecified).
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),          // "this network" (RFC 791)
	netip.MustParsePrefix("100.64.0.0/10"),      // CGNAT (RFC 6598)
	netip.MustParsePrefix("192.0.0.0/24"),       // IETF protocol assignments (RFC 6890)
	netip.MustParsePrefix("198.18.0.0/15"),      // benchmarking (RFC 2544)
	netip.MustParsePrefix("240.0.0.0/4"),        // reserved, and the broadcast address
	netip.MustParsePrefix("fec0::/10"),          // site-local (deprecated, RFC 3879)
	netip.MustParsePrefix("64:ff9b:1::/48"),     // local-use NAT64 (RFC 8215)
	netip.MustParsePrefix("2001:db8::/32"),      // documentation (RFC 3849)
	netip.MustParsePrefix("::ffff:0:0:0/96"),    // IPv4-translated (RFC 2765)
	netip.MustParsePrefix("100::/64"),           // discard-only (RFC 6666)
	netip.MustParsePrefix("2002::/16"),          // 6to4, which may embed a private IPv4 address
	netip.MustParsePrefix("2001::/32"),          // Teredo, likewise
	netip.MustParsePrefix("169.254.169.254/32"), // cloud metadata (also link-local: named for clarity)
}

// IsPrivate reports whether addr is one that discovery refuses to connect
// to unless Config.AllowPrivate: loopback, private (RFC 1918, ULA),
// link-local (including 169.254.169.254), unspecified, multicast, and a
// few special-purpose ranges.
func IsPrivate(addr netip.Addr) bool {
	addr = addr.Unmap()
	if addr.IsLoopback() || addr.IsPrivate() || addr.IsLinkLocalUnicast() || addr.IsLinkLocalMulticast() ||
		addr.IsInterfaceLocalMulticast() || addr.IsMulticast() || addr.IsUnspecified() || !addr.IsValid() {
		return true
	}
	for _, p := range nonPublic {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// privateAddrError is what the dialer's Control returns for a refused
// address.
type privateAddrError struct{ addr string }

func (e *privateAddrError) Error() string { return "refusing to connect to private address " + e.addr }

func privateTarget(host string, addr netip.Addr) error {
	return errs.E(errs.Invalid, "private_target",
		"%s resolves to %s, a loopback, private or link-local address", host, addr)
}

// newHTTPClient returns the client that every fetch goes through: verified
// TLS, no proxy, no automatic redirect, and a dialer that checks the
// address it actually connects to.
func newHTTPClient(cfg Config) *http.Client {
	d := &net.Dialer{
		Resolver: cfg.Resolver,
		Timeout:  cfg.Timeout,
		Control: func(network, address string, _ syscall.RawConn) error {
			if cfg.AllowPrivate {
				return nil
			}
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("dialing %s: %w", address, err)
			}
			if IsPrivate(ap.Addr()) {
				return &privateAddrError{address}
			}
			return nil
		},
	}
	tr := &http.Transport{
		Proxy:       nil, // never through a proxy from the environment
		DialContext: d.DialContext,
		TLSClientConfig: &tls.Config{
			RootCAs:    cfg.RootCAs,
			MinVersion: tls.VersionTLS12,
		},
		ForceAttemptHTTP2:      true,
		TLSHandshakeTimeout:    cfg.Timeout,
		ResponseHeaderTimeout:  cfg.Timeout,
		MaxResponseHeaderBytes: MaxBody,
		MaxIdleConns:           100,
		MaxIdleConnsPerHost:    2,
		IdleConnTimeout:        90 * time.Second,
	}
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // redirects are handled by the caller
		},
	}
}

// checkHost resolves host and refuses it when any of its addresses is
// private (unless AllowPrivate). The dialer checks again what it dials:
// this is for a clear error before any connection.
func (c *Client) checkHost(ctx context.Context, host string) error {
	if c.cfg.AllowPrivate {
		return nil
	}
	if addr, err := netip.ParseAddr(host); err == nil {
		if IsPrivate(addr) {
			return privateTarget(host, addr)
		}
		return nil
	}
	addrs, err := c.resolver().LookupNetIP(ctx, "ip", host)
	if err != nil {
		return errs.Wrap(err, errs.Temporary, "dns_failed", "cannot resolve "+host)
	}
	for _, a := range addrs {
		if IsPrivate(a) {
			return privateTarget(host, a)
		}
	}
	return nil
}

// response is a fetched document, or a redirect.
type response struct {
	body     []byte
	maxAge   time.Duration // -1 when the response has none
	location *url.URL      // set for a redirect, resolved against the request URL
}

// get fetches u. A redirect is returned as such, never followed. badCode is
// the error code for a definitive refusal (a 4xx answer).
func (c *Client) get(ctx context.Context, u *url.URL, badCode string) (response, error) {
	if u.Scheme != "https" {
		return response{}, errs.E(errs.Invalid, badCode, "refusing to fetch %s: not https", u.Redacted())
	}
	if err := c.checkHost(ctx, u.Hostname()); err != nil {
		return response{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return response{}, errs.Wrap(err, errs.Invalid, badCode, "bad URL "+u.Redacted())
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	resp, err := c.http.Do(req)
	if err != nil {
		var pe *privateAddrError
		if errors.As(err, &pe) {
			return response{}, errs.Wrap(err, errs.Invalid, "private_target", u.Host+" resolves to a loopback, private or link-local address")
		}
		return response{}, errs.Wrap(err, errs.Temporary, "fetch_failed", "cannot fetch "+u.Redacted())
	}
	defer resp.Body.Close()
	r := response{maxAge: maxAge(resp.Header)}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		loc, err := resp.Location()
		if err != nil {
			return response{}, errs.Wrap(err, errs.Invalid, "bad_redirect", u.Redacted()+" redirects without a valid Location")
		}
		r.location = loc
		return r, nil
	default:
		kind := errs.Invalid
		code := badCode
		if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout {
			kind, code = errs.Temporary, "fetch_failed"
		}
		return response{}, errs.E(kind, code, "%s answered %s", u.Redacted(), resp.Status)
	}
	if resp.ContentLength > MaxBody {
		return response{}, errs.E(errs.TooLarge, "response_too_large", "%s: %d bytes, more than %d", u.Redacted(), resp.ContentLength, MaxBody)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBody+1))
	if err != nil {
		return response{}, errs.Wrap(err, errs.Temporary, "fetch_failed", "reading "+u.Redacted())
	}
	if len(body) > MaxBody {
		return response{}, errs.E(errs.TooLarge, "response_too_large", "%s: more than %d bytes", u.Redacted(), MaxBody)
	}
	r.body = body
	return r, nil
}

// maxAge returns the Cache-Control max-age of a response, -1 without one.
// no-store and no-cache are deliberately ignored (package doc).
func maxAge(h http.Header) time.Duration {
	for _, v := range h.Values("Cache-Control") {
		for d := range strings.SplitSeq(v, ",") {
			name, val, ok := strings.Cut(strings.TrimSpace(d), "=")
			if !ok || !strings.EqualFold(name, "max-age") {
				continue
			}
			n, err := strconv.ParseUint(strings.Trim(val, `"`), 10, 32)
			if err != nil {
				continue
			}
			return time.Duration(n) * time.Second
		}
	}
	return -1
}

// fetchWellKnown fetches the well-known document wk (a path starting with
// "/.well-known/") of the service whose SRV target gives base, following
// the redirect service of seed 004 Note 1 once (package doc). It returns the
// document, the base URL that the document must name, and its max-age.
func (c *Client) fetchWellKnown(ctx context.Context, base, wk, badCode string) (body []byte, gotBase string, age time.Duration, err error) {
	u, err := url.Parse(base + wk)
	if err != nil {
		return nil, "", 0, errs.Wrap(err, errs.Invalid, badCode, "bad URL")
	}
	r, err := c.get(ctx, u, badCode)
	if err != nil {
		return nil, "", 0, err
	}
	if r.location == nil {
		return r.body, base, r.maxAge, nil
	}
	loc := r.location
	if loc.Scheme != "https" || loc.Host == "" || loc.User != nil || loc.RawQuery != "" || loc.ForceQuery || loc.Opaque != "" {
		return nil, "", 0, errs.E(errs.Invalid, "bad_redirect",
			"%s redirects to %s: only an https URL without query or user info is followed", u, loc.Redacted())
	}
	loc.Fragment, loc.RawFragment = "", ""
	loc.Host = strings.ToLower(loc.Host)
	newBase, docURL := mapRedirect(loc, wk)
	c.log.DebugContext(ctx, "discovery redirect", "from", u.String(), "base", newBase, "document", docURL.String())
	r, err = c.get(ctx, docURL, badCode)
	if err != nil {
		return nil, "", 0, err
	}
	if r.location != nil {
		return nil, "", 0, errs.E(errs.Invalid, "bad_redirect", "%s redirects again, to %s: only one redirect is followed", docURL, r.location.Redacted())
	}
	return r.body, newBase, r.maxAge, nil
}

// mapRedirect maps the Location of the redirect service to the service's
// base URL and the URL of its document wk (package doc).
func mapRedirect(loc *url.URL, wk string) (base string, doc *url.URL) {
	p := loc.Path
	var basePath string
	doc = loc
	switch {
	case strings.HasSuffix(p, wk):
		basePath = strings.TrimSuffix(p, wk)
	case strings.HasPrefix(p, wk+"/"):
		basePath = strings.TrimPrefix(p, wk)
	default:
		basePath = p
		doc = nil
	}
	b := url.URL{Scheme: "https", Host: loc.Host, Path: strings.TrimRight(basePath, "/")}
	base = b.String()
	if doc == nil {
		d := b
		d.Path += wk
		doc = &d
	}
	return base, doc
}

// sameOrigin parses raw as an https URL on base's host and port.
func sameOrigin(raw, base string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	b, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "https" {
		return nil, fmt.Errorf("%q is not an https URL", raw)
	}
	if u.User != nil || u.Fragment != "" {
		return nil, fmt.Errorf("%q has user info or a fragment", raw)
	}
	if !strings.EqualFold(hostPort(u), hostPort(b)) {
		return nil, fmt.Errorf("%q is not on %s", raw, b.Host)
	}
	return u, nil
}

// hostPort is u's host with its port, 443 when implicit.
func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "443"
	}
	return net.JoinHostPort(u.Hostname(), port)
}
