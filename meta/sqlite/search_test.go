package sqlite

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pullmail/pullmail/meta"
)

// TestSearchRowsGo: Unindexed uses its partial index; deleting a message, or its user (the foreign key's
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
	// Unindexed walks the partial index, not every message.
	var plan, detail string
	var id, parent, unused int
	rows, err := rawDB(t, path).QueryContext(ctx, `EXPLAIN QUERY PLAN SELECT m.id FROM messages m
		WHERE m.indexed = 0 AND m.status IN ('sent', 'complete') ORDER BY m.created, m.id LIMIT 10`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan += detail + "; "
	}
	rows.Close()
	if !strings.Contains(plan, "messages_unindexed") {
		t.Errorf("Unindexed's plan is %q: not the partial index", plan)
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
