package sqlite

import (
	"context"
	"testing"
	"time"

	"github.com/pullmail/pullmail/meta"
)

// TestSearchRowsGo: deleting a message, or its user (the foreign key's
// cascade), leaves no words behind in message_fts, whose rowids
// message_text gives out again.
func TestSearchRowsGo(t *testing.T) {
	s, path := openTemp(t)
	ctx := t.Context()
	var uid int64
	err := s.Update(ctx, func(tx meta.Tx) error {
		u, err := tx.AddUser(ctx, meta.User{Address: "bob@example.org"})
		uid = u.ID
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, id := range []string{"m1", "m2"} {
		err := s.Update(ctx, func(tx meta.Tx) error {
			m := meta.Message{ID: id, UserID: uid, Folder: meta.Inbox, MessageID: "<" + id + "@x>", Status: meta.StatusComplete,
				Date: now, Created: now, Updated: now, Placeholder: []byte("{}")}
			if err := tx.InsertMessage(ctx, m); err != nil {
				return err
			}
			return tx.IndexMessage(ctx, uid, id, meta.SearchDoc{Subject: "words of " + id})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	count := func() int {
		var n int
		if err := rawDB(t, path).QueryRowContext(context.Background(), `SELECT count(*) FROM message_fts`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(); n != 2 {
		t.Fatalf("%d rows of words, want 2", n)
	}
	if err := s.Update(ctx, func(tx meta.Tx) error { return tx.DeleteMessage(ctx, uid, "m2") }); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 1 {
		t.Fatalf("after deleting a message: %d rows of words, want 1", n)
	}
	if err := s.Update(ctx, func(tx meta.Tx) error { return tx.DeleteUser(ctx, uid) }); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 0 {
		t.Fatalf("after deleting the user: %d rows of words, want 0", n)
	}
}
