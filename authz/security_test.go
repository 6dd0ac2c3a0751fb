package authz_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/pullmail/pullmail/authz"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/federation"
	"github.com/pullmail/pullmail/keys"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/server"
)

// ---- the authorization endpoint and the login page ----

// TestAuthorizeBadRedirect: an unregistered redirect URI (or client) gets an
// error page, never a redirect (RFC 9700 §4.11), and no code.
func TestAuthorizeBadRedirect(t *testing.T) {
	e := newEnv(t, "a.test")
	for _, ru := range []string{
		"https://app.test/cb/extra", "https://app.test/cb?x", "https://app.test/cb?x=1", "https://app.test/cb#f",
		"https://app.test@evil.test/cb", "https://app.test.evil/cb", "https://evil.test/cb", "HTTPS://APP.TEST/cb",
		"https://app.test/CB", "https://app.test:443/cb", "https://app.test/cb/", "https://app.test/./cb", "",
	} {
		t.Run(ru, func(t *testing.T) {
			q := url.Values{"response_type": {"code"}, "client_id": {webmail}, "redirect_uri": {ru}, "state": {"s"},
				"code_challenge": {rfcChallenge}, "code_challenge_method": {"S256"}}
			e.unchanged(t, func() {
				res, err := e.hc.Get(e.d.URL + authz.PathAuthorize + "?" + q.Encode())
				if err != nil {
					t.Fatal(err)
				}
				body := readAll(t, res)
				if res.StatusCode != 400 || res.Header.Get("Location") != "" || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
					t.Errorf("GET: %d Location=%q, want a 400 error page", res.StatusCode, res.Header.Get("Location"))
				}
				if strings.Contains(body, `name="csrf"`) {
					t.Error("the error page offers the login form")
				}
			})
			// The same through the form POST, signed in with a valid CSRF token.
			b := e.browser(t)
			res, err := b.Get(e.authURL(rfcChallenge, "s"))
			if err != nil {
				t.Fatal(err)
			}
			f := formFields(readAll(t, res))
			f.Set("redirect_uri", ru)
			f.Set("username", e.user)
			f.Set("password", password)
			e.unchanged(t, func() {
				res, err := b.PostForm(e.d.URL+authz.PathAuthorize, f)
				if err != nil {
					t.Fatal(err)
				}
				readAll(t, res)
				if res.StatusCode != 400 || res.Header.Get("Location") != "" {
					t.Errorf("POST: %d Location=%q, want a 400 error page", res.StatusCode, res.Header.Get("Location"))
				}
			})
		})
	}
	t.Run("unknown client", func(t *testing.T) {
		q := url.Values{"response_type": {"code"}, "client_id": {"evil"}, "redirect_uri": {"https://evil.test/cb"}}
		res, err := e.hc.Get(e.d.URL + authz.PathAuthorize + "?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, res)
		if res.StatusCode != 400 || res.Header.Get("Location") != "" {
			t.Errorf("%d Location=%q, want a 400 error page", res.StatusCode, res.Header.Get("Location"))
		}
	})
}

// TestAuthorizeErrorRedirect: with a registered redirect URI, a bad request
// goes back to the client with the RFC 6749 §4.1.2.1 error, state and iss.
func TestAuthorizeErrorRedirect(t *testing.T) {
	e := newEnv(t, "a.test")
	base := func() url.Values {
		return url.Values{"response_type": {"code"}, "client_id": {webmail}, "redirect_uri": {webmailCB}, "state": {"s1"},
			"code_challenge": {rfcChallenge}, "code_challenge_method": {"S256"}}
	}
	for _, tc := range []struct {
		name string
		edit func(url.Values)
		want string
	}{
		{"response_type=token (implicit)", func(q url.Values) { q.Set("response_type", "token") }, "unsupported_response_type"},
		{"response_type=code token", func(q url.Values) { q.Set("response_type", "code token") }, "unsupported_response_type"},
		{"PKCE plain", func(q url.Values) { q.Set("code_challenge_method", "plain") }, "invalid_request"},
		{"PKCE method missing (plain)", func(q url.Values) { q.Del("code_challenge_method") }, "invalid_request"},
		{"PKCE missing", func(q url.Values) { q.Del("code_challenge"); q.Del("code_challenge_method") }, "invalid_request"},
		{"challenge too short", func(q url.Values) { q.Set("code_challenge", rfcChallenge[:42]) }, "invalid_request"},
		{"challenge not base64url", func(q url.Values) { q.Set("code_challenge", rfcChallenge[:42]+"+") }, "invalid_request"},
		{"scope beyond mail", func(q url.Values) { q.Set("scope", "mail internet_mail") }, "invalid_scope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := base()
			tc.edit(q)
			e.unchanged(t, func() {
				res, err := e.hc.Get(e.d.URL + authz.PathAuthorize + "?" + q.Encode())
				if err != nil {
					t.Fatal(err)
				}
				readAll(t, res)
				loc, err := url.Parse(res.Header.Get("Location"))
				if err != nil || res.StatusCode != http.StatusSeeOther {
					t.Fatalf("%d %q, want a 303 redirect", res.StatusCode, res.Header.Get("Location"))
				}
				lq := loc.Query()
				if got := loc.Scheme + "://" + loc.Host + loc.Path; got != webmailCB || lq.Get("error") != tc.want ||
					lq.Get("state") != "s1" || lq.Get("iss") != e.d.URL || lq.Get("code") != "" || lq.Get("access_token") != "" {
					t.Errorf("redirect %s, want %s?error=%s&state=s1&iss=...", loc, webmailCB, tc.want)
				}
			})
		})
	}
	t.Run("repeated parameter", func(t *testing.T) {
		q := base()
		q.Add("redirect_uri", "https://evil.test/cb")
		res, err := e.hc.Get(e.d.URL + authz.PathAuthorize + "?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, res)
		if res.StatusCode != 400 || res.Header.Get("Location") != "" {
			t.Errorf("%d Location=%q, want a 400 error page", res.StatusCode, res.Header.Get("Location"))
		}
	})
}

// TestLoginPageHeaders: no framing, no referrer, no caching, no CORS.
func TestLoginPageHeaders(t *testing.T) {
	e := newEnv(t, "a.test")
	req, _ := http.NewRequest("GET", e.authURL(rfcChallenge, "s"), nil)
	req.Header.Set("Origin", "https://evil.test")
	res, err := e.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, res)
	h := res.Header
	if res.StatusCode != 200 || !strings.Contains(body, `type="password"`) {
		t.Fatalf("login page: %d", res.StatusCode)
	}
	if h.Get("Referrer-Policy") != "no-referrer" {
		t.Errorf("Referrer-Policy %q", h.Get("Referrer-Policy"))
	}
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("CSP %q lacks frame-ancestors 'none'", csp)
	}
	if h.Get("X-Frame-Options") != "DENY" || h.Get("Cache-Control") != "no-store" {
		t.Errorf("X-Frame-Options %q, Cache-Control %q", h.Get("X-Frame-Options"), h.Get("Cache-Control"))
	}
	if h.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("CORS on /authorize: %q", h.Get("Access-Control-Allow-Origin"))
	}
	var csrf *http.Cookie
	for _, c := range res.Cookies() {
		if strings.HasPrefix(c.Name, "__Host-") {
			csrf = c
		}
	}
	if csrf == nil || !csrf.Secure || !csrf.HttpOnly || csrf.SameSite != http.SameSiteStrictMode || csrf.Path != "/" {
		t.Errorf("CSRF cookie %+v", csrf)
	}
	// The redirect after a sign-in is a 303 that sends no referrer.
	b := e.browser(t)
	res, err = b.Get(e.authURL(rfcChallenge, "s"))
	if err != nil {
		t.Fatal(err)
	}
	f := formFields(readAll(t, res))
	f.Set("username", e.user)
	f.Set("password", password)
	res, err = b.PostForm(e.d.URL+authz.PathAuthorize, f)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, res)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Referrer-Policy") != "no-referrer" {
		t.Errorf("after POST: %d, Referrer-Policy %q; want 303, no-referrer", res.StatusCode, res.Header.Get("Referrer-Policy"))
	}
}

// TestLoginCSRF: a sign-in without the form's CSRF token and cookie pair is
// refused with the form again, and issues no code.
func TestLoginCSRF(t *testing.T) {
	e := newEnv(t, "a.test")
	victim := e.browser(t)
	res, err := victim.Get(e.authURL(rfcChallenge, "s"))
	if err != nil {
		t.Fatal(err)
	}
	good := formFields(readAll(t, res))
	good.Set("username", e.user)
	good.Set("password", password)

	for _, tc := range []struct {
		name   string
		client *http.Client
		edit   func(url.Values)
	}{
		{"no cookie", e.browser(t), func(url.Values) {}},
		{"wrong token", victim, func(f url.Values) { f.Set("csrf", strings.Repeat("A", 43)) }},
		{"no token", victim, func(f url.Values) { f.Del("csrf") }},
		{"empty token", victim, func(f url.Values) { f.Set("csrf", "") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := url.Values{}
			for k, v := range good {
				f[k] = append([]string(nil), v...)
			}
			tc.edit(f)
			e.unchanged(t, func() {
				res, err := tc.client.PostForm(e.d.URL+authz.PathAuthorize, f)
				if err != nil {
					t.Fatal(err)
				}
				readAll(t, res)
				if res.StatusCode != http.StatusForbidden || res.Header.Get("Location") != "" {
					t.Errorf("%d Location=%q, want 403 and no redirect", res.StatusCode, res.Header.Get("Location"))
				}
			})
		})
	}
	// The device page checks it too.
	e.unchanged(t, func() {
		res, err := e.browser(t).PostForm(e.d.URL+authz.PathDevice, url.Values{"csrf": {strings.Repeat("A", 43)},
			"user_code": {"BCDF-GHJK"}, "username": {e.user}, "password": {password}})
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, res)
		if res.StatusCode != http.StatusForbidden {
			t.Errorf("device page without CSRF cookie: %d, want 403", res.StatusCode)
		}
	})
}

// TestLoginRateLimit: after 5 failures for an address, even the right
// password gets 429 until the window passes.
func TestLoginRateLimit(t *testing.T) {
	e := newEnv(t, "a.test")
	b := e.browser(t)
	res, err := b.Get(e.authURL(rfcChallenge, "s"))
	if err != nil {
		t.Fatal(err)
	}
	f := formFields(readAll(t, res))
	f.Set("username", e.user)
	try := func(pass string) *http.Response {
		f.Set("password", pass)
		res, err := b.PostForm(e.d.URL+authz.PathAuthorize, f)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, res)
		return res
	}
	e.unchanged(t, func() {
		for i := range 5 {
			if res := try("wrong"); res.StatusCode != http.StatusUnauthorized || res.Header.Get("Location") != "" {
				t.Fatalf("failure %d: %d, want 401", i+1, res.StatusCode)
			}
		}
		if res := try(password); res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Location") != "" {
			t.Fatalf("after 5 failures: %d, want 429", res.StatusCode)
		}
		// The address is limited whatever its spelling.
		f.Set("username", strings.ToUpper(e.user))
		if res := try(password); res.StatusCode != http.StatusTooManyRequests {
			t.Errorf("upper-case address after 5 failures: %d, want 429", res.StatusCode)
		}
		f.Set("username", e.user)
	})
	e.clock.Advance(16 * time.Minute)
	if res := try(password); res.StatusCode != http.StatusSeeOther {
		t.Errorf("after the window: %d, want 303", res.StatusCode)
	}
}

// ---- the token endpoint ----

// TestTokenRequestRefusals: requests refused before any grant is looked at.
func TestTokenRequestRefusals(t *testing.T) {
	e := newEnv(t, "a.test")
	v := newVerifier()
	code := e.code(t, s256(v))
	good := func() url.Values {
		return url.Values{"grant_type": {"authorization_code"}, "client_id": {webmail}, "code": {code},
			"code_verifier": {v}, "redirect_uri": {webmailCB}}
	}
	for _, tc := range []struct {
		name   string
		edit   func(url.Values)
		query  string
		hdr    http.Header
		status int
		want   string
	}{
		{"password grant", func(f url.Values) {
			f.Set("grant_type", "password")
			f.Set("username", e.user)
			f.Set("password", password)
		}, "", nil, 400, "unsupported_grant_type"},
		{"implicit", func(f url.Values) { f.Set("grant_type", "implicit") }, "", nil, 400, "unsupported_grant_type"},
		{"client_credentials", func(f url.Values) { f.Set("grant_type", "client_credentials") }, "", nil, 400, "unsupported_grant_type"},
		{"no grant_type", func(f url.Values) { f.Del("grant_type") }, "", nil, 400, "invalid_request"},
		{"parameters in the URL", func(url.Values) {}, "access_token=x", nil, 400, "invalid_request"},
		{"repeated parameter", func(f url.Values) { f.Add("code", "other") }, "", nil, 400, "invalid_request"},
		{"unknown client", func(f url.Values) { f.Set("client_id", "evil") }, "", nil, 401, "invalid_client"},
		{"client_secret_basic", func(url.Values) {}, "", http.Header{"Authorization": {"Basic d2VibWFpbDp4"}}, 401, "invalid_client"},
		{"client assertion for a public client", func(f url.Values) {
			f.Set("client_assertion_type", federation.ClientAssertionJB)
			f.Set("client_assertion", "a.b.c")
		}, "", nil, 401, "invalid_client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := good()
			tc.edit(f)
			e.unchanged(t, func() {
				path := authz.PathToken
				if tc.query != "" {
					path += "?" + tc.query
				}
				wantOAuthError(t, e.post(t, path, f, tc.hdr), tc.status, tc.want)
			})
		})
	}
	// None of that touched the code.
	if r := e.redeem(t, code, v, nil); r.Status != 200 {
		t.Fatalf("the code after refused requests: %+v", r)
	}
}

// TestCodeRefusals: each failed redemption answers invalid_grant and issues
// nothing; from the first check on the code, the code is burnt (RFC 7636
// §4.6, SECURITY.md: a failed verifier burns it).
func TestCodeRefusals(t *testing.T) {
	e := newEnv(t, "a.test")
	for _, tc := range []struct {
		name string
		edit func(f url.Values)
		hdr  http.Header
		wait time.Duration
	}{
		{"wrong verifier", func(f url.Values) { f.Set("code_verifier", newVerifier()) }, nil, 0},
		{"no verifier (downgrade)", func(f url.Values) { f.Del("code_verifier") }, nil, 0},
		{"verifier of 42", func(f url.Values) { f.Set("code_verifier", f.Get("code_verifier")[:42]) }, nil, 0},
		{"verifier of 129", func(f url.Values) { f.Set("code_verifier", strings.Repeat("a", 129)) }, nil, 0},
		{"verifier with +", func(f url.Values) { f.Set("code_verifier", f.Get("code_verifier")[:42]+"+") }, nil, 0},
		{"verifier with space", func(f url.Values) { f.Set("code_verifier", f.Get("code_verifier")[:42]+" ") }, nil, 0},
		{"plain: the challenge as verifier", func(f url.Values) { f.Set("code_verifier", s256(f.Get("code_verifier"))) }, nil, 0},
		{"redirect_uri mismatch", func(f url.Values) { f.Set("redirect_uri", webmailCB+"/extra") }, nil, 0},
		{"redirect_uri missing", func(f url.Values) { f.Del("redirect_uri") }, nil, 0},
		{"another client", func(f url.Values) { f.Set("client_id", server.CLIClientID) }, nil, 0},
		{"expired code", func(f url.Values) {}, nil, 2 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newVerifier()
			code := e.code(t, s256(v))
			f := url.Values{"grant_type": {"authorization_code"}, "client_id": {webmail}, "code": {code},
				"code_verifier": {v}, "redirect_uri": {webmailCB}}
			tc.edit(f)
			e.clock.Advance(tc.wait)
			before := e.state(t)
			wantOAuthError(t, e.post(t, authz.PathToken, f, tc.hdr), 400, "invalid_grant")
			// Burnt: the right request fails now, and nothing was issued.
			wantOAuthError(t, e.redeem(t, code, v, nil), 400, "invalid_grant")
			after := e.state(t)
			if grants(before) != grants(after) {
				t.Errorf("a refused redemption added grants: %s → %s", before, after)
			}
		})
	}
	t.Run("unknown code", func(t *testing.T) {
		e.unchanged(t, func() { wantOAuthError(t, e.redeem(t, "pmc_nope", newVerifier(), nil), 400, "invalid_grant") })
	})
	t.Run("refresh token as code", func(t *testing.T) {
		tok := e.login(t, nil)
		e.unchanged(t, func() { wantOAuthError(t, e.redeem(t, tok.RefreshToken, newVerifier(), nil), 400, "invalid_grant") })
	})
}

// grants is the grant count of a state digest.
func grants(state string) string { return strings.Fields(state)[0] }

// TestCodeReuse: the second redemption of a code fails and revokes what the
// first issued: its access token stops at the mailbox, its refresh token
// too (RFC 6749 §4.1.2, RFC 9700 §4.14).
func TestCodeReuse(t *testing.T) {
	e := newEnv(t, "a.test")
	v := newVerifier()
	code := e.code(t, s256(v))
	first := e.redeem(t, code, v, nil)
	if first.Status != 200 {
		t.Fatalf("first redemption: %+v", first)
	}
	e.wantMe(t, bearer(first.AccessToken))
	wantOAuthError(t, e.redeem(t, code, v, nil), 400, "invalid_grant")
	e.wantRefused(t, bearer(first.AccessToken), "invalid_token")
	wantOAuthError(t, e.refresh(t, first.RefreshToken, nil), 400, "invalid_grant")
	if err := authenticate(e, bearer(first.AccessToken)); errs.CodeOf(err) != "invalid_token" {
		t.Errorf("Authenticator: %v, want invalid_token", err)
	}
}

// TestRefreshReuse: presenting a rotated-out refresh token revokes the
// family; refresh tokens are per client.
func TestRefreshReuse(t *testing.T) {
	e := newEnv(t, "a.test")
	tok := e.login(t, nil)
	other := e.login(t, nil)
	r2 := e.refresh(t, tok.RefreshToken, nil)
	if r2.Status != 200 || r2.RefreshToken == tok.RefreshToken {
		t.Fatalf("refresh: %+v", r2)
	}
	e.wantMe(t, bearer(r2.AccessToken))

	// Another client presenting it: refused, nothing revoked.
	e.unchanged(t, func() {
		wantOAuthError(t, e.post(t, authz.PathToken, url.Values{"grant_type": {"refresh_token"},
			"client_id": {server.CLIClientID}, "refresh_token": {r2.RefreshToken}}, nil), 400, "invalid_grant")
		wantOAuthError(t, e.post(t, authz.PathToken, url.Values{"grant_type": {"refresh_token"}, "client_id": {webmail},
			"refresh_token": {r2.RefreshToken}, "scope": {"mail internet_mail"}}, nil), 400, "invalid_scope")
		wantOAuthError(t, e.refresh(t, "pmr_unknown", nil), 400, "invalid_grant")
	})
	e.wantMe(t, bearer(r2.AccessToken))

	wantOAuthError(t, e.refresh(t, tok.RefreshToken, nil), 400, "invalid_grant") // reuse
	e.wantRefused(t, bearer(r2.AccessToken), "invalid_token")
	e.wantRefused(t, bearer(tok.AccessToken), "invalid_token")
	wantOAuthError(t, e.refresh(t, r2.RefreshToken, nil), 400, "invalid_grant")
	// Another sign-in's family is untouched.
	e.wantMe(t, bearer(other.AccessToken))
	if r := e.refresh(t, other.RefreshToken, nil); r.Status != 200 {
		t.Errorf("another family: %+v", r)
	}

	// An expired refresh token.
	old := e.login(t, nil)
	e.clock.Advance(31 * 24 * time.Hour)
	e.unchanged(t, func() { wantOAuthError(t, e.refresh(t, old.RefreshToken, nil), 400, "invalid_grant") })
}

// ---- DPoP at the token endpoint ----

// proofKey is a raw P-256 key for proofs no honest client makes.
type proofKey struct{ priv *ecdsa.PrivateKey }

func newProofKey(t testing.TB) proofKey {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return proofKey{priv}
}

func (k proofKey) jwk(private bool) map[string]any {
	var key any = &k.priv.PublicKey
	if private {
		key = k.priv
	}
	b, _ := jose.JSONWebKey{Key: key}.MarshalJSON()
	var m map[string]any
	json.Unmarshal(b, &m)
	return m
}

func (k proofKey) sign(in []byte) []byte {
	d := sha256.Sum256(in)
	r, s, err := ecdsa.Sign(rand.Reader, k.priv, d[:])
	if err != nil {
		panic(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return sig
}

// craftProof makes a DPoP proof for POST to the token endpoint, edited.
func (e *env) craftProof(k proofKey, edit func(hdr, cl map[string]any)) string {
	hdr := map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": k.jwk(false)}
	cl := map[string]any{"jti": newVerifier(), "htm": "POST", "htu": e.d.URL + authz.PathToken, "iat": e.clock.Now().Unix()}
	edit(hdr, cl)
	return rawJWS(hdr, cl, k.sign)
}

// dpopProofCases are bad proofs for a request to path with method; each
// returns the DPoP header values.
func dpopProofCases(t *testing.T, e *env, method, path, token string) []struct {
	name  string
	proof func() []string
} {
	k := newDPoPKey(t)
	pk := newProofKey(t)
	at := func(m, u string, when time.Time) []string {
		p, err := k.Proof(m, u, token, "", when)
		if err != nil {
			t.Fatal(err)
		}
		return []string{p}
	}
	now := e.clock.Now
	u := e.d.URL + path
	host, port, _ := strings.Cut(strings.TrimPrefix(e.d.URL, "https://"), ":")
	craft := func(edit func(hdr, cl map[string]any)) func() []string {
		return func() []string {
			return []string{e.craftProof(pk, func(hdr, cl map[string]any) {
				cl["htm"], cl["htu"] = method, u
				if token != "" {
					h := sha256.Sum256([]byte(token))
					cl["ath"] = base64.RawURLEncoding.EncodeToString(h[:])
				}
				edit(hdr, cl)
			})}
		}
	}
	other := "POST"
	if method == "POST" {
		other = "GET"
	}
	return []struct {
		name  string
		proof func() []string
	}{
		{"two DPoP headers", func() []string { return append(at(method, u, now()), at(method, u, now())...) }},
		{"empty header", func() []string { return []string{""} }},
		{"htm of another method", func() []string { return at(other, u, now()) }},
		{"htu of another host", func() []string { return at(method, "https://localhost:"+port+path, now()) }},
		{"htu of another port", func() []string { return at(method, "https://"+host+":1"+path, now()) }},
		{"htu of another scheme", func() []string { return at(method, "http://"+host+":"+port+path, now()) }},
		{"htu of another path", func() []string { return at(method, e.d.URL+path+"x", now()) }},
		{"htu with user info", craft(func(_, cl map[string]any) { cl["htu"] = "https://" + host + "@evil.test" + path })},
		{"iat 10 minutes ago", func() []string { return at(method, u, now().Add(-10*time.Minute)) }},
		{"iat 10 minutes ahead", func() []string { return at(method, u, now().Add(10*time.Minute)) }},
		{"no jti", craft(func(_, cl map[string]any) { delete(cl, "jti") })},
		{"no htm", craft(func(_, cl map[string]any) { delete(cl, "htm") })},
		{"no htu", craft(func(_, cl map[string]any) { delete(cl, "htu") })},
		{"no iat", craft(func(_, cl map[string]any) { delete(cl, "iat") })},
		{"typ JWT", craft(func(hdr, _ map[string]any) { hdr["typ"] = "JWT" })},
		{"typ at+jwt", craft(func(hdr, _ map[string]any) { hdr["typ"] = "at+jwt" })},
		{"alg none", func() []string {
			return []string{rawJWS(map[string]any{"typ": "dpop+jwt", "alg": "none", "jwk": pk.jwk(false)},
				map[string]any{"jti": newVerifier(), "htm": method, "htu": u, "iat": now().Unix()},
				func([]byte) []byte { return nil })}
		}},
		{"HS256 with a kty=oct jwk", func() []string {
			secret := []byte("0123456789abcdef0123456789abcdef")
			return []string{rawJWS(map[string]any{"typ": "dpop+jwt", "alg": "HS256",
				"jwk": map[string]any{"kty": "oct", "k": base64.RawURLEncoding.EncodeToString(secret)}},
				map[string]any{"jti": newVerifier(), "htm": method, "htu": u, "iat": now().Unix()},
				func(in []byte) []byte { m := hmac.New(sha256.New, secret); m.Write(in); return m.Sum(nil) })}
		}},
		{"jwk with d", craft(func(hdr, _ map[string]any) { hdr["jwk"] = pk.jwk(true) })},
		{"no jwk", craft(func(hdr, _ map[string]any) { delete(hdr, "jwk") })},
		{"signed by another key than jwk", craft(func(hdr, _ map[string]any) { hdr["jwk"] = newProofKey(t).jwk(false) })},
		{"crit", craft(func(hdr, _ map[string]any) { hdr["crit"] = []string{"b64"}; hdr["b64"] = false })},
		{"over 8 KiB", craft(func(_, cl map[string]any) { cl["pad"] = strings.Repeat("x", 9000) })},
		{"duplicate alg", func() []string {
			p := at(method, u, now())[0]
			h, rest, _ := strings.Cut(p, ".")
			hb, _ := base64.RawURLEncoding.DecodeString(h)
			dup := strings.Replace(string(hb), `"alg":"ES256"`, `"alg":"ES256","alg":"none"`, 1)
			return []string{base64.RawURLEncoding.EncodeToString([]byte(dup)) + "." + rest}
		}},
		{"a JWE (5 parts)", func() []string { return []string{"a.b.c.d.e"} }},
	}
}

// TestTokenDPoPRefusals: a bad proof at the token endpoint answers
// invalid_dpop_proof and leaves the code redeemable.
func TestTokenDPoPRefusals(t *testing.T) {
	e := newEnv(t, "a.test")
	v := newVerifier()
	code := e.code(t, s256(v))
	for _, tc := range dpopProofCases(t, e, "POST", authz.PathToken, "") {
		t.Run(tc.name, func(t *testing.T) {
			e.unchanged(t, func() {
				wantOAuthError(t, e.redeem(t, code, v, http.Header{"DPoP": tc.proof()}), 400, "invalid_dpop_proof")
			})
		})
	}
	// A proof used once is refused the second time (replay), here for a
	// refresh; the first use succeeds, with a query string on htu.
	k := newDPoPKey(t)
	p, err := k.Proof("POST", e.d.URL+authz.PathToken+"?x=1", "", "", e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	tok := e.redeem(t, code, v, http.Header{"DPoP": {p}})
	if tok.Status != 200 || tok.TokenType != "DPoP" {
		t.Fatalf("redeem after the refusals, htu with a query: %+v", tok)
	}
	e.unchanged(t, func() {
		wantOAuthError(t, e.refresh(t, tok.RefreshToken, http.Header{"DPoP": {p}}), 400, "invalid_dpop_proof")
	})
}

// ---- the mailbox (resource server) ----

// authenticate runs the AS's authenticator directly, for its exact error
// code (the mailbox's auth.Chain reports the last authenticator's).
func authenticate(e *env, hdr http.Header) error {
	r := httptest.NewRequest("GET", "/api/v1/me", nil)
	for k, vs := range hdr {
		for _, v := range vs {
			r.Header.Add(k, v)
		}
	}
	_, err := e.d.Server.Authz.Authenticator().Authenticate(context.Background(), r)
	return err
}

// TestMailboxTokenRefusals: access tokens the mailbox must refuse.
func TestMailboxTokenRefusals(t *testing.T) {
	e := newEnv(t, "a.test")
	b := newEnv(t, "b.test")
	other := newProofKey(t)
	kidOf := func(t *testing.T, tok string) string { return headerOf(t, tok)["kid"].(string) }
	good := e.sign(t, federation.TypAccessToken, e.accessClaims())
	e.wantMe(t, bearer(good))
	pubJWK, _ := json.Marshal(e.d.Server.Keys.PublicJWKS().Keys[0])
	pubDER, _ := x509.MarshalPKIXPublicKey(e.d.Server.Keys.PublicJWKS().Keys[0].Key)
	hs256 := func(secret []byte) string {
		return rawJWS(map[string]any{"alg": "HS256", "typ": "at+jwt", "kid": kidOf(t, good)}, e.accessClaims(),
			func(in []byte) []byte { m := hmac.New(sha256.New, secret); m.Write(in); return m.Sum(nil) })
	}
	edit := func(f func(*federation.Claims)) string {
		c := e.accessClaims()
		f(&c)
		return e.sign(t, federation.TypAccessToken, c)
	}
	now := e.clock.Now()
	revokedFam := "fam-revoked"
	ctx := context.Background()
	if err := e.d.Server.Meta.Update(ctx, func(tx meta.Tx) error {
		return tx.RevokeFamily(ctx, revokedFam, now.Add(time.Hour))
	}); err != nil {
		t.Fatal(err)
	}
	bTok := b.login(t, nil)
	sendGrant, err := e.d.Server.Authz.IssueSendGrant(e.user, "mta@a.test", "<m@a.test>")
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct{ name, token string }{
		{"alg none", rawJWS(map[string]any{"alg": "none", "typ": "at+jwt", "kid": kidOf(t, good)}, e.accessClaims(),
			func([]byte) []byte { return nil })},
		{"alg None", rawJWS(map[string]any{"alg": "None", "typ": "at+jwt", "kid": kidOf(t, good)}, e.accessClaims(),
			func([]byte) []byte { return nil })},
		{"HS256 keyed by the public JWK", hs256(pubJWK)},
		{"HS256 keyed by the public key DER", hs256(pubDER)},
		{"unknown kid", rawJWS(map[string]any{"alg": "ES256", "typ": "at+jwt", "kid": "unknown"}, e.accessClaims(), other.sign)},
		{"kid path traversal", rawJWS(map[string]any{"alg": "ES256", "typ": "at+jwt", "kid": "../../etc/passwd"}, e.accessClaims(), other.sign)},
		{"kid SQL", rawJWS(map[string]any{"alg": "ES256", "typ": "at+jwt", "kid": "' OR 1=1--"}, e.accessClaims(), other.sign)},
		{"kid of 10 KB", rawJWS(map[string]any{"alg": "ES256", "typ": "at+jwt", "kid": strings.Repeat("k", 10<<10)}, e.accessClaims(), other.sign)},
		{"jku", rawJWS(map[string]any{"alg": "ES256", "typ": "at+jwt", "kid": kidOf(t, good), "jku": "https://evil.test/jwks"}, e.accessClaims(), other.sign)},
		{"right kid, another key's signature", rawJWS(map[string]any{"alg": "ES256", "typ": "at+jwt", "kid": kidOf(t, good)}, e.accessClaims(), other.sign)},
		{"tampered payload", func() string {
			h, rest, _ := strings.Cut(good, ".")
			_, sig, _ := strings.Cut(rest, ".")
			c := e.accessClaims()
			c.Subject = "root@a.test"
			p, _ := json.Marshal(c)
			return h + "." + base64.RawURLEncoding.EncodeToString(p) + "." + sig
		}()},
		{"expired", edit(func(c *federation.Claims) {
			c.IssuedAt = keys.NewNumericDate(now.Add(-time.Hour))
			c.Expiry = keys.NewNumericDate(now.Add(-time.Minute))
		})},
		{"no exp", edit(func(c *federation.Claims) { c.Expiry = 0 })},
		{"not valid yet (nbf)", edit(func(c *federation.Claims) { c.NotBefore = keys.NewNumericDate(now.Add(time.Hour)) })},
		{"iat in the future", edit(func(c *federation.Claims) {
			c.IssuedAt = keys.NewNumericDate(now.Add(time.Hour))
			c.Expiry = keys.NewNumericDate(now.Add(time.Hour + time.Minute))
		})},
		{"exp a year away", edit(func(c *federation.Claims) { c.Expiry = keys.NewNumericDate(now.Add(365 * 24 * time.Hour)) })},
		{"aud another server", edit(func(c *federation.Claims) { c.Audience = keys.Audience{b.d.URL} })},
		{"aud array with a stranger", edit(func(c *federation.Claims) { c.Audience = keys.Audience{e.d.URL, "https://evil.test"} })},
		{"no aud", edit(func(c *federation.Claims) { c.Audience = nil })},
		{"iss another server", edit(func(c *federation.Claims) { c.Issuer = b.d.URL })},
		{"scope not mail", edit(func(c *federation.Claims) { c.Scope = federation.ScopeFetch })},
		{"revoked family", edit(func(c *federation.Claims) { c.Family = revokedFam })},
		{"unknown user", edit(func(c *federation.Claims) { c.Subject = "nobody@a.test" })},
		{"no uid (a token of before uid)", edit(func(c *federation.Claims) { c.UserID = 0 })},
		{"uid of another user (a deleted one)", edit(func(c *federation.Claims) { c.UserID = e.uid + 1000 })},
		{"typ JWT", e.sign(t, "JWT", e.accessClaims())},
		{"typ dpop+jwt", e.sign(t, "dpop+jwt", e.accessClaims())},
		{"an assertion", e.sign(t, federation.TypAssertion, e.accessClaims())},
		{"a send grant (scope internet_mail, 5 days)", sendGrant},
		{"another domain's access token", bTok.AccessToken},
		{"many dots", strings.Repeat(".", 1000)},
		{"a JWE (5 parts)", "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.wantRefused(t, bearer(tc.token), "invalid_token")
			err := authenticate(e, bearer(tc.token))
			t.Logf("refused: %v", err)
			if errs.CodeOf(err) != "invalid_token" || errs.KindOf(err) != errs.Unauthorized {
				t.Errorf("Authenticator: %v, want invalid_token", err)
			}
		})
	}

	t.Run("token in the URL", func(t *testing.T) {
		r := e.me(t, e.d.URL+"/api/v1/me?access_token="+url.QueryEscape(good), nil)
		if r.Status != 401 || r.Code != "missing_token" {
			t.Errorf("?access_token=: %d %q, want 401 missing_token", r.Status, r.Code)
		}
	})
	t.Run("two Authorization headers", func(t *testing.T) {
		e.wantRefused(t, http.Header{"Authorization": {"Bearer " + good, "Bearer " + good}}, "invalid_token")
	})
	t.Run("Bearer token with the DPoP scheme", func(t *testing.T) {
		e.wantRefused(t, e.dpopAuth(t, newDPoPKey(t), good), "invalid_token")
		h := e.dpopAuth(t, newDPoPKey(t), good)
		if err := authenticate(e, h); errs.CodeOf(err) != "invalid_token" {
			t.Errorf("Authenticator: %v, want invalid_token", err)
		}
	})
}

// TestMailboxDPoP: a DPoP-bound token at the mailbox needs the DPoP scheme
// and a fresh proof by its key, for this URL and method, with ath.
func TestMailboxDPoP(t *testing.T) {
	e := newEnv(t, "a.test")
	k := newDPoPKey(t)
	tok := e.login(t, e.proof(t, k, "POST", authz.PathToken, "")).AccessToken
	e.wantMe(t, e.dpopAuth(t, k, tok))

	type tcase struct {
		name string
		hdr  func() http.Header
		want string // exact code at the Authenticator
	}
	withProof := func(p []string) http.Header {
		return http.Header{"Authorization": {"DPoP " + tok}, "DPoP": p}
	}
	proofBy := func(key interface {
		Proof(string, string, string, string, time.Time) (string, error)
	}, m, u, at string) []string {
		p, err := key.Proof(m, u, at, "", e.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		return []string{p}
	}
	meURL := e.d.URL + "/api/v1/me"
	replayed := e.dpopAuth(t, k, tok)
	e.wantMe(t, replayed)
	cases := []tcase{
		{"downgrade to Bearer", func() http.Header { return bearer(tok) }, "invalid_token"},
		{"downgrade to Bearer with a proof", func() http.Header {
			h := e.dpopAuth(t, k, tok)
			h.Set("Authorization", "Bearer "+tok)
			return h
		}, "invalid_token"},
		{"no proof", func() http.Header { return http.Header{"Authorization": {"DPoP " + tok}} }, "invalid_dpop_proof"},
		{"replayed proof", func() http.Header { return replayed }, "invalid_dpop_proof"},
		{"no ath", func() http.Header { return withProof(proofBy(k, "GET", meURL, "")) }, "invalid_dpop_proof"},
		{"ath of another token", func() http.Header { return withProof(proofBy(k, "GET", meURL, tok+"x")) }, "invalid_dpop_proof"},
		{"valid proof by another key (cnf.jkt)", func() http.Header { return withProof(proofBy(newDPoPKey(t), "GET", meURL, tok)) }, "invalid_token"},
		{"proof for the token endpoint", func() http.Header { return withProof(proofBy(k, "GET", e.d.URL+authz.PathToken, tok)) }, "invalid_dpop_proof"},
	}
	for _, c := range dpopProofCases(t, e, "GET", "/api/v1/me", tok) {
		cases = append(cases, tcase{"proof: " + c.name, func() http.Header { return withProof(c.proof()) }, "invalid_dpop_proof"})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.wantRefused(t, tc.hdr(), tc.want, "invalid_token")
			err := authenticate(e, tc.hdr())
			t.Logf("refused: %v", err)
			if errs.CodeOf(err) != tc.want || errs.KindOf(err) != errs.Unauthorized {
				t.Errorf("Authenticator: %v, want %s", err, tc.want)
			}
		})
	}
	// The proof's htu may carry a query string (RFC 9449 §4.2).
	e.wantMe(t, withProof(proofBy(k, "GET", meURL+"?x=1", tok)))
}
