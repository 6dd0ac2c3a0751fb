package authz_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/pullmail/pullmail/authz"
	"github.com/pullmail/pullmail/federation"
	"github.com/pullmail/pullmail/placeholder"
)

// BenchmarkTokenExchangeAssertion measures leg (a) of the Cross-Domain
// Authorization Grant at the token endpoint, in process (the handler's
// ServeHTTP, no TLS, no network): each request authenticates the MTA by a
// fresh private_key_jwt assertion, verifies a fresh DPoP proof, verifies the
// send grant (and its family), parses the envelope headers, computes eht and
// signs the assertion; both replay caches write to SQLite.
//
//   - server: the client assertions and DPoP proofs are made before the
//     timer starts; the figure is the server's alone.
//   - with-client: they are made inside the timer, as a client would.
//
// Run with -cpu 1 for the one-core figure (assertions/s).
func BenchmarkTokenExchangeAssertion(b *testing.B) {
	e := newEnv(b, "a.test")
	m := newMTA(b, "mta@a.test")
	m.register(b, e.d)
	msgid := "<m1@a.test>"
	grant, err := e.d.Server.Authz.IssueSendGrant(e.user, m.id, msgid)
	if err != nil {
		b.Fatal(err)
	}
	h := firstHop(b, "Alice <alice@a.test>", "Bob <bob@b.test>", msgid)
	base := url.Values{"grant_type": {federation.GrantTokenExch}, "subject_token": {grant},
		"subject_token_type": {federation.TokenTypeAccess}, "requested_token_type": {federation.TokenTypeJWT},
		"audience": {"b.test"}, "envelope_headers": {jsonString(b, h)},
		"ehl": {jsonString(b, placeholder.FirstHop.RequiredEHL())}}
	handler := e.d.Server.Authz.Handler()
	type req struct{ body, proof string }
	make1 := func() req {
		f := m.auth(b, e.d.URL, e.clock.Now())
		for k, v := range base {
			f[k] = v
		}
		return req{f.Encode(), dpopOf(m.proof(b, e.d.URL, e.clock.Now()))}
	}
	do := func(r req) {
		hr := httptest.NewRequest(http.MethodPost, authz.PathToken, strings.NewReader(r.body))
		hr.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		hr.Header.Set("DPoP", r.proof)
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, hr)
		if rec.Code != http.StatusOK {
			b.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
	do(make1()) // warm up: caches, statements, the key file

	b.Run("server", func(b *testing.B) {
		reqs := make([]req, b.N)
		for i := range reqs {
			reqs[i] = make1()
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			do(reqs[i])
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "assertions/s")
	})
	b.Run("with-client", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			do(make1())
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "assertions/s")
	})
}
