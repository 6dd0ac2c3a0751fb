package authz_test

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pullmail/pullmail/authz"
	"github.com/pullmail/pullmail/federation"
	"github.com/pullmail/pullmail/keys"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
)

// xenv is the Cross-Domain Authorization Grant's cast: a.test (Alice's
// domain, origin of the message) and b.test (Bob's, the recipient, who
// forwards to c.test), each with its MTA registered as a confidential
// client, and each AS rebuilt with a Remote that knows the other domain.
type xenv struct {
	a, b       *env
	mtaA, mtaB *mta
	asA, asB   *remoteAS // a's AS knowing b's MTA; b's AS knowing a's issuer
	msgid      string
	sendGrant  string
	hdr        placeholder.Header
	ehl        []string
	sentID     string // alice's sent copy at a.test
}

func newXEnv(t *testing.T) *xenv {
	x := &xenv{a: newEnv(t, "a.test"), b: newEnv(t, "b.test"), msgid: "<m1@a.test>"}
	x.b.d.AddUser(t, "bob@b.test")
	x.mtaA, x.mtaB = newMTA(t, "mta@a.test"), newMTA(t, "mta@b.test")
	x.mtaA.register(t, x.a.d)
	x.mtaB.register(t, x.b.d)
	x.asA = newRemoteAS(t, x.a, &remote{clients: map[string]remoteEntry{"mta@b.test": {"b.test", x.mtaB.jwks()}}})
	x.asB = newRemoteAS(t, x.b, &remote{issuers: map[string]remoteEntry{"a.test": {x.a.d.URL, publicJWKS(t, x.a.d)}}})
	var err error
	x.sendGrant, err = x.a.d.Server.Authz.IssueSendGrant("alice@a.test", "mta@a.test", x.msgid)
	if err != nil {
		t.Fatal(err)
	}
	x.hdr = firstHop(t, "Alice <alice@a.test>", "Bob <bob@b.test>", x.msgid)
	x.ehl = placeholder.FirstHop.RequiredEHL()
	x.storeSent(t)
	return x
}

// storeSent stores alice's sent copy of the message at a.test, the one a
// fetch grant must find (docs/PROTOCOL.md §10.6), and makes the envelope's
// Body-Digest its own.
func (x *xenv) storeSent(t testing.TB) {
	t.Helper()
	m := placeholder.New("Alice <alice@a.test>", []string{"Bob <bob@b.test>"}, nil, nil, "hello")
	leaf, err := placeholder.NewLeaf(resource.IDOf([]byte("hello")), 5, "text/plain; charset=utf-8", "", "")
	if err != nil {
		t.Fatal(err)
	}
	m.Parts = append(m.Parts, leaf)
	m.Header.SetString(placeholder.HMessageID, x.msgid)
	m.Header.SetString(placeholder.HBodyDigest, placeholder.BodyDigest(m))
	x.hdr.SetString(placeholder.HBodyDigest, placeholder.BodyDigest(m))
	x.sentID = "sent-1"
	now := time.Now()
	ctx := context.Background()
	if err := x.a.d.Server.Meta.Update(ctx, func(tx meta.Tx) error {
		return tx.InsertMessage(ctx, meta.Message{ID: x.sentID, UserID: x.a.uid, Folder: meta.Sent, MessageID: x.msgid,
			Status: meta.StatusSent, Date: now, Created: now, Updated: now, Placeholder: m.Canonical(),
			Refs: []meta.Ref{{ID: resource.IDOf([]byte("hello")), Size: 5}}})
	}); err != nil {
		t.Fatal(err)
	}
}

// chain is the chain of one hop that b.test's MTA received with assertion
// and sends with its fetch token request: the signed headers alone.
func (x *xenv) chain(t testing.TB, assertion string, h placeholder.Header) string {
	t.Helper()
	var signed placeholder.Header
	for _, n := range x.ehl {
		signed.Set(n, h.Get(n))
	}
	return jsonString(t, []federation.ChainElement{{Headers: []byte(jsonString(t, signed)), Assertion: assertion}})
}

// assertionForm is leg (a)'s request: the send grant for an assertion.
func (x *xenv) assertionForm(t testing.TB) url.Values {
	f := x.mtaA.auth(t, x.a.d.URL, x.a.clock.Now())
	f.Set("grant_type", federation.GrantTokenExch)
	f.Set("subject_token", x.sendGrant)
	f.Set("subject_token_type", federation.TokenTypeAccess)
	f.Set("requested_token_type", federation.TokenTypeJWT)
	f.Set("audience", "b.test")
	f.Set("envelope_headers", jsonString(t, x.hdr))
	f.Set("ehl", jsonString(t, x.ehl))
	return f
}

// assertion runs leg (a) and returns the assertion.
func (x *xenv) assertion(t testing.TB) string {
	t.Helper()
	r := x.a.post(t, authz.PathToken, x.assertionForm(t), x.mtaA.proof(t, x.a.d.URL, x.a.clock.Now()))
	if r.Status != 200 {
		t.Fatalf("leg (a): %+v", r)
	}
	return r.AccessToken
}

// fetchForm is leg (b)'s request: b's MTA trades the assertion at a's AS.
func (x *xenv) fetchForm(t testing.TB, assertion string) url.Values {
	f := x.mtaB.auth(t, x.a.d.URL, x.a.clock.Now())
	f.Set("grant_type", federation.GrantTokenExch)
	f.Set("subject_token", assertion)
	f.Set("subject_token_type", federation.TokenTypeJWT)
	f.Set("requested_token_type", federation.TokenTypeAccess)
	f.Set("resource", x.a.d.URL)
	f.Set("chain", x.chain(t, assertion, x.hdr))
	return f
}

// forwardForm is leg (c)'s request: b's MTA trades the assertion it
// received for one towards c.test, with the forward's envelope.
func (x *xenv) forwardForm(t testing.TB, prev string, h placeholder.Header) url.Values {
	f := x.mtaB.auth(t, x.b.d.URL, x.b.clock.Now())
	f.Set("grant_type", federation.GrantTokenExch)
	f.Set("subject_token", prev)
	f.Set("subject_token_type", federation.TokenTypeJWT)
	f.Set("requested_token_type", federation.TokenTypeJWT)
	f.Set("audience", "c.test")
	f.Set("envelope_headers", jsonString(t, h))
	f.Set("ehl", jsonString(t, placeholder.ForwardHop.RequiredEHL()))
	return f
}

func TestExchangeAssertion(t *testing.T) {
	x := newXEnv(t)
	a := x.a
	r := a.post(t, authz.PathToken, x.assertionForm(t), x.mtaA.proof(t, a.d.URL, a.clock.Now()))
	if r.Status != 200 || r.IssuedTokenType != federation.TokenTypeJWT || r.TokenType != "N_A" || r.RefreshToken != "" {
		t.Fatalf("leg (a): %+v", r)
	}
	payload, _, err := keys.Verify(r.AccessToken, a.d.Server.Keys.PublicJWKS(), keys.Expect{Typ: federation.TypAssertion})
	if err != nil {
		t.Fatalf("the assertion does not verify with a's JWKS: %v", err)
	}
	_ = payload
	c := claimsOf(t, r.AccessToken)
	eht, err := placeholder.EHT(x.hdr, x.ehl)
	if err != nil {
		t.Fatal(err)
	}
	life := c.Expiry.Time().Sub(c.IssuedAt.Time())
	switch {
	case c.Issuer != a.d.URL, c.Subject != "alice@a.test", len(c.Audience) != 1 || c.Audience[0] != "b.test",
		c.AZP != "mta@a.test", c.Scope != federation.ScopeInternetMail, c.ID == "", c.MessageID != x.msgid:
		t.Errorf("claims: %+v", c)
	case c.Cnf == nil || c.Cnf.JKT != x.mtaA.dpop.Thumbprint():
		t.Errorf("cnf %+v, want jkt %s", c.Cnf, x.mtaA.dpop.Thumbprint())
	case c.EH == nil || c.EH.EHT != eht || !slices.Equal(c.EH.EHL, x.ehl):
		t.Errorf("eh %+v, want eht %s over %v", c.EH, eht, x.ehl)
	case life <= 0 || life > 10*time.Minute:
		t.Errorf("lifetime %v, want at most 10 minutes", life)
	}
	// The assertion is no access token at the mailbox.
	a.wantRefused(t, bearer(r.AccessToken), "invalid_token")
}

func TestExchangeAssertionRefusals(t *testing.T) {
	x := newXEnv(t)
	a := x.a
	ctx := context.Background()
	mta2 := newMTA(t, "mta2@a.test")
	mta2.register(t, a.d)
	otherGrant, err := a.d.Server.Authz.IssueSendGrant("alice@a.test", "mta2@a.test", x.msgid)
	if err != nil {
		t.Fatal(err)
	}
	bGrant, err := x.b.d.Server.Authz.IssueSendGrant("bob@b.test", "mta@b.test", x.msgid)
	if err != nil {
		t.Fatal(err)
	}
	now := a.clock.Now()
	sg := func(edit func(*federation.Claims)) string {
		c := federation.Claims{Claims: keys.Claims{Issuer: a.d.URL, Subject: "alice@a.test", Audience: keys.Audience{a.d.URL},
			IssuedAt: keys.NewNumericDate(now), Expiry: keys.NewNumericDate(now.Add(time.Hour)), ID: "sg",
			Scope: federation.ScopeInternetMail, ClientID: "mta@a.test"}, Family: "fam-sg", MessageID: x.msgid}
		edit(&c)
		return a.sign(t, federation.TypAccessToken, c)
	}
	if err := a.d.Server.Meta.Update(ctx, func(tx meta.Tx) error {
		return tx.RevokeFamily(ctx, "fam-revoked", now.Add(time.Hour))
	}); err != nil {
		t.Fatal(err)
	}
	webmailTok := a.login(t, nil).AccessToken
	withHeader := func(f url.Values, edit func(*placeholder.Header)) {
		h := x.hdr.Clone()
		edit(&h)
		f.Set("envelope_headers", jsonString(t, h))
	}
	proof := func() http.Header { return x.mtaA.proof(t, a.d.URL, a.clock.Now()) }

	for _, tc := range []struct {
		name   string
		edit   func(url.Values)
		hdr    func() http.Header
		status int
		want   string
	}{
		{"no DPoP proof", func(url.Values) {}, func() http.Header { return nil }, 400, "invalid_dpop_proof"},
		{"From not the user's", func(f url.Values) {
			withHeader(f, func(h *placeholder.Header) { h.SetString(placeholder.HFrom, "Mallory <mallory@a.test>") })
		}, proof, 400, "invalid_request"},
		{"From another domain's", func(f url.Values) {
			withHeader(f, func(h *placeholder.Header) { h.SetString(placeholder.HFrom, "Alice <alice@evil.test>") })
		}, proof, 400, "invalid_request"},
		{"From with two addresses", func(f url.Values) {
			withHeader(f, func(h *placeholder.Header) { h.SetString(placeholder.HFrom, "alice@a.test, mallory@evil.test") })
		}, proof, 400, "invalid_request"},
		{"Message-ID not the send grant's", func(f url.Values) {
			withHeader(f, func(h *placeholder.Header) { h.SetString(placeholder.HMessageID, "<other@a.test>") })
		}, proof, 400, "invalid_request"},
		{"subject_token_type missing", func(f url.Values) { f.Del("subject_token_type") }, proof, 400, "invalid_request"},
		{"subject_token_type unknown", func(f url.Values) { f.Set("subject_token_type", "urn:x:unknown") }, proof, 400, "invalid_request"},
		{"subject_token_type refresh", func(f url.Values) { f.Set("subject_token_type", authz.TokenTypeRefresh) }, proof, 400, "invalid_request"},
		{"subject_token missing", func(f url.Values) { f.Del("subject_token") }, proof, 400, "invalid_request"},
		{"requested_token_type unknown", func(f url.Values) { f.Set("requested_token_type", "urn:x:unknown") }, proof, 400, "invalid_request"},
		{"actor_token without its type", func(f url.Values) { f.Set("actor_token", x.sendGrant) }, proof, 400, "invalid_request"},
		{"actor_token with its type", func(f url.Values) {
			f.Set("actor_token", x.sendGrant)
			f.Set("actor_token_type", federation.TokenTypeAccess)
		}, proof, 400, "invalid_request"},
		{"audience is this domain", func(f url.Values) { f.Set("audience", "a.test") }, proof, 400, "invalid_target"},
		{"audience not a domain", func(f url.Values) { f.Set("audience", "https://b.test/x") }, proof, 400, "invalid_target"},
		{"audience missing", func(f url.Values) { f.Del("audience") }, proof, 400, "invalid_target"},
		{"scope beyond internet_mail", func(f url.Values) { f.Set("scope", "mail") }, proof, 400, "invalid_scope"},
		{"client A with client B's token", func(f url.Values) { f.Set("subject_token", otherGrant) }, proof, 400, "invalid_request"},
		{"subject token expired", func(f url.Values) {
			f.Set("subject_token", sg(func(c *federation.Claims) {
				c.IssuedAt = keys.NewNumericDate(now.Add(-2 * time.Hour))
				c.Expiry = keys.NewNumericDate(now.Add(-time.Hour))
			}))
		}, proof, 400, "invalid_request"},
		{"subject token revoked", func(f url.Values) {
			f.Set("subject_token", sg(func(c *federation.Claims) { c.Family = "fam-revoked" }))
		}, proof, 400, "invalid_request"},
		{"subject token foreign", func(f url.Values) { f.Set("subject_token", bGrant) }, proof, 400, "invalid_request"},
		{"subject token without internet_mail", func(f url.Values) { f.Set("subject_token", webmailTok) }, proof, 400, "invalid_request"},
		{"subject token not yet valid", func(f url.Values) {
			f.Set("subject_token", sg(func(c *federation.Claims) { c.NotBefore = keys.NewNumericDate(now.Add(time.Hour)) }))
		}, proof, 400, "invalid_request"},
		{"subject token typ JWT", func(f url.Values) {
			f.Set("subject_token", a.sign(t, "JWT", claimsOf(t, x.sendGrant)))
		}, proof, 400, "invalid_request"},
		{"ehl lacks Body-Digest", func(f url.Values) {
			f.Set("ehl", jsonString(t, []string{placeholder.HMessageID, placeholder.HFrom, placeholder.HRecipientsDigest}))
		}, proof, 400, "invalid_request"},
		{"ehl names a header twice", func(f url.Values) { f.Set("ehl", jsonString(t, append(x.ehl, placeholder.HFrom))) }, proof, 400, "invalid_request"},
		{"ehl not JSON", func(f url.Values) { f.Set("ehl", "Message-ID From") }, proof, 400, "invalid_request"},
		{"envelope headers not JSON", func(f url.Values) { f.Set("envelope_headers", "From: alice@a.test") }, proof, 400, "invalid_request"},
		{"envelope headers with a duplicate", func(f url.Values) {
			f.Set("envelope_headers", `{"From":"alice@a.test","from":"mallory@a.test"}`)
		}, proof, 400, "invalid_request"},
		{"a public client", func(f url.Values) {
			f.Del("client_assertion")
			f.Del("client_assertion_type")
			f.Set("client_id", webmail)
		}, proof, 400, "unauthorized_client"},
		{"client assertion for another server", func(f url.Values) {
			f.Set("client_assertion", x.mtaA.clientAssertion(t, x.b.d.URL, now, nil))
		}, proof, 401, "invalid_client"},
		{"client assertion expired", func(f url.Values) {
			f.Set("client_assertion", x.mtaA.clientAssertion(t, a.d.URL, now, func(c map[string]any) { c["exp"] = now.Add(-time.Minute).Unix() }))
		}, proof, 401, "invalid_client"},
		{"client assertion exp a year away", func(f url.Values) {
			f.Set("client_assertion", x.mtaA.clientAssertion(t, a.d.URL, now, func(c map[string]any) { c["exp"] = now.Add(365 * 24 * time.Hour).Unix() }))
		}, proof, 401, "invalid_client"},
		{"client assertion nbf in the future", func(f url.Values) {
			f.Set("client_assertion", x.mtaA.clientAssertion(t, a.d.URL, now, func(c map[string]any) { c["nbf"] = now.Add(5 * time.Minute).Unix() }))
		}, proof, 401, "invalid_client"},
		{"client assertion without jti", func(f url.Values) {
			f.Set("client_assertion", x.mtaA.clientAssertion(t, a.d.URL, now, func(c map[string]any) { delete(c, "jti") }))
		}, proof, 401, "invalid_client"},
		{"client assertion sub not the client", func(f url.Values) {
			f.Set("client_assertion", x.mtaA.clientAssertion(t, a.d.URL, now, func(c map[string]any) { c["sub"] = "alice@a.test" }))
		}, proof, 401, "invalid_client"},
		{"client assertion by another key", func(f url.Values) {
			f.Set("client_assertion", mta2.clientAssertion(t, a.d.URL, now, func(c map[string]any) { c["iss"], c["sub"] = x.mtaA.id, x.mtaA.id }))
		}, proof, 401, "invalid_client"},
		{"client assertion alg none", func(f url.Values) {
			f.Set("client_assertion", rawJWS(map[string]any{"alg": "none", "typ": "JWT", "kid": x.mtaA.kid},
				map[string]any{"iss": x.mtaA.id, "sub": x.mtaA.id, "aud": a.d.URL + authz.PathToken, "jti": "j", "exp": now.Add(time.Minute).Unix()},
				func([]byte) []byte { return nil }))
		}, proof, 401, "invalid_client"},
		{"client_id not the assertion's iss", func(f url.Values) { f.Set("client_id", "mta2@a.test") }, proof, 401, "invalid_client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := x.assertionForm(t)
			tc.edit(f)
			a.unchanged(t, func() { wantOAuthError(t, a.post(t, authz.PathToken, f, tc.hdr()), tc.status, tc.want) })
		})
	}
	t.Run("replayed client assertion", func(t *testing.T) {
		f := x.assertionForm(t)
		if r := a.post(t, authz.PathToken, f, proof()); r.Status != 200 {
			t.Fatalf("first use: %+v", r)
		}
		a.unchanged(t, func() { wantOAuthError(t, a.post(t, authz.PathToken, f, proof()), 401, "invalid_client") })
	})
	t.Run("send grant expired after the retry horizon", func(t *testing.T) {
		a.clock.Advance(6 * 24 * time.Hour)
		a.unchanged(t, func() {
			wantOAuthError(t, a.post(t, authz.PathToken, x.assertionForm(t), proof()), 400, "invalid_request")
		})
	})
}

// TestExchangeFetch is leg (b): the recipient domain's MTA, authenticated
// by the keys its domain publishes, trades the assertion at the origin's AS
// for a DPoP-bound token that fetches that one message.
func TestExchangeFetch(t *testing.T) {
	x := newXEnv(t)
	a := x.a
	assertion := x.assertion(t)
	proofB := func() http.Header { return x.mtaB.proof(t, a.d.URL, a.clock.Now()) }

	r := x.asA.post(t, x.fetchForm(t, assertion), proofB())
	if r.Status != 200 || r.TokenType != "DPoP" || r.IssuedTokenType != federation.TokenTypeAccess || r.RefreshToken != "" {
		t.Fatalf("leg (b): %+v", r)
	}
	if _, _, err := a.d.Server.Keys.Verify(r.AccessToken, keys.Expect{Typ: federation.TypAccessToken}); err != nil {
		t.Fatalf("fetch token: %v", err)
	}
	c := claimsOf(t, r.AccessToken)
	if c.Issuer != a.d.URL || len(c.Audience) != 1 || c.Audience[0] != a.d.URL || c.Scope != federation.ScopeFetch ||
		c.MessageID != x.msgid || c.RecipientDomain != "b.test" || c.ClientID != "mta@b.test" ||
		c.Cnf == nil || c.Cnf.JKT != x.mtaB.dpop.Thumbprint() {
		t.Errorf("fetch token claims: %+v", c)
	}
	// The verdict on the chain, bound in the token (§10.6): the fetch
	// endpoint verifies no chain again.
	if g := c.Fetch; g == nil || g.Author != "alice@a.test" || g.UserID != a.uid || g.Hops != 1 ||
		g.BodyDigest != x.hdr.Get(placeholder.HBodyDigest).String() {
		t.Errorf("fetch grant: %+v", c.Fetch)
	}
	// It is no mailbox token.
	a.wantRefused(t, bearer(r.AccessToken), "invalid_token")

	// Refusals.
	otherAud := func() string { // an assertion for c.test, traded by b's MTA
		f := x.assertionForm(t)
		f.Set("audience", "c.test")
		r := a.post(t, authz.PathToken, f, x.mtaA.proof(t, a.d.URL, a.clock.Now()))
		if r.Status != 200 {
			t.Fatalf("assertion for c.test: %+v", r)
		}
		return r.AccessToken
	}()
	bAssertion := x.b.sign(t, federation.TypAssertion, claimsOf(t, assertion)) // signed by b's key, iss a
	dpopProof := dpopOf(x.mtaB.proof(t, a.d.URL, a.clock.Now()))
	stranger := newMTA(t, "mta@c.test")
	for _, tc := range []struct {
		name   string
		edit   func(url.Values)
		hdr    func() http.Header
		status int
		want   string
	}{
		{"no DPoP proof", func(url.Values) {}, func() http.Header { return nil }, 400, "invalid_dpop_proof"},
		{"assertion for another audience", func(f url.Values) {
			f.Set("subject_token", otherAud)
			f.Set("chain", x.chain(t, otherAud, x.hdr)) // its own chain: refused for its audience
		}, proofB, 400, "invalid_request"},
		{"assertion signed by another AS", func(f url.Values) { f.Set("subject_token", bAssertion) }, proofB, 400, "invalid_request"},
		{"a DPoP proof as the assertion", func(f url.Values) { f.Set("subject_token", dpopProof) }, proofB, 400, "invalid_request"},
		{"an access token as the assertion", func(f url.Values) { f.Set("subject_token", x.sendGrant) }, proofB, 400, "invalid_request"},
		{"tampered assertion", func(f url.Values) { f.Set("subject_token", assertion[:len(assertion)-4]+"AAAA") }, proofB, 400, "invalid_request"},
		{"no chain", func(f url.Values) { f.Del("chain") }, proofB, 400, "invalid_request"},
		{"a chain that is no JSON array", func(f url.Values) { f.Set("chain", `{"headers":{}}`) }, proofB, 400, "invalid_request"},
		{"a chain of another assertion", func(f url.Values) { f.Set("chain", x.chain(t, otherAud, x.hdr)) }, proofB, 400, "invalid_request"},
		{"a chain whose signed headers were altered", func(f url.Values) {
			h := x.hdr.Clone()
			h.SetString(placeholder.HBodyDigest, placeholder.BodyDigest(placeholder.New("x@a.test", nil, nil, nil, "")))
			f.Set("chain", x.chain(t, assertion, h))
		}, proofB, 400, "invalid_request"},
		{"resource another server", func(f url.Values) { f.Set("resource", "https://evil.test") }, proofB, 400, "invalid_target"},
		{"subject_token_type missing", func(f url.Values) { f.Del("subject_token_type") }, proofB, 400, "invalid_request"},
		{"unknown remote client", func(f url.Values) {
			for k, v := range stranger.auth(t, a.d.URL, a.clock.Now()) {
				f[k] = v
			}
		}, proofB, 401, "invalid_client"},
		{"the local MTA", func(f url.Values) {
			for k, v := range x.mtaA.auth(t, a.d.URL, a.clock.Now()) {
				f[k] = v
			}
		}, proofB, 400, "unauthorized_client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := x.fetchForm(t, assertion)
			tc.edit(f)
			a.unchanged(t, func() { wantOAuthError(t, x.asA.post(t, f, tc.hdr()), tc.status, tc.want) })
		})
	}
	// The sent copy deleted: nothing to grant, and no token.
	t.Run("no sent copy", func(t *testing.T) {
		ctx := context.Background()
		m, err := a.d.Server.Meta.Message(ctx, a.uid, x.sentID)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.d.Server.Meta.Update(ctx, func(tx meta.Tx) error { return tx.DeleteMessage(ctx, a.uid, x.sentID) }); err != nil {
			t.Fatal(err)
		}
		defer a.d.Server.Meta.Update(ctx, func(tx meta.Tx) error { return tx.InsertMessage(ctx, m) })
		r := x.asA.post(t, x.fetchForm(t, assertion), proofB())
		wantOAuthError(t, r, 400, "invalid_request")
		if !strings.Contains(r.Description, federation.CodeNoSentCopy) && !strings.Contains(r.Description, "no sent message") {
			t.Errorf("the refusal says %q", r.Description)
		}
	})
	// Without a Remote (testenv's AS), no cross-domain client is known.
	a.unchanged(t, func() {
		wantOAuthError(t, a.post(t, authz.PathToken, x.fetchForm(t, assertion), proofB()), 401, "invalid_client")
	})
	t.Run("assertion past the retry horizon", func(t *testing.T) {
		a.clock.Advance(6 * 24 * time.Hour)
		a.unchanged(t, func() { wantOAuthError(t, x.asA.post(t, x.fetchForm(t, assertion), proofB()), 400, "invalid_request") })
	})
}

// TestExchangeForward is leg (c): at the recipient's AS, its MTA trades the
// assertion a message arrived with for a chained assertion towards the
// forward's domain, as the forwarding user's policy allows.
func TestExchangeForward(t *testing.T) {
	x := newXEnv(t)
	b := x.b
	prev := x.assertion(t)
	fh := forwardHop(t, x.msgid, "Bob <bob@b.test>", "Carol <carol@c.test>", prev)
	proofB := func() http.Header { return x.mtaB.proof(t, b.d.URL, b.clock.Now()) }

	r := x.asB.post(t, x.forwardForm(t, prev, fh), proofB())
	if r.Status != 200 || r.IssuedTokenType != federation.TokenTypeJWT || r.TokenType != "N_A" {
		t.Fatalf("leg (c): %+v", r)
	}
	if _, _, err := b.d.Server.Keys.Verify(r.AccessToken, keys.Expect{Typ: federation.TypAssertion}); err != nil {
		t.Fatalf("chained assertion: %v", err)
	}
	c := claimsOf(t, r.AccessToken)
	eht, err := placeholder.EHT(fh, placeholder.ForwardHop.RequiredEHL())
	if err != nil {
		t.Fatal(err)
	}
	if c.Issuer != b.d.URL || c.Subject != "bob@b.test" || len(c.Audience) != 1 || c.Audience[0] != "c.test" ||
		c.AZP != "mta@b.test" || c.Hop != 2 || !slices.Equal(c.Path, []string{"a.test", "b.test"}) ||
		c.Prev != placeholder.JWTAssertionDigest(prev) || c.MessageID != x.msgid || c.EH == nil || c.EH.EHT != eht ||
		c.Cnf == nil || c.Cnf.JKT != x.mtaB.dpop.Thumbprint() {
		t.Errorf("chained assertion claims: %+v", c)
	}

	// Refusals.
	now := b.clock.Now()
	prevClaims := claimsOf(t, prev)
	own := func(edit func(*federation.Claims)) string { // an assertion b's own AS issued to b.test
		c := prevClaims
		c.Issuer = b.d.URL
		edit(&c)
		return b.sign(t, federation.TypAssertion, c)
	}
	fromA := func(edit func(*federation.Claims)) string { // an assertion signed by a's key
		c := prevClaims
		edit(&c)
		return x.a.sign(t, federation.TypAssertion, c)
	}
	deep := own(func(c *federation.Claims) { c.Hop = 8; c.Path = []string{"x1.test", "x2.test"} })
	loop := own(func(c *federation.Claims) { c.Hop = 2; c.Path = []string{"c.test", "a.test"} })
	yearAway := fromA(func(c *federation.Claims) { c.Expiry = keys.NewNumericDate(now.Add(365 * 24 * time.Hour)) })
	notYet := fromA(func(c *federation.Claims) { c.NotBefore = keys.NewNumericDate(now.Add(time.Hour)) })
	noExp := fromA(func(c *federation.Claims) { c.Expiry = 0 })
	strangerAud := fromA(func(c *federation.Claims) { c.Audience = keys.Audience{"b.test", "evil.test"} })
	otherAud := fromA(func(c *federation.Claims) { c.Audience = keys.Audience{"c.test"} })
	bSignedAsA := b.sign(t, federation.TypAssertion, prevClaims) // iss a, kid only in b's JWKS
	foreignSub := fromA(func(c *federation.Claims) { c.Subject = "eve@evil.test" })
	asBEvil := newRemoteAS(t, b, &remote{issuers: map[string]remoteEntry{"a.test": {"https://evil.test", publicJWKS(t, x.a.d)}}})
	dave := "dave@b.test"
	b.d.AddUser(t, dave)
	setUserSetting(t, b.d, dave, federation.SettingForwarding, "deny")

	for _, tc := range []struct {
		name   string
		prev   string
		hdr    func(prev string) placeholder.Header
		edit   func(url.Values)
		as     *remoteAS
		status int
		want   string
		desc   string // in error_description, when the code alone does not tell why
	}{
		{name: "policy forbids forwarding", hdr: func(p string) placeholder.Header {
			return forwardHop(t, x.msgid, "Dave <dave@b.test>", "Carol <carol@c.test>", p)
		}, status: 400, want: "invalid_request"},
		{name: "chain too deep", prev: deep, status: 400, want: "invalid_request"},
		{name: "forward loop", prev: loop, edit: func(f url.Values) { f.Set("audience", "a.test") }, status: 400, want: "invalid_request"},
		{name: "back to the origin", edit: func(f url.Values) { f.Set("audience", "a.test") }, status: 400, want: "invalid_request"},
		{name: "audience is this domain", edit: func(f url.Values) { f.Set("audience", "b.test") }, status: 400, want: "invalid_target"},
		{name: "assertion for another audience", prev: otherAud, status: 400, want: "invalid_request"},
		{name: "aud array with a stranger", prev: strangerAud, status: 400, want: "invalid_request"},
		{name: "exp a year away", prev: yearAway, status: 400, want: "invalid_request"},
		{name: "nbf in the future", prev: notYet, status: 400, want: "invalid_request"},
		{name: "no exp", prev: noExp, status: 400, want: "invalid_request"},
		{name: "kid only in another domain's JWKS", prev: bSignedAsA, status: 400, want: "invalid_request", desc: "not found"},
		{name: "subject of an unknown domain", prev: foreignSub, status: 400, want: "invalid_request"},
		{name: "iss not the discovered issuer", as: asBEvil, status: 400, want: "invalid_request"},
		{name: "JWT-Assertion-Digest of another assertion", hdr: func(string) placeholder.Header {
			return forwardHop(t, x.msgid, "Bob <bob@b.test>", "Carol <carol@c.test>", prev+"x")
		}, status: 400, want: "invalid_request"},
		{name: "Message-ID not the assertion's", hdr: func(p string) placeholder.Header {
			return forwardHop(t, "<other@a.test>", "Bob <bob@b.test>", "Carol <carol@c.test>", p)
		}, status: 400, want: "invalid_request"},
		{name: "Forwarded-From not a user here", hdr: func(p string) placeholder.Header {
			return forwardHop(t, x.msgid, "Nobody <nobody@b.test>", "Carol <carol@c.test>", p)
		}, status: 400, want: "invalid_request"},
		{name: "Forwarded-From of another domain", hdr: func(p string) placeholder.Header {
			return forwardHop(t, x.msgid, "Alice <alice@a.test>", "Carol <carol@c.test>", p)
		}, status: 400, want: "invalid_request"},
		{name: "ehl of a first hop", edit: func(f url.Values) { f.Set("ehl", jsonString(t, placeholder.FirstHop.RequiredEHL())) }, status: 400, want: "invalid_request"},
		{name: "subject_token_type missing", edit: func(f url.Values) { f.Del("subject_token_type") }, status: 400, want: "invalid_request"},
		{name: "actor_token without its type", edit: func(f url.Values) { f.Set("actor_token", prev) }, status: 400, want: "invalid_request"},
		{name: "a public client", edit: func(f url.Values) {
			f.Del("client_assertion")
			f.Del("client_assertion_type")
			f.Set("client_id", webmail)
		}, status: 400, want: "unauthorized_client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := prev
			if tc.prev != "" {
				p = tc.prev
			}
			h := forwardHop(t, x.msgid, "Bob <bob@b.test>", "Carol <carol@c.test>", p)
			if tc.hdr != nil {
				h = tc.hdr(p)
			}
			f := x.forwardForm(t, p, h)
			if tc.edit != nil {
				tc.edit(f)
			}
			as := x.asB
			if tc.as != nil {
				as = tc.as
			}
			b.unchanged(t, func() {
				r := as.post(t, f, proofB())
				wantOAuthError(t, r, tc.status, tc.want)
				if !strings.Contains(r.Description, tc.desc) {
					t.Errorf("error_description %q, want it to say %q", r.Description, tc.desc)
				}
			})
		})
	}

	// The longest chain allowed still works: hop 7 → 8.
	ok := own(func(c *federation.Claims) { c.Hop = 7; c.Path = []string{"x1.test"} })
	if r := x.asB.post(t, x.forwardForm(t, ok, forwardHop(t, x.msgid, "Bob <bob@b.test>", "Carol <carol@c.test>", ok)), proofB()); r.Status != 200 {
		t.Errorf("hop 8: %+v", r)
	}
}
