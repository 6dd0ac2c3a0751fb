package inbound_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/pullmail/pullmail/authz"
	"github.com/pullmail/pullmail/dpop"
	"github.com/pullmail/pullmail/federation"
	"github.com/pullmail/pullmail/inbound"
	"github.com/pullmail/pullmail/keys"
	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/meta/sqlite"
	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/resource/fsstore"
	"github.com/pullmail/pullmail/testenv"
)

// inproc is a.test (alice; its real authorization server) and b.test (bob
// and carol; its Receiver), both behind one federation.InProcess: the
// assertions come from a.test's token endpoint and the pushes reach b.test's
// Receiver through the transport the MTA uses, and no socket is opened.
type inproc struct {
	tr           *federation.InProcess
	aMeta, bMeta meta.Store
	aKeys, bKeys *keys.Set
	authzA       *authz.Server
	client       *federation.ClientKey // a.test's MTA client key
	mtaKey       *dpop.Key             // a.test's MTA DPoP key
	disc         *fakeDisc
}

const (
	aIssuer  = "https://a.test"
	pushURL  = "https://b.test" + federation.PathMessages
	tokenURL = aIssuer + authz.PathToken
)

func openDomain(t *testing.T, name string, users ...string) (meta.Store, resource.Store, *keys.Set) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rs, err := fsstore.New(filepath.Join(dir, "resources"), fsstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ks, err := keys.Open(filepath.Join(dir, "signing.json"), keys.Options{MaxTokenLifetime: 6 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	err = st.Update(ctx, func(tx meta.Tx) error {
		for _, u := range users {
			if _, err := tx.AddUser(ctx, meta.User{Address: u, PasswordHash: "h"}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return st, rs, ks
}

func newInProc(t *testing.T) *inproc {
	t.Helper()
	ctx := context.Background()
	log := testenv.Logger(t)
	p := &inproc{tr: &federation.InProcess{}}
	p.aMeta, _, p.aKeys = openDomain(t, "a.test", "alice@a.test")
	var bStore resource.Store
	p.bMeta, bStore, p.bKeys = openDomain(t, "b.test", "bob@b.test", "carol@b.test")
	var err error
	if p.client, err = federation.NewClientKey(); err != nil {
		t.Fatal(err)
	}
	if p.mtaKey, err = dpop.NewKey(); err != nil {
		t.Fatal(err)
	}
	if err := p.aMeta.Update(ctx, func(tx meta.Tx) error {
		return tx.AddClient(ctx, meta.Client{ID: "mta@a.test", Name: "MTA", JWKS: p.client.JWKS()})
	}); err != nil {
		t.Fatal(err)
	}
	if p.authzA, err = authz.New(authz.Config{Issuer: aIssuer, Domain: "a.test", Meta: p.aMeta, Keys: p.aKeys, Log: log}); err != nil {
		t.Fatal(err)
	}
	p.tr.Handle("a.test", p.authzA.Handler())
	p.disc = &fakeDisc{name: "a.test", issuer: aIssuer, keys: p.aKeys, clientID: "mta@a.test"}
	bMailbox := mailbox.New(mailbox.Config{Domain: "b.test", Meta: p.bMeta, Resources: bStore})
	rc, err := inbound.NewReceiver(inbound.Config{Domain: "b.test", MailboxURL: "https://b.test", Meta: p.bMeta,
		Mailbox: bMailbox, Resources: bStore, Discovery: p.disc, DPoP: &dpop.Verifier{Replay: p.bMeta}, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	p.tr.Handle("b.test", rc.Handler())
	return p
}

// assertion obtains an assertion for m at a.test's authorization server
// through the transport, as a.test's MTA does (docs/PROTOCOL.md §10.5).
func (p *inproc) assertion(t *testing.T, m *placeholder.Message, audience string) string {
	t.Helper()
	now := time.Now()
	grant, err := p.authzA.IssueSendGrant("alice@a.test", "mta@a.test", m.Header.Get(placeholder.HMessageID).String())
	if err != nil {
		t.Fatal(err)
	}
	ca, err := p.client.Assertion("mta@a.test", tokenURL, now)
	if err != nil {
		t.Fatal(err)
	}
	proof, err := p.mtaKey.Proof("POST", tokenURL, "", "", now)
	if err != nil {
		t.Fatal(err)
	}
	hb, _ := json.Marshal(envelopeHeaders(m))
	eb, _ := json.Marshal(ehl)
	form := url.Values{"grant_type": {federation.GrantTokenExch}, "client_id": {"mta@a.test"},
		"client_assertion_type": {federation.ClientAssertionJB}, "client_assertion": {ca},
		"subject_token": {grant}, "subject_token_type": {federation.TokenTypeAccess},
		"requested_token_type": {federation.TokenTypeJWT}, "audience": {audience}, "scope": {federation.ScopeInternetMail},
		"envelope_headers": {string(hb)}, "ehl": {string(eb)}}
	a, err := p.tr.Exchange(context.Background(), federation.TokenRequest{Endpoint: tokenURL, DPoP: proof, Form: form})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Body.Close()
	data, _ := io.ReadAll(a.Body)
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if a.Status != 200 || json.Unmarshal(data, &out) != nil || out.AccessToken == "" {
		t.Fatalf("token exchange: %d %s", a.Status, data)
	}
	return out.AccessToken
}

// mint signs an assertion for m with a.test's own keys, as its
// authorization server would, after edit: what a faulty or hostile AS
// could issue.
func (p *inproc) mint(t *testing.T, m *placeholder.Message, set *keys.Set, edit func(*federation.Claims)) string {
	t.Helper()
	eht, err := placeholder.EHT(envelopeHeaders(m), ehl)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	c := federation.Claims{Claims: keys.Claims{Issuer: aIssuer, Subject: "alice@a.test", Audience: keys.Audience{"b.test"},
		AZP: "mta@a.test", Scope: federation.ScopeInternetMail, Cnf: &keys.Confirmation{JKT: p.mtaKey.Thumbprint()},
		ID: fmt.Sprint(now.UnixNano()), IssuedAt: keys.NewNumericDate(now), Expiry: keys.NewNumericDate(now.Add(5 * time.Minute))},
		MessageID: m.Header.Get(placeholder.HMessageID).String(), EH: &federation.EnvelopeBinding{EHT: eht, EHL: ehl},
		Hop: 1, Path: []string{"a.test"}}
	if edit != nil {
		edit(&c)
	}
	tok, err := set.Sign(federation.TypAssertion, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// push sends body with tok and a proof by key ("" and nil: no token, no
// proof) through the transport.
func (p *inproc) push(t *testing.T, tok string, key *dpop.Key, body []byte) answer {
	t.Helper()
	var proof string
	if key != nil {
		var err error
		if proof, err = key.Proof("POST", pushURL, tok, "", time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	a, err := p.tr.Push(context.Background(), federation.PushRequest{Endpoint: pushURL, Assertion: tok, DPoP: proof, Body: body})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Body.Close()
	return readAnswer(a.Status, a.Body)
}

// rows counts what a push writes at b.test: its users' copies, their
// envelopes, and jobs.
func (p *inproc) rows(t *testing.T) int {
	t.Helper()
	ctx := context.Background()
	n := 0
	for _, addr := range []string{"bob@b.test", "carol@b.test"} {
		u, err := p.bMeta.UserByAddress(ctx, addr)
		if err != nil {
			t.Fatal(err)
		}
		ms, err := p.bMeta.Messages(ctx, u.ID, meta.ListOptions{Folder: meta.Inbox})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if _, err := p.bMeta.Envelope(ctx, u.ID, m.ID); err == nil {
				n++
			}
		}
		n += len(ms)
	}
	js, err := p.bMeta.Jobs(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	return n + len(js)
}

// TestPushInProcess: a push through the in-process transport is accepted
// once, and its retry is a duplicate.
func TestPushInProcess(t *testing.T) {
	p := newInProc(t)
	m := message(t, []byte("the attachment"), []string{"Bob <bob@b.test>"}, []string{"carol@b.test"})
	tok := p.assertion(t, m, "b.test")
	b := body(t, m, envelopeHeaders(m), tok)
	if got := p.push(t, tok, p.mtaKey, b); got.status != 202 || got.state != federation.PushAccepted {
		t.Fatalf("push: %+v", got)
	}
	// Two copies, two envelopes, one pull job.
	if n := p.rows(t); n != 5 {
		t.Fatalf("%d rows after the push, want 5", n)
	}
	js, err := p.bMeta.Jobs(context.Background(), federation.JobPull, 0)
	if err != nil || len(js) != 1 {
		t.Fatalf("pull jobs: %v %d", err, len(js))
	}
	var pp federation.PullPayload
	if err := json.Unmarshal(js[0].Payload, &pp); err != nil || pp.Origin != "a.test" || len(pp.Messages) != 2 || len(pp.Chain) != 1 {
		t.Fatalf("pull payload: %v %+v", err, pp)
	}
	tok2 := p.assertion(t, m, "b.test")
	if got := p.push(t, tok2, p.mtaKey, body(t, m, envelopeHeaders(m), tok2)); got.status != 200 || got.state != federation.PushDuplicate {
		t.Fatalf("retry: %+v", got)
	}
	if n := p.rows(t); n != 5 {
		t.Fatalf("%d rows after the retry, want 5", n)
	}
}

// TestPushRefusedInProcess refuses a push for each reason of
// docs/PROTOCOL.md §11.2 (the list of inbound's package doc), through the
// in-process transport, and checks that a refusal writes nothing.
func TestPushRefusedInProcess(t *testing.T) {
	p := newInProc(t)
	data := []byte("bytes")
	fresh := func() *placeholder.Message { return message(t, data, []string{"bob@b.test"}, nil) }
	other, err := dpop.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	// push sends m with an assertion from a.test's AS, after tamper.
	asSent := func(t *testing.T, m *placeholder.Message, tamper func(*placeholder.Message)) answer {
		tok := p.assertion(t, m, "b.test")
		if tamper != nil {
			tamper(m)
		}
		return p.push(t, tok, p.mtaKey, body(t, m, envelopeHeaders(m), tok))
	}
	tests := []struct {
		name   string
		status int
		code   string
		run    func(t *testing.T) answer
	}{
		{"no token", 401, "invalid_token", func(t *testing.T) answer {
			m := fresh()
			return p.push(t, "", nil, body(t, m, envelopeHeaders(m), "x"))
		}},
		{"not a JWT", 401, "invalid_token", func(t *testing.T) answer {
			m := fresh()
			return p.push(t, "opaque-token", p.mtaKey, body(t, m, envelopeHeaders(m), "opaque-token"))
		}},
		{"no DPoP proof", 401, "invalid_dpop_proof", func(t *testing.T) answer {
			m := fresh()
			tok := p.assertion(t, m, "b.test")
			return p.push(t, tok, nil, body(t, m, envelopeHeaders(m), tok))
		}},
		{"proof by another key", 401, "dpop_key_mismatch", func(t *testing.T) answer {
			m := fresh()
			tok := p.assertion(t, m, "b.test")
			return p.push(t, tok, other, body(t, m, envelopeHeaders(m), tok))
		}},
		{"From of another domain", 403, "from_domain_mismatch", func(t *testing.T) answer {
			return asSent(t, fresh(), func(m *placeholder.Message) {
				m.Header.SetString(placeholder.HFrom, "Alice <alice@c.test>")
				seal(t, m)
			})
		}},
		{"another issuer", 403, "issuer_mismatch", func(t *testing.T) answer {
			m := fresh()
			tok := p.mint(t, m, p.aKeys, func(c *federation.Claims) { c.Issuer = "https://elsewhere.test" })
			return p.push(t, tok, p.mtaKey, body(t, m, envelopeHeaders(m), tok))
		}},
		{"signed by another AS's key", 401, "bad_signature", func(t *testing.T) answer {
			m := fresh()
			tok := p.mint(t, m, p.bKeys, nil)
			return p.push(t, tok, p.mtaKey, body(t, m, envelopeHeaders(m), tok))
		}},
		{"azp is not the domain's MTA", 403, "wrong_client", func(t *testing.T) answer {
			p.disc.clientID = "mta@elsewhere.test"
			defer func() { p.disc.clientID = "mta@a.test" }()
			return asSent(t, fresh(), nil)
		}},
		{"for another domain", 403, "wrong_audience", func(t *testing.T) answer {
			m := fresh()
			tok := p.assertion(t, m, "c.test")
			return p.push(t, tok, p.mtaKey, body(t, m, envelopeHeaders(m), tok))
		}},
		{"expired", 401, "expired_assertion", func(t *testing.T) answer {
			m := fresh()
			tok := p.mint(t, m, p.aKeys, func(c *federation.Claims) {
				c.IssuedAt = keys.NewNumericDate(time.Now().Add(-8 * time.Minute))
				c.Expiry = keys.NewNumericDate(time.Now().Add(-3 * time.Minute))
			})
			return p.push(t, tok, p.mtaKey, body(t, m, envelopeHeaders(m), tok))
		}},
		{"replayed", 401, "replayed_assertion", func(t *testing.T) answer {
			m := message(t, data, []string{"bob@b.test", "zed@b.test"}, nil)
			tok := p.assertion(t, m, "b.test")
			// The assertion's jti is spent by a push refused after step 3
			// (so that it stores nothing either); its retry is a replay.
			if got := p.push(t, tok, p.mtaKey, body(t, m, envelopeHeaders(m), tok)); got.code != "unknown_recipient" {
				t.Fatalf("first use: %+v", got)
			}
			return p.push(t, tok, p.mtaKey, body(t, m, envelopeHeaders(m), tok))
		}},
		{"body not {placeholder, chain}", 400, "malformed_json", func(t *testing.T) answer {
			tok := p.assertion(t, fresh(), "b.test")
			return p.push(t, tok, p.mtaKey, []byte(`[{"placeholder": {}}]`))
		}},
		{"chain's assertion is another", 400, "bad_chain", func(t *testing.T) answer {
			m := fresh()
			tok := p.assertion(t, m, "b.test")
			return p.push(t, tok, p.mtaKey, body(t, m, envelopeHeaders(m), p.assertion(t, m, "b.test")))
		}},
		{"placeholder does not parse", 400, placeholder.CodeDuplicateKey, func(t *testing.T) answer {
			m := fresh()
			tok := p.assertion(t, m, "b.test")
			doc := m.Canonical()
			hb, _ := json.Marshal(envelopeHeaders(m))
			raw := fmt.Sprintf(`{"placeholder":{"headers":{},%s,"chain":[{"headers":%s,"jwt-assertion":%q}]}`, doc[1:], hb, tok)
			return p.push(t, tok, p.mtaKey, []byte(raw))
		}},
		{"ehl without Body-Digest", 400, placeholder.CodeBadEHL, func(t *testing.T) answer {
			m := fresh()
			short := ehl[:3]
			var h placeholder.Header
			for _, n := range short {
				h.Set(n, m.Header.Get(n))
			}
			eht, _ := placeholder.EHT(h, short)
			tok := p.mint(t, m, p.aKeys, func(c *federation.Claims) { c.EH = &federation.EnvelopeBinding{EHT: eht, EHL: short} })
			return p.push(t, tok, p.mtaKey, body(t, m, h, tok))
		}},
		{"Message-ID changed", 400, "eht_mismatch", func(t *testing.T) answer {
			return asSent(t, fresh(), func(m *placeholder.Message) {
				m.Header.SetString(placeholder.HMessageID, placeholder.NewMessageID("a.test"))
			})
		}},
		{"body changed", 400, placeholder.CodeDigestMismatch, func(t *testing.T) answer {
			return asSent(t, fresh(), func(m *placeholder.Message) {
				leaf, _ := placeholder.NewLeaf(resource.IDOf([]byte("evil")), 4, "text/plain", "attachment", "f.bin")
				m.Parts[0] = leaf
			})
		}},
		{"a draft (no Date)", 400, "not_sent", func(t *testing.T) answer {
			m := fresh()
			m.Header.Del(placeholder.HDate)
			seal(t, m)
			return asSent(t, m, nil)
		}},
		{"no recipient here", 400, "no_local_recipient", func(t *testing.T) answer {
			return asSent(t, message(t, data, []string{"dave@c.test"}, nil), nil)
		}},
		{"no such user", 400, "unknown_recipient", func(t *testing.T) answer {
			return asSent(t, message(t, data, []string{"bob@b.test", "zed@b.test"}, nil), nil)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := p.rows(t)
			got := tt.run(t)
			if got.status != tt.status || got.code != tt.code {
				t.Fatalf("got %d %q, want %d %q (%s)", got.status, got.code, tt.status, tt.code, got.raw)
			}
			if n := p.rows(t); n != before {
				t.Fatalf("the refusal wrote: %d rows, %d before", n, before)
			}
		})
	}
	if n := p.rows(t); n != 0 {
		t.Fatalf("%d rows after the refusals", n)
	}
}
