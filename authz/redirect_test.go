package authz_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/pullmail/pullmail/authz"
	"github.com/pullmail/pullmail/meta"
)

// TestRedirectURIMatches: redirect URIs match exactly (RFC 9700 §2.1),
// except that a loopback IP literal's port is free (RFC 8252 §7.3) while
// its scheme, host, path and query stay exact; never for other hosts, and
// not for "localhost" (RFC 8252 §8.3).
func TestRedirectURIMatches(t *testing.T) {
	for _, tc := range []struct {
		registered, requested string
		want                  bool
	}{
		{"https://app.test/cb", "https://app.test/cb", true},
		{"https://app.test/cb", "https://app.test:8443/cb", false},
		{"https://app.test:443/cb", "https://app.test/cb", false},
		{"http://127.0.0.1/cb", "http://127.0.0.1/cb", true},
		{"http://127.0.0.1/cb", "http://127.0.0.1:53117/cb", true},
		{"http://127.0.0.1/cb", "http://127.0.0.1:1/cb", true},
		{"http://127.0.0.1/cb", "http://127.0.0.1:65535/cb", true},
		{"http://127.0.0.1:8080/cb", "http://127.0.0.1:9090/cb", true},
		{"http://127.0.0.1:8080/cb", "http://127.0.0.1/cb", true},
		{"http://127.0.0.1/cb?app=1", "http://127.0.0.1:5000/cb?app=1", true},
		{"http://127.0.0.1", "http://127.0.0.1:5000", true},
		{"http://[::1]/cb", "http://[::1]:61000/cb", true},
		{"http://[::1]/callback", "http://[::1]/callback", true},
		// The port must be a port.
		{"http://127.0.0.1/cb", "http://127.0.0.1:0/cb", false},
		{"http://127.0.0.1/cb", "http://127.0.0.1:65536/cb", false},
		{"http://127.0.0.1/cb", "http://127.0.0.1:080/cb", false},
		{"http://127.0.0.1/cb", "http://127.0.0.1:/cb", false},
		{"http://127.0.0.1/cb", "http://127.0.0.1:+80/cb", false},
		{"http://127.0.0.1/cb", "http://127.0.0.1:99999999999999999999/cb", false},
		// The rest stays exact.
		{"http://127.0.0.1/cb", "http://127.0.0.1:5000/cb/extra", false},
		{"http://127.0.0.1/cb", "http://127.0.0.1:5000/cb?x", false},
		{"http://127.0.0.1/cb", "http://127.0.0.1:5000/cb#f", false},
		{"http://127.0.0.1/cb", "http://127.0.0.1:5000/CB", false},
		{"http://127.0.0.1/cb", "http://127.0.0.1:5000/", false},
		{"http://127.0.0.1/cb", "https://127.0.0.1:5000/cb", false},
		{"http://127.0.0.1/cb", "HTTP://127.0.0.1:5000/cb", false},
		{"http://127.0.0.1/cb", "http://[::1]:5000/cb", false},
		{"http://[::1]/cb", "http://127.0.0.1:5000/cb", false},
		{"http://127.0.0.1/cb", "http://127.0.0.2:5000/cb", false},
		{"http://127.0.0.1/cb", "http://127.0.0.1.evil.test:5000/cb", false},
		{"http://127.0.0.1/cb", "http://127.0.0.1:5000@evil.test/cb", false},
		{"http://127.0.0.1/cb", "http://127.0.0.1@evil.test/cb", false},
		{"http://127.0.0.1/cb", "http://127.0.0.1:5000:6000/cb", false},
		{"http://127.0.0.1/cb", "http://127.0.0.1:5000\\@evil.test/cb", false},
		{"http://127.0.0.1/cb", "http://0x7f.0.0.1:5000/cb", false},
		{"http://127.0.0.1/cb", "", false},
		{"http://[::1]/cb", "http://[0:0:0:0:0:0:0:1]:5000/cb", false},
		// No loopback relaxation for names, https or other hosts.
		{"http://localhost/cb", "http://localhost:5000/cb", false},
		{"http://localhost:5000/cb", "http://localhost:5000/cb", true},
		{"https://127.0.0.1/cb", "https://127.0.0.1:5000/cb", false},
		{"http://app.test/cb", "http://app.test:5000/cb", false},
		{"http://10.0.0.1/cb", "http://10.0.0.1:5000/cb", false},
	} {
		if got := authz.RedirectURIMatches(tc.registered, tc.requested); got != tc.want {
			t.Errorf("RedirectURIMatches(%q, %q) = %v, want %v", tc.registered, tc.requested, got, tc.want)
		}
	}
}

// TestAuthorizeLoopbackAnyPort: a native client registered with
// http://127.0.0.1/cb signs a user in with the port it listens on; the
// code goes back to that URI, port and all, and redeems only with it.
// localhost gets no such freedom.
func TestAuthorizeLoopbackAnyPort(t *testing.T) {
	e := newEnv(t, "a.test")
	ctx := context.Background()
	const native = "native"
	if err := e.d.Server.Meta.Update(ctx, func(tx meta.Tx) error {
		return tx.AddClient(ctx, meta.Client{ID: native, Name: "Native", Public: true,
			RedirectURIs: []string{"http://127.0.0.1/cb", "http://[::1]/cb", "http://localhost/cb"}})
	}); err != nil {
		t.Fatal(err)
	}
	authURL := func(redirect, challenge string) string {
		q := url.Values{"response_type": {"code"}, "client_id": {native}, "redirect_uri": {redirect}, "state": {"st"},
			"code_challenge": {challenge}, "code_challenge_method": {"S256"}, "scope": {"mail"}}
		return e.d.URL + authz.PathAuthorize + "?" + q.Encode()
	}
	redeem := func(code, verifier, redirect string) tokenResp {
		return e.post(t, authz.PathToken, url.Values{"grant_type": {"authorization_code"}, "client_id": {native},
			"code": {code}, "code_verifier": {verifier}, "redirect_uri": {redirect}}, nil)
	}
	for _, redirect := range []string{"http://127.0.0.1:53117/cb", "http://[::1]:40001/cb"} {
		t.Run(redirect, func(t *testing.T) {
			v := newVerifier()
			loc := e.signIn(t, authURL(redirect, s256(v)), e.user, password)
			code := loc.Query().Get("code")
			if got := loc.Scheme + "://" + loc.Host + loc.Path; got != redirect || code == "" || loc.Query().Get("state") != "st" {
				t.Fatalf("redirected to %s, want %s with a code and the state", loc, redirect)
			}
			r := redeem(code, v, redirect)
			if r.Status != http.StatusOK || r.AccessToken == "" {
				t.Fatalf("redeeming: %+v", r)
			}
			e.wantMe(t, bearer(r.AccessToken))

			// The token request must name the authorization request's URI,
			// port included (RFC 6749 §4.1.3).
			v = newVerifier()
			loc = e.signIn(t, authURL(redirect, s256(v)), e.user, password)
			other := strings.Replace(redirect, ":53117", ":53118", 1)
			other = strings.Replace(other, ":40001", ":40002", 1)
			wantOAuthError(t, redeem(loc.Query().Get("code"), v, other), 400, "invalid_grant")
		})
	}
	for _, bad := range []string{"http://localhost:5000/cb", "http://127.0.0.1:5000/cb/x", "http://127.0.0.1:5000@evil.test/cb"} {
		t.Run(bad, func(t *testing.T) {
			e.unchanged(t, func() {
				res, err := e.hc.Get(authURL(bad, rfcChallenge))
				if err != nil {
					t.Fatal(err)
				}
				readAll(t, res)
				if res.StatusCode != http.StatusBadRequest || res.Header.Get("Location") != "" {
					t.Errorf("%d Location=%q, want a 400 error page", res.StatusCode, res.Header.Get("Location"))
				}
			})
		})
	}
}
