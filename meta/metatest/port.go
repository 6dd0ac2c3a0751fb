package metatest

import (
	"bytes"
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pullmail/pullmail/meta"
)

// testPort checks the two halves of a whole-store copy (meta.Exporter on a
// View's Reader, meta.Loader on an Update's Tx; package backup stands on
// them): every listing is whole and in its order, AllMessages pages, a
// user loaded keeps its ID and time and AddUser goes on above it, an
// upload keeps its time, and ResetFeed makes every older cursor gone while
// the feed goes on above the new one. It needs two stores, so it takes
// open rather than a store.
func testPort(t *testing.T, open func(t *testing.T) meta.Store) {
	ctx := t.Context()
	newStore := func() meta.Store {
		s := open(t)
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return s
	}
	src := newStore()
	alice := addUser(t, src, "alice@example.org")
	bob := addUser(t, src, "bob@example.org")
	carol := addUser(t, src, "carol@example.org")
	update(t, src, func(ctx context.Context, tx meta.Tx) error { return tx.DeleteUser(ctx, bob.ID) }) // a gap in the IDs
	now := time.Now().UTC().Truncate(time.Microsecond)
	r1, r2, r3 := meta.Ref{ID: rid("one"), Size: 3}, meta.Ref{ID: rid("two"), Size: 3}, meta.Ref{ID: rid("three"), Size: 5}
	trashed := message(alice.ID, "m2", meta.Trash, day(3), r2)
	trashed.TrashedFrom, trashed.Trashed = meta.Archive, day(4)
	m1 := message(alice.ID, "m1", meta.Inbox, day(2), r1, r2)
	m1.Keywords = []string{"$flagged", "work"}
	msgs := []meta.Message{
		m1,
		trashed,
		message(carol.ID, "m3", meta.Sent, day(5), r3),
		message(carol.ID, "m0", meta.Drafts, time.Time{}),
	}
	tokens := []meta.Token{
		{Hash: []byte("tok-b"), UserID: carol.ID, Label: "cli", Created: now, Expires: now.Add(time.Hour)},
		{Hash: []byte("tok-a"), UserID: alice.ID, Label: "script", Created: now},
	}
	grants := []meta.Grant{
		{Hash: []byte("g-2"), Kind: meta.GrantRefresh, Family: "f1", ClientID: "app", UserID: alice.ID, Scope: "mail",
			JKT: "thumb", Created: now, Expires: now.Add(time.Hour), Used: true},
		{Hash: []byte("g-1"), Kind: meta.GrantCode, Family: "f2", ClientID: "app", UserID: carol.ID, Scope: "mail",
			RedirectURI: "https://a.test/cb", Challenge: "ch", Created: now, Expires: now.Add(time.Minute), Revoked: true},
	}
	until := now.Add(24 * time.Hour)
	update(t, src, func(ctx context.Context, tx meta.Tx) error {
		for k, v := range map[string]string{"a": "1", "b": "2"} {
			if err := tx.SetSetting(ctx, k, v); err != nil {
				return err
			}
		}
		if err := tx.SetUserSetting(ctx, alice.ID, "forwarding", "deny"); err != nil {
			return err
		}
		for _, tok := range tokens {
			if err := tx.AddToken(ctx, tok); err != nil {
				return err
			}
		}
		if err := tx.AddClient(ctx, meta.Client{ID: "app", Name: "App", Public: true, RedirectURIs: []string{"https://a.test/cb"}}); err != nil {
			return err
		}
		for _, g := range grants {
			if err := tx.AddGrant(ctx, g); err != nil {
				return err
			}
		}
		if err := tx.RevokeFamily(ctx, "f3", until); err != nil {
			return err
		}
		for _, m := range msgs {
			if err := tx.InsertMessage(ctx, m); err != nil {
				return err
			}
		}
		if err := tx.SetEnvelope(ctx, "m1", []byte("envelope")); err != nil {
			return err
		}
		if err := tx.AddUpload(ctx, carol.ID, r3); err != nil {
			return err
		}
		return tx.AddUpload(ctx, alice.ID, r1)
	})
	// A message that came and went: the inbox's next UID is above every
	// message left in it, and the copy must keep that.
	insert(t, src, message(alice.ID, "m-gone", meta.Inbox, day(6)))
	update(t, src, func(ctx context.Context, tx meta.Tx) error { return tx.DeleteMessage(ctx, alice.ID, "m-gone") })
	srcCursor := cursor(t, src)

	// The export, in one View.
	var (
		ups     []meta.Upload
		all     []meta.Message
		tokOut  []meta.Token
		grtOut  []meta.Grant
		setOut  map[string]string
		userOut map[int64]map[string]string
		famOut  map[string]time.Time
		fsOut   []meta.UserFolder
	)
	err := src.View(ctx, func(r meta.Reader) error {
		ex, ok := r.(meta.Exporter)
		if !ok {
			t.Fatalf("the Reader of View (%T) is not a meta.Exporter", r)
		}
		var err error
		if setOut, err = ex.Settings(ctx); err != nil {
			return err
		}
		userOut = map[int64]map[string]string{}
		for _, id := range []int64{alice.ID, carol.ID} {
			if userOut[id], err = ex.UserSettings(ctx, id); err != nil {
				return err
			}
		}
		if tokOut, err = ex.Tokens(ctx); err != nil {
			return err
		}
		if grtOut, err = ex.Grants(ctx); err != nil {
			return err
		}
		if famOut, err = ex.RevokedFamilies(ctx); err != nil {
			return err
		}
		if ups, err = ex.Uploads(ctx); err != nil {
			return err
		}
		if fsOut, err = ex.FolderStates(ctx); err != nil {
			return err
		}
		// Pages of two, then everything at once.
		after := ""
		for {
			page, err := ex.AllMessages(ctx, after, 2)
			if err != nil {
				return err
			}
			if len(page) == 0 {
				break
			}
			if len(page) > 2 {
				t.Errorf("AllMessages(%q, 2) gave %d", after, len(page))
			}
			all = append(all, page...)
			after = page[len(page)-1].ID
		}
		whole, err := ex.AllMessages(ctx, "", 0)
		if err != nil {
			return err
		}
		if !slices.Equal(ids(whole), ids(all)) {
			t.Errorf("AllMessages with no limit = %v, pages gave %v", ids(whole), ids(all))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	if !maps.Equal(setOut, map[string]string{"a": "1", "b": "2"}) {
		t.Errorf("Settings = %v", setOut)
	}
	if !maps.Equal(userOut[alice.ID], map[string]string{"forwarding": "deny"}) || len(userOut[carol.ID]) != 0 {
		t.Errorf("UserSettings = %v", userOut)
	}
	if len(tokOut) != 2 || string(tokOut[0].Hash) != "tok-a" || string(tokOut[1].Hash) != "tok-b" ||
		tokOut[1].UserID != carol.ID || tokOut[1].Label != "cli" || !tokOut[1].Created.Equal(now) ||
		!tokOut[1].Expires.Equal(now.Add(time.Hour)) || !tokOut[0].Expires.IsZero() {
		t.Errorf("Tokens = %+v", tokOut)
	}
	if len(grtOut) != 2 || string(grtOut[0].Hash) != "g-1" || !sameGrant(grtOut[0], grants[1]) || !sameGrant(grtOut[1], grants[0]) {
		t.Errorf("Grants = %+v", grtOut)
	}
	if len(famOut) != 1 || !famOut["f3"].Equal(until) {
		t.Errorf("RevokedFamilies = %v", famOut)
	}
	if len(ups) != 2 || ups[0].UserID != min(alice.ID, carol.ID) || ups[0].Created.IsZero() {
		t.Errorf("Uploads = %+v", ups)
	}
	want := slices.SortedFunc(slices.Values(msgs), func(a, b meta.Message) int { return strings.Compare(a.ID, b.ID) })
	if !slices.Equal(ids(all), ids(want)) {
		t.Fatalf("AllMessages = %v, want %v", ids(all), ids(want))
	}
	for i := range all {
		checkMessage(t, all[i], want[i])
	}
	var inboxState meta.FolderState
	for _, f := range fsOut {
		if f.UserID == alice.ID && f.Folder == meta.Inbox {
			inboxState = f.State
		}
	}
	if len(fsOut) != 4 || inboxState.UIDNext != 3 {
		t.Errorf("FolderStates = %+v, want 4 folders, alice's inbox with UIDNext 3", fsOut)
	}

	// The load, into an empty store.
	dst := newStore()
	users, err := src.Users(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var reset int64
	err = dst.Update(ctx, func(tx meta.Tx) error {
		l, ok := tx.(meta.Loader)
		if !ok {
			t.Fatalf("the Tx of Update (%T) is not a meta.Loader", tx)
		}
		for _, u := range users {
			if err := l.LoadUser(ctx, u); err != nil {
				return err
			}
		}
		for _, m := range all {
			if err := l.LoadMessage(ctx, m); err != nil {
				return err
			}
		}
		for _, f := range fsOut {
			if err := l.LoadFolderState(ctx, f); err != nil {
				return err
			}
		}
		for _, up := range ups {
			if err := l.LoadUpload(ctx, up); err != nil {
				return err
			}
		}
		var err error
		reset, err = l.ResetFeed(ctx, srcCursor)
		return err
	})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	for _, u := range users {
		got, err := dst.UserByID(ctx, u.ID)
		if err != nil || got.Address != u.Address || got.PasswordHash != u.PasswordHash || !got.Created.Equal(u.Created) {
			t.Errorf("loaded user %d = %+v, %v; want %+v", u.ID, got, err, u)
		}
	}
	for _, u := range []meta.User{
		{ID: carol.ID, Address: "other@example.org", PasswordHash: "x"}, // a taken ID
		{ID: carol.ID + 10, Address: carol.Address, PasswordHash: "x"},  // a taken address
	} {
		err := dst.Update(ctx, func(tx meta.Tx) error { return tx.(meta.Loader).LoadUser(ctx, u) })
		wantErr(t, "LoadUser of a taken ID or address", err, meta.ErrExists)
	}
	dave := addUser(t, dst, "dave@example.org")
	if dave.ID <= carol.ID {
		t.Errorf("AddUser after LoadUser gave ID %d, not above the loaded %d", dave.ID, carol.ID)
	}
	if err := dst.View(ctx, func(r meta.Reader) error {
		got, err := r.(meta.Exporter).Uploads(ctx)
		if err != nil {
			return err
		}
		if !slices.EqualFunc(got, ups, func(a, b meta.Upload) bool {
			return a.UserID == b.UserID && a.Ref == b.Ref && a.Created.Equal(b.Created)
		}) {
			t.Errorf("loaded uploads = %+v, want %+v", got, ups)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, m := range all {
		got, err := dst.Message(ctx, m.UserID, m.ID)
		if err != nil {
			t.Fatalf("loaded message %q: %v", m.ID, err)
		}
		checkMessage(t, got, m)
		if got.UID != m.UID || got.ModSeq != m.ModSeq {
			t.Errorf("loaded message %q: UID %d ModSeq %d, want %d %d", m.ID, got.UID, got.ModSeq, m.UID, m.ModSeq)
		}
	}
	for _, f := range fsOut {
		got, err := dst.FolderState(ctx, f.UserID, f.Folder)
		if err != nil || got != f.State {
			t.Errorf("loaded state of %s of user %d = %+v, %v; want %+v", f.Folder, f.UserID, got, err, f.State)
		}
	}
	err = dst.Update(ctx, func(tx meta.Tx) error {
		return tx.(meta.Loader).LoadFolderState(ctx, meta.UserFolder{UserID: carol.ID + 100, Folder: meta.Inbox})
	})
	wantErr(t, "LoadFolderState of no such user", err, meta.ErrNotFound)

	// The feed: every cursor of either store is gone, the new one is not.
	if c := cursor(t, dst); reset <= srcCursor || c != reset {
		t.Errorf("ResetFeed(%d) = %d, Cursor %d: want one above the source's and equal", srcCursor, reset, c)
	}
	for _, since := range []int64{0, srcCursor, reset - 1} {
		_, err := dst.Changes(ctx, alice.ID, since, 0)
		wantErr(t, "Changes from a cursor before ResetFeed", err, meta.ErrCursorGone)
	}
	if got := changes(t, dst, alice.ID, reset); len(got) != 0 {
		t.Errorf("Changes after ResetFeed = %v, want none", got)
	}
	insert(t, dst, message(alice.ID, "m9", meta.Inbox, day(9)))
	if got := changes(t, dst, alice.ID, reset); !slices.Equal(got, []change{{"m9", meta.Inbox, meta.Created}}) {
		t.Errorf("Changes after a write past ResetFeed = %v", got)
	}
	if m9 := readMessage(t, dst, alice.ID, "m9"); m9.UID != 3 {
		t.Errorf("the first message after the copy has UID %d in the inbox, want 3 (2 was given before it)", m9.UID)
	}
	// A reset below the store's own cursor still goes above it.
	before := cursor(t, dst)
	var again int64
	update(t, dst, func(ctx context.Context, tx meta.Tx) error {
		var err error
		again, err = tx.(meta.Loader).ResetFeed(ctx, 1)
		return err
	})
	if again <= before {
		t.Errorf("ResetFeed(1) on a store at cursor %d = %d", before, again)
	}
	_, err = dst.Changes(ctx, alice.ID, before, 0)
	wantErr(t, "Changes from the cursor before the second ResetFeed", err, meta.ErrCursorGone)
}

func sameGrant(a, b meta.Grant) bool {
	return bytes.Equal(a.Hash, b.Hash) && a.Kind == b.Kind && a.Family == b.Family && a.ClientID == b.ClientID &&
		a.UserID == b.UserID && a.Scope == b.Scope && a.RedirectURI == b.RedirectURI && a.Challenge == b.Challenge &&
		a.JKT == b.JKT && a.UserCode == b.UserCode && a.Created.Equal(b.Created) && a.Expires.Equal(b.Expires) &&
		a.Used == b.Used && a.Revoked == b.Revoked
}
