package federation

import (
	"context"
	"testing"
	"time"

	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/keys"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/meta/memstore"
	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
)

// TestGrantFetch: the origin's verdict on a verified chain, against its own
// store: which chains earn a grant, and that a grant fetches only what its
// sent copy references, while that copy and its author's account last.
func TestGrantFetch(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	var alice meta.User
	err := st.Update(ctx, func(tx meta.Tx) error {
		var err error
		alice, err = tx.AddUser(ctx, meta.User{Address: "alice@a.test"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte("the attachment")
	m := placeholder.New("Alice <alice@a.test>", []string{"Bob <bob@b.test>"}, nil, []string{"erin@e.test"}, "hi")
	leaf, err := placeholder.NewLeaf(resource.IDOf(body), int64(len(body)), "application/octet-stream", "attachment", "f.bin")
	if err != nil {
		t.Fatal(err)
	}
	m.Parts = append(m.Parts, leaf)
	msgid := placeholder.NewMessageID("a.test")
	m.Header.SetString(placeholder.HMessageID, msgid)
	bdg := placeholder.BodyDigest(m)
	m.Header.SetString(placeholder.HBodyDigest, bdg)
	now := time.Now()
	store := func(folder meta.Folder, id string) {
		t.Helper()
		if err := st.Update(ctx, func(tx meta.Tx) error {
			return tx.InsertMessage(ctx, meta.Message{ID: id, UserID: alice.ID, Folder: folder, MessageID: msgid,
				Status: meta.StatusSent, Date: now, Created: now, Updated: now, Placeholder: m.Canonical(),
				Refs: []meta.Ref{{ID: resource.IDOf(body), Size: int64(len(body))}}})
		}); err != nil {
			t.Fatal(err)
		}
	}
	store(meta.Drafts, "draft") // a draft of it is no sent copy

	// hop1 and forward build verified links (VerifyChain's output, newest
	// first) as the token endpoint has them.
	hop1 := func(sub, aud, digest string) Link {
		var h placeholder.Header
		h.SetString(placeholder.HMessageID, msgid)
		h.SetString(placeholder.HBodyDigest, digest)
		return Link{Claims: Claims{Claims: keys.Claims{Subject: sub, Audience: keys.Audience{aud}}, MessageID: msgid,
			EH: &EnvelopeBinding{EHL: []string{placeholder.HMessageID, placeholder.HBodyDigest}}, Hop: 1}, Headers: h, Domain: "a.test"}
	}
	forward := func(from, aud string) Link {
		var h placeholder.Header
		h.SetString(placeholder.HForwardedFrom, from)
		return Link{Claims: Claims{Claims: keys.Claims{Subject: from, Audience: keys.Audience{aud}}, MessageID: msgid, Hop: 2}, Headers: h}
	}
	for _, tc := range []struct {
		name  string
		links []Link
		code  string // "" grants
	}{
		{"no sent copy yet", []Link{hop1("alice@a.test", "b.test", bdg)}, CodeNoSentCopy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := GrantFetch(ctx, st, tc.links); errs.CodeOf(err) != tc.code {
				t.Fatalf("GrantFetch: %v, want code %q", err, tc.code)
			}
		})
	}

	store(meta.Sent, "sent")
	for _, tc := range []struct {
		name  string
		links []Link
		code  string
	}{
		{"a direct message", []Link{hop1("alice@a.test", "b.test", bdg)}, ""},
		{"to a Bcc recipient's domain", []Link{hop1("alice@a.test", "e.test", bdg)}, ""},
		{"another body", []Link{hop1("alice@a.test", "b.test", placeholder.BodyDigest(placeholder.New("x@a.test", nil, nil, nil, "")))}, CodeNoSentCopy},
		{"another author", []Link{hop1("bob@a.test", "b.test", bdg)}, CodeNoSentCopy},
		{"a domain with no recipient", []Link{hop1("alice@a.test", "c.test", bdg)}, CodeNotARecipient},
		{"forwarded by a recipient", []Link{forward("bob@b.test", "c.test"), hop1("alice@a.test", "b.test", bdg)}, ""},
		{"forwarded by someone else at the domain", []Link{forward("mallory@b.test", "c.test"), hop1("alice@a.test", "b.test", bdg)}, CodeNotARecipient},
		{"hop 1 signs no Body-Digest", func() []Link {
			l := hop1("alice@a.test", "b.test", bdg)
			l.Claims.EH.EHL = []string{placeholder.HMessageID}
			return []Link{l}
		}(), "bad_ehl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := GrantFetch(ctx, st, tc.links)
			if (tc.code == "" && err != nil) || (tc.code != "" && errs.CodeOf(err) != tc.code) {
				t.Fatalf("GrantFetch: %v, want code %q", err, tc.code)
			}
			if tc.code == "" && (g.Author != "alice@a.test" || g.UserID != alice.ID || g.BodyDigest != bdg || g.Hops != len(tc.links)) {
				t.Fatalf("grant %+v", g)
			}
		})
	}

	g, err := GrantFetch(ctx, st, []Link{hop1("alice@a.test", "b.test", bdg)})
	if err != nil {
		t.Fatal(err)
	}
	if err := Fetchable(ctx, st, g, msgid, resource.IDOf(body)); err != nil {
		t.Fatalf("the attachment: %v", err)
	}
	for _, tc := range []struct {
		name  string
		g     FetchGrant
		msgid string
		id    resource.ID
	}{
		{"a resource the body does not reference", g, msgid, resource.IDOf([]byte("other"))},
		{"another message", g, placeholder.NewMessageID("a.test"), resource.IDOf(body)},
		{"another account at the address", FetchGrant{Author: g.Author, UserID: g.UserID + 1, BodyDigest: bdg}, msgid, resource.IDOf(body)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := Fetchable(ctx, st, tc.g, tc.msgid, tc.id); errs.KindOf(err) != errs.NotFound {
				t.Fatalf("Fetchable: %v, want not found", err)
			}
		})
	}
	// The sent copy deleted: the grant fetches nothing more.
	if err := st.Update(ctx, func(tx meta.Tx) error { return tx.DeleteMessage(ctx, alice.ID, "sent") }); err != nil {
		t.Fatal(err)
	}
	if err := Fetchable(ctx, st, g, msgid, resource.IDOf(body)); errs.CodeOf(err) != CodeNoSentCopy {
		t.Fatalf("after the delete: %v", err)
	}
}
