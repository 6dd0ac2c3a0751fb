package server_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/pullmail/pullmail/authz"
	"github.com/pullmail/pullmail/server"
	"github.com/pullmail/pullmail/testenv"
	"github.com/pullmail/pullmail/webui"
)

// TestWebmailServed checks the webmail's routes on the real server: the
// redirects to /webmail/, the SPA fallback for the callback, and the
// security headers.
func TestWebmailServed(t *testing.T) {
	d := testenv.Start(t, "a.test", testenv.Options{})
	c := d.AddUser(t, "alice@a.test")
	hc := &http.Client{Transport: c.HTTP.Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct {
		path     string
		status   int
		location string
	}{
		{"/", http.StatusFound, "/webmail/"},
		{"/webmail", http.StatusFound, "/webmail/"},
		{"/webmail/", http.StatusOK, ""},
		{"/webmail/callback?code=x&state=y", http.StatusOK, ""},
		{"/webmail/inbox", http.StatusOK, ""},
	} {
		res, err := hc.Get(d.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != tc.status || res.Header.Get("Location") != tc.location {
			t.Errorf("GET %s: %d %q, want %d %q", tc.path, res.StatusCode, res.Header.Get("Location"), tc.status, tc.location)
		}
		if res.Header.Get("Content-Security-Policy") != webui.CSP || res.Header.Get("X-Content-Type-Options") != "nosniff" ||
			res.Header.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("GET %s: security headers %v", tc.path, res.Header)
		}
		if tc.status == http.StatusOK && !strings.Contains(strings.ToLower(string(body)), "<html") {
			t.Errorf("GET %s: not the app's index.html: %.100q", tc.path, body)
		}
	}
	// Other paths still answer no_route.
	res, err := hc.Get(d.URL + "/nowhere")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nowhere: %d", res.StatusCode)
	}
}

var hiddenField = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// TestWebmailSignIn plays the webmail's sign-in against the real server,
// from the webmail's origin: Authorization Code + PKCE for the built-in
// public client "webmail" with redirect PUBLIC_URL/webmail/callback, the
// token, an API call with it, and sign-out by revocation.
func TestWebmailSignIn(t *testing.T) {
	d := testenv.Start(t, "a.test", testenv.Options{})
	c := d.AddUser(t, "alice@a.test")
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Transport: c.HTTP.Transport, Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	verifier := strings.Repeat("v", 50)
	sum := sha256.Sum256([]byte(verifier))
	callback := d.URL + server.WebmailCallback
	q := url.Values{"response_type": {"code"}, "client_id": {server.WebmailClientID}, "redirect_uri": {callback},
		"state": {"st8"}, "code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])},
		"code_challenge_method": {"S256"}, "scope": {"mail"}}
	res, err := browser.Get(d.URL + authz.PathAuthorize + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("authorize: %d %s", res.StatusCode, page)
	}
	form := url.Values{}
	for _, m := range hiddenField.FindAllStringSubmatch(string(page), -1) {
		form.Set(html.UnescapeString(m[1]), html.UnescapeString(m[2]))
	}
	form.Set("username", "alice@a.test")
	form.Set("password", "correct horse battery staple")
	res, err = browser.PostForm(d.URL+authz.PathAuthorize, form)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	loc, err := url.Parse(res.Header.Get("Location"))
	if err != nil || res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc.String(), callback+"?") ||
		loc.Query().Get("state") != "st8" || loc.Query().Get("code") == "" {
		t.Fatalf("sign-in: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	// The token request, as the webmail's fetch() makes it (same origin).
	tok := postForm(t, browser, d.URL+authz.PathToken, url.Values{"grant_type": {"authorization_code"},
		"client_id": {server.WebmailClientID}, "code": {loc.Query().Get("code")}, "code_verifier": {verifier},
		"redirect_uri": {callback}})
	access, _ := tok["access_token"].(string)
	refresh, _ := tok["refresh_token"].(string)
	if access == "" || refresh == "" {
		t.Fatalf("token answer %v", tok)
	}
	me := func() int {
		req, _ := http.NewRequest("GET", d.URL+"/api/v1/me", nil)
		req.Header.Set("Authorization", "Bearer "+access)
		res, err := browser.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if st := me(); st != http.StatusOK {
		t.Fatalf("me with the webmail's token: %d", st)
	}
	// A silent refresh, then sign-out: revoking the refresh token ends
	// the sign-in's family, access tokens included.
	tok = postForm(t, browser, d.URL+authz.PathToken, url.Values{"grant_type": {"refresh_token"},
		"client_id": {server.WebmailClientID}, "refresh_token": {refresh}})
	if access, _ = tok["access_token"].(string); access == "" {
		t.Fatalf("refresh answer %v", tok)
	}
	refresh, _ = tok["refresh_token"].(string)
	postForm(t, browser, d.URL+authz.PathRevoke, url.Values{"client_id": {server.WebmailClientID}, "token": {refresh}})
	if st := me(); st != http.StatusUnauthorized {
		t.Errorf("me after sign-out: %d, want 401", st)
	}
}

func postForm(t *testing.T, c *http.Client, u string, v url.Values) map[string]any {
	t.Helper()
	res, err := c.PostForm(u, v)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %d %s", u, res.StatusCode, b)
	}
	out := map[string]any{}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("POST %s: %s", u, b)
		}
	}
	return out
}
