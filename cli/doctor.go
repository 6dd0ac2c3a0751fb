package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/pullmail/pullmail/discovery"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/server"
	"github.com/pullmail/pullmail/tlsca"
)

func init() {
	register(&command{
		name: "doctor", args: "[DOMAIN] [--dns ADDR] [--ca FILE] [--allow-private] [--data DIR [--meta URL] [--resources URL]] [--json]",
		short: "check a domain's DNS records, TLS, metadata and keys from outside",
		long: `Checks DOMAIN as another Pullmail domain would see it (docs/PROTOCOL.md §11.1), step by
step, and says in plain words what is wrong and how to fix it:

  1. the SRV records _federizer._as._tcp.DOMAIN and _federizer._rs._tcp.DOMAIN (a missing
     one: the exact record line to add to the zone);
  2. TLS to every SRV target: its addresses, a connection, a certificate that chains to a
     trusted root and names the target, and the node that answers there (its /healthz; a
     domain run on several nodes publishes each as a target of equal priority);
  3. the authorization server's RFC 8414 metadata (reached through at most one redirect;
     its issuer must equal the base URL it was fetched from);
  4. the authorization server's JWKS (at least one usable public signing key);
  5. the mailbox metadata document (domain, url, endpoints, mta_client_id mta@DOMAIN),
  6. the MTA's keys in it, and
  7. how other domains deliver to DOMAIN: Pullmail push (the SRV record) or SMTP (its MX
     records in preference order, else its own address; a null MX refuses all mail);
  8. for an SMTP domain, its MTA-STS policy (RFC 8461: the _mta-sts.DOMAIN TXT record and
     https://mta-sts.DOMAIN/.well-known/mta-sts.txt): none, or its mode, mx patterns and
     max_age, and whether every MX matches them.

A check whose prerequisite failed is skipped (and counts as failed). Exit status 0 when every
check passes, 1 otherwise. --json prints an array of {"check", "ok", "detail", "fix"}.

With --data DIR (and the --meta and --resources, or --config FILE, that serve runs with), a
first check opens the domain's stores and says which backends are in use, passwords left
out; DOMAIN may then be left out to check only that.

For the local sandbox: pullmail doctor b.test --dns <dns of dev.json> --ca DIR/ca.pem --allow-private`,
		flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			dns := fs.String("dns", "", "DNS server `ADDR`ess (host:port) to ask instead of the system's resolver")
			ca := fs.String("ca", "", "PEM `FILE` of an extra CA to trust besides the system's roots")
			allowPrivate := fs.Bool("allow-private", false, "accept targets on loopback and private addresses (local tests)")
			asJSON := fs.Bool("json", false, "print the checks as a JSON array")
			data := addDataFlags(fs)
			return func(ctx context.Context, env *Env, args []string) error {
				local := *data.dir != "" || *data.file != ""
				if len(args) > 1 || len(args) == 0 && !local {
					return usagef("doctor takes one DOMAIN (or --data DIR alone)")
				}
				var checks []doctorCheck
				if local {
					checks = append(checks, backendsCheck(ctx, data))
				}
				domain := ""
				if len(args) == 1 {
					domain = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(args[0]), "."))
					if domain == "" || strings.ContainsAny(domain, " /:@") {
						return usagef("%q is not a domain name", args[0])
					}
				}
				var roots *x509.CertPool
				if *ca != "" {
					pool, err := tlsca.LoadPool(*ca)
					if err != nil {
						return fmt.Errorf("--ca: %w", err)
					}
					roots = pool
				}
				if domain != "" {
					checks = append(checks, runDoctor(ctx, doctorConfig{Domain: domain, DNS: *dns, RootCAs: roots, AllowPrivate: *allowPrivate})...)
				} else {
					domain = *data.dir
				}
				if *asJSON {
					b, _ := json.MarshalIndent(checks, "", "  ")
					fmt.Fprintf(env.Stdout, "%s\n", b)
				} else {
					printChecks(env.Stdout, checks)
				}
				failed := 0
				for _, c := range checks {
					if !c.OK {
						failed++
					}
				}
				if failed > 0 {
					return fmt.Errorf("%s: %d of %d checks failed", domain, failed, len(checks))
				}
				return nil
			}
		},
	})
}

// backendsCheck opens the data directory's stores as serve would (beside
// a running server) and says which they are: the URLs without passwords
// (server.Redact), whether the resources are encrypted, and the domain the
// metadata is bound to.
func backendsCheck(ctx context.Context, data *dataFlags) doctorCheck {
	c := doctorCheck{Check: "backends"}
	fix := "check --data, --meta and --resources (or the config file's keys of those names), and for s3:// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
	if err := data.resolve(); err != nil {
		c.Detail, c.Fix = err.Error(), fix
		return c
	}
	if mu, _ := server.ParseMetaURL(*data.dir, *data.meta); mu.Scheme == server.SchemeSQLite {
		// Looking must not make a new, empty database.
		if _, err := os.Stat(mu.Path); err != nil {
			c.Detail, c.Fix = fmt.Sprintf("no metadata store at %s: %v", mu, err), fix
			return c
		}
	}
	b, err := data.open(ctx)
	if err != nil {
		c.Detail, c.Fix = err.Error(), fix
		return c
	}
	defer b.Close()
	c.Detail = b.Describe()
	var bound string
	err = b.Meta.View(ctx, func(r meta.Reader) error {
		var err error
		bound, err = r.Setting(ctx, server.SettingDomain)
		return err
	})
	switch {
	case errors.Is(err, meta.ErrNotFound):
		c.Detail += "; no domain bound yet"
	case err != nil:
		c.Detail += "; reading the domain: " + err.Error()
		c.Fix = "the metadata store opened but cannot be read: see its server's log"
		return c
	default:
		c.Detail += "; domain " + bound
	}
	c.OK = true
	return c
}

// doctorCheck is one step of 'pullmail doctor', as --json prints it.
type doctorCheck struct {
	Check  string `json:"check"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
	Fix    string `json:"fix"`
}

type doctorConfig struct {
	Domain       string
	DNS          string         // "" for the system's resolver
	RootCAs      *x509.CertPool // nil for the system's roots
	AllowPrivate bool
	Timeout      time.Duration // per network step; default 10s
	stsPort      int           // the MTA-STS policy host's port (tests; 0: 443)
}

// runDoctor runs every check of domain in order. It never fails as a
// whole: every problem is a failed check.
func runDoctor(ctx context.Context, cfg doctorConfig) []doctorCheck {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	d := cfg.Domain
	res := discovery.NewResolver(cfg.DNS)
	var out []doctorCheck
	add := func(c doctorCheck) { out = append(out, c) }
	skip := func(name, why string) { add(doctorCheck{Check: name, Detail: "skipped: " + why}) }

	// 1. The two SRV records.
	type service struct {
		prefix, what, wk string
		recs             []*net.SRV // usable ones, when ok
		ok, missing      bool
	}
	svcs := []*service{
		{prefix: discovery.ServiceAS, what: "authorization server", wk: discovery.PathASMetadata},
		{prefix: discovery.ServiceRS, what: "mailbox service", wk: discovery.PathMailbox},
	}
	for _, s := range svcs {
		var c doctorCheck
		c, s.recs, s.missing = srvCheck(ctx, res, cfg, s.prefix, s.what, s.wk)
		s.ok = c.OK
		add(c)
	}
	// A missing record's fix names its sibling's target, most likely the
	// same server (Pullmail serves both services).
	for i, s := range svcs {
		if sib := svcs[1-i]; s.missing && sib.ok {
			out[i].Fix = missingSRVFix(d, s.prefix, s.what, s.wk, sib.recs[0].Port, strings.TrimSuffix(sib.recs[0].Target, "."))
		}
	}

	// 2. TLS to every target.
	tlsOK := map[string]bool{}
	var targets []string
	for _, s := range svcs {
		for _, r := range s.recs {
			t := net.JoinHostPort(strings.ToLower(strings.TrimSuffix(r.Target, ".")), strconv.Itoa(int(r.Port)))
			if !slices.Contains(targets, t) {
				targets = append(targets, t)
			}
		}
	}
	for _, t := range targets {
		c := tlsCheck(ctx, res, cfg, t)
		tlsOK[t] = c.OK
		add(c)
	}
	reachable := func(s *service) (bool, string) {
		if !s.ok {
			return false, "no usable SRV record " + s.prefix + d
		}
		for _, r := range s.recs {
			if tlsOK[net.JoinHostPort(strings.ToLower(strings.TrimSuffix(r.Target, ".")), strconv.Itoa(int(r.Port)))] {
				return true, ""
			}
		}
		return false, "no SRV target of " + s.prefix + d + " passed the TLS check"
	}

	dc := discovery.New(discovery.Config{Resolver: res, RootCAs: cfg.RootCAs, AllowPrivate: cfg.AllowPrivate, Timeout: cfg.Timeout})
	defer dc.Close()

	// 3, 4. The AS metadata and its JWKS.
	if ok, why := reachable(svcs[0]); !ok {
		skip("AS metadata", why)
		skip("AS JWKS", why)
	} else {
		a, err := dc.Authority(ctx, d)
		switch {
		case err == nil:
			add(doctorCheck{Check: "AS metadata", OK: true,
				Detail: fmt.Sprintf("issuer %s (equal to the base URL reached), token_endpoint %s, jwks_uri %s", a.Issuer, a.TokenEndpoint, a.JWKSURI)})
			add(keysCheck("AS JWKS", a.JWKSURI, a.JWKS.Keys))
		case errs.CodeOf(err) == "invalid_jwks":
			add(doctorCheck{Check: "AS metadata", OK: true, Detail: "the metadata document is valid"})
			add(doctorCheck{Check: "AS JWKS", Detail: oneLine(err), Fix: doctorFix(d, err)})
		default:
			add(doctorCheck{Check: "AS metadata", Detail: oneLine(err), Fix: doctorFix(d, err)})
			skip("AS JWKS", "the AS metadata failed")
		}
	}

	// 5, 6. The mailbox metadata and the MTA's keys.
	if ok, why := reachable(svcs[1]); !ok {
		skip("mailbox metadata", why)
		skip("MTA keys", why)
	} else {
		m, err := dc.Mailbox(ctx, d)
		if err != nil {
			add(doctorCheck{Check: "mailbox metadata", Detail: oneLine(err), Fix: doctorFix(d, err)})
			skip("MTA keys", "the mailbox metadata failed")
		} else {
			c := doctorCheck{Check: "mailbox metadata", OK: true,
				Detail: fmt.Sprintf("url %s, inbound_endpoint %s, fetch_endpoint %s, mta_client_id %s", m.URL, m.InboundEndpoint, m.FetchEndpoint, m.MTAClientID)}
			if n := nodeAt(ctx, res, cfg, m.URL); n != "" {
				c.Detail += ", served by node " + n
			}
			add(c)
			add(keysCheck("MTA keys", "mta_jwks of "+m.MTAClientID, m.MTAKeys.Keys))
		}
	}

	// 7. How mail reaches the domain (PROTOCOL §11.1.1): a Pullmail push,
	// or SMTP to its MX. Either passes; a domain that takes no mail fails.
	pc, peer := peerCheck(ctx, res, d)
	add(pc)
	// 8. An SMTP domain's MTA-STS policy (PROTOCOL §13.10.1).
	if peer.Kind == discovery.PeerSMTP {
		add(stsCheck(ctx, res, cfg, peer))
	}
	return out
}

// stsCheck fetches peer's MTA-STS policy as the MTA would, and says
// whether its MX hosts match it.
func stsCheck(ctx context.Context, res *net.Resolver, cfg doctorConfig, peer discovery.Peer) doctorCheck {
	sts := discovery.NewSTS(discovery.STSConfig{Resolver: res, RootCAs: cfg.RootCAs, AllowPrivate: cfg.AllowPrivate,
		Port: cfg.stsPort, Timeout: cfg.Timeout})
	d := peer.Domain
	pol, err := sts.Policy(ctx, d)
	switch {
	case err != nil:
		return doctorCheck{Check: "MTA-STS", Detail: "_mta-sts." + d + " names a policy that cannot be had: " + oneLine(err),
			Fix: "serve the policy as text/plain at https://mta-sts." + d + "/.well-known/mta-sts.txt with a certificate for mta-sts." + d +
				" (RFC 8461 §3.3), or remove the TXT record; until then senders deliver as without a policy"}
	case pol == nil:
		return doctorCheck{Check: "MTA-STS", OK: true, Detail: "no _mta-sts." + d + " policy: mail to it uses opportunistic TLS"}
	}
	c := doctorCheck{Check: "MTA-STS", OK: true, Detail: fmt.Sprintf("mode %s, mx %s, max_age %s, id %s", pol.Mode,
		strings.Join(pol.MX, " "), pol.MaxAge, pol.ID)}
	if pol.Mode == discovery.STSNone {
		return c
	}
	var bad []string
	for _, h := range peer.Hosts {
		if !pol.MatchMX(h.Host) {
			bad = append(bad, h.Host)
		}
	}
	if len(bad) > 0 {
		c.OK = pol.Mode != discovery.STSEnforce
		c.Detail += "; MX " + strings.Join(bad, ", ") + " not in the policy"
		if pol.Mode == discovery.STSEnforce {
			c.Detail += ": senders that enforce it do not deliver there"
		}
		c.Fix = "add an mx line for " + strings.Join(bad, ", ") + " to the policy (and change the TXT record's id), or drop the MX"
	}
	return c
}

// peerCheck says whether other domains deliver to d by Pullmail push or by
// SMTP, and from which records.
func peerCheck(ctx context.Context, res *net.Resolver, d string) (doctorCheck, discovery.Peer) {
	c := discovery.New(discovery.Config{Resolver: res})
	defer c.Close()
	p, err := c.Peer(ctx, d)
	if err != nil {
		fix := "check the DNS server (--dns) and try again"
		switch errs.CodeOf(err) {
		case "null_mx":
			fix = "remove the null MX record (\"0 .\") if " + d + " should receive mail"
		case "no_mail_host":
			fix = "publish the _federizer._rs._tcp SRV record above to receive Pullmail pushes, or an MX record to receive SMTP"
		}
		return doctorCheck{Check: "delivery", Detail: oneLine(err), Fix: fix}, discovery.Peer{}
	}
	var hosts []string
	for _, h := range p.Hosts {
		hosts = append(hosts, h.Host)
	}
	return doctorCheck{Check: "delivery", OK: true,
		Detail: fmt.Sprintf("%s peer (%s): %s", p.Kind, strings.Join(hosts, ", "), p.Why)}, p
}

// usable drops the "." targets of SRV records.
func usable(recs []*net.SRV) []*net.SRV {
	var out []*net.SRV
	for _, r := range recs {
		if r.Target != "." {
			out = append(out, r)
		}
	}
	return out
}

func lookupSRV(ctx context.Context, res *net.Resolver, cfg doctorConfig, name string) (string, []*net.SRV, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	return res.LookupSRV(ctx, "", "", name)
}

// srvCheck looks up the SRV record prefix+domain; it returns the usable
// records, and whether there is no record at all.
func srvCheck(ctx context.Context, res *net.Resolver, cfg doctorConfig, prefix, what, wk string) (doctorCheck, []*net.SRV, bool) {
	d := cfg.Domain
	name := prefix + d
	c := doctorCheck{Check: "SRV " + name}
	_, recs, err := lookupSRV(ctx, res, cfg, name)
	var de *net.DNSError
	switch {
	case err != nil && errors.As(err, &de) && de.IsNotFound, err == nil && len(recs) == 0:
		c.Detail = fmt.Sprintf("no SRV record %s: other domains cannot find %s's %s, so it does not take part", name, d, what)
		c.Fix = missingSRVFix(d, prefix, what, wk, 443, d)
		return c, nil, true
	case err != nil && len(recs) == 0:
		c.Detail = fmt.Sprintf("looking up SRV %s failed: %v", name, err)
		c.Fix = fmt.Sprintf("make %s's name servers answer (try: dig SRV %s)", d, name)
		if cfg.DNS != "" {
			c.Fix += fmt.Sprintf("; is a DNS server listening at --dns %s?", cfg.DNS)
		}
		return c, nil, false
	}
	if len(usable(recs)) == 0 {
		c.Detail = fmt.Sprintf("SRV %s has the target \".\": the domain says it runs no %s (RFC 2782)", name, what)
		c.Fix = "replace the record by one that names the host and port of the " + what + ":\n" +
			fmt.Sprintf("  %s. 3600 IN SRV 10 5 443 %s.", name, d)
		return c, nil, false
	}
	var lines []string
	for _, r := range recs {
		lines = append(lines, fmt.Sprintf("%d %d %d %s", r.Priority, r.Weight, r.Port, r.Target))
	}
	c.OK = true
	c.Detail = strings.Join(lines, "; ")
	if err != nil {
		c.Detail += fmt.Sprintf(" (some records were malformed and ignored: %v)", err)
	}
	return c, usable(recs), false
}

// missingSRVFix is the record to add for a missing SRV record.
func missingSRVFix(d, prefix, what, wk string, port uint16, target string) string {
	return fmt.Sprintf("add this record to %s's DNS zone:\n  %s%s. 3600 IN SRV 10 5 %d %s.\n"+
		"(with the host and port where the %s answers https://HOST:PORT%s, directly or with one redirect)",
		d, prefix, d, port, target, what, wk)
}

// tlsCheck resolves target (host:port), refuses private addresses unless
// allowed, and makes a verified TLS handshake with it.
func tlsCheck(ctx context.Context, res *net.Resolver, cfg doctorConfig, target string) doctorCheck {
	host, _, _ := net.SplitHostPort(target)
	c := doctorCheck{Check: "TLS " + target}
	lctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	addrs, err := res.LookupNetIP(lctx, "ip", host)
	cancel()
	if err != nil || len(addrs) == 0 {
		c.Detail = fmt.Sprintf("the SRV target %s has no address: %v", host, err)
		c.Fix = fmt.Sprintf("add an A (or AAAA) record for %s, or correct the SRV record's target", host)
		return c
	}
	if !cfg.AllowPrivate {
		for _, a := range addrs {
			if discovery.IsPrivate(a) {
				c.Detail = fmt.Sprintf("%s resolves to %s, a loopback, private or link-local address: other domains refuse it", host, a)
				c.Fix = fmt.Sprintf("make %s resolve to public addresses only (for a local test, pass --allow-private)", host)
				return c
			}
		}
	}
	dialer := &tls.Dialer{
		NetDialer: &net.Dialer{Resolver: res, Timeout: cfg.Timeout, Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err == nil && !cfg.AllowPrivate && discovery.IsPrivate(ap.Addr()) {
				return fmt.Errorf("refusing private address %s", address)
			}
			return err
		}},
		Config: &tls.Config{RootCAs: cfg.RootCAs, ServerName: host, MinVersion: tls.VersionTLS12},
	}
	dctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	conn, err := dialer.DialContext(dctx, "tcp", target)
	if err != nil {
		c.Detail = fmt.Sprintf("TLS to %s failed: %v", target, err)
		var (
			unknown  x509.UnknownAuthorityError
			hostname x509.HostnameError
			invalid  x509.CertificateInvalidError
			opErr    *net.OpError
		)
		switch {
		case errors.As(err, &unknown):
			c.Fix = fmt.Sprintf("serve a certificate for %s from a CA that other domains trust (a public CA, e.g. with --acme); "+
				"to check a private CA pass --ca FILE", host)
		case errors.As(err, &hostname):
			c.Fix = fmt.Sprintf("serve a certificate that names %s (a SAN), the SRV record's target: TLS is verified for that name", host)
		case errors.As(err, &invalid):
			c.Fix = "renew the certificate (it has expired or is not valid yet) or correct the server's clock"
		case errors.As(err, &opErr) && opErr.Op == "dial":
			c.Fix = fmt.Sprintf("nothing answers on %s: start the server there, open the firewall, or correct the port in the SRV record", target)
		default:
			c.Fix = fmt.Sprintf("make %s serve HTTPS (TLS 1.2 or later) with a valid certificate for %s", target, host)
		}
		return c
	}
	defer conn.Close()
	st := conn.(*tls.Conn).ConnectionState()
	leaf := st.PeerCertificates[0]
	c.OK = true
	c.Detail = fmt.Sprintf("%s (%s), certificate for %s issued by %q, valid until %s", tls.VersionName(st.Version),
		joinAddrs(addrs), strings.Join(leaf.DNSNames, ", "), leaf.Issuer.CommonName, leaf.NotAfter.UTC().Format(time.DateOnly))
	if left := time.Until(leaf.NotAfter); left < 14*24*time.Hour {
		c.Detail += fmt.Sprintf(" (expires in %s: renew it soon)", left.Round(time.Hour))
	}
	if n := nodeAt(ctx, res, cfg, "https://"+target); n != "" {
		c.Detail += ", node " + n
	}
	return c
}

// nodeAt asks the Pullmail server at base which of its domain's nodes
// answers (GET /healthz, docs/PROTOCOL.md §8.12), so that the checks of a
// domain run on several nodes say which node each SRV target reached. It
// returns "" when base does not say (a redirect service, another server):
// that is no failure.
func nodeAt(ctx context.Context, res *net.Resolver, cfg doctorConfig, base string) string {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	dialer := &net.Dialer{Resolver: res, Timeout: cfg.Timeout, Control: func(_, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err == nil && !cfg.AllowPrivate && discovery.IsPrivate(ap.Addr()) {
			return fmt.Errorf("refusing private address %s", address)
		}
		return err
	}}
	tr := &http.Transport{DialContext: dialer.DialContext, TLSClientConfig: &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12}}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/healthz", nil)
	if err != nil {
		return ""
	}
	resp, err := hc.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var h struct {
		Node string `json:"node"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 4<<10)).Decode(&h) != nil {
		return ""
	}
	return safe(strings.Join(strings.Fields(h.Node), " ")) // a remote's words, printed: no control characters
}

func joinAddrs(addrs []netip.Addr) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

// keysCheck reports a JWK Set's usable keys (discovery has parsed it with
// keys.ParseJWKS, which keeps the usable public signing keys only).
func keysCheck(name, where string, ks []jose.JSONWebKey) doctorCheck {
	c := doctorCheck{Check: name}
	if len(ks) == 0 {
		c.Detail = where + " holds no usable signing key"
		c.Fix = "publish at least one public EC P-256 (ES256) signing key, with a kid"
		return c
	}
	var ids []string
	for _, k := range ks {
		ids = append(ids, fmt.Sprintf("kid %s (%s)", k.KeyID, k.Algorithm))
	}
	c.OK = true
	c.Detail = fmt.Sprintf("%d usable key(s) at %s: %s", len(ks), where, strings.Join(ids, "; "))
	return c
}

// doctorFix says how to fix what a discovery error reports.
func doctorFix(d string, err error) string {
	switch errs.CodeOf(err) {
	case "no_srv_record":
		return "add the SRV record (see the SRV check above)"
	case "service_unavailable":
		return "replace the SRV record's \".\" target by the host that runs the service"
	case "dns_failed":
		return fmt.Sprintf("make %s's name servers answer SRV queries", d)
	case "fetch_failed":
		return "the server could not be reached or answered with a 5xx error: check that it runs and serves HTTPS there (see the TLS checks)"
	case "private_target":
		return "serve the domain on public addresses only (for a local test, pass --allow-private)"
	case "bad_redirect":
		return "the SRV target may answer with one redirect (301, 302, 303, 307 or 308) to an https URL without query or user info; " +
			"the document at the new place must be served directly, without a second redirect"
	case "issuer_mismatch":
		return "the metadata's issuer must be exactly the base URL it was fetched from (no trailing slash): " +
			"start the server with --public-url set to that URL, or make the SRV record (or its redirect) point at the issuer's URL"
	case "bad_metadata":
		return "serve RFC 8414 metadata whose token_endpoint and jwks_uri are https URLs on the issuer's own host and port"
	case "invalid_jwks":
		return "serve at jwks_uri, without a redirect, a JWK Set (RFC 7517) of public keys with at least one usable signing key (EC P-256, ES256)"
	case "bad_mailbox_metadata":
		return fmt.Sprintf("serve at %s a document whose url is exactly the base URL it was fetched from, whose endpoints are https "+
			"on that host and port, whose mta_client_id is mta@%s and whose mta_jwks holds the MTA's public keys (Pullmail's server does this itself)", discovery.PathMailbox, d)
	case "domain_mismatch":
		return fmt.Sprintf("the mailbox document names another domain: the SRV record of %s points at another domain's server", d)
	case "response_too_large":
		return fmt.Sprintf("the document must be at most %d bytes", discovery.MaxBody)
	case "bad_domain":
		return "give a domain name, such as example.com"
	}
	return "see the detail"
}

// printChecks prints the checks for a person.
func printChecks(w io.Writer, checks []doctorCheck) {
	failed := 0
	for _, c := range checks {
		mark := "ok  "
		if !c.OK {
			mark = "FAIL"
			if strings.HasPrefix(c.Detail, "skipped: ") {
				mark = "skip"
			}
			failed++
		}
		fmt.Fprintf(w, "%s  %s: %s\n", mark, c.Check, c.Detail)
		if c.Fix != "" {
			fmt.Fprintf(w, "      fix: %s\n", strings.ReplaceAll(c.Fix, "\n", "\n      "))
		}
	}
	if failed == 0 {
		fmt.Fprintf(w, "\nAll %d checks passed.\n", len(checks))
	} else {
		fmt.Fprintf(w, "\n%d of %d checks did not pass.\n", failed, len(checks))
	}
}
