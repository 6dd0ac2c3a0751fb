// Package webui serves the webmail (webmail/, a React PWA) from the pullmail
// binary itself, so that a domain stays one file: the Vite build writes
// webui/dist, which is embedded here (docs/PROTOCOL.md §8.15).
//
// Everything is served under Prefix. A path that names a file of dist
// serves it; any other path without a file extension answers index.html, so
// that the single-page app's own routes (/webmail/inbox, /webmail/callback)
// load it; a missing path with an extension, or under assets/, is 404.
// Every answer carries a strict Content-Security-Policy and the headers of
// SecurityHeaders. Hashed build assets (assets/*) are cached for a year;
// everything else is revalidated (no-cache, with an ETag).
package webui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/pullmail/pullmail/errs"
)

//go:embed all:dist
var dist embed.FS

// Prefix is where the webmail lives.
const Prefix = "/webmail/"

// Favicon is the root path browsers ask for an icon at; it serves
// Prefix+"favicon.ico".
const Favicon = "/favicon.ico"

// CSP is the webmail's Content-Security-Policy: its own scripts only, no
// inline script, inline styles (styled-components injects them), images and
// frames from itself and blob:/data: (attachment previews, the sandboxed
// HTML view), requests to its own origin only, and never framed.
const CSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' blob: data:; " +
	"frame-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"

// SecurityHeaders are set on every webmail answer, redirects and errors
// included.
var SecurityHeaders = map[string]string{
	"Content-Security-Policy":    CSP,
	"X-Content-Type-Options":     "nosniff",
	"Referrer-Policy":            "no-referrer",
	"X-Frame-Options":            "DENY",
	"Cross-Origin-Opener-Policy": "same-origin",
}

// contentTypes does not depend on the system's MIME tables.
var contentTypes = map[string]string{
	".html":        "text/html; charset=utf-8",
	".js":          "text/javascript; charset=utf-8",
	".mjs":         "text/javascript; charset=utf-8",
	".css":         "text/css; charset=utf-8",
	".json":        "application/json",
	".map":         "application/json",
	".webmanifest": "application/manifest+json",
	".svg":         "image/svg+xml",
	".png":         "image/png",
	".ico":         "image/x-icon",
	".webp":        "image/webp",
	".jpg":         "image/jpeg",
	".woff2":       "font/woff2",
	".woff":        "font/woff",
	".txt":         "text/plain; charset=utf-8",
	".wasm":        "application/wasm",
}

type file struct {
	data  []byte
	etag  string
	ctype string
}

// Handler serves the embedded build under Prefix, and redirects "/" and
// "/webmail" to Prefix; it serves Favicon as well.
func Handler() http.Handler { return New(dist, "dist") }

// New serves the files of fsys under dir (tests pass their own tree).
func New(fsys fs.FS, dir string) http.Handler {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err) // a build without the directory is a bug
	}
	files := map[string]file{}
	fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(sub, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ct := contentTypes[strings.ToLower(path.Ext(p))]
		if ct == "" {
			ct = "application/octet-stream"
		}
		files[p] = file{data: b, etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`, ctype: ct}
		return nil
	})
	return &handler{files: files}
}

type handler struct{ files map[string]file }

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	for k, v := range SecurityHeaders {
		hdr.Set(k, v)
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		noRoute(w, r)
		return
	}
	if r.URL.Path == "/" || r.URL.Path == strings.TrimSuffix(Prefix, "/") {
		http.Redirect(w, r, Prefix, http.StatusFound)
		return
	}
	urlPath := r.URL.Path
	if urlPath == Favicon {
		// Browsers ask for it at the root, whatever the page says.
		urlPath = Prefix + "favicon.ico"
	}
	name, ok := strings.CutPrefix(urlPath, Prefix)
	if !ok {
		noRoute(w, r)
		return
	}
	f, found := h.files[name]
	switch {
	case found && name != "":
	case name == "" || (!strings.HasPrefix(name, "assets/") && path.Ext(name) == ""):
		name = "index.html"
		if f, found = h.files[name]; !found {
			noRoute(w, r)
			return
		}
	default:
		noRoute(w, r)
		return
	}
	if strings.HasPrefix(name, "assets/") {
		hdr.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		hdr.Set("Cache-Control", "no-cache")
	}
	if name == "sw.js" {
		hdr.Set("Service-Worker-Allowed", Prefix)
	}
	hdr.Set("Content-Type", f.ctype)
	hdr.Set("ETag", f.etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.data))
}

// noRoute answers like every other unknown path of the server.
func noRoute(w http.ResponseWriter, r *http.Request) {
	errs.WriteHTTP(w, errs.E(errs.NotFound, "no_route", "no such endpoint: %s %s", r.Method, r.URL.Path))
}
