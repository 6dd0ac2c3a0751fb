package discovery

import (
	"context"
	"testing"
	"time"

	"github.com/pullmail/pullmail/errs"
)

// TestPeer: how each DNS shape makes a domain a Pullmail or an SMTP peer,
// through the real DNS server of the tests.
func TestPeer(t *testing.T) {
	e := newEnv(t)
	d := e.dns
	d.AddSRV(ServiceRS+"pm.test", 10, 1, 8443, "rs.pm.test", 3600)
	d.AddMX("pm.test", 10, "mx.pm.test") // the SRV record wins
	d.AddSRV(ServiceRS+"dot.test", 0, 0, 0, ".", 3600)
	d.AddMX("dot.test", 5, "mx.dot.test")
	d.AddMX("mx.test", 20, "MX2.mx.test.")
	d.AddMX("mx.test", 10, "mx1.mx.test")
	d.AddMX("null.test", 0, ".")
	d.AddA("bare.test", "127.0.0.9")
	d.AddA("nomail.test.sub", "127.0.0.10") // a name below, not the domain

	c := e.client()
	for _, tc := range []struct {
		domain string
		kind   PeerKind
		hosts  []MailHost
		code   string
	}{
		{"pm.test", PeerPullmail, []MailHost{{Host: "rs.pm.test", Port: 8443, Preference: 10}}, ""},
		{"dot.test", PeerSMTP, []MailHost{{Host: "mx.dot.test", Preference: 5}}, ""},
		{"MX.test.", PeerSMTP, []MailHost{{Host: "mx1.mx.test", Preference: 10}, {Host: "mx2.mx.test", Preference: 20}}, ""},
		{"bare.test", PeerSMTP, []MailHost{{Host: "bare.test"}}, ""},
		{"null.test", "", nil, "null_mx"},
		{"nomail.test", "", nil, "no_mail_host"},
		{"not a domain", "", nil, "bad_domain"},
	} {
		t.Run(tc.domain, func(t *testing.T) {
			p, err := c.Peer(context.Background(), tc.domain)
			if tc.code != "" {
				if errs.CodeOf(err) != tc.code {
					t.Fatalf("Peer: %+v, %v; want %s", p, err, tc.code)
				}
				return
			}
			if err != nil {
				t.Fatalf("Peer: %v", err)
			}
			if p.Kind != tc.kind || len(p.Hosts) != len(tc.hosts) || p.Why == "" {
				t.Fatalf("Peer = %+v, want %s %v", p, tc.kind, tc.hosts)
			}
			for i := range tc.hosts {
				if p.Hosts[i] != tc.hosts[i] {
					t.Errorf("host %d = %+v, want %+v", i, p.Hosts[i], tc.hosts[i])
				}
			}
		})
	}
}

// TestPeerCache: an answer is kept for MaxTTL and asked again after it; a
// failure is not kept.
func TestPeerCache(t *testing.T) {
	e := newEnv(t)
	e.cfg.MaxTTL = 10 * time.Minute
	e.dns.AddMX("c.test", 10, "mx.c.test")
	c := e.client()
	ctx := context.Background()
	if p, err := c.Peer(ctx, "c.test"); err != nil || p.Kind != PeerSMTP {
		t.Fatalf("first: %+v, %v", p, err)
	}
	e.dns.Remove("c.test")
	e.dns.AddSRV(ServiceRS+"c.test", 1, 1, 443, "rs.c.test", 60)
	if p, err := c.Peer(ctx, "c.test"); err != nil || p.Kind != PeerSMTP {
		t.Fatalf("within the TTL: %+v, %v; want the cached SMTP answer", p, err)
	}
	e.clock.Advance(11 * time.Minute)
	if p, err := c.Peer(ctx, "c.test"); err != nil || p.Kind != PeerPullmail {
		t.Fatalf("after the TTL: %+v, %v; want the new SRV answer", p, err)
	}

	if _, err := c.Peer(ctx, "later.test"); errs.CodeOf(err) != "no_mail_host" {
		t.Fatalf("later.test: %v", err)
	}
	e.dns.AddMX("later.test", 1, "mx.later.test")
	if p, err := c.Peer(ctx, "later.test"); err != nil || p.Kind != PeerSMTP {
		t.Fatalf("a failure was cached: %+v, %v", p, err)
	}
}

// TestPeerDNSDown: a resolver that does not answer is a temporary failure,
// never "no mail host" (which would bounce mail for good).
func TestPeerDNSDown(t *testing.T) {
	e := newEnv(t)
	e.dns.Close()
	e.cfg.Resolver = NewResolver(e.dns.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := e.client().Peer(ctx, "x.test")
	if errs.KindOf(err) != errs.Temporary || errs.CodeOf(err) != "dns_failed" {
		t.Fatalf("Peer with the DNS server down: %v (kind %v)", err, errs.KindOf(err))
	}
}
