package mailbox

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/pullmail/pullmail/auth"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/meta"
)

// A send whose answer is lost (a dropped connection, a proxy's 502 after
// the commit) cannot be told from one that failed, and sending again would
// deliver the message twice. So a client names each send with an
// Idempotency-Key (draft-ietf-httpapi-idempotency-key-header): the server
// records the key with the answer in the send's own transaction, and a
// retry with the key gets the recorded answer without sending again
// (docs/PROTOCOL.md §8.9).

// IdempotencyKeyHeader is the request header that names a request.
const IdempotencyKeyHeader = "Idempotency-Key"

// IdempotencyTTL is how long the server remembers a key: a retry after
// that sends again (for a send, the draft has become a sent message, so it
// answers not_a_draft).
const IdempotencyTTL = 24 * time.Hour

// MaxIdempotencyKey caps a key's length in bytes.
const MaxIdempotencyKey = 255

type idempotencyKey struct{}

// WithIdempotencyKey returns ctx carrying an Idempotency-Key for the API
// calls made with it that honour one (Send): the HTTP handler puts the
// request's header there, and package client sends it as the header.
func WithIdempotencyKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, idempotencyKey{}, key)
}

// IdempotencyKeyFrom returns the key WithIdempotencyKey put in ctx, or "".
func IdempotencyKeyFrom(ctx context.Context) string {
	k, _ := ctx.Value(idempotencyKey{}).(string)
	return k
}

var errBadIdempotencyKey = errs.E(errs.Invalid, "bad_idempotency_key",
	"Idempotency-Key must be a quoted string of 1 to 255 printable ASCII characters")

// ParseIdempotencyKey reads an Idempotency-Key header value: an RFC 8941
// sf-string ("..." with \" and \\ escapes), as the draft defines it, or,
// leniently, the same characters unquoted without spaces.
func ParseIdempotencyKey(v string) (string, error) {
	var b strings.Builder
	if len(v) >= 2 && v[0] == '"' {
		for i := 1; i < len(v); i++ {
			c := v[i]
			switch {
			case c == '\\' && i+1 < len(v) && (v[i+1] == '"' || v[i+1] == '\\'):
				b.WriteByte(v[i+1])
				i++
			case c == '"' && i == len(v)-1:
				return checkIdempotencyKey(b.String())
			case c < 0x20 || c > 0x7e || c == '"' || c == '\\':
				return "", errBadIdempotencyKey
			default:
				b.WriteByte(c)
			}
		}
		return "", errBadIdempotencyKey // no closing quote
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c <= 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return "", errBadIdempotencyKey
		}
	}
	return checkIdempotencyKey(v)
}

func checkIdempotencyKey(k string) (string, error) {
	if k == "" || len(k) > MaxIdempotencyKey {
		return "", errBadIdempotencyKey
	}
	return k, nil
}

// FormatIdempotencyKey writes key as the header's sf-string.
func FormatIdempotencyKey(key string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(key) + `"`
}

// idempotencyContext returns r's context with the request's
// Idempotency-Key, if it has one.
func idempotencyContext(r *http.Request) (context.Context, error) {
	v, ok := r.Header[IdempotencyKeyHeader]
	if !ok {
		return r.Context(), nil
	}
	if len(v) != 1 {
		return nil, errBadIdempotencyKey
	}
	k, err := ParseIdempotencyKey(v[0])
	if err != nil {
		return nil, err
	}
	return WithIdempotencyKey(r.Context(), k), nil
}

// replay looks up the user's key in tx: the recorded answer when request
// made it, an idempotency_key_reused error when another request did, and
// ok false when the key is new (or expired).
func (s *Service) replay(ctx context.Context, tx meta.Tx, p auth.Principal, key, request string, out any) (ok bool, err error) {
	rec, err := tx.Idempotency(ctx, p.UserID, key)
	switch {
	case errors.Is(err, meta.ErrNotFound):
		return false, nil
	case err != nil:
		return false, err
	case !s.now().Before(rec.Expires):
		return false, nil
	case rec.Request != request:
		return false, errs.E(errs.Conflict, "idempotency_key_reused",
			"this Idempotency-Key was used for another request in the last %v: use a new key for each request", IdempotencyTTL)
	}
	if err := json.Unmarshal(rec.Result, out); err != nil {
		return false, internal(err, "a recorded answer is unreadable")
	}
	return true, nil
}

// remember records the answer to request under the user's key, in tx.
func (s *Service) remember(ctx context.Context, tx meta.Tx, p auth.Principal, key, request string, answer any) error {
	b, err := json.Marshal(answer)
	if err != nil {
		return internal(err, "recording the answer failed")
	}
	now := s.now()
	return tx.PutIdempotency(ctx, meta.Idempotency{
		UserID: p.UserID, Key: key, Request: request, Result: b, Created: now, Expires: now.Add(IdempotencyTTL),
	})
}
