package inbound_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

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
// authorization server puts in one (docs/PROTOCOL.md §10.6), g its verdict
// on the chain (nil: none). It is signed directly because a testenv
// authorization server has no discovery with which to authenticate
// mta@b.test at its token endpoint; authz's TestExchangeFetch checks how the
// grant is decided.
func (f *fed) fetchToken(t *testing.T, msgid, rcpt string, key *dpop.Key, scope string, g *federation.FetchGrant) string {
	t.Helper()
	now := time.Now()
	c := federation.Claims{Claims: keys.Claims{Issuer: f.a.URL, Audience: keys.Audience{f.a.URL},
		IssuedAt: keys.NewNumericDate(now), Expiry: keys.NewNumericDate(now.Add(time.Hour)), ID: now.String(),
		Scope: scope, ClientID: "mta@" + rcpt, Cnf: &keys.Confirmation{JKT: key.Thumbprint()}},
		MessageID: msgid, RecipientDomain: rcpt, Fetch: g}
	tok, err := f.a.Server.Keys.Sign(federation.TypAccessToken, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// grant is the verdict a.test's AS signs for a verified chain of m.
func (f *fed) grant(t *testing.T, m *placeholder.Message) *federation.FetchGrant {
	t.Helper()
	u, err := f.a.Server.Meta.UserByAddress(context.Background(), "alice@a.test")
	if err != nil {
		t.Fatal(err)
	}
	return &federation.FetchGrant{Author: u.Address, UserID: u.ID, BodyDigest: placeholder.BodyDigest(m), Hops: 1}
}

// TestFetch: the fetch endpoint serves what the token's grant names, with
// Range, and refuses anything else as a missing resource; it reads no
// envelope and verifies no chain (the token endpoint did, once).
func TestFetch(t *testing.T) {
	f := newFed(t, nil)
	bKey, _ := dpop.NewKey()
	data := bytes.Repeat([]byte("0123456789"), 1000)
	m := message(t, data, []string{"bob@b.test"}, []string{"dave@c.test"})
	f.storeSent(t, m, data)
	msgid := m.Header.Get(placeholder.HMessageID).String()
	g := f.grant(t, m)
	cid := string(resource.IDOf(data))
	target := f.fetchURL + "/" + cid
	tok := f.fetchToken(t, msgid, "b.test", bKey, "fetch", g)
	c := f.origin.Client()

	// A valid fetch.
	got, resp := do(t, c, target, tok, "", bKey, time.Now(), nil, nil)
	if got.status != 200 || got.raw != string(data) || resp.Header.Get("ETag") != `"`+cid+`"` ||
		resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("fetch: %d %q %v %q", got.status, resp.Header.Get("ETag"), len(got.raw), resp.Header.Get("Cache-Control"))
	}
	// A resumed one.
	got, resp = do(t, c, target, tok, "", bKey, time.Now(), nil, http.Header{"Range": {"bytes=9990-"}})
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
		got, resp := do(t, c, target, tok, "", bKey, time.Now(), nil, http.Header{"Range": {tc.rng}})
		if got.status != tc.status || resp.Header.Get("Content-Range") != tc.cr {
			t.Fatalf("Range %s: %d %q, want %d %q", tc.rng, got.status, resp.Header.Get("Content-Range"), tc.status, tc.cr)
		}
		if tc.status == 416 && (got.code != "range_not_satisfiable" || resp.Header.Get("Content-Type") != "application/json") {
			t.Fatalf("Range %s: 416 answered %s %q", tc.rng, resp.Header.Get("Content-Type"), got.raw)
		}
	}

	// Another recipient domain, with its own token: served too.
	cKey, _ := dpop.NewKey()
	if got, _ := do(t, c, target, f.fetchToken(t, msgid, "c.test", cKey, "fetch", g), "", cKey, time.Now(), nil, nil); got.status != 200 {
		t.Fatalf("fetch by c.test: %d %s", got.status, got.raw)
	}

	// Each refusal is the 404 of a missing resource.
	other := []byte("not in the body")
	om := message(t, other, []string{"bob@b.test"}, nil)
	f.storeSent(t, om, other) // stored here, but another message's
	otherMsgid := om.Header.Get(placeholder.HMessageID).String()
	with := func(edit func(*federation.FetchGrant)) *federation.FetchGrant {
		g2 := *g
		edit(&g2)
		return &g2
	}
	// Claims altered after signing, the signature kept: msgid and bdg
	// moved to the other message, whose resource a token signed with
	// those claims does fetch (checked below), so only the signature
	// refuses it.
	tampered := func() string {
		parts := strings.Split(tok, ".")
		payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
		var claims federation.Claims
		if err := json.Unmarshal(payload, &claims); err != nil || claims.Fetch == nil {
			t.Fatalf("the token's claims: %v", err)
		}
		claims.MessageID, claims.Fetch.BodyDigest = otherMsgid, placeholder.BodyDigest(om)
		payload, _ = json.Marshal(claims)
		return parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + parts[2]
	}()
	tests := []struct {
		name                   string
		target, token, proofBy string
		key                    *dpop.Key
	}{
		{"a digest not in the body", f.fetchURL + "/" + string(resource.IDOf(other)), tok, "", bKey},
		{"the token of one message for another's resource", f.fetchURL + "/" + string(resource.IDOf(other)),
			f.fetchToken(t, msgid, "b.test", bKey, "fetch", g), "", bKey},
		{"a grant naming another message's body", target, f.fetchToken(t, msgid, "b.test", bKey, "fetch",
			with(func(g *federation.FetchGrant) { g.BodyDigest = placeholder.BodyDigest(om) })), "", bKey},
		{"a token for another message", target, f.fetchToken(t, otherMsgid, "b.test", bKey, "fetch", g), "", bKey},
		{"a grant of another author", target, f.fetchToken(t, msgid, "b.test", bKey, "fetch",
			with(func(g *federation.FetchGrant) { g.Author = "bob@a.test" })), "", bKey},
		{"a grant for an older account at the address", target, f.fetchToken(t, msgid, "b.test", bKey, "fetch",
			with(func(g *federation.FetchGrant) { g.UserID += 100 })), "", bKey},
		{"a token without a grant", target, f.fetchToken(t, msgid, "b.test", bKey, "fetch", nil), "", bKey},
		{"a tampered token", f.fetchURL + "/" + string(resource.IDOf(other)), tampered, "", bKey},
		{"a missing resource", f.fetchURL + "/" + string(resource.IDOf([]byte("nothing"))), tok, "", bKey},
		{"a token without the fetch scope", target, f.fetchToken(t, msgid, "b.test", bKey, "mail", g), "", bKey},
		{"a token bound to another key", target, f.fetchToken(t, msgid, "b.test", cKey, "fetch", g), "", bKey},
		{"a garbage token", target, "not.a.token", "", bKey},
		{"no DPoP proof", target, tok, "-", bKey},
		{"a token of another AS", target, func() string {
			t2, _ := f.b.Server.Keys.Sign(federation.TypAccessToken, map[string]any{"iss": f.a.URL})
			return t2
		}(), "", bKey},
		{"a bad content-id", f.fetchURL + "/abc", tok, "", bKey},
	}
	otherGrant := with(func(g *federation.FetchGrant) { g.BodyDigest = placeholder.BodyDigest(om) })
	if got, _ := do(t, c, f.fetchURL+"/"+string(resource.IDOf(other)), f.fetchToken(t, otherMsgid, "b.test", bKey, "fetch", otherGrant),
		"", bKey, time.Now(), nil, nil); got.status != 200 || got.raw != string(other) {
		t.Fatalf("the other message's own token: %d %q", got.status, got.code)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := do(t, c, tt.target, tt.token, tt.proofBy, tt.key, time.Now(), nil, nil)
			if got.status != 404 || got.code != "not_found" {
				t.Fatalf("got %d %q (%d bytes)", got.status, got.code, len(got.raw))
			}
		})
	}

	// The author deletes the sent copy: the token, still valid, fetches
	// nothing more (the grant is read against the store at every fetch).
	u, _ := f.a.Server.Meta.UserByAddress(context.Background(), "alice@a.test")
	if err := f.a.Server.Meta.Update(context.Background(), func(tx meta.Tx) error {
		return tx.DeleteMessage(context.Background(), u.ID, "sent-"+resource.IDOf(m.Canonical()).ContentID())
	}); err != nil {
		t.Fatal(err)
	}
	if got, _ := do(t, c, target, tok, "", bKey, time.Now(), nil, nil); got.status != 404 {
		t.Fatalf("after the sent copy was deleted: %d %s", got.status, got.raw)
	}
}
