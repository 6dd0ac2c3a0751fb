package discovery

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/pullmail/pullmail/discovery/dnstest"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/federation"
	"github.com/pullmail/pullmail/keys"
	"github.com/pullmail/pullmail/tlsca"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is a DNS server, a local CA and a discovery client that uses both.
type env struct {
	t     *testing.T
	dns   *dnstest.Server
	ca    *tlsca.CA
	pool  *x509.CertPool
	clock *fakeClock
	cfg   Config
}

func newEnv(t *testing.T) *env {
	t.Helper()
	d, err := dnstest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	ca, err := tlsca.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dns: d, ca: ca, pool: ca.Pool(), clock: &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}}
	e.cfg = Config{Resolver: NewResolver(d.Addr()), RootCAs: e.pool, AllowPrivate: true, Clock: e.clock.Now, Timeout: 5 * time.Second}
	return e
}

// client returns a client with e.cfg, closed at the end of the test.
func (e *env) client() *Client {
	c := New(e.cfg)
	e.t.Cleanup(c.Close)
	return c
}

// serve starts an HTTPS server with a certificate for host (resolving to
// 127.0.0.1 in e.dns) and returns its port.
func (e *env) serve(host string, h http.Handler) uint16 {
	e.t.Helper()
	s := httptest.NewUnstartedServer(h)
	tc, err := e.ca.TLSConfig([]string{host})
	if err != nil {
		e.t.Fatal(err)
	}
	s.TLS = tc
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	s.StartTLS()
	e.t.Cleanup(s.Close)
	e.dns.RemoveA(host)
	e.dns.AddA(host, "127.0.0.1")
	_, p, _ := net.SplitHostPort(s.Listener.Addr().String())
	port, _ := strconv.ParseUint(p, 10, 16)
	return uint16(port)
}

// deadPort returns a loopback port where nothing listens.
func deadPort(t *testing.T) uint16 {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return uint16(port)
}

// fakeAS is an authorization server's metadata and JWKS, with knobs to make
// them wrong.
type fakeAS struct {
	jwks       []byte
	issuer     func(base string) string // default: base
	jwksURI    func(base string) string // default: base + /oauth/jwks
	jwksAge    string                   // Cache-Control of the JWKS
	metaHits   atomic.Int64
	jwksHits   atomic.Int64
	prefix     string // the path of the issuer, for redirect tests
	jwksHandle http.HandlerFunc
}

func newFakeAS(t testing.TB) *fakeAS {
	return &fakeAS{jwks: jwksOf(t, newKey(t)), jwksAge: "public, max-age=120"}
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func jwksOf(t testing.TB, ks ...*ecdsa.PrivateKey) []byte {
	var set jose.JSONWebKeySet
	for _, k := range ks {
		jwk := jose.JSONWebKey{Key: &k.PublicKey, Algorithm: "ES256", Use: "sig"}
		kid, err := keys.Thumbprint(jwk)
		if err != nil {
			t.Fatal(err)
		}
		jwk.KeyID = kid
		set.Keys = append(set.Keys, jwk)
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (a *fakeAS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	base := "https://" + r.Host + a.prefix
	switch r.URL.Path {
	case a.prefix + PathASMetadata:
		a.metaHits.Add(1)
		md := federation.ASMetadata{Issuer: base, TokenEndpoint: base + "/oauth/token", JWKSURI: base + "/oauth/jwks"}
		if a.issuer != nil {
			md.Issuer = a.issuer(base)
		}
		if a.jwksURI != nil {
			md.JWKSURI = a.jwksURI(base)
		}
		w.Header().Set("Cache-Control", "no-store") // as authz does
		json.NewEncoder(w).Encode(md)
	case a.prefix + "/oauth/jwks":
		a.jwksHits.Add(1)
		if a.jwksHandle != nil {
			a.jwksHandle(w, r)
			return
		}
		w.Header().Set("Cache-Control", a.jwksAge)
		w.Write(a.jwks)
	default:
		http.NotFound(w, r)
	}
}

// wantErr fails unless err is an *errs.Error with code and kind.
func wantErr(t *testing.T, err error, code string, kind errs.Kind) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %s", code)
	}
	if errs.CodeOf(err) != code || errs.KindOf(err) != kind {
		t.Fatalf("got %v (code %s, kind %v), want code %s kind %v", err, errs.CodeOf(err), errs.KindOf(err), code, kind)
	}
}
