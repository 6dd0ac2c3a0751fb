package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pullmail/pullmail/apidoc"
	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/testenv"
)

// probeMethods are the methods a route may serve (GET serves HEAD too).
var probeMethods = []string{http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete, http.MethodPatch}

// routed sends method path through the server's whole handler, signed in,
// and reports whether a route took it: anything but the mux's 404
// no_route, a 405 and a method_not_allowed error is an answer of the
// route (its refusal of an empty body included).
func routed(t *testing.T, h http.Handler, token, method, path string) bool {
	t.Helper()
	// Event streams never end by themselves; every other answer comes long
	// before (and one cut short still came from its route).
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	req := httptest.NewRequestWithContext(ctx, method, "https://a.test"+path, strings.NewReader("{}"))
	req.RemoteAddr = "127.0.0.1:1234" // /metrics answers loopback peers
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code == http.StatusMethodNotAllowed {
		return false
	}
	var b struct {
		Error struct{ Code string } `json:"error"`
	}
	if json.Unmarshal(rec.Body.Bytes(), &b) == nil {
		// The mailbox metadata answers a wrong method 400 method_not_allowed.
		return b.Error.Code != "no_route" && b.Error.Code != "method_not_allowed"
	}
	return true
}

var pathWildcard = regexp.MustCompile(`\{([^}]+)\}`)

// TestDocumentedRoutesServed holds the generated document to the server's
// mux: every documented operation is served, and every documented path
// serves exactly the documented methods. The endpoints the discovery
// documents name (RFC 8414 metadata, mailbox metadata) are documented.
func TestDocumentedRoutesServed(t *testing.T) {
	d := testenv.Start(t, "a.test", testenv.Options{})
	d.AddUser(t, "alice@a.test")
	token := d.Token(t, "alice@a.test", 0)
	h := d.Server.Handler()

	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(apidoc.OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	samples := map[string]string{
		"id":        "mnonexistent",
		"cid":       string(resource.IDOf([]byte("probe"))),
		"upload_id": "u" + strings.Repeat("a", 24),
		"name":      "No such folder",
	}
	for path, item := range doc.Paths {
		concrete := pathWildcard.ReplaceAllStringFunc(path, func(w string) string {
			v, ok := samples[strings.Trim(w, "{}")]
			if !ok {
				t.Fatalf("%s: no sample value for %s", path, w)
			}
			return url.PathEscape(v)
		})
		var documented, served []string
		for _, m := range probeMethods {
			if _, ok := item[strings.ToLower(m)]; ok {
				documented = append(documented, m)
			}
			if routed(t, h, token, m, concrete) {
				served = append(served, m)
			}
		}
		if !slices.Equal(documented, served) {
			t.Errorf("%s: documented %v, served %v", path, documented, served)
		}
	}

	// The discovery documents name every endpoint another party calls.
	documented := func(u string) bool {
		p, err := url.Parse(u)
		if err != nil {
			return false
		}
		if _, ok := doc.Paths[p.Path]; ok {
			return true
		}
		// fetch_endpoint is a prefix: the resource's id follows.
		_, ok := doc.Paths[p.Path+"/{cid}"]
		return ok
	}
	for _, wk := range []string{"/.well-known/oauth-authorization-server", "/.well-known/pullmail-mailbox"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "https://a.test"+wk, nil))
		var m map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
			t.Fatalf("%s: %v", wk, err)
		}
		n := 0
		for k, v := range m {
			s, ok := v.(string)
			if !ok || !(strings.HasSuffix(k, "_endpoint") || k == "jwks_uri") {
				continue
			}
			n++
			if !documented(s) {
				t.Errorf("%s names %s %s, which the document does not describe", wk, k, s)
			}
		}
		if n < 2 {
			t.Errorf("%s: only %d endpoints found: the probe is broken", wk, n)
		}
	}
}
