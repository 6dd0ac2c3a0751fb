package federation

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
)

// Transport carries an MTA's requests to other domains' endpoints, and to
// its own domain's authorization server: the push of a placeholder to a
// domain's inbound endpoint (docs/PROTOCOL.md §11.2), a token exchange at
// an authorization server (§10.5–§10.7) and the fetch of a resource from
// its origin, with Range (§11.3). Each call is one request: the caller
// signs its DPoP proof, answers a use_dpop_nonce challenge with a new call,
// and closes the answer's Body.
//
// An error means the peer's answer was not had (the network, a canceled
// context): the MTA retries later. Any answer, whatever its status, is an
// Answer. HTTPS is the implementation between servers; InProcess reaches
// handlers in this process, without sockets.
type Transport interface {
	Push(ctx context.Context, r PushRequest) (*Answer, error)
	Exchange(ctx context.Context, r TokenRequest) (*Answer, error)
	Fetch(ctx context.Context, r FetchRequest) (*Answer, error)
}

// PushRequest is a push: POST Endpoint (a domain's PathMessages) with an
// Envelope, authorized by the newest hop's assertion.
type PushRequest struct {
	Endpoint  string // the inbound endpoint; the proof's htu
	Assertion string // "Authorization: DPoP <Assertion>"
	DPoP      string // the proof, bound to Assertion
	Body      []byte // an encoded Envelope (Envelope.Encode)
}

// TokenRequest is a token exchange (RFC 8693) at an authorization server's
// token endpoint, with the MTA's client assertion in Form.
type TokenRequest struct {
	Endpoint string // the token endpoint; the proof's htu
	DPoP     string
	Form     url.Values
}

// FetchRequest is the fetch of one resource: GET Endpoint (the origin's
// PathResources + "/" + content-id), authorized by a fetch token, which
// carries the origin's verdict on the message's chain (docs/PROTOCOL.md
// §11.3): nothing else is sent.
type FetchRequest struct {
	Endpoint string
	Token    string // the fetch token: "Authorization: DPoP <Token>"
	DPoP     string
	// From, when above 0, asks for the bytes from From on
	// ("Range: bytes=From-"), if the resource is still IfRange (its quoted
	// ETag, If-Range) (RFC 9110 §14.2, §13.1.5).
	From    int64
	IfRange string
}

// Answer is a peer's answer: its status, its headers and its body, which
// the caller reads (at its own bound) and closes.
type Answer struct {
	Status int
	Header http.Header
	Body   io.ReadCloser
}

func (r PushRequest) request(ctx context.Context) (*http.Request, error) {
	return post(ctx, r.Endpoint, r.Assertion, r.DPoP, "application/json", r.Body)
}

func (r TokenRequest) request(ctx context.Context) (*http.Request, error) {
	return post(ctx, r.Endpoint, "", r.DPoP, "application/x-www-form-urlencoded", []byte(r.Form.Encode()))
}

func (r FetchRequest) request(ctx context.Context) (*http.Request, error) {
	req, err := newRequest(ctx, http.MethodGet, r.Endpoint, r.Token, r.DPoP, "", nil)
	if err == nil && r.From > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", r.From))
		if r.IfRange != "" {
			req.Header.Set("If-Range", r.IfRange)
		}
	}
	return req, err
}

// post is the shape of the federation requests that carry something: a
// POST with a DPoP proof, and a DPoP-bound token when there is one (RFC
// 9449 §7.1).
func post(ctx context.Context, target, token, proof, ctype string, body []byte) (*http.Request, error) {
	return newRequest(ctx, http.MethodPost, target, token, proof, ctype, body)
}

func newRequest(ctx context.Context, method, target, token, proof, ctype string, body []byte) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return nil, fmt.Errorf("request to %s: %w", target, err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if proof != "" {
		req.Header.Set("DPoP", proof)
	}
	if token != "" {
		req.Header.Set("Authorization", "DPoP "+token)
	}
	return req, nil
}

// roundTrip sends a built request with rt.
func roundTrip(ctx context.Context, rt func(*http.Request) (*http.Response, error), r interface {
	request(context.Context) (*http.Request, error)
}) (*Answer, error) {
	req, err := r.request(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := rt(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", req.Method, req.URL.Redacted(), err)
	}
	return &Answer{Status: resp.StatusCode, Header: resp.Header, Body: resp.Body}, nil
}

// HTTPS is the Transport between servers: each request over the network
// with Client, which must verify TLS.
type HTTPS struct {
	Client *http.Client
}

var _ Transport = HTTPS{}

func (t HTTPS) Push(ctx context.Context, r PushRequest) (*Answer, error) {
	return roundTrip(ctx, t.Client.Do, r)
}

func (t HTTPS) Exchange(ctx context.Context, r TokenRequest) (*Answer, error) {
	return roundTrip(ctx, t.Client.Do, r)
}

func (t HTTPS) Fetch(ctx context.Context, r FetchRequest) (*Answer, error) {
	return roundTrip(ctx, t.Client.Do, r)
}

// InProcess is a Transport, and an http.RoundTripper, that serves each
// request with the handler of its URL's host in this process: the
// receiving domain's Receiver, an authorization server, an Origin. No
// socket is opened and no TLS is spoken; the handlers see the request as
// they would over HTTPS (its method, URL, headers and body, RemoteAddr
// "inprocess"), and their answers stream back as they write them. A host
// without a handler is an error, as an unknown host is. The zero value is
// ready; it is safe for concurrent use.
type InProcess struct {
	mu    sync.RWMutex
	hosts map[string]http.Handler
}

var (
	_ Transport         = (*InProcess)(nil)
	_ http.RoundTripper = (*InProcess)(nil)
)

// Handle serves the requests to host ("b.test", "127.0.0.1:8443": a URL's
// host, with its port if it has one) with h.
func (p *InProcess) Handle(host string, h http.Handler) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hosts == nil {
		p.hosts = map[string]http.Handler{}
	}
	p.hosts[strings.ToLower(host)] = h
}

func (p *InProcess) Push(ctx context.Context, r PushRequest) (*Answer, error) {
	return roundTrip(ctx, p.RoundTrip, r)
}

func (p *InProcess) Exchange(ctx context.Context, r TokenRequest) (*Answer, error) {
	return roundTrip(ctx, p.RoundTrip, r)
}

func (p *InProcess) Fetch(ctx context.Context, r FetchRequest) (*Answer, error) {
	return roundTrip(ctx, p.RoundTrip, r)
}

// errNoHost is the answer for a host nobody serves.
var errNoHost = errors.New("no such host in process")

// RoundTrip serves req with its host's handler. It returns once the handler
// has written its status (or returned); the body streams until the handler
// returns. Closing the body early makes the handler's writes fail, as a
// closed connection would.
func (p *InProcess) RoundTrip(req *http.Request) (*http.Response, error) {
	p.mu.RLock()
	h := p.hosts[strings.ToLower(req.URL.Host)]
	p.mu.RUnlock()
	if h == nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, fmt.Errorf("%s: %w", req.URL.Host, errNoHost)
	}
	ctx, cancel := context.WithCancel(req.Context())
	in := req.Clone(ctx)
	in.RequestURI = req.URL.RequestURI()
	in.RemoteAddr = "inprocess"
	in.Host = req.URL.Host
	if in.Body == nil {
		in.Body = http.NoBody
	}
	pr, pw := io.Pipe()
	w := &pipeWriter{header: http.Header{}, body: pw, ready: make(chan struct{})}
	go func() {
		defer cancel()
		defer func() {
			if v := recover(); v != nil { // http.ErrAbortHandler, or a bug
				pw.CloseWithError(fmt.Errorf("in-process handler: %v", v))
				w.writeHeader(http.StatusInternalServerError)
				return
			}
			w.writeHeader(http.StatusOK) // a handler that wrote nothing
			pw.Close()
		}()
		h.ServeHTTP(w, in)
	}()
	select {
	case <-w.ready:
	case <-req.Context().Done():
		pr.CloseWithError(req.Context().Err())
		return nil, req.Context().Err()
	}
	return &http.Response{Status: fmt.Sprintf("%d %s", w.status, http.StatusText(w.status)), StatusCode: w.status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: w.sent, Body: &pipeBody{pr, cancel},
		ContentLength: -1, Request: req}, nil
}

// pipeWriter is the handler's side of an in-process answer.
type pipeWriter struct {
	header http.Header
	sent   http.Header // the header as it was at WriteHeader
	body   *io.PipeWriter
	once   sync.Once
	status int
	ready  chan struct{}
}

func (w *pipeWriter) Header() http.Header { return w.header }

func (w *pipeWriter) WriteHeader(status int) {
	if status >= 100 && status < 200 {
		return // informational answers are not passed on
	}
	w.writeHeader(status)
}

func (w *pipeWriter) writeHeader(status int) {
	w.once.Do(func() {
		w.status, w.sent = status, w.header.Clone()
		close(w.ready)
	})
}

func (w *pipeWriter) Write(b []byte) (int, error) {
	w.writeHeader(http.StatusOK)
	return w.body.Write(b)
}

// Flush is a no-op: every Write reaches the reader at once.
func (w *pipeWriter) Flush() {}

// pipeBody is the reader's side; closing it stops the handler's writes and
// cancels its request's context.
type pipeBody struct {
	*io.PipeReader
	cancel context.CancelFunc
}

func (b *pipeBody) Close() error {
	b.cancel()
	return b.PipeReader.Close()
}
