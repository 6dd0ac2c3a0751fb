package metatest

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/pullmail/pullmail/meta"
)

// testKeywords: keywords are stored normalized (lowercase, sorted, once),
// $seen and bad keywords are refused, and they survive an update.
func testKeywords(t *testing.T, s meta.Store) {
	ctx := t.Context()
	u := addUser(t, s, "kw@example.org")
	m := message(u.ID, "kw1", meta.Inbox, day(2))
	m.Keywords = []string{"$Flagged", "work", "$flagged", "$answered"}
	insert(t, s, m)
	got := readMessage(t, s, u.ID, "kw1")
	if want := []string{"$answered", "$flagged", "work"}; !slices.Equal(got.Keywords, want) {
		t.Errorf("Keywords = %q, want %q", got.Keywords, want)
	}
	for _, bad := range [][]string{{"$seen"}, {"has space"}, {"a(b"}, {""}, {"é"}} {
		m := message(u.ID, "kw-bad", meta.Inbox, day(2))
		m.Keywords = bad
		err := s.Update(ctx, func(tx meta.Tx) error { return tx.InsertMessage(ctx, m) })
		if err == nil {
			t.Errorf("InsertMessage with keywords %q: no error", bad)
		}
	}
	if _, err := s.Message(ctx, u.ID, "kw-bad"); !errors.Is(err, meta.ErrNotFound) {
		t.Errorf("a refused message was stored: %v", err)
	}
	got.Keywords = nil
	update(t, s, func(ctx context.Context, tx meta.Tx) error { return tx.UpdateMessage(ctx, got) })
	if got := readMessage(t, s, u.ID, "kw1"); got.Keywords != nil {
		t.Errorf("Keywords after clearing = %q", got.Keywords)
	}
}

// testUIDs: UIDs number a folder's messages from 1 in arrival order, a move
// gives a new UID in the new folder and never reuses one, ModSeq is the
// Seq of the message's latest change, HighestModSeq follows every change of
// the folder (a removal too), FolderIndex lists by UID and by modseq, and
// the change log names the UIDs.
func testUIDs(t *testing.T, s meta.Store) {
	ctx := t.Context()
	u := addUser(t, s, "uid@example.org")
	other := addUser(t, s, "other@example.org")
	state := func(f meta.Folder) meta.FolderState {
		t.Helper()
		fs, err := s.FolderState(ctx, u.ID, f)
		if err != nil {
			t.Fatalf("FolderState(%s): %v", f, err)
		}
		return fs
	}
	empty := state(meta.Archive)
	if empty.UIDNext != 1 || empty.HighestModSeq != 0 || empty.UIDValidity == 0 {
		t.Errorf("a folder never used: %+v, want UIDNext 1, HighestModSeq 0, a UIDValidity", empty)
	}
	insert(t, s, message(u.ID, "u1", meta.Inbox, day(3)), message(u.ID, "u2", meta.Inbox, day(1)),
		message(other.ID, "o1", meta.Inbox, day(1)))
	insert(t, s, message(u.ID, "u3", meta.Inbox, day(2)))
	uid := func(id string) meta.Message {
		t.Helper()
		return readMessage(t, s, u.ID, id)
	}
	for id, want := range map[string]uint32{"u1": 1, "u2": 2, "u3": 3} {
		if got := uid(id).UID; got != want {
			t.Errorf("%s: UID %d, want %d", id, got, want)
		}
	}
	if got := readMessage(t, s, other.ID, "o1").UID; got != 1 {
		t.Errorf("another user's first message: UID %d, want 1 (UIDs are per user and folder)", got)
	}
	in := state(meta.Inbox)
	if in.UIDNext != 4 || in.UIDValidity != empty.UIDValidity {
		t.Errorf("inbox: %+v, want UIDNext 4 and the user's UIDValidity %d", in, empty.UIDValidity)
	}
	if u3 := uid("u3"); u3.ModSeq != in.HighestModSeq || u3.ModSeq <= uid("u1").ModSeq {
		t.Errorf("u3 ModSeq %d, u1 %d, HighestModSeq %d: want u3's the highest", u3.ModSeq, uid("u1").ModSeq, in.HighestModSeq)
	}

	// A flag change: same UID, a new modseq, the folder's highest with it.
	before := cursor(t, s)
	m := uid("u1")
	m.Seen, m.UID, m.ModSeq = true, 99, 12345 // the store's to give, not the caller's
	update(t, s, func(ctx context.Context, tx meta.Tx) error { return tx.UpdateMessage(ctx, m) })
	m = uid("u1")
	if m.UID != 1 || m.ModSeq <= before || state(meta.Inbox).HighestModSeq != m.ModSeq {
		t.Errorf("after a flag change: UID %d ModSeq %d (cursor before %d), HighestModSeq %d", m.UID, m.ModSeq, before,
			state(meta.Inbox).HighestModSeq)
	}
	idx, err := s.FolderIndex(ctx, u.ID, meta.Inbox, before)
	if err != nil {
		t.Fatal(err)
	}
	if len(idx) != 1 || idx[0].ID != "u1" || idx[0].UID != 1 || !idx[0].Seen || idx[0].ModSeq != m.ModSeq {
		t.Errorf("FolderIndex changed since %d = %+v, want u1 alone, seen", before, idx)
	}
	all, err := s.FolderIndex(ctx, u.ID, meta.Inbox, 0)
	if err != nil {
		t.Fatal(err)
	}
	var uids []uint32
	for _, e := range all {
		uids = append(uids, e.UID)
	}
	if !slices.Equal(uids, []uint32{1, 2, 3}) {
		t.Errorf("FolderIndex UIDs = %v, want [1 2 3]", uids)
	}

	// A move: a new UID in the new folder; the old folder's log names the
	// old UID, the new folder's the new.
	before = cursor(t, s)
	m = uid("u2")
	m.Folder = meta.Archive
	update(t, s, func(ctx context.Context, tx meta.Tx) error { return tx.UpdateMessage(ctx, m) })
	if got := uid("u2"); got.UID != 1 || got.Folder != meta.Archive {
		t.Errorf("moved to an empty archive: UID %d in %s, want 1 in archive", got.UID, got.Folder)
	}
	cs, err := s.Changes(ctx, u.ID, before, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 2 || cs[0].Folder != meta.Inbox || cs[0].UID != 2 || cs[0].Kind != meta.Deleted ||
		cs[1].Folder != meta.Archive || cs[1].UID != 1 || cs[1].Kind != meta.Created {
		t.Errorf("the move's changes = %+v, want deleted UID 2 from inbox, created UID 1 in archive", cs)
	}
	if hi := state(meta.Inbox).HighestModSeq; hi != cs[0].Seq {
		t.Errorf("inbox HighestModSeq %d after a message left it, want %d", hi, cs[0].Seq)
	}
	// And back: UID 2 is not given again in the inbox.
	m = uid("u2")
	m.Folder = meta.Inbox
	update(t, s, func(ctx context.Context, tx meta.Tx) error { return tx.UpdateMessage(ctx, m) })
	if got := uid("u2").UID; got != 4 {
		t.Errorf("moved back into the inbox: UID %d, want 4 (never reused)", got)
	}

	// A removal raises the folder's highest modseq and logs the UID it had.
	before = cursor(t, s)
	update(t, s, func(ctx context.Context, tx meta.Tx) error { return tx.DeleteMessage(ctx, u.ID, "u3") })
	cs, err = s.Changes(ctx, u.ID, before, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1 || cs[0].UID != 3 || state(meta.Inbox).HighestModSeq != cs[0].Seq {
		t.Errorf("after deleting UID 3: changes %+v, HighestModSeq %d", cs, state(meta.Inbox).HighestModSeq)
	}
	insert(t, s, message(u.ID, "u5", meta.Inbox, day(5)))
	if got := uid("u5").UID; got != 5 {
		t.Errorf("after a deletion: next UID %d, want 5", got)
	}
}

func readMessage(t *testing.T, s meta.Reader, userID int64, id string) meta.Message {
	t.Helper()
	m, err := s.Message(t.Context(), userID, id)
	if err != nil {
		t.Fatalf("Message(%q): %v", id, err)
	}
	return m
}
