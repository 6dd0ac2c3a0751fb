package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/meta/internal/rows"
	"github.com/pullmail/pullmail/resource"
)

// reader implements meta.Reader on the pool or in a transaction.
type reader struct {
	q querier
}

var _ meta.Reader = reader{}

// txn implements meta.Tx on a write transaction.
type txn struct {
	reader
	n       *conflictNoter
	locked  bool    // holds the change-log lock (feed.go)
	changed []int64 // users whose change log this transaction appended to
}

var _ meta.Tx = (*txn)(nil)

// scanner is what pgx.Row and pgx.Rows have in common.
type scanner interface{ Scan(...any) error }

// orMissing tells why a guarded insert wrote nothing: the row it needs
// (parent, an EXISTS query) is missing (meta.ErrNotFound) or its own key
// is taken (meta.ErrExists). Only the failure path pays for it.
func (t *txn) orMissing(ctx context.Context, parent string, args ...any) error {
	var ok bool
	if err := t.q.QueryRow(ctx, `SELECT EXISTS (`+parent+`)`, args...).Scan(&ok); err != nil {
		return err
	}
	if !ok {
		return meta.ErrNotFound
	}
	return meta.ErrExists
}

// one checks that an update or delete touched a row.
func one(tag pgconn.CommandTag, err error) error {
	if err != nil {
		return mapErr(err)
	}
	if tag.RowsAffected() == 0 {
		return meta.ErrNotFound
	}
	return nil
}

const userExists = `SELECT 1 FROM users WHERE id = $1`

func (r reader) Setting(ctx context.Context, key string) (string, error) {
	var v string
	if err := r.q.QueryRow(ctx, `SELECT value FROM settings WHERE key = $1`, key).Scan(&v); err != nil {
		return "", fmt.Errorf("meta/postgres: setting %q: %w", key, mapErr(err))
	}
	return v, nil
}

func (t *txn) SetSetting(ctx context.Context, key, value string) error {
	_, err := t.q.Exec(ctx, `INSERT INTO settings (key, value) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value)
	if err != nil {
		return fmt.Errorf("meta/postgres: set setting %q: %w", key, err)
	}
	return nil
}

func (r reader) UserSetting(ctx context.Context, userID int64, name string) (string, error) {
	var v string
	err := r.q.QueryRow(ctx, `SELECT value FROM user_settings WHERE user_id = $1 AND name = $2`, userID, name).Scan(&v)
	if err != nil {
		return "", fmt.Errorf("meta/postgres: setting %q of user %d: %w", name, userID, mapErr(err))
	}
	return v, nil
}

// SetUserSetting: a setting of no such user is meta.ErrNotFound, set or
// unset.
func (t *txn) SetUserSetting(ctx context.Context, userID int64, name, value string) error {
	var tag pgconn.CommandTag
	var err error
	if value == "" {
		var exists bool
		if err := t.q.QueryRow(ctx, `SELECT EXISTS (`+userExists+`)`, userID).Scan(&exists); err != nil {
			return fmt.Errorf("meta/postgres: unset %q of user %d: %w", name, userID, err)
		}
		if !exists {
			return fmt.Errorf("meta/postgres: unset %q of user %d: %w", name, userID, meta.ErrNotFound)
		}
		if _, err := t.q.Exec(ctx, `DELETE FROM user_settings WHERE user_id = $1 AND name = $2`, userID, name); err != nil {
			return fmt.Errorf("meta/postgres: unset %q of user %d: %w", name, userID, err)
		}
		return nil
	}
	tag, err = t.q.Exec(ctx, `INSERT INTO user_settings (user_id, name, value)
		SELECT $1, $2, $3 WHERE EXISTS (`+userExists+`)
		ON CONFLICT (user_id, name) DO UPDATE SET value = excluded.value`, userID, name, value)
	if err := one(tag, err); err != nil {
		return fmt.Errorf("meta/postgres: set %q of user %d: %w", name, userID, err)
	}
	return nil
}

const userColumns = `id, address, password_hash, created`

func scanUser(row scanner) (meta.User, error) {
	u, err := rows.ScanUser(row)
	return u, mapErr(err)
}

func (r reader) UserByAddress(ctx context.Context, address string) (meta.User, error) {
	u, err := scanUser(r.q.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE address = $1`, address))
	if err != nil {
		return meta.User{}, fmt.Errorf("meta/postgres: user %q: %w", address, err)
	}
	return u, nil
}

func (r reader) UserByID(ctx context.Context, id int64) (meta.User, error) {
	u, err := scanUser(r.q.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id))
	if err != nil {
		return meta.User{}, fmt.Errorf("meta/postgres: user %d: %w", id, err)
	}
	return u, nil
}

func (r reader) Users(ctx context.Context) ([]meta.User, error) {
	us, err := collect(ctx, r.q, scanUser, `SELECT `+userColumns+` FROM users ORDER BY address`)
	if err != nil {
		return nil, fmt.Errorf("meta/postgres: users: %w", err)
	}
	return us, nil
}

// collect runs a query and scans every row with scan.
func collect[T any](ctx context.Context, q querier, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func (r reader) TokenByHash(ctx context.Context, hash []byte) (meta.Token, error) {
	var t meta.Token
	var created, expires int64
	err := r.q.QueryRow(ctx, `SELECT hash, user_id, label, created, expires FROM tokens WHERE hash = $1`, hash).
		Scan(&t.Hash, &t.UserID, &t.Label, &created, &expires)
	if err != nil {
		// The hash is a secret's digest: keep it out of error text.
		return meta.Token{}, fmt.Errorf("meta/postgres: token: %w", mapErr(err))
	}
	t.Created, t.Expires = fromNanos(created), fromNanos(expires)
	return t, nil
}

// AddUser ignores u.ID and sets Created to now when it is zero.
func (t *txn) AddUser(ctx context.Context, u meta.User) (meta.User, error) {
	if err := checkTimes(u.Created); err != nil {
		return meta.User{}, fmt.Errorf("meta/postgres: add user %q: %w", u.Address, err)
	}
	if u.Created.IsZero() {
		u.Created = time.Now()
	}
	u.Created = u.Created.UTC()
	err := t.q.QueryRow(ctx, `INSERT INTO users (address, password_hash, created) VALUES ($1, $2, $3)
		ON CONFLICT DO NOTHING RETURNING id`, u.Address, u.PasswordHash, nanos(u.Created)).Scan(&u.ID)
	if err != nil {
		if err == pgx.ErrNoRows {
			err = meta.ErrExists
		}
		return meta.User{}, fmt.Errorf("meta/postgres: add user %q: %w", u.Address, mapErr(err))
	}
	return u, nil
}

func (t *txn) SetPassword(ctx context.Context, userID int64, hash string) error {
	if err := one(t.q.Exec(ctx, `UPDATE users SET password_hash = $1 WHERE id = $2`, hash, userID)); err != nil {
		return fmt.Errorf("meta/postgres: set password of user %d: %w", userID, err)
	}
	return nil
}

// DeleteUser relies on ON DELETE CASCADE for everything of the user's; the
// changes that go with them raise changes_removed, so that Cursor does not
// go back.
func (t *txn) DeleteUser(ctx context.Context, userID int64) error {
	if _, err := t.q.Exec(ctx, `UPDATE changes_removed SET seq = x.m
		FROM (SELECT max(seq) AS m FROM changes WHERE user_id = $1) x WHERE x.m > changes_removed.seq`, userID); err != nil {
		return fmt.Errorf("meta/postgres: delete user %d: %w", userID, err)
	}
	if err := one(t.q.Exec(ctx, `DELETE FROM users WHERE id = $1`, userID)); err != nil {
		return fmt.Errorf("meta/postgres: delete user %d: %w", userID, err)
	}
	return nil
}

// AddToken sets Created to now when it is zero. A token for no such user is
// meta.ErrNotFound; a hash already stored, meta.ErrExists.
func (t *txn) AddToken(ctx context.Context, tok meta.Token) error {
	if err := checkTimes(tok.Created, tok.Expires); err != nil {
		return fmt.Errorf("meta/postgres: add token for user %d: %w", tok.UserID, err)
	}
	if tok.Created.IsZero() {
		tok.Created = time.Now()
	}
	tag, err := t.q.Exec(ctx, `INSERT INTO tokens (hash, user_id, label, created, expires)
		SELECT $2, $1, $3, $4, $5 WHERE EXISTS (`+userExists+`) ON CONFLICT DO NOTHING`,
		tok.UserID, tok.Hash, tok.Label, nanos(tok.Created), nanos(tok.Expires))
	if err == nil && tag.RowsAffected() == 0 {
		err = t.orMissing(ctx, userExists, tok.UserID)
	}
	if err != nil {
		return fmt.Errorf("meta/postgres: add token for user %d: %w", tok.UserID, mapErr(err))
	}
	return nil
}

func (t *txn) DeleteToken(ctx context.Context, hash []byte) error {
	if err := one(t.q.Exec(ctx, `DELETE FROM tokens WHERE hash = $1`, hash)); err != nil {
		return fmt.Errorf("meta/postgres: delete token: %w", err)
	}
	return nil
}

func (t *txn) AddUpload(ctx context.Context, userID int64, ref meta.Ref) error {
	if err := t.refsNotCondemned(ctx, []string{string(ref.ID)}); err != nil {
		return fmt.Errorf("meta/postgres: add upload for user %d: %w", userID, err)
	}
	tag, err := t.q.Exec(ctx, `INSERT INTO uploads (user_id, digest, size, created)
		SELECT $1, $2, $3, $4 WHERE EXISTS (`+userExists+`)
		ON CONFLICT (user_id, digest) DO UPDATE SET size = excluded.size, created = excluded.created`,
		userID, string(ref.ID), ref.Size, nanos(time.Now()))
	if err := one(tag, err); err != nil {
		return fmt.Errorf("meta/postgres: add upload %s for user %d: %w", ref.ID, userID, err)
	}
	return nil
}

// messageColumns selects a message with its refs as two arrays ordered by
// digest, so that one statement reads a whole listing.
const messageColumns = `m.id, m.user_id, m.folder, m.message_id, m.thread_id, m.status, m.status_reason,
	m.seen, m.from_, m.subject, m.date, m.created, m.updated, m.placeholder, m.trashed_from, m.trashed,
	m.keywords, m.uid, m.modseq,
	ARRAY(SELECT r.digest FROM message_refs r WHERE r.message_id = m.id ORDER BY r.digest),
	ARRAY(SELECT r.size FROM message_refs r WHERE r.message_id = m.id ORDER BY r.digest)`

func scanMessage(row scanner) (meta.Message, error) {
	var m meta.Message
	var folder, status string
	var date, created, updated, trashed int64
	var trashedFrom, keywords string
	var uid int64
	var digests []string
	var sizes []int64
	err := row.Scan(&m.ID, &m.UserID, &folder, &m.MessageID, &m.ThreadID, &status, &m.StatusReason,
		&m.Seen, &m.From, &m.Subject, &date, &created, &updated, &m.Placeholder, &trashedFrom, &trashed,
		&keywords, &uid, &m.ModSeq, &digests, &sizes)
	if err != nil {
		return meta.Message{}, mapErr(err)
	}
	m.Keywords, m.UID = rows.SplitKeywords(keywords), uint32(uid)
	m.Folder, m.Status = meta.Folder(folder), meta.Status(status)
	m.Date, m.Created, m.Updated = fromNanos(date), fromNanos(created), fromNanos(updated)
	m.TrashedFrom, m.Trashed = meta.Folder(trashedFrom), fromNanos(trashed)
	if len(digests) != len(sizes) {
		return meta.Message{}, fmt.Errorf("message %q: %d ref digests, %d sizes", m.ID, len(digests), len(sizes))
	}
	for i, d := range digests {
		m.Refs = append(m.Refs, meta.Ref{ID: resource.ID(d), Size: sizes[i]})
	}
	return m, nil
}

func (r reader) Message(ctx context.Context, userID int64, id string) (meta.Message, error) {
	m, err := scanMessage(r.q.QueryRow(ctx,
		`SELECT `+messageColumns+` FROM messages m WHERE m.id = $1 AND m.user_id = $2`, id, userID))
	if err != nil {
		return meta.Message{}, fmt.Errorf("meta/postgres: message %q of user %d: %w", id, userID, err)
	}
	return m, nil
}

// MessagesByMessageID returns the user's copies, oldest first.
func (r reader) MessagesByMessageID(ctx context.Context, userID int64, messageID string) ([]meta.Message, error) {
	ms, err := collect(ctx, r.q, scanMessage, `SELECT `+messageColumns+` FROM messages m
		WHERE m.user_id = $1 AND m.message_id = $2 ORDER BY m.created, m.id`, userID, messageID)
	if err != nil {
		return nil, fmt.Errorf("meta/postgres: messages with Message-ID %q of user %d: %w", messageID, userID, err)
	}
	return ms, nil
}

// FolderCounts counts by folder with messages_list's (user_id, folder)
// prefix.
func (r reader) FolderState(ctx context.Context, userID int64, folder meta.Folder) (meta.FolderState, error) {
	var fs meta.FolderState
	var validity, next int64
	err := r.q.QueryRow(ctx, `SELECT coalesce(f.uid_validity, greatest(1, u.created / 1000000000)),
			coalesce(f.uid_next, 1), coalesce(f.highest_modseq, 0)
		FROM users u LEFT JOIN folder_uids f ON f.user_id = u.id AND f.folder = $2 WHERE u.id = $1`,
		userID, string(folder)).Scan(&validity, &next, &fs.HighestModSeq)
	if err != nil {
		return meta.FolderState{}, fmt.Errorf("meta/postgres: state of folder %q of user %d: %w", folder, userID, mapErr(err))
	}
	fs.UIDValidity, fs.UIDNext = uint32(validity), uint32(next)
	return fs, nil
}

func (r reader) FolderIndex(ctx context.Context, userID int64, folder meta.Folder, changedSince int64) ([]meta.IndexEntry, error) {
	rs, err := r.q.Query(ctx, `SELECT uid, id, modseq, seen, keywords, date, created FROM messages
		WHERE user_id = $1 AND folder = $2 AND modseq > $3 ORDER BY uid`, userID, string(folder), changedSince)
	if err != nil {
		return nil, fmt.Errorf("meta/postgres: index of folder %q of user %d: %w", folder, userID, err)
	}
	defer rs.Close()
	var out []meta.IndexEntry
	for rs.Next() {
		var e meta.IndexEntry
		var keywords string
		var uid, date, created int64
		if err := rs.Scan(&uid, &e.ID, &e.ModSeq, &e.Seen, &keywords, &date, &created); err != nil {
			return nil, fmt.Errorf("meta/postgres: index of folder %q of user %d: %w", folder, userID, err)
		}
		e.UID, e.Keywords, e.Date, e.Created = uint32(uid), rows.SplitKeywords(keywords), fromNanos(date), fromNanos(created)
		out = append(out, e)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("meta/postgres: index of folder %q of user %d: %w", folder, userID, err)
	}
	return out, nil
}

func (r reader) FolderCounts(ctx context.Context, userID int64) (map[meta.Folder]meta.FolderCount, error) {
	type row struct {
		f string
		c meta.FolderCount
	}
	rs, err := collect(ctx, r.q, func(s scanner) (row, error) {
		var x row
		err := s.Scan(&x.f, &x.c.Total, &x.c.Unseen)
		return x, err
	}, `SELECT folder, count(*)::bigint, count(*) FILTER (WHERE NOT seen)::bigint FROM messages
		WHERE user_id = $1 GROUP BY folder`, userID)
	if err != nil {
		return nil, fmt.Errorf("meta/postgres: folder counts of user %d: %w", userID, err)
	}
	out := make(map[meta.Folder]meta.FolderCount, len(rs))
	for _, x := range rs {
		out[meta.Folder(x.f)] = x.c
	}
	return out, nil
}

// TrashedBefore walks the partial index messages_trashed.
func (r reader) TrashedBefore(ctx context.Context, t time.Time, limit int) ([]meta.Message, error) {
	var lim *int64
	if limit > 0 {
		l := int64(limit)
		lim = &l
	}
	ms, err := collect(ctx, r.q, scanMessage, `SELECT `+messageColumns+` FROM messages m
		WHERE m.trashed <> 0 AND m.trashed < $1 AND m.folder = $2
		ORDER BY m.trashed, m.id LIMIT $3::bigint`, nanos(t), string(meta.Trash), lim)
	if err != nil {
		return nil, fmt.Errorf("meta/postgres: trashed before %v: %w", t, err)
	}
	return ms, nil
}

// Messages lists a folder newest first: by Date, then Created, then ID
// (descending), walking messages_list. Placeholders are loaded.
func (r reader) Messages(ctx context.Context, userID int64, opt meta.ListOptions) ([]meta.Message, error) {
	var limit *int64 // NULL: no limit
	if opt.Limit > 0 {
		l := int64(opt.Limit)
		limit = &l
	}
	var ms []meta.Message
	var err error
	if k := opt.After; k != nil {
		ms, err = collect(ctx, r.q, scanMessage, `SELECT `+messageColumns+` FROM messages m
			WHERE m.user_id = $1 AND m.folder = $2 AND (m.date, m.created, m.id) < ($3, $4, $5)
			ORDER BY m.date DESC, m.created DESC, m.id DESC LIMIT $6::bigint`,
			userID, string(opt.Folder), nanos(k.Date), nanos(k.Created), k.ID, limit)
	} else {
		ms, err = collect(ctx, r.q, scanMessage, `SELECT `+messageColumns+` FROM messages m
			WHERE m.user_id = $1 AND m.folder = $2
			ORDER BY m.date DESC, m.created DESC, m.id DESC LIMIT $3::bigint`, userID, string(opt.Folder), limit)
	}
	if err != nil {
		return nil, fmt.Errorf("meta/postgres: list %s of user %d: %w", opt.Folder, userID, err)
	}
	return ms, nil
}

func (r reader) Holds(ctx context.Context, userID int64, id resource.ID) (bool, error) {
	var ok bool
	err := r.q.QueryRow(ctx, `SELECT
		EXISTS (SELECT 1 FROM uploads WHERE user_id = $1 AND digest = $2) OR
		EXISTS (SELECT 1 FROM message_refs r JOIN messages m ON m.id = r.message_id
			WHERE r.digest = $2 AND m.user_id = $1)`, userID, string(id)).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("meta/postgres: holds %s: %w", id, err)
	}
	return ok, nil
}

func (r reader) Referenced(ctx context.Context, id resource.ID) (bool, error) {
	var ok bool
	err := r.q.QueryRow(ctx, `SELECT
		EXISTS (SELECT 1 FROM uploads WHERE digest = $1) OR
		EXISTS (SELECT 1 FROM message_refs WHERE digest = $1)`, string(id)).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("meta/postgres: referenced %s: %w", id, err)
	}
	return ok, nil
}

// refArrays returns a message's refs as the two arrays the statements
// unnest.
func refArrays(m meta.Message) ([]string, []int64) {
	digests, sizes := make([]string, 0, len(m.Refs)), make([]int64, 0, len(m.Refs))
	for _, r := range m.Refs {
		digests, sizes = append(digests, string(r.ID)), append(sizes, r.Size)
	}
	return digests, sizes
}

// insertRefs stores the refs; a ref named twice is kept once (Refs is a set).
func (t *txn) insertRefs(ctx context.Context, m meta.Message) error {
	if len(m.Refs) == 0 {
		return nil
	}
	digests, sizes := refArrays(m)
	_, err := t.q.Exec(ctx, `INSERT INTO message_refs (message_id, digest, size)
		SELECT $1, d, s FROM unnest($2::text[], $3::bigint[]) AS x(d, s) ON CONFLICT DO NOTHING`, m.ID, digests, sizes)
	if err != nil {
		return fmt.Errorf("refs: %w", err)
	}
	return nil
}

// InsertMessage sets Created and Updated to now when they are zero. A
// message for no such user is meta.ErrNotFound. The message, its refs and
// its change are one statement.
func (t *txn) InsertMessage(ctx context.Context, m meta.Message) error {
	if err := t.insertMessage(ctx, m); err != nil {
		return fmt.Errorf("meta/postgres: insert message %q: %w", m.ID, err)
	}
	return nil
}

func (t *txn) insertMessage(ctx context.Context, m meta.Message) error {
	now := time.Now()
	m, err := rows.NewMessage(m, now)
	if err != nil {
		return err
	}
	digests, sizes := refArrays(m)
	if err := t.refsNotCondemned(ctx, digests); err != nil {
		return err
	}
	if err := t.lockFeed(ctx); err != nil {
		return err
	}
	// One statement: the change's Seq is taken first (under the feed
	// lock) so that the folder's row, the message and the change all get
	// it; the folder's row gives the UID (and nothing is written for no
	// such user).
	var logged int
	err = t.q.QueryRow(ctx, `WITH s AS MATERIALIZED (
			SELECT nextval(pg_get_serial_sequence('changes', 'seq')) AS seq
		), u AS (
			INSERT INTO folder_uids (user_id, folder, uid_validity, uid_next, highest_modseq)
			SELECT $2, $3, greatest(1, users.created / 1000000000), 2, s.seq FROM s, users WHERE users.id = $2
			ON CONFLICT (user_id, folder) DO UPDATE SET uid_next = folder_uids.uid_next + 1,
				highest_modseq = excluded.highest_modseq
			RETURNING uid_next - 1 AS uid
		), m AS (
			INSERT INTO messages (id, user_id, folder, message_id, thread_id, status, status_reason, seen,
				from_, subject, date, created, updated, placeholder, trashed_from, trashed, keywords, uid, modseq)
			SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $18, $19, $20, u.uid, s.seq FROM u, s
			ON CONFLICT DO NOTHING
			RETURNING id, user_id, folder, uid, modseq
		), r AS (
			INSERT INTO message_refs (message_id, digest, size)
			SELECT m.id, x.d, x.s FROM m, unnest($15::text[], $16::bigint[]) AS x(d, s)
			ON CONFLICT DO NOTHING
		), c AS (
			INSERT INTO changes (seq, user_id, message_id, folder, kind, at, uid) OVERRIDING SYSTEM VALUE
			SELECT modseq, user_id, id, folder, 'created', $17, uid FROM m
			RETURNING seq
		)
		SELECT count(*) FROM c`,
		m.ID, m.UserID, string(m.Folder), m.MessageID, m.ThreadID, string(m.Status), m.StatusReason, m.Seen,
		m.From, m.Subject, nanos(m.Date), nanos(m.Created), nanos(m.Updated), m.Placeholder,
		digests, sizes, nanos(now), string(m.TrashedFrom), nanos(m.Trashed),
		rows.JoinKeywords(m.Keywords)).Scan(&logged)
	if err != nil {
		return mapErr(err)
	}
	if logged == 0 {
		return t.orMissing(ctx, userExists, m.UserID)
	}
	t.changedUser(m.UserID)
	return nil
}

// UpdateMessage sets Updated to now when it is zero, and keeps the stored
// Created when m's is zero.
func (t *txn) UpdateMessage(ctx context.Context, m meta.Message) error {
	if err := t.updateMessage(ctx, m); err != nil {
		return fmt.Errorf("meta/postgres: update message %q of user %d: %w", m.ID, m.UserID, err)
	}
	return nil
}

func (t *txn) updateMessage(ctx context.Context, m meta.Message) error {
	m, err := rows.CheckMessage(m)
	if err != nil {
		return err
	}
	if digests, _ := refArrays(m); len(digests) > 0 {
		if err := t.refsNotCondemned(ctx, digests); err != nil {
			return err
		}
	}
	if err := t.lockFeed(ctx); err != nil {
		return err
	}
	var old string
	var created, oldUID int64
	err = t.q.QueryRow(ctx, `SELECT folder, created, uid FROM messages WHERE id = $1 AND user_id = $2`, m.ID, m.UserID).
		Scan(&old, &created, &oldUID)
	if err != nil {
		return mapErr(err)
	}
	if m.Created.IsZero() {
		m.Created = fromNanos(created)
	}
	if m.Updated.IsZero() {
		m.Updated = time.Now()
	}
	m.UID = uint32(oldUID)
	if meta.Folder(old) != m.Folder {
		if m.UID, err = t.nextUID(ctx, m.UserID, m.Folder); err != nil {
			return err
		}
	}
	_, err = t.q.Exec(ctx, `UPDATE messages SET folder = $1, message_id = $2, thread_id = $3, status = $4,
		status_reason = $5, seen = $6, from_ = $7, subject = $8, date = $9, created = $10, updated = $11, placeholder = $12,
		trashed_from = $14, trashed = $15, keywords = $16, uid = $17
		WHERE id = $13`,
		string(m.Folder), m.MessageID, m.ThreadID, string(m.Status),
		m.StatusReason, m.Seen, m.From, m.Subject, nanos(m.Date), nanos(m.Created), nanos(m.Updated), m.Placeholder,
		m.ID, string(m.TrashedFrom), nanos(m.Trashed), rows.JoinKeywords(m.Keywords), int64(m.UID))
	if err != nil {
		return mapErr(err)
	}
	if _, err := t.q.Exec(ctx, `DELETE FROM message_refs WHERE message_id = $1`, m.ID); err != nil {
		return fmt.Errorf("refs: %w", err)
	}
	if err := t.insertRefs(ctx, m); err != nil {
		return err
	}
	var seq int64
	for _, c := range rows.UpdateChanges(meta.Folder(old), m.Folder) {
		uid := uint32(oldUID)
		if c.NewUID {
			uid = m.UID
		}
		if seq, err = t.logChange(ctx, m.UserID, m.ID, c.Folder, uid, c.Kind); err != nil {
			return err
		}
	}
	return t.setModSeq(ctx, m.ID, seq)
}

func (t *txn) DeleteMessage(ctx context.Context, userID int64, id string) error {
	if err := t.lockFeed(ctx); err != nil {
		return fmt.Errorf("meta/postgres: delete message %q of user %d: %w", id, userID, err)
	}
	var folder string
	var uid int64
	err := t.q.QueryRow(ctx, `DELETE FROM messages WHERE id = $1 AND user_id = $2 RETURNING folder, uid`, id, userID).
		Scan(&folder, &uid)
	if err != nil {
		return fmt.Errorf("meta/postgres: delete message %q of user %d: %w", id, userID, mapErr(err))
	}
	if _, err := t.logChange(ctx, userID, id, meta.Folder(folder), uint32(uid), meta.Deleted); err != nil {
		return fmt.Errorf("meta/postgres: delete message %q of user %d: %w", id, userID, err)
	}
	return nil
}

// Envelope implements meta.Reader.
func (r reader) Envelope(ctx context.Context, userID int64, id string) ([]byte, error) {
	var env []byte
	err := r.q.QueryRow(ctx, `SELECT e.envelope FROM envelopes e JOIN messages m ON m.id = e.message_id
		WHERE e.message_id = $1 AND m.user_id = $2`, id, userID).Scan(&env)
	if err != nil {
		return nil, fmt.Errorf("meta/postgres: envelope of %q: %w", id, mapErr(err))
	}
	return env, nil
}

// SetEnvelope implements meta.Tx; the message must exist (meta.ErrNotFound).
func (t *txn) SetEnvelope(ctx context.Context, id string, envelope []byte) error {
	tag, err := t.q.Exec(ctx, `INSERT INTO envelopes (message_id, envelope)
		SELECT $1, $2 WHERE EXISTS (SELECT 1 FROM messages WHERE id = $1)
		ON CONFLICT (message_id) DO UPDATE SET envelope = excluded.envelope`, id, envelope)
	if err := one(tag, err); err != nil {
		return fmt.Errorf("meta/postgres: envelope of %q: %w", id, err)
	}
	return nil
}

func (t *txn) Idempotency(ctx context.Context, userID int64, key string) (meta.Idempotency, error) {
	r := meta.Idempotency{UserID: userID, Key: key}
	var created, expires int64
	err := t.q.QueryRow(ctx, `SELECT request, result, created, expires FROM idempotency
		WHERE user_id = $1 AND key = $2`, userID, key).Scan(&r.Request, &r.Result, &created, &expires)
	if err != nil {
		return meta.Idempotency{}, fmt.Errorf("meta/postgres: idempotency key of user %d: %w", userID, mapErr(err))
	}
	r.Created, r.Expires = fromNanos(created), fromNanos(expires)
	return r, nil
}

// PutIdempotency: a record for no such user is meta.ErrNotFound.
func (t *txn) PutIdempotency(ctx context.Context, r meta.Idempotency) error {
	if err := checkTimes(r.Created, r.Expires); err != nil {
		return fmt.Errorf("meta/postgres: idempotency key of user %d: %w", r.UserID, err)
	}
	if _, err := t.q.Exec(ctx, `DELETE FROM idempotency WHERE user_id = $1 AND expires <= $2`,
		r.UserID, nanos(r.Created)); err != nil {
		return fmt.Errorf("meta/postgres: pruning idempotency keys of user %d: %w", r.UserID, err)
	}
	result := r.Result
	if result == nil {
		result = []byte{} // NOT NULL
	}
	tag, err := t.q.Exec(ctx, `INSERT INTO idempotency (user_id, key, request, result, created, expires)
		SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS (`+userExists+`)
		ON CONFLICT (user_id, key) DO UPDATE SET request = excluded.request, result = excluded.result,
			created = excluded.created, expires = excluded.expires`,
		r.UserID, r.Key, r.Request, result, nanos(r.Created), nanos(r.Expires))
	if err := one(tag, err); err != nil {
		return fmt.Errorf("meta/postgres: idempotency key of user %d: %w", r.UserID, err)
	}
	return nil
}

// PruneUploads forgets uploads recorded before the time and returns how
// many: one DELETE, atomic in READ COMMITTED (a concurrent AddUpload that
// refreshed a row first keeps it, since the row is re-checked).
func (s *Store) PruneUploads(ctx context.Context, before time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM uploads WHERE created < $1`, nanos(before))
	if err != nil {
		return 0, fmt.Errorf("meta/postgres: prune uploads: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
