package authz

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/pullmail/pullmail/account"
	"github.com/pullmail/pullmail/auth"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/federation"
	"github.com/pullmail/pullmail/meta"
)

// Authenticator returns the mailbox's authenticator for this server's
// access tokens: RFC 9068 JWTs with scope mail, presented as Bearer, or as
// DPoP with a proof of the bound key (RFC 9449 §7). A DPoP-bound token sent
// as Bearer is a downgrade and is refused. The token's uid must be the ID of
// the user who holds its sub's address now.
func (s *Server) Authenticator() auth.Authenticator { return accessAuth{s} }

type accessAuth struct{ s *Server }

func (a accessAuth) Authenticate(ctx context.Context, r *http.Request) (auth.Principal, error) {
	s := a.s
	h := r.Header.Values("Authorization")
	if len(h) == 0 {
		return auth.Principal{}, errs.E(errs.Unauthorized, "missing_token", "authentication required")
	}
	invalid := func(msg string) (auth.Principal, error) {
		return auth.Principal{}, errs.E(errs.Unauthorized, "invalid_token", "%s", msg)
	}
	if len(h) != 1 {
		return invalid("one Authorization header, please")
	}
	scheme, tok, _ := strings.Cut(h[0], " ")
	if account.LooksLikeToken(tok) {
		// An admin-made token: another authenticator's kind (auth.Chain).
		return auth.Principal{}, errs.E(errs.Unauthorized, "missing_token", "no access token of this server")
	}
	if strings.Count(tok, ".") != 2 {
		return invalid("not an access token of this server")
	}
	c, err := s.verifyOwn(ctx, tok, federation.TypAccessToken, s.cfg.AccessTokenTTL+time.Minute)
	if err != nil {
		return auth.Principal{}, err
	}
	if !federation.HasScope(c.Scope, ScopeMail) {
		return invalid("the token does not grant the mailbox API")
	}
	bound := c.Cnf != nil && c.Cnf.JKT != ""
	switch {
	case bound && !strings.EqualFold(scheme, "DPoP"):
		return invalid("a DPoP-bound token must be sent with the DPoP scheme")
	case !bound && !strings.EqualFold(scheme, "Bearer"):
		return invalid("a Bearer token must be sent with the Bearer scheme")
	case bound:
		p, err := s.dpop.Verify(ctx, r, s.cfg.Issuer+r.URL.Path, tok)
		if err != nil {
			return auth.Principal{}, err
		}
		if p.Thumbprint != c.Cnf.JKT {
			return invalid("the DPoP proof is not by the token's key")
		}
	}
	// The address and the ID must both be the user's: a token minted for a
	// deleted user must not open a new account at the same address, and
	// one without an ID (minted before tokens had one) is refused too.
	u, err := s.cfg.Meta.UserByAddress(ctx, c.Subject)
	if errors.Is(err, meta.ErrNotFound) || (err == nil && (c.UserID == 0 || c.UserID != u.ID)) {
		return invalid("the token's user no longer exists")
	} else if err != nil {
		return auth.Principal{}, errs.Wrap(err, errs.Internal, "internal", "user lookup failed")
	}
	return auth.Principal{UserID: u.ID, Address: u.Address}, nil
}
