package authz_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pullmail/pullmail/authz"
	"github.com/pullmail/pullmail/federation"
	"github.com/pullmail/pullmail/keys"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/meta/sqlite"
)

// bareAS is an authorization server over its own store and keys, served in
// process, with the test client registered. Fuzz targets use it rather than
// a testenv domain, whose logger writes to the test log (-v) from server
// goroutines, which a fuzz target forbids.
func bareAS(f *testing.F) http.Handler {
	ctx := context.Background()
	dir := f.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "meta.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	ks, err := keys.Open(filepath.Join(dir, "keys", "signing.json"), keys.Options{MaxTokenLifetime: 6 * 24 * time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	if err := st.Update(ctx, func(tx meta.Tx) error {
		return tx.AddClient(ctx, meta.Client{ID: webmail, Name: "app", Public: true, RedirectURIs: []string{webmailCB}})
	}); err != nil {
		f.Fatal(err)
	}
	s, err := authz.New(authz.Config{Issuer: "https://a.test", Domain: "a.test", Meta: st, Keys: ks})
	if err != nil {
		f.Fatal(err)
	}
	return s.Handler()
}

// FuzzAuthorize: whatever the query, the authorization endpoint redirects
// only to the registered redirect URI, never with a code on a GET, and
// never fails with a server error.
func FuzzAuthorize(f *testing.F) {
	h := bareAS(f)
	f.Add("response_type=code&client_id=testapp&redirect_uri=https%3A%2F%2Fapp.test%2Fcb&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256")
	f.Add("response_type=token&client_id=testapp&redirect_uri=https%3A%2F%2Fapp.test%2Fcb&state=x")
	f.Add("response_type=code&client_id=testapp&redirect_uri=https%3A%2F%2Fapp.test%40evil%2Fcb")
	f.Add("client_id=testapp&redirect_uri=https%3A%2F%2Fapp.test%2Fcb&redirect_uri=https%3A%2F%2Fevil")
	f.Add("client_id=testapp&redirect_uri=https://app.test/cb%00&state=%0d%0aLocation:%20https://evil")
	f.Fuzz(func(t *testing.T, query string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.URL.Path, r.URL.RawQuery = authz.PathAuthorize, query
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("%d for %q", w.Code, query)
		}
		loc := w.Header().Get("Location")
		if w.Code/100 == 3 || loc != "" {
			u, err := url.Parse(loc)
			if err != nil || u.Scheme+"://"+u.Host+u.Path != webmailCB || u.User != nil {
				t.Fatalf("redirect to %q for %q", loc, query)
			}
			if u.Query().Get("code") != "" || u.Query().Get("error") == "" {
				t.Fatalf("a GET redirect without an error: %q", loc)
			}
		}
	})
}

// FuzzTokenEndpoint: whatever the body and DPoP header, the token endpoint
// answers an RFC 6749 §5.2 JSON error (nothing here can hold a valid grant),
// never a server error.
func FuzzTokenEndpoint(f *testing.F) {
	h := bareAS(f)
	f.Add("grant_type=authorization_code&client_id=testapp&code=pmc_x&code_verifier="+rfcVerifier+"&redirect_uri=https%3A%2F%2Fapp.test%2Fcb", "")
	f.Add("grant_type=refresh_token&client_id=testapp&refresh_token=pmr_x", "a.b.c")
	f.Add("grant_type="+url.QueryEscape(federation.GrantTokenExch)+"&client_id=testapp&subject_token=a.b.c&subject_token_type=x", "")
	f.Add("client_assertion_type="+url.QueryEscape(federation.ClientAssertionJB)+"&client_assertion=eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.", "")
	f.Add("grant_type=password&username=alice%40a.test&password=x", "")
	f.Fuzz(func(t *testing.T, body, proof string) {
		r := httptest.NewRequest(http.MethodPost, authz.PathToken, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if proof != "" {
			r.Header.Set("DPoP", proof)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code == 200 || w.Code >= 500 {
			t.Fatalf("%d %s for %q", w.Code, w.Body, body)
		}
		if !strings.Contains(w.Body.String(), `"error":`) {
			t.Fatalf("no RFC 6749 error: %s", w.Body)
		}
	})
}
