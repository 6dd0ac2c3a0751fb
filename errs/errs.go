// Package errs holds Pullmail's error kinds: a small fixed set that every layer
// uses, that maps to one HTTP status each, and that crosses the wire as a JSON
// object with a stable machine-readable code.
//
// The wire shape (docs/PROTOCOL.md §Errors) is
//
//	{"error": {"code": "not_found", "message": "no such message"}}
//
// Codes are a contract: clients and scripts match on them, so a code is never
// renamed once published. Messages are for people and may change.
package errs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"syscall"
)

// Kind classifies an error by what the caller can do about it.
type Kind int

const (
	Internal     Kind = iota // a bug or an unexpected failure; the caller can retry later
	Invalid                  // the request is malformed or breaks a rule; do not retry as is
	Unauthorized             // no, or no valid, credentials
	Forbidden                // valid credentials, but not allowed
	NotFound                 // no such thing, or not yours (the two answer alike)
	Conflict                 // the state does not allow it (e.g. editing a sent message)
	TooLarge                 // a size limit was exceeded
	Temporary                // try again later (overload, peer down)
	Gone                     // it was there and is not anymore (e.g. a sync cursor too old)
	// InsufficientStorage: the server is out of disk or quota (ENOSPC,
	// EDQUOT). Smaller requests may still fit; the caller may retry later.
	InsufficientStorage
)

// Status is the HTTP status that a kind maps to.
func (k Kind) Status() int {
	switch k {
	case Invalid:
		return http.StatusBadRequest
	case Unauthorized:
		return http.StatusUnauthorized
	case Forbidden:
		return http.StatusForbidden
	case NotFound:
		return http.StatusNotFound
	case Conflict:
		return http.StatusConflict
	case TooLarge:
		return http.StatusRequestEntityTooLarge
	case Temporary:
		return http.StatusServiceUnavailable
	case Gone:
		return http.StatusGone
	case InsufficientStorage:
		return http.StatusInsufficientStorage
	}
	return http.StatusInternalServerError
}

func (k Kind) String() string {
	switch k {
	case Invalid:
		return "invalid"
	case Unauthorized:
		return "unauthorized"
	case Forbidden:
		return "forbidden"
	case NotFound:
		return "not_found"
	case Conflict:
		return "conflict"
	case TooLarge:
		return "too_large"
	case Temporary:
		return "temporary"
	case Gone:
		return "gone"
	case InsufficientStorage:
		return "insufficient_storage"
	}
	return "internal"
}

// Error is an error with a kind, a stable code and a message for people.
// Err, when set, is the cause: it is logged, never sent to the client.
type Error struct {
	Kind    Kind
	Code    string // stable, snake_case; see docs/PROTOCOL.md §Errors
	Message string
	Err     error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// E makes an *Error. The message is formatted with args like fmt.Sprintf.
func E(kind Kind, code, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap makes an *Error whose cause is err.
func Wrap(err error, kind Kind, code, message string) *Error {
	return &Error{Kind: kind, Code: code, Message: message, Err: err}
}

// KindOf reports the kind of the first *Error in err's chain, Internal if none
// (InsufficientStorage for an unclassified out-of-space error).
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) && e.Kind != Internal {
		return e.Kind
	}
	if NoSpace(err) {
		return InsufficientStorage
	}
	if e != nil {
		return e.Kind
	}
	return Internal
}

// NoSpace reports whether err says a disk or quota is full (ENOSPC,
// EDQUOT) anywhere in its chain. Such a failure is not a bug: it is
// answered 507 insufficient_storage, so that a client can tell it from an
// internal error and an operator sees it in the metrics.
func NoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// InsufficientStorageError is the public error for an out-of-space cause.
func InsufficientStorageError(cause error) *Error {
	return Wrap(cause, InsufficientStorage, "insufficient_storage", "the server is out of storage space; try a smaller request or later")
}

// CodeOf reports the code of the first *Error in err's chain, "internal" if none.
func CodeOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return "internal"
}

// Is reports whether err is an *Error of kind k.
func Is(err error, k Kind) bool {
	var e *Error
	return errors.As(err, &e) && e.Kind == k
}

// Body is the JSON error document: {"error": {...}}.
type Body struct {
	Error Detail `json:"error"`
}

// Detail is the inside of Body.
type Detail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Public turns err into what a client may see. Errors without a kind become a
// generic internal error, so that no cause leaks to the network.
func Public(err error) (status int, body Body) {
	var e *Error
	if (!errors.As(err, &e) || e.Kind == Internal) && NoSpace(err) {
		e = InsufficientStorageError(err)
	}
	if e != nil {
		if e.Kind == Internal {
			return http.StatusInternalServerError, Body{Detail{Code: "internal", Message: "internal error"}}
		}
		return e.Kind.Status(), Body{Detail{Code: e.Code, Message: e.Message}}
	}
	return http.StatusInternalServerError, Body{Detail{Code: "internal", Message: "internal error"}}
}

// WriteHTTP writes err as a JSON error response. It logs nothing: a handler
// with a request and a logger at hand calls Respond instead, so that the
// cause of an internal error is not lost.
//
// The cause never reaches the client, but it must reach the log: WriteHTTP
// hands err to the first CauseRecorder among w and the writers it wraps
// (Unwrap, as http.ResponseController follows them), which is how the
// server's access log names the cause of every 5xx, whichever package
// answered it.
func WriteHTTP(w http.ResponseWriter, err error) {
	status, body := Public(err)
	RecordCause(w, err)
	WriteBody(w, status, body)
}

// CauseRecorder is a ResponseWriter that keeps the cause of the error
// answered through it (the server's access log).
type CauseRecorder interface {
	RecordCause(err error)
}

// RecordCause gives err to the first CauseRecorder in w's chain of wrapped
// writers, if any.
func RecordCause(w http.ResponseWriter, err error) {
	for w != nil {
		if c, ok := w.(CauseRecorder); ok {
			c.RecordCause(err)
			return
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return
		}
		w = u.Unwrap()
	}
}

// WriteBody writes a JSON error document with a status of the caller's
// choice: for answers that no Kind maps to (405 from a router, 408 for a
// body that came too slowly).
func WriteBody(w http.ResponseWriter, status int, body Body) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
}

// Respond writes err as WriteHTTP does and, for an answer of status 500 or
// more, logs it at ERROR with its cause and the request's id
// (RequestID): the client only sees "internal error", so the log is the
// one place the cause survives. Refusals (4xx) are not logged here: the
// caller knows which of them matter. A nil log logs nothing.
func Respond(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	status, body := Public(err)
	if status >= 500 && log != nil {
		ctx := r.Context()
		log.ErrorContext(ctx, "request failed", "req", RequestID(ctx), "method", r.Method, "path", r.URL.Path,
			"status", status, "code", body.Error.Code, "err", err)
	}
	WriteBody(w, status, body)
}

type requestIDKey struct{}

// WithRequestID returns ctx carrying a request's id (the server gives each
// request one and answers it as X-Request-ID), so that every log line of the
// request, Respond's among them, can name it.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID is the id WithRequestID put in ctx, "" if none.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// FromHTTP rebuilds an *Error from a response status and its JSON body, so that
// a client gets the same kind and code that the server meant.
func FromHTTP(status int, data []byte) *Error {
	var b Body
	if json.Unmarshal(data, &b) != nil || b.Error.Code == "" {
		msg := http.StatusText(status)
		if len(data) > 0 && len(data) < 200 {
			msg = string(data)
		}
		return &Error{Kind: kindFromStatus(status), Code: "http_" + fmt.Sprint(status), Message: msg}
	}
	return &Error{Kind: kindFromStatus(status), Code: b.Error.Code, Message: b.Error.Message}
}

func kindFromStatus(status int) Kind {
	switch status {
	case http.StatusBadRequest, http.StatusUnprocessableEntity, http.StatusRequestedRangeNotSatisfiable:
		return Invalid
	case http.StatusUnauthorized:
		return Unauthorized
	case http.StatusForbidden:
		return Forbidden
	case http.StatusNotFound:
		return NotFound
	case http.StatusConflict:
		return Conflict
	case http.StatusRequestEntityTooLarge:
		return TooLarge
	case http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusBadGateway, http.StatusGatewayTimeout:
		return Temporary
	case http.StatusGone:
		return Gone
	case http.StatusInsufficientStorage:
		return InsufficientStorage
	}
	return Internal
}
