package inbound_test

import (
	"bytes"
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/pullmail/pullmail/authz"
	"github.com/pullmail/pullmail/dpop"
	"github.com/pullmail/pullmail/federation"
	"github.com/pullmail/pullmail/keys"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
)

// storeSent stores m as alice's sent copy at a.test, with its resource: the
// mailbox does not send to other domains yet, so the row is written directly.
func (f *fed) storeSent(t *testing.T, m *placeholder.Message, data []byte) {
	t.Helper()
	ctx := context.Background()
	if _, err := f.a.Server.Store.Put(ctx, bytes.NewReader(data), resource.PutOptions{Size: int64(len(data))}); err != nil {
		t.Fatal(err)
	}
	u, err := f.a.Server.Meta.UserByAddress(ctx, "alice@a.test")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	err = f.a.Server.Meta.Update(ctx, func(tx meta.Tx) error {
		return tx.InsertMessage(ctx, meta.Message{ID: "sent-" + resource.IDOf(m.Canonical()).ContentID(), UserID: u.ID,
			Folder: meta.Sent, MessageID: m.Header.Get(placeholder.HMessageID).String(), Status: meta.StatusSent,
			Date: now, Created: now, Updated: now, Placeholder: m.Canonical(),
			Refs: []meta.Ref{{ID: resource.IDOf(data), Size: int64(len(data))}}})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// fetchToken signs a fetch token with a.test's own keys, with the claims its
// authorization server puts in one (docs/PROTOCOL.md §10.6). It is signed
// directly because a testenv authorization server has no discovery with which
// to authenticate mta@b.test at its token endpoint.
func (f *fed) fetchToken(t *testing.T, msgid, rcpt string, key *dpop.Key, scope string) string {
	t.Helper()
	now := time.Now()
	c := federation.Claims{Claims: keys.Claims{Issuer: f.a.URL, Audience: keys.Audience{f.a.URL},
		IssuedAt: keys.NewNumericDate(now), Expiry: keys.NewNumericDate(now.Add(time.Hour)), ID: now.String(),
		Scope: scope, ClientID: "mta@" + rcpt, Cnf: &keys.Confirmation{JKT: key.Thumbprint()}},
		MessageID: msgid, RecipientDomain: rcpt}
	tok, err := f.a.Server.Keys.Sign(authz.TypAccessToken, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestFetch(t *testing.T) {
	f := newFed(t, nil)
	bKey, _ := dpop.NewKey()
	data := bytes.Repeat([]byte("0123456789"), 1000)
	m := message(t, data, []string{"bob@b.test"}, []string{"dave@c.test"})
	f.storeSent(t, m, data)
	msgid := m.Header.Get(placeholder.HMessageID).String()
	assertion := f.assertion(t, m, "b.test")
	env := body(t, m, envelopeHeaders(m), assertion)
	cid := string(resource.IDOf(data))
	target := f.fetchURL + "/" + cid
	tok := f.fetchToken(t, msgid, "b.test", bKey, "fetch")
	c := f.origin.Client()

	// A valid fetch.
	got, resp := do(t, c, target, tok, "", bKey, time.Now(), env, nil)
	if got.status != 200 || got.raw != string(data) || resp.Header.Get("ETag") != `"`+cid+`"` {
		t.Fatalf("fetch: %d %q %v", got.status, resp.Header.Get("ETag"), len(got.raw))
	}
	// A resumed one.
	got, resp = do(t, c, target, tok, "", bKey, time.Now(), env, http.Header{"Range": {"bytes=9990-"}})
	if got.status != 206 || got.raw != string(data[9990:]) || resp.Header.Get("Content-Range") != "bytes 9990-9999/10000" {
		t.Fatalf("range: %d %q %q", got.status, got.raw, resp.Header.Get("Content-Range"))
	}

	// RFC 9110 §14 corner cases, as §8.6 answers them (package httprange):
	// a zero suffix is unsatisfiable, with Content-Range; an unknown unit is
	// ignored and the whole resource served.
	for _, tc := range []struct {
		rng, cr string
		status  int
	}{
		{"bytes=-0", "bytes */10000", 416},
		{"bytes=10000-", "bytes */10000", 416},
		{"items=0-10", "", 200},
		{"bytes=-10", "bytes 9990-9999/10000", 206},
	} {
		got, resp := do(t, c, target, tok, "", bKey, time.Now(), env, http.Header{"Range": {tc.rng}})
		if got.status != tc.status || resp.Header.Get("Content-Range") != tc.cr {
			t.Fatalf("Range %s: %d %q, want %d %q", tc.rng, got.status, resp.Header.Get("Content-Range"), tc.status, tc.cr)
		}
		if tc.status == 416 && (got.code != "range_not_satisfiable" || resp.Header.Get("Content-Type") != "application/json") {
			t.Fatalf("Range %s: 416 answered %s %q", tc.rng, resp.Header.Get("Content-Type"), got.raw)
		}
	}

	// Another recipient domain, with its own assertion: served too.
	envC := body(t, m, envelopeHeaders(m), f.assertion(t, m, "c.test"))
	cKey, _ := dpop.NewKey()
	if got, _ := do(t, c, target, f.fetchToken(t, msgid, "c.test", cKey, "fetch"), "", cKey, time.Now(), envC, nil); got.status != 200 {
		t.Fatalf("fetch by c.test: %d %s", got.status, got.raw)
	}

	// Each refusal is the 404 of a missing resource.
	other := []byte("not in the body")
	f.storeSent(t, message(t, other, []string{"bob@b.test"}, nil), other) // stored here, but another message's
	tests := []struct {
		name                   string
		target, token, proofBy string
		key                    *dpop.Key
		env                    []byte
	}{
		{"a digest not in the body", f.fetchURL + "/" + string(resource.IDOf(other)), tok, "", bKey, env},
		{"a missing resource", f.fetchURL + "/" + string(resource.IDOf([]byte("nothing"))), tok, "", bKey, env},
		{"a domain not among the recipients", target, f.fetchToken(t, msgid, "e.test", cKey, "fetch"), "", cKey,
			body(t, m, envelopeHeaders(m), f.assertion(t, m, "e.test"))},
		{"a token for another domain than the assertion's", target, f.fetchToken(t, msgid, "c.test", cKey, "fetch"), "", cKey, env},
		{"a token without the fetch scope", target, f.fetchToken(t, msgid, "b.test", bKey, "mail"), "", bKey, env},
		{"a token bound to another key", target, f.fetchToken(t, msgid, "b.test", cKey, "fetch"), "", bKey, env},
		{"a token for another message", target, f.fetchToken(t, placeholder.NewMessageID("a.test"), "b.test", bKey, "fetch"), "", bKey, env},
		{"a garbage token", target, "not.a.token", "", bKey, env},
		{"no DPoP proof", target, tok, "-", bKey, env},
		{"a token of another AS", target, func() string {
			t2, _ := f.b.Server.Keys.Sign(authz.TypAccessToken, map[string]any{"iss": f.a.URL})
			return t2
		}(), "", bKey, env},
		{"a tampered envelope", target, tok, "", bKey, func() []byte {
			h := envelopeHeaders(m)
			h.SetString(placeholder.HBodyDigest, resource.IDOf([]byte("x")).ContentID())
			return body(t, m, h, assertion)
		}()},
		{"a bad content-id", f.fetchURL + "/abc", tok, "", bKey, env},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := do(t, c, tt.target, tt.token, tt.proofBy, tt.key, time.Now(), tt.env, nil)
			if got.status != 404 || got.code != "not_found" {
				t.Fatalf("got %d %q: %s", got.status, got.code, got.raw)
			}
		})
	}
}
