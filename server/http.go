package server

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/pullmail/pullmail/errs"
)

// Defaults of the request bounds (Config.BodyTimeout, BodyIdleTimeout,
// MaxBody).
const (
	DefaultBodyTimeout     = 20 * time.Second
	DefaultBodyIdleTimeout = 2 * time.Minute
	// DefaultMaxBody is above the largest federation body (a 1 MiB
	// placeholder and a chain of eight hops, package inbound) and far
	// above any form of the authorization server.
	DefaultMaxBody = 2 << 20
)

// hsts is the Strict-Transport-Security of every answer (RFC 6797): two
// years. includeSubDomains is left out: the domain's other hosts are the
// operator's to decide, not the mail server's.
const hsts = "max-age=63072000"

// hygiene is the server-wide layer under the logs and above the routes:
//   - HSTS and X-Content-Type-Options: nosniff on every answer;
//   - a bound on the time and size of every request body outside /api/
//     (the authorization server, federation, device grant and login
//     form, all reachable without credentials), so that a slow or huge
//     body cannot hold a connection; under /api/ and /jmap/, authenticated first and
//     home of long uploads, only a bound on the pause between two reads;
//   - ServeMux's plain-text 404 and 405 answers turned into JSON
//     (docs/PROTOCOL.md §7), their Allow header kept.
func (s *Server) hygiene(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Strict-Transport-Security", hsts)
		h.Set("X-Content-Type-Options", "nosniff")
		gw := &guardWriter{ResponseWriter: w, method: r.Method, path: r.URL.Path}
		if r.Body != nil && r.Body != http.NoBody {
			b := &guardBody{body: r.Body, rc: http.NewResponseController(w), w: gw}
			if strings.HasPrefix(r.URL.Path, "/api/") || strings.HasPrefix(r.URL.Path, "/jmap/") {
				b.idle = s.cfg.BodyIdleTimeout
			} else {
				b.max, b.limit = s.cfg.MaxBody, s.cfg.BodyTimeout
				// Errors: httptest's recorder has no deadlines.
				b.rc.SetReadDeadline(time.Now().Add(b.limit))
			}
			r.Body = b
		}
		next.ServeHTTP(gw, r)
		gw.finish()
	})
}

// guardBody enforces the body bounds of hygiene. Once the body is read to
// its end it clears the read deadline: net/http then keeps reading the
// connection in the background, and a deadline passing there would cancel
// the request's context while the handler still works.
type guardBody struct {
	body  io.ReadCloser
	rc    *http.ResponseController
	w     *guardWriter
	idle  time.Duration // > 0: the longest pause before each read
	limit time.Duration // the whole body's time, for the message
	max   int64         // > 0: the most bytes
	n     int64
	done  bool
}

func (b *guardBody) Read(p []byte) (int, error) {
	if b.done {
		return b.body.Read(p)
	}
	if b.idle > 0 {
		b.rc.SetReadDeadline(time.Now().Add(b.idle))
	}
	if b.max > 0 && int64(len(p)) > b.max-b.n+1 {
		p = p[:b.max-b.n+1] // one byte more than allowed tells
	}
	n, err := b.body.Read(p)
	b.n += int64(n)
	switch {
	case b.max > 0 && b.n > b.max:
		b.w.fail(http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("the request body is larger than %d bytes", b.max))
		return n - int(b.n-b.max), &http.MaxBytesError{Limit: b.max}
	case err == nil:
	case errors.Is(err, os.ErrDeadlineExceeded):
		msg := fmt.Sprintf("the request body did not arrive within %s", b.limit)
		if b.idle > 0 {
			msg = fmt.Sprintf("the request body paused for more than %s", b.idle)
		}
		b.w.fail(http.StatusRequestTimeout, "request_timeout", msg)
	default: // the end, or the client went away: no more reads to bound
		b.done = true
		b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

func (b *guardBody) Close() error { return b.body.Close() }

// guardWriter answers for hygiene: a body that broke its bound replaces
// whatever the handler answers after it (the handler saw a read error and
// may call it anything), and ServeMux's plain errors become JSON.
type guardWriter struct {
	http.ResponseWriter
	method, path string
	failed       *errs.Body
	failStatus   int
	wrote        bool
	swallow      bool // the handler's body is dropped: ours was written
}

// fail records the answer for a body out of bounds, unless the handler has
// answered already.
func (w *guardWriter) fail(status int, code, msg string) {
	if w.failed == nil && !w.wrote {
		w.failed, w.failStatus = &errs.Body{Error: errs.Detail{Code: code, Message: msg}}, status
	}
}

func (w *guardWriter) WriteHeader(code int) {
	if w.wrote || code < 200 {
		if !w.swallow {
			w.ResponseWriter.WriteHeader(code)
		}
		return
	}
	w.wrote = true
	switch {
	case w.failed != nil:
		// The rest of the body is not read: the connection cannot carry
		// another request.
		w.Header().Set("Connection", "close")
		w.replace(w.failStatus, *w.failed)
	case (code == http.StatusNotFound || code == http.StatusMethodNotAllowed) &&
		w.Header().Get("Content-Type") == "text/plain; charset=utf-8":
		// http.Error's answer, ServeMux's own among them.
		d := errs.Detail{Code: "no_route", Message: fmt.Sprintf("no such endpoint: %s %s", w.method, w.path)}
		if code == http.StatusMethodNotAllowed {
			d = errs.Detail{Code: "method_not_allowed", Message: fmt.Sprintf("%s is not allowed on %s (Allow: %s)", w.method, w.path, w.Header().Get("Allow"))}
		}
		w.replace(code, errs.Body{Error: d})
	default:
		w.ResponseWriter.WriteHeader(code)
	}
}

// replace answers body instead of the handler. Under /oauth/ it takes the
// RFC 6749 §5.2 shape of the authorization server's other errors
// (docs/PROTOCOL.md §10.9), which OAuth clients parse.
func (w *guardWriter) replace(status int, body errs.Body) {
	w.swallow = true
	w.Header().Del("Content-Length")
	if !strings.HasPrefix(w.path, "/oauth/") {
		errs.WriteBody(w.ResponseWriter, status, body)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.ResponseWriter.WriteHeader(status)
	json.NewEncoder(w.ResponseWriter).Encode(map[string]string{"error": body.Error.Code, "error_description": body.Error.Message})
}

func (w *guardWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if w.swallow {
		return len(p), nil
	}
	return w.ResponseWriter.Write(p)
}

// finish answers a body out of bounds that the handler did not answer.
func (w *guardWriter) finish() {
	if !w.wrote && w.failed != nil {
		w.WriteHeader(w.failStatus)
	}
}

// Unwrap lets http.ResponseController reach the connection (deadlines,
// flushes of the event streams).
func (w *guardWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// requestID is the id of a request: the client's X-Request-ID when it is a
// sane token (a proxy's id ties the logs of both together), else a new one.
func requestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-ID"); saneRequestID(id) {
		return id
	}
	return strings.ToLower(rand.Text())
}

// saneRequestID accepts 1 to 64 characters of letters, digits and "-_.:",
// nothing that could forge a log line or a header.
func saneRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range []byte(id) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-_.:", c) >= 0) {
			return false
		}
	}
	return true
}
