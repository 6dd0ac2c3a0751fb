// Package client is the mailbox API over HTTPS: a *Client implements
// mailbox.API, so code written against the interface runs in-process or
// against a remote server alike.
package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/tlsca"
)

// Client talks to one mailbox server as one user.
type Client struct {
	BaseURL string // e.g. https://127.0.0.1:8443
	Token   string // bearer token
	HTTP    *http.Client
}

var _ mailbox.API = (*Client)(nil)

// New returns a client for base, authenticating with token. caFile, when not
// empty, names a PEM file of extra CAs to trust (PULLMAIL_CA); the system
// roots stay trusted.
func New(base, token, caFile string) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("server URL %q: want https://host[:port]", base)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// HTTP/1.1: Go's HTTP/2 moves large bodies at half the speed and makes
	// the server hold bigger buffers (docs/BENCHMARKS.md); a command-line
	// client gains nothing from multiplexing.
	tr.ForceAttemptHTTP2 = false
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	// One server, maybe many requests at once (a program sending in
	// parallel): keep their connections rather than the default two, which
	// makes every request beyond those pay a new TLS handshake.
	tr.MaxIdleConnsPerHost = 32
	if caFile != "" {
		pool, err := tlsca.LoadPool(caFile)
		if err != nil {
			return nil, fmt.Errorf("loading CA %s: %w", caFile, err)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &Client{BaseURL: strings.TrimRight(base, "/"), Token: token, HTTP: &http.Client{Transport: tr}}, nil
}

func (c *Client) request(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, body)
	if err != nil {
		return nil, err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	return req, nil
}

// do sends req and decodes a JSON answer into out (unless nil), turning error
// answers into *errs.Error with the server's code.
func (c *Client) do(req *http.Request, out any) error {
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return errs.Wrap(err, errs.Temporary, "unreachable", fmt.Sprintf("cannot reach %s", c.BaseURL))
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return errs.FromHTTP(resp.StatusCode, data)
	}
	if out == nil {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return errs.Wrap(err, errs.Internal, "bad_response", "the server's answer could not be read")
	}
	return nil
}

func (c *Client) getJSON(ctx context.Context, path string, out any) error {
	req, err := c.request(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	return c.do(req, out)
}

func (c *Client) sendJSON(ctx context.Context, method, path string, body []byte, out any) error {
	req, err := c.request(ctx, method, path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return c.do(req, out)
}

// Me implements mailbox.API.
func (c *Client) Me(ctx context.Context) (mailbox.Me, error) {
	var me mailbox.Me
	return me, c.getJSON(ctx, "/api/v1/me", &me)
}

// Upload implements mailbox.API. With opt.Size >= 0 the request carries a
// Content-Length, and the server refuses a body of another length.
func (c *Client) Upload(ctx context.Context, r io.Reader, opt mailbox.UploadOptions) (mailbox.Upload, error) {
	path := "/api/v1/resources"
	if opt.Digest != "" {
		path += "?content_id=" + string(opt.Digest)
	}
	req, err := c.request(ctx, http.MethodPost, path, io.NopCloser(r))
	if err != nil {
		return mailbox.Upload{}, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.ContentLength = opt.Size
	if opt.Size < 0 {
		req.ContentLength = -1
	}
	var up mailbox.Upload
	return up, c.do(req, &up)
}

// CreateDraft implements mailbox.API.
func (c *Client) CreateDraft(ctx context.Context, doc json.RawMessage) (mailbox.Message, error) {
	var m mailbox.Message
	return m, c.sendJSON(ctx, http.MethodPost, "/api/v1/messages", doc, &m)
}

// UpdateDraft implements mailbox.API.
func (c *Client) UpdateDraft(ctx context.Context, id string, doc json.RawMessage) (mailbox.Message, error) {
	var m mailbox.Message
	return m, c.sendJSON(ctx, http.MethodPut, "/api/v1/messages/"+url.PathEscape(id), doc, &m)
}

// Delete implements mailbox.API.
func (c *Client) Delete(ctx context.Context, id string) error {
	req, err := c.request(ctx, http.MethodDelete, "/api/v1/messages/"+url.PathEscape(id), nil)
	if err != nil {
		return err
	}
	return c.do(req, nil)
}

// Purge implements mailbox.API.
func (c *Client) Purge(ctx context.Context, id string) error {
	req, err := c.request(ctx, http.MethodDelete, "/api/v1/messages/"+url.PathEscape(id)+"?purge=true", nil)
	if err != nil {
		return err
	}
	return c.do(req, nil)
}

// Restore implements mailbox.API.
func (c *Client) Restore(ctx context.Context, id string) (mailbox.Message, error) {
	var m mailbox.Message
	return m, c.sendJSON(ctx, http.MethodPost, "/api/v1/messages/"+url.PathEscape(id)+"/restore", nil, &m)
}

// Move implements mailbox.API.
func (c *Client) Move(ctx context.Context, id, folder string) (mailbox.Message, error) {
	var m mailbox.Message
	body, _ := json.Marshal(mailbox.Move{Folder: folder})
	return m, c.sendJSON(ctx, http.MethodPost, "/api/v1/messages/"+url.PathEscape(id)+"/move", body, &m)
}

// Folders implements mailbox.API.
func (c *Client) Folders(ctx context.Context) (mailbox.FolderList, error) {
	var fl mailbox.FolderList
	return fl, c.getJSON(ctx, "/api/v1/folders", &fl)
}

// CreateFolder implements mailbox.API.
func (c *Client) CreateFolder(ctx context.Context, name string) (mailbox.FolderInfo, error) {
	var f mailbox.FolderInfo
	body, _ := json.Marshal(mailbox.NewFolder{Name: name})
	return f, c.sendJSON(ctx, http.MethodPost, "/api/v1/folders", body, &f)
}

// DeleteFolder implements mailbox.API.
func (c *Client) DeleteFolder(ctx context.Context, name string) error {
	req, err := c.request(ctx, http.MethodDelete, "/api/v1/folders/"+url.PathEscape(name), nil)
	if err != nil {
		return err
	}
	return c.do(req, nil)
}

// Send implements mailbox.API. An Idempotency-Key in ctx
// (mailbox.WithIdempotencyKey) goes as the header, so that the caller may
// repeat a send whose answer it did not get: the server answers the
// repeat from its record and does not send again.
func (c *Client) Send(ctx context.Context, id string) (mailbox.Message, error) {
	req, err := c.request(ctx, http.MethodPost, "/api/v1/messages/"+url.PathEscape(id)+"/send", nil)
	if err != nil {
		return mailbox.Message{}, err
	}
	if key := mailbox.IdempotencyKeyFrom(ctx); key != "" {
		req.Header.Set(mailbox.IdempotencyKeyHeader, mailbox.FormatIdempotencyKey(key))
	}
	var m mailbox.Message
	return m, c.do(req, &m)
}

// SetSeen implements mailbox.API.
func (c *Client) SetSeen(ctx context.Context, id string, seen bool) (mailbox.Message, error) {
	var m mailbox.Message
	body, _ := json.Marshal(mailbox.Patch{Seen: &seen})
	return m, c.sendJSON(ctx, http.MethodPatch, "/api/v1/messages/"+url.PathEscape(id), body, &m)
}

// List implements mailbox.API.
func (c *Client) List(ctx context.Context, opt mailbox.ListOptions) (mailbox.List, error) {
	q := url.Values{}
	if opt.Folder != "" {
		q.Set("folder", opt.Folder)
	}
	if opt.Limit > 0 {
		q.Set("limit", strconv.Itoa(opt.Limit))
	}
	if opt.Page != "" {
		q.Set("page", opt.Page)
	}
	var l mailbox.List
	return l, c.getJSON(ctx, "/api/v1/messages?"+q.Encode(), &l)
}

// Search implements mailbox.API.
func (c *Client) Search(ctx context.Context, opt mailbox.SearchOptions) (mailbox.List, error) {
	q := url.Values{"q": {opt.Query}}
	if opt.Limit > 0 {
		q.Set("limit", strconv.Itoa(opt.Limit))
	}
	if opt.Page != "" {
		q.Set("page", opt.Page)
	}
	var l mailbox.List
	return l, c.getJSON(ctx, "/api/v1/search?"+q.Encode(), &l)
}

// Get implements mailbox.API.
func (c *Client) Get(ctx context.Context, id string) (mailbox.Message, error) {
	var m mailbox.Message
	return m, c.getJSON(ctx, "/api/v1/messages/"+url.PathEscape(id), &m)
}

// Lookup implements mailbox.API.
func (c *Client) Lookup(ctx context.Context, messageID string) ([]mailbox.Message, error) {
	var l mailbox.List
	err := c.getJSON(ctx, "/api/v1/messages?message_id="+url.QueryEscape(messageID), &l)
	return l.Messages, err
}

// Changes implements mailbox.API.
func (c *Client) Changes(ctx context.Context, cursor string, limit int) (mailbox.Changes, error) {
	q := url.Values{"cursor": {cursor}}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var ch mailbox.Changes
	return ch, c.getJSON(ctx, "/api/v1/changes?"+q.Encode(), &ch)
}

// Download implements mailbox.API. The attachment's Filename and Disposition
// are left empty: the caller knows them from the message.
func (c *Client) Download(ctx context.Context, id string, cid resource.ID) (io.ReadCloser, mailbox.Attachment, error) {
	req, err := c.request(ctx, http.MethodGet, "/api/v1/messages/"+url.PathEscape(id)+"/resources/"+url.PathEscape(string(cid)), nil)
	if err != nil {
		return nil, mailbox.Attachment{}, err
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, mailbox.Attachment{}, errs.Wrap(err, errs.Temporary, "unreachable", fmt.Sprintf("cannot reach %s", c.BaseURL))
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return nil, mailbox.Attachment{}, errs.FromHTTP(resp.StatusCode, data)
	}
	body := &cutReader{rc: resp.Body, size: resp.ContentLength, req: resp.Header.Get("X-Request-ID")}
	return body, mailbox.Attachment{ContentID: cid, Size: resp.ContentLength, ContentType: resp.Header.Get("Content-Type")}, nil
}

// Raw implements mailbox.API: GET /api/v1/messages/{id}/raw.
func (c *Client) Raw(ctx context.Context, id string) (io.ReadCloser, error) {
	req, err := c.request(ctx, http.MethodGet, "/api/v1/messages/"+url.PathEscape(id)+"/raw", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, errs.Wrap(err, errs.Temporary, "unreachable", fmt.Sprintf("cannot reach %s", c.BaseURL))
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return nil, errs.FromHTTP(resp.StatusCode, data)
	}
	return resp.Body, nil
}

// cutReader names a download that the server cut short of its
// Content-Length. The server verifies a stored copy chunk by chunk and
// stops at the first damaged one (docs/PROTOCOL.md §3.6): what arrived is
// intact, but the reader should hear why the rest did not, rather than
// "unexpected EOF".
type cutReader struct {
	rc   io.ReadCloser
	size int64
	n    int64
	req  string
}

func (c *cutReader) Read(p []byte) (int, error) {
	n, err := c.rc.Read(p)
	c.n += int64(n)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		msg := fmt.Sprintf("the server cut the download at byte %d of %d: its stored copy may be damaged past that point (pullmail fsck on the server finds it)", c.n, c.size)
		if c.req != "" {
			msg += "; request id " + c.req + " for the server's log"
		}
		err = errs.Wrap(err, errs.Temporary, "download_cut", msg)
	}
	return n, err
}

func (c *cutReader) Close() error { return c.rc.Close() }

// Timeout is a reasonable default for a whole non-streaming call.
const Timeout = 30 * time.Second

// Forward implements mailbox.API.
func (c *Client) Forward(ctx context.Context, id string, req mailbox.ForwardRequest) (mailbox.Forwarded, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return mailbox.Forwarded{}, err
	}
	var f mailbox.Forwarded
	err = c.sendJSON(ctx, http.MethodPost, "/api/v1/messages/"+url.PathEscape(id)+"/forward", body, &f)
	return f, err
}

// AutoForward implements mailbox.API.
func (c *Client) AutoForward(ctx context.Context) (mailbox.AutoForward, error) {
	var af mailbox.AutoForward
	err := c.getJSON(ctx, "/api/v1/forwarding", &af)
	return af, err
}

// SetAutoForward implements mailbox.API: PUT /api/v1/forwarding, or
// DELETE when req.To is empty.
func (c *Client) SetAutoForward(ctx context.Context, req mailbox.AutoForwardRequest) (mailbox.AutoForward, error) {
	var af mailbox.AutoForward
	if len(req.To) == 0 {
		r, err := c.request(ctx, http.MethodDelete, "/api/v1/forwarding", nil)
		if err != nil {
			return af, err
		}
		return af, c.do(r, &af)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return af, err
	}
	err = c.sendJSON(ctx, http.MethodPut, "/api/v1/forwarding", body, &af)
	return af, err
}

// Stat implements mailbox.API.
func (c *Client) Stat(ctx context.Context, cid resource.ID) (mailbox.Upload, error) {
	var up mailbox.Upload
	err := c.getJSON(ctx, "/api/v1/resources/"+string(cid), &up)
	return up, err
}

// Events implements mailbox.API over GET /api/v1/events (Server-Sent
// Events). It returns nil when ctx ends; a stream the server ends (its
// shutdown) or breaks returns an error of kind Temporary: reconnect, then
// call Changes. Pings are passed to fn as mailbox.EventPing. Use an
// http.Client without a Timeout: the stream stays open.
func (c *Client) Events(ctx context.Context, fn func(mailbox.Event) error) error {
	req, err := c.request(ctx, http.MethodGet, "/api/v1/events", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return errs.Wrap(err, errs.Temporary, "unreachable", fmt.Sprintf("cannot reach %s", c.BaseURL))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return errs.FromHTTP(resp.StatusCode, data)
	}
	err = ParseSSE(resp.Body, func(event, data string) error {
		ev := mailbox.Event{Kind: event}
		if event != mailbox.EventPing {
			if err := json.Unmarshal([]byte(data), &ev); err != nil {
				return errs.Wrap(err, errs.Internal, "bad_response", "an event's data could not be read")
			}
		}
		return fn(ev)
	})
	if ctx.Err() != nil {
		return nil
	}
	if err == nil || errors.Is(err, io.ErrUnexpectedEOF) {
		return errs.E(errs.Temporary, "stream_ended", "the server ended the event stream: reconnect")
	}
	var e *errs.Error
	if errors.As(err, &e) {
		return err
	}
	return errs.Wrap(err, errs.Temporary, "stream_ended", "the event stream broke: reconnect")
}

// MaxSSELine caps one line of an event stream.
const MaxSSELine = 64 << 10

// ParseSSE reads a text/event-stream (WHATWG HTML §9.2.6) and calls fn for
// each dispatched event with its type ("message" when none) and data (data
// lines joined by "\n"), and with event "ping" for each comment line. It
// returns nil at the end of the stream, fn's error, or the reader's.
func ParseSSE(r io.Reader, fn func(event, data string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), MaxSSELine)
	sc.Split(scanSSELines)
	var event string
	var data []string
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if data != nil {
				if event == "" {
					event = "message"
				}
				if err := fn(event, strings.Join(data, "\n")); err != nil {
					return err
				}
			}
			event, data = "", nil
			continue
		}
		if line[0] == ':' {
			if err := fn(mailbox.EventPing, ""); err != nil {
				return err
			}
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			event = value
		case "data":
			data = append(data, value)
		}
	}
	return sc.Err()
}

// scanSSELines splits on CRLF, LF or CR, as the event stream grammar
// allows.
func scanSSELines(data []byte, atEOF bool) (int, []byte, error) {
	for i, b := range data {
		switch b {
		case '\n':
			return i + 1, data[:i], nil
		case '\r':
			if i+1 < len(data) {
				if data[i+1] == '\n' {
					return i + 2, data[:i], nil
				}
				return i + 1, data[:i], nil
			}
			if atEOF {
				return i + 1, data[:i], nil
			}
			return 0, nil, nil // a CR at the end of the buffer: LF may follow
		}
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// CreateUpload implements mailbox.API.
func (c *Client) CreateUpload(ctx context.Context, req mailbox.NewUploadSession) (mailbox.UploadSession, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return mailbox.UploadSession{}, err
	}
	var u mailbox.UploadSession
	return u, c.sendJSON(ctx, http.MethodPost, "/api/v1/uploads", body, &u)
}

// UploadStatus implements mailbox.API.
func (c *Client) UploadStatus(ctx context.Context, id string) (mailbox.UploadSession, error) {
	var u mailbox.UploadSession
	return u, c.getJSON(ctx, "/api/v1/uploads/"+url.PathEscape(id), &u)
}

// AppendUpload implements mailbox.API. When r is an *io.SectionReader,
// *bytes.Reader or *strings.Reader the request declares its length. On
// offset_mismatch the returned session carries the server's offset.
func (c *Client) AppendUpload(ctx context.Context, id string, offset int64, r io.Reader) (mailbox.UploadSession, error) {
	req, err := c.request(ctx, http.MethodPatch, "/api/v1/uploads/"+url.PathEscape(id), r)
	if err != nil {
		return mailbox.UploadSession{}, err
	}
	if _, ok := r.(*io.SectionReader); ok {
		req.ContentLength = r.(*io.SectionReader).Size()
	}
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	req.Header.Set(mailbox.UploadOffsetHeader, strconv.FormatInt(offset, 10))
	var u mailbox.UploadSession
	err = c.do(req, &u)
	if errs.CodeOf(err) == "offset_mismatch" {
		u.UploadID = id
		u.Offset = -1
		if st, serr := c.UploadStatus(ctx, id); serr == nil {
			u = st
		}
	}
	return u, err
}

// DeleteUpload implements mailbox.API.
func (c *Client) DeleteUpload(ctx context.Context, id string) error {
	req, err := c.request(ctx, http.MethodDelete, "/api/v1/uploads/"+url.PathEscape(id), nil)
	if err != nil {
		return err
	}
	return c.do(req, nil)
}

// UploadResumable uploads size bytes of r as a resumable upload in chunks of
// at most chunk bytes (8 MiB when <= 0), resuming from the server's offset
// after a failed chunk up to retries times in a row, and returns the
// committed resource. want, when set, is declared as the Content-ID.
func (c *Client) UploadResumable(ctx context.Context, r io.ReaderAt, size int64, want resource.ID, chunk int64, retries int) (mailbox.Upload, error) {
	if chunk <= 0 {
		chunk = 8 << 20
	}
	u, err := c.CreateUpload(ctx, mailbox.NewUploadSession{Size: size, ContentID: want})
	if err != nil {
		return mailbox.Upload{}, err
	}
	failures := 0
	for u.ContentID == "" {
		n := min(chunk, size-u.Offset)
		next, err := c.AppendUpload(ctx, u.UploadID, u.Offset, io.NewSectionReader(r, u.Offset, n))
		if err == nil {
			u, failures = next, 0
			continue
		}
		if k := errs.KindOf(err); k != errs.Temporary && errs.CodeOf(err) != "upload_incomplete" && errs.CodeOf(err) != "offset_mismatch" {
			return mailbox.Upload{}, err
		}
		if failures++; failures > retries || ctx.Err() != nil {
			return mailbox.Upload{}, err
		}
		if u, err = c.UploadStatus(ctx, u.UploadID); err != nil {
			return mailbox.Upload{}, err
		}
	}
	return mailbox.Upload{ContentID: u.ContentID, Size: u.Size}, nil
}
