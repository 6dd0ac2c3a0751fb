package discovery

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pullmail/pullmail/errs"
)

// TestSTSPolicyVectors parses testdata/mtasts/NAME.policy and compares with
// NAME.want: the mode, patterns and max_age, or the error code.
func TestSTSPolicyVectors(t *testing.T) {
	files, err := filepath.Glob("testdata/mtasts/*.policy")
	if err != nil || len(files) == 0 {
		t.Fatalf("no vectors: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".policy")
		t.Run(name, func(t *testing.T) {
			in, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			wb, err := os.ReadFile(strings.TrimSuffix(f, ".policy") + ".want")
			if err != nil {
				t.Fatal(err)
			}
			var want struct {
				Error  string   `json:"error"`
				Mode   STSMode  `json:"mode"`
				MX     []string `json:"mx"`
				MaxAge int64    `json:"max_age_s"`
			}
			if err := json.Unmarshal(wb, &want); err != nil {
				t.Fatal(err)
			}
			p, err := ParseSTSPolicy(in)
			if want.Error != "" {
				wantErr(t, err, want.Error, errs.Invalid)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Mode != want.Mode || !reflect.DeepEqual(p.MX, want.MX) || p.MaxAge != time.Duration(want.MaxAge)*time.Second {
				t.Errorf("got mode %s mx %q max_age %v, want %+v", p.Mode, p.MX, p.MaxAge, want)
			}
		})
	}
}

func TestSTSRecord(t *testing.T) {
	for _, c := range []struct {
		txts []string
		id   string
		code string
	}{
		{[]string{"v=STSv1; id=20160831085700Z;"}, "20160831085700Z", ""},
		{[]string{"v=STSv1;id=abc"}, "abc", ""},
		{[]string{"v=spf1 -all", "v=STSv1; id=x1; ext=y"}, "x1", ""},
		{[]string{"v=STSv1; id=a", "v=STSv1; id=b"}, "", "bad_sts_record"}, // two: no policy
		{[]string{"v=STSv1; id=has-dash"}, "", "bad_sts_record"},
		{[]string{"v=STSv1; id=" + strings.Repeat("a", 33)}, "", "bad_sts_record"},
		{[]string{"v=STSv1"}, "", "bad_sts_record"},
		{[]string{"v=STSv1; idx"}, "", "bad_sts_record"},
		{[]string{"v=STSv10; id=a"}, "", "no_sts_record"},
		{nil, "", "no_sts_record"},
	} {
		id, err := ParseSTSRecord(c.txts)
		if c.code != "" {
			if errs.CodeOf(err) != c.code {
				t.Errorf("%q: %q, %v; want %s", c.txts, id, err, c.code)
			}
			continue
		}
		if err != nil || id != c.id {
			t.Errorf("%q: %q, %v; want %q", c.txts, id, err, c.id)
		}
	}
}

func TestSTSMatchMX(t *testing.T) {
	p := &STSPolicy{MX: []string{"mail.example.com", "*.example.net"}}
	for host, want := range map[string]bool{
		"mail.example.com":    true,
		"MAIL.Example.COM.":   true,
		"x.mail.example.com":  false,
		"example.com":         false,
		"mx1.example.net":     true,
		"a.b.example.net":     false, // a wildcard is one label (§4.1)
		"example.net":         false,
		".example.net":        false,
		"mx1.example.network": false,
	} {
		if got := p.MatchMX(host); got != want {
			t.Errorf("MatchMX(%q) = %v, want %v", host, got, want)
		}
	}
}

func FuzzSTSPolicy(f *testing.F) {
	files, _ := filepath.Glob("testdata/mtasts/*.policy")
	for _, n := range files {
		b, _ := os.ReadFile(n)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseSTSPolicy(b)
		if err != nil {
			if errs.KindOf(err) != errs.Invalid {
				t.Fatalf("error of kind %v: %v", errs.KindOf(err), err)
			}
			return
		}
		if p.MaxAge < 0 || p.MaxAge > STSMaxAge {
			t.Fatalf("max_age %v", p.MaxAge)
		}
		if p.Mode != STSNone && len(p.MX) == 0 {
			t.Fatalf("mode %s without mx", p.Mode)
		}
		for _, m := range p.MX {
			if m != strings.ToLower(m) || strings.HasSuffix(m, ".") || m == "" {
				t.Fatalf("pattern %q not normalised", m)
			}
			// A pattern matches itself, or for a wildcard one more label.
			if !p.MatchMX(strings.Replace(m, "*", "x", 1)) {
				t.Fatalf("pattern %q does not match its own host", m)
			}
		}
	})
}

// policyServer serves one policy at https://mta-sts.DOMAIN and counts the
// fetches; handle, when set, answers instead.
type policyServer struct {
	body   atomic.Value // string
	hits   atomic.Int64
	handle atomic.Pointer[http.HandlerFunc]
}

func (p *policyServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.hits.Add(1)
	if h := p.handle.Load(); h != nil {
		(*h)(w, r)
		return
	}
	if r.URL.Path != "/.well-known/mta-sts.txt" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte(p.body.Load().(string)))
}

func (e *env) sts(port uint16) *STS {
	return NewSTS(STSConfig{Resolver: e.cfg.Resolver, RootCAs: e.pool, AllowPrivate: true, Port: int(port),
		Clock: e.clock.Now, Timeout: 5 * time.Second})
}

// TestSTSCache: the policy is fetched once while the record's id stays;
// a new id fetches it again; a record gone or a fetch that fails leaves the
// cached policy in force until its max_age ends (RFC 8461 §5.1).
func TestSTSCache(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	ps := &policyServer{}
	ps.body.Store("version: STSv1\nmode: enforce\nmx: mx.b.test\nmax_age: 3600\n")
	port := e.serve("mta-sts.b.test", ps)
	s := e.sts(port)

	// No record: no policy, no fetch.
	if p, err := s.Policy(ctx, "b.test"); p != nil || err != nil {
		t.Fatalf("no record: %+v, %v", p, err)
	}
	e.dns.AddTXT("_mta-sts.b.test", "v=STSv1; id=one")
	e.clock.Advance(2 * STSRecheck)
	for i := range 5 {
		p, err := s.Policy(ctx, "B.test.")
		if err != nil || p == nil || p.Mode != STSEnforce || p.ID != "one" || !p.MatchMX("mx.b.test") {
			t.Fatalf("lookup %d: %+v, %v", i, p, err)
		}
		e.clock.Advance(STSRecheck / 2) // rechecks the record, keeps the policy
	}
	if n := ps.hits.Load(); n != 1 {
		t.Fatalf("%d fetches for one id, want 1", n)
	}

	// A new id: fetched again, the new policy in force.
	ps.body.Store("version: STSv1\nmode: testing\nmx: *.b.test\nmax_age: 3600\n")
	e.dns.Remove("_mta-sts.b.test")
	e.dns.AddTXT("_mta-sts.b.test", "v=STSv1; id=two")
	e.clock.Advance(STSRecheck)
	p, err := s.Policy(ctx, "b.test")
	if err != nil || p == nil || p.ID != "two" || p.Mode != STSTesting || ps.hits.Load() != 2 {
		t.Fatalf("after the id changed: %+v, %v, %d fetches", p, err, ps.hits.Load())
	}

	// A third id whose policy does not fetch, then no record: the cached
	// policy stands until max_age.
	bad := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", http.StatusServiceUnavailable) })
	ps.handle.Store(&bad)
	e.dns.Remove("_mta-sts.b.test")
	e.dns.AddTXT("_mta-sts.b.test", "v=STSv1; id=three")
	e.clock.Advance(STSRecheck)
	if p, err := s.Policy(ctx, "b.test"); err != nil || p == nil || p.ID != "two" {
		t.Fatalf("fetch failed: %+v, %v; want the cached policy", p, err)
	}
	e.dns.Remove("_mta-sts.b.test")
	e.clock.Advance(STSRecheck)
	if p, err := s.Policy(ctx, "b.test"); err != nil || p == nil || p.ID != "two" {
		t.Fatalf("record gone: %+v, %v; want the cached policy", p, err)
	}
	e.clock.Advance(time.Hour)
	if p, err := s.Policy(ctx, "b.test"); err != nil || p != nil {
		t.Fatalf("past max_age, record gone: %+v, %v; want none", p, err)
	}
}

// TestSTSFetchRefused: what §3.3 forbids is no policy (and an error), never
// a policy: a redirect, another content type, an oversize body, a
// certificate for another name, a 404.
func TestSTSFetchRefused(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	good := "version: STSv1\nmode: enforce\nmx: mx.b.test\nmax_age: 3600\n"
	for _, c := range []struct {
		name   string
		handle http.HandlerFunc
		code   string
	}{
		{"redirect", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://"+r.Host+"/elsewhere", http.StatusFound)
		}, "fetch_failed"},
		{"html", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte(good))
		}, "bad_sts_policy"},
		{"oversize", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Write([]byte(good + "x: " + strings.Repeat("y", STSMaxPolicy) + "\n"))
		}, "response_too_large"},
		{"not-found", http.NotFound, "fetch_failed"},
		{"malformed", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Write([]byte("version: STSv1\nmode: enforce\nmax_age: 3600\n"))
		}, "bad_sts_policy"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dom := c.name + ".test"
			e.dns.AddTXT("_mta-sts."+dom, "v=STSv1; id=1")
			ps := &policyServer{}
			ps.handle.Store(&c.handle)
			s := e.sts(e.serve("mta-sts."+dom, ps))
			p, err := s.Policy(ctx, dom)
			if p != nil || errs.CodeOf(err) != c.code {
				t.Fatalf("%+v, %v (code %s); want no policy and %s", p, err, errs.CodeOf(err), c.code)
			}
		})
	}
	t.Run("wrong-name", func(t *testing.T) {
		ps := &policyServer{}
		ps.body.Store(good)
		port := e.serve("other.test", ps) // a certificate for other.test only
		e.dns.AddA("mta-sts.wrong.test", "127.0.0.1")
		e.dns.AddTXT("_mta-sts.wrong.test", "v=STSv1; id=1")
		p, err := e.sts(port).Policy(ctx, "wrong.test")
		if p != nil || errs.CodeOf(err) != "fetch_failed" || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("%+v, %v; want a certificate error", p, err)
		}
		if ps.hits.Load() != 0 {
			t.Fatalf("the policy was served over a certificate for another name")
		}
	})
}
