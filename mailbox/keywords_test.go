package mailbox_test

import (
	"context"
	"slices"
	"testing"

	"github.com/pullmail/pullmail/auth"
	"github.com/pullmail/pullmail/testenv"
)

// TestKeywords: flags set through the service (as IMAP and JMAP set them)
// are what the HTTP API shows, a change gives the message a new modseq and
// raises the folder's, a change to the same flags writes nothing, and a bad
// keyword changes nothing.
func TestKeywords(t *testing.T) {
	d := testenv.Start(t, "a.test", testenv.Options{})
	alice := d.AddUser(t, "alice@a.test")
	bob := d.AddUser(t, "bob@a.test")
	text := upload(t, alice, []byte("flag me\n"))
	draft, err := alice.CreateDraft(ctx, compose(t, "", []string{"bob@a.test"}, nil, nil, "flags", text))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Send(ctx, draft.ID); err != nil {
		t.Fatal(err)
	}
	in := inbox(t, bob)
	u, err := d.Server.Meta.UserByAddress(ctx, "bob@a.test")
	if err != nil {
		t.Fatal(err)
	}
	bctx := auth.WithPrincipal(context.Background(), auth.Principal{UserID: u.ID, Address: u.Address})
	svc := d.Server.Mailbox
	before, err := svc.FolderState(bctx, "inbox")
	if err != nil {
		t.Fatal(err)
	}
	idx, err := svc.FolderIndex(bctx, "inbox", 0)
	if err != nil || len(idx) != 1 || idx[0].UID != 1 || idx[0].ID != in[0].ID {
		t.Fatalf("FolderIndex = %+v, %v; want the one message as UID 1", idx, err)
	}
	seen := true
	m, err := svc.SetKeywords(bctx, in[0].ID, &seen, []string{"$Flagged", "project-x"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Seen || !slices.Equal(m.Keywords, []string{"$flagged", "project-x"}) {
		t.Fatalf("after SetKeywords: seen %v keywords %q", m.Seen, m.Keywords)
	}
	got, err := bob.Get(ctx, in[0].ID) // over HTTP, as the webmail reads it
	if err != nil || !got.Seen || !slices.Equal(got.Keywords, m.Keywords) {
		t.Fatalf("the API shows seen %v keywords %q (%v)", got.Seen, got.Keywords, err)
	}
	after, err := svc.FolderState(bctx, "inbox")
	if err != nil || after.HighestModSeq <= before.HighestModSeq || after.UIDValidity != before.UIDValidity {
		t.Fatalf("folder state %+v after, %+v before (%v)", after, before, err)
	}
	// The same again: nothing written.
	if _, err := svc.SetKeywords(bctx, in[0].ID, &seen, []string{"project-x"}, nil); err != nil {
		t.Fatal(err)
	}
	if again, _ := svc.FolderState(bctx, "inbox"); again.HighestModSeq != after.HighestModSeq {
		t.Errorf("a no-op flag change moved HIGHESTMODSEQ %d -> %d", after.HighestModSeq, again.HighestModSeq)
	}
	_, err = svc.SetKeywords(bctx, in[0].ID, nil, []string{"$seen"}, nil)
	wantCode(t, err, "bad_keyword")
	_, err = svc.SetKeywords(bctx, in[0].ID, nil, nil, []string{"bad word"})
	wantCode(t, err, "bad_keyword")
	_, err = svc.FolderState(bctx, "no such/../folder")
	wantCode(t, err, "bad_folder")
	m, err = svc.SetKeywords(bctx, in[0].ID, nil, nil, []string{"$FLAGGED"})
	if err != nil || !slices.Equal(m.Keywords, []string{"project-x"}) {
		t.Fatalf("after removing $flagged: %q, %v", m.Keywords, err)
	}
}
