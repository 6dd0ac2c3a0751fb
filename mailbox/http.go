package mailbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"syscall"

	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/httprange"
	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
)

// Route is one endpoint of the mailbox API. Routes lists them for the mux and
// for package apidoc, whose generated OpenAPI document must describe exactly
// these (apidoc's TestRoutes).
type Route struct {
	Method  string // GET also answers HEAD
	Pattern string // net/http ServeMux pattern path
	handler func(*handler, http.ResponseWriter, *http.Request)
}

// Routes is the mailbox API, every route under /api/v1 and authenticated.
var Routes = []Route{
	{"GET", "/api/v1/me", (*handler).me},
	{"POST", "/api/v1/resources", (*handler).upload},
	{"GET", "/api/v1/messages", (*handler).list},
	{"POST", "/api/v1/messages", (*handler).createDraft},
	{"GET", "/api/v1/messages/{id}", (*handler).get},
	{"PUT", "/api/v1/messages/{id}", (*handler).updateDraft},
	{"PATCH", "/api/v1/messages/{id}", (*handler).patch},
	{"DELETE", "/api/v1/messages/{id}", (*handler).delete},
	{"POST", "/api/v1/messages/{id}/send", (*handler).send},
	{"POST", "/api/v1/messages/{id}/move", (*handler).move},
	{"POST", "/api/v1/messages/{id}/restore", (*handler).restore},
	{"GET", "/api/v1/folders", (*handler).folders},
	{"GET", "/api/v1/search", (*handler).search},
	{"POST", "/api/v1/folders", (*handler).createFolder},
	{"DELETE", "/api/v1/folders/{name}", (*handler).deleteFolder},
	{"POST", "/api/v1/messages/{id}/forward", (*handler).forward},
	{"GET", "/api/v1/forwarding", (*handler).autoForward},
	{"PUT", "/api/v1/forwarding", (*handler).setAutoForward},
	{"DELETE", "/api/v1/forwarding", (*handler).deleteAutoForward},
	{"GET", "/api/v1/resources/{cid}", (*handler).stat},
	{"GET", "/api/v1/messages/{id}/resources/{cid}", (*handler).download},
	{"GET", "/api/v1/messages/{id}/raw", (*handler).raw},
	{"GET", "/api/v1/changes", (*handler).changes},
	{"GET", "/api/v1/events", (*handler).events},
	{"POST", "/api/v1/uploads", (*handler).createUpload},
	{"GET", "/api/v1/uploads/{upload_id}", (*handler).uploadStatus},
	{"PATCH", "/api/v1/uploads/{upload_id}", (*handler).appendUpload},
	{"DELETE", "/api/v1/uploads/{upload_id}", (*handler).deleteUpload},
}

// MaxDocument caps JSON request bodies at the Placeholder Message's own
// limit (docs/PROTOCOL.md §2.5), so an oversize document is always refused
// here, before parsing, with 413 document_too_large.
var MaxDocument = int64(placeholder.DefaultLimits().MaxDocument)

type handler struct{ api API }

// NewHandler returns the mailbox API over api. It expects an authentication
// middleware (auth.Middleware) in front of it to put the principal in the
// request context; *Service reads it from there.
func NewHandler(api API) http.Handler {
	h := &handler{api: api}
	mux := http.NewServeMux()
	for _, rt := range Routes {
		rt := rt
		mux.HandleFunc(rt.Method+" "+rt.Pattern, func(w http.ResponseWriter, r *http.Request) { rt.handler(h, w, r) })
	}
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		errs.WriteHTTP(w, errs.E(errs.NotFound, "no_route", "no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

// readDoc reads a JSON request body of at most MaxDocument bytes.
func readDoc(w http.ResponseWriter, r *http.Request) (json.RawMessage, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			return nil, errs.E(errs.Invalid, "unsupported_media_type", "send the document as application/json")
		}
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxDocument))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, errs.E(errs.TooLarge, "document_too_large", "the document is larger than %d bytes", MaxDocument)
	} else if err != nil {
		return nil, bodyError(err, "request_incomplete", "the request body could not be read")
	}
	return data, nil
}

// bodyReader is a request body that records its first read error, so that
// a handler can tell a failure of the client's bytes (a malformed chunked
// encoding, a connection cut short) from one of the server's own (a full
// disk) whatever the layers in between made of it.
type bodyReader struct {
	r   io.Reader
	err error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF && b.err == nil {
		b.err = err
	}
	return n, err
}

// bodyError classifies a request body's read error; both answers are 400,
// the client's doing, never a 500 logged as an internal error:
//
//   - the body ended early or its connection failed (io.ErrUnexpectedEOF,
//     a reset, a read timeout, the request cancelled): code cut, e.g.
//     upload_incomplete, with the message cutMsg;
//   - anything else the body reader reports is a framing error of the
//     client's: net/http's chunked decoder ("malformed chunked encoding",
//     "invalid byte in chunk length", ...), an HTTP/2 body longer or
//     shorter than its Content-Length: code malformed_body.
//
// net/http does not export its framing errors, so they are told apart by
// being none of the connection's.
func bodyError(err error, cut, cutMsg string) error {
	var ne net.Error
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF), errors.As(err, &ne), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return errs.Wrap(err, errs.Invalid, cut, cutMsg)
	}
	return errs.Wrap(err, errs.Invalid, "malformed_body", "the request body is malformed (its chunked encoding or its length framing)")
}

func (h *handler) me(w http.ResponseWriter, r *http.Request) {
	me, err := h.api.Me(r.Context())
	if err != nil {
		errs.WriteHTTP(w, err)
		return
	}
	writeJSON(w, http.StatusOK, me)
}

// upload streams the request body into the resource store. The client may
// declare the Content-ID (query content_id) and the size (Content-Length);
// the upload fails, storing nothing, if the bytes disagree.
func (h *handler) upload(w http.ResponseWriter, r *http.Request) {
	opt := UploadOptions{Size: r.ContentLength}
	if v := r.URL.Query().Get("content_id"); v != "" {
		id, err := resource.ParseID(v)
		if err != nil {
			errs.WriteHTTP(w, errs.E(errs.Invalid, "bad_content_id", "content_id must be 43 base64url characters"))
			return
		}
		opt.Digest = id
	}
	body := &bodyReader{r: r.Body}
	up, err := h.api.Upload(r.Context(), body, opt)
	if err != nil && body.err != nil {
		// The body failed: that is the cause, whatever the store made of it.
		err = bodyError(body.err, "upload_incomplete", "the upload ended before all its bytes arrived; nothing is stored")
	}
	if err != nil {
		errs.WriteHTTP(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, up)
}

func (h *handler) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if mid := q.Get("message_id"); mid != "" {
		ms, err := h.api.Lookup(r.Context(), mid)
		if err != nil {
			errs.WriteHTTP(w, err)
			return
		}
		writeJSON(w, http.StatusOK, List{Messages: ms})
		return
	}
	limit := 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			errs.WriteHTTP(w, errs.E(errs.Invalid, "bad_limit", "limit must be a positive integer"))
			return
		}
		limit = n
	}
	l, err := h.api.List(r.Context(), ListOptions{Folder: q.Get("folder"), Limit: limit, Page: q.Get("page")})
	if err != nil {
		errs.WriteHTTP(w, err)
		return
	}
	writeJSON(w, http.StatusOK, l)
}

func (h *handler) createDraft(w http.ResponseWriter, r *http.Request) {
	doc, err := readDoc(w, r)
	if err == nil {
		var m Message
		if m, err = h.api.CreateDraft(r.Context(), doc); err == nil {
			w.Header().Set("Location", "/api/v1/messages/"+m.ID)
			writeJSON(w, http.StatusCreated, m)
			return
		}
	}
	errs.WriteHTTP(w, err)
}

func (h *handler) get(w http.ResponseWriter, r *http.Request) {
	m, err := h.api.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		errs.WriteHTTP(w, err)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

func (h *handler) updateDraft(w http.ResponseWriter, r *http.Request) {
	doc, err := readDoc(w, r)
	if err == nil {
		var m Message
		if m, err = h.api.UpdateDraft(r.Context(), r.PathValue("id"), doc); err == nil {
			writeJSON(w, http.StatusOK, m)
			return
		}
	}
	errs.WriteHTTP(w, err)
}

// Patch is the body of PATCH /api/v1/messages/{id}: the flags a user may
// change on any message.
type Patch struct {
	Seen *bool `json:"seen"`
}

func (h *handler) patch(w http.ResponseWriter, r *http.Request) {
	doc, err := readDoc(w, r)
	if err != nil {
		errs.WriteHTTP(w, err)
		return
	}
	var p Patch
	if err := decodeBody(doc, &p, `the body must be {"seen": true|false}`, "seen"); err != nil {
		errs.WriteHTTP(w, err)
		return
	}
	if p.Seen == nil { // "seen": null
		errs.WriteHTTP(w, errs.E(errs.Invalid, "malformed_json", `the body must be {"seen": true|false}`))
		return
	}
	m, err := h.api.SetSeen(r.Context(), r.PathValue("id"), *p.Seen)
	if err != nil {
		errs.WriteHTTP(w, err)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

// decodeJSON decodes one JSON value, refusing unknown fields and trailing
// data.
func decodeJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytesReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}

// delete moves the message to trash; with purge=true it removes a message
// in trash (or a draft) for good.
func (h *handler) delete(w http.ResponseWriter, r *http.Request) {
	del := h.api.Delete
	switch r.URL.Query().Get("purge") {
	case "", "false":
	case "true":
		del = h.api.Purge
	default:
		errs.WriteHTTP(w, errs.E(errs.Invalid, "bad_purge", "purge must be true or false"))
		return
	}
	if err := del(r.Context(), r.PathValue("id")); err != nil {
		errs.WriteHTTP(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// send passes the request's Idempotency-Key (if any) to Send in the
// context: a repeat with the key gets the first answer (§8.9).
func (h *handler) send(w http.ResponseWriter, r *http.Request) {
	ctx, err := idempotencyContext(r)
	if err != nil {
		errs.WriteHTTP(w, err)
		return
	}
	m, err := h.api.Send(ctx, r.PathValue("id"))
	if err != nil {
		errs.WriteHTTP(w, err)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

func (h *handler) changes(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			errs.WriteHTTP(w, errs.E(errs.Invalid, "bad_limit", "limit must be a positive integer"))
			return
		}
		limit = n
	}
	ch, err := h.api.Changes(r.Context(), q.Get("cursor"), limit)
	if err != nil {
		errs.WriteHTTP(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ch)
}

// download serves a resource through a message that references it, with
// If-Match, If-None-Match, If-Range, Range and HEAD decided by package
// httprange (RFC 9110; one range per request, several are answered whole).
// Content is always served as an attachment in a sandbox: it is the
// sender's bytes, and the API's origin must not run them.
func (h *handler) download(w http.ResponseWriter, r *http.Request) {
	cid, err := resource.ParseID(r.PathValue("cid"))
	if err != nil {
		errs.WriteHTTP(w, errNoResource)
		return
	}
	rc, att, err := h.api.Download(r.Context(), r.PathValue("id"), cid)
	if err != nil {
		errs.WriteHTTP(w, err)
		return
	}
	defer rc.Close()
	hdr := w.Header()
	hdr.Set("Cache-Control", "private, max-age=31536000, immutable")
	hdr.Set("X-Content-Type-Options", "nosniff")
	httprange.Serve(w, r, rc, att.Size, `"`+string(cid)+`"`, httprange.Options{
		Content: func(hdr http.Header) {
			hdr.Set("Content-Security-Policy", "sandbox; default-src 'none'")
			hdr.Set("Content-Type", att.ContentType)
			name := att.Filename
			if name == "" {
				name = string(cid)
			}
			hdr.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
		},
		Classify: resource.ReadFailure,
	})
}

// raw serves the message as RFC 5322 (message/rfc822), streamed. Like a
// download it is the sender's bytes: an attachment, in a sandbox. An error
// while it streams cuts the connection, so that a client never takes part
// of a message for the whole.
func (h *handler) raw(w http.ResponseWriter, r *http.Request) {
	rc, err := h.api.Raw(r.Context(), r.PathValue("id"))
	if err != nil {
		errs.WriteHTTP(w, err)
		return
	}
	defer rc.Close()
	hdr := w.Header()
	hdr.Set("Content-Type", "message/rfc822")
	hdr.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": r.PathValue("id") + ".eml"}))
	hdr.Set("Content-Security-Policy", "sandbox; default-src 'none'")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Cache-Control", "private, no-cache")
	if r.Method == http.MethodHead {
		return
	}
	if _, err := io.Copy(w, rc); err != nil {
		panic(http.ErrAbortHandler)
	}
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

func (h *handler) move(w http.ResponseWriter, r *http.Request) {
	doc, err := readDoc(w, r)
	if err != nil {
		errs.WriteHTTP(w, err)
		return
	}
	var mv Move
	if err := decodeBody(doc, &mv, `the body must be {"folder": "NAME"}`, "folder"); err != nil {
		errs.WriteHTTP(w, err)
		return
	}
	m, err := h.api.Move(r.Context(), r.PathValue("id"), mv.Folder)
	if err != nil {
		errs.WriteHTTP(w, err)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

func (h *handler) restore(w http.ResponseWriter, r *http.Request) {
	m, err := h.api.Restore(r.Context(), r.PathValue("id"))
	if err != nil {
		errs.WriteHTTP(w, err)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

func (h *handler) folders(w http.ResponseWriter, r *http.Request) {
	fl, err := h.api.Folders(r.Context())
	if err != nil {
		errs.WriteHTTP(w, err)
		return
	}
	writeJSON(w, http.StatusOK, fl)
}

func (h *handler) createFolder(w http.ResponseWriter, r *http.Request) {
	doc, err := readDoc(w, r)
	if err != nil {
		errs.WriteHTTP(w, err)
		return
	}
	var nf NewFolder
	if err := decodeBody(doc, &nf, `the body must be {"name": "NAME"}`, "name"); err != nil {
		errs.WriteHTTP(w, err)
		return
	}
	f, err := h.api.CreateFolder(r.Context(), nf.Name)
	if err != nil {
		errs.WriteHTTP(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, f)
}

func (h *handler) deleteFolder(w http.ResponseWriter, r *http.Request) {
	if err := h.api.DeleteFolder(r.Context(), r.PathValue("name")); err != nil {
		errs.WriteHTTP(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// search answers GET /api/v1/search?q=QUERY[&limit=N][&page=TOKEN] as a
// listing (§8.19).
func (h *handler) search(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			errs.WriteHTTP(w, errs.E(errs.Invalid, "bad_limit", "limit must be a positive integer"))
			return
		}
		limit = n
	}
	l, err := h.api.Search(r.Context(), SearchOptions{Query: q.Get("q"), Limit: limit, Page: q.Get("page")})
	if err != nil {
		errs.WriteHTTP(w, err)
		return
	}
	writeJSON(w, http.StatusOK, l)
}
