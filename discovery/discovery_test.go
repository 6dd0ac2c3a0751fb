package discovery

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pullmail/pullmail/errs"
)

var ctx = context.Background()

func TestOrderSRV(t *testing.T) {
	recs := []*net.SRV{
		{Target: "c.", Priority: 30, Weight: 5},
		{Target: "a1.", Priority: 10, Weight: 0},
		{Target: "b.", Priority: 20, Weight: 1},
		{Target: "a2.", Priority: 10, Weight: 0},
	}
	// With weights zero everywhere the order within a priority is kept.
	got := orderSRV(recs, rand.New(rand.NewPCG(1, 2)).IntN)
	var names []string
	for _, r := range got {
		names = append(names, r.Target)
	}
	if strings.Join(names, " ") != "a1. a2. b. c." {
		t.Fatalf("order %v", names)
	}

	// Weight 9 against weight 1: chosen first about 9 times in 10
	// (RFC 2782). The generator is seeded, so the count is fixed.
	w := []*net.SRV{{Target: "light.", Priority: 1, Weight: 1}, {Target: "heavy.", Priority: 1, Weight: 9}}
	rng := rand.New(rand.NewPCG(3, 4))
	heavy := 0
	for range 10000 {
		o := orderSRV(w, rng.IntN)
		if len(o) != 2 {
			t.Fatalf("lost a record: %v", o)
		}
		if o[0].Target == "heavy." {
			heavy++
		}
	}
	if heavy < 8700 || heavy > 9300 {
		t.Errorf("heavy first %d times in 10000, want about 9000", heavy)
	}
}

func TestIsPrivate(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want bool
	}{
		{"127.0.0.1", true}, {"127.9.9.9", true}, {"::1", true}, {"10.1.2.3", true}, {"172.16.0.1", true},
		{"172.31.255.255", true}, {"192.168.1.1", true}, {"169.254.169.254", true}, {"169.254.1.1", true},
		{"fe80::1", true}, {"fd00::1", true}, {"fc00::1", true}, {"::ffff:127.0.0.1", true}, {"::ffff:10.0.0.1", true},
		{"0.0.0.0", true}, {"::", true}, {"100.64.0.1", true}, {"224.0.0.1", true}, {"255.255.255.255", true},
		{"8.8.8.8", false}, {"172.32.0.1", false}, {"2606:4700::1111", false}, {"1.1.1.1", false},
	} {
		if got := IsPrivate(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("IsPrivate(%s) = %v, want %v", tc.addr, got, tc.want)
		}
	}
}

// Discovering a real Pullmail domain (its issuer at https://127.0.0.1:PORT,
// reached through the redirect service of seed 004 Note 1) is tested where a
// whole domain is at hand without an import cycle (server imports
// discovery): cli.TestDev and cli.TestDoctor.

func TestAuthorityPriorityAndFallback(t *testing.T) {
	e := newEnv(t)
	first, second := newFakeAS(t), newFakeAS(t)
	p1 := e.serve("as1.a.test", first)
	p2 := e.serve("as2.a.test", second)
	dead := deadPort(t)
	e.dns.AddA("dead.a.test", "127.0.0.1")
	// Priority 5 first: dead, so the client falls back to priority 10,
	// weight 0 before weight 100 never matters here: as1 has the lower
	// priority of the two live ones.
	e.dns.AddSRV("_federizer._as._tcp.a.test", 20, 100, p2, "as2.a.test", 3600)
	e.dns.AddSRV("_federizer._as._tcp.a.test", 10, 1, p1, "as1.a.test", 3600)
	e.dns.AddSRV("_federizer._as._tcp.a.test", 5, 1, dead, "dead.a.test", 3600)
	c := e.client()
	a, err := c.Authority(ctx, "a.test")
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("https://as1.a.test:%d", p1); a.Issuer != want {
		t.Errorf("issuer %s, want %s", a.Issuer, want)
	}
	if first.metaHits.Load() != 1 || second.metaHits.Load() != 0 {
		t.Errorf("metadata requests: as1 %d, as2 %d", first.metaHits.Load(), second.metaHits.Load())
	}

	// Every target down: a temporary error, for the queue to retry.
	e2 := newEnv(t)
	e2.dns.AddA("dead.b.test", "127.0.0.1")
	e2.dns.AddSRV("_federizer._as._tcp.b.test", 1, 1, dead, "dead.b.test", 60)
	e2.dns.AddSRV("_federizer._as._tcp.b.test", 2, 1, deadPort(t), "dead.b.test", 60)
	_, err = e2.client().Authority(ctx, "b.test")
	wantErr(t, err, "fetch_failed", errs.Temporary)
}

func TestAuthorityRefusals(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(e *env) // makes _federizer._as._tcp.a.test
		code  string
		kind  errs.Kind
	}{
		{"no record", func(e *env) {}, "no_srv_record", errs.NotFound},
		{"target dot", func(e *env) {
			e.dns.AddSRV("_federizer._as._tcp.a.test", 0, 0, 0, ".", 3600)
		}, "service_unavailable", errs.NotFound},
		{"private target", func(e *env) {
			e.cfg.AllowPrivate = false
			e.dns.AddSRV("_federizer._as._tcp.a.test", 1, 1, e.serve("as.a.test", newFakeAS(e.t)), "as.a.test", 3600)
		}, "private_target", errs.Invalid},
		{"target without address", func(e *env) {
			e.dns.AddSRV("_federizer._as._tcp.a.test", 1, 1, 443, "nowhere.a.test", 3600)
		}, "fetch_failed", errs.Temporary},
		{"issuer mismatch", func(e *env) {
			as := newFakeAS(e.t)
			as.issuer = func(string) string { return "https://evil.test" }
			e.dns.AddSRV("_federizer._as._tcp.a.test", 1, 1, e.serve("as.a.test", as), "as.a.test", 3600)
		}, "issuer_mismatch", errs.Invalid},
		{"issuer with a trailing slash", func(e *env) {
			as := newFakeAS(e.t)
			as.issuer = func(b string) string { return b + "/" }
			e.dns.AddSRV("_federizer._as._tcp.a.test", 1, 1, e.serve("as.a.test", as), "as.a.test", 3600)
		}, "issuer_mismatch", errs.Invalid},
		{"http jwks_uri", func(e *env) {
			as := newFakeAS(e.t)
			as.jwksURI = func(b string) string { return "http" + strings.TrimPrefix(b, "https") + "/oauth/jwks" }
			e.dns.AddSRV("_federizer._as._tcp.a.test", 1, 1, e.serve("as.a.test", as), "as.a.test", 3600)
		}, "bad_metadata", errs.Invalid},
		{"jwks_uri on another host", func(e *env) {
			as := newFakeAS(e.t)
			other := e.serve("other.a.test", newFakeAS(e.t))
			as.jwksURI = func(string) string { return fmt.Sprintf("https://other.a.test:%d/oauth/jwks", other) }
			e.dns.AddSRV("_federizer._as._tcp.a.test", 1, 1, e.serve("as.a.test", as), "as.a.test", 3600)
		}, "bad_metadata", errs.Invalid},
		{"JWKS redirects to another host", func(e *env) {
			as := newFakeAS(e.t)
			other := e.serve("other.a.test", newFakeAS(e.t))
			as.jwksHandle = func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, fmt.Sprintf("https://other.a.test:%d/oauth/jwks", other), http.StatusFound)
			}
			e.dns.AddSRV("_federizer._as._tcp.a.test", 1, 1, e.serve("as.a.test", as), "as.a.test", 3600)
		}, "bad_redirect", errs.Invalid},
		{"redirect to http", func(e *env) {
			p := e.serve("redir.a.test", http.RedirectHandler("http://as.a.test/", http.StatusFound))
			e.dns.AddSRV("_federizer._as._tcp.a.test", 1, 1, p, "redir.a.test", 3600)
		}, "bad_redirect", errs.Invalid},
		{"two redirects", func(e *env) {
			p2 := e.serve("redir2.a.test", http.RedirectHandler("https://elsewhere.test/", http.StatusFound))
			p := e.serve("redir.a.test", http.RedirectHandler(fmt.Sprintf("https://redir2.a.test:%d/x", p2), http.StatusFound))
			e.dns.AddSRV("_federizer._as._tcp.a.test", 1, 1, p, "redir.a.test", 3600)
		}, "bad_redirect", errs.Invalid},
		{"redirect with a query", func(e *env) {
			p := e.serve("redir.a.test", http.RedirectHandler("https://as.a.test/?x=1", http.StatusFound))
			e.dns.AddSRV("_federizer._as._tcp.a.test", 1, 1, p, "redir.a.test", 3600)
		}, "bad_redirect", errs.Invalid},
		{"metadata not found", func(e *env) {
			p := e.serve("as.a.test", http.NotFoundHandler())
			e.dns.AddSRV("_federizer._as._tcp.a.test", 1, 1, p, "as.a.test", 3600)
		}, "bad_metadata", errs.Invalid},
		{"metadata 503", func(e *env) {
			p := e.serve("as.a.test", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, "busy", http.StatusServiceUnavailable)
			}))
			e.dns.AddSRV("_federizer._as._tcp.a.test", 1, 1, p, "as.a.test", 3600)
		}, "fetch_failed", errs.Temporary},
		{"metadata with a duplicate issuer", func(e *env) {
			p := e.serve("as.a.test", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b := "https://" + r.Host
				fmt.Fprintf(w, `{"issuer":"https://evil.test","Issuer":%q,"jwks_uri":%q,"token_endpoint":%q}`, b, b+"/oauth/jwks", b+"/oauth/token")
			}))
			e.dns.AddSRV("_federizer._as._tcp.a.test", 1, 1, p, "as.a.test", 3600)
		}, "bad_metadata", errs.Invalid},
		{"10 MB metadata", func(e *env) {
			p := e.serve("as.a.test", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Write([]byte(`{"issuer":"`))
				chunk := strings.Repeat("x", 64<<10)
				for range 160 {
					if _, err := w.Write([]byte(chunk)); err != nil {
						return
					}
				}
			}))
			e.dns.AddSRV("_federizer._as._tcp.a.test", 1, 1, p, "as.a.test", 3600)
		}, "response_too_large", errs.TooLarge},
		{"10 MB JWKS with Content-Length", func(e *env) {
			as := newFakeAS(e.t)
			as.jwksHandle = func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", fmt.Sprint(10<<20))
				w.Write(make([]byte, 64<<10))
			}
			e.dns.AddSRV("_federizer._as._tcp.a.test", 1, 1, e.serve("as.a.test", as), "as.a.test", 3600)
		}, "response_too_large", errs.TooLarge},
		{"slow metadata", func(e *env) {
			e.cfg.Timeout = 200 * time.Millisecond
			release := make(chan struct{})
			p := e.serve("as.a.test", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Write([]byte(`{"issuer":`))
				w.(http.Flusher).Flush()
				<-release // until the test ends: the client gives up first
			}))
			e.t.Cleanup(func() { close(release) }) // before the server closes
			e.dns.AddSRV("_federizer._as._tcp.a.test", 1, 1, p, "as.a.test", 3600)
		}, "fetch_failed", errs.Temporary},
		{"JWKS with a private key", func(e *env) {
			as := newFakeAS(e.t)
			var set map[string][]map[string]any
			json.Unmarshal(as.jwks, &set)
			set["keys"][0]["d"] = "AAAA"
			as.jwks, _ = json.Marshal(set)
			e.dns.AddSRV("_federizer._as._tcp.a.test", 1, 1, e.serve("as.a.test", as), "as.a.test", 3600)
		}, "invalid_jwks", errs.Invalid},
		{"empty JWKS", func(e *env) {
			as := newFakeAS(e.t)
			as.jwks = []byte(`{"keys":[]}`)
			e.dns.AddSRV("_federizer._as._tcp.a.test", 1, 1, e.serve("as.a.test", as), "as.a.test", 3600)
		}, "invalid_jwks", errs.Invalid},
		{"certificate for another name", func(e *env) {
			p := e.serve("wrong.a.test", newFakeAS(e.t))
			e.dns.AddA("as.a.test", "127.0.0.1")
			e.dns.AddSRV("_federizer._as._tcp.a.test", 1, 1, p, "as.a.test", 3600)
		}, "fetch_failed", errs.Temporary},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			tc.setup(e)
			_, err := e.client().Authority(ctx, "a.test")
			wantErr(t, err, tc.code, tc.kind)
		})
	}
}

func TestBadDomain(t *testing.T) {
	c := newEnv(t).client()
	for _, d := range []string{"", "127.0.0.1", "a..test", "-a.test", "a_b.test", "a.test/x", strings.Repeat("a", 64) + ".test"} {
		_, err := c.Authority(ctx, d)
		wantErr(t, err, "bad_domain", errs.Invalid)
	}
}

// TestRedirectMapping: the Location of the redirect service maps to a base
// URL that the issuer must equal (package doc).
func TestRedirectMapping(t *testing.T) {
	for _, tc := range []struct{ name, location, prefix string }{
		{"base", "/as1", "/as1"},
		{"path preserved", "/as1" + PathASMetadata, "/as1"},
		{"RFC 8414 form", PathASMetadata + "/as1", "/as1"},
		{"root", "/", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			as := newFakeAS(t)
			as.prefix = tc.prefix
			mux := http.NewServeMux()
			mux.Handle(tc.prefix+"/", as)
			var port uint16
			mux.HandleFunc("GET "+PathASMetadata+"/as1", func(w http.ResponseWriter, r *http.Request) {
				// RFC 8414 §3.1 placement, served by the AS itself.
				r2 := r.Clone(r.Context())
				r2.URL.Path = "/as1" + PathASMetadata
				as.ServeHTTP(w, r2)
			})
			if tc.prefix == "" {
				// The redirect service and the AS share the
				// root: only the first request redirects.
				var once sync.Once
				mux = http.NewServeMux()
				mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
					redirected := false
					once.Do(func() { redirected = true })
					if redirected {
						http.Redirect(w, r, tc.location, http.StatusMovedPermanently)
						return
					}
					as.ServeHTTP(w, r)
				})
			} else {
				mux.HandleFunc("GET "+PathASMetadata, func(w http.ResponseWriter, r *http.Request) {
					http.Redirect(w, r, tc.location, http.StatusFound)
				})
			}
			port = e.serve("as.a.test", mux)
			e.dns.AddSRV("_federizer._as._tcp.a.test", 1, 1, port, "as.a.test", 3600)
			a, err := e.client().Authority(ctx, "a.test")
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf("https://as.a.test:%d%s", port, tc.prefix); a.Issuer != want {
				t.Errorf("issuer %s, want %s", a.Issuer, want)
			}
		})
	}
}

func TestAuthorityCache(t *testing.T) {
	e := newEnv(t)
	as := newFakeAS(t) // JWKS max-age=120, metadata no-store (ignored)
	e.dns.AddSRV("_federizer._as._tcp.a.test", 1, 1, e.serve("as.a.test", as), "as.a.test", 3600)
	c := e.client()
	hits := func() string { return fmt.Sprintf("%d/%d", as.metaHits.Load(), as.jwksHits.Load()) }

	// Concurrent first lookups share one fetch.
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := c.Authority(ctx, "a.test"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if hits() != "1/1" {
		t.Fatalf("requests after 20 concurrent lookups: %s, want 1/1", hits())
	}
	e.clock.Advance(119 * time.Second)
	if _, err := c.Authority(ctx, "a.test"); err != nil || hits() != "1/1" {
		t.Fatalf("within max-age: %v, requests %s", err, hits())
	}
	e.clock.Advance(2 * time.Second)
	if _, err := c.Authority(ctx, "a.test"); err != nil || hits() != "2/2" {
		t.Fatalf("after max-age: %v, requests %s", err, hits())
	}

	// MaxTTL caps a long max-age; MinTTL floors a short one.
	for _, tc := range []struct {
		age  string
		max  time.Duration
		want time.Duration
	}{
		{"max-age=86400", time.Hour, time.Hour},
		{"max-age=0", time.Hour, MinTTL},
		{"no-store", 10 * time.Minute, 10 * time.Minute},
	} {
		e.cfg.MaxTTL = tc.max
		as.jwksAge = tc.age
		c := e.client()
		c.Authority(ctx, "a.test")
		before := hits()
		e.clock.Advance(tc.want - time.Second)
		c.Authority(ctx, "a.test")
		if hits() != before {
			t.Errorf("%s, MaxTTL %v: refetched before %v", tc.age, tc.max, tc.want)
		}
		e.clock.Advance(time.Second)
		c.Authority(ctx, "a.test")
		if hits() == before {
			t.Errorf("%s, MaxTTL %v: not refetched after %v", tc.age, tc.max, tc.want)
		}
	}
}

func TestRefreshKeys(t *testing.T) {
	e := newEnv(t)
	as := newFakeAS(t)
	e.dns.AddSRV("_federizer._as._tcp.a.test", 1, 1, e.serve("as.a.test", as), "as.a.test", 3600)
	c := e.client()
	a, err := c.Authority(ctx, "a.test")
	if err != nil {
		t.Fatal(err)
	}
	oldKID := a.JWKS.Keys[0].KeyID

	// The AS rotates: a new key appears.
	newJWKS := jwksOf(t, newKey(t), newKey(t))
	as.jwks = newJWKS
	a, err = c.RefreshKeys(ctx, "a.test")
	if err != nil {
		t.Fatal(err)
	}
	if len(a.JWKS.Keys) != 2 || a.JWKS.Keys[0].KeyID == oldKID || string(a.Raw) != string(newJWKS) {
		t.Fatalf("after refresh: %d keys, first %s", len(a.JWKS.Keys), a.JWKS.Keys[0].KeyID)
	}
	if as.metaHits.Load() != 1 || as.jwksHits.Load() != 2 {
		t.Errorf("refresh fetched metadata %d times, JWKS %d times; want 1, 2", as.metaHits.Load(), as.jwksHits.Load())
	}
	if cached, _ := c.Authority(ctx, "a.test"); len(cached.JWKS.Keys) != 2 {
		t.Errorf("the cache kept the old keys")
	}

	// Unknown kids again and again within the minute: no request.
	for range 100 {
		if _, err := c.RefreshKeys(ctx, "a.test"); err != nil {
			t.Fatal(err)
		}
	}
	if as.jwksHits.Load() != 2 {
		t.Errorf("JWKS fetched %d times after 100 refreshes in a minute, want 2", as.jwksHits.Load())
	}
	e.clock.Advance(RefreshInterval)
	c.RefreshKeys(ctx, "a.test")
	if as.jwksHits.Load() != 3 {
		t.Errorf("JWKS fetched %d times after a minute, want 3", as.jwksHits.Load())
	}

	// Never discovered: RefreshKeys discovers.
	e.dns.AddSRV("_federizer._as._tcp.c.test", 1, 1, e.serve("as.c.test", newFakeAS(t)), "as.c.test", 3600)
	if a, err := c.RefreshKeys(ctx, "c.test"); err != nil || len(a.JWKS.Keys) != 1 {
		t.Errorf("RefreshKeys of a new domain: %v", err)
	}
}

// TestAuthorityEqualPriority: two targets of equal priority and weight
// (two nodes of a domain, docs/PROTOCOL.md §11.1), in a real DNS server:
// each is tried first about as often, and when one is down every lookup
// falls over to the other, whichever order the weighted choice gave.
func TestAuthorityEqualPriority(t *testing.T) {
	e := newEnv(t)
	n1, n2 := newFakeAS(t), newFakeAS(t)
	p1 := e.serve("n1.a.test", n1)
	p2 := e.serve("n2.a.test", n2)
	e.dns.AddSRV("_federizer._as._tcp.a.test", 10, 5, p1, "n1.a.test", 3600)
	e.dns.AddSRV("_federizer._as._tcp.a.test", 10, 5, p2, "n2.a.test", 3600)
	const lookups = 40
	for range lookups {
		if _, err := e.client().Authority(ctx, "a.test"); err != nil { // a new client: no cache
			t.Fatal(err)
		}
	}
	h1, h2 := n1.metaHits.Load(), n2.metaHits.Load()
	if h1+h2 != lookups || h1 < 8 || h2 < 8 {
		t.Errorf("metadata requests: n1 %d, n2 %d of %d lookups; want each about half", h1, h2, lookups)
	}

	// n2 goes down (its port then refuses connections).
	e2 := newEnv(t)
	live := newFakeAS(t)
	pl := e2.serve("n1.b.test", live)
	e2.dns.AddA("n2.b.test", "127.0.0.1")
	e2.dns.AddSRV("_federizer._as._tcp.b.test", 10, 5, pl, "n1.b.test", 3600)
	e2.dns.AddSRV("_federizer._as._tcp.b.test", 10, 5, deadPort(t), "n2.b.test", 3600)
	for i := range lookups {
		a, err := e2.client().Authority(ctx, "b.test")
		if err != nil {
			t.Fatalf("lookup %d with n2 down: %v", i, err)
		}
		if want := fmt.Sprintf("https://n1.b.test:%d", pl); a.Issuer != want {
			t.Fatalf("lookup %d: issuer %s, want %s", i, a.Issuer, want)
		}
	}
}
