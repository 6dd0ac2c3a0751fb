package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/pullmail/pullmail/discovery"
	"github.com/pullmail/pullmail/discovery/dnstest"
	"github.com/pullmail/pullmail/server"
)

// node is one running node of a.test, listening on 127.0.0.1.
type node struct {
	srv  *server.Server
	port uint16
	stop func()
}

// startNode serves a.test as node name, known also as host, with the
// public URL publicURL ("": its own address).
func startNode(t *testing.T, name, host, publicURL string, pool *x509.CertPool) *node {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if publicURL == "" {
		publicURL = "https://" + ln.Addr().String()
	}
	dir := t.TempDir()
	srv, err := server.Open(context.Background(), server.Config{DataDir: dir, Domain: "a.test", Node: name,
		Listen: ln.Addr().String(), PublicURL: publicURL, Hosts: []string{host}, GCInterval: -1})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done, ready := make(chan error, 1), make(chan string, 1)
	go func() { done <- srv.ServeListener(ctx, ln, func(u string) { ready <- u }) }()
	<-ready
	pem, err := os.ReadFile(filepath.Join(dir, "ca.pem")) // made by ServeListener
	if err != nil || !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("the local CA: %v", err)
	}
	n := &node{srv: srv, port: uint16(ln.Addr().(*net.TCPAddr).Port)}
	stopped := false
	n.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serving %s: %v", name, err)
		}
		srv.Close()
	}
	t.Cleanup(n.stop)
	return n
}

// TestTwoNodesTwoSRVTargets: a.test runs two nodes, each published as an
// SRV target of its own at equal priority (n1.a.test, n2.a.test, in a real
// DNS server), both serving the one issuer, node n1's public URL: each
// answers the discovery documents reached under its own name with one
// redirect there. Another domain's discovery finds the domain through
// either target, and through the live one when the other is down,
// whichever order the weighted choice gives.
func TestTwoNodesTwoSRVTargets(t *testing.T) {
	pool := x509.NewCertPool()
	n1 := startNode(t, "n1", "n1.a.test", "", pool)
	issuer := n1.srv.PublicURL()
	n2 := startNode(t, "n2", "n2.a.test", issuer, pool)

	dns, err := dnstest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dns.Close() })
	for _, n := range []struct {
		host string
		port uint16
	}{{"n1.a.test", n1.port}, {"n2.a.test", n2.port}} {
		dns.AddA(n.host, "127.0.0.1")
		dns.AddSRV(discovery.ServiceAS+"a.test", 10, 5, n.port, n.host, 3600)
		dns.AddSRV(discovery.ServiceRS+"a.test", 10, 5, n.port, n.host, 3600)
	}
	// The targets, as the resolver gives them: both, at one priority.
	_, recs, err := discovery.NewResolver(dns.Addr()).LookupSRV(context.Background(), "", "", discovery.ServiceAS+"a.test")
	if err != nil || len(recs) != 2 || recs[0].Priority != recs[1].Priority {
		t.Fatalf("SRV records: %v, %v", recs, err)
	}

	// The redirect itself: n2's document under its own name points at the
	// issuer; under the issuer's host it is served as it is.
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "n2.a.test"}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	defer c.CloseIdleConnections()
	req, _ := http.NewRequest("GET", "https://127.0.0.1:"+strconv.Itoa(int(n2.port))+discovery.PathMailbox, nil)
	req.Host = "n2.a.test:" + strconv.Itoa(int(n2.port))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || loc != issuer+discovery.PathMailbox {
		t.Fatalf("n2's mailbox document under its own name: %d, Location %q; want 302 to %s", resp.StatusCode, loc, issuer+discovery.PathMailbox)
	}
	req, _ = http.NewRequest("POST", "https://127.0.0.1:"+strconv.Itoa(int(n2.port))+discovery.PathMailbox, nil)
	req.Host = "n2.a.test"
	if resp, err := c.Do(req); err != nil || resp.StatusCode == http.StatusFound {
		t.Fatalf("a POST was redirected: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	lookups := func(what string) {
		t.Helper()
		for i := range 12 {
			dc := discovery.New(discovery.Config{Resolver: discovery.NewResolver(dns.Addr()), RootCAs: pool, AllowPrivate: true})
			a, err := dc.Authority(context.Background(), "a.test")
			if err != nil {
				t.Fatalf("%s, lookup %d: authority: %v", what, i, err)
			}
			m, err := dc.Mailbox(context.Background(), "a.test")
			if err != nil {
				t.Fatalf("%s, lookup %d: mailbox: %v", what, i, err)
			}
			dc.Close()
			if a.Issuer != issuer || m.URL != issuer {
				t.Fatalf("%s, lookup %d: issuer %s, mailbox %s; want %s", what, i, a.Issuer, m.URL, issuer)
			}
		}
	}
	lookups("both nodes up")
	n2.stop()
	lookups("n2 down")
}
