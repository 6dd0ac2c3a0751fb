package sqlite

import (
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/pullmail/pullmail/meta"
)

// TestMigrateUIDs: migration 0012 numbers the messages already stored per
// user and folder in the order they came (created, then id), sets each
// folder's next UID after them, and the next message goes on from there.
func TestMigrateUIDs(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "meta.db")
	db := migratedBefore(t, path, 12)
	const created = 1_700_000_000_123_456_789
	for _, q := range []string{
		`INSERT INTO users (id, address, password_hash, created) VALUES (1, 'carol@c.test', 'h', 1700000000123456789),
			(2, 'erin@c.test', 'h', 1700000000123456789)`,
		`INSERT INTO messages (id, user_id, folder, message_id, thread_id, status, status_reason, seen, from_, subject,
			date, created, updated) VALUES
			('m-b', 1, 'inbox', '', '', 'complete', '', 0, '', '', 0, 20, 20),
			('m-a', 1, 'inbox', '', '', 'complete', '', 0, '', '', 0, 20, 20),
			('m-c', 1, 'inbox', '', '', 'complete', '', 0, '', '', 0, 10, 10),
			('m-d', 1, 'archive', '', '', 'complete', '', 0, '', '', 0, 30, 30),
			('m-e', 2, 'inbox', '', '', 'complete', '', 0, '', '', 0, 5, 5)`,
		`INSERT INTO changes (user_id, message_id, folder, kind, at) VALUES (1, 'm-a', 'inbox', 'created', 1)`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for id, want := range map[string]uint32{"m-c": 1, "m-a": 2, "m-b": 3, "m-d": 1} {
		m, err := s.Message(ctx, 1, id)
		if err != nil {
			t.Fatal(err)
		}
		if m.UID != want || m.ModSeq != 1 {
			t.Errorf("%s: UID %d ModSeq %d, want UID %d ModSeq 1", id, m.UID, m.ModSeq, want)
		}
	}
	fs, err := s.FolderState(ctx, 1, meta.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	if want := (meta.FolderState{UIDValidity: created / 1_000_000_000, UIDNext: 4, HighestModSeq: 1}); fs != want {
		t.Errorf("inbox state %+v, want %+v", fs, want)
	}
	err = s.Update(ctx, func(tx meta.Tx) error {
		return tx.InsertMessage(ctx, meta.Message{ID: "m-new", UserID: 1, Folder: meta.Inbox, Status: meta.StatusComplete})
	})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := s.Message(ctx, 1, "m-new"); err != nil || m.UID != 4 {
		t.Errorf("the next message: UID %d, %v; want 4", m.UID, err)
	}
}

// migratedBefore opens a raw database at path with the migrations before
// version applied: a test of that migration fills it, then Opens it.
func migratedBefore(t *testing.T, path string, version int) *sql.DB {
	t.Helper()
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	var before []migration
	for _, m := range ms {
		if m.version < version {
			before = append(before, m)
		}
	}
	db := rawDB(t, path)
	if err := migrateTo(t.Context(), db, before); err != nil {
		t.Fatal(err)
	}
	return db
}
