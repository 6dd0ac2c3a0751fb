package authz_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pullmail/pullmail/authz"
	"github.com/pullmail/pullmail/federation"
)

// TestWrongMethodJSON: a method an endpoint does not serve is answered 405
// with an Allow header and a JSON error in the RFC 6749 §5.2 shape (code
// method_not_allowed), not the mux's text/plain, both by authz.Handler
// itself and through the real server.
func TestWrongMethodJSON(t *testing.T) {
	e := newEnv(t, "a.test")
	direct := httptest.NewServer(e.d.Server.Authz.Handler())
	t.Cleanup(direct.Close)
	for _, tc := range []struct {
		method, path, allow string
	}{
		{http.MethodGet, authz.PathToken, "POST"},
		{http.MethodPut, authz.PathToken, "POST"},
		{http.MethodDelete, authz.PathToken, "POST"},
		{http.MethodOptions, authz.PathToken, "POST"},
		{http.MethodGet, authz.PathRevoke, "POST"},
		{http.MethodPatch, authz.PathRevoke, "POST"},
		{http.MethodGet, authz.PathDeviceAuthz, "POST"},
		{http.MethodPost, federation.PathASMetadata, "GET, HEAD"},
		{http.MethodPost, authz.PathJWKS, "GET, HEAD"},
		{http.MethodPut, authz.PathAuthorize, "GET, HEAD, POST"},
		{http.MethodDelete, authz.PathDevice, "GET, HEAD, POST"},
	} {
		for via, c := range map[string]struct {
			hc   *http.Client
			base string
		}{"handler": {direct.Client(), direct.URL}, "server": {e.hc, e.d.URL}} {
			t.Run(via+" "+tc.method+" "+tc.path, func(t *testing.T) {
				e.unchanged(t, func() {
					req, err := http.NewRequest(tc.method, c.base+tc.path, strings.NewReader("grant_type=refresh_token"))
					if err != nil {
						t.Fatal(err)
					}
					req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
					res, err := c.hc.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					body, _ := io.ReadAll(res.Body)
					res.Body.Close()
					var oe struct {
						Error       string `json:"error"`
						Description string `json:"error_description"`
					}
					if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Content-Type") != "application/json" ||
						json.Unmarshal(body, &oe) != nil || oe.Error != "method_not_allowed" || oe.Description == "" {
						t.Errorf("%d %q %s; want 405 application/json method_not_allowed", res.StatusCode, res.Header.Get("Content-Type"), body)
					}
					if got := res.Header.Get("Allow"); got != tc.allow {
						t.Errorf("Allow %q, want %q", got, tc.allow)
					}
					if res.Header.Get("Cache-Control") != "no-store" {
						t.Errorf("Cache-Control %q, want no-store", res.Header.Get("Cache-Control"))
					}
				})
			})
		}
	}
	// The methods served still work (HEAD included).
	for _, tc := range []struct{ method, path string }{{http.MethodGet, federation.PathASMetadata}, {http.MethodHead, authz.PathJWKS}} {
		req, _ := http.NewRequest(tc.method, direct.URL+tc.path, nil)
		res, err := direct.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("%s %s: %d, want 200", tc.method, tc.path, res.StatusCode)
		}
	}
}

// TestMetadataRevocationAuth: the metadata says how the revocation endpoint
// authenticates clients (RFC 8414 §2: absent means client_secret_basic,
// which is refused), and what it says is what the endpoint does: a public
// client by client_id alone ("none"), a confidential one by
// private_key_jwt, and client_secret_basic refused.
func TestMetadataRevocationAuth(t *testing.T) {
	e := newEnv(t, "a.test")
	res, err := e.hc.Get(e.d.URL + federation.PathASMetadata)
	if err != nil {
		t.Fatal(err)
	}
	var md map[string]any
	if err := json.NewDecoder(res.Body).Decode(&md); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	strs := func(k string) []string {
		var out []string
		list, _ := md[k].([]any)
		for _, v := range list {
			s, _ := v.(string)
			out = append(out, s)
		}
		return out
	}
	if got := strs("revocation_endpoint_auth_methods_supported"); !slices.Equal(got, []string{"none", "private_key_jwt"}) {
		t.Errorf("revocation_endpoint_auth_methods_supported = %q, want [none private_key_jwt]", got)
	}
	if got, want := strs("revocation_endpoint_auth_signing_alg_values_supported"), strs("token_endpoint_auth_signing_alg_values_supported"); len(got) == 0 || !slices.Equal(got, want) {
		t.Errorf("revocation_endpoint_auth_signing_alg_values_supported = %q, want the token endpoint's %q", got, want)
	}
	for _, k := range []string{"introspection_endpoint", "introspection_endpoint_auth_methods_supported"} {
		if _, ok := md[k]; ok {
			t.Errorf("the metadata advertises %s, which this server does not have", k)
		}
	}

	// none: a public client revokes its own token.
	tok := e.login(t, nil)
	if r := e.post(t, authz.PathRevoke, url.Values{"client_id": {webmail}, "token": {tok.RefreshToken}}, nil); r.Status != 200 {
		t.Errorf("revocation by a public client: %+v", r)
	}
	// private_key_jwt: a confidential client is authenticated (an unknown
	// token is then 200; a bad assertion would be 401).
	m := newMTA(t, "mta@a.test")
	m.register(t, e.d)
	f := m.auth(t, e.d.URL, e.clock.Now())
	f.Set("token", "pmr_unknown")
	if r := e.post(t, authz.PathRevoke, f, nil); r.Status != 200 {
		t.Errorf("revocation by a private_key_jwt client: %+v", r)
	}
	f = m.auth(t, e.d.URL, e.clock.Now().Add(-time.Hour))
	f.Set("token", "pmr_unknown")
	wantOAuthError(t, e.post(t, authz.PathRevoke, f, nil), 401, "invalid_client")
	// client_secret_basic is not advertised and not accepted.
	wantOAuthError(t, e.post(t, authz.PathRevoke, url.Values{"token": {"pmr_unknown"}},
		http.Header{"Authorization": {"Basic " + "d2VibWFpbDpzZWNyZXQ="}}), 401, "invalid_client")
}
