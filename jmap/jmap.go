// Package jmap serves a domain's mailboxes over JMAP: RFC 8620 (core), RFC
// 8621 (mail), RFC 9404 (blobs), with push by EventSource (RFC 8620 §7.3)
// and WebSocket (RFC 8887). It works only through the mailbox service
// (mailbox.API, with the principal that auth.Middleware put in the
// context), never on the metadata store, so that the webmail, the CLI,
// IMAP and JMAP see one mailbox. docs/PROTOCOL.md §14 records how JMAP's
// objects map onto Pullmail's: folders are Mailboxes, messages are Emails,
// Content-IDs are blobIds, the change log gives the states.
package jmap

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/pullmail/pullmail/auth"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/resource"
)

// Capability URNs (RFC 8620 §9.4, RFC 8621 §1.3, RFC 9404, RFC 8887).
const (
	CapCore       = "urn:ietf:params:jmap:core"
	CapMail       = "urn:ietf:params:jmap:mail"
	CapSubmission = "urn:ietf:params:jmap:submission"
	CapBlob       = "urn:ietf:params:jmap:blob"
	CapWebSocket  = "urn:ietf:params:jmap:websocket"
)

// Paths of the endpoints, below the domain's public URL.
const (
	PathSession     = "/.well-known/jmap"
	PathAPI         = "/jmap/api"
	PathUpload      = "/jmap/upload/{accountId}/"
	PathDownload    = "/jmap/download/{accountId}/{blobId}/{name}"
	PathEventSource = "/jmap/eventsource/"
	PathWebSocket   = "/jmap/ws"
)

// Limits are the limits the session object announces; every one is
// enforced with the error type RFC 8620 names for it.
type Limits struct {
	MaxSizeUpload         int64 `json:"maxSizeUpload"`
	MaxConcurrentUpload   int   `json:"maxConcurrentUpload"`
	MaxSizeRequest        int64 `json:"maxSizeRequest"`
	MaxConcurrentRequests int   `json:"maxConcurrentRequests"`
	MaxCallsInRequest     int   `json:"maxCallsInRequest"`
	MaxObjectsInGet       int   `json:"maxObjectsInGet"`
	MaxObjectsInSet       int   `json:"maxObjectsInSet"`
}

// DefaultLimits are the limits when Config leaves them zero. maxSizeUpload
// defaults to the mailbox's own upload bound (server.Config.MaxUpload).
var DefaultLimits = Limits{
	MaxSizeUpload:         1 << 30,
	MaxConcurrentUpload:   4,
	MaxSizeRequest:        10 << 20,
	MaxConcurrentRequests: 4,
	MaxCallsInRequest:     32,
	MaxObjectsInGet:       500,
	MaxObjectsInSet:       500,
}

// maxBodyValue bounds a body value fetched into Email/get when the client
// names no maxBodyValueBytes, so that a huge text part is not held whole.
const maxBodyValue = 1 << 20

// Service is what JMAP needs of the mailbox service: the API and reading a
// resource the user holds by its Content-ID (blob download, Blob/get).
// *mailbox.Service implements it.
type Service interface {
	mailbox.API
	OpenHeld(ctx context.Context, cid resource.ID) (io.ReadCloser, mailbox.Upload, error)
	SetKeywords(ctx context.Context, id string, seen *bool, add, remove []string) (mailbox.Message, error)
}

var _ Service = (*mailbox.Service)(nil)

// Config is what a JMAP handler needs.
type Config struct {
	Mailbox Service
	// URL is the domain's public base URL (https://host[:port]), from
	// which the session's URLs are made.
	URL    string
	Limits Limits
	Log    *slog.Logger
}

// Handler serves JMAP. It expects auth.Middleware in front of it: every
// route acts for the principal in the request's context.
type Handler struct {
	mb     Service
	url    string
	lim    Limits
	log    *slog.Logger
	mux    *http.ServeMux
	mu     sync.Mutex
	busy   map[int64]int // requests in flight per user (maxConcurrentRequests)
	upBusy map[int64]int // uploads in flight per user (maxConcurrentUpload)
}

// NewHandler returns the JMAP handler of every path above.
func NewHandler(cfg Config) *Handler {
	lim := cfg.Limits
	d := DefaultLimits
	for _, f := range []struct{ v, def *int }{{&lim.MaxConcurrentUpload, &d.MaxConcurrentUpload},
		{&lim.MaxConcurrentRequests, &d.MaxConcurrentRequests}, {&lim.MaxCallsInRequest, &d.MaxCallsInRequest},
		{&lim.MaxObjectsInGet, &d.MaxObjectsInGet}, {&lim.MaxObjectsInSet, &d.MaxObjectsInSet}} {
		if *f.v <= 0 {
			*f.v = *f.def
		}
	}
	if lim.MaxSizeUpload <= 0 {
		lim.MaxSizeUpload = d.MaxSizeUpload
	}
	if lim.MaxSizeRequest <= 0 {
		lim.MaxSizeRequest = d.MaxSizeRequest
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{mb: cfg.Mailbox, url: strings.TrimRight(cfg.URL, "/"), lim: lim, log: log,
		mux: http.NewServeMux(), busy: map[int64]int{}, upBusy: map[int64]int{}}
	h.mux.HandleFunc("GET "+PathSession, h.session)
	h.mux.HandleFunc("POST "+PathAPI, h.api)
	h.mux.HandleFunc("POST "+PathUpload, h.upload)
	h.mux.HandleFunc("GET "+PathDownload, h.download)
	h.mux.HandleFunc("HEAD "+PathDownload, h.download)
	h.mux.HandleFunc("GET "+PathEventSource, h.eventSource)
	h.mux.Handle("GET "+PathWebSocket, h.webSocket())
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		problem(w, http.StatusNotFound, "about:blank", "no such JMAP endpoint: "+r.Method+" "+r.URL.Path, "")
	})
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// acquire counts one more request of the user in m, refusing past max.
func (h *Handler) acquire(m map[int64]int, user int64, max int) (release func(), ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if m[user] >= max {
		return nil, false
	}
	m[user]++
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if m[user]--; m[user] <= 0 {
			delete(m, user)
		}
	}, true
}

// accountID is the JMAP account of a principal: one account per user,
// named by the user's id, which a user removed and added again does not
// keep (their mail does not either).
func accountID(p auth.Principal) string { return "u" + strconv.FormatInt(p.UserID, 10) }

// Session is the session resource (RFC 8620 §2).
type Session struct {
	Capabilities    map[string]any     `json:"capabilities"`
	Accounts        map[string]Account `json:"accounts"`
	PrimaryAccounts map[string]string  `json:"primaryAccounts"`
	Username        string             `json:"username"`
	APIURL          string             `json:"apiUrl"`
	DownloadURL     string             `json:"downloadUrl"`
	UploadURL       string             `json:"uploadUrl"`
	EventSourceURL  string             `json:"eventSourceUrl"`
	State           string             `json:"state"`
}

// Account is an account of the session (RFC 8620 §2).
type Account struct {
	Name                string         `json:"name"`
	IsPersonal          bool           `json:"isPersonal"`
	IsReadOnly          bool           `json:"isReadOnly"`
	AccountCapabilities map[string]any `json:"accountCapabilities"`
}

// CoreCapability is urn:ietf:params:jmap:core's value.
type CoreCapability struct {
	Limits
	CollationAlgorithms []string `json:"collationAlgorithms"`
}

func (h *Handler) sessionFor(p auth.Principal) Session {
	acct := accountID(p)
	mailCap := map[string]any{
		"maxMailboxesPerEmail": 1, "maxMailboxDepth": 1, "maxSizeMailboxName": 256,
		"maxSizeAttachmentsPerEmail": h.lim.MaxSizeUpload, "emailQuerySortOptions": sortOptions,
		"mayCreateTopLevelMailbox": true,
	}
	subCap := map[string]any{"maxDelayedSend": 0, "submissionExtensions": map[string]any{}}
	blobCap := map[string]any{"maxSizeBlobSet": h.lim.MaxSizeUpload, "maxDataSources": maxDataSources,
		"supportedTypeNames": []string{"Email", "Mailbox", "Thread"}, "supportedDigestAlgorithms": []string{"sha-256"}}
	wsURL := "wss" + strings.TrimPrefix(strings.TrimPrefix(h.url, "https"), "http") + PathWebSocket
	s := Session{
		Capabilities: map[string]any{
			CapCore:       CoreCapability{Limits: h.lim, CollationAlgorithms: []string{"i;unicode-casemap"}},
			CapMail:       map[string]any{},
			CapSubmission: map[string]any{},
			CapBlob:       map[string]any{},
			CapWebSocket:  map[string]any{"url": wsURL, "supportsPush": true},
		},
		Accounts: map[string]Account{acct: {Name: p.Address, IsPersonal: true, AccountCapabilities: map[string]any{
			CapMail: mailCap, CapSubmission: subCap, CapBlob: blobCap}}},
		PrimaryAccounts: map[string]string{CapMail: acct, CapSubmission: acct, CapBlob: acct},
		Username:        p.Address,
		APIURL:          h.url + PathAPI,
		DownloadURL:     h.url + "/jmap/download/{accountId}/{blobId}/{name}?type={type}",
		UploadURL:       h.url + "/jmap/upload/{accountId}/",
		EventSourceURL:  h.url + PathEventSource + "?types={types}&closeafter={closeafter}&ping={ping}",
	}
	b, _ := json.Marshal(s)
	s.State = shortHash(b)
	return s
}

func (h *Handler) session(w http.ResponseWriter, r *http.Request) {
	p, err := auth.Must(r.Context())
	if err != nil {
		errs.WriteHTTP(w, err)
		return
	}
	w.Header().Set("Cache-Control", "no-cache, no-store, must-revalidate")
	writeJSON(w, http.StatusOK, h.sessionFor(p))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// Request-level error types (RFC 8620 §3.6.1).
const (
	errUnknownCapability = "urn:ietf:params:jmap:error:unknownCapability"
	errNotJSON           = "urn:ietf:params:jmap:error:notJSON"
	errNotRequest        = "urn:ietf:params:jmap:error:notRequest"
	errLimit             = "urn:ietf:params:jmap:error:limit"
)

// Problem is a request-level error (RFC 7807, RFC 8620 §3.6.1).
type Problem struct {
	Type   string `json:"type"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Limit  string `json:"limit,omitempty"`
}

func problem(w http.ResponseWriter, status int, typ, detail, limit string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(Problem{Type: typ, Status: status, Detail: detail, Limit: limit})
}

// Request is a JMAP request (RFC 8620 §3.3).
type Request struct {
	Using       []string          `json:"using"`
	MethodCalls []Invocation      `json:"methodCalls"`
	CreatedIDs  map[string]string `json:"createdIds,omitempty"`
}

// Response is a JMAP response (RFC 8620 §3.4).
type Response struct {
	MethodResponses []Invocation      `json:"methodResponses"`
	CreatedIDs      map[string]string `json:"createdIds,omitempty"`
	SessionState    string            `json:"sessionState"`
}

// Invocation is one method call or response: [name, arguments, callId].
type Invocation struct {
	Name   string
	Args   json.RawMessage
	CallID string
}

// MarshalJSON writes the invocation as its three-element array.
func (i Invocation) MarshalJSON() ([]byte, error) {
	args := i.Args
	if len(args) == 0 {
		args = json.RawMessage("{}")
	}
	return json.Marshal([]any{i.Name, args, i.CallID})
}

// UnmarshalJSON reads the three-element array, refusing any other shape.
func (i *Invocation) UnmarshalJSON(b []byte) error {
	var parts []json.RawMessage
	if err := json.Unmarshal(b, &parts); err != nil {
		return err
	}
	if len(parts) != 3 {
		return errors.New("an invocation is an array of three elements")
	}
	if err := json.Unmarshal(parts[0], &i.Name); err != nil {
		return fmt.Errorf("the method name: %w", err)
	}
	if len(bytes.TrimSpace(parts[1])) == 0 || bytes.TrimSpace(parts[1])[0] != '{' {
		return errors.New("the arguments must be an object")
	}
	i.Args = parts[1]
	if err := json.Unmarshal(parts[2], &i.CallID); err != nil {
		return fmt.Errorf("the call id: %w", err)
	}
	return nil
}

// ParseRequest reads and checks a request body: JSON (notJSON), of the
// request's shape (notRequest), at most maxCalls calls (limit), every
// capability known (unknownCapability). It is what the API endpoint and
// the WebSocket run on every request, and what the fuzz test drives.
func ParseRequest(data []byte, maxCalls int) (*Request, *Problem) {
	if !json.Valid(data) {
		return nil, &Problem{Type: errNotJSON, Status: 400, Detail: "the request is not valid JSON"}
	}
	var req Request
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		// RFC 8620 §3.3: a client may add its own members ("@type", "id" on
		// a WebSocket); check the shape again leniently.
		var loose struct {
			Using       []string          `json:"using"`
			MethodCalls []Invocation      `json:"methodCalls"`
			CreatedIDs  map[string]string `json:"createdIds"`
		}
		if err2 := json.Unmarshal(data, &loose); err2 != nil {
			return nil, &Problem{Type: errNotRequest, Status: 400, Detail: "the request is not a JMAP Request: " + err2.Error()}
		}
		req = Request{Using: loose.Using, MethodCalls: loose.MethodCalls, CreatedIDs: loose.CreatedIDs}
	}
	if req.Using == nil || req.MethodCalls == nil {
		return nil, &Problem{Type: errNotRequest, Status: 400, Detail: "a Request needs using and methodCalls"}
	}
	if len(req.MethodCalls) > maxCalls {
		return nil, &Problem{Type: errLimit, Status: 400, Limit: "maxCallsInRequest",
			Detail: fmt.Sprintf("at most %d method calls in a request", maxCalls)}
	}
	for _, c := range req.Using {
		switch c {
		case CapCore, CapMail, CapSubmission, CapBlob, CapWebSocket:
		default:
			return nil, &Problem{Type: errUnknownCapability, Status: 400, Detail: fmt.Sprintf("capability %q is not supported", c)}
		}
	}
	return &req, nil
}

func (h *Handler) api(w http.ResponseWriter, r *http.Request) {
	p, err := auth.Must(r.Context())
	if err != nil {
		errs.WriteHTTP(w, err)
		return
	}
	release, ok := h.acquire(h.busy, p.UserID, h.lim.MaxConcurrentRequests)
	if !ok {
		problem(w, http.StatusTooManyRequests, errLimit, fmt.Sprintf("at most %d requests at once", h.lim.MaxConcurrentRequests), "maxConcurrentRequests")
		return
	}
	defer release()
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(strings.ToLower(ct), "application/json") {
		problem(w, http.StatusBadRequest, errNotJSON, "the request's Content-Type must be application/json", "")
		return
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, h.lim.MaxSizeRequest+1))
	if err != nil {
		problem(w, http.StatusBadRequest, errNotJSON, "the request body could not be read: "+err.Error(), "")
		return
	}
	if int64(len(data)) > h.lim.MaxSizeRequest {
		problem(w, http.StatusRequestEntityTooLarge, errLimit, fmt.Sprintf("the request is larger than %d bytes", h.lim.MaxSizeRequest), "maxSizeRequest")
		return
	}
	req, prob := ParseRequest(data, h.lim.MaxCallsInRequest)
	if prob != nil {
		problem(w, prob.Status, prob.Type, prob.Detail, prob.Limit)
		return
	}
	writeJSON(w, http.StatusOK, h.run(r.Context(), p, req))
}

// run executes a request's method calls in order (RFC 8620 §3.3),
// resolving back-references to earlier results.
func (h *Handler) run(ctx context.Context, p auth.Principal, req *Request) Response {
	c := &call{h: h, ctx: ctx, p: p, acct: accountID(p), created: map[string]string{}, using: map[string]bool{}}
	for k, v := range req.CreatedIDs {
		c.created[k] = v
	}
	for _, u := range req.Using {
		c.using[u] = true
	}
	var out []Invocation
	for _, inv := range req.MethodCalls {
		args, err := resolveRefs(inv.Args, out)
		if err != nil {
			out = append(out, errInvocation(inv.CallID, err))
			continue
		}
		res := c.dispatch(inv.Name, args)
		for _, rs := range res {
			rs.CallID = inv.CallID
			out = append(out, rs)
		}
	}
	resp := Response{MethodResponses: out, SessionState: h.sessionFor(p).State}
	if req.CreatedIDs != nil {
		resp.CreatedIDs = c.created
	}
	return resp
}

// MethodError is a method-level error (RFC 8620 §3.6.2).
type MethodError struct {
	Type        string `json:"type"`
	Description string `json:"description,omitempty"`
}

func (e *MethodError) Error() string { return e.Type + ": " + e.Description }

func merr(typ, format string, args ...any) *MethodError {
	return &MethodError{Type: typ, Description: fmt.Sprintf(format, args...)}
}

func errInvocation(callID string, err error) Invocation {
	var me *MethodError
	if !errors.As(err, &me) {
		me = &MethodError{Type: "serverFail", Description: "internal error"}
		if e := (*errs.Error)(nil); errors.As(err, &e) && e.Kind != errs.Internal {
			me = &MethodError{Type: methodErrType(e), Description: e.Message}
		}
	}
	b, _ := json.Marshal(me)
	return Invocation{Name: "error", Args: b, CallID: callID}
}

// methodErrType maps a mailbox error to the nearest method-level type.
func methodErrType(e *errs.Error) string {
	switch e.Kind {
	case errs.Invalid:
		return "invalidArguments"
	case errs.Forbidden, errs.Unauthorized:
		return "forbidden"
	case errs.Gone:
		return "cannotCalculateChanges"
	case errs.TooLarge:
		return "requestTooLarge"
	case errs.Temporary:
		return "serverUnavailable"
	}
	return "serverFail"
}

// call is one request's context for its methods.
type call struct {
	h       *Handler
	ctx     context.Context
	p       auth.Principal
	acct    string
	created map[string]string // creation id -> id (RFC 8620 §5.3)
	using   map[string]bool
	snap    *snapshot // every message, read once per request when needed
}

type method func(c *call, args json.RawMessage) (any, error)

var methods map[string]struct {
	cap string
	fn  method
}

func init() {
	methods = map[string]struct {
		cap string
		fn  method
	}{
		"Core/echo":               {CapCore, func(c *call, a json.RawMessage) (any, error) { return a, nil }},
		"Mailbox/get":             {CapMail, (*call).mailboxGet},
		"Mailbox/changes":         {CapMail, (*call).mailboxChanges},
		"Mailbox/query":           {CapMail, (*call).mailboxQuery},
		"Mailbox/queryChanges":    {CapMail, (*call).cannotQueryChanges},
		"Mailbox/set":             {CapMail, (*call).mailboxSet},
		"Email/get":               {CapMail, (*call).emailGet},
		"Email/changes":           {CapMail, (*call).emailChanges},
		"Email/query":             {CapMail, (*call).emailQuery},
		"Email/queryChanges":      {CapMail, (*call).cannotQueryChanges},
		"Email/set":               {CapMail, (*call).emailSet},
		"Email/copy":              {CapMail, (*call).emailCopy},
		"Email/import":            {CapMail, (*call).emailImport},
		"Email/parse":             {CapMail, (*call).emailParse},
		"Thread/get":              {CapMail, (*call).threadGet},
		"Thread/changes":          {CapMail, (*call).threadChanges},
		"SearchSnippet/get":       {CapMail, (*call).snippetGet},
		"Identity/get":            {CapSubmission, (*call).identityGet},
		"Identity/changes":        {CapSubmission, (*call).identityChanges},
		"EmailSubmission/get":     {CapSubmission, (*call).submissionGet},
		"EmailSubmission/set":     {CapSubmission, nil}, // dispatch: it may add an Email/set response
		"EmailSubmission/query":   {CapSubmission, (*call).submissionQuery},
		"EmailSubmission/changes": {CapSubmission, (*call).submissionChanges},
		"Blob/get":                {CapBlob, (*call).blobGet},
		"Blob/lookup":             {CapBlob, (*call).blobLookup},
		"Blob/upload":             {CapBlob, (*call).blobUpload},
		"Blob/copy":               {CapCore, (*call).blobCopy},
	}
}

func (c *call) dispatch(name string, args json.RawMessage) []Invocation {
	m, ok := methods[name]
	if !ok {
		return []Invocation{errInvocation("", merr("unknownMethod", "no method %q", name))}
	}
	if !c.using[m.cap] && !(m.cap == CapCore) {
		return []Invocation{errInvocation("", merr("unknownMethod", "%s needs %s in using", name, m.cap))}
	}
	if err := c.checkAccount(args); err != nil {
		return []Invocation{errInvocation("", err)}
	}
	if name == "EmailSubmission/set" {
		return c.submissionSet(args)
	}
	res, err := m.fn(c, args)
	if err != nil {
		return []Invocation{errInvocation("", err)}
	}
	b, err := json.Marshal(res)
	if err != nil {
		return []Invocation{errInvocation("", err)}
	}
	return []Invocation{{Name: name, Args: b}}
}

// checkAccount refuses an accountId other than the user's (accountNotFound).
func (c *call) checkAccount(args json.RawMessage) error {
	var a struct {
		AccountID *string `json:"accountId"`
	}
	if err := json.Unmarshal(args, &a); err != nil {
		return merr("invalidArguments", "the arguments: %v", err)
	}
	if a.AccountID != nil && *a.AccountID != c.acct {
		return merr("accountNotFound", "no account %q", *a.AccountID)
	}
	return nil
}

// decodeArgs reads a method's arguments strictly: an unknown argument is
// invalidArguments (RFC 8620 §3.6.2), so a client never believes that the
// server honoured an argument it ignored.
func decodeArgs(args json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(args))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return merr("invalidArguments", "%v", err)
	}
	return nil
}

// resolveID turns a "#creationId" into the id it created in this request.
func (c *call) resolveID(id string) string {
	if strings.HasPrefix(id, "#") {
		if v, ok := c.created[id[1:]]; ok {
			return v
		}
	}
	return id
}

// ResultReference is a back-reference to an earlier result (RFC 8620 §3.7).
type ResultReference struct {
	ResultOf string `json:"resultOf"`
	Name     string `json:"name"`
	Path     string `json:"path"`
}

// resolveRefs replaces every "#name": ResultReference argument with the
// value it points at.
func resolveRefs(args json.RawMessage, done []Invocation) (json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(args, &m); err != nil {
		return nil, merr("invalidArguments", "the arguments: %v", err)
	}
	changed := false
	for k, v := range m {
		if !strings.HasPrefix(k, "#") {
			continue
		}
		if _, dup := m[k[1:]]; dup {
			return nil, merr("invalidArguments", "both %s and %s given", k, k[1:])
		}
		var ref ResultReference
		if err := json.Unmarshal(v, &ref); err != nil {
			return nil, merr("invalidResultReference", "%s: %v", k, err)
		}
		var found *Invocation
		for i := range done {
			if done[i].CallID == ref.ResultOf {
				found = &done[i]
				break
			}
		}
		if found == nil || found.Name != ref.Name {
			return nil, merr("invalidResultReference", "%s: no %s response of call %q", k, ref.Name, ref.ResultOf)
		}
		var doc any
		if err := json.Unmarshal(found.Args, &doc); err != nil {
			return nil, merr("invalidResultReference", "%s: %v", k, err)
		}
		val, err := pointer(doc, ref.Path)
		if err != nil {
			return nil, merr("invalidResultReference", "%s: %v", k, err)
		}
		b, _ := json.Marshal(val)
		delete(m, k)
		m[k[1:]] = b
		changed = true
	}
	if !changed {
		return args, nil
	}
	return json.Marshal(m)
}

// pointer evaluates a JSON Pointer with JMAP's "*" (RFC 8620 §3.7): on an
// array it applies the rest to every element and flattens arrays.
func pointer(doc any, path string) (any, error) {
	if path == "" {
		return doc, nil
	}
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("path %q does not start with /", path)
	}
	tok, rest, _ := strings.Cut(path[1:], "/")
	if rest != "" || strings.Contains(path[1:], "/") {
		rest = "/" + rest
	}
	tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
	switch v := doc.(type) {
	case map[string]any:
		e, ok := v[tok]
		if !ok {
			return nil, fmt.Errorf("no member %q", tok)
		}
		return pointer(e, rest)
	case []any:
		if tok == "*" {
			out := []any{}
			for _, e := range v {
				r, err := pointer(e, rest)
				if err != nil {
					return nil, err
				}
				if a, ok := r.([]any); ok {
					out = append(out, a...)
				} else {
					out = append(out, r)
				}
			}
			return out, nil
		}
		n, err := strconv.Atoi(tok)
		if err != nil || n < 0 || n >= len(v) {
			return nil, fmt.Errorf("no element %q", tok)
		}
		return pointer(v[n], rest)
	}
	return nil, fmt.Errorf("cannot descend into %q", tok)
}
