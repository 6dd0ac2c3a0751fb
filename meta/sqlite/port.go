package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/meta/internal/rows"
	"github.com/pullmail/pullmail/resource"
)

// The copy of a whole store (meta/port.go).

var (
	_ meta.Exporter = reader{}
	_ meta.Loader   = (*txn)(nil)
)

// each runs query and calls fn for every row.
func (r reader) each(ctx context.Context, fn func(*sql.Rows) error, query string, args ...any) error {
	rs, err := r.q.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rs.Close()
	for rs.Next() {
		if err := fn(rs); err != nil {
			return err
		}
	}
	return rs.Err()
}

func (r reader) pairs(ctx context.Context, query string, args ...any) (map[string]string, error) {
	m := map[string]string{}
	err := r.each(ctx, func(rs *sql.Rows) error {
		var k, v string
		if err := rs.Scan(&k, &v); err != nil {
			return err
		}
		m[k] = v
		return nil
	}, query, args...)
	return m, err
}

func (r reader) Settings(ctx context.Context) (map[string]string, error) {
	m, err := r.pairs(ctx, `SELECT key, value FROM settings`)
	if err != nil {
		return nil, fmt.Errorf("meta/sqlite: settings: %w", err)
	}
	return m, nil
}

func (r reader) UserSettings(ctx context.Context, userID int64) (map[string]string, error) {
	m, err := r.pairs(ctx, `SELECT name, value FROM user_settings WHERE user_id = ?`, userID)
	if err != nil {
		return nil, fmt.Errorf("meta/sqlite: settings of user %d: %w", userID, err)
	}
	return m, nil
}

func (r reader) Tokens(ctx context.Context) ([]meta.Token, error) {
	var ts []meta.Token
	err := r.each(ctx, func(rs *sql.Rows) error {
		var t meta.Token
		var created, expires int64
		if err := rs.Scan(&t.Hash, &t.UserID, &t.Label, &created, &expires); err != nil {
			return err
		}
		t.Created, t.Expires = fromNanos(created), fromNanos(expires)
		ts = append(ts, t)
		return nil
	}, `SELECT hash, user_id, label, created, expires FROM tokens ORDER BY hash`)
	if err != nil {
		return nil, fmt.Errorf("meta/sqlite: tokens: %w", err)
	}
	return ts, nil
}

func (r reader) Uploads(ctx context.Context) ([]meta.Upload, error) {
	var us []meta.Upload
	err := r.each(ctx, func(rs *sql.Rows) error {
		var u meta.Upload
		var digest string
		var created int64
		if err := rs.Scan(&u.UserID, &digest, &u.Ref.Size, &created); err != nil {
			return err
		}
		u.Ref.ID, u.Created = resource.ID(digest), fromNanos(created)
		us = append(us, u)
		return nil
	}, `SELECT user_id, digest, size, created FROM uploads ORDER BY user_id, digest`)
	if err != nil {
		return nil, fmt.Errorf("meta/sqlite: uploads: %w", err)
	}
	return us, nil
}

func (r reader) Grants(ctx context.Context) ([]meta.Grant, error) {
	var gs []meta.Grant
	err := r.each(ctx, func(rs *sql.Rows) error {
		g, err := scanGrant(rs)
		if err != nil {
			return err
		}
		gs = append(gs, g)
		return nil
	}, `SELECT `+grantColumns+` FROM grants ORDER BY hash`)
	if err != nil {
		return nil, fmt.Errorf("meta/sqlite: grants: %w", err)
	}
	return gs, nil
}

func (r reader) RevokedFamilies(ctx context.Context) (map[string]time.Time, error) {
	m := map[string]time.Time{}
	err := r.each(ctx, func(rs *sql.Rows) error {
		var f string
		var until int64
		if err := rs.Scan(&f, &until); err != nil {
			return err
		}
		m[f] = fromNanos(until)
		return nil
	}, `SELECT family, until FROM revoked_families`)
	if err != nil {
		return nil, fmt.Errorf("meta/sqlite: revoked families: %w", err)
	}
	return m, nil
}

func (r reader) AllMessages(ctx context.Context, after string, limit int) ([]meta.Message, error) {
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	ms, err := r.messages(ctx, `SELECT `+messageColumns+` FROM messages m WHERE m.id > ? ORDER BY m.id LIMIT ?`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("meta/sqlite: messages after %q: %w", after, err)
	}
	return ms, nil
}

// LoadUser inserts the user with its ID; AUTOINCREMENT then gives later
// users higher ones.
func (t *txn) LoadUser(ctx context.Context, u meta.User) error {
	if err := checkTimes(u.Created); err != nil {
		return fmt.Errorf("meta/sqlite: load user %q: %w", u.Address, err)
	}
	_, err := t.q.ExecContext(ctx, `INSERT INTO users (id, address, password_hash, created) VALUES (?, ?, ?, ?)`,
		u.ID, u.Address, u.PasswordHash, nanos(u.Created.UTC()))
	if err != nil {
		return fmt.Errorf("meta/sqlite: load user %q: %w", u.Address, mapErr(err))
	}
	return nil
}

func (t *txn) LoadUpload(ctx context.Context, up meta.Upload) error {
	if err := t.notCondemned(ctx, up.Ref.ID); err != nil {
		return fmt.Errorf("meta/sqlite: load upload for user %d: %w", up.UserID, err)
	}
	_, err := t.q.ExecContext(ctx, `INSERT INTO uploads (user_id, digest, size, created) VALUES (?, ?, ?, ?)
		ON CONFLICT (user_id, digest) DO UPDATE SET size = excluded.size, created = excluded.created`,
		up.UserID, string(up.Ref.ID), up.Ref.Size, nanos(up.Created))
	if err != nil {
		return fmt.Errorf("meta/sqlite: load upload %s for user %d: %w", up.Ref.ID, up.UserID, mapErr(err))
	}
	return nil
}

// ResetFeed moves the changes table's AUTOINCREMENT counter (which Cursor
// reads) past seq, drops the log below it and raises every floor to it.
func (t *txn) ResetFeed(ctx context.Context, seq int64) (int64, error) {
	cur, err := t.Cursor(ctx)
	if err != nil {
		return 0, err
	}
	next := max(cur, seq) + 1
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`DELETE FROM sqlite_sequence WHERE name = 'changes'`, nil},
		{`INSERT INTO sqlite_sequence (name, seq) VALUES ('changes', ?)`, []any{next}},
		{`DELETE FROM changes WHERE seq < ?`, []any{next}},
		{`UPDATE users SET changes_floor = ?`, []any{next}},
	} {
		if _, err := t.q.ExecContext(ctx, q.sql, q.args...); err != nil {
			return 0, fmt.Errorf("meta/sqlite: reset feed: %w", err)
		}
	}
	return next, nil
}

func (r reader) FolderStates(ctx context.Context) ([]meta.UserFolder, error) {
	var out []meta.UserFolder
	err := r.each(ctx, func(rs *sql.Rows) error {
		var f meta.UserFolder
		var folder string
		if err := rs.Scan(&f.UserID, &folder, &f.State.UIDValidity, &f.State.UIDNext, &f.State.HighestModSeq); err != nil {
			return err
		}
		f.Folder = meta.Folder(folder)
		out = append(out, f)
		return nil
	}, `SELECT user_id, folder, uid_validity, uid_next, highest_modseq FROM folder_uids ORDER BY user_id, folder`)
	if err != nil {
		return nil, fmt.Errorf("meta/sqlite: folder states: %w", err)
	}
	return out, nil
}

func (t *txn) LoadMessage(ctx context.Context, m meta.Message) error {
	uid, modseq := m.UID, m.ModSeq
	m, err := rows.NewMessage(m, time.Now())
	if err == nil {
		err = t.refsNotCondemned(ctx, m.Refs)
	}
	if err == nil {
		m.UID, m.ModSeq = uid, modseq
		err = t.insertRow(ctx, m)
	}
	if err != nil {
		return fmt.Errorf("meta/sqlite: load message %q: %w", m.ID, err)
	}
	return nil
}

func (t *txn) LoadFolderState(ctx context.Context, f meta.UserFolder) error {
	err := t.folderRow(ctx, f.UserID, f.Folder)
	if err == nil {
		err = one(t.q.ExecContext(ctx, `UPDATE folder_uids SET uid_next = ?, highest_modseq = ? WHERE user_id = ? AND folder = ?`,
			f.State.UIDNext, f.State.HighestModSeq, f.UserID, string(f.Folder)))
	}
	if err != nil {
		return fmt.Errorf("meta/sqlite: load state of folder %q of user %d: %w", f.Folder, f.UserID, err)
	}
	return nil
}
