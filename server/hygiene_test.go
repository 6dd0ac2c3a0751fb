package server_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pullmail/pullmail/account"
	"github.com/pullmail/pullmail/client"
	"github.com/pullmail/pullmail/discovery/dnstest"
	"github.com/pullmail/pullmail/dpop"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/federation"
	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/server"
)

// live is a server of these tests, running over real TLS on loopback with
// a configuration of the test's choice (testenv's is fixed).
type live struct {
	srv  *server.Server
	url  string
	addr string
	dir  string
	pool *x509.CertPool
	http *http.Client
}

// serve opens and serves a domain a.test with cfg (its DataDir, if empty, a
// temporary directory); it stops when the test ends.
func serve(t *testing.T, cfg server.Config) *live {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	cfg.Domain, cfg.GCInterval = "a.test", -1
	dns, err := dnstest.Start() // never the system resolver
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dns.Close() })
	cfg.DNS = dns.Addr()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = ln.Addr().String()
	cfg.PublicURL = "https://" + cfg.Listen
	srv, err := server.Open(context.Background(), cfg)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done, ready := make(chan error, 1), make(chan string, 1)
	go func() { done <- srv.ServeListener(ctx, ln, func(u string) { ready <- u }) }()
	l := &live{srv: srv, url: <-ready, addr: cfg.Listen, dir: cfg.DataDir, pool: x509.NewCertPool()}
	pem, err := os.ReadFile(filepath.Join(cfg.DataDir, "ca.pem"))
	if err != nil || !l.pool.AppendCertsFromPEM(pem) {
		t.Fatalf("the local CA: %v", err)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: l.pool}}
	l.http = &http.Client{Transport: tr, Timeout: 20 * time.Second}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serving: %v", err)
		}
		srv.Close()
	})
	return l
}

// do sends a request and returns the answer with its body read.
func (l *live) do(t *testing.T, method, path, ctype string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, l.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := l.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// errorCode is the JSON error code of an answer, failing the test if the
// answer is not a JSON error.
func errorCode(t *testing.T, resp *http.Response, body []byte) string {
	t.Helper()
	code := anyErrorCode(resp, body)
	if strings.HasPrefix(code, "not JSON") {
		t.Fatalf("%d %s: %.200s", resp.StatusCode, code, body)
	}
	return code
}

// anyErrorCode is the code of a JSON error of either shape: Pullmail's
// (docs/PROTOCOL.md §7) or, from the authorization server, RFC 6749's.
func anyErrorCode(resp *http.Response, body []byte) string {
	var b struct {
		Error json.RawMessage `json:"error"`
	}
	var pm errs.Detail
	var oauth string
	switch {
	case resp.Header.Get("Content-Type") != "application/json" || json.Unmarshal(body, &b) != nil:
	case json.Unmarshal(b.Error, &oauth) == nil && oauth != "":
		return oauth
	case json.Unmarshal(b.Error, &pm) == nil && pm.Code != "":
		return pm.Code
	}
	return "not JSON: " + resp.Header.Get("Content-Type")
}

// TestSlowBodiesCut holds hundreds of connections that trickle their bodies
// to the endpoints reachable without credentials: the server keeps
// answering others, and cuts every slow one within the body bound.
func TestSlowBodiesCut(t *testing.T) {
	const bound = 2 * time.Second
	n := 500
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil {
		// Both ends of every connection are in this process.
		if have := int(lim.Cur) - 200; have < 2*n {
			n = max(have/2, 20)
			t.Logf("RLIMIT_NOFILE %d: %d slow connections", lim.Cur, n)
		}
	}
	l := serve(t, server.Config{BodyTimeout: bound})
	// Endpoints and what answers a body that stops coming: the handler
	// read it (408), or refused before reading (the answer it gives), and
	// then the connection closes.
	endpoints := []struct {
		path   string
		status int
	}{
		{"/oauth/token", http.StatusRequestTimeout},
		{"/oauth/authorize", http.StatusRequestTimeout},
		{"/oauth/device_authorization", http.StatusRequestTimeout},
		{"/oauth/revoke", http.StatusRequestTimeout},
		{federation.PathMessages, http.StatusUnauthorized},
	}

	tc := &tls.Config{RootCAs: l.pool}
	conns := make([]*tls.Conn, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	dialErrs := make(chan error, n)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			c, err := tls.Dial("tcp", l.addr, tc)
			if err != nil {
				dialErrs <- err
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	close(dialErrs)
	for err := range dialErrs {
		t.Fatalf("dialing: %v", err)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()

	// Every connection starts its request now, and never finishes its body.
	type outcome struct {
		i       int
		held    time.Duration // until the server closed the connection
		status  int
		code    string
		readErr error
	}
	results := make(chan outcome, n)
	stop := make(chan struct{})
	defer close(stop)
	for i, c := range conns {
		ep := endpoints[i%len(endpoints)]
		head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\ngrant_type=",
			ep.path, l.addr)
		start := time.Now()
		if _, err := io.WriteString(c, head); err != nil {
			t.Fatal(err)
		}
		go func() { // a byte every 200 ms: 200 s for the body
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if _, err := c.Write([]byte("x")); err != nil {
						return
					}
				}
			}
		}()
		go func() {
			o := outcome{i: i}
			c.SetReadDeadline(start.Add(bound + 4*time.Second))
			br := bufio.NewReader(c)
			if resp, err := http.ReadResponse(br, nil); err == nil {
				b, _ := io.ReadAll(resp.Body)
				o.status, o.code = resp.StatusCode, anyErrorCode(resp, b)
			}
			_, err := io.Copy(io.Discard, br)
			o.held, o.readErr = time.Since(start), err
			results <- o
		}()
	}

	// Meanwhile the server answers others at once.
	others := time.Now()
	if resp, body := l.do(t, "GET", "/healthz", "", nil); resp.StatusCode != 200 {
		t.Fatalf("healthz while slow bodies are held: %d %s", resp.StatusCode, body)
	}
	if resp, body := l.do(t, "POST", "/oauth/token", "application/x-www-form-urlencoded", strings.NewReader("grant_type=bogus")); resp.StatusCode != 400 && resp.StatusCode != 401 {
		t.Fatalf("token while slow bodies are held: %d %s", resp.StatusCode, body)
	}
	if d := time.Since(others); d > bound/2 {
		t.Errorf("others waited %s while slow bodies were held", d)
	}

	for range n {
		o := <-results
		ep := endpoints[o.i%len(endpoints)]
		var ne net.Error
		switch {
		case errors.As(o.readErr, &ne) && ne.Timeout():
			t.Fatalf("connection %d (%s): still open after %s", o.i, ep.path, o.held.Round(time.Millisecond))
		case o.held > bound+2*time.Second:
			t.Fatalf("connection %d (%s): held %s, the bound is %s", o.i, ep.path, o.held, bound)
		case o.status != ep.status:
			t.Fatalf("connection %d (%s): status %d (%s), want %d", o.i, ep.path, o.status, o.code, ep.status)
		case o.status == http.StatusRequestTimeout && o.code != "request_timeout", strings.HasPrefix(o.code, "not JSON"):
			t.Fatalf("connection %d (%s): code %q", o.i, ep.path, o.code)
		}
	}
}

// TestBodyBounds: a body too large outside /api/ is refused as JSON; a slow
// authenticated upload under /api/, pausing less than the idle bound, is
// not cut by the bound of the endpoints without credentials.
func TestBodyBounds(t *testing.T) {
	l := serve(t, server.Config{BodyTimeout: 500 * time.Millisecond, MaxBody: 64 << 10})
	for _, path := range []string{"/oauth/token", "/oauth/revoke", "/oauth/device_authorization"} {
		resp, body := l.do(t, "POST", path, "application/x-www-form-urlencoded", bytes.NewReader(make([]byte, 64<<10+100)))
		if code := errorCode(t, resp, body); resp.StatusCode != http.StatusRequestEntityTooLarge || code != "too_large" {
			t.Errorf("%s with a large body: %d %s", path, resp.StatusCode, code)
		}
	}

	alice := l.user(t, "alice@a.test")
	data := bytes.Repeat([]byte("slow upload "), 200)
	up, err := alice.Upload(context.Background(), &slowReader{data: data, chunk: 400, pause: 150 * time.Millisecond}, mailbox.UploadOptions{Size: int64(len(data))})
	if err != nil || up.Size != int64(len(data)) {
		t.Fatalf("a slow authenticated upload: %+v, %v", up, err)
	}
}

// user adds a user and returns a client with a token of theirs.
func (l *live) user(t *testing.T, addr string) *client.Client {
	t.Helper()
	ctx := context.Background()
	secret, hash := account.NewToken()
	err := l.srv.Meta.Update(ctx, func(tx meta.Tx) error {
		u, err := tx.AddUser(ctx, meta.User{Address: addr})
		if err != nil {
			return err
		}
		return tx.AddToken(ctx, meta.Token{Hash: hash, UserID: u.ID, Created: time.Now().UTC()})
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(l.url, secret, filepath.Join(l.dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// slowReader yields data chunk bytes at a time, pausing before each.
type slowReader struct {
	data  []byte
	chunk int
	pause time.Duration
}

func (r *slowReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	time.Sleep(r.pause)
	n := copy(p[:min(len(p), r.chunk)], r.data)
	r.data = r.data[n:]
	return n, nil
}

// TestSecurityHeaders: every answer, JSON, error or webmail, carries HSTS,
// nosniff and a request id.
func TestSecurityHeaders(t *testing.T) {
	l := serve(t, server.Config{})
	for _, path := range []string{"/healthz", "/nowhere", "/webmail/", "/openapi.json", federation.PathMessages} {
		resp, _ := l.do(t, "GET", path, "", nil)
		h := resp.Header
		if h.Get("Strict-Transport-Security") != "max-age=63072000" || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("X-Request-ID") == "" {
			t.Errorf("%s (%d): HSTS %q, nosniff %q, request id %q", path, resp.StatusCode, h.Get("Strict-Transport-Security"),
				h.Get("X-Content-Type-Options"), h.Get("X-Request-ID"))
		}
	}
}

// TestWrongMethodJSON: a wrong method on the federation endpoints (and the
// AS's) is answered 405 as JSON with its Allow header, not the router's
// plain text.
func TestWrongMethodJSON(t *testing.T) {
	l := serve(t, server.Config{})
	for _, tc := range []struct {
		method, path string
		allow        string
	}{
		{"GET", federation.PathMessages, "POST"},
		{"PUT", federation.PathMessages, "POST"},
		{"POST", federation.PathResources + "/sha256-x", "GET, HEAD"},
		{"DELETE", federation.PathResources + "/sha256-x", "GET, HEAD"},
		{"GET", "/oauth/token", "POST"},
		{"GET", "/oauth/revoke", "POST"},
	} {
		resp, body := l.do(t, tc.method, tc.path, "", nil)
		code := errorCode(t, resp, body)
		if resp.StatusCode != http.StatusMethodNotAllowed || code != "method_not_allowed" || resp.Header.Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d %s, Allow %q", tc.method, tc.path, resp.StatusCode, code, resp.Header.Get("Allow"))
		}
	}
}

// TestInternalErrorLogged: a request that fails inside the server logs its
// cause at ERROR with the request's id, which the client got as
// X-Request-ID; the failure is counted by code in the metrics.
func TestInternalErrorLogged(t *testing.T) {
	var logs syncBuffer
	l := serve(t, server.Config{Log: slog.New(slog.NewJSONHandler(&logs, nil))})
	// A push whose DPoP proof is checked against a closed metadata store
	// (its replay cache): an internal failure, not the sender's fault.
	dk, err := dpop.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	const token = "e30.e30.sig"
	proof, err := dk.Proof("POST", l.url+federation.PathMessages, token, "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	l.srv.Meta.Close()
	for _, tc := range []struct {
		name, sent string
		kept       bool
	}{
		{"own id kept", "proxy-7f3a.1", true},
		{"bad id replaced", "<script>", false},
		{"none", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs.Reset()
			req, _ := http.NewRequest("POST", l.url+federation.PathMessages, strings.NewReader("{}"))
			req.Header.Set("Authorization", "DPoP "+token)
			req.Header.Set("DPoP", proof)
			if tc.sent != "" {
				req.Header.Set("X-Request-ID", tc.sent)
			}
			resp, err := l.http.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			id := resp.Header.Get("X-Request-ID")
			if code := errorCode(t, resp, body); resp.StatusCode != 500 || code != "internal" || strings.Contains(string(body), "replay") {
				t.Fatalf("answer %d %s", resp.StatusCode, body)
			}
			if id == "" || (id == tc.sent) != tc.kept {
				t.Fatalf("request id %q for %q sent", id, tc.sent)
			}
			found := false
			for _, line := range bytes.Split(logs.Bytes(), []byte("\n")) {
				var rec struct{ Level, Msg, Req, Err string }
				if json.Unmarshal(line, &rec) == nil && rec.Level == "ERROR" && rec.Req == id && strings.Contains(rec.Err, "replay cache") {
					found = true
				}
			}
			if !found {
				t.Fatalf("no ERROR with the cause and request id %s in:\n%s", id, logs.Bytes())
			}
		})
	}
	_, body := l.do(t, "GET", "/metrics", "", nil)
	if !strings.Contains(string(body), `pullmail_http_errors_total{code="internal"} 3`) {
		t.Fatalf("metrics: no count of the internal errors:\n%s", grepLines(body, "pullmail_http_errors_total"))
	}
}

func grepLines(b []byte, s string) string {
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// syncBuffer is a bytes.Buffer for a logger that handlers write from many
// goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

func (s *syncBuffer) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Reset()
}

// TestInternalErrorCauseInAccessLog: an internal error answered through
// errs.WriteHTTP by any package (here the mailbox API's authentication, with
// the metadata store gone) still reaches the log with its cause, on the
// access log's ERROR line for the request.
func TestInternalErrorCauseInAccessLog(t *testing.T) {
	var logs syncBuffer
	l := serve(t, server.Config{Log: slog.New(slog.NewJSONHandler(&logs, nil))})
	l.srv.Meta.Close()
	logs.Reset()
	req, _ := http.NewRequest("GET", l.url+"/api/v1/messages", nil)
	req.Header.Set("Authorization", "Bearer pmt_"+strings.Repeat("A", 43))
	resp, err := l.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 500 || errorCode(t, resp, body) != "internal" {
		t.Fatalf("answer %d %s", resp.StatusCode, body)
	}
	id := resp.Header.Get("X-Request-ID")
	for _, line := range bytes.Split(logs.Bytes(), []byte("\n")) {
		var rec struct{ Level, Msg, Req, Err, Code string }
		if json.Unmarshal(line, &rec) == nil && rec.Msg == "http" && rec.Level == "ERROR" && rec.Req == id {
			if rec.Err == "" || rec.Code != "internal" {
				t.Fatalf("access log line without the cause: %s", line)
			}
			return
		}
	}
	t.Fatalf("no ERROR access log line for request %s in:\n%s", id, logs.Bytes())
}
