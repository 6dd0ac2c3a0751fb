// Package auth is the seam between the mailbox API and whatever vouches for a
// request's user. Today that is an admin-made bearer token (Tokens); the OAuth
// 2.0 authorization server adds its access tokens behind the same interface,
// and Chain tries several.
package auth

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/pullmail/pullmail/account"
	"github.com/pullmail/pullmail/dpop"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/meta"
)

// Principal is the user a request acts for.
type Principal struct {
	UserID  int64
	Address string
}

// Authenticator finds the principal behind a request.
type Authenticator interface {
	// Authenticate returns the request's principal, or an *errs.Error of
	// kind Unauthorized: code missing_token when the request carries no
	// credentials of this authenticator's kind (so that Chain can ask the
	// next one), invalid_token, token_expired, invalid_dpop_proof or
	// use_dpop_nonce otherwise. It must not
	// tell an unknown token from another domain's: both are invalid_token.
	Authenticate(ctx context.Context, r *http.Request) (Principal, error)
}

type ctxKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext returns the principal that WithPrincipal stored, if any.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(Principal)
	return p, ok
}

// Must returns the context's principal or an Unauthorized error.
func Must(ctx context.Context) (Principal, error) {
	p, ok := FromContext(ctx)
	if !ok {
		return Principal{}, errs.E(errs.Unauthorized, "missing_token", "authentication required")
	}
	return p, nil
}

// BearerToken extracts the token of an "Authorization: Bearer" header
// (RFC 6750 §2.1). Tokens in the URL (§2.3) are never accepted: they end up
// in logs and Referer headers.
func BearerToken(r *http.Request) (string, bool) {
	h := r.Header.Values("Authorization")
	if len(h) != 1 {
		return "", false
	}
	scheme, tok, ok := strings.Cut(h[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" || strings.ContainsAny(tok, " \t") {
		return "", false
	}
	return tok, true
}

// Tokens authenticates admin-made bearer tokens (pullmail token create),
// stored in the metadata store by the SHA-256 of their secret.
type Tokens struct {
	Meta  meta.Reader
	Clock func() time.Time
}

var _ Authenticator = (*Tokens)(nil)

// Authenticate implements Authenticator.
func (t *Tokens) Authenticate(ctx context.Context, r *http.Request) (Principal, error) {
	secret, ok := BearerToken(r)
	if !ok {
		if r.Header.Get("Authorization") != "" {
			return Principal{}, errs.E(errs.Unauthorized, "invalid_token", "malformed Authorization header")
		}
		return Principal{}, errs.E(errs.Unauthorized, "missing_token", "authentication required")
	}
	return t.Check(ctx, secret)
}

// Check authenticates a token secret.
func (t *Tokens) Check(ctx context.Context, secret string) (Principal, error) {
	invalid := errs.E(errs.Unauthorized, "invalid_token", "the token is not valid here")
	if !account.LooksLikeToken(secret) { // junk never reaches the database
		return Principal{}, invalid
	}
	tok, err := t.Meta.TokenByHash(ctx, account.HashToken(secret))
	if errors.Is(err, meta.ErrNotFound) {
		return Principal{}, invalid
	} else if err != nil {
		return Principal{}, errs.Wrap(err, errs.Internal, "internal", "token lookup failed")
	}
	now := time.Now()
	if t.Clock != nil {
		now = t.Clock()
	}
	if !tok.Expires.IsZero() && !now.Before(tok.Expires) {
		return Principal{}, errs.E(errs.Unauthorized, "token_expired", "the token has expired")
	}
	u, err := t.Meta.UserByID(ctx, tok.UserID)
	if errors.Is(err, meta.ErrNotFound) {
		return Principal{}, invalid
	} else if err != nil {
		return Principal{}, errs.Wrap(err, errs.Internal, "internal", "user lookup failed")
	}
	return Principal{UserID: u.ID, Address: u.Address}, nil
}

// Chain tries each authenticator in turn and returns the first success. A
// request without credentials gets missing_token; otherwise the first error
// that is not missing_token, which comes from the authenticator that
// recognised the credentials (a DPoP failure stays a DPoP failure).
type Chain []Authenticator

// Authenticate implements Authenticator.
func (c Chain) Authenticate(ctx context.Context, r *http.Request) (Principal, error) {
	var first error
	for _, a := range c {
		p, err := a.Authenticate(ctx, r)
		if err == nil {
			return p, nil
		}
		if first == nil && errs.CodeOf(err) != "missing_token" {
			first = err
		}
	}
	if first == nil {
		first = errs.E(errs.Unauthorized, "missing_token", "authentication required")
	}
	return Principal{}, first
}

// challenge is the WWW-Authenticate value for a refused request: DPoP's
// (RFC 9449 §7.1) when the request used that scheme or its proof failed,
// otherwise Bearer's (RFC 6750 §3).
func challenge(r *http.Request, code string) string {
	scheme, _, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if strings.EqualFold(scheme, "DPoP") || code == dpop.CodeInvalidProof || code == dpop.CodeUseNonce {
		if code == "missing_token" {
			code = ""
		}
		return dpop.WWWAuthenticate(code)
	}
	if code == "missing_token" {
		return `Bearer realm="pullmail"`
	}
	return `Bearer realm="pullmail", error="invalid_token"`
}

// Middleware authenticates every request with a, stores the principal in the
// request context, and answers failures with a JSON error and a
// WWW-Authenticate challenge (RFC 6750 §3).
func Middleware(a Authenticator, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := a.Authenticate(r.Context(), r)
		if err != nil {
			if errs.KindOf(err) == errs.Unauthorized {
				w.Header().Set("WWW-Authenticate", challenge(r, errs.CodeOf(err)))
			}
			errs.WriteHTTP(w, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
	})
}
