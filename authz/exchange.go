package authz

import (
	"context"
	"encoding/json"
	"net/http"
	"net/mail"
	"slices"
	"strings"
	"time"

	"github.com/pullmail/pullmail/account"
	"github.com/pullmail/pullmail/dpop"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/federation"
	"github.com/pullmail/pullmail/keys"
	"github.com/pullmail/pullmail/placeholder"
)

// exchange serves RFC 8693 token exchange: the three legs of the
// Cross-Domain Authorization Grant (docs/PROTOCOL.md §10). Every leg needs a
// DPoP proof: what it issues is bound to the proof's key.
func (s *Server) exchange(ctx context.Context, c client, proof *dpop.Proof, r *http.Request) (tokenResponse, *oauthError) {
	if proof == nil {
		return tokenResponse{}, oerr(400, "invalid_dpop_proof", "token exchange requires a DPoP proof")
	}
	f := r.PostForm
	st, stt, rtt := f.Get("subject_token"), f.Get("subject_token_type"), f.Get("requested_token_type")
	if st == "" || stt == "" {
		return tokenResponse{}, oerr(400, "invalid_request", "subject_token and subject_token_type are required")
	}
	if f.Get("actor_token") != "" || f.Get("actor_token_type") != "" {
		if f.Get("actor_token_type") == "" {
			return tokenResponse{}, oerr(400, "invalid_request", "actor_token without actor_token_type")
		}
		return tokenResponse{}, oerr(400, "invalid_request", "actor tokens are not used: the client authenticates itself")
	}
	switch {
	case stt == federation.TokenTypeAccess && rtt == federation.TokenTypeJWT:
		return s.exchangeAssertion(ctx, c, proof, f.Get, st)
	case stt == federation.TokenTypeJWT && rtt == federation.TokenTypeAccess:
		return s.exchangeFetch(ctx, c, proof, f.Get, st)
	case stt == federation.TokenTypeJWT && rtt == federation.TokenTypeJWT:
		return s.exchangeForward(ctx, c, proof, f.Get, st)
	}
	return tokenResponse{}, oerr(400, "invalid_request", "unsupported subject_token_type "+stt+" with requested_token_type "+rtt)
}

// IssueSendGrant signs the subject token with which this domain's MTA client
// obtains assertions for one sent message: an access token of the author,
// scope internet_mail, bound to the Message-ID, valid for the delivery
// retry horizon. The mailbox calls it at send, when the author has just
// authenticated, so that retries days later still act on their authority.
func (s *Server) IssueSendGrant(author, mtaClientID, messageID string) (string, error) {
	return s.accessToken(author, 0, mtaClientID, federation.ScopeInternetMail, randomID(), "", s.cfg.SendGrantTTL, messageID, "")
}

// envelope reads the envelope_headers (a Placeholder headers object) and
// ehl (a JSON array of names) parameters and computes eht.
func envelope(get func(string) string, hop placeholder.Hop) (placeholder.Header, []string, string, *oauthError) {
	h, err := placeholder.ParseHeader([]byte(get("envelope_headers")), placeholder.DefaultLimits())
	if err != nil {
		return h, nil, "", oerr(400, "invalid_request", "envelope_headers: "+err.Error())
	}
	var ehl []string
	if err := json.Unmarshal([]byte(get("ehl")), &ehl); err != nil {
		return h, nil, "", oerr(400, "invalid_request", "ehl must be a JSON array of header names")
	}
	if err := placeholder.CheckEHL(ehl, hop); err != nil {
		return h, nil, "", oerr(400, "invalid_request", "ehl: "+err.Error())
	}
	eht, err := placeholder.EHT(h, ehl)
	if err != nil {
		return h, nil, "", oerr(400, "invalid_request", "eht: "+err.Error())
	}
	return h, ehl, eht, nil
}

// audienceDomain reads the audience parameter: the recipient domain.
func (s *Server) audienceDomain(get func(string) string) (string, *oauthError) {
	aud := strings.ToLower(get("audience"))
	if err := account.CheckDomain(aud); err != nil {
		return "", oerr(400, "invalid_target", "audience must be the recipient's domain")
	}
	if aud == s.cfg.Domain {
		return "", oerr(400, "invalid_target", "no assertion is needed for this domain's own users")
	}
	return aud, nil
}

// singleAddress parses a header holding one address to its account form.
func singleAddress(v string) (string, bool) {
	a, err := mail.ParseAddress(v)
	if err != nil {
		return "", false
	}
	n, err := account.NormalizeAddress(a.Address)
	return n, err == nil
}

// assertion signs a Cross-Domain Authorization Grant assertion.
func (s *Server) assertion(sub, aud, azp, jkt, msgid, eht string, ehl []string, hop int, path []string, prev string) (string, error) {
	now := s.now()
	return s.cfg.Keys.Sign(federation.TypAssertion, federation.Claims{Claims: keys.Claims{
		Issuer: s.cfg.Issuer, Subject: sub, Audience: keys.Audience{aud}, AZP: azp, Scope: federation.ScopeInternetMail,
		Cnf: &keys.Confirmation{JKT: jkt}, ID: randomID(), IssuedAt: keys.NewNumericDate(now),
		Expiry: keys.NewNumericDate(now.Add(s.cfg.AssertionTTL)),
	}, MessageID: msgid, EH: &federation.EnvelopeBinding{EHT: eht, EHL: ehl}, Hop: hop, Path: path, Prev: prev})
}

func assertionResponse(a string, ttl time.Duration) tokenResponse {
	return tokenResponse{AccessToken: a, IssuedTokenType: federation.TokenTypeJWT, TokenType: "N_A", ExpiresIn: int64(ttl / time.Second)}
}

// exchangeAssertion: this domain's MTA trades a send grant for an assertion
// bound to one message's envelope headers (docs/PROTOCOL.md §10.2).
func (s *Server) exchangeAssertion(ctx context.Context, c client, proof *dpop.Proof, get func(string) string, st string) (tokenResponse, *oauthError) {
	if c.remote || c.Public {
		return tokenResponse{}, oerr(400, "unauthorized_client", "only this domain's MTA may obtain assertions")
	}
	sg, err := s.verifyOwn(ctx, st, federation.TypAccessToken, s.cfg.SendGrantTTL+time.Minute)
	if err != nil {
		return tokenResponse{}, oerr(400, "invalid_request", "subject_token: "+err.Error())
	}
	switch {
	case !federation.HasScope(sg.Scope, federation.ScopeInternetMail):
		return tokenResponse{}, oerr(400, "invalid_request", "the subject token does not grant "+federation.ScopeInternetMail)
	case sg.ClientID != c.ID:
		return tokenResponse{}, oerr(400, "invalid_request", "the subject token was issued to another client")
	case get("scope") != "" && get("scope") != federation.ScopeInternetMail:
		return tokenResponse{}, oerr(400, "invalid_scope", "an assertion's scope is "+federation.ScopeInternetMail)
	}
	aud, oe := s.audienceDomain(get)
	if oe != nil {
		return tokenResponse{}, oe
	}
	h, ehl, eht, oe := envelope(get, placeholder.FirstHop)
	if oe != nil {
		return tokenResponse{}, oe
	}
	from, ok := singleAddress(h.Get(placeholder.HFrom).String())
	if !ok || from != sg.Subject {
		return tokenResponse{}, oerr(400, "invalid_request", "the From address does not belong to the user behind the subject token")
	}
	if h.Get(placeholder.HMessageID).String() != sg.MessageID {
		return tokenResponse{}, oerr(400, "invalid_request", "the Message-ID is not the one the subject token was issued for")
	}
	a, err := s.assertion(from, aud, c.ID, proof.Thumbprint, sg.MessageID, eht, ehl, 1, []string{s.cfg.Domain}, "")
	if err != nil {
		return tokenResponse{}, oerr(500, "server_error", "signing failed")
	}
	s.log.Info("assertion issued", "msgid", sg.MessageID, "aud", aud, "client", c.ID)
	return assertionResponse(a, s.cfg.AssertionTTL), nil
}

// exchangeFetch: a recipient domain's MTA trades an assertion this server
// issued to it for a DPoP-bound token that fetches that one message's
// resources (docs/PROTOCOL.md §10.3). The assertion may be traded until the
// delivery retry horizon after its expiry: it is bound to its audience, and
// only that domain's authenticated MTA can trade it.
func (s *Server) exchangeFetch(ctx context.Context, c client, proof *dpop.Proof, get func(string) string, st string) (tokenResponse, *oauthError) {
	if !c.remote {
		return tokenResponse{}, oerr(400, "unauthorized_client", "fetch tokens are for other domains' MTAs")
	}
	payload, _, err := s.cfg.Keys.Verify(st, keys.Expect{Typ: federation.TypAssertion})
	if err != nil {
		return tokenResponse{}, oerr(400, "invalid_request", "subject_token: "+err.Error())
	}
	var a federation.Claims
	if err := json.Unmarshal(payload, &a); err != nil {
		return tokenResponse{}, oerr(400, "invalid_request", "subject_token: malformed claims")
	}
	now := s.now()
	switch {
	case a.Issuer != s.cfg.Issuer:
		return tokenResponse{}, oerr(400, "invalid_request", "the assertion was not issued here")
	case a.Expiry == 0 || !now.Before(a.Expiry.Time().Add(s.cfg.SendGrantTTL)):
		return tokenResponse{}, oerr(400, "invalid_request", "the assertion is too old to trade")
	case a.IssuedAt.Time().After(now.Add(time.Minute)):
		return tokenResponse{}, oerr(400, "invalid_request", "the assertion is issued in the future")
	case a.MessageID == "":
		return tokenResponse{}, oerr(400, "invalid_request", "the assertion names no message")
	}
	if res := get("resource"); res != "" && strings.TrimRight(res, "/") != s.cfg.Issuer {
		return tokenResponse{}, oerr(400, "invalid_target", "the resource is this domain's mailbox: "+s.cfg.Issuer)
	}
	// The chain, from our assertion (the subject token, its oldest hop) to
	// the client's domain (VerifyChain checks that its newest hop is
	// addressed to it alone), is verified here once for the whole delivery;
	// the fetch token carries the verdict (docs/PROTOCOL.md §10.6, §12.4).
	raw := get("chain")
	if raw == "" {
		return tokenResponse{}, oerr(400, "invalid_request", "chain is required: the chain as pushed, oldest element the subject token")
	}
	var chain []federation.ChainElement
	if err := json.Unmarshal([]byte(raw), &chain); err != nil || len(chain) == 0 {
		return tokenResponse{}, oerr(400, "invalid_request", "chain must be a JSON array of {headers, jwt-assertion}")
	}
	if chain[len(chain)-1].Assertion != st {
		return tokenResponse{}, oerr(400, "invalid_request", "the subject token must be the chain's oldest assertion")
	}
	links, err := federation.VerifyChain(ctx, chain, federation.ChainCheck{Final: c.domain, Origin: s.cfg.Issuer, Domain: s.cfg.Domain,
		OwnIssuer: s.cfg.Issuer, Own: s.cfg.Keys, Remote: s.cfg.Remote, Now: now, Limits: placeholder.DefaultLimits(),
		MaxHops: s.cfg.MaxChain})
	if err != nil {
		if errs.KindOf(err) == errs.Internal {
			s.log.Warn("verifying a chain", "client", c.ID, "err", err)
			return tokenResponse{}, oerr(503, "temporarily_unavailable", "the chain's keys could not be read; try again")
		}
		return tokenResponse{}, oerr(400, "invalid_request", "chain: "+err.Error())
	}
	if s.cfg.ChainVerified != nil {
		s.cfg.ChainVerified(len(links))
	}
	grant, err := federation.GrantFetch(ctx, s.cfg.Meta, links)
	if err != nil {
		if errs.KindOf(err) == errs.Internal {
			s.log.Error("deciding a fetch grant", "msgid", a.MessageID, "err", err)
			return tokenResponse{}, oerr(500, "server_error", "reading the sent message failed")
		}
		return tokenResponse{}, oerr(400, "invalid_request", err.Error())
	}
	claims := s.accessClaims("", 0, c.ID, federation.ScopeFetch, "", proof.Thumbprint, s.cfg.FetchTokenTTL, a.MessageID, c.domain)
	claims.Fetch = &grant
	tok, err := s.cfg.Keys.Sign(federation.TypAccessToken, claims)
	if err != nil {
		return tokenResponse{}, oerr(500, "server_error", "signing failed")
	}
	return tokenResponse{AccessToken: tok, IssuedTokenType: federation.TokenTypeAccess, TokenType: "DPoP",
		ExpiresIn: int64(s.cfg.FetchTokenTTL / time.Second)}, nil
}

// exchangeForward: this domain's MTA trades the assertion a message arrived
// with for a chained assertion towards a forward's recipient domain
// (docs/PROTOCOL.md §10.4), if the forwarding user's policy allows it.
func (s *Server) exchangeForward(ctx context.Context, c client, proof *dpop.Proof, get func(string) string, st string) (tokenResponse, *oauthError) {
	if c.remote || c.Public {
		return tokenResponse{}, oerr(400, "unauthorized_client", "only this domain's MTA may forward")
	}
	prev, oe := s.verifyPrevious(ctx, st)
	if oe != nil {
		return tokenResponse{}, oe
	}
	if prev.Hop+1 > s.cfg.MaxChain {
		return tokenResponse{}, oerr(400, "invalid_request", "the forwarding chain is too long")
	}
	aud, oe := s.audienceDomain(get)
	if oe != nil {
		return tokenResponse{}, oe
	}
	for _, d := range prev.Path {
		if d == aud {
			return tokenResponse{}, oerr(400, "invalid_request", "the forward would loop back to "+aud)
		}
	}
	h, ehl, eht, oe := envelope(get, placeholder.ForwardHop)
	if oe != nil {
		return tokenResponse{}, oe
	}
	if h.Get(placeholder.HMessageID).String() != prev.MessageID {
		return tokenResponse{}, oerr(400, "invalid_request", "the Message-ID is not the previous hop's")
	}
	digest := placeholder.JWTAssertionDigest(st)
	if h.Get(placeholder.HJWTAssertionDigest).String() != digest {
		return tokenResponse{}, oerr(400, "invalid_request", "JWT-Assertion-Digest is not the digest of the subject token")
	}
	fwd, ok := singleAddress(h.Get(placeholder.HForwardedFrom).String())
	if !ok || !strings.HasSuffix(fwd, "@"+s.cfg.Domain) {
		return tokenResponse{}, oerr(400, "invalid_request", "Forwarded-From must be a user of this domain")
	}
	user, err := s.cfg.Meta.UserByAddress(ctx, fwd)
	if err != nil {
		return tokenResponse{}, oerr(400, "invalid_request", "Forwarded-From must be a user of this domain")
	}
	if denied, err := federation.ForwardingDenied(ctx, s.cfg.Meta, user.ID); err != nil {
		s.log.Error("reading the forwarding policy", "user", fwd, "err", err)
		return tokenResponse{}, oerr(500, "server_error", "reading the policy failed")
	} else if denied {
		// RFC 8693 §2.2.2: a subject token unacceptable by policy is invalid_request.
		return tokenResponse{}, oerr(400, "invalid_request", "the user's forwarding policy forbids forwarding")
	}
	// A hop made by a rule says so, signed (docs/PROTOCOL.md §12.6).
	if v := h.Get(federation.HAutoSubmitted); !v.IsZero() {
		if v.IsList() || v.String() != federation.AutoForwarded || !slices.Contains(ehl, federation.HAutoSubmitted) {
			return tokenResponse{}, oerr(400, "invalid_request", "a forwarding hop's Auto-Submitted is auto-forwarded, and signed")
		}
		ok, err := federation.AutoForwardAllowed(ctx, s.cfg.Meta, user.ID)
		if err != nil {
			s.log.Error("reading the automatic forwarding policy", "user", fwd, "err", err)
			return tokenResponse{}, oerr(500, "server_error", "reading the policy failed")
		}
		if !ok {
			return tokenResponse{}, oerr(400, "invalid_request", "the user's policy forbids automatic forwarding")
		}
	}
	a, err := s.assertion(fwd, aud, c.ID, proof.Thumbprint, prev.MessageID, eht, ehl, prev.Hop+1,
		append(append([]string{}, prev.Path...), s.cfg.Domain), digest)
	if err != nil {
		return tokenResponse{}, oerr(500, "server_error", "signing failed")
	}
	return assertionResponse(a, s.cfg.AssertionTTL), nil
}

// verifyPrevious checks the assertion a message arrived with: signed by
// the authorization server discovered for its subject's domain (or by this
// one), addressed to this domain. Its expiry is not checked: the forward
// may come long after the delivery, which checked it.
func (s *Server) verifyPrevious(ctx context.Context, st string) (federation.Claims, *oauthError) {
	iss, err := unverifiedIssuer(st)
	if err != nil {
		return federation.Claims{}, oerr(400, "invalid_request", "subject_token is not a JWT")
	}
	var payload []byte
	if iss == s.cfg.Issuer {
		payload, _, err = s.cfg.Keys.Verify(st, keys.Expect{Typ: federation.TypAssertion})
	} else {
		var a federation.Claims
		if _, err := keys.Peek(st, &a); err != nil {
			return federation.Claims{}, oerr(400, "invalid_request", "subject_token: malformed claims")
		}
		_, domain, _ := strings.Cut(a.Subject, "@")
		if s.cfg.Remote == nil || domain == "" {
			return federation.Claims{}, oerr(400, "invalid_request", "the previous hop's issuer cannot be checked")
		}
		wantIss, doc, ierr := s.cfg.Remote.IssuerKeys(ctx, domain)
		if ierr != nil || wantIss != iss {
			return federation.Claims{}, oerr(400, "invalid_request", "the previous hop's assertion is not from the issuer of "+domain)
		}
		set, perr := keys.ParseJWKS(doc)
		if perr != nil {
			return federation.Claims{}, oerr(400, "invalid_request", "the previous hop's issuer keys are unusable")
		}
		// Assign the outer err: it is checked below.
		payload, _, err = keys.Verify(st, set, keys.Expect{Typ: federation.TypAssertion})
	}
	if err != nil {
		return federation.Claims{}, oerr(400, "invalid_request", "subject_token: "+err.Error())
	}
	var a federation.Claims
	if err := json.Unmarshal(payload, &a); err != nil {
		return federation.Claims{}, oerr(400, "invalid_request", "subject_token: malformed claims")
	}
	if len(a.Audience) != 1 || a.Audience[0] != s.cfg.Domain || a.Issuer != iss || a.MessageID == "" || a.Hop < 1 {
		return federation.Claims{}, oerr(400, "invalid_request", "the previous hop's assertion was not addressed to this domain")
	}
	// Its expiry may be past, but it must be one an AS could have issued:
	// exp and iat present, a short life (SECURITY.md: at most 10 minutes),
	// and not from the future.
	now := s.now()
	switch {
	case a.Expiry == 0 || a.IssuedAt == 0:
		return federation.Claims{}, oerr(400, "invalid_request", "the previous hop's assertion lacks exp or iat")
	case a.Expiry.Time().Sub(a.IssuedAt.Time()) > 10*time.Minute:
		return federation.Claims{}, oerr(400, "invalid_request", "the previous hop's assertion lives longer than 10 minutes")
	case a.IssuedAt.Time().After(now.Add(time.Minute)) || a.NotBefore.Time().After(now.Add(time.Minute)):
		return federation.Claims{}, oerr(400, "invalid_request", "the previous hop's assertion is not valid yet")
	}
	return a, nil
}
