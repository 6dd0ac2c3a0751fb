package inbound_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pullmail/pullmail/authz"
	"github.com/pullmail/pullmail/discovery"
	"github.com/pullmail/pullmail/dpop"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/federation"
	"github.com/pullmail/pullmail/inbound"
	"github.com/pullmail/pullmail/keys"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/testenv"
)

// fed is the world of a test: a.test (the origin, with alice) and b.test (the
// recipient, with bob and carol), the Receiver of b.test and the Origin of
// a.test, each on its own TLS listener.
type fed struct {
	a, b     *testenv.Domain
	disc     *fakeDisc
	recvURL  string
	recv     *httptest.Server
	origin   *httptest.Server
	fetchURL string
	mtaKey   *dpop.Key // a.test's MTA DPoP key
	aHTTP    *http.Client
}

// fakeDisc implements inbound.Discovery with what discovery would find of a
// domain (a testenv one, or one in process): its issuer (the server's URL), the JWKS its authorization
// server publishes (its real signing keys) and the mta_client_id of its
// mailbox metadata. It stands in for discovery.Client because testenv
// domains publish no SRV records; everything it returns comes from the
// running domain itself.
type fakeDisc struct {
	name, issuer string
	keys         *keys.Set // the domain's signing keys: their public JWKS is what discovery finds
	clientID     string
}

func (f *fakeDisc) Authority(ctx context.Context, domain string) (discovery.Authority, error) {
	if domain != f.name {
		return discovery.Authority{}, errs.E(errs.NotFound, "no_srv_record", "no such domain %s", domain)
	}
	return discovery.Authority{Issuer: f.issuer, JWKS: f.keys.PublicJWKS()}, nil
}

func (f *fakeDisc) RefreshKeys(ctx context.Context, domain string) (discovery.Authority, error) {
	return f.Authority(ctx, domain)
}

func (f *fakeDisc) Mailbox(ctx context.Context, domain string) (discovery.Mailbox, error) {
	if domain != f.name {
		return discovery.Mailbox{}, errs.E(errs.NotFound, "no_srv_record", "no such domain %s", domain)
	}
	return discovery.Mailbox{MailboxMetadata: discovery.MailboxMetadata{Domain: domain, MTAClientID: f.clientID}}, nil
}

func newFed(t *testing.T, clock func() time.Time) *fed {
	t.Helper()
	f := &fed{}
	f.a = testenv.Start(t, "a.test", testenv.Options{})
	f.b = testenv.Start(t, "b.test", testenv.Options{})
	alice := f.a.AddUser(t, "alice@a.test")
	f.aHTTP = alice.HTTP
	f.b.AddUser(t, "bob@b.test")
	f.b.AddUser(t, "carol@b.test")
	f.disc = &fakeDisc{name: "a.test", issuer: f.a.URL, keys: f.a.Server.Keys, clientID: "mta@a.test"}
	var err error
	if f.mtaKey, err = dpop.NewKey(); err != nil {
		t.Fatal(err)
	}
	// b.test's receiver, on a real TLS listener.
	f.recv = httptest.NewUnstartedServer(nil)
	f.recv.StartTLS()
	t.Cleanup(f.recv.Close)
	rc, err := inbound.NewReceiver(inbound.Config{
		Domain: "b.test", MailboxURL: f.recv.URL, Meta: f.b.Server.Meta, Mailbox: f.b.Server.Mailbox, Resources: f.b.Server.Store,
		Discovery: f.disc, DPoP: &dpop.Verifier{Replay: f.b.Server.Meta, Clock: clock}, Clock: clock,
		Log: testenv.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	f.recv.Config.Handler = rc.Handler()
	f.recvURL = f.recv.URL + federation.PathMessages
	// a.test's origin.
	f.origin = httptest.NewUnstartedServer(nil)
	f.origin.StartTLS()
	t.Cleanup(f.origin.Close)
	f.fetchURL = f.origin.URL + federation.PathResources
	o, err := inbound.NewOrigin(inbound.OriginConfig{
		Issuer: f.a.URL, FetchURL: f.fetchURL, Meta: f.a.Server.Meta, Resources: f.a.Server.Store,
		Keys: f.a.Server.Keys, DPoP: &dpop.Verifier{Replay: f.a.Server.Meta}, Log: testenv.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	f.origin.Config.Handler = o.Handler()
	return f
}

// message builds alice's sent copy with one attachment.
func message(t *testing.T, data []byte, to, cc []string) *placeholder.Message {
	t.Helper()
	m := placeholder.New("Alice <alice@a.test>", to, cc, nil, "hello")
	leaf, err := placeholder.NewLeaf(resource.IDOf(data), int64(len(data)), "application/octet-stream", "attachment", "f.bin")
	if err != nil {
		t.Fatal(err)
	}
	m.Parts = append(m.Parts, leaf)
	m.Header.SetString(placeholder.HDate, placeholder.FormatDate(time.Now()))
	m.Header.SetString(placeholder.HMessageID, placeholder.NewMessageID("a.test"))
	m.Header.SetString(placeholder.HThreadID, placeholder.NewMessageID("a.test"))
	seal(t, m)
	return m
}

func seal(t *testing.T, m *placeholder.Message) {
	t.Helper()
	m.Header.SetString(placeholder.HBodyDigest, placeholder.BodyDigest(m))
	rd, err := placeholder.RecipientsDigest(m.Header)
	if err != nil {
		t.Fatal(err)
	}
	m.Header.SetString(placeholder.HRecipientsDigest, rd)
	if err := m.Validate(placeholder.Limits{}); err != nil {
		t.Fatal(err)
	}
}

var ehl = []string{"Message-ID", "From", "Recipients-Digest", "Body-Digest"}

// envelopeHeaders are m's headers named by ehl.
func envelopeHeaders(m *placeholder.Message) placeholder.Header {
	var h placeholder.Header
	for _, n := range ehl {
		h.Set(n, m.Header.Get(n))
	}
	return h
}

// assertion obtains an assertion for m at a.test's real authorization server,
// as a.test's MTA does (docs/PROTOCOL.md §10.5): a send grant, the MTA's
// client assertion and a DPoP proof by its key.
func (f *fed) assertion(t *testing.T, m *placeholder.Message, audience string) string {
	t.Helper()
	srv := f.a.Server
	msgid := m.Header.Get(placeholder.HMessageID).String()
	grant, err := srv.Authz.IssueSendGrant("alice@a.test", srv.MTAClientID(), msgid)
	if err != nil {
		t.Fatal(err)
	}
	tokenURL := f.a.URL + authz.PathToken
	ca, err := srv.MTAKey.Assertion(srv.MTAClientID(), tokenURL, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	proof, err := f.mtaKey.Proof("POST", tokenURL, "", "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	hb, _ := json.Marshal(envelopeHeaders(m))
	eb, _ := json.Marshal(ehl)
	form := url.Values{"grant_type": {federation.GrantTokenExch}, "client_id": {srv.MTAClientID()},
		"client_assertion_type": {federation.ClientAssertionJB}, "client_assertion": {ca},
		"subject_token": {grant}, "subject_token_type": {federation.TokenTypeAccess},
		"requested_token_type": {federation.TokenTypeJWT}, "audience": {audience}, "scope": {"internet_mail"},
		"envelope_headers": {string(hb)}, "ehl": {string(eb)}}
	req, _ := http.NewRequest("POST", tokenURL, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("DPoP", proof)
	resp, err := f.aHTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || json.Unmarshal(body, &out) != nil || out.AccessToken == "" {
		t.Fatalf("token exchange: %d %s", resp.StatusCode, body)
	}
	return out.AccessToken
}

// body is the push (or fetch) body for m with a one-element chain.
func body(t *testing.T, m *placeholder.Message, chainHeaders placeholder.Header, assertion string) []byte {
	t.Helper()
	hb, _ := json.Marshal(chainHeaders)
	doc := map[string]any{
		"placeholder": json.RawMessage(m.Canonical()),
		"chain":       []map[string]any{{"headers": json.RawMessage(hb), "jwt-assertion": assertion}},
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

type answer struct {
	status int
	code   string
	state  string
	raw    string
}

// do sends one DPoP-authorized POST; proof "" makes a fresh proof by key
// at time at, "-" sends none.
func do(t *testing.T, c *http.Client, target, token, proof string, key *dpop.Key, at time.Time, data []byte, hdr http.Header) (answer, *http.Response) {
	t.Helper()
	// A push carries a body; a fetch (data nil) is a GET.
	method := http.MethodPost
	if data == nil {
		method = http.MethodGet
	}
	req, _ := http.NewRequest(method, target, bytes.NewReader(data))
	if data != nil {
		req.Header.Set("Content-Type", "application/json")
	} else {
		req.Body = http.NoBody
	}
	req.Header.Set("Authorization", "DPoP "+token)
	for k, v := range hdr {
		req.Header[k] = v
	}
	switch proof {
	case "":
		p, err := key.Proof(method, target, token, "", at)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("DPoP", p)
	case "-":
	default:
		req.Header.Set("DPoP", proof)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return readAnswer(resp.StatusCode, resp.Body), resp
}

// readAnswer reads a push's or fetch's answer: its status, and its body's
// status or error code.
func readAnswer(status int, body io.Reader) answer {
	b, _ := io.ReadAll(body)
	a := answer{status: status, raw: string(b)}
	var out struct {
		Status string `json:"status"`
		Error  struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	json.Unmarshal(b, &out)
	a.code, a.state = out.Error.Code, out.Status
	return a
}

func (f *fed) push(t *testing.T, token string, data []byte) answer {
	t.Helper()
	a, _ := do(t, f.recv.Client(), f.recvURL, token, "", f.mtaKey, time.Now(), data, nil)
	return a
}

func inbox(t *testing.T, d *testenv.Domain, addr string) []meta.Message {
	t.Helper()
	ctx := context.Background()
	u, err := d.Server.Meta.UserByAddress(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := d.Server.Meta.Messages(ctx, u.ID, meta.ListOptions{Folder: meta.Inbox})
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

func TestPushAccepted(t *testing.T) {
	f := newFed(t, nil)
	data := []byte("the attachment")
	m := message(t, data, []string{"Bob <bob@b.test>", "dave@c.test"}, []string{"carol@B.TEST"})
	tok := f.assertion(t, m, "b.test")
	got := f.push(t, tok, body(t, m, envelopeHeaders(m), tok))
	if got.status != 202 || got.state != "accepted" {
		t.Fatalf("push: %+v", got)
	}
	var ids []string
	for _, addr := range []string{"bob@b.test", "carol@b.test"} {
		in := inbox(t, f.b, addr)
		if len(in) != 1 {
			t.Fatalf("%s inbox: %d messages", addr, len(in))
		}
		row := in[0]
		ids = append(ids, row.ID)
		if row.Status != meta.StatusFetching || row.MessageID != m.Header.Get(placeholder.HMessageID).String() ||
			len(row.Refs) != 1 || row.Refs[0].ID != resource.IDOf(data) || row.Refs[0].Size != int64(len(data)) {
			t.Fatalf("%s row: %+v", addr, row)
		}
		stored, err := placeholder.Parse(row.Placeholder, placeholder.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(stored.Header.Get(placeholder.HReceived).String(), "from a.test by b.test; ") ||
			stored.Header.Get(placeholder.HDestinationMailboxURL).String() != f.recv.URL ||
			placeholder.BodyDigest(stored) != m.Header.Get(placeholder.HBodyDigest).String() {
			t.Fatalf("stored headers: %s", row.Placeholder)
		}
	}
	key := "pull:" + m.Header.Get(placeholder.HMessageID).String() + ":" + m.Header.Get(placeholder.HRecipientsDigest).String()
	job, err := f.b.Server.Meta.JobByKey(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	var p federation.PullPayload
	if err := json.Unmarshal(job.Payload, &p); err != nil {
		t.Fatal(err)
	}
	if job.Kind != "pull" || p.Origin != "a.test" || len(p.Chain) != 1 || p.Chain[0].Assertion != tok ||
		!bytes.Equal(p.Placeholder, m.Canonical()) || len(p.Messages) != 2 || len(p.Missing) != 1 {
		t.Fatalf("job: %+v payload %+v", job, p)
	}
	for i, mr := range p.Messages {
		if mr.ID != ids[i] {
			t.Fatalf("payload messages %+v, rows %v", p.Messages, ids)
		}
	}

	// The same copy again, with a fresh assertion: a duplicate, nothing new.
	tok2 := f.assertion(t, m, "b.test")
	got = f.push(t, tok2, body(t, m, envelopeHeaders(m), tok2))
	if got.status != 200 || got.state != "duplicate" {
		t.Fatalf("duplicate push: %+v", got)
	}
	if n := len(inbox(t, f.b, "bob@b.test")); n != 1 {
		t.Fatalf("bob has %d messages after a duplicate", n)
	}
	// Replaying the first assertion (a fresh DPoP proof): refused.
	got = f.push(t, tok, body(t, m, envelopeHeaders(m), tok))
	if got.status != 401 || got.code != "replayed_assertion" {
		t.Fatalf("replay: %+v", got)
	}
}

// forge signs an assertion for m from alice@a.test with iss, by the key set
// of another authorization server: b.test's own.
func (f *fed) forge(t *testing.T, m *placeholder.Message, iss string) string {
	t.Helper()
	eht, _ := placeholder.EHT(envelopeHeaders(m), ehl)
	now := time.Now()
	c := federation.Claims{Claims: keys.Claims{Issuer: iss, Subject: "alice@a.test", Audience: keys.Audience{"b.test"},
		AZP: "mta@a.test", Scope: "internet_mail", Cnf: &keys.Confirmation{JKT: f.mtaKey.Thumbprint()},
		ID: fmt.Sprint(now.UnixNano()), IssuedAt: keys.NewNumericDate(now), Expiry: keys.NewNumericDate(now.Add(5 * time.Minute))},
		MessageID: m.Header.Get(placeholder.HMessageID).String(), EH: &federation.EnvelopeBinding{EHT: eht, EHL: ehl},
		Hop: 1, Path: []string{"a.test"}}
	tok, err := f.b.Server.Keys.Sign(federation.TypAssertion, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestPushSignerBeforeBody: a push whose assertion does not verify is
// refused before its body is read: a body that never comes gets the answer.
func TestPushSignerBeforeBody(t *testing.T) {
	f := newFed(t, nil)
	for _, tc := range []struct {
		name   string
		iss    string
		status int
		code   string
	}{
		{"another AS's key, our issuer", f.a.URL, 401, "bad_signature"},
		{"another issuer", f.b.URL, 403, "issuer_mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := f.forge(t, message(t, []byte("bytes"), []string{"bob@b.test"}, nil), tc.iss)
			proof, err := f.mtaKey.Proof("POST", f.recvURL, tok, "", time.Now())
			if err != nil {
				t.Fatal(err)
			}
			// A raw connection: the request's headers, and a body announced
			// but never sent, larger than net/http discards before it
			// answers (256 KiB), so that the answer shows what the handler
			// did.
			c, err := tls.Dial("tcp", f.recv.Listener.Addr().String(), &tls.Config{InsecureSkipVerify: true})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAuthorization: DPoP %s\r\nDPoP: %s\r\nContent-Length: 1000000\r\n\r\n{",
				federation.PathMessages, f.recv.Listener.Addr(), tok, proof)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("no answer while the body is pending: %v", err)
			}
			defer resp.Body.Close()
			var out struct {
				Error struct{ Code string } `json:"error"`
			}
			json.NewDecoder(resp.Body).Decode(&out)
			if resp.StatusCode != tc.status || out.Error.Code != tc.code {
				t.Fatalf("%d %s, want %d %s", resp.StatusCode, out.Error.Code, tc.status, tc.code)
			}
		})
	}
}

func TestPushRefused(t *testing.T) {
	f := newFed(t, nil)
	data := []byte("bytes")
	fresh := func() *placeholder.Message {
		return message(t, data, []string{"bob@b.test"}, nil)
	}
	other, _ := dpop.NewKey()
	forge := f.forge
	tests := []struct {
		name   string
		run    func(t *testing.T) answer
		status int
		code   string
	}{
		{"no token", func(t *testing.T) answer {
			m := fresh()
			a, _ := do(t, f.recv.Client(), f.recvURL, "", "-", nil, time.Now(), body(t, m, envelopeHeaders(m), "x"), nil)
			return a
		}, 401, "invalid_token"},
		{"missing DPoP", func(t *testing.T) answer {
			m := fresh()
			tok := f.assertion(t, m, "b.test")
			a, _ := do(t, f.recv.Client(), f.recvURL, tok, "-", nil, time.Now(), body(t, m, envelopeHeaders(m), tok), nil)
			return a
		}, 401, "invalid_dpop_proof"},
		{"DPoP by another key", func(t *testing.T) answer {
			m := fresh()
			tok := f.assertion(t, m, "b.test")
			a, _ := do(t, f.recv.Client(), f.recvURL, tok, "", other, time.Now(), body(t, m, envelopeHeaders(m), tok), nil)
			return a
		}, 401, "dpop_key_mismatch"},
		{"not an assertion", func(t *testing.T) answer {
			m := fresh()
			tok := f.a.Token(t, "alice@a.test", time.Hour) // an opaque bearer token
			return f.push(t, tok, body(t, m, envelopeHeaders(m), tok))
		}, 401, "invalid_token"},
		{"forged From domain", func(t *testing.T) answer {
			m := fresh()
			tok := f.assertion(t, m, "b.test")
			m.Header.SetString(placeholder.HFrom, "Alice <alice@c.test>")
			seal(t, m)
			return f.push(t, tok, body(t, m, envelopeHeaders(m), tok))
		}, 403, "from_domain_mismatch"},
		{"assertion from another AS", func(t *testing.T) answer {
			m := fresh()
			tok := forge(t, m, f.b.URL)
			return f.push(t, tok, body(t, m, envelopeHeaders(m), tok))
		}, 403, "issuer_mismatch"},
		{"another AS's key, our issuer", func(t *testing.T) answer {
			m := fresh()
			tok := forge(t, m, f.a.URL)
			return f.push(t, tok, body(t, m, envelopeHeaders(m), tok))
		}, 401, "bad_signature"},
		{"wrong audience", func(t *testing.T) answer {
			m := fresh()
			tok := f.assertion(t, m, "c.test")
			return f.push(t, tok, body(t, m, envelopeHeaders(m), tok))
		}, 403, "wrong_audience"},
		{"tampered header (Message-ID)", func(t *testing.T) answer {
			m := fresh()
			tok := f.assertion(t, m, "b.test")
			m.Header.SetString(placeholder.HMessageID, placeholder.NewMessageID("a.test"))
			return f.push(t, tok, body(t, m, envelopeHeaders(m), tok))
		}, 400, "eht_mismatch"},
		{"tampered chain headers", func(t *testing.T) answer {
			m := fresh()
			tok := f.assertion(t, m, "b.test")
			h := envelopeHeaders(m)
			h.SetString(placeholder.HBodyDigest, resource.IDOf([]byte("x")).ContentID())
			return f.push(t, tok, body(t, m, h, tok))
		}, 400, "eht_mismatch"},
		{"placeholder differs from the signed headers", func(t *testing.T) answer {
			m := fresh()
			tok := f.assertion(t, m, "b.test")
			h := envelopeHeaders(m)
			m.Header.SetString(placeholder.HBodyDigest, resource.IDOf([]byte("x")).ContentID())
			return f.push(t, tok, body(t, m, h, tok))
		}, 400, "eht_mismatch"},
		{"tampered body", func(t *testing.T) answer {
			m := fresh()
			tok := f.assertion(t, m, "b.test")
			leaf, _ := placeholder.NewLeaf(resource.IDOf([]byte("evil")), 4, "text/plain", "attachment", "f.bin")
			m.Parts[0] = leaf
			return f.push(t, tok, body(t, m, envelopeHeaders(m), tok))
		}, 400, "digest_mismatch"},
		{"tampered recipient list", func(t *testing.T) answer {
			m := fresh()
			tok := f.assertion(t, m, "b.test")
			m.Header.SetString(placeholder.HTo, "bob@b.test, carol@b.test")
			return f.push(t, tok, body(t, m, envelopeHeaders(m), tok))
		}, 400, "digest_mismatch"},
		{"unknown local recipient", func(t *testing.T) answer {
			m := message(t, data, []string{"bob@b.test", "zed@b.test"}, nil)
			tok := f.assertion(t, m, "b.test")
			return f.push(t, tok, body(t, m, envelopeHeaders(m), tok))
		}, 400, "unknown_recipient"},
		{"no local recipient", func(t *testing.T) answer {
			m := message(t, data, []string{"dave@c.test"}, nil)
			tok := f.assertion(t, m, "b.test")
			return f.push(t, tok, body(t, m, envelopeHeaders(m), tok))
		}, 400, "no_local_recipient"},
		{"chain's assertion is another", func(t *testing.T) answer {
			m := fresh()
			tok := f.assertion(t, m, "b.test")
			return f.push(t, tok, body(t, m, envelopeHeaders(m), f.assertion(t, m, "b.test")))
		}, 400, "bad_chain"},
		{"wrong client", func(t *testing.T) answer {
			m := fresh()
			tok := f.assertion(t, m, "b.test")
			f.disc.clientID = "mta@elsewhere.test"
			defer func() { f.disc.clientID = "mta@a.test" }()
			return f.push(t, tok, body(t, m, envelopeHeaders(m), tok))
		}, 403, "wrong_client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.run(t)
			if got.status != tt.status || got.code != tt.code {
				t.Fatalf("got %d %q, want %d %q (%s)", got.status, got.code, tt.status, tt.code, got.raw)
			}
		})
	}
	// Nothing was stored and nothing queued by any refusal.
	if n := len(inbox(t, f.b, "bob@b.test")); n != 0 {
		t.Fatalf("bob has %d messages after refusals", n)
	}
	if jobs, err := f.b.Server.Meta.Jobs(context.Background(), "", 0); err != nil || len(jobs) != 0 {
		t.Fatalf("jobs after refusals: %v %d", err, len(jobs))
	}
}

// TestPushExpired runs the receiver six minutes in the future: the assertion
// (5 minutes) has expired, while the DPoP proof made at that time is fresh.
func TestPushExpired(t *testing.T) {
	later := func() time.Time { return time.Now().Add(6 * time.Minute) }
	f := newFed(t, later)
	m := message(t, []byte("x"), []string{"bob@b.test"}, nil)
	tok := f.assertion(t, m, "b.test")
	got, _ := do(t, f.recv.Client(), f.recvURL, tok, "", f.mtaKey, later(), body(t, m, envelopeHeaders(m), tok), nil)
	if got.status != 401 || got.code != "expired_assertion" {
		t.Fatalf("got %+v", got)
	}
}
