// Package metatest is the conformance suite for meta.Store: every
// implementation (meta/sqlite, meta/postgres) runs Test, so that the
// mailbox can rely on the contract in package meta's doc comments and not on
// one implementation's habits.
package metatest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/resource"
)

// Test runs the suite. open must return a new, empty store each time it is
// called (once per subtest); the suite closes it.
//
// Besides the contract, the suite requires what any MVCC database gives: an
// Update can commit while a View is open, and the View does not see it.
func Test(t *testing.T, open func(t *testing.T) meta.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s meta.Store)
	}{
		{"Settings", testSettings},
		{"Once", testOnce},
		{"Authz", testAuthz},
		{"Users", testUsers},
		{"DeleteUser", testDeleteUser},
		{"DeleteUserEverything", testDeleteUserEverything},
		{"UserSettings", testUserSettings},
		{"Tokens", testTokens},
		{"Messages", testMessages},
		{"MessagesPerUser", testMessagesPerUser},
		{"List", testList},
		{"UpdateMessage", testUpdateMessage},
		{"Keywords", testKeywords},
		{"UIDs", testUIDs},
		{"Trash", testTrash},
		{"FolderCounts", testFolderCounts},
		{"Search", testSearch},
		{"Refs", testRefs},
		{"PruneUploads", testPruneUploads},
		{"Changes", testChanges},
		{"PruneChanges", testPruneChanges},
		{"Cursor", testCursor},
		{"Rollback", testRollback},
		{"RollbackPanic", testRollbackPanic},
		{"TxSeesOwnWrites", testTxSeesOwnWrites},
		{"View", testView},
		{"Concurrent", testConcurrent},
		{"Jobs", testJobs},
		{"Nodes", testNodes},
		{"Locks", testLocks},
		{"Envelopes", testEnvelopes},
		{"WriteConflict", testWriteConflict},
		{"RangeWriters", testRangeWriters},
		{"FeedRace", testFeedRace},
		{"FailHalfway", testFailHalfway},
		{"Condemn", testCondemn},
		{"CondemnRace", testCondemnRace},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tt.fn(t, s)
		})
	}
	t.Run("Port", func(t *testing.T) { testPort(t, open) })
}

// update runs fn in s.Update and fails the test on error.
func update(t *testing.T, s meta.Store, fn func(ctx context.Context, tx meta.Tx) error) {
	t.Helper()
	ctx := t.Context()
	if err := s.Update(ctx, func(tx meta.Tx) error { return fn(ctx, tx) }); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

// addUser adds a user and returns it with its ID.
func addUser(t *testing.T, s meta.Store, address string) meta.User {
	t.Helper()
	var u meta.User
	update(t, s, func(ctx context.Context, tx meta.Tx) error {
		var err error
		u, err = tx.AddUser(ctx, meta.User{Address: address, PasswordHash: "$argon2id$" + address})
		return err
	})
	return u
}

// rid returns the ID of the resource with the content s.
func rid(s string) resource.ID { return resource.IDOf([]byte(s)) }

// zone is a non-UTC zone: stored times must come back Equal whatever zone
// they were given in.
var zone = time.FixedZone("UTC+2", 2*3600)

// day returns a Date on day d of 2025 with nanoseconds, to check precision.
func day(d int) time.Time { return time.Date(2025, 1, d, 10, 30, 0, 123456789, zone) }

// message returns a full message of the user.
func message(userID int64, id string, folder meta.Folder, date time.Time, refs ...meta.Ref) meta.Message {
	status := meta.StatusComplete
	switch folder {
	case meta.Sent:
		status = meta.StatusSent
	case meta.Drafts:
		status = meta.StatusDraft
	}
	base := date
	if base.IsZero() { // a draft
		base = day(1)
	}
	return meta.Message{
		ID:          id,
		UserID:      userID,
		Folder:      folder,
		MessageID:   "<" + id + "@example.org>",
		ThreadID:    "<thread-" + id + "@example.org>",
		Status:      status,
		From:        "Alice <alice@example.org>",
		Subject:     "Subject of " + id,
		Date:        date,
		Created:     base.Add(time.Second),
		Updated:     base.Add(2 * time.Second),
		Placeholder: []byte(`{"id":"` + id + `"}`),
		Refs:        refs,
	}
}

func insert(t *testing.T, s meta.Store, ms ...meta.Message) {
	t.Helper()
	update(t, s, func(ctx context.Context, tx meta.Tx) error {
		for _, m := range ms {
			if err := tx.InsertMessage(ctx, m); err != nil {
				return err
			}
		}
		return nil
	})
}

func sortedRefs(rs []meta.Ref) []meta.Ref {
	rs = slices.Clone(rs)
	sort.Slice(rs, func(i, j int) bool { return rs[i].ID < rs[j].ID })
	return rs
}

// checkMessage compares every field; Refs as a set.
func checkMessage(t *testing.T, got, want meta.Message) {
	t.Helper()
	var diffs []string
	diff := func(field string, g, w any) { diffs = append(diffs, fmt.Sprintf("%s = %v, want %v", field, g, w)) }
	if got.ID != want.ID {
		diff("ID", got.ID, want.ID)
	}
	if got.UserID != want.UserID {
		diff("UserID", got.UserID, want.UserID)
	}
	if got.Folder != want.Folder {
		diff("Folder", got.Folder, want.Folder)
	}
	if got.MessageID != want.MessageID {
		diff("MessageID", got.MessageID, want.MessageID)
	}
	if got.ThreadID != want.ThreadID {
		diff("ThreadID", got.ThreadID, want.ThreadID)
	}
	if got.Status != want.Status {
		diff("Status", got.Status, want.Status)
	}
	if got.StatusReason != want.StatusReason {
		diff("StatusReason", got.StatusReason, want.StatusReason)
	}
	if got.Seen != want.Seen {
		diff("Seen", got.Seen, want.Seen)
	}
	if got.From != want.From {
		diff("From", got.From, want.From)
	}
	if got.Subject != want.Subject {
		diff("Subject", got.Subject, want.Subject)
	}
	if !got.Date.Equal(want.Date) {
		diff("Date", got.Date, want.Date)
	}
	if !got.Created.Equal(want.Created) {
		diff("Created", got.Created, want.Created)
	}
	if !got.Updated.Equal(want.Updated) {
		diff("Updated", got.Updated, want.Updated)
	}
	if !bytes.Equal(got.Placeholder, want.Placeholder) {
		diff("Placeholder", string(got.Placeholder), string(want.Placeholder))
	}
	if got.TrashedFrom != want.TrashedFrom {
		diff("TrashedFrom", got.TrashedFrom, want.TrashedFrom)
	}
	if !got.Trashed.Equal(want.Trashed) {
		diff("Trashed", got.Trashed, want.Trashed)
	}
	if g, w := sortedRefs(got.Refs), sortedRefs(want.Refs); !slices.Equal(g, w) {
		diff("Refs", g, w)
	}
	if !slices.Equal(got.Keywords, want.Keywords) {
		diff("Keywords", got.Keywords, want.Keywords)
	}
	if len(diffs) > 0 {
		t.Errorf("message %q:\n\t%s", want.ID, strings.Join(diffs, "\n\t"))
	}
}

func ptr[T any](v T) *T { return &v }

func ids(ms []meta.Message) []string {
	var s []string
	for _, m := range ms {
		s = append(s, m.ID)
	}
	return s
}

// change is a Change without its Seq, for comparing logs.
type change struct {
	ID     string
	Folder meta.Folder
	Kind   meta.ChangeKind
}

// changes returns the user's log since the cursor, checking that the
// entries are the user's and in strictly increasing Seq order.
func changes(t *testing.T, s meta.Reader, userID, since int64) []change {
	t.Helper()
	cs, err := s.Changes(t.Context(), userID, since, 0)
	if err != nil {
		t.Fatalf("Changes(%d, %d): %v", userID, since, err)
	}
	var out []change
	last := since
	for _, c := range cs {
		if c.UserID != userID {
			t.Errorf("Changes(%d): entry %d is of user %d", userID, c.Seq, c.UserID)
		}
		if c.Seq <= last {
			t.Errorf("Changes(%d, %d): seq %d after %d", userID, since, c.Seq, last)
		}
		last = c.Seq
		out = append(out, change{c.MessageID, c.Folder, c.Kind})
	}
	return out
}

func cursor(t *testing.T, r meta.Reader) int64 {
	t.Helper()
	c, err := r.Cursor(t.Context())
	if err != nil {
		t.Fatalf("Cursor: %v", err)
	}
	return c
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: error %v, want %v", what, err, want)
	}
}

func testSettings(t *testing.T, s meta.Store) {
	ctx := t.Context()
	_, err := s.Setting(ctx, "domain")
	wantErr(t, "unset setting", err, meta.ErrNotFound)
	for _, v := range []string{"example.org", "example.net", ""} {
		update(t, s, func(ctx context.Context, tx meta.Tx) error { return tx.SetSetting(ctx, "domain", v) })
		got, err := s.Setting(ctx, "domain")
		if err != nil || got != v {
			t.Errorf("Setting after SetSetting(%q) = %q, %v", v, got, err)
		}
	}
	_, err = s.Setting(ctx, "other")
	wantErr(t, "other setting", err, meta.ErrNotFound)
}

func testUsers(t *testing.T, s meta.Store) {
	ctx := t.Context()
	bob := addUser(t, s, "bob@example.org")
	alice := addUser(t, s, "alice@example.org")
	if bob.ID == 0 || alice.ID == 0 || bob.ID == alice.ID {
		t.Fatalf("ids %d and %d, want distinct and non-zero", bob.ID, alice.ID)
	}
	if bob.Created.IsZero() {
		t.Error("AddUser left Created zero")
	}

	err := s.Update(ctx, func(tx meta.Tx) error {
		_, err := tx.AddUser(ctx, meta.User{Address: "bob@example.org", PasswordHash: "x"})
		return err
	})
	wantErr(t, "duplicate address", err, meta.ErrExists)

	for _, tc := range []struct {
		name string
		get  func() (meta.User, error)
		want meta.User
	}{
		{"by address", func() (meta.User, error) { return s.UserByAddress(ctx, "bob@example.org") }, bob},
		{"by id", func() (meta.User, error) { return s.UserByID(ctx, alice.ID) }, alice},
	} {
		got, err := tc.get()
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got.ID != tc.want.ID || got.Address != tc.want.Address || got.PasswordHash != tc.want.PasswordHash ||
			!got.Created.Equal(tc.want.Created) {
			t.Errorf("%s = %+v, want %+v", tc.name, got, tc.want)
		}
	}
	_, err = s.UserByAddress(ctx, "carol@example.org")
	wantErr(t, "unknown address", err, meta.ErrNotFound)
	_, err = s.UserByID(ctx, alice.ID+bob.ID+100)
	wantErr(t, "unknown id", err, meta.ErrNotFound)

	addUser(t, s, "carol@example.org")
	us, err := s.Users(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, u := range us {
		addrs = append(addrs, u.Address)
	}
	if want := []string{"alice@example.org", "bob@example.org", "carol@example.org"}; !slices.Equal(addrs, want) {
		t.Errorf("Users = %v, want %v", addrs, want)
	}

	update(t, s, func(ctx context.Context, tx meta.Tx) error { return tx.SetPassword(ctx, bob.ID, "new-hash") })
	if got, err := s.UserByID(ctx, bob.ID); err != nil || got.PasswordHash != "new-hash" {
		t.Errorf("after SetPassword: %+v, %v", got, err)
	}
	err = s.Update(ctx, func(tx meta.Tx) error { return tx.SetPassword(ctx, bob.ID+alice.ID+100, "h") })
	wantErr(t, "SetPassword of unknown user", err, meta.ErrNotFound)
}

func testDeleteUser(t *testing.T, s meta.Store) {
	ctx := t.Context()
	bob := addUser(t, s, "bob@example.org")
	alice := addUser(t, s, "alice@example.org")
	shared, bobsOwn, uploaded := rid("shared"), rid("bob's own"), rid("bob's upload")
	update(t, s, func(ctx context.Context, tx meta.Tx) error {
		if err := tx.AddToken(ctx, meta.Token{Hash: []byte("bob-token-hash-000000000000000000"), UserID: bob.ID, Label: "cli"}); err != nil {
			return err
		}
		if err := tx.AddUpload(ctx, bob.ID, meta.Ref{ID: uploaded, Size: 3}); err != nil {
			return err
		}
		if err := tx.InsertMessage(ctx, message(bob.ID, "b1", meta.Sent, day(1), meta.Ref{ID: shared, Size: 6}, meta.Ref{ID: bobsOwn, Size: 9})); err != nil {
			return err
		}
		return tx.InsertMessage(ctx, message(alice.ID, "a1", meta.Inbox, day(1), meta.Ref{ID: shared, Size: 6}))
	})
	before := cursor(t, s)

	update(t, s, func(ctx context.Context, tx meta.Tx) error { return tx.DeleteUser(ctx, bob.ID) })

	_, err := s.UserByID(ctx, bob.ID)
	wantErr(t, "deleted user by id", err, meta.ErrNotFound)
	_, err = s.UserByAddress(ctx, "bob@example.org")
	wantErr(t, "deleted user by address", err, meta.ErrNotFound)
	_, err = s.TokenByHash(ctx, []byte("bob-token-hash-000000000000000000"))
	wantErr(t, "deleted user's token", err, meta.ErrNotFound)
	_, err = s.Message(ctx, bob.ID, "b1")
	wantErr(t, "deleted user's message", err, meta.ErrNotFound)
	if cs := changes(t, s, bob.ID, 0); len(cs) != 0 {
		t.Errorf("deleted user's changes: %v", cs)
	}
	for _, tc := range []struct {
		id   resource.ID
		want bool
	}{{shared, true}, {bobsOwn, false}, {uploaded, false}} {
		if got, err := s.Referenced(ctx, tc.id); err != nil || got != tc.want {
			t.Errorf("Referenced(%s) after DeleteUser = %v, %v; want %v", tc.id, got, err, tc.want)
		}
		if got, err := s.Holds(ctx, bob.ID, tc.id); err != nil || got {
			t.Errorf("deleted user Holds(%s) = %v, %v", tc.id, got, err)
		}
	}
	if _, err := s.Message(ctx, alice.ID, "a1"); err != nil {
		t.Errorf("other user's message after DeleteUser: %v", err)
	}
	if c := cursor(t, s); c < before {
		t.Errorf("Cursor went from %d to %d on DeleteUser", before, c)
	}
	// A new user at the same address starts from nothing.
	bob2 := addUser(t, s, "bob@example.org")
	if ms, err := s.Messages(ctx, bob2.ID, meta.ListOptions{Folder: meta.Sent}); err != nil || len(ms) != 0 {
		t.Errorf("new user's sent folder: %v, %v", ids(ms), err)
	}
	err = s.Update(ctx, func(tx meta.Tx) error { return tx.DeleteUser(ctx, bob.ID) })
	wantErr(t, "delete deleted user", err, meta.ErrNotFound)
}

func testTokens(t *testing.T, s meta.Store) {
	ctx := t.Context()
	bob := addUser(t, s, "bob@example.org")
	expires := day(20)
	created := day(1)
	toks := []meta.Token{
		{Hash: bytes.Repeat([]byte{1}, 32), UserID: bob.ID, Label: "forever", Created: created},
		{Hash: bytes.Repeat([]byte{2}, 32), UserID: bob.ID, Label: "expiring", Created: created, Expires: expires},
	}
	update(t, s, func(ctx context.Context, tx meta.Tx) error {
		for _, tok := range toks {
			if err := tx.AddToken(ctx, tok); err != nil {
				return err
			}
		}
		return nil
	})
	for _, want := range toks {
		got, err := s.TokenByHash(ctx, want.Hash)
		if err != nil {
			t.Errorf("TokenByHash(%s): %v", want.Label, err)
			continue
		}
		if !bytes.Equal(got.Hash, want.Hash) || got.UserID != want.UserID || got.Label != want.Label ||
			!got.Created.Equal(want.Created) || !got.Expires.Equal(want.Expires) || got.Expires.IsZero() != want.Expires.IsZero() {
			t.Errorf("TokenByHash(%s) = %+v, want %+v", want.Label, got, want)
		}
	}
	err := s.Update(ctx, func(tx meta.Tx) error { return tx.AddToken(ctx, toks[0]) })
	wantErr(t, "duplicate token", err, meta.ErrExists)
	_, err = s.TokenByHash(ctx, bytes.Repeat([]byte{3}, 32))
	wantErr(t, "unknown token", err, meta.ErrNotFound)

	update(t, s, func(ctx context.Context, tx meta.Tx) error { return tx.DeleteToken(ctx, toks[0].Hash) })
	_, err = s.TokenByHash(ctx, toks[0].Hash)
	wantErr(t, "deleted token", err, meta.ErrNotFound)
	if _, err := s.TokenByHash(ctx, toks[1].Hash); err != nil {
		t.Errorf("other token after DeleteToken: %v", err)
	}
	err = s.Update(ctx, func(tx meta.Tx) error { return tx.DeleteToken(ctx, toks[0].Hash) })
	wantErr(t, "delete deleted token", err, meta.ErrNotFound)
}

func testMessages(t *testing.T, s meta.Store) {
	ctx := t.Context()
	bob := addUser(t, s, "bob@example.org")
	ms := []meta.Message{
		message(bob.ID, "m1", meta.Inbox, day(1), meta.Ref{ID: rid("a"), Size: 1}, meta.Ref{ID: rid("b"), Size: 1 << 40}),
		message(bob.ID, "m2", meta.Drafts, time.Time{}),
		func() meta.Message {
			m := message(bob.ID, "m3", meta.Inbox, day(2))
			m.Status, m.StatusReason, m.Seen = meta.StatusFailed, "remote gone", true
			return m
		}(),
	}
	insert(t, s, ms...)
	for _, want := range ms {
		got, err := s.Message(ctx, bob.ID, want.ID)
		if err != nil {
			t.Errorf("Message(%s): %v", want.ID, err)
			continue
		}
		checkMessage(t, got, want)
	}
	if got, err := s.Message(ctx, bob.ID, "m2"); err == nil && !got.Date.IsZero() {
		t.Errorf("draft Date = %v, want zero", got.Date)
	}

	err := s.Update(ctx, func(tx meta.Tx) error {
		return tx.InsertMessage(ctx, message(bob.ID, "m1", meta.Sent, day(3)))
	})
	wantErr(t, "duplicate id", err, meta.ErrExists)
	_, err = s.Message(ctx, bob.ID, "nope")
	wantErr(t, "unknown message", err, meta.ErrNotFound)

	// Writing to oneself: two copies with one Message-ID.
	sent := message(bob.ID, "self-sent", meta.Sent, day(4))
	recv := message(bob.ID, "self-inbox", meta.Inbox, day(4))
	recv.MessageID = sent.MessageID
	recv.Created = sent.Created.Add(time.Millisecond)
	insert(t, s, sent, recv)
	got, err := s.MessagesByMessageID(ctx, bob.ID, sent.MessageID)
	if err != nil {
		t.Fatal(err)
	}
	if g := ids(got); len(g) != 2 || !slices.Contains(g, "self-sent") || !slices.Contains(g, "self-inbox") {
		t.Errorf("MessagesByMessageID = %v, want both copies", g)
	}
	if got, err := s.MessagesByMessageID(ctx, bob.ID, "<none@example.org>"); err != nil || len(got) != 0 {
		t.Errorf("MessagesByMessageID(unknown) = %v, %v; want none", ids(got), err)
	}

	update(t, s, func(ctx context.Context, tx meta.Tx) error { return tx.DeleteMessage(ctx, bob.ID, "m1") })
	_, err = s.Message(ctx, bob.ID, "m1")
	wantErr(t, "deleted message", err, meta.ErrNotFound)
	err = s.Update(ctx, func(tx meta.Tx) error { return tx.DeleteMessage(ctx, bob.ID, "m1") })
	wantErr(t, "delete deleted message", err, meta.ErrNotFound)
	// The ID is free again.
	insert(t, s, message(bob.ID, "m1", meta.Inbox, day(5)))
}

func testMessagesPerUser(t *testing.T, s meta.Store) {
	ctx := t.Context()
	bob := addUser(t, s, "bob@example.org")
	eve := addUser(t, s, "eve@example.org")
	m := message(bob.ID, "bobs", meta.Inbox, day(1), meta.Ref{ID: rid("x"), Size: 1})
	insert(t, s, m)

	_, err := s.Message(ctx, eve.ID, "bobs")
	wantErr(t, "another user's message", err, meta.ErrNotFound)
	if got, err := s.MessagesByMessageID(ctx, eve.ID, m.MessageID); err != nil || len(got) != 0 {
		t.Errorf("MessagesByMessageID of another user's = %v, %v", ids(got), err)
	}
	if got, err := s.Messages(ctx, eve.ID, meta.ListOptions{Folder: meta.Inbox}); err != nil || len(got) != 0 {
		t.Errorf("another user's inbox = %v, %v", ids(got), err)
	}
	stolen := m
	stolen.UserID = eve.ID
	stolen.Subject = "mine now"
	err = s.Update(ctx, func(tx meta.Tx) error { return tx.UpdateMessage(ctx, stolen) })
	wantErr(t, "update another user's message", err, meta.ErrNotFound)
	err = s.Update(ctx, func(tx meta.Tx) error { return tx.DeleteMessage(ctx, eve.ID, "bobs") })
	wantErr(t, "delete another user's message", err, meta.ErrNotFound)
	err = s.Update(ctx, func(tx meta.Tx) error { return tx.InsertMessage(ctx, stolen) })
	wantErr(t, "insert with another user's id", err, meta.ErrExists)

	got, err := s.Message(ctx, bob.ID, "bobs")
	if err != nil {
		t.Fatal(err)
	}
	checkMessage(t, got, m)
	if cs := changes(t, s, eve.ID, 0); len(cs) != 0 {
		t.Errorf("eve's changes after failed writes: %v", cs)
	}
}

func testList(t *testing.T, s meta.Store) {
	ctx := t.Context()
	bob := addUser(t, s, "bob@example.org")
	alice := addUser(t, s, "alice@example.org")
	tie1 := message(bob.ID, "tie-older", meta.Inbox, day(3))
	tie2 := message(bob.ID, "tie-newer", meta.Inbox, day(3))
	tie2.Created = tie1.Created.Add(time.Second)
	d1 := message(bob.ID, "draft-older", meta.Drafts, time.Time{})
	d2 := message(bob.ID, "draft-newer", meta.Drafts, time.Time{})
	d1.Created, d2.Created = day(1), day(2)
	// Inserted out of order, so that insertion order cannot pass for date order.
	insert(t, s,
		message(bob.ID, "jan2", meta.Inbox, day(2)),
		tie1,
		message(bob.ID, "jan5", meta.Inbox, day(5)),
		message(bob.ID, "jan1", meta.Inbox, day(1)),
		tie2,
		message(bob.ID, "sent", meta.Sent, day(9)),
		message(alice.ID, "alices", meta.Inbox, day(9)),
		d1, d2,
	)
	for _, tc := range []struct {
		opt  meta.ListOptions
		want []string
	}{
		{meta.ListOptions{Folder: meta.Inbox}, []string{"jan5", "tie-newer", "tie-older", "jan2", "jan1"}},
		{meta.ListOptions{Folder: meta.Inbox, Limit: 2}, []string{"jan5", "tie-newer"}},
		{meta.ListOptions{Folder: meta.Inbox, Limit: -1}, []string{"jan5", "tie-newer", "tie-older", "jan2", "jan1"}},
		{meta.ListOptions{Folder: meta.Inbox, Limit: 100}, []string{"jan5", "tie-newer", "tie-older", "jan2", "jan1"}},
		{meta.ListOptions{Folder: meta.Sent}, []string{"sent"}},
		{meta.ListOptions{Folder: meta.Drafts}, []string{"draft-newer", "draft-older"}},
		// Paging: After is the last message of the previous page.
		{meta.ListOptions{Folder: meta.Inbox, Limit: 2, After: &meta.ListKey{Date: day(5), Created: day(5).Add(time.Second), ID: "jan5"}},
			[]string{"tie-newer", "tie-older"}},
		{meta.ListOptions{Folder: meta.Inbox, After: ptr(meta.KeyOf(tie2))},
			[]string{"tie-older", "jan2", "jan1"}},
		// Same Date and Created: the ID breaks the tie.
		{meta.ListOptions{Folder: meta.Inbox, After: &meta.ListKey{Date: day(3), Created: tie2.Created, ID: "tie-a"}},
			[]string{"tie-older", "jan2", "jan1"}},
		{meta.ListOptions{Folder: meta.Inbox, After: &meta.ListKey{Date: day(3), Created: tie2.Created, ID: "tie-z"}},
			[]string{"tie-newer", "tie-older", "jan2", "jan1"}},
		{meta.ListOptions{Folder: meta.Inbox, After: &meta.ListKey{Date: day(1), Created: day(1).Add(time.Second), ID: "jan1"}}, nil},
		{meta.ListOptions{Folder: meta.Inbox, After: &meta.ListKey{Date: day(30)}}, []string{"jan5", "tie-newer", "tie-older", "jan2", "jan1"}},
		{meta.ListOptions{Folder: meta.Drafts, After: ptr(meta.KeyOf(d2))}, []string{"draft-older"}},
	} {
		got, err := s.Messages(ctx, bob.ID, tc.opt)
		if err != nil {
			t.Errorf("Messages(%+v): %v", tc.opt, err)
			continue
		}
		if !slices.Equal(ids(got), tc.want) {
			t.Errorf("Messages(%+v) = %v, want %v", tc.opt, ids(got), tc.want)
		}
		for _, m := range got {
			if m.UserID != bob.ID || m.Folder != tc.opt.Folder {
				t.Errorf("Messages(%+v): %s is of user %d in %s", tc.opt, m.ID, m.UserID, m.Folder)
			}
		}
	}
}

func testUpdateMessage(t *testing.T, s meta.Store) {
	ctx := t.Context()
	bob := addUser(t, s, "bob@example.org")
	m := message(bob.ID, "d", meta.Drafts, time.Time{}, meta.Ref{ID: rid("old"), Size: 3})
	insert(t, s, m)

	// Edit the draft: every field changes but ID and owner.
	m.MessageID, m.ThreadID = "<new@example.org>", "<new-thread@example.org>"
	m.Subject, m.From, m.Seen, m.StatusReason = "edited", "Bob <bob@example.org>", true, "why not"
	m.Created, m.Updated = day(7), day(8)
	m.Placeholder = []byte(`{"edited":true}`)
	m.Refs = []meta.Ref{{ID: rid("new"), Size: 3}, {ID: rid("newer"), Size: 5}}
	update(t, s, func(ctx context.Context, tx meta.Tx) error { return tx.UpdateMessage(ctx, m) })
	got, err := s.Message(ctx, bob.ID, "d")
	if err != nil {
		t.Fatal(err)
	}
	checkMessage(t, got, m)
	if ok, _ := s.Holds(ctx, bob.ID, rid("old")); ok {
		t.Error("a ref dropped by UpdateMessage is still held")
	}

	// Send it: the message moves to sent.
	m.Folder, m.Status, m.Date = meta.Sent, meta.StatusSent, day(9)
	update(t, s, func(ctx context.Context, tx meta.Tx) error { return tx.UpdateMessage(ctx, m) })
	got, err = s.Message(ctx, bob.ID, "d")
	if err != nil {
		t.Fatal(err)
	}
	checkMessage(t, got, m)
	if ms, err := s.Messages(ctx, bob.ID, meta.ListOptions{Folder: meta.Drafts}); err != nil || len(ms) != 0 {
		t.Errorf("drafts after move = %v, %v", ids(ms), err)
	}
	if ms, err := s.Messages(ctx, bob.ID, meta.ListOptions{Folder: meta.Sent}); err != nil || !slices.Equal(ids(ms), []string{"d"}) {
		t.Errorf("sent after move = %v, %v", ids(ms), err)
	}

	missing := message(bob.ID, "missing", meta.Inbox, day(1))
	err = s.Update(ctx, func(tx meta.Tx) error { return tx.UpdateMessage(ctx, missing) })
	wantErr(t, "update missing message", err, meta.ErrNotFound)
}

func testRefs(t *testing.T, s meta.Store) {
	ctx := t.Context()
	bob := addUser(t, s, "bob@example.org")
	eve := addUser(t, s, "eve@example.org")
	up, inMsg, evesOnly, nothing := rid("uploaded"), rid("in a message"), rid("eve's"), rid("nothing")
	update(t, s, func(ctx context.Context, tx meta.Tx) error {
		if err := tx.AddUpload(ctx, bob.ID, meta.Ref{ID: up, Size: 8}); err != nil {
			return err
		}
		// Idempotent.
		if err := tx.AddUpload(ctx, bob.ID, meta.Ref{ID: up, Size: 8}); err != nil {
			return err
		}
		if err := tx.InsertMessage(ctx, message(bob.ID, "b", meta.Inbox, day(1), meta.Ref{ID: inMsg, Size: 12})); err != nil {
			return err
		}
		return tx.InsertMessage(ctx, message(eve.ID, "e", meta.Inbox, day(1), meta.Ref{ID: evesOnly, Size: 5}))
	})
	for _, tc := range []struct {
		user int64
		id   resource.ID
		want bool
	}{
		{bob.ID, up, true},        // via upload
		{bob.ID, inMsg, true},     // via own message
		{bob.ID, evesOnly, false}, // not via another user's message
		{bob.ID, nothing, false},
		{eve.ID, up, false}, // not via another user's upload
		{eve.ID, evesOnly, true},
	} {
		if got, err := s.Holds(ctx, tc.user, tc.id); err != nil || got != tc.want {
			t.Errorf("Holds(%d, %s) = %v, %v; want %v", tc.user, tc.id, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		id   resource.ID
		want bool
	}{{up, true}, {inMsg, true}, {evesOnly, true}, {nothing, false}} {
		if got, err := s.Referenced(ctx, tc.id); err != nil || got != tc.want {
			t.Errorf("Referenced(%s) = %v, %v; want %v", tc.id, got, err, tc.want)
		}
	}
	update(t, s, func(ctx context.Context, tx meta.Tx) error { return tx.DeleteMessage(ctx, eve.ID, "e") })
	if got, err := s.Referenced(ctx, evesOnly); err != nil || got {
		t.Errorf("Referenced after its only message was deleted = %v, %v", got, err)
	}
}

func testPruneUploads(t *testing.T, s meta.Store) {
	ctx := t.Context()
	bob := addUser(t, s, "bob@example.org")
	only, both := rid("upload only"), rid("upload and message")
	update(t, s, func(ctx context.Context, tx meta.Tx) error {
		if err := tx.AddUpload(ctx, bob.ID, meta.Ref{ID: only, Size: 1}); err != nil {
			return err
		}
		if err := tx.AddUpload(ctx, bob.ID, meta.Ref{ID: both, Size: 1}); err != nil {
			return err
		}
		return tx.InsertMessage(ctx, message(bob.ID, "m", meta.Drafts, time.Time{}, meta.Ref{ID: both, Size: 1}))
	})
	n, err := s.PruneUploads(ctx, time.Now().Add(-time.Hour))
	if err != nil || n != 0 {
		t.Errorf("PruneUploads(an hour ago) = %d, %v; want 0", n, err)
	}
	n, err = s.PruneUploads(ctx, time.Now().Add(time.Hour))
	if err != nil || n != 2 {
		t.Errorf("PruneUploads(in an hour) = %d, %v; want 2", n, err)
	}
	for _, tc := range []struct {
		id   resource.ID
		want bool
	}{{only, false}, {both, true}} {
		if got, err := s.Holds(ctx, bob.ID, tc.id); err != nil || got != tc.want {
			t.Errorf("Holds(%s) after PruneUploads = %v, %v; want %v", tc.id, got, err, tc.want)
		}
		if got, err := s.Referenced(ctx, tc.id); err != nil || got != tc.want {
			t.Errorf("Referenced(%s) after PruneUploads = %v, %v; want %v", tc.id, got, err, tc.want)
		}
	}
}

func testChanges(t *testing.T, s meta.Store) {
	ctx := t.Context()
	bob := addUser(t, s, "bob@example.org")
	alice := addUser(t, s, "alice@example.org")
	start := cursor(t, s)

	d := message(bob.ID, "d", meta.Drafts, time.Time{})
	insert(t, s, d, message(alice.ID, "a", meta.Inbox, day(1)))
	d.Subject = "edited"
	update(t, s, func(ctx context.Context, tx meta.Tx) error { return tx.UpdateMessage(ctx, d) })
	mid := cursor(t, s)
	d.Folder, d.Status, d.Date = meta.Sent, meta.StatusSent, day(2)
	update(t, s, func(ctx context.Context, tx meta.Tx) error {
		if err := tx.UpdateMessage(ctx, d); err != nil {
			return err
		}
		return tx.InsertMessage(ctx, message(bob.ID, "i", meta.Inbox, day(2)))
	})
	update(t, s, func(ctx context.Context, tx meta.Tx) error { return tx.DeleteMessage(ctx, bob.ID, "i") })
	// Writes that are not to messages log nothing.
	update(t, s, func(ctx context.Context, tx meta.Tx) error {
		if err := tx.AddUpload(ctx, bob.ID, meta.Ref{ID: rid("u"), Size: 1}); err != nil {
			return err
		}
		return tx.SetPassword(ctx, bob.ID, "h")
	})

	all := []change{
		{"d", meta.Drafts, meta.Created},
		{"d", meta.Drafts, meta.Updated},
		{"d", meta.Drafts, meta.Deleted}, // the move: out of drafts…
		{"d", meta.Sent, meta.Created},   // …into sent
		{"i", meta.Inbox, meta.Created},
		{"i", meta.Inbox, meta.Deleted},
	}
	if got := changes(t, s, bob.ID, start); !slices.Equal(got, all) {
		t.Errorf("Changes since start:\n\tgot  %v\n\twant %v", got, all)
	}
	if got := changes(t, s, bob.ID, mid); !slices.Equal(got, all[2:]) {
		t.Errorf("Changes since mid:\n\tgot  %v\n\twant %v", got, all[2:])
	}
	if got, want := changes(t, s, alice.ID, start), []change{{"a", meta.Inbox, meta.Created}}; !slices.Equal(got, want) {
		t.Errorf("alice's Changes = %v, want %v", got, want)
	}
	end := cursor(t, s)
	if got := changes(t, s, bob.ID, end); len(got) != 0 {
		t.Errorf("Changes since Cursor = %v, want none", got)
	}

	// Paging with limit walks the same log.
	var paged []change
	for since := start; ; {
		cs, err := s.Changes(ctx, bob.ID, since, 4)
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) > 4 {
			t.Fatalf("Changes with limit 4 returned %d", len(cs))
		}
		if len(cs) == 0 {
			break
		}
		for _, c := range cs {
			paged = append(paged, change{c.MessageID, c.Folder, c.Kind})
		}
		since = cs[len(cs)-1].Seq
	}
	if !slices.Equal(paged, all) {
		t.Errorf("paged Changes:\n\tgot  %v\n\twant %v", paged, all)
	}

	// A failed write logs nothing.
	err := s.Update(ctx, func(tx meta.Tx) error { return tx.DeleteMessage(ctx, bob.ID, "i") })
	wantErr(t, "delete deleted message", err, meta.ErrNotFound)
	if got := changes(t, s, bob.ID, end); len(got) != 0 {
		t.Errorf("Changes after failed write = %v", got)
	}
}

func testPruneChanges(t *testing.T, s meta.Store) {
	ctx := t.Context()
	bob := addUser(t, s, "bob@example.org")
	alice := addUser(t, s, "alice@example.org")
	carol := addUser(t, s, "carol@example.org")
	start := cursor(t, s)
	insert(t, s, message(bob.ID, "b1", meta.Inbox, day(1)), message(alice.ID, "a1", meta.Inbox, day(1)))
	afterFirst := cursor(t, s)
	// Changes are pruned by the time they were logged: everything logged
	// before this instant goes, everything after stays.
	cut := time.Now()
	insert(t, s, message(bob.ID, "b2", meta.Inbox, day(2)))
	end := cursor(t, s)

	n, err := s.PruneChanges(ctx, cut)
	if err != nil || n != 2 {
		t.Fatalf("PruneChanges = %d, %v; want 2", n, err)
	}
	_, err = s.Changes(ctx, bob.ID, start, 0)
	wantErr(t, "bob's pruned cursor", err, meta.ErrCursorGone)
	_, err = s.Changes(ctx, alice.ID, start, 0)
	wantErr(t, "alice's pruned cursor", err, meta.ErrCursorGone)
	// A cursor at or after the pruned changes still works.
	if got, want := changes(t, s, bob.ID, afterFirst), []change{{"b2", meta.Inbox, meta.Created}}; !slices.Equal(got, want) {
		t.Errorf("Changes since afterFirst = %v, want %v", got, want)
	}
	if got := changes(t, s, alice.ID, afterFirst); len(got) != 0 {
		t.Errorf("alice's Changes since afterFirst = %v", got)
	}
	// Carol had nothing pruned: her old cursor is fine.
	if got := changes(t, s, carol.ID, start); len(got) != 0 {
		t.Errorf("carol's Changes = %v", got)
	}

	n, err = s.PruneChanges(ctx, time.Now().Add(time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("PruneChanges(everything) = %d, %v; want 1", n, err)
	}
	_, err = s.Changes(ctx, bob.ID, afterFirst, 0)
	wantErr(t, "bob's cursor after pruning everything", err, meta.ErrCursorGone)
	// A fresh cursor works, and sees new changes.
	fresh := cursor(t, s)
	if fresh < end {
		t.Errorf("Cursor after pruning everything = %d, was %d", fresh, end)
	}
	if got := changes(t, s, bob.ID, fresh); len(got) != 0 {
		t.Errorf("Changes since fresh cursor = %v", got)
	}
	insert(t, s, message(bob.ID, "b3", meta.Inbox, day(3)))
	if got, want := changes(t, s, bob.ID, fresh), []change{{"b3", meta.Inbox, meta.Created}}; !slices.Equal(got, want) {
		t.Errorf("Changes since fresh cursor = %v, want %v", got, want)
	}
}

func testCursor(t *testing.T, s meta.Store) {
	ctx := t.Context()
	if c := cursor(t, s); c != 0 {
		t.Errorf("Cursor of an empty store = %d, want 0", c)
	}
	bob := addUser(t, s, "bob@example.org")
	last := cursor(t, s)
	for i := range 3 {
		insert(t, s, message(bob.ID, fmt.Sprint(i), meta.Inbox, day(1)))
		c := cursor(t, s)
		if c <= last {
			t.Errorf("Cursor after insert %d = %d, was %d", i, c, last)
		}
		cs, err := s.Changes(ctx, bob.ID, last, 0)
		if err != nil || len(cs) != 1 || cs[0].Seq != c {
			t.Errorf("Changes since %d = %+v, %v; want one change with Seq %d", last, cs, err, c)
		}
		last = c
	}
	if _, err := s.PruneChanges(ctx, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if c := cursor(t, s); c != last {
		t.Errorf("Cursor after pruning everything = %d, want %d", c, last)
	}
	update(t, s, func(ctx context.Context, tx meta.Tx) error { return tx.DeleteUser(ctx, bob.ID) })
	if c := cursor(t, s); c != last {
		t.Errorf("Cursor after deleting the only user = %d, want %d", c, last)
	}
	alice := addUser(t, s, "alice@example.org")
	insert(t, s, message(alice.ID, "a", meta.Inbox, day(1)))
	if c := cursor(t, s); c <= last {
		t.Errorf("Cursor after a new insert = %d, want > %d", c, last)
	}
}

var errAbort = errors.New("abort")

// writeAll writes one of everything, for the rollback tests.
func writeAll(ctx context.Context, tx meta.Tx, bobID int64) error {
	if err := tx.SetSetting(ctx, "k", "v"); err != nil {
		return err
	}
	carol, err := tx.AddUser(ctx, meta.User{Address: "carol@example.org", PasswordHash: "h"})
	if err != nil {
		return err
	}
	if err := tx.AddToken(ctx, meta.Token{Hash: []byte("carol-token-00000000000000000000"), UserID: carol.ID}); err != nil {
		return err
	}
	if err := tx.AddUpload(ctx, bobID, meta.Ref{ID: rid("r"), Size: 1}); err != nil {
		return err
	}
	if err := tx.SetPassword(ctx, bobID, "changed"); err != nil {
		return err
	}
	if err := tx.InsertMessage(ctx, message(bobID, "new", meta.Inbox, day(2), meta.Ref{ID: rid("r2"), Size: 1})); err != nil {
		return err
	}
	m := message(bobID, "old", meta.Sent, day(1))
	return tx.UpdateMessage(ctx, m)
}

// checkUnchanged checks that writeAll left nothing behind.
func checkUnchanged(t *testing.T, s meta.Store, bobID, since int64) {
	t.Helper()
	ctx := t.Context()
	_, err := s.Setting(ctx, "k")
	wantErr(t, "rolled back setting", err, meta.ErrNotFound)
	_, err = s.UserByAddress(ctx, "carol@example.org")
	wantErr(t, "rolled back user", err, meta.ErrNotFound)
	_, err = s.TokenByHash(ctx, []byte("carol-token-00000000000000000000"))
	wantErr(t, "rolled back token", err, meta.ErrNotFound)
	_, err = s.Message(ctx, bobID, "new")
	wantErr(t, "rolled back message", err, meta.ErrNotFound)
	if u, err := s.UserByID(ctx, bobID); err != nil || u.PasswordHash == "changed" {
		t.Errorf("rolled back SetPassword: %+v, %v", u, err)
	}
	if m, err := s.Message(ctx, bobID, "old"); err != nil || m.Folder != meta.Inbox {
		t.Errorf("rolled back UpdateMessage: folder %s, %v", m.Folder, err)
	}
	for _, id := range []resource.ID{rid("r"), rid("r2")} {
		if ok, err := s.Referenced(ctx, id); err != nil || ok {
			t.Errorf("rolled back ref %s: Referenced = %v, %v", id, ok, err)
		}
	}
	if cs := changes(t, s, bobID, since); len(cs) != 0 {
		t.Errorf("rolled back changes: %v", cs)
	}
}

func testRollback(t *testing.T, s meta.Store) {
	ctx := t.Context()
	bob := addUser(t, s, "bob@example.org")
	insert(t, s, message(bob.ID, "old", meta.Inbox, day(1)))
	since := cursor(t, s)
	err := s.Update(ctx, func(tx meta.Tx) error {
		if err := writeAll(ctx, tx, bob.ID); err != nil {
			return err
		}
		return fmt.Errorf("on purpose: %w", errAbort)
	})
	wantErr(t, "Update", err, errAbort)
	checkUnchanged(t, s, bob.ID, since)
}

func testRollbackPanic(t *testing.T, s meta.Store) {
	ctx := t.Context()
	bob := addUser(t, s, "bob@example.org")
	insert(t, s, message(bob.ID, "old", meta.Inbox, day(1)))
	since := cursor(t, s)
	var writeErr error
	func() {
		defer func() {
			if r := recover(); r != errAbort {
				t.Errorf("recovered %v, want the panic value %v", r, errAbort)
			}
		}()
		s.Update(ctx, func(tx meta.Tx) error {
			writeErr = writeAll(ctx, tx, bob.ID)
			panic(errAbort)
		})
		t.Error("Update returned after fn panicked")
	}()
	if writeErr != nil {
		t.Fatalf("writes before the panic: %v", writeErr)
	}
	checkUnchanged(t, s, bob.ID, since)
	// The store is still usable.
	insert(t, s, message(bob.ID, "after", meta.Inbox, day(3)))
}

func testTxSeesOwnWrites(t *testing.T, s meta.Store) {
	update(t, s, func(ctx context.Context, tx meta.Tx) error {
		u, err := tx.AddUser(ctx, meta.User{Address: "bob@example.org", PasswordHash: "h"})
		if err != nil {
			return err
		}
		if got, err := tx.UserByAddress(ctx, "bob@example.org"); err != nil || got.ID != u.ID {
			t.Errorf("UserByAddress in the tx = %+v, %v", got, err)
		}
		before, err := tx.Cursor(ctx)
		if err != nil {
			return err
		}
		m := message(u.ID, "m", meta.Inbox, day(1), meta.Ref{ID: rid("r"), Size: 1})
		if err := tx.InsertMessage(ctx, m); err != nil {
			return err
		}
		got, err := tx.Message(ctx, u.ID, "m")
		if err != nil {
			return err
		}
		checkMessage(t, got, m)
		if ok, err := tx.Holds(ctx, u.ID, rid("r")); err != nil || !ok {
			t.Errorf("Holds in the tx = %v, %v", ok, err)
		}
		cs, err := tx.Changes(ctx, u.ID, before, 0)
		if err != nil {
			return err
		}
		if len(cs) != 1 || cs[0].Kind != meta.Created {
			t.Errorf("Changes in the tx = %+v", cs)
		}
		if c, err := tx.Cursor(ctx); err != nil || c <= before {
			t.Errorf("Cursor in the tx = %d, %v; want > %d", c, err, before)
		}
		return nil
	})
}

func testView(t *testing.T, s meta.Store) {
	ctx := t.Context()
	bob := addUser(t, s, "bob@example.org")
	insert(t, s, message(bob.ID, "m1", meta.Inbox, day(1)))
	err := s.View(ctx, func(r meta.Reader) error {
		c1, err := r.Cursor(ctx)
		if err != nil {
			return err
		}
		ms1, err := r.Messages(ctx, bob.ID, meta.ListOptions{Folder: meta.Inbox})
		if err != nil {
			return err
		}
		// Another writer commits while the view is open.
		done := make(chan error)
		go func() {
			done <- s.Update(ctx, func(tx meta.Tx) error {
				if err := tx.InsertMessage(ctx, message(bob.ID, "m2", meta.Inbox, day(2))); err != nil {
					return err
				}
				return tx.DeleteMessage(ctx, bob.ID, "m1")
			})
		}()
		if err := <-done; err != nil {
			return fmt.Errorf("concurrent Update: %w", err)
		}
		c2, err := r.Cursor(ctx)
		if err != nil {
			return err
		}
		ms2, err := r.Messages(ctx, bob.ID, meta.ListOptions{Folder: meta.Inbox})
		if err != nil {
			return err
		}
		if c1 != c2 || !slices.Equal(ids(ms1), ids(ms2)) {
			t.Errorf("View saw a commit: cursor %d then %d, messages %v then %v", c1, c2, ids(ms1), ids(ms2))
		}
		if cs, err := r.Changes(ctx, bob.ID, c1, 0); err != nil || len(cs) != 0 {
			t.Errorf("View saw changes of a later commit: %+v, %v", cs, err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("View: %v", err)
	}
	// Outside the view, the commit is there.
	if ms, err := s.Messages(ctx, bob.ID, meta.ListOptions{Folder: meta.Inbox}); err != nil || !slices.Equal(ids(ms), []string{"m2"}) {
		t.Errorf("after View: %v, %v", ids(ms), err)
	}
	err = s.View(ctx, func(meta.Reader) error { return errAbort })
	wantErr(t, "View", err, errAbort)
}

func testConcurrent(t *testing.T, s meta.Store) {
	ctx := t.Context()
	const workers, each = 8, 25
	var users []meta.User
	for i := range workers {
		users = append(users, addUser(t, s, fmt.Sprintf("user%d@example.org", i)))
	}
	start := cursor(t, s)
	var wg sync.WaitGroup
	errc := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				m := message(users[w].ID, fmt.Sprintf("w%d-%d", w, i), meta.Inbox, day(1+i%28),
					meta.Ref{ID: rid(fmt.Sprint(w, i)), Size: 1}, meta.Ref{ID: rid("shared"), Size: 6})
				errc <- s.Update(ctx, func(tx meta.Tx) error { return tx.InsertMessage(ctx, m) })
				// Reads run alongside the writes.
				if _, err := s.Messages(ctx, users[w].ID, meta.ListOptions{Folder: meta.Inbox, Limit: 5}); err != nil {
					errc <- fmt.Errorf("listing messages: %w", err)
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			t.Errorf("concurrent write: %v", err)
		}
	}
	seen := map[int64]bool{}
	var maxSeq int64
	for _, u := range users {
		ms, err := s.Messages(ctx, u.ID, meta.ListOptions{Folder: meta.Inbox})
		if err != nil || len(ms) != each {
			t.Errorf("user %s has %d messages, %v; want %d", u.Address, len(ms), err, each)
		}
		cs, err := s.Changes(ctx, u.ID, start, 0)
		if err != nil || len(cs) != each {
			t.Errorf("user %s has %d changes, %v; want %d", u.Address, len(cs), err, each)
		}
		for _, c := range cs {
			if seen[c.Seq] {
				t.Errorf("seq %d given twice", c.Seq)
			}
			seen[c.Seq] = true
			maxSeq = max(maxSeq, c.Seq)
		}
	}
	if c := cursor(t, s); c != maxSeq {
		t.Errorf("Cursor = %d, want the newest seq %d", c, maxSeq)
	}
}

// testOnce: a key is fresh once until it expires, then fresh again; racing
// callers with one key get exactly one true.
func testOnce(t *testing.T, s meta.Store) {
	ctx := context.Background()
	now := time.Now()
	if ok, err := s.UseOnce(ctx, "dpop:a", now.Add(time.Minute)); err != nil || !ok {
		t.Fatalf("first use: %v %v", ok, err)
	}
	if ok, err := s.UseOnce(ctx, "dpop:a", now.Add(time.Minute)); err != nil || ok {
		t.Fatalf("replay accepted: %v %v", ok, err)
	}
	if ok, err := s.UseOnce(ctx, "dpop:b", now.Add(time.Minute)); err != nil || !ok {
		t.Fatalf("another key: %v %v", ok, err)
	}
	if ok, err := s.UseOnce(ctx, "dpop:old", now.Add(-time.Second)); err != nil || !ok {
		t.Fatalf("already-expired key: %v %v", ok, err)
	}
	if ok, err := s.UseOnce(ctx, "dpop:old", now.Add(time.Minute)); err != nil || !ok {
		t.Fatalf("a key whose entry expired is fresh again: %v %v", ok, err)
	}
	if _, err := s.UseOnce(ctx, "", now.Add(time.Minute)); err == nil {
		t.Fatal("empty key accepted")
	}
	if _, err := s.UseOnce(ctx, strings.Repeat("k", 513), now.Add(time.Minute)); err == nil {
		t.Fatal("oversize key accepted")
	}
	var wg sync.WaitGroup
	var fresh atomic.Int32
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := s.UseOnce(ctx, "race", now.Add(time.Minute))
			if err != nil {
				t.Error(err)
			}
			if ok {
				fresh.Add(1)
			}
		}()
	}
	wg.Wait()
	if fresh.Load() != 1 {
		t.Fatalf("%d racing callers got fresh, want 1", fresh.Load())
	}
}

// testAuthz: clients, grants, families, as the authorization server uses them.
func testAuthz(t *testing.T, s meta.Store) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	var alice meta.User
	err := s.Update(ctx, func(tx meta.Tx) error {
		var err error
		if alice, err = tx.AddUser(ctx, meta.User{Address: "alice@a.test", PasswordHash: "x"}); err != nil {
			return err
		}
		if err := tx.AddClient(ctx, meta.Client{ID: "webmail", Name: "Webmail", Public: true, RedirectURIs: []string{"https://a.test/cb"}}); err != nil {
			return err
		}
		return tx.AddClient(ctx, meta.Client{ID: "mta", Name: "MTA", JWKS: []byte(`{"keys":[]}`)})
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Client(ctx, "webmail")
	if err != nil || !c.Public || len(c.RedirectURIs) != 1 || c.RedirectURIs[0] != "https://a.test/cb" || c.Created.IsZero() {
		t.Fatalf("client: %v %+v", err, c)
	}
	if cs, err := s.Clients(ctx); err != nil || len(cs) != 2 || cs[0].ID != "mta" || string(cs[0].JWKS) != `{"keys":[]}` {
		t.Fatalf("clients: %v %+v", err, cs)
	}
	if err := s.Update(ctx, func(tx meta.Tx) error { return tx.AddClient(ctx, meta.Client{ID: "mta"}) }); !errors.Is(err, meta.ErrExists) {
		t.Fatalf("duplicate client: %v", err)
	}
	if _, err := s.Client(ctx, "nobody"); !errors.Is(err, meta.ErrNotFound) {
		t.Fatalf("missing client: %v", err)
	}
	code := meta.Grant{Hash: []byte("code-hash"), Kind: meta.GrantCode, Family: "f1", ClientID: "webmail", UserID: alice.ID,
		Scope: "mail", RedirectURI: "https://a.test/cb", Challenge: "ch", Created: now, Expires: now.Add(time.Minute)}
	refresh := meta.Grant{Hash: []byte("refresh-hash"), Kind: meta.GrantRefresh, Family: "f1", ClientID: "webmail", UserID: alice.ID,
		Scope: "mail", JKT: "thumb", Created: now, Expires: now.Add(time.Hour)}
	device := meta.Grant{Hash: []byte("device-hash"), Kind: meta.GrantDevice, Family: "f2", ClientID: "webmail", UserCode: "ABCD-EFGH",
		Created: now, Expires: now.Add(-time.Minute)}
	err = s.Update(ctx, func(tx meta.Tx) error {
		for _, g := range []meta.Grant{code, refresh, device} {
			if err := tx.AddGrant(ctx, g); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	g, err := s.GrantByHash(ctx, []byte("code-hash"))
	if err != nil || g.Kind != meta.GrantCode || g.UserID != alice.ID || g.Challenge != "ch" || !g.Expires.Equal(code.Expires) || g.Used {
		t.Fatalf("grant: %v %+v", err, g)
	}
	if g, err := s.GrantByUserCode(ctx, "ABCD-EFGH"); err != nil || g.UserID != 0 || g.Kind != meta.GrantDevice {
		t.Fatalf("by user code: %v %+v", err, g)
	}
	dup := device
	dup.Hash = []byte("other")
	if err := s.Update(ctx, func(tx meta.Tx) error { return tx.AddGrant(ctx, dup) }); !errors.Is(err, meta.ErrExists) {
		t.Fatalf("a second grant with one user code: %v", err)
	}
	// Approve the device code; spend the authorization code.
	device.UserID, g.Used = alice.ID, true
	err = s.Update(ctx, func(tx meta.Tx) error {
		if err := tx.UpdateGrant(ctx, device); err != nil {
			return err
		}
		return tx.UpdateGrant(ctx, g)
	})
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := s.GrantByHash(ctx, device.Hash); d.UserID != alice.ID {
		t.Fatalf("approved device grant: %+v", d)
	}
	if c, _ := s.GrantByHash(ctx, code.Hash); !c.Used {
		t.Fatal("used flag not stored")
	}
	if err := s.Update(ctx, func(tx meta.Tx) error { return tx.UpdateGrant(ctx, meta.Grant{Hash: []byte("none")}) }); !errors.Is(err, meta.ErrNotFound) {
		t.Fatalf("update of a missing grant: %v", err)
	}
	// Revoking a family revokes its grants and is remembered.
	if ok, _ := s.FamilyRevoked(ctx, "f1"); ok {
		t.Fatal("f1 revoked before anyone revoked it")
	}
	if err := s.Update(ctx, func(tx meta.Tx) error { return tx.RevokeFamily(ctx, "f1", now.Add(time.Hour)) }); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.FamilyRevoked(ctx, "f1"); err != nil || !ok {
		t.Fatalf("f1 not revoked: %v", err)
	}
	if r, _ := s.GrantByHash(ctx, refresh.Hash); !r.Revoked {
		t.Fatal("the family's refresh token is not revoked")
	}
	if d, _ := s.GrantByHash(ctx, device.Hash); d.Revoked {
		t.Fatal("another family's grant was revoked")
	}
	// Pruning forgets expired grants (the device code) and old revocations.
	if n, err := s.PruneGrants(ctx, now); err != nil || n != 1 {
		t.Fatalf("prune: %d %v", n, err)
	}
	if _, err := s.GrantByHash(ctx, device.Hash); !errors.Is(err, meta.ErrNotFound) {
		t.Fatalf("expired grant kept: %v", err)
	}
	if _, err := s.PruneGrants(ctx, now.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.FamilyRevoked(ctx, "f1"); ok {
		t.Fatal("revocation remembered past its time")
	}
	// Deleting the client deletes its grants.
	if err := s.Update(ctx, func(tx meta.Tx) error {
		if err := tx.AddGrant(ctx, meta.Grant{Hash: []byte("late"), Kind: meta.GrantRefresh, Family: "f3", ClientID: "webmail",
			UserID: alice.ID, Expires: now.Add(time.Hour)}); err != nil {
			return err
		}
		return tx.DeleteClient(ctx, "webmail")
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GrantByHash(ctx, []byte("late")); !errors.Is(err, meta.ErrNotFound) {
		t.Fatalf("grant of a deleted client kept: %v", err)
	}
}

// addJob adds a job and returns it as AddJob did.
func addJob(t *testing.T, s meta.Store, j meta.Job) meta.Job {
	t.Helper()
	update(t, s, func(ctx context.Context, tx meta.Tx) error {
		var err error
		j, err = tx.AddJob(ctx, j)
		return err
	})
	return j
}

// node is the holder claim claims for.
const node = "node-1"

// claim calls ClaimJobs for node and fails the test on error.
func claim(t *testing.T, s meta.Store, kind string, now time.Time, n int, lease time.Duration) []meta.Job {
	t.Helper()
	return claimAs(t, s, node, kind, now, n, lease)
}

// claimAs calls ClaimJobs for holder and fails the test on error.
func claimAs(t *testing.T, s meta.Store, holder, kind string, now time.Time, n int, lease time.Duration) []meta.Job {
	t.Helper()
	js, err := s.ClaimJobs(t.Context(), holder, kind, now, n, lease)
	if err != nil {
		t.Fatalf("ClaimJobs(%q, %q, %d): %v", holder, kind, n, err)
	}
	return js
}

func jobKeys(js []meta.Job) []string {
	keys := []string{}
	for _, j := range js {
		keys = append(keys, j.Key)
	}
	return keys
}

// checkJob compares every field, times with Equal.
func checkJob(t *testing.T, what string, got, want meta.Job) {
	t.Helper()
	if got.ID != want.ID || got.Kind != want.Kind || got.Key != want.Key || !bytes.Equal(got.Payload, want.Payload) ||
		got.State != want.State || got.Attempts != want.Attempts || got.LastError != want.LastError ||
		!got.NextTry.Equal(want.NextTry) || !got.Created.Equal(want.Created) || !got.Updated.Equal(want.Updated) ||
		!got.Expires.Equal(want.Expires) || got.Holder != want.Holder {
		t.Errorf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

// readJob reads a job back by ID and by key and checks both against want.
func readJob(t *testing.T, s meta.Store, want meta.Job) {
	t.Helper()
	got, err := s.Job(t.Context(), want.ID)
	if err != nil {
		t.Fatalf("Job(%d): %v", want.ID, err)
	}
	checkJob(t, "Job", got, want)
	got, err = s.JobByKey(t.Context(), want.Key)
	if err != nil {
		t.Fatalf("JobByKey(%q): %v", want.Key, err)
	}
	checkJob(t, "JobByKey", got, want)
}

// testJobs: the durable queue. Each part uses kinds of its own, so that
// the parts share one store without claiming each other's jobs.
func testJobs(t *testing.T, s meta.Store) {
	t.Run("Add", func(t *testing.T) {
		ctx := t.Context()
		before := time.Now()
		j := addJob(t, s, meta.Job{Kind: "add", Key: "add:1", Payload: []byte(`{"to":"b.test"}`), Expires: day(20)})
		after := time.Now()
		if j.ID == 0 || j.State != meta.JobQueued || j.Attempts != 0 {
			t.Errorf("AddJob returned ID %d, state %q, attempts %d; want an ID, queued, 0", j.ID, j.State, j.Attempts)
		}
		for name, tm := range map[string]time.Time{"NextTry": j.NextTry, "Created": j.Created, "Updated": j.Updated} {
			if tm.Before(before) || tm.After(after) {
				t.Errorf("AddJob set %s to %v, want now (%v to %v)", name, tm, before, after)
			}
		}
		readJob(t, s, j)

		// Given fields are kept, in any zone.
		full := addJob(t, s, meta.Job{Kind: "add", Key: "add:2", Payload: []byte("{}"), State: meta.JobRunning,
			Attempts: 3, NextTry: day(5), LastError: "connection refused", Created: day(2), Updated: day(3), Expires: day(9)})
		readJob(t, s, full)
		nothing := addJob(t, s, meta.Job{Kind: "add", Key: "add:3"})
		readJob(t, s, nothing)
		if nothing.ID == j.ID || nothing.ID == full.ID {
			t.Errorf("IDs %d, %d, %d are not distinct", j.ID, full.ID, nothing.ID)
		}

		// A taken key is ErrExists whatever the job's state, and adds nothing.
		full.State = meta.JobDone
		update(t, s, func(ctx context.Context, tx meta.Tx) error { return tx.UpdateJob(ctx, full) })
		for _, key := range []string{j.Key, full.Key} {
			err := s.Update(ctx, func(tx meta.Tx) error {
				_, err := tx.AddJob(ctx, meta.Job{Kind: "other", Key: key})
				return err
			})
			wantErr(t, "AddJob with a taken key "+key, err, meta.ErrExists)
		}
		if js, err := s.Jobs(ctx, "other", 0); err != nil || len(js) != 0 {
			t.Errorf("a refused AddJob stored %d jobs, %v", len(js), err)
		}

		for _, bad := range []meta.Job{{Key: "add:nokind"}, {Kind: "add"}, {Kind: "add", Key: "add:state", State: "lost"}} {
			err := s.Update(ctx, func(tx meta.Tx) error {
				_, err := tx.AddJob(ctx, bad)
				return err
			})
			if err == nil {
				t.Errorf("AddJob(%+v) accepted", bad)
			}
		}

		_, err := s.Job(ctx, 1<<40)
		wantErr(t, "Job of an unknown ID", err, meta.ErrNotFound)
		_, err = s.JobByKey(ctx, "add:none")
		wantErr(t, "JobByKey of an unknown key", err, meta.ErrNotFound)
		err = s.Update(ctx, func(tx meta.Tx) error {
			return tx.UpdateJob(ctx, meta.Job{ID: 1 << 40, State: meta.JobDone})
		})
		wantErr(t, "UpdateJob of an unknown ID", err, meta.ErrNotFound)
	})

	t.Run("Rollback", func(t *testing.T) {
		// A job added in a transaction that fails is not queued: the send
		// that queues a push commits with it or not at all.
		ctx := t.Context()
		errBoom := errors.New("boom")
		err := s.Update(ctx, func(tx meta.Tx) error {
			if _, err := tx.AddJob(ctx, meta.Job{Kind: "rollback", Key: "rollback:1"}); err != nil {
				return err
			}
			return errBoom
		})
		wantErr(t, "Update", err, errBoom)
		_, err = s.JobByKey(ctx, "rollback:1")
		wantErr(t, "JobByKey after rollback", err, meta.ErrNotFound)
		if js := claim(t, s, "rollback", time.Now().Add(time.Hour), 10, time.Minute); len(js) != 0 {
			t.Errorf("claimed %v after rollback", jobKeys(js))
		}
	})

	t.Run("ClaimDueOnly", func(t *testing.T) {
		now := day(10)
		due := addJob(t, s, meta.Job{Kind: "due", Key: "due:due", NextTry: now.Add(-time.Minute)})
		addJob(t, s, meta.Job{Kind: "due", Key: "due:exactly", NextTry: now})
		addJob(t, s, meta.Job{Kind: "due", Key: "due:later", NextTry: now.Add(time.Nanosecond)})
		addJob(t, s, meta.Job{Kind: "due", Key: "due:done", State: meta.JobDone, NextTry: day(1)})
		addJob(t, s, meta.Job{Kind: "due", Key: "due:failed", State: meta.JobFailed, NextTry: day(1)})
		addJob(t, s, meta.Job{Kind: "due-other", Key: "due-other:1", NextTry: day(1)})

		js := claim(t, s, "due", now, 10, time.Minute)
		if got, want := jobKeys(js), []string{"due:due", "due:exactly"}; !slices.Equal(got, want) {
			t.Fatalf("claimed %v, want %v", got, want)
		}
		// Claiming marks running, counts the attempt, sets the lease.
		want := due
		want.State, want.Attempts, want.NextTry, want.Updated, want.Holder = meta.JobRunning, 1, now.Add(time.Minute), now, node
		checkJob(t, "claimed job", js[0], want)
		readJob(t, s, want)

		if js := claim(t, s, "due", now, 10, time.Minute); len(js) != 0 {
			t.Errorf("claimed %v again while leased", jobKeys(js))
		}
		if js := claim(t, s, "due", now, 0, time.Minute); len(js) != 0 {
			t.Errorf("n = 0 claimed %v", jobKeys(js))
		}
		if _, err := s.ClaimJobs(t.Context(), node, "due", now, 1, 0); err == nil {
			t.Error("ClaimJobs with a zero lease accepted")
		}
		if js := claim(t, s, "due", now.Add(time.Nanosecond), 10, time.Minute); !slices.Equal(jobKeys(js), []string{"due:later"}) {
			t.Errorf("a nanosecond later claimed %v, want [due:later]", jobKeys(js))
		}
	})

	t.Run("Lease", func(t *testing.T) {
		now := day(10)
		const lease = 10 * time.Minute
		j := addJob(t, s, meta.Job{Kind: "lease", Key: "lease:1", NextTry: now})
		if js := claim(t, s, "lease", now, 1, lease); len(js) != 1 || js[0].Attempts != 1 {
			t.Fatalf("first claim: %+v", js)
		}
		// The worker holding it is still within its lease.
		if js := claim(t, s, "lease", now.Add(lease-time.Nanosecond), 1, lease); len(js) != 0 {
			t.Fatalf("claimed within the lease: %+v", js)
		}
		// The worker crashed: when the lease ends, another node claims it.
		later := now.Add(lease)
		js := claimAs(t, s, "node-2", "lease", later, 1, lease)
		want := j
		want.State, want.Attempts, want.NextTry, want.Updated, want.Holder = meta.JobRunning, 2, later.Add(lease), later, "node-2"
		if len(js) != 1 {
			t.Fatalf("claim after the lease ended: %+v", js)
		}
		checkJob(t, "re-claimed job", js[0], want)

		// The first worker, finishing late, sees that it lost the job: the
		// check UpdateJob's doc comment asks for.
		err := s.Update(t.Context(), func(tx meta.Tx) error {
			cur, err := tx.Job(t.Context(), j.ID)
			if err != nil {
				return err
			}
			if cur.State != meta.JobRunning || cur.Attempts != 1 {
				return nil // lost the lease: leave it to its holder
			}
			return errors.New("the stale worker still sees its claim")
		})
		if err != nil {
			t.Error(err)
		}
	})

	t.Run("Order", func(t *testing.T) {
		now := day(10)
		for i, off := range []int{5, 1, 3, 2, 4} {
			addJob(t, s, meta.Job{Kind: "order", Key: fmt.Sprint("order:", off), NextTry: now.Add(-time.Duration(off) * time.Second),
				Created: day(1).Add(time.Duration(i) * time.Second)})
		}
		// Equal NextTry: the older ID first.
		addJob(t, s, meta.Job{Kind: "order", Key: "order:1b", NextTry: now.Add(-time.Second)})
		var got [][]string
		for range 4 {
			got = append(got, jobKeys(claim(t, s, "order", now, 2, time.Hour)))
		}
		want := [][]string{{"order:5", "order:4"}, {"order:3", "order:2"}, {"order:1", "order:1b"}, {}}
		if !slices.EqualFunc(got, want, slices.Equal) {
			t.Errorf("claims in batches of 2: %v, want %v", got, want)
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		const jobs, workers = 100, 8
		now := time.Now()
		update(t, s, func(ctx context.Context, tx meta.Tx) error {
			for i := range jobs {
				if _, err := tx.AddJob(ctx, meta.Job{Kind: "race", Key: fmt.Sprint("race:", i), NextTry: now}); err != nil {
					return err
				}
			}
			return nil
		})
		var mu sync.Mutex
		claimed := map[int64]int{} // ID: times claimed
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				// Bounded, so that a store handing jobs out again fails
				// rather than hangs.
				for range jobs + 1 {
					js, err := s.ClaimJobs(t.Context(), fmt.Sprint("node-", w), "race", now, 3, time.Hour)
					if err != nil {
						t.Errorf("ClaimJobs: %v", err)
						return
					}
					if len(js) == 0 {
						return
					}
					mu.Lock()
					for _, j := range js {
						claimed[j.ID]++
						if j.Attempts != 1 {
							t.Errorf("job %s claimed with attempts %d, want 1", j.Key, j.Attempts)
						}
					}
					mu.Unlock()
				}
				t.Errorf("a worker was still claiming jobs after %d claims", jobs+1)
			})
		}
		wg.Wait()
		if len(claimed) != jobs {
			t.Errorf("%d workers claimed %d distinct jobs, want %d", workers, len(claimed), jobs)
		}
		for id, n := range claimed {
			if n != 1 {
				t.Errorf("job %d claimed %d times", id, n)
			}
		}
	})

	t.Run("Update", func(t *testing.T) {
		ctx := t.Context()
		now := day(10)
		j := addJob(t, s, meta.Job{Kind: "update", Key: "update:1", Payload: []byte(`{"try":0}`), NextTry: now,
			Created: day(1), Expires: day(15)})
		js := claim(t, s, "update", now, 1, time.Minute)
		if len(js) != 1 {
			t.Fatalf("claimed %d jobs, want 1", len(js))
		}
		// A temporary failure: queued again for later.
		retry := js[0]
		retry.State, retry.NextTry, retry.LastError = meta.JobQueued, now.Add(time.Hour), "503 from b.test"
		retry.Payload, retry.Updated = []byte(`{"try":1}`), now.Add(time.Second)
		// Fields UpdateJob does not store.
		changed := retry
		changed.Kind, changed.Key, changed.Created, changed.Expires = "elsewhere", "update:moved", day(3), day(28)
		update(t, s, func(ctx context.Context, tx meta.Tx) error { return tx.UpdateJob(ctx, changed) })
		readJob(t, s, retry)
		if js := claim(t, s, "update", now.Add(time.Hour-time.Nanosecond), 1, time.Minute); len(js) != 0 {
			t.Errorf("claimed before its new NextTry: %v", jobKeys(js))
		}
		js = claim(t, s, "update", now.Add(time.Hour), 1, time.Minute)
		if len(js) != 1 || js[0].Attempts != 2 || js[0].LastError != retry.LastError {
			t.Fatalf("second claim: %+v", js)
		}
		// Done: never claimed again. A zero Updated becomes now.
		done := js[0]
		done.State, done.LastError, done.Updated = meta.JobDone, "", time.Time{}
		before := time.Now()
		update(t, s, func(ctx context.Context, tx meta.Tx) error { return tx.UpdateJob(ctx, done) })
		got, err := s.Job(ctx, j.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != meta.JobDone || got.Updated.Before(before) {
			t.Errorf("after UpdateJob to done: state %q, updated %v (want now, after %v)", got.State, got.Updated, before)
		}
		if js := claim(t, s, "update", day(28), 1, time.Minute); len(js) != 0 {
			t.Errorf("claimed a done job: %v", jobKeys(js))
		}
		err = s.Update(ctx, func(tx meta.Tx) error { return tx.UpdateJob(ctx, meta.Job{ID: j.ID, State: "lost"}) })
		if err == nil {
			t.Error("UpdateJob with an invalid state accepted")
		}
	})

	t.Run("Prune", func(t *testing.T) {
		ctx := t.Context()
		at := func(d int) time.Time { return time.Date(2001, 1, d, 0, 0, 0, 0, time.UTC) }
		for _, j := range []meta.Job{
			{Key: "prune:done-old", State: meta.JobDone, Updated: at(1)},
			{Key: "prune:failed-old", State: meta.JobFailed, Updated: at(2)},
			{Key: "prune:done-new", State: meta.JobDone, Updated: at(10)},
			{Key: "prune:queued-old", State: meta.JobQueued, Updated: at(1)},
			{Key: "prune:running-old", State: meta.JobRunning, Updated: at(1)},
		} {
			j.Kind, j.Created, j.NextTry = "prune", at(1), at(1)
			addJob(t, s, j)
		}
		n, err := s.PruneJobs(ctx, at(5))
		if err != nil || n != 2 {
			t.Fatalf("PruneJobs = %d, %v; want 2", n, err)
		}
		js, err := s.Jobs(ctx, "prune", 0)
		if err != nil {
			t.Fatal(err)
		}
		got := jobKeys(js)
		sort.Strings(got)
		if want := []string{"prune:done-new", "prune:queued-old", "prune:running-old"}; !slices.Equal(got, want) {
			t.Errorf("after PruneJobs: %v, want %v", got, want)
		}
		// A pruned job's key is free again, and its ID is not reused.
		old := addJob(t, s, meta.Job{Kind: "prune", Key: "prune:probe"})
		again := addJob(t, s, meta.Job{Kind: "prune", Key: "prune:done-old"})
		if again.ID <= old.ID {
			t.Errorf("re-added job got ID %d, not above %d", again.ID, old.ID)
		}
		if n, err := s.PruneJobs(ctx, at(5)); err != nil || n != 0 {
			t.Errorf("second PruneJobs = %d, %v; want 0", n, err)
		}
	})

	t.Run("List", func(t *testing.T) {
		ctx := t.Context()
		for i, key := range []string{"list:b", "list:a", "list:d", "list:c"} {
			addJob(t, s, meta.Job{Kind: "list", Key: key, Created: day(1 + i)})
		}
		// The same Created: the higher ID first.
		addJob(t, s, meta.Job{Kind: "list", Key: "list:c2", Created: day(4)})
		addJob(t, s, meta.Job{Kind: "list-other", Key: "list-other:1", Created: day(28)})
		for _, tc := range []struct {
			limit int
			want  []string
		}{
			{0, []string{"list:c2", "list:c", "list:d", "list:a", "list:b"}},
			{-1, []string{"list:c2", "list:c", "list:d", "list:a", "list:b"}},
			{2, []string{"list:c2", "list:c"}},
			{9, []string{"list:c2", "list:c", "list:d", "list:a", "list:b"}},
		} {
			js, err := s.Jobs(ctx, "list", tc.limit)
			if err != nil {
				t.Fatalf("Jobs(limit %d): %v", tc.limit, err)
			}
			if got := jobKeys(js); !slices.Equal(got, tc.want) {
				t.Errorf("Jobs(limit %d) = %v, want %v", tc.limit, got, tc.want)
			}
		}
		if js, err := s.Jobs(ctx, "list-none", 0); err != nil || len(js) != 0 {
			t.Errorf("Jobs of an unknown kind = %v, %v", jobKeys(js), err)
		}
		// "" lists every kind, newest first.
		all, err := s.Jobs(ctx, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		keys := map[string]bool{}
		for i, j := range all {
			keys[j.Key] = true
			if i > 0 && (j.Created.After(all[i-1].Created) || j.Created.Equal(all[i-1].Created) && j.ID > all[i-1].ID) {
				t.Errorf("Jobs(\"\") out of order at %d: %s after %s", i, j.Key, all[i-1].Key)
			}
		}
		for _, key := range []string{"list:a", "list-other:1", "add:1"} {
			if !keys[key] {
				t.Errorf("Jobs(\"\") lacks %s", key)
			}
		}
		// By key prefix: any kind, oldest first; "list:c" is no prefix
		// of "list:d" but is of "list:c2".
		for _, tc := range []struct {
			prefix string
			want   []string
		}{
			{"list:", []string{"list:b", "list:a", "list:d", "list:c", "list:c2"}},
			{"list:c", []string{"list:c", "list:c2"}},
			{"list", []string{"list:b", "list:a", "list:d", "list:c", "list:c2", "list-other:1"}},
			{"list:e", nil},
		} {
			js, err := s.JobsByKeyPrefix(ctx, tc.prefix)
			if err != nil {
				t.Fatalf("JobsByKeyPrefix(%q): %v", tc.prefix, err)
			}
			if got := jobKeys(js); !slices.Equal(got, tc.want) {
				t.Errorf("JobsByKeyPrefix(%q) = %v, want %v", tc.prefix, got, tc.want)
			}
		}
		if _, err := s.JobsByKeyPrefix(ctx, ""); err == nil {
			t.Error("JobsByKeyPrefix(\"\") did not fail")
		}
		// Listings are readable in a transaction too.
		err = s.View(ctx, func(r meta.Reader) error {
			js, err := r.Jobs(ctx, "list", 1)
			if err != nil {
				return err
			}
			if len(js) != 1 || js[0].Key != "list:c2" {
				return fmt.Errorf("jobs in a View = %v", jobKeys(js))
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	})
}

// testTrash moves messages of two users into Trash (as the mailbox's delete
// does) and checks that TrashedFrom and Trashed round-trip, that the feed
// says where each went, and that TrashedBefore finds exactly the old ones
// of every user, oldest first, and none restored.
func testTrash(t *testing.T, s meta.Store) {
	ctx := t.Context()
	bob := addUser(t, s, "bob@example.org")
	eve := addUser(t, s, "eve@example.org")
	insert(t, s,
		message(bob.ID, "b1", meta.Inbox, day(1)),
		message(bob.ID, "b2", meta.Archive, day(2)),
		message(eve.ID, "e1", meta.Junk, day(3)),
		message(bob.ID, "b3", meta.Requests, day(4)))
	since := cursor(t, s)
	trash := func(id string, userID int64, at time.Time) meta.Message {
		t.Helper()
		m, err := s.Message(ctx, userID, id)
		if err != nil {
			t.Fatal(err)
		}
		m.TrashedFrom, m.Folder, m.Trashed = m.Folder, meta.Trash, at
		update(t, s, func(ctx context.Context, tx meta.Tx) error { return tx.UpdateMessage(ctx, m) })
		got, err := s.Message(ctx, userID, id)
		if err != nil {
			t.Fatal(err)
		}
		m.Updated = got.Updated
		checkMessage(t, got, m)
		return got
	}
	trash("b1", bob.ID, day(10))
	trash("e1", eve.ID, day(5))
	b2 := trash("b2", bob.ID, day(20))
	trash("b3", bob.ID, day(7))

	// Restore b3: it leaves the trash and the sweep.
	b3, _ := s.Message(ctx, bob.ID, "b3")
	b3.Folder, b3.TrashedFrom, b3.Trashed = b3.TrashedFrom, "", time.Time{}
	update(t, s, func(ctx context.Context, tx meta.Tx) error { return tx.UpdateMessage(ctx, b3) })
	if got, _ := s.Message(ctx, bob.ID, "b3"); got.Folder != meta.Requests || got.TrashedFrom != "" || !got.Trashed.IsZero() {
		t.Errorf("restored b3 = %s from %q at %v", got.Folder, got.TrashedFrom, got.Trashed)
	}

	want := []change{
		{"b1", meta.Inbox, meta.Deleted}, {"b1", meta.Trash, meta.Created},
		{"e1", meta.Junk, meta.Deleted}, {"e1", meta.Trash, meta.Created},
		{"b2", meta.Archive, meta.Deleted}, {"b2", meta.Trash, meta.Created},
		{"b3", meta.Requests, meta.Deleted}, {"b3", meta.Trash, meta.Created},
		{"b3", meta.Trash, meta.Deleted}, {"b3", meta.Requests, meta.Created},
	}
	got := append(changes(t, s, bob.ID, since), changes(t, s, eve.ID, since)...)
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("changes %v lack %v", got, w)
		}
	}

	tests := []struct {
		before time.Time
		limit  int
		want   []string
	}{
		{day(5), 0, nil},
		{day(6), 0, []string{"e1"}},
		{day(11), 0, []string{"e1", "b1"}},
		{day(30), 0, []string{"e1", "b1", "b2"}},
		{day(30), 2, []string{"e1", "b1"}},
	}
	for _, tt := range tests {
		ms, err := s.TrashedBefore(ctx, tt.before, tt.limit)
		if err != nil {
			t.Fatalf("TrashedBefore(%v): %v", tt.before, err)
		}
		if !slices.Equal(ids(ms), tt.want) {
			t.Errorf("TrashedBefore(%v, %d) = %v, want %v", tt.before, tt.limit, ids(ms), tt.want)
		}
	}
	ms, _ := s.TrashedBefore(ctx, day(30), 0)
	if len(ms) == 3 {
		checkMessage(t, ms[2], b2)
	}
}

// testFolderCounts counts per folder and per user.
func testFolderCounts(t *testing.T, s meta.Store) {
	ctx := t.Context()
	bob := addUser(t, s, "bob@example.org")
	eve := addUser(t, s, "eve@example.org")
	seen := message(bob.ID, "b2", meta.Inbox, day(2))
	seen.Seen = true
	insert(t, s, message(bob.ID, "b1", meta.Inbox, day(1)), seen,
		message(bob.ID, "b3", meta.Archive, day(3)), message(eve.ID, "e1", meta.Inbox, day(1)),
		message(bob.ID, "b4", "Reçus 2026", day(4)))
	got, err := s.FolderCounts(ctx, bob.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := map[meta.Folder]meta.FolderCount{meta.Inbox: {Total: 2, Unseen: 1}, meta.Archive: {Total: 1, Unseen: 1},
		"Reçus 2026": {Total: 1, Unseen: 1}}
	if !maps.Equal(got, want) {
		t.Errorf("FolderCounts(bob) = %v, want %v", got, want)
	}
	// A user folder lists like a system one; a name meta.Folder refuses
	// is not stored.
	if ms, err := s.Messages(ctx, bob.ID, meta.ListOptions{Folder: "Reçus 2026"}); err != nil || len(ms) != 1 || ms[0].ID != "b4" {
		t.Errorf("Messages(Reçus 2026) = %v, %v", ms, err)
	}
	bad := message(bob.ID, "b5", "a/b", day(5))
	if err := s.Update(ctx, func(tx meta.Tx) error { return tx.InsertMessage(ctx, bad) }); err == nil {
		t.Error("a message in folder \"a/b\" was stored")
	}
	if got, err := s.FolderCounts(ctx, 1<<40); err != nil || len(got) != 0 {
		t.Errorf("FolderCounts(nobody) = %v, %v", got, err)
	}
}

// testSearch: what the index finds (words by prefix, phrases in a row,
// fields, attachments, dates, folders, paging), for its owner only, and
// that Unindexed, a re-index and a delete (of the message, of the user)
// keep it right.
func testSearch(t *testing.T, s meta.Store) {
	ctx := t.Context()
	bob := addUser(t, s, "bob@example.org")
	eve := addUser(t, s, "eve@example.org")
	draft := message(bob.ID, "d1", meta.Drafts, time.Time{})
	fetching := message(bob.ID, "f1", meta.Inbox, day(9))
	fetching.Status = meta.StatusFetching
	insert(t, s, message(bob.ID, "b1", meta.Inbox, day(1)), message(bob.ID, "b2", meta.Inbox, day(2)),
		message(bob.ID, "b3", meta.Archive, day(3)), message(bob.ID, "b4", meta.Trash, day(4)),
		message(bob.ID, "s1", meta.Sent, day(5)), message(eve.ID, "e1", meta.Inbox, day(1)), draft, fetching)
	un, err := s.Unindexed(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(un); !slices.Equal(slices.Sorted(slices.Values(got)), []string{"b1", "b2", "b3", "b4", "e1", "s1"}) {
		t.Errorf("Unindexed = %v: want the sent and complete ones", got)
	}
	docs := map[string]meta.SearchDoc{
		"b1": {From: "Alice Liddell <alice@wonder.land>", To: "bob@example.org", Subject: "Tea party, Thursday", Body: "Bring the March hare."},
		"b2": {From: "Carol <carol@example.com>", To: "bob@example.org, Dave <dave@example.net>", Subject: "Invoice 2025-017", Body: "Attached: the invoice.", HasAttachment: true},
		"b3": {From: "alice@wonder.land", To: "bob@example.org", Subject: "Re: Tea party", Body: "Rabbit holes, mostly."},
		"b4": {From: "spam@example.com", To: "bob@example.org", Subject: "Tea for you", Body: "Buy now"},
		"s1": {From: "bob@example.org", To: "Alice <alice@wonder.land>", Subject: "Party!", Body: "See you at the tea party."},
		"e1": {From: "alice@wonder.land", To: "eve@example.org", Subject: "Tea party", Body: "Eve's own copy."},
	}
	update(t, s, func(ctx context.Context, tx meta.Tx) error {
		for id, d := range docs {
			uid := bob.ID
			if id == "e1" {
				uid = eve.ID
			}
			if err := tx.IndexMessage(ctx, uid, id, d); err != nil {
				return fmt.Errorf("index %s: %w", id, err)
			}
		}
		return nil
	})
	if err := s.Update(ctx, func(tx meta.Tx) error { return tx.IndexMessage(ctx, bob.ID, "e1", meta.SearchDoc{}) }); !errors.Is(err, meta.ErrNotFound) {
		t.Errorf("indexing another user's message: %v, want ErrNotFound", err)
	}
	if un, err := s.Unindexed(ctx, 0); err != nil || len(un) != 0 {
		t.Errorf("Unindexed after indexing = %v, %v", ids(un), err)
	}
	w := meta.SearchWords
	tests := []struct {
		name string
		q    meta.SearchQuery
		want []string
	}{
		{"everything but trash and junk", meta.SearchQuery{}, []string{"s1", "b3", "b2", "b1"}},
		{"a word in any field", meta.SearchQuery{Words: [][]string{w("tea")}}, []string{"s1", "b3", "b1"}},
		{"a prefix", meta.SearchQuery{Words: [][]string{w("invo")}}, []string{"b2"}},
		{"a phrase in a row", meta.SearchQuery{Words: [][]string{w("tea party")}}, []string{"s1", "b3", "b1"}},
		{"a phrase out of order", meta.SearchQuery{Words: [][]string{w("party tea")}}, nil},
		{"two words", meta.SearchQuery{Words: [][]string{w("tea"), w("rabbit")}}, []string{"b3"}},
		{"case folded", meta.SearchQuery{Words: [][]string{w("MARCH")}}, []string{"b1"}},
		{"from an address", meta.SearchQuery{From: [][]string{w("alice@wonder.land")}}, []string{"b3", "b1"}},
		{"from a name", meta.SearchQuery{From: [][]string{w("carol")}}, []string{"b2"}},
		{"to a cc", meta.SearchQuery{To: [][]string{w("dave")}}, []string{"b2"}},
		{"to alice", meta.SearchQuery{To: [][]string{w("alice")}}, []string{"s1"}},
		{"subject only", meta.SearchQuery{Subject: [][]string{w("party")}}, []string{"s1", "b3", "b1"}},
		{"subject misses the body", meta.SearchQuery{Subject: [][]string{w("hare")}}, nil},
		{"has attachment", meta.SearchQuery{HasAttachment: true}, []string{"b2"}},
		{"since", meta.SearchQuery{Since: day(3)}, []string{"s1", "b3"}},
		{"until", meta.SearchQuery{Until: day(2)}, []string{"b1"}},
		{"in trash", meta.SearchQuery{Folder: meta.Trash, Words: [][]string{w("tea")}}, []string{"b4"}},
		{"in archive", meta.SearchQuery{Folder: meta.Archive}, []string{"b3"}},
		{"limit", meta.SearchQuery{Words: [][]string{w("tea")}, Limit: 2}, []string{"s1", "b3"}},
		{"page", meta.SearchQuery{Words: [][]string{w("tea")}, Page: &meta.ListKey{Date: day(3), Created: day(3).Add(time.Second), ID: "b3"}}, []string{"b1"}},
		{"no match", meta.SearchQuery{Words: [][]string{w("zebra")}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms, err := s.Search(ctx, bob.ID, tt.q)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(ms); !slices.Equal(got, tt.want) {
				t.Errorf("Search = %v, want %v", got, tt.want)
			}
		})
	}

	// Re-indexing replaces; deleting removes; so does deleting the user.
	update(t, s, func(ctx context.Context, tx meta.Tx) error {
		return tx.IndexMessage(ctx, bob.ID, "b1", meta.SearchDoc{Subject: "Croquet"})
	})
	if ms, _ := s.Search(ctx, bob.ID, meta.SearchQuery{Words: [][]string{w("march")}}); len(ms) != 0 {
		t.Errorf("the old words of a re-indexed message still match: %v", ids(ms))
	}
	if ms, _ := s.Search(ctx, bob.ID, meta.SearchQuery{Words: [][]string{w("croquet")}}); !slices.Equal(ids(ms), []string{"b1"}) {
		t.Errorf("the new words do not match: %v", ids(ms))
	}
	update(t, s, func(ctx context.Context, tx meta.Tx) error { return tx.DeleteMessage(ctx, bob.ID, "b3") })
	if ms, _ := s.Search(ctx, bob.ID, meta.SearchQuery{Words: [][]string{w("rabbit")}}); len(ms) != 0 {
		t.Errorf("a deleted message is found: %v", ids(ms))
	}
	update(t, s, func(ctx context.Context, tx meta.Tx) error { return tx.DeleteUser(ctx, eve.ID) })
	carol := addUser(t, s, "carol@example.org")
	insert(t, s, message(carol.ID, "e1", meta.Inbox, day(1)))
	if ms, _ := s.Search(ctx, carol.ID, meta.SearchQuery{Words: [][]string{w("eve")}}); len(ms) != 0 {
		t.Errorf("a deleted user's index entry came back with a new message of the same id: %v", ids(ms))
	}
}
