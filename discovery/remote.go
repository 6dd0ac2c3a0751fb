package discovery

import (
	"context"
	"strings"

	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/federation"
)

var _ federation.ChainKeys = (*Client)(nil)

// ClientKeys returns the domain and public keys of a remote MTA client:
// client_id "mta@DOMAIN" names its domain, and DOMAIN's mailbox metadata
// publishes the keys (seed 004 Note 2). It implements authz.Remote.
func (c *Client) ClientKeys(ctx context.Context, clientID string) (domain string, jwks []byte, err error) {
	d, ok := strings.CutPrefix(clientID, "mta@")
	if !ok {
		return "", nil, errs.E(errs.Invalid, "bad_client_id", "client_id %q is not mta@DOMAIN", clientID)
	}
	if n, err := normalizeDomain(d); err != nil || n != d {
		return "", nil, errs.E(errs.Invalid, "bad_client_id", "client_id %q is not mta@DOMAIN with a lower-case domain", clientID)
	}
	m, err := c.Mailbox(ctx, d)
	if err != nil {
		return "", nil, err
	}
	if m.MTAClientID != clientID { // ParseMailboxMetadata and Mailbox make this hold
		return "", nil, errs.E(errs.Invalid, "bad_client_id", "%s names MTA %q, not %q", d, m.MTAClientID, clientID)
	}
	return d, append([]byte(nil), m.MTAJWKS...), nil
}

// IssuerKeys returns the issuer and JWKS document of domain's authorization
// server. It implements authz.Remote.
func (c *Client) IssuerKeys(ctx context.Context, domain string) (issuer string, jwks []byte, err error) {
	a, err := c.Authority(ctx, domain)
	if err != nil {
		return "", nil, err
	}
	return a.Issuer, append([]byte(nil), a.Raw...), nil
}
