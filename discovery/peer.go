package discovery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/pullmail/pullmail/errs"
)

// PeerKind is how a domain takes mail.
type PeerKind string

const (
	PeerPullmail PeerKind = "pullmail" // pushes to its mailbox service (_federizer._rs._tcp SRV)
	PeerSMTP     PeerKind = "smtp"     // SMTP to its mail exchangers (MX, or the domain's own address)
)

// MailHost is one place to deliver to, in the order to try.
type MailHost struct {
	Host       string `json:"host"`           // lower case, no final dot
	Port       uint16 `json:"port,omitempty"` // the SRV port; 0 for SMTP (port 25)
	Preference uint16 `json:"preference"`     // MX preference or SRV priority
}

// Peer is what a domain's DNS says about how to deliver to it.
type Peer struct {
	Domain string     `json:"domain"`
	Kind   PeerKind   `json:"kind"`
	Hosts  []MailHost `json:"hosts"`
	// Why says, in one line, which records decided (for logs and pullmail
	// doctor).
	Why string `json:"why"`
}

// Peer finds how domain takes mail (docs/PROTOCOL.md §11.1.1): a
// _federizer._rs._tcp SRV record makes it a Pullmail peer; else its MX
// records make it an SMTP peer, in preference order (equal preferences in
// random order, as Go's resolver returns them); with no MX, its own address
// records do (the implicit MX of RFC 5321 §5.1). A null MX (RFC 7505)
// refuses: null_mx. Nothing at all: no_mail_host. Both are kind NotFound,
// final for a queue; a DNS failure is Temporary (dns_failed). Answers are
// cached like the other discoveries (Config.MaxTTL); failures are not.
func (c *Client) Peer(ctx context.Context, domain string) (Peer, error) {
	domain, err := normalizeDomain(domain)
	if err != nil {
		return Peer{}, err
	}
	now := c.now()
	c.mu.Lock()
	if e, ok := c.peers[domain]; ok && now.Before(e.expires) {
		c.mu.Unlock()
		return e.v, nil
	}
	c.mu.Unlock()
	v, err := c.share(ctx, "peer "+domain, func(ctx context.Context) (any, error) {
		p, err := c.lookupPeer(ctx, domain)
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		put(c.peers, domain, entry[Peer]{v: p, expires: c.now().Add(c.cfg.MaxTTL)}, c.now())
		c.mu.Unlock()
		return p, nil
	})
	if err != nil {
		return Peer{}, err
	}
	return v.(Peer), nil
}

func (c *Client) lookupPeer(ctx context.Context, domain string) (Peer, error) {
	recs, err := c.lookupSRV(ctx, ServiceRS, domain)
	switch {
	case err == nil:
		p := Peer{Domain: domain, Kind: PeerPullmail}
		for _, r := range recs {
			p.Hosts = append(p.Hosts, MailHost{Host: hostName(r.Target), Port: r.Port, Preference: r.Priority})
		}
		p.Why = fmt.Sprintf("SRV %s%s names %s:%d", ServiceRS, domain, p.Hosts[0].Host, p.Hosts[0].Port)
		return p, nil
	case errs.KindOf(err) != errs.NotFound:
		return Peer{}, err
	}
	// No Pullmail mailbox service (no record, or a "." target): SMTP.
	mxs, err := c.resolver().LookupMX(ctx, domain)
	var de *net.DNSError
	notFound := err != nil && errors.As(err, &de) && de.IsNotFound
	if err != nil && !notFound && len(mxs) == 0 {
		return Peer{}, errs.Wrap(err, errs.Temporary, "dns_failed", "looking up MX "+domain)
	}
	if len(mxs) == 1 && mxs[0].Host == "." {
		return Peer{}, errs.E(errs.NotFound, "null_mx", "%s publishes a null MX (RFC 7505): it accepts no mail", domain)
	}
	p := Peer{Domain: domain, Kind: PeerSMTP}
	for _, mx := range mxs {
		if mx.Host == "." {
			continue // a null MX beside others is a misconfiguration; the others stand
		}
		p.Hosts = append(p.Hosts, MailHost{Host: hostName(mx.Host), Preference: mx.Pref})
	}
	if len(p.Hosts) > 0 {
		p.Why = fmt.Sprintf("no SRV %s%s; MX %s (preference %d)", ServiceRS, domain, p.Hosts[0].Host, p.Hosts[0].Preference)
		if len(p.Hosts) > 1 {
			p.Why += fmt.Sprintf(" and %d more", len(p.Hosts)-1)
		}
		return p, nil
	}
	// No MX: the domain's own address records, if any (RFC 5321 §5.1).
	addrs, err := c.resolver().LookupHost(ctx, domain)
	if err != nil {
		if errors.As(err, &de) && de.IsNotFound {
			return Peer{}, errs.E(errs.NotFound, "no_mail_host", "%s has no SRV %s%s record, no MX and no address: it takes no mail", domain, ServiceRS, domain)
		}
		return Peer{}, errs.Wrap(err, errs.Temporary, "dns_failed", "looking up the address of "+domain)
	}
	if len(addrs) == 0 {
		return Peer{}, errs.E(errs.NotFound, "no_mail_host", "%s has no SRV %s%s record, no MX and no address: it takes no mail", domain, ServiceRS, domain)
	}
	p.Hosts = []MailHost{{Host: domain}}
	p.Why = fmt.Sprintf("no SRV %s%s and no MX; the domain's own address %s (RFC 5321 §5.1)", ServiceRS, domain, addrs[0])
	return p, nil
}

func hostName(h string) string { return strings.ToLower(strings.TrimSuffix(h, ".")) }
