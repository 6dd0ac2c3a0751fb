package postgres

import (
	"context"
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

type pair struct{ k, v string }

func scanPair(row scanner) (pair, error) {
	var p pair
	return p, row.Scan(&p.k, &p.v)
}

func (r reader) pairs(ctx context.Context, query string, args ...any) (map[string]string, error) {
	ps, err := collect(ctx, r.q, scanPair, query, args...)
	if err != nil {
		return nil, err
	}
	m := make(map[string]string, len(ps))
	for _, p := range ps {
		m[p.k] = p.v
	}
	return m, nil
}

func (r reader) Settings(ctx context.Context) (map[string]string, error) {
	m, err := r.pairs(ctx, `SELECT key, value FROM settings`)
	if err != nil {
		return nil, fmt.Errorf("meta/postgres: settings: %w", err)
	}
	return m, nil
}

func (r reader) UserSettings(ctx context.Context, userID int64) (map[string]string, error) {
	m, err := r.pairs(ctx, `SELECT name, value FROM user_settings WHERE user_id = $1`, userID)
	if err != nil {
		return nil, fmt.Errorf("meta/postgres: settings of user %d: %w", userID, err)
	}
	return m, nil
}

func (r reader) Tokens(ctx context.Context) ([]meta.Token, error) {
	ts, err := collect(ctx, r.q, func(row scanner) (meta.Token, error) {
		var t meta.Token
		var created, expires int64
		err := row.Scan(&t.Hash, &t.UserID, &t.Label, &created, &expires)
		t.Created, t.Expires = fromNanos(created), fromNanos(expires)
		return t, err
	}, `SELECT hash, user_id, label, created, expires FROM tokens ORDER BY hash`)
	if err != nil {
		return nil, fmt.Errorf("meta/postgres: tokens: %w", err)
	}
	return ts, nil
}

func (r reader) Uploads(ctx context.Context) ([]meta.Upload, error) {
	us, err := collect(ctx, r.q, func(row scanner) (meta.Upload, error) {
		var u meta.Upload
		var digest string
		var created int64
		err := row.Scan(&u.UserID, &digest, &u.Ref.Size, &created)
		u.Ref.ID, u.Created = resource.ID(digest), fromNanos(created)
		return u, err
	}, `SELECT user_id, digest, size, created FROM uploads ORDER BY user_id, digest`)
	if err != nil {
		return nil, fmt.Errorf("meta/postgres: uploads: %w", err)
	}
	return us, nil
}

func (r reader) Grants(ctx context.Context) ([]meta.Grant, error) {
	gs, err := collect(ctx, r.q, scanGrant, `SELECT `+grantColumns+` FROM grants ORDER BY hash`)
	if err != nil {
		return nil, fmt.Errorf("meta/postgres: grants: %w", err)
	}
	return gs, nil
}

func (r reader) RevokedFamilies(ctx context.Context) (map[string]time.Time, error) {
	type fam struct {
		f     string
		until int64
	}
	fs, err := collect(ctx, r.q, func(row scanner) (fam, error) {
		var f fam
		return f, row.Scan(&f.f, &f.until)
	}, `SELECT family, until FROM revoked_families`)
	if err != nil {
		return nil, fmt.Errorf("meta/postgres: revoked families: %w", err)
	}
	m := make(map[string]time.Time, len(fs))
	for _, f := range fs {
		m[f.f] = fromNanos(f.until)
	}
	return m, nil
}

func (r reader) AllMessages(ctx context.Context, after string, limit int) ([]meta.Message, error) {
	var lim *int64 // NULL: no limit
	if limit > 0 {
		l := int64(limit)
		lim = &l
	}
	ms, err := collect(ctx, r.q, scanMessage, `SELECT `+messageColumns+` FROM messages m
		WHERE m.id > $1 ORDER BY m.id LIMIT $2`, after, lim)
	if err != nil {
		return nil, fmt.Errorf("meta/postgres: messages after %q: %w", after, err)
	}
	return ms, nil
}

// LoadUser inserts the user with its ID (OVERRIDING SYSTEM VALUE, users.id
// being an identity column) and moves the identity's sequence to the
// highest ID, so that AddUser goes on above it.
func (t *txn) LoadUser(ctx context.Context, u meta.User) error {
	if err := checkTimes(u.Created); err != nil {
		return fmt.Errorf("meta/postgres: load user %q: %w", u.Address, err)
	}
	tag, err := t.q.Exec(ctx, `INSERT INTO users (id, address, password_hash, created) OVERRIDING SYSTEM VALUE
		VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`, u.ID, u.Address, u.PasswordHash, nanos(u.Created.UTC()))
	if err == nil && tag.RowsAffected() == 0 {
		err = meta.ErrExists
	}
	if err != nil {
		return fmt.Errorf("meta/postgres: load user %q: %w", u.Address, mapErr(err))
	}
	if _, err := t.q.Exec(ctx, `SELECT setval(pg_get_serial_sequence('users', 'id'), (SELECT max(id) FROM users))`); err != nil {
		return fmt.Errorf("meta/postgres: load user %q: user ids: %w", u.Address, err)
	}
	return nil
}

func (t *txn) LoadUpload(ctx context.Context, up meta.Upload) error {
	if err := t.refsNotCondemned(ctx, []string{string(up.Ref.ID)}); err != nil {
		return fmt.Errorf("meta/postgres: load upload for user %d: %w", up.UserID, err)
	}
	tag, err := t.q.Exec(ctx, `INSERT INTO uploads (user_id, digest, size, created)
		SELECT $1, $2, $3, $4 WHERE EXISTS (`+userExists+`)
		ON CONFLICT (user_id, digest) DO UPDATE SET size = excluded.size, created = excluded.created`,
		up.UserID, string(up.Ref.ID), up.Ref.Size, nanos(up.Created))
	if err := one(tag, err); err != nil {
		return fmt.Errorf("meta/postgres: load upload %s for user %d: %w", up.Ref.ID, up.UserID, err)
	}
	return nil
}

// ResetFeed takes the change-log lock, raises changes_removed (which
// Cursor reads) and the changes identity past seq, drops the log below it
// and raises every floor to it.
func (t *txn) ResetFeed(ctx context.Context, seq int64) (int64, error) {
	if err := t.lockFeed(ctx); err != nil {
		return 0, fmt.Errorf("meta/postgres: reset feed: %w", err)
	}
	cur, err := t.Cursor(ctx)
	if err != nil {
		return 0, err
	}
	next := max(cur, seq) + 1
	for _, q := range []string{
		`UPDATE changes_removed SET seq = $1`,
		`SELECT setval(pg_get_serial_sequence('changes', 'seq'), $1)`,
		`DELETE FROM changes WHERE seq < $1`,
		`UPDATE users SET changes_floor = $1`,
	} {
		if _, err := t.q.Exec(ctx, q, next); err != nil {
			return 0, fmt.Errorf("meta/postgres: reset feed: %w", err)
		}
	}
	return next, nil
}

func (r reader) FolderStates(ctx context.Context) ([]meta.UserFolder, error) {
	out, err := collect(ctx, r.q, func(row scanner) (meta.UserFolder, error) {
		var f meta.UserFolder
		var folder string
		var validity, next int64
		err := row.Scan(&f.UserID, &folder, &validity, &next, &f.State.HighestModSeq)
		f.Folder, f.State.UIDValidity, f.State.UIDNext = meta.Folder(folder), uint32(validity), uint32(next)
		return f, err
	}, `SELECT user_id, folder, uid_validity, uid_next, highest_modseq FROM folder_uids ORDER BY user_id, folder COLLATE "C"`)
	if err != nil {
		return nil, fmt.Errorf("meta/postgres: folder states: %w", err)
	}
	return out, nil
}

func (t *txn) LoadMessage(ctx context.Context, m meta.Message) error {
	if err := t.loadMessage(ctx, m); err != nil {
		return fmt.Errorf("meta/postgres: load message %q: %w", m.ID, err)
	}
	return nil
}

func (t *txn) loadMessage(ctx context.Context, m meta.Message) error {
	uid, modseq := m.UID, m.ModSeq
	m, err := rows.NewMessage(m, time.Now())
	if err != nil {
		return err
	}
	if digests, _ := refArrays(m); len(digests) > 0 {
		if err := t.refsNotCondemned(ctx, digests); err != nil {
			return err
		}
	}
	tag, err := t.q.Exec(ctx, `INSERT INTO messages (id, user_id, folder, message_id, thread_id, status, status_reason,
			seen, from_, subject, date, created, updated, placeholder, trashed_from, trashed, keywords, uid, modseq)
		SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19
		WHERE EXISTS (SELECT 1 FROM users WHERE id = $2) ON CONFLICT DO NOTHING`,
		m.ID, m.UserID, string(m.Folder), m.MessageID, m.ThreadID, string(m.Status), m.StatusReason, m.Seen,
		m.From, m.Subject, nanos(m.Date), nanos(m.Created), nanos(m.Updated), m.Placeholder,
		string(m.TrashedFrom), nanos(m.Trashed), rows.JoinKeywords(m.Keywords), int64(uid), modseq)
	if err != nil {
		return mapErr(err)
	}
	if tag.RowsAffected() == 0 {
		return t.orMissing(ctx, userExists, m.UserID)
	}
	return t.insertRefs(ctx, m)
}

func (t *txn) LoadFolderState(ctx context.Context, f meta.UserFolder) error {
	tag, err := t.q.Exec(ctx, `INSERT INTO folder_uids (user_id, folder, uid_validity, uid_next, highest_modseq)
		SELECT id, $2, greatest(1, created / 1000000000), $3, $4 FROM users WHERE id = $1
		ON CONFLICT (user_id, folder) DO UPDATE SET uid_next = excluded.uid_next, highest_modseq = excluded.highest_modseq`,
		f.UserID, string(f.Folder), int64(f.State.UIDNext), f.State.HighestModSeq)
	if err := one(tag, err); err != nil {
		return fmt.Errorf("meta/postgres: load state of folder %q of user %d: %w", f.Folder, f.UserID, err)
	}
	return nil
}
