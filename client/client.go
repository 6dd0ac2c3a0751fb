// Package client is the mailbox API over HTTPS: a *Client implements
// mailbox.API, so code written against the interface runs in-process or
// against a remote server alike.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
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

// Send implements mailbox.API.
func (c *Client) Send(ctx context.Context, id string) (mailbox.Message, error) {
	var m mailbox.Message
	return m, c.sendJSON(ctx, http.MethodPost, "/api/v1/messages/"+url.PathEscape(id)+"/send", nil, &m)
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
	var l mailbox.List
	return l, c.getJSON(ctx, "/api/v1/messages?"+q.Encode(), &l)
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
	return resp.Body, mailbox.Attachment{ContentID: cid, Size: resp.ContentLength, ContentType: resp.Header.Get("Content-Type")}, nil
}

// Timeout is a reasonable default for a whole non-streaming call.
const Timeout = 30 * time.Second
