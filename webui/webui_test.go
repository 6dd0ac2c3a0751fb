package webui

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
)

func testTree() http.Handler {
	return New(fstest.MapFS{
		"dist/index.html":              {Data: []byte("<!doctype html><title>app</title>")},
		"dist/sw.js":                   {Data: []byte("self.addEventListener('fetch', () => {})")},
		"dist/manifest.webmanifest":    {Data: []byte(`{"name":"Pullmail"}`)},
		"dist/assets/index-abc123.js":  {Data: []byte("console.log(1)")},
		"dist/assets/index-abc123.css": {Data: []byte("body{}")},
		"dist/assets/font-x.woff2":     {Data: []byte("wOF2")},
		"dist/icons/icon.svg":          {Data: []byte("<svg/>")},
		"dist/icons/icon-192.png":      {Data: []byte("\x89PNG")},
		"dist/favicon.ico":             {Data: []byte("\x00\x00\x01\x00ICO")},
	}, "dist")
}

func TestServe(t *testing.T) {
	h := testTree()
	for _, tc := range []struct {
		method, path string
		status       int
		ctype        string
		cache        string
		body         string
		location     string
	}{
		{"GET", "/", 302, "", "", "", "/webmail/"},
		{"GET", "/webmail", 302, "", "", "", "/webmail/"},
		{"GET", "/webmail/", 200, "text/html; charset=utf-8", "no-cache", "app", ""},
		{"GET", "/webmail/callback", 200, "text/html; charset=utf-8", "no-cache", "app", ""},
		{"GET", "/webmail/inbox/m123", 200, "text/html; charset=utf-8", "no-cache", "app", ""},
		{"GET", "/webmail/sw.js", 200, "text/javascript; charset=utf-8", "no-cache", "self.", ""},
		{"GET", "/webmail/manifest.webmanifest", 200, "application/manifest+json", "no-cache", "Pullmail", ""},
		{"GET", "/webmail/assets/index-abc123.js", 200, "text/javascript; charset=utf-8", "public, max-age=31536000, immutable", "console", ""},
		{"GET", "/webmail/assets/index-abc123.css", 200, "text/css; charset=utf-8", "public, max-age=31536000, immutable", "body", ""},
		{"GET", "/webmail/assets/font-x.woff2", 200, "font/woff2", "public, max-age=31536000, immutable", "wOF2", ""},
		{"GET", "/webmail/icons/icon.svg", 200, "image/svg+xml", "no-cache", "<svg", ""},
		{"GET", "/webmail/icons/icon-192.png", 200, "image/png", "no-cache", "PNG", ""},
		{"GET", "/favicon.ico", 200, "image/x-icon", "no-cache", "ICO", ""},
		{"GET", "/webmail/favicon.ico", 200, "image/x-icon", "no-cache", "ICO", ""},
		{"HEAD", "/webmail/inbox", 200, "text/html; charset=utf-8", "no-cache", "", ""},
		{"GET", "/webmail/assets/missing.js", 404, "application/json", "no-store", "no_route", ""},
		{"GET", "/webmail/assets/missing", 404, "application/json", "no-store", "no_route", ""},
		{"GET", "/webmail/missing.png", 404, "application/json", "no-store", "no_route", ""},
		{"POST", "/webmail/", 404, "application/json", "no-store", "no_route", ""},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
			res := rec.Result()
			if res.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", res.StatusCode, tc.status)
			}
			if tc.location != "" && res.Header.Get("Location") != tc.location {
				t.Errorf("Location %q, want %q", res.Header.Get("Location"), tc.location)
			}
			if tc.ctype != "" && res.Header.Get("Content-Type") != tc.ctype {
				t.Errorf("Content-Type %q, want %q", res.Header.Get("Content-Type"), tc.ctype)
			}
			if tc.cache != "" && res.Header.Get("Cache-Control") != tc.cache {
				t.Errorf("Cache-Control %q, want %q", res.Header.Get("Cache-Control"), tc.cache)
			}
			if !strings.Contains(rec.Body.String(), tc.body) || (tc.method == "HEAD" && rec.Body.Len() != 0) {
				t.Errorf("body %q, want it to contain %q", rec.Body.String(), tc.body)
			}
			for k, v := range SecurityHeaders {
				if res.Header.Get(k) != v {
					t.Errorf("%s = %q, want %q", k, res.Header.Get(k), v)
				}
			}
			if sw := res.Header.Get("Service-Worker-Allowed"); (tc.path == "/webmail/sw.js") != (sw == "/webmail/") {
				t.Errorf("Service-Worker-Allowed = %q", sw)
			}
		})
	}
}

func TestIndexFile(t *testing.T) {
	rec := httptest.NewRecorder()
	testTree().ServeHTTP(rec, httptest.NewRequest("GET", "/webmail/index.html", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "app") || rec.Header().Get("Cache-Control") != "no-cache" {
		t.Errorf("index.html: %d %q %q", rec.Code, rec.Header().Get("Cache-Control"), rec.Body.String())
	}
}

func TestETag(t *testing.T) {
	h := testTree()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/webmail/sw.js", nil))
	etag := rec.Header().Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	req := httptest.NewRequest("GET", "/webmail/sw.js", nil)
	req.Header.Set("If-None-Match", etag)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotModified || rec.Header().Get("Content-Security-Policy") != CSP {
		t.Errorf("revalidation: %d, CSP %q", rec.Code, rec.Header().Get("Content-Security-Policy"))
	}
}

// TestEmbedded checks that the real build (or its placeholder) has an
// index.html to serve.
func TestEmbedded(t *testing.T) {
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/webmail/", nil))
	if rec.Code != 200 || !strings.Contains(strings.ToLower(rec.Body.String()), "<html") {
		t.Errorf("embedded index.html: %d %.80q", rec.Code, rec.Body.String())
	}
}
