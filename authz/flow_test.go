package authz_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/pullmail/pullmail/authz"
	"github.com/pullmail/pullmail/federation"
	"github.com/pullmail/pullmail/server"
)

// oauthConfig is an ordinary golang.org/x/oauth2 client configured from the
// server's RFC 8414 metadata, and a context carrying an HTTP client that
// trusts the domain's CA.
func (e *env) oauthConfig(clientID, redirect string) (*oauth2.Config, context.Context) {
	cfg := &oauth2.Config{
		ClientID: clientID,
		Endpoint: oauth2.Endpoint{AuthURL: e.md.AuthorizationEndpoint, TokenURL: e.md.TokenEndpoint,
			DeviceAuthURL: e.md.DeviceAuthorizationEndpoint},
		RedirectURL: redirect,
		Scopes:      []string{authz.ScopeMail},
	}
	return cfg, context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Transport: e.hc.Transport})
}

func TestMetadata(t *testing.T) {
	e := newEnv(t, "a.test")
	md := e.md
	iss := e.d.URL
	if md.Issuer != iss || md.TokenEndpoint != iss+authz.PathToken || md.AuthorizationEndpoint != iss+authz.PathAuthorize ||
		md.JWKSURI != iss+authz.PathJWKS || !md.AuthorizationResponseIssParameter {
		t.Errorf("metadata: %+v", md)
	}
	for name, got := range map[string][]string{"response_types": md.ResponseTypesSupported,
		"code_challenge_methods": md.CodeChallengeMethodsSupported, "dpop_algs": md.DPoPSigningAlgValuesSupported} {
		for _, bad := range []string{"token", "plain", "none", "HS256"} {
			for _, g := range got {
				if g == bad {
					t.Errorf("%s advertises %q", name, bad)
				}
			}
		}
	}
	if len(md.DPoPSigningAlgValuesSupported) == 0 {
		t.Error("no dpop_signing_alg_values_supported")
	}
	res, err := e.hc.Get(md.JWKSURI)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, res)
	if res.StatusCode != 200 || len(e.d.Server.Keys.PublicJWKS().Keys) == 0 {
		t.Fatalf("jwks: %d %s", res.StatusCode, body)
	}
	for _, private := range []string{`"d"`, `"p"`, `"k"`} {
		if strings.Contains(body, private+":") {
			t.Errorf("the published JWKS has the private member %s: %s", private, body)
		}
	}
}

// TestOAuth2ClientCodePKCE runs golang.org/x/oauth2, unchanged, through the
// Authorization Code grant with PKCE, the mailbox API, and refresh with
// rotation.
func TestOAuth2ClientCodePKCE(t *testing.T) {
	e := newEnv(t, "a.test")
	cfg, ctx := e.oauthConfig(webmail, webmailCB)
	verifier := oauth2.GenerateVerifier()
	authURL := cfg.AuthCodeURL("xyz-state", oauth2.S256ChallengeOption(verifier))

	loc := e.signIn(t, authURL, e.user, password)
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != webmailCB {
		t.Fatalf("redirected to %s, want %s", loc, webmailCB)
	}
	q := loc.Query()
	if q.Get("state") != "xyz-state" || q.Get("iss") != e.d.URL || q.Get("code") == "" {
		t.Fatalf("authorization response %s: want state, iss (RFC 9207) and code", loc)
	}

	tok, err := cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if tok.RefreshToken == "" || tok.TokenType != "Bearer" || tok.Expiry.IsZero() {
		t.Fatalf("token: %+v", tok)
	}
	c := claimsOf(t, tok.AccessToken)
	if c.Issuer != e.d.URL || c.Subject != e.user || len(c.Audience) != 1 || c.Audience[0] != e.d.URL ||
		c.ClientID != webmail || c.Scope != authz.ScopeMail || c.Family == "" {
		t.Errorf("access token claims: %+v", c)
	}
	if typ := headerOf(t, tok.AccessToken)["typ"]; typ != federation.TypAccessToken {
		t.Errorf("access token typ %v", typ)
	}

	me := func(hc *http.Client) (int, string) {
		res, err := hc.Get(e.d.URL + "/api/v1/me")
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(t, res)
		return res.StatusCode, body
	}
	if st, body := me(cfg.Client(ctx, tok)); st != 200 || !strings.Contains(body, `"address":"`+e.user+`"`) {
		t.Fatalf("GET /api/v1/me: %d %s", st, body)
	}

	// Refresh: a TokenSource with an expired token refreshes it.
	old := tok.RefreshToken
	expired := *tok
	expired.Expiry = time.Now().Add(-time.Hour)
	ts := cfg.TokenSource(ctx, &expired)
	tok2, err := ts.Token()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if tok2.RefreshToken == "" || tok2.RefreshToken == old || tok2.AccessToken == tok.AccessToken {
		t.Fatalf("refresh did not rotate: %+v", tok2)
	}
	if st, body := me(oauth2.NewClient(ctx, oauth2.StaticTokenSource(tok2))); st != 200 {
		t.Fatalf("refreshed token at the mailbox: %d %s", st, body)
	}

	// The rotated-out refresh token is refused, and its reuse revokes the
	// family: the new refresh token and both access tokens stop working.
	r := e.refresh(t, old, nil)
	wantOAuthError(t, r, 400, "invalid_grant")
	wantOAuthError(t, e.refresh(t, tok2.RefreshToken, nil), 400, "invalid_grant")
	e.wantRefused(t, bearer(tok2.AccessToken), "invalid_token")
	e.wantRefused(t, bearer(tok.AccessToken), "invalid_token")
}

// TestRFC7636AppendixB redeems a code through the real endpoint with the
// verifier and challenge of RFC 7636 Appendix B.
func TestRFC7636AppendixB(t *testing.T) {
	e := newEnv(t, "a.test")
	if got := s256(rfcVerifier); got != rfcChallenge {
		t.Fatalf("S256(%s) = %s, want %s", rfcVerifier, got, rfcChallenge)
	}
	code := e.code(t, rfcChallenge)
	r := e.redeem(t, code, rfcVerifier, nil)
	if r.Status != 200 || r.AccessToken == "" {
		t.Fatalf("redeem with the RFC 7636 verifier: %+v", r)
	}
	e.wantMe(t, bearer(r.AccessToken))
}

func TestDeviceGrant(t *testing.T) {
	e := newEnv(t, "a.test")
	cfg, ctx := e.oauthConfig(server.CLIClientID, "")
	da, err := cfg.DeviceAuth(ctx)
	if err != nil {
		t.Fatalf("device authorization: %v", err)
	}
	if da.UserCode == "" || da.VerificationURI != e.d.URL+authz.PathDevice || da.Interval != 1 {
		t.Fatalf("device authorization: %+v", da)
	}

	// Before approval the client is told to wait.
	pending := e.post(t, authz.PathToken, url.Values{"grant_type": {authz.GrantDeviceCode}, "client_id": {server.CLIClientID},
		"device_code": {da.DeviceCode}}, nil)
	wantOAuthError(t, pending, 400, "authorization_pending")

	// The user approves on /oauth/device (csrf from the GET).
	b := e.browser(t)
	res, err := b.Get(da.VerificationURIComplete)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, res)
	f := formFields(body)
	if res.StatusCode != 200 || f.Get("csrf") == "" {
		t.Fatalf("device page: %d\n%s", res.StatusCode, body)
	}
	f.Set("user_code", da.UserCode)
	f.Set("username", e.user)
	f.Set("password", password)
	res, err = b.PostForm(e.d.URL+authz.PathDevice, f)
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, res); res.StatusCode != 200 || !strings.Contains(body, "Device signed in") {
		t.Fatalf("approving: %d\n%s", res.StatusCode, body)
	}

	tok, err := cfg.DeviceAccessToken(ctx, da)
	if err != nil {
		t.Fatalf("device access token: %v", err)
	}
	if tok.RefreshToken == "" {
		t.Errorf("no refresh token: %+v", tok)
	}
	e.wantMe(t, bearer(tok.AccessToken))

	// The device code works once; its reuse revokes what it issued.
	again := e.post(t, authz.PathToken, url.Values{"grant_type": {authz.GrantDeviceCode}, "client_id": {server.CLIClientID},
		"device_code": {da.DeviceCode}}, nil)
	wantOAuthError(t, again, 400, "invalid_grant")
	e.wantRefused(t, bearer(tok.AccessToken), "invalid_token")
}

// TestRevocation: RFC 7009 revocation of a refresh token stops the access
// tokens of its family at the mailbox, and the refresh token itself.
func TestRevocation(t *testing.T) {
	e := newEnv(t, "a.test")
	tok := e.login(t, nil)
	other := e.login(t, nil) // another sign-in: a different family
	e.wantMe(t, bearer(tok.AccessToken))

	// Another client may not revoke it (and an unknown token is a 200).
	if r := e.post(t, authz.PathRevoke, url.Values{"client_id": {server.CLIClientID}, "token": {tok.RefreshToken}}, nil); r.Status != 400 {
		t.Errorf("revocation by another client: %+v", r)
	}
	e.wantMe(t, bearer(tok.AccessToken))
	if r := e.post(t, authz.PathRevoke, url.Values{"client_id": {webmail}, "token": {"pmr_unknown"}}, nil); r.Status != 200 {
		t.Errorf("revoking an unknown token: %+v", r)
	}

	if r := e.post(t, authz.PathRevoke, url.Values{"client_id": {webmail}, "token": {tok.RefreshToken},
		"token_type_hint": {"refresh_token"}}, nil); r.Status != 200 {
		t.Fatalf("revocation: %+v", r)
	}
	e.wantRefused(t, bearer(tok.AccessToken), "invalid_token")
	wantOAuthError(t, e.refresh(t, tok.RefreshToken, nil), 400, "invalid_grant")
	e.wantMe(t, bearer(other.AccessToken))

	// Revoking an access token revokes its family too.
	if r := e.post(t, authz.PathRevoke, url.Values{"client_id": {webmail}, "token": {other.AccessToken}}, nil); r.Status != 200 {
		t.Fatalf("revocation: %+v", r)
	}
	e.wantRefused(t, bearer(other.AccessToken), "invalid_token")
	wantOAuthError(t, e.refresh(t, other.RefreshToken, nil), 400, "invalid_grant")
}

// TestDPoPBoundTokens: a token request with a DPoP proof gets DPoP-bound
// tokens; the mailbox then wants the DPoP scheme and a proof with ath by the
// same key, and the refresh token is bound to the key too.
func TestDPoPBoundTokens(t *testing.T) {
	e := newEnv(t, "a.test")
	k := newDPoPKey(t)
	tok := e.login(t, e.proof(t, k, "POST", authz.PathToken, ""))
	if tok.TokenType != "DPoP" {
		t.Fatalf("token_type %q, want DPoP", tok.TokenType)
	}
	if c := claimsOf(t, tok.AccessToken); c.Cnf == nil || c.Cnf.JKT != k.Thumbprint() {
		t.Fatalf("cnf %+v, want jkt %s", c.Cnf, k.Thumbprint())
	}
	e.wantMe(t, e.dpopAuth(t, k, tok.AccessToken))

	// The refresh token needs a proof by the same key.
	wantOAuthError(t, e.refresh(t, tok.RefreshToken, nil), 400, "invalid_grant")
	wantOAuthError(t, e.refresh(t, tok.RefreshToken, e.proof(t, newDPoPKey(t), "POST", authz.PathToken, "")), 400, "invalid_grant")
	r := e.refresh(t, tok.RefreshToken, e.proof(t, k, "POST", authz.PathToken, ""))
	if r.Status != 200 || r.TokenType != "DPoP" {
		t.Fatalf("refresh with the key: %+v", r)
	}
	e.wantMe(t, e.dpopAuth(t, k, r.AccessToken))
}
