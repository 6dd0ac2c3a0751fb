package authz

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/pullmail/pullmail/dpop"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/federation"
	"github.com/pullmail/pullmail/keys"
	"github.com/pullmail/pullmail/meta"
)

// tokenResponse is RFC 6749 §5.1 with RFC 8693 §2.2.1's issued_token_type.
type tokenResponse struct {
	AccessToken     string `json:"access_token"`
	IssuedTokenType string `json:"issued_token_type,omitempty"`
	TokenType       string `json:"token_type"`
	ExpiresIn       int64  `json:"expires_in,omitempty"`
	RefreshToken    string `json:"refresh_token,omitempty"`
	Scope           string `json:"scope,omitempty"`
	// unsigned holds the claims of AccessToken until it is signed, after
	// the transaction that issued it commits: no signing (nor the key
	// file's reads) inside a write transaction.
	unsigned *federation.Claims
}

// client is the authenticated party of a token request.
type client struct {
	meta.Client
	remote bool   // another domain's MTA (private_key_jwt with keys found by Remote)
	domain string // its domain, for a remote client
}

// token serves the token endpoint.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 256<<10)
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, oerr(400, "invalid_request", "the body must be application/x-www-form-urlencoded"))
		return
	}
	if r.URL.RawQuery != "" {
		writeOAuthError(w, oerr(400, "invalid_request", "parameters go in the body, never the URL"))
		return
	}
	for k, v := range r.PostForm {
		if len(v) > 1 {
			writeOAuthError(w, oerr(400, "invalid_request", "the parameter "+k+" is repeated"))
			return
		}
	}
	ctx := r.Context()
	c, oe := s.authenticateClient(ctx, r)
	if oe != nil {
		writeOAuthError(w, oe)
		return
	}
	var proof *dpop.Proof
	if len(r.Header.Values("DPoP")) > 0 {
		p, err := s.dpop.Verify(ctx, r, s.cfg.Issuer+PathToken, "")
		if err != nil {
			if errs.CodeOf(err) == "use_dpop_nonce" {
				w.Header().Set("DPoP-Nonce", s.dpop.Nonce.Current())
			}
			writeOAuthError(w, dpopError(err))
			return
		}
		proof = p
	}
	var resp tokenResponse
	switch gt := r.PostFormValue("grant_type"); gt {
	case "authorization_code":
		resp, oe = s.grantCode(ctx, c, proof, r)
	case "refresh_token":
		resp, oe = s.grantRefresh(ctx, c, proof, r)
	case GrantDeviceCode:
		resp, oe = s.grantDevice(ctx, c, proof, r)
	case federation.GrantTokenExch:
		resp, oe = s.exchange(ctx, c, proof, r)
	case "":
		oe = oerr(400, "invalid_request", "grant_type is required")
	default:
		oe = oerr(400, "unsupported_grant_type", "grant_type "+gt+" is not supported (no implicit, no password grant)")
	}
	if oe == nil && resp.unsigned != nil {
		// The grant's transaction has committed: a failure here leaves the
		// code or refresh token spent, as any lost answer would.
		var err error
		if resp.AccessToken, err = s.cfg.Keys.Sign(federation.TypAccessToken, *resp.unsigned); err != nil {
			s.log.Error("signing an access token", "client", c.ID, "err", err)
			oe = oerr(500, "server_error", "the access token could not be signed")
		}
		resp.unsigned = nil
	}
	if oe != nil {
		s.log.Info("token request refused", "client", c.ID, "grant", r.PostFormValue("grant_type"), "error", oe.Code, "why", oe.Description)
		writeOAuthError(w, oe)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// dpopError maps a DPoP verification failure to its RFC 9449 §5 answer.
func dpopError(err error) *oauthError {
	var e *errs.Error
	if errors.As(err, &e) && e.Kind != errs.Internal {
		return oerr(400, e.Code, e.Message)
	}
	return oerr(500, "server_error", "the proof could not be checked")
}

// clientRequest reads a client's form post (at most 64 KiB) and
// authenticates the client, answering the error itself when it fails.
func (s *Server) clientRequest(w http.ResponseWriter, r *http.Request) (client, bool) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, oerr(400, "invalid_request", "malformed body"))
		return client{}, false
	}
	c, oe := s.authenticateClient(r.Context(), r)
	if oe != nil {
		writeOAuthError(w, oe)
		return client{}, false
	}
	return c, true
}

// grant finds the grant of a secret in a transaction: a missing one, or
// one of another kind, is answered invalid_grant with what.
func grant(ctx context.Context, tx meta.Tx, secret string, kind meta.GrantKind, what string) (meta.Grant, *oauthError, error) {
	g, err := tx.GrantByHash(ctx, hashSecret(secret))
	if errors.Is(err, meta.ErrNotFound) || (err == nil && g.Kind != kind) {
		return g, oerr(400, "invalid_grant", "unknown "+what), nil
	}
	return g, nil, err
}

// authenticateClient identifies the client: a public client by client_id,
// a confidential one by private_key_jwt (RFC 7523 §2.2), a remote domain's
// MTA by private_key_jwt against the keys its domain publishes.
func (s *Server) authenticateClient(ctx context.Context, r *http.Request) (client, *oauthError) {
	id := r.PostFormValue("client_id")
	at, assertion := r.PostFormValue("client_assertion_type"), r.PostFormValue("client_assertion")
	if r.Header.Get("Authorization") != "" {
		return client{}, oerr(401, "invalid_client", "client_secret_basic is not supported: use private_key_jwt")
	}
	if at == "" && assertion == "" {
		c, err := s.cfg.Meta.Client(ctx, id)
		if err != nil || !c.Public {
			return client{}, oerr(401, "invalid_client", "unknown client, or a confidential client without its assertion")
		}
		return client{Client: c}, nil
	}
	if at != federation.ClientAssertionJB || assertion == "" {
		return client{}, oerr(401, "invalid_client", "client_assertion_type must be "+federation.ClientAssertionJB)
	}
	iss, err := unverifiedIssuer(assertion)
	if err != nil || (id != "" && id != iss) {
		return client{}, oerr(401, "invalid_client", "the client assertion's iss must be the client_id")
	}
	var c client
	var jwksDoc []byte
	if lc, err := s.cfg.Meta.Client(ctx, iss); err == nil {
		if lc.Public || len(lc.JWKS) == 0 {
			return client{}, oerr(401, "invalid_client", "this client has no keys")
		}
		c, jwksDoc = client{Client: lc}, lc.JWKS
	} else if s.cfg.Remote != nil {
		domain, doc, err := s.cfg.Remote.ClientKeys(ctx, iss)
		if err != nil {
			return client{}, oerr(401, "invalid_client", "unknown client")
		}
		c, jwksDoc = client{Client: meta.Client{ID: iss, Name: iss}, remote: true, domain: domain}, doc
	} else {
		return client{}, oerr(401, "invalid_client", "unknown client")
	}
	set, err := keys.ParseJWKS(jwksDoc)
	if err != nil {
		return client{}, oerr(401, "invalid_client", "the client's keys are unusable")
	}
	payload, _, err := keys.Verify(assertion, set, keys.Expect{Typ: "JWT"})
	if err != nil {
		return client{}, oerr(401, "invalid_client", "the client assertion does not verify")
	}
	var cl keys.Claims
	if err := json.Unmarshal(payload, &cl); err != nil {
		return client{}, oerr(401, "invalid_client", "the client assertion's claims are malformed")
	}
	now := s.now()
	audOK := false
	for _, a := range cl.Audience {
		if a == s.cfg.Issuer || a == s.cfg.Issuer+PathToken {
			audOK = true
		}
	}
	switch {
	case cl.Issuer != iss || cl.Subject != iss:
		return client{}, oerr(401, "invalid_client", "the client assertion's iss and sub must be the client_id")
	case !audOK:
		return client{}, oerr(401, "invalid_client", "the client assertion is for another server")
	case cl.Expiry == 0 || !now.Before(cl.Expiry.Time()) || cl.Expiry.Time().Sub(now) > 10*time.Minute:
		return client{}, oerr(401, "invalid_client", "the client assertion's exp is missing, past, or more than 10 minutes away")
	case cl.NotBefore != 0 && now.Add(time.Minute).Before(cl.NotBefore.Time()):
		return client{}, oerr(401, "invalid_client", "the client assertion is not valid yet")
	case cl.ID == "":
		return client{}, oerr(401, "invalid_client", "the client assertion needs a jti")
	}
	fresh, err := s.cfg.Meta.UseOnce(ctx, "client-assertion:"+iss+":"+cl.ID, cl.Expiry.Time())
	if err != nil {
		return client{}, oerr(500, "server_error", "replay check failed")
	}
	if !fresh {
		return client{}, oerr(401, "invalid_client", "the client assertion was used before")
	}
	return c, nil
}

// unverifiedIssuer reads iss from a JWT's payload before its keys are
// known; it is verified right after.
func unverifiedIssuer(compact string) (string, error) {
	var c struct {
		Iss string `json:"iss"`
	}
	if _, err := keys.Peek(compact, &c); err != nil {
		return "", err
	}
	if c.Iss == "" {
		return "", errors.New("no iss")
	}
	return c.Iss, nil
}

// grantCode redeems an authorization code (RFC 6749 §4.1.3, RFC 7636 §4.6).
// A code works once: a second use revokes everything the first issued
// (RFC 6749 §4.1.2); a failed check spends it too.
func (s *Server) grantCode(ctx context.Context, c client, proof *dpop.Proof, r *http.Request) (tokenResponse, *oauthError) {
	code, verifier := r.PostFormValue("code"), r.PostFormValue("code_verifier")
	if code == "" {
		return tokenResponse{}, oerr(400, "invalid_request", "code is required")
	}
	var resp tokenResponse
	var refusal *oauthError
	err := s.cfg.Meta.Update(ctx, func(tx meta.Tx) error {
		var g meta.Grant
		var err error
		if g, refusal, err = grant(ctx, tx, code, meta.GrantCode, "authorization code"); refusal != nil || err != nil {
			return err
		}
		if g.Used || g.Revoked {
			refusal = oerr(400, "invalid_grant", "the authorization code was already used; what it issued is revoked")
			return tx.RevokeFamily(ctx, g.Family, s.now().Add(s.cfg.RefreshTTL))
		}
		// From here every refusal spends the code.
		spend := func(o *oauthError) error {
			refusal = o
			g.Used = true
			return tx.UpdateGrant(ctx, g)
		}
		switch {
		case !s.now().Before(g.Expires):
			return spend(oerr(400, "invalid_grant", "the authorization code has expired"))
		case g.ClientID != c.ID:
			return spend(oerr(400, "invalid_grant", "the authorization code was issued to another client"))
		case r.PostFormValue("redirect_uri") != g.RedirectURI:
			return spend(oerr(400, "invalid_grant", "redirect_uri differs from the authorization request's"))
		case g.Challenge == "" && verifier != "":
			return spend(oerr(400, "invalid_grant", "code_verifier without a code_challenge"))
		case g.Challenge != "" && !pkceVerifier.MatchString(verifier):
			return spend(oerr(400, "invalid_grant", "code_verifier must be 43 to 128 characters of [A-Za-z0-9-._~]"))
		case g.Challenge != "" && subtle.ConstantTimeCompare([]byte(s256(verifier)), []byte(g.Challenge)) != 1:
			return spend(oerr(400, "invalid_grant", "code_verifier does not match the code_challenge"))
		}
		resp, err = s.redeem(ctx, tx, c, g, g.Scope, proof)
		return err
	})
	if err != nil {
		s.log.Error("redeeming a code", "err", err)
		return tokenResponse{}, oerr(500, "server_error", "the code could not be redeemed")
	}
	return resp, refusal
}

// s256 is the PKCE S256 transform (RFC 7636 §4.2).
func s256(verifier string) string {
	h := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// grantRefresh rotates a refresh token (RFC 9700 §4.14.2): the old one is
// spent, a new one of the same family issued; presenting a spent one again
// revokes the family.
func (s *Server) grantRefresh(ctx context.Context, c client, proof *dpop.Proof, r *http.Request) (tokenResponse, *oauthError) {
	rt := r.PostFormValue("refresh_token")
	if rt == "" {
		return tokenResponse{}, oerr(400, "invalid_request", "refresh_token is required")
	}
	var resp tokenResponse
	var refusal *oauthError
	err := s.cfg.Meta.Update(ctx, func(tx meta.Tx) error {
		var g meta.Grant
		var err error
		if g, refusal, err = grant(ctx, tx, rt, meta.GrantRefresh, "refresh token"); refusal != nil || err != nil {
			return err
		}
		switch {
		case g.ClientID != c.ID:
			refusal = oerr(400, "invalid_grant", "the refresh token was issued to another client")
			return nil
		case g.Used || g.Revoked:
			refusal = oerr(400, "invalid_grant", "the refresh token was already used or revoked; the session is revoked")
			return tx.RevokeFamily(ctx, g.Family, s.now().Add(s.cfg.RefreshTTL))
		case !s.now().Before(g.Expires):
			refusal = oerr(400, "invalid_grant", "the refresh token has expired")
			return nil
		case g.JKT != "" && (proof == nil || proof.Thumbprint != g.JKT):
			refusal = oerr(400, "invalid_grant", "the refresh token is bound to a DPoP key: prove it")
			return nil
		}
		scope := g.Scope
		if sc := r.PostFormValue("scope"); sc != "" {
			if !subset(sc, g.Scope) {
				refusal = oerr(400, "invalid_scope", "a refresh may not widen the scope")
				return nil
			}
			scope = sc // RFC 6749 §6: the new tokens have the narrower scope
		}
		resp, err = s.redeem(ctx, tx, c, g, scope, proof)
		return err
	})
	if err != nil {
		s.log.Error("refreshing", "err", err)
		return tokenResponse{}, oerr(500, "server_error", "the refresh failed")
	}
	return resp, refusal
}

func subset(want, have string) bool {
	h := map[string]bool{}
	for _, s := range strings.Fields(have) {
		h[s] = true
	}
	for _, s := range strings.Fields(want) {
		if !h[s] {
			return false
		}
	}
	return true
}

// redeem spends a grant and issues the tokens it was for, in tx.
func (s *Server) redeem(ctx context.Context, tx meta.Tx, c client, g meta.Grant, scope string, proof *dpop.Proof) (tokenResponse, error) {
	g.Used = true
	if err := tx.UpdateGrant(ctx, g); err != nil {
		return tokenResponse{}, err
	}
	return s.issue(ctx, tx, c, g.UserID, scope, g.Family, proof)
}

// issue makes an access token and a refresh token for a user, in tx: the
// refresh token's grant is stored, the access token's claims are left in
// the answer to be signed once tx commits (tokenResponse.unsigned). With a
// DPoP proof both are bound to its key (a public client's refresh token
// too, RFC 9449 §5).
func (s *Server) issue(ctx context.Context, tx meta.Tx, c client, userID int64, scope, family string, proof *dpop.Proof) (tokenResponse, error) {
	u, err := tx.UserByID(ctx, userID)
	if err != nil {
		return tokenResponse{}, err
	}
	jkt := ""
	if proof != nil {
		jkt = proof.Thumbprint
	}
	at := s.accessClaims(u.Address, u.ID, c.ID, scope, family, jkt, s.cfg.AccessTokenTTL, "", "")
	rt, hash := secret("pmr_")
	g := meta.Grant{Hash: hash, Kind: meta.GrantRefresh, Family: family, ClientID: c.ID, UserID: userID, Scope: scope,
		JKT: jkt, Created: s.now(), Expires: s.now().Add(s.cfg.RefreshTTL)}
	if err := tx.AddGrant(ctx, g); err != nil {
		return tokenResponse{}, err
	}
	return tokenResponse{unsigned: &at, IssuedTokenType: federation.TokenTypeAccess, TokenType: tokenType(jkt),
		ExpiresIn: int64(s.cfg.AccessTokenTTL / time.Second), RefreshToken: rt, Scope: scope}, nil
}

func tokenType(jkt string) string {
	if jkt != "" {
		return "DPoP"
	}
	return "Bearer"
}

// accessToken signs an RFC 9068 access token for this server's resources;
// uid is the user's ID (0 for a token that acts for no user of this domain).
func (s *Server) accessToken(sub string, uid int64, clientID, scope, family, jkt string, ttl time.Duration, msgid, rcptDomain string) (string, error) {
	return s.cfg.Keys.Sign(federation.TypAccessToken, s.accessClaims(sub, uid, clientID, scope, family, jkt, ttl, msgid, rcptDomain))
}

// accessClaims are the claims of such a token.
func (s *Server) accessClaims(sub string, uid int64, clientID, scope, family, jkt string, ttl time.Duration, msgid, rcptDomain string) federation.Claims {
	now := s.now()
	c := federation.Claims{Claims: keys.Claims{
		Issuer: s.cfg.Issuer, Subject: sub, Audience: keys.Audience{s.cfg.Issuer}, IssuedAt: keys.NewNumericDate(now),
		Expiry: keys.NewNumericDate(now.Add(ttl)), ID: randomID(), Scope: scope, ClientID: clientID,
	}, UserID: uid, Family: family, MessageID: msgid, RecipientDomain: rcptDomain}
	if jkt != "" {
		c.Cnf = &keys.Confirmation{JKT: jkt}
	}
	return c
}

// verifyOwn checks a token this server signed, of a type, and its claims.
func (s *Server) verifyOwn(ctx context.Context, compact, typ string, maxLife time.Duration) (federation.Claims, error) {
	payload, _, err := s.cfg.Keys.Verify(compact, keys.Expect{Typ: typ})
	if err != nil {
		return federation.Claims{}, err
	}
	var c federation.Claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return federation.Claims{}, errs.E(errs.Unauthorized, "invalid_token", "malformed claims")
	}
	aud := s.cfg.Issuer
	if typ == federation.TypAssertion && len(c.Audience) == 1 {
		aud = c.Audience[0] // an assertion's audience is the recipient domain: the caller checks it
	}
	if err := c.Validate(keys.ClaimsExpect{Issuer: s.cfg.Issuer, Audience: aud, Now: s.now(), Leeway: 30 * time.Second,
		MaxLifetime: maxLife, SoleAudience: true}); err != nil {
		return federation.Claims{}, err
	}
	if c.Family != "" {
		revoked, err := s.cfg.Meta.FamilyRevoked(ctx, c.Family)
		if err != nil {
			return federation.Claims{}, errs.Wrap(err, errs.Internal, "internal", "family check failed")
		}
		if revoked {
			return federation.Claims{}, errs.E(errs.Unauthorized, "invalid_token", "the token has been revoked")
		}
	}
	return c, nil
}

// revoke serves RFC 7009 revocation: a refresh token or an access token
// revokes its whole family. Unknown tokens are answered 200 (§2.2).
func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	c, ok := s.clientRequest(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	tok := r.PostFormValue("token")
	if tok == "" {
		writeOAuthError(w, oerr(400, "invalid_request", "token is required"))
		return
	}
	family, owner := "", ""
	if g, err := s.cfg.Meta.GrantByHash(ctx, hashSecret(tok)); err == nil {
		family, owner = g.Family, g.ClientID
	} else if cl, err := s.verifyOwn(ctx, tok, federation.TypAccessToken, 0); err == nil {
		family, owner = cl.Family, cl.ClientID
	}
	if family == "" {
		w.WriteHeader(http.StatusOK)
		return
	}
	if owner != c.ID {
		writeOAuthError(w, oerr(400, "invalid_request", "the token was not issued to this client"))
		return
	}
	if err := s.cfg.Meta.Update(ctx, func(tx meta.Tx) error {
		return tx.RevokeFamily(ctx, family, s.now().Add(s.cfg.RefreshTTL))
	}); err != nil {
		writeOAuthError(w, oerr(503, "temporarily_unavailable", "try again"))
		return
	}
	s.log.Info("revoked", "client", c.ID, "family", family)
	w.WriteHeader(http.StatusOK)
}
