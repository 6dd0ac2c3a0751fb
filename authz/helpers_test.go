package authz_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/pullmail/pullmail/authz"
	"github.com/pullmail/pullmail/dpop"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/federation"
	"github.com/pullmail/pullmail/keys"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/testenv"
)

const (
	password     = "correct horse battery staple"
	webmail      = "testapp" // a public client like the webmail (the server registers its own "webmail")
	webmailCB    = "https://app.test/cb"
	rfcVerifier  = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk" // RFC 7636 Appendix B
	rfcChallenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
)

// clock is a fake clock that runs with real time plus an offset the test
// moves forward. It never goes back: the DPoP replay cache (meta/sqlite)
// judges expiry by real time, so a clock ahead of it is safe.
type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off += d
}

// env is one running domain with a user, the webmail client registered, and
// an HTTPS client that trusts the domain's CA and follows no redirect.
type env struct {
	d     *testenv.Domain
	clock *clock
	hc    *http.Client
	user  string
	uid   int64 // the user's ID
	md    federation.ASMetadata
}

func newEnv(t testing.TB, name string) *env {
	t.Helper()
	c := &clock{}
	d := testenv.Start(t, name, testenv.Options{Clock: c.Now, DeviceInterval: time.Second})
	e := &env{d: d, clock: c, user: "alice@" + name}
	d.AddUser(t, e.user)
	ctx := context.Background()
	u, err := d.Server.Meta.UserByAddress(ctx, e.user)
	if err != nil {
		t.Fatal(err)
	}
	e.uid = u.ID
	if err := d.Server.Meta.Update(ctx, func(tx meta.Tx) error {
		return tx.AddClient(ctx, meta.Client{ID: webmail, Name: "Webmail", Public: true, RedirectURIs: []string{webmailCB}})
	}); err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(d.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(tr.CloseIdleConnections)
	e.hc = &http.Client{Transport: tr, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := e.hc.Get(d.URL + federation.PathASMetadata)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(&e.md); err != nil {
		t.Fatal(err)
	}
	return e
}

// browser is a user agent with a cookie jar that stops at every redirect.
func (e *env) browser(t testing.TB) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Transport: e.hc.Transport, Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

var hiddenRE = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// formFields returns the hidden fields (csrf included) of a page's form.
func formFields(page string) url.Values {
	v := url.Values{}
	for _, m := range hiddenRE.FindAllStringSubmatch(page, -1) {
		v.Set(html.UnescapeString(m[1]), html.UnescapeString(m[2]))
	}
	return v
}

func readAll(t testing.TB, res *http.Response) string {
	t.Helper()
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// signIn plays the browser through the login page of authURL and returns the
// redirect it ends with (a 303).
func (e *env) signIn(t testing.TB, authURL, user, pass string) *url.URL {
	t.Helper()
	b := e.browser(t)
	res, err := b.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, res)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET authorize: %d\n%s", res.StatusCode, body)
	}
	f := formFields(body)
	if f.Get("csrf") == "" {
		t.Fatalf("login page has no csrf field:\n%s", body)
	}
	f.Set("username", user)
	f.Set("password", pass)
	res, err = b.PostForm(e.d.URL+authz.PathAuthorize, f)
	if err != nil {
		t.Fatal(err)
	}
	body = readAll(t, res)
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST authorize: %d, want 303\n%s", res.StatusCode, body)
	}
	loc, err := url.Parse(res.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// authURL is an authorization request of the webmail with PKCE S256.
func (e *env) authURL(challenge, state string) string {
	q := url.Values{"response_type": {"code"}, "client_id": {webmail}, "redirect_uri": {webmailCB},
		"state": {state}, "code_challenge": {challenge}, "code_challenge_method": {"S256"}, "scope": {"mail"}}
	return e.d.URL + authz.PathAuthorize + "?" + q.Encode()
}

// code signs alice in for the webmail and returns a fresh authorization code.
func (e *env) code(t testing.TB, challenge string) string {
	t.Helper()
	loc := e.signIn(t, e.authURL(challenge, "st"), e.user, password)
	code := loc.Query().Get("code")
	if code == "" {
		t.Fatalf("no code in %s", loc)
	}
	return code
}

// tokenResp is a token endpoint answer, success or RFC 6749 §5.2 error.
type tokenResp struct {
	Status          int
	Header          http.Header
	AccessToken     string `json:"access_token"`
	TokenType       string `json:"token_type"`
	IssuedTokenType string `json:"issued_token_type"`
	RefreshToken    string `json:"refresh_token"`
	ExpiresIn       int64  `json:"expires_in"`
	Scope           string `json:"scope"`
	Error           string `json:"error"`
	Description     string `json:"error_description"`
}

// post sends a form to an endpoint of the domain, with extra headers.
func (e *env) post(t testing.TB, path string, form url.Values, hdr http.Header) tokenResp {
	t.Helper()
	return postTo(t, e.hc, e.d.URL+path, form, hdr)
}

func postTo(t testing.TB, hc *http.Client, u string, form url.Values, hdr http.Header) tokenResp {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, vs := range hdr {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	res, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, res)
	r := tokenResp{Status: res.StatusCode, Header: res.Header}
	if body != "" {
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			t.Fatalf("POST %s: %d, not JSON: %q", u, res.StatusCode, body)
		}
	}
	return r
}

// wantOAuthError checks an RFC 6749 §5.2 refusal that issued nothing.
func wantOAuthError(t testing.TB, r tokenResp, status int, code string) {
	t.Helper()
	t.Logf("refused: %d %s: %s", r.Status, r.Error, r.Description)
	if r.Status != status || r.Error != code {
		t.Errorf("got %d %q (%s), want %d %q", r.Status, r.Error, r.Description, status, code)
	}
	if r.AccessToken != "" || r.RefreshToken != "" {
		t.Errorf("a refusal issued tokens: %+v", r)
	}
	if r.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", r.Header.Get("Cache-Control"))
	}
}

// redeem exchanges a code of the webmail.
func (e *env) redeem(t testing.TB, code, verifier string, hdr http.Header) tokenResp {
	t.Helper()
	return e.post(t, authz.PathToken, url.Values{"grant_type": {"authorization_code"}, "client_id": {webmail},
		"code": {code}, "code_verifier": {verifier}, "redirect_uri": {webmailCB}}, hdr)
}

func (e *env) refresh(t testing.TB, rt string, hdr http.Header) tokenResp {
	t.Helper()
	return e.post(t, authz.PathToken, url.Values{"grant_type": {"refresh_token"}, "client_id": {webmail},
		"refresh_token": {rt}}, hdr)
}

// login returns the tokens of a fresh sign-in of alice at the webmail.
func (e *env) login(t testing.TB, hdr http.Header) tokenResp {
	t.Helper()
	v := newVerifier()
	r := e.redeem(t, e.code(t, s256(v)), v, hdr)
	if r.Status != http.StatusOK || r.AccessToken == "" || r.RefreshToken == "" {
		t.Fatalf("redeeming a code: %+v", r)
	}
	return r
}

func newVerifier() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// s256 is the PKCE S256 transform (RFC 7636 §4.2).
func s256(v string) string {
	h := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// proof signs a DPoP proof for an endpoint of the domain.
func (e *env) proof(t testing.TB, k *dpop.Key, method, path, accessToken string) http.Header {
	t.Helper()
	p, err := k.Proof(method, e.d.URL+path, accessToken, "", e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	return http.Header{"DPoP": {p}}
}

func newDPoPKey(t testing.TB) *dpop.Key {
	t.Helper()
	k, err := dpop.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// apiResp is the mailbox's answer to GET /api/v1/me.
type apiResp struct {
	Status  int
	Header  http.Header
	Address string
	Code    string // errs code of a refusal
}

// me calls the mailbox API with the given Authorization (and other) headers.
func (e *env) me(t testing.TB, rawURL string, hdr http.Header) apiResp {
	t.Helper()
	if rawURL == "" {
		rawURL = e.d.URL + "/api/v1/me"
	}
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range hdr {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	res, err := e.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, res)
	r := apiResp{Status: res.StatusCode, Header: res.Header}
	if res.StatusCode == http.StatusOK {
		var me struct{ Address string }
		json.Unmarshal([]byte(body), &me)
		r.Address = me.Address
	} else {
		r.Code = errs.FromHTTP(res.StatusCode, []byte(body)).Code
	}
	return r
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

// dpopAuth is the Authorization and DPoP headers of a mailbox call with a
// DPoP-bound token.
func (e *env) dpopAuth(t testing.TB, k *dpop.Key, tok string) http.Header {
	h := e.proof(t, k, http.MethodGet, "/api/v1/me", tok)
	h.Set("Authorization", "DPoP "+tok)
	return h
}

// wantMe checks that the mailbox accepts the headers as alice.
func (e *env) wantMe(t testing.TB, hdr http.Header) {
	t.Helper()
	if r := e.me(t, "", hdr); r.Status != http.StatusOK || r.Address != e.user {
		t.Fatalf("mailbox: %d %q %q, want 200 %s", r.Status, r.Code, r.Address, e.user)
	}
}

// wantRefused checks a mailbox refusal: 401 with one of the codes (the
// errs JSON error).
func (e *env) wantRefused(t testing.TB, hdr http.Header, codes ...string) {
	t.Helper()
	r := e.me(t, "", hdr)
	if r.Status != http.StatusUnauthorized {
		t.Errorf("mailbox: %d %q, want 401", r.Status, r.Code)
		return
	}
	for _, c := range codes {
		if r.Code == c {
			return
		}
	}
	t.Errorf("mailbox: code %q, want one of %q", r.Code, codes)
}

// state is a digest of the authorization server's persistent state (grants,
// their used and revoked flags, revoked families), read from the SQLite file
// directly: a refused request must leave it as it was. The DPoP and client
// assertion replay caches are not part of it.
func (e *env) state(t testing.TB) string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(e.d.Dir, "meta.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n, used, revoked, fams int64
	var users int64
	row := db.QueryRow(`SELECT count(*), coalesce(sum(used), 0), coalesce(sum(revoked), 0) FROM grants`)
	if err := row.Scan(&n, &used, &revoked); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`SELECT count(*) FROM revoked_families`).Scan(&fams); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`SELECT count(*) FROM users`).Scan(&users); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("grants=%d used=%d revoked=%d families=%d users=%d", n, used, revoked, fams, users)
}

// unchanged runs f and checks that the server's state did not change.
func (e *env) unchanged(t testing.TB, f func()) {
	t.Helper()
	before := e.state(t)
	f()
	if after := e.state(t); after != before {
		t.Errorf("state changed by a refused request:\n before %s\n after  %s", before, after)
	}
}

// claimsOf decodes a JWT's payload without verifying it.
func claimsOf(t testing.TB, compact string) federation.Claims {
	t.Helper()
	parts := strings.Split(compact, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS: %q", compact)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c federation.Claims
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// header decodes a JWT's protected header.
func headerOf(t testing.TB, compact string) map[string]any {
	t.Helper()
	h, _, _ := strings.Cut(compact, ".")
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// accessClaims are the claims of a well-formed access token for alice,
// which tests then spoil one at a time and sign with the domain's own key.
func (e *env) accessClaims() federation.Claims {
	now := e.clock.Now()
	return federation.Claims{Claims: keys.Claims{Issuer: e.d.URL, Subject: e.user, Audience: keys.Audience{e.d.URL},
		IssuedAt: keys.NewNumericDate(now), Expiry: keys.NewNumericDate(now.Add(5 * time.Minute)), ID: "x",
		Scope: authz.ScopeMail, ClientID: webmail}, UserID: e.uid}
}

func (e *env) sign(t testing.TB, typ string, c any) string {
	t.Helper()
	s, err := e.d.Server.Keys.Sign(typ, c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// rawJWS assembles a compact JWS from a header, a payload and a signature
// function, for tokens no honest signer makes.
func rawJWS(hdr, payload any, sign func(input []byte) []byte) string {
	h, _ := json.Marshal(hdr)
	p, _ := json.Marshal(payload)
	in := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(p)
	return in + "." + base64.RawURLEncoding.EncodeToString(sign([]byte(in)))
}

// ---- confidential clients (MTAs) ----

// mta is a confidential client: a key for private_key_jwt and a DPoP key.
type mta struct {
	id     string
	priv   *ecdsa.PrivateKey
	kid    string
	signer jose.Signer
	dpop   *dpop.Key
}

func newMTA(t testing.TB, id string) *mta {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	kid, err := keys.Thumbprint(jose.JSONWebKey{Key: &priv.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: priv},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	return &mta{id: id, priv: priv, kid: kid, signer: signer, dpop: newDPoPKey(t)}
}

// jwks is the client's public JWK Set document.
func (m *mta) jwks() []byte {
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &m.priv.PublicKey, KeyID: m.kid, Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		panic(err)
	}
	return b
}

// register adds the client to a domain, replacing one of the same id (the
// server registers its own MTA as mta@DOMAIN, with a key the test lacks).
func (m *mta) register(t testing.TB, d *testenv.Domain) {
	t.Helper()
	ctx := context.Background()
	if err := d.Server.Meta.Update(ctx, func(tx meta.Tx) error {
		if _, err := tx.Client(ctx, m.id); err == nil {
			if err := tx.DeleteClient(ctx, m.id); err != nil {
				return err
			}
		}
		return tx.AddClient(ctx, meta.Client{ID: m.id, Name: m.id, JWKS: m.jwks()})
	}); err != nil {
		t.Fatal(err)
	}
}

// clientAssertion is a private_key_jwt client assertion (RFC 7523 §3) for
// the token endpoint of issuer, changed by edit before signing.
func (m *mta) clientAssertion(t testing.TB, issuer string, now time.Time, edit func(map[string]any)) string {
	t.Helper()
	c := map[string]any{"iss": m.id, "sub": m.id, "aud": issuer + authz.PathToken, "jti": newVerifier(),
		"iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}
	if edit != nil {
		edit(c)
	}
	p, _ := json.Marshal(c)
	jws, err := m.signer.Sign(p)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// auth is the client authentication parameters of a request to issuer.
func (m *mta) auth(t testing.TB, issuer string, now time.Time) url.Values {
	return url.Values{"client_id": {m.id}, "client_assertion_type": {federation.ClientAssertionJB},
		"client_assertion": {m.clientAssertion(t, issuer, now, nil)}}
}

// proof is a DPoP proof of the MTA for issuer's token endpoint.
func (m *mta) proof(t testing.TB, issuer string, now time.Time) http.Header {
	t.Helper()
	p, err := m.dpop.Proof(http.MethodPost, issuer+authz.PathToken, "", "", now)
	if err != nil {
		t.Fatal(err)
	}
	return http.Header{"DPoP": {p}}
}

// remote is an authz.Remote over fixed maps: client id → (domain, JWKS),
// domain → (issuer, JWKS).
type remote struct {
	clients map[string]remoteEntry
	issuers map[string]remoteEntry
}

type remoteEntry struct {
	name string // the client's domain, or the domain's issuer
	jwks []byte
}

func (r *remote) ClientKeys(ctx context.Context, id string) (string, []byte, error) {
	if c, ok := r.clients[id]; ok {
		return c.name, c.jwks, nil
	}
	return "", nil, fmt.Errorf("no client %q", id)
}

func (r *remote) IssuerKeys(ctx context.Context, domain string) (string, []byte, error) {
	if c, ok := r.issuers[domain]; ok {
		return c.name, c.jwks, nil
	}
	return "", nil, fmt.Errorf("no domain %q", domain)
}

// publicJWKS is a domain's published JWKS document.
func publicJWKS(t testing.TB, d *testenv.Domain) []byte {
	b, err := json.Marshal(d.Server.Keys.PublicJWKS())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// remoteAS is the authorization server of a testenv domain built again with
// a Remote (testenv's has none), over the same store and keys and with the
// same issuer, served on its own TLS listener. The issuer, not the listener's
// address, makes the endpoint URLs (and the DPoP htu).
type remoteAS struct {
	*authz.Server
	ts *httptest.Server
}

func newRemoteAS(t testing.TB, e *env, r authz.Remote) *remoteAS {
	t.Helper()
	s, err := authz.New(authz.Config{Issuer: e.d.URL, Domain: e.d.Name, Meta: e.d.Server.Meta, Keys: e.d.Server.Keys,
		Clock: e.clock.Now, Remote: r, Log: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewTLSServer(s.Handler())
	t.Cleanup(ts.Close)
	return &remoteAS{Server: s, ts: ts}
}

func (a *remoteAS) post(t testing.TB, form url.Values, hdr http.Header) tokenResp {
	t.Helper()
	return postTo(t, a.ts.Client(), a.ts.URL+authz.PathToken, form, hdr)
}

// ---- envelopes ----

// firstHop returns the envelope headers of a first-hop message from alice.
func firstHop(t testing.TB, from, to, msgid string) placeholder.Header {
	t.Helper()
	var h placeholder.Header
	h.SetString(placeholder.HMessageID, msgid)
	h.SetString(placeholder.HFrom, from)
	h.SetString(placeholder.HTo, to)
	h.SetString(placeholder.HDate, "Sun, 22 Dec 2024 20:49:35 +0100")
	rd, err := placeholder.RecipientsDigest(h)
	if err != nil {
		t.Fatal(err)
	}
	h.SetString(placeholder.HRecipientsDigest, rd)
	h.SetString(placeholder.HBodyDigest, "<ga2a0KFDTXvsJCaQUu8n4KOe68E2GUgA0K7cUhAdhHY>")
	return h
}

// forwardHop returns the envelope headers of a forward of the message that
// arrived with assertion prev.
func forwardHop(t testing.TB, msgid, fwdFrom, fwdTo, prev string) placeholder.Header {
	t.Helper()
	var h placeholder.Header
	h.SetString(placeholder.HMessageID, msgid)
	h.SetString(placeholder.HForwardedFrom, fwdFrom)
	h.SetString(placeholder.HForwardedTo, fwdTo)
	rd, err := placeholder.ForwardRecipientsDigest(h)
	if err != nil {
		t.Fatal(err)
	}
	h.SetString(placeholder.HRecipientsDigest, rd)
	h.SetString(placeholder.HJWTAssertionDigest, placeholder.JWTAssertionDigest(prev))
	return h
}

// setUserSetting sets (or, with "", unsets) a per-user setting of the
// domain's user addr, as the admin commands do.
func setUserSetting(t testing.TB, d *testenv.Domain, addr, name, value string) {
	t.Helper()
	ctx := context.Background()
	if err := d.Server.Meta.Update(ctx, func(tx meta.Tx) error {
		u, err := tx.UserByAddress(ctx, addr)
		if err != nil {
			return err
		}
		return tx.SetUserSetting(ctx, u.ID, name, value)
	}); err != nil {
		t.Fatal(err)
	}
}

func jsonString(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// dpopOf is the one DPoP proof in h, as the helpers above build it. They
// spell the header as RFC 9449 does ("DPoP", not Go's canonical "Dpop"),
// exactly as a client sends it on the wire.
func dpopOf(h http.Header) string {
	for k, v := range h {
		if strings.EqualFold(k, "DPoP") && len(v) == 1 {
			return v[0]
		}
	}
	return ""
}
