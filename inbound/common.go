package inbound

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/pullmail/pullmail/authz"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/placeholder"
)

// Paths of the endpoints, under the mailbox's base URL.
const (
	PathMessages  = "/federation/v1/messages"
	PathResources = "/federation/v1/resources"
)

// MaxChain bounds the number of elements of a chain that is read at all.
const MaxChain = 8

// Envelope is the body of a push and of a fetch (docs/PROTOCOL.md §11.2,
// §11.3): the Placeholder Message exactly as sent and the chain of signed
// envelope headers, newest hop first.
type Envelope struct {
	Placeholder json.RawMessage `json:"placeholder"`
	Chain       []ChainElement  `json:"chain"`
}

// ChainElement is one hop of the chain: the envelope headers it signs and its
// assertion (authz.VerifyChain checks a chain).
type ChainElement = authz.ChainElement

// ParseEnvelope reads a push or fetch body of at most max bytes. It refuses
// anything but one JSON object with the two members, a non-empty chain of
// at most MaxChain elements, each with headers and an assertion. It does not
// parse the placeholder or the headers: their checks come later, in the order
// the protocol gives. Errors are *errs.Error of kind Invalid (code
// malformed_json) or TooLarge (document_too_large).
func ParseEnvelope(data []byte, max int) (*Envelope, error) {
	if len(data) > max {
		return nil, errs.E(errs.TooLarge, placeholder.CodeDocumentTooLarge, "the request body is larger than %d bytes", max)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var e Envelope
	if err := dec.Decode(&e); err != nil {
		return nil, errs.Wrap(err, errs.Invalid, placeholder.CodeMalformedJSON, "the body is not a {placeholder, chain} object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errs.E(errs.Invalid, placeholder.CodeMalformedJSON, "data after the JSON object")
	}
	if len(e.Placeholder) == 0 || e.Placeholder[0] != '{' {
		return nil, errs.E(errs.Invalid, placeholder.CodeMalformedJSON, "placeholder must be an object")
	}
	if len(e.Chain) == 0 || len(e.Chain) > MaxChain {
		return nil, errs.E(errs.Invalid, placeholder.CodeMalformedJSON, "chain must hold 1 to %d elements", MaxChain)
	}
	for i, c := range e.Chain {
		if len(c.Headers) == 0 || c.Headers[0] != '{' || c.Assertion == "" {
			return nil, errs.E(errs.Invalid, placeholder.CodeMalformedJSON, "chain element %d needs headers and jwt-assertion", i)
		}
	}
	return &e, nil
}

// readBody reads at most max bytes of r's body, and one more to tell when
// there are more.
func readBody(r *http.Request, max int) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r.Body, int64(max)+1))
	if err != nil {
		return nil, errs.Wrap(err, errs.Invalid, placeholder.CodeMalformedJSON, "reading the request body failed")
	}
	return data, nil
}

// dpopToken returns the token of an "Authorization: DPoP TOKEN" header:
// exactly one such header, the scheme case-insensitive (RFC 9110 §11.1).
func dpopToken(r *http.Request) (string, bool) {
	hs := r.Header.Values("Authorization")
	if len(hs) != 1 {
		return "", false
	}
	scheme, tok, ok := strings.Cut(hs[0], " ")
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "DPoP") || tok == "" || strings.ContainsAny(tok, " \t") {
		return "", false
	}
	return tok, true
}

// writeJSON answers a status and a small JSON object.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// domainOf returns the lower-cased domain of an address "local@domain".
func domainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return strings.ToLower(addr[i+1:])
}
