package inbound

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/placeholder"
)

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
