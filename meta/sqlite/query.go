package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/meta/internal/rows"
	"github.com/pullmail/pullmail/resource"
)

// querier is what *sql.DB and *sql.Tx have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// reader implements meta.Reader on the read pool or in a transaction.
type reader struct {
	q querier
}

var _ meta.Reader = reader{}

// txn implements meta.Tx on a write transaction.
type txn struct {
	reader
	changed []int64 // users whose change log this transaction appended to
}

var _ meta.Tx = (*txn)(nil)

func (r reader) Setting(ctx context.Context, key string) (string, error) {
	var v string
	if err := r.q.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = ?`, key).Scan(&v); err != nil {
		return "", fmt.Errorf("meta/sqlite: setting %q: %w", key, mapErr(err))
	}
	return v, nil
}

const userColumns = `id, address, password_hash, created`

func scanUser(row interface{ Scan(...any) error }) (meta.User, error) {
	u, err := rows.ScanUser(row)
	return u, mapErr(err)
}

func (r reader) UserByAddress(ctx context.Context, address string) (meta.User, error) {
	u, err := scanUser(r.q.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE address = ?`, address))
	if err != nil {
		return meta.User{}, fmt.Errorf("meta/sqlite: user %q: %w", address, err)
	}
	return u, nil
}

func (r reader) UserByID(ctx context.Context, id int64) (meta.User, error) {
	u, err := scanUser(r.q.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE id = ?`, id))
	if err != nil {
		return meta.User{}, fmt.Errorf("meta/sqlite: user %d: %w", id, err)
	}
	return u, nil
}

func (r reader) Users(ctx context.Context) ([]meta.User, error) {
	rows, err := r.q.QueryContext(ctx, `SELECT `+userColumns+` FROM users ORDER BY address`)
	if err != nil {
		return nil, fmt.Errorf("meta/sqlite: users: %w", err)
	}
	defer rows.Close()
	var us []meta.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("meta/sqlite: users: %w", err)
		}
		us = append(us, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("meta/sqlite: users: %w", err)
	}
	return us, nil
}

func (r reader) TokenByHash(ctx context.Context, hash []byte) (meta.Token, error) {
	var t meta.Token
	var created, expires int64
	err := r.q.QueryRowContext(ctx, `SELECT hash, user_id, label, created, expires FROM tokens WHERE hash = ?`, hash).
		Scan(&t.Hash, &t.UserID, &t.Label, &created, &expires)
	if err != nil {
		// The hash is a secret's digest: keep it out of error text.
		return meta.Token{}, fmt.Errorf("meta/sqlite: token: %w", mapErr(err))
	}
	t.Created, t.Expires = fromNanos(created), fromNanos(expires)
	return t, nil
}

// messageColumns selects a message with its refs as a JSON array, so that
// one statement reads a whole listing.
const messageColumns = `m.id, m.user_id, m.folder, m.message_id, m.thread_id, m.status, m.status_reason,
	m.seen, m.from_, m.subject, m.date, m.created, m.updated, m.placeholder, m.trashed_from, m.trashed,
	m.keywords, m.uid, m.modseq,
	(SELECT json_group_array(json_object('d', r.digest, 's', r.size) ORDER BY r.digest)
		FROM message_refs r WHERE r.message_id = m.id)`

func (r reader) FolderState(ctx context.Context, userID int64, folder meta.Folder) (meta.FolderState, error) {
	fs := meta.FolderState{UIDNext: 1}
	err := r.q.QueryRowContext(ctx, `SELECT uid_validity, uid_next, highest_modseq FROM folder_uids
		WHERE user_id = ? AND folder = ?`, userID, string(folder)).Scan(&fs.UIDValidity, &fs.UIDNext, &fs.HighestModSeq)
	if errors.Is(err, sql.ErrNoRows) {
		err = r.q.QueryRowContext(ctx, `SELECT max(1, created / 1000000000) FROM users WHERE id = ?`, userID).
			Scan(&fs.UIDValidity)
	}
	if err != nil {
		return meta.FolderState{}, fmt.Errorf("meta/sqlite: state of folder %q of user %d: %w", folder, userID, mapErr(err))
	}
	return fs, nil
}

func (r reader) FolderIndex(ctx context.Context, userID int64, folder meta.Folder, changedSince int64) ([]meta.IndexEntry, error) {
	rs, err := r.q.QueryContext(ctx, `SELECT uid, id, modseq, seen, keywords, date, created FROM messages
		WHERE user_id = ? AND folder = ? AND modseq > ? ORDER BY uid`, userID, string(folder), changedSince)
	if err != nil {
		return nil, fmt.Errorf("meta/sqlite: index of folder %q of user %d: %w", folder, userID, err)
	}
	defer rs.Close()
	var out []meta.IndexEntry
	for rs.Next() {
		var e meta.IndexEntry
		var keywords string
		var date, created int64
		if err := rs.Scan(&e.UID, &e.ID, &e.ModSeq, &e.Seen, &keywords, &date, &created); err != nil {
			return nil, fmt.Errorf("meta/sqlite: index of folder %q of user %d: %w", folder, userID, err)
		}
		e.Keywords, e.Date, e.Created = rows.SplitKeywords(keywords), fromNanos(date), fromNanos(created)
		out = append(out, e)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("meta/sqlite: index of folder %q of user %d: %w", folder, userID, err)
	}
	return out, nil
}

// jsonRef is one element of the refs array of messageColumns.
type jsonRef struct {
	D string `json:"d"`
	S int64  `json:"s"`
}

func scanMessage(row interface{ Scan(...any) error }) (meta.Message, error) {
	var m meta.Message
	var folder, status string
	var date, created, updated, trashed int64
	var refs, trashedFrom, keywords string
	err := row.Scan(&m.ID, &m.UserID, &folder, &m.MessageID, &m.ThreadID, &status, &m.StatusReason,
		&m.Seen, &m.From, &m.Subject, &date, &created, &updated, &m.Placeholder, &trashedFrom, &trashed,
		&keywords, &m.UID, &m.ModSeq, &refs)
	if err != nil {
		return meta.Message{}, mapErr(err)
	}
	m.Keywords = rows.SplitKeywords(keywords)
	m.Folder, m.Status = meta.Folder(folder), meta.Status(status)
	m.Date, m.Created, m.Updated = fromNanos(date), fromNanos(created), fromNanos(updated)
	m.TrashedFrom, m.Trashed = meta.Folder(trashedFrom), fromNanos(trashed)
	var rs []jsonRef
	if err := json.Unmarshal([]byte(refs), &rs); err != nil {
		return meta.Message{}, fmt.Errorf("message %q: refs: %w", m.ID, err)
	}
	for _, r := range rs {
		m.Refs = append(m.Refs, meta.Ref{ID: resource.ID(r.D), Size: r.S})
	}
	return m, nil
}

func (r reader) messages(ctx context.Context, query string, args ...any) ([]meta.Message, error) {
	rows, err := r.q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ms []meta.Message
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, err
		}
		ms = append(ms, m)
	}
	return ms, rows.Err()
}

func (r reader) Message(ctx context.Context, userID int64, id string) (meta.Message, error) {
	m, err := scanMessage(r.q.QueryRowContext(ctx,
		`SELECT `+messageColumns+` FROM messages m WHERE m.id = ? AND m.user_id = ?`, id, userID))
	if err != nil {
		return meta.Message{}, fmt.Errorf("meta/sqlite: message %q of user %d: %w", id, userID, err)
	}
	return m, nil
}

// MessagesByMessageID returns the user's copies, oldest first.
func (r reader) MessagesByMessageID(ctx context.Context, userID int64, messageID string) ([]meta.Message, error) {
	ms, err := r.messages(ctx, `SELECT `+messageColumns+` FROM messages m
		WHERE m.user_id = ? AND m.message_id = ? ORDER BY m.created, m.id`, userID, messageID)
	if err != nil {
		return nil, fmt.Errorf("meta/sqlite: messages with Message-ID %q of user %d: %w", messageID, userID, err)
	}
	return ms, nil
}

// FolderCounts counts by folder with messages_list's (user_id, folder)
// prefix.
func (r reader) FolderCounts(ctx context.Context, userID int64) (map[meta.Folder]meta.FolderCount, error) {
	rows, err := r.q.QueryContext(ctx, `SELECT folder, count(*), coalesce(sum(NOT seen), 0) FROM messages
		WHERE user_id = ? GROUP BY folder`, userID)
	if err != nil {
		return nil, fmt.Errorf("meta/sqlite: folder counts of user %d: %w", userID, err)
	}
	defer rows.Close()
	out := map[meta.Folder]meta.FolderCount{}
	for rows.Next() {
		var f string
		var c meta.FolderCount
		if err := rows.Scan(&f, &c.Total, &c.Unseen); err != nil {
			return nil, fmt.Errorf("meta/sqlite: folder counts of user %d: %w", userID, err)
		}
		out[meta.Folder(f)] = c
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("meta/sqlite: folder counts of user %d: %w", userID, err)
	}
	return out, nil
}

// TrashedBefore walks the partial index messages_trashed.
func (r reader) TrashedBefore(ctx context.Context, t time.Time, limit int) ([]meta.Message, error) {
	if limit <= 0 {
		limit = -1
	}
	ms, err := r.messages(ctx, `SELECT `+messageColumns+` FROM messages m
		WHERE m.trashed <> 0 AND m.trashed < ? AND m.folder = ?
		ORDER BY m.trashed, m.id LIMIT ?`, nanos(t), string(meta.Trash), limit)
	if err != nil {
		return nil, fmt.Errorf("meta/sqlite: trashed before %v: %w", t, err)
	}
	return ms, nil
}

// Messages lists a folder newest first: by Date, then Created, then ID
// (descending) so that the order is total. Placeholders are loaded.
func (r reader) Messages(ctx context.Context, userID int64, opt meta.ListOptions) ([]meta.Message, error) {
	limit := opt.Limit
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	var ms []meta.Message
	var err error
	if k := opt.After; k != nil {
		// A row value comparison: SQLite walks messages_list from the key.
		ms, err = r.messages(ctx, `SELECT `+messageColumns+` FROM messages m
			WHERE m.user_id = ? AND m.folder = ? AND (m.date, m.created, m.id) < (?, ?, ?)
			ORDER BY m.date DESC, m.created DESC, m.id DESC LIMIT ?`,
			userID, string(opt.Folder), nanos(k.Date), nanos(k.Created), k.ID, limit)
	} else {
		ms, err = r.messages(ctx, `SELECT `+messageColumns+` FROM messages m
			WHERE m.user_id = ? AND m.folder = ?
			ORDER BY m.date DESC, m.created DESC, m.id DESC LIMIT ?`, userID, string(opt.Folder), limit)
	}
	if err != nil {
		return nil, fmt.Errorf("meta/sqlite: list %s of user %d: %w", opt.Folder, userID, err)
	}
	return ms, nil
}

func (r reader) Holds(ctx context.Context, userID int64, id resource.ID) (bool, error) {
	var ok bool
	err := r.q.QueryRowContext(ctx, `SELECT
		EXISTS (SELECT 1 FROM uploads WHERE user_id = ?1 AND digest = ?2) OR
		EXISTS (SELECT 1 FROM message_refs r JOIN messages m ON m.id = r.message_id
			WHERE r.digest = ?2 AND m.user_id = ?1)`, userID, string(id)).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("meta/sqlite: holds %s: %w", id, err)
	}
	return ok, nil
}

func (r reader) Referenced(ctx context.Context, id resource.ID) (bool, error) {
	var ok bool
	err := r.q.QueryRowContext(ctx, `SELECT
		EXISTS (SELECT 1 FROM uploads WHERE digest = ?1) OR
		EXISTS (SELECT 1 FROM message_refs WHERE digest = ?1)`, string(id)).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("meta/sqlite: referenced %s: %w", id, err)
	}
	return ok, nil
}

// Cursor reads sqlite_sequence, which AUTOINCREMENT keeps at the highest
// seq ever assigned, pruned or not.
func (r reader) Cursor(ctx context.Context) (int64, error) {
	var seq int64
	err := r.q.QueryRowContext(ctx, `SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'changes'), 0)`).Scan(&seq)
	if err != nil {
		return 0, fmt.Errorf("meta/sqlite: cursor: %w", err)
	}
	return seq, nil
}

// Changes reads the user's floor and then their changes. Outside a
// transaction Store.Changes wraps it in one.
func (r reader) Changes(ctx context.Context, userID int64, since int64, limit int) ([]meta.Change, error) {
	var floor int64
	err := r.q.QueryRowContext(ctx, `SELECT changes_floor FROM users WHERE id = ?`, userID).Scan(&floor)
	if err != nil && !errors.Is(err, sql.ErrNoRows) { // no such user: no changes
		return nil, fmt.Errorf("meta/sqlite: changes of user %d: %w", userID, err)
	}
	if since < floor {
		return nil, fmt.Errorf("meta/sqlite: changes of user %d since %d (kept from %d): %w", userID, since, floor, meta.ErrCursorGone)
	}
	if limit <= 0 {
		limit = -1
	}
	rows, err := r.q.QueryContext(ctx, `SELECT seq, user_id, message_id, folder, kind, uid FROM changes
		WHERE user_id = ? AND seq > ? ORDER BY seq LIMIT ?`, userID, since, limit)
	if err != nil {
		return nil, fmt.Errorf("meta/sqlite: changes of user %d: %w", userID, err)
	}
	defer rows.Close()
	var cs []meta.Change
	for rows.Next() {
		var c meta.Change
		var folder, kind string
		if err := rows.Scan(&c.Seq, &c.UserID, &c.MessageID, &folder, &kind, &c.UID); err != nil {
			return nil, fmt.Errorf("meta/sqlite: changes of user %d: %w", userID, err)
		}
		c.Folder, c.Kind = meta.Folder(folder), meta.ChangeKind(kind)
		cs = append(cs, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("meta/sqlite: changes of user %d: %w", userID, err)
	}
	return cs, nil
}

func (t *txn) SetSetting(ctx context.Context, key, value string) error {
	_, err := t.q.ExecContext(ctx, `INSERT INTO settings (key, value) VALUES (?, ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value)
	if err != nil {
		return fmt.Errorf("meta/sqlite: set setting %q: %w", key, err)
	}
	return nil
}

// AddUser ignores u.ID and sets Created to now when it is zero.
func (t *txn) AddUser(ctx context.Context, u meta.User) (meta.User, error) {
	if err := checkTimes(u.Created); err != nil {
		return meta.User{}, fmt.Errorf("meta/sqlite: add user %q: %w", u.Address, err)
	}
	if u.Created.IsZero() {
		u.Created = time.Now()
	}
	u.Created = u.Created.UTC()
	err := t.q.QueryRowContext(ctx, `INSERT INTO users (address, password_hash, created) VALUES (?, ?, ?) RETURNING id`,
		u.Address, u.PasswordHash, nanos(u.Created)).Scan(&u.ID)
	if err != nil {
		return meta.User{}, fmt.Errorf("meta/sqlite: add user %q: %w", u.Address, mapErr(err))
	}
	return u, nil
}

// one checks that an update or delete touched a row.
func one(res sql.Result, err error) error {
	if err != nil {
		return mapErr(err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return meta.ErrNotFound
	}
	return nil
}

func (t *txn) SetPassword(ctx context.Context, userID int64, hash string) error {
	if err := one(t.q.ExecContext(ctx, `UPDATE users SET password_hash = ? WHERE id = ?`, hash, userID)); err != nil {
		return fmt.Errorf("meta/sqlite: set password of user %d: %w", userID, err)
	}
	return nil
}

// DeleteUser relies on ON DELETE CASCADE for tokens, uploads, messages (and
// so their refs) and changes.
func (t *txn) DeleteUser(ctx context.Context, userID int64) error {
	if err := one(t.q.ExecContext(ctx, `DELETE FROM users WHERE id = ?`, userID)); err != nil {
		return fmt.Errorf("meta/sqlite: delete user %d: %w", userID, err)
	}
	return nil
}

// AddToken sets Created to now when it is zero. A token for no such user is
// meta.ErrNotFound; a hash already stored, meta.ErrExists.
func (t *txn) AddToken(ctx context.Context, tok meta.Token) error {
	if err := checkTimes(tok.Created, tok.Expires); err != nil {
		return fmt.Errorf("meta/sqlite: add token for user %d: %w", tok.UserID, err)
	}
	if tok.Created.IsZero() {
		tok.Created = time.Now()
	}
	_, err := t.q.ExecContext(ctx, `INSERT INTO tokens (hash, user_id, label, created, expires) VALUES (?, ?, ?, ?, ?)`,
		tok.Hash, tok.UserID, tok.Label, nanos(tok.Created), nanos(tok.Expires))
	if err != nil {
		return fmt.Errorf("meta/sqlite: add token for user %d: %w", tok.UserID, mapErr(err))
	}
	return nil
}

// DeleteToken returns meta.ErrNotFound when no token has the hash.
func (t *txn) DeleteToken(ctx context.Context, hash []byte) error {
	if err := one(t.q.ExecContext(ctx, `DELETE FROM tokens WHERE hash = ?`, hash)); err != nil {
		return fmt.Errorf("meta/sqlite: delete token: %w", err)
	}
	return nil
}

func (t *txn) AddUpload(ctx context.Context, userID int64, ref meta.Ref) error {
	if err := t.notCondemned(ctx, ref.ID); err != nil {
		return fmt.Errorf("meta/sqlite: add upload for user %d: %w", userID, err)
	}
	_, err := t.q.ExecContext(ctx, `INSERT INTO uploads (user_id, digest, size, created) VALUES (?, ?, ?, ?)
		ON CONFLICT (user_id, digest) DO UPDATE SET size = excluded.size, created = excluded.created`,
		userID, string(ref.ID), ref.Size, nanos(time.Now()))
	if err != nil {
		return fmt.Errorf("meta/sqlite: add upload %s for user %d: %w", ref.ID, userID, mapErr(err))
	}
	return nil
}

// logChange logs a change of the message in folder, where it has (or had)
// uid, raises the folder's highest modseq to it and returns its Seq.
func (t *txn) logChange(ctx context.Context, userID int64, id string, folder meta.Folder, uid uint32, kind meta.ChangeKind) (int64, error) {
	var seq int64
	err := t.q.QueryRowContext(ctx, `INSERT INTO changes (user_id, message_id, folder, kind, at, uid) VALUES (?, ?, ?, ?, ?, ?)
		RETURNING seq`, userID, id, string(folder), string(kind), nanos(time.Now()), uid).Scan(&seq)
	if err != nil {
		return 0, fmt.Errorf("log %s change: %w", kind, err)
	}
	_, err = t.q.ExecContext(ctx, `INSERT INTO folder_uids (user_id, folder, uid_validity, uid_next, highest_modseq)
		SELECT id, ?, max(1, created / 1000000000), 1, ? FROM users WHERE id = ?
		ON CONFLICT (user_id, folder) DO UPDATE SET highest_modseq = excluded.highest_modseq`,
		string(folder), seq, userID)
	if err != nil {
		return 0, fmt.Errorf("folder %q's modseq: %w", folder, mapErr(err))
	}
	if !slices.Contains(t.changed, userID) {
		t.changed = append(t.changed, userID)
	}
	return seq, nil
}

// folderRow makes the folder's folder_uids row if it has none.
func (t *txn) folderRow(ctx context.Context, userID int64, folder meta.Folder) error {
	_, err := t.q.ExecContext(ctx, `INSERT INTO folder_uids (user_id, folder, uid_validity, uid_next, highest_modseq)
		SELECT id, ?, max(1, created / 1000000000), 1, 0 FROM users WHERE id = ? ON CONFLICT DO NOTHING`,
		string(folder), userID)
	if err != nil {
		return fmt.Errorf("folder %q's UIDs: %w", folder, mapErr(err))
	}
	return nil
}

// nextUID gives the next UID of the folder.
func (t *txn) nextUID(ctx context.Context, userID int64, folder meta.Folder) (uint32, error) {
	if err := t.folderRow(ctx, userID, folder); err != nil {
		return 0, err
	}
	var uid uint32
	err := t.q.QueryRowContext(ctx, `UPDATE folder_uids SET uid_next = uid_next + 1 WHERE user_id = ? AND folder = ?
		RETURNING uid_next - 1`, userID, string(folder)).Scan(&uid)
	if err != nil {
		return 0, fmt.Errorf("folder %q's next UID: %w", folder, mapErr(err))
	}
	return uid, nil
}

// setModSeq records the Seq of the message's latest change.
func (t *txn) setModSeq(ctx context.Context, id string, seq int64) error {
	if _, err := t.q.ExecContext(ctx, `UPDATE messages SET modseq = ? WHERE id = ?`, seq, id); err != nil {
		return fmt.Errorf("modseq: %w", err)
	}
	return nil
}

func (t *txn) insertRefs(ctx context.Context, m meta.Message) error {
	for _, r := range m.Refs {
		// A ref named twice is kept once: Refs is a set.
		_, err := t.q.ExecContext(ctx, `INSERT INTO message_refs (message_id, digest, size) VALUES (?, ?, ?)
			ON CONFLICT DO NOTHING`, m.ID, string(r.ID), r.Size)
		if err != nil {
			return fmt.Errorf("ref %s: %w", r.ID, err)
		}
	}
	return nil
}

// InsertMessage sets Created and Updated to now when they are zero. A
// message for no such user is meta.ErrNotFound.
func (t *txn) InsertMessage(ctx context.Context, m meta.Message) error {
	if err := t.insertMessage(ctx, m); err != nil {
		return fmt.Errorf("meta/sqlite: insert message %q: %w", m.ID, err)
	}
	return nil
}

func (t *txn) insertMessage(ctx context.Context, m meta.Message) error {
	m, err := rows.NewMessage(m, time.Now())
	if err != nil {
		return err
	}
	if err := t.refsNotCondemned(ctx, m.Refs); err != nil {
		return err
	}
	if m.UID, err = t.nextUID(ctx, m.UserID, m.Folder); err != nil {
		return err
	}
	if err := t.insertRow(ctx, m); err != nil {
		return err
	}
	seq, err := t.logChange(ctx, m.UserID, m.ID, m.Folder, m.UID, meta.Created)
	if err != nil {
		return err
	}
	return t.setModSeq(ctx, m.ID, seq)
}

// insertRow inserts the message's row, with m.UID and m.ModSeq, and its refs.
func (t *txn) insertRow(ctx context.Context, m meta.Message) error {
	_, err := t.q.ExecContext(ctx, `INSERT INTO messages (id, user_id, folder, message_id, thread_id, status,
		status_reason, seen, from_, subject, date, created, updated, placeholder, trashed_from, trashed, keywords, uid,
		modseq)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		m.ID, m.UserID, string(m.Folder), m.MessageID, m.ThreadID, string(m.Status),
		m.StatusReason, m.Seen, m.From, m.Subject, nanos(m.Date), nanos(m.Created), nanos(m.Updated), m.Placeholder,
		string(m.TrashedFrom), nanos(m.Trashed), rows.JoinKeywords(m.Keywords), m.UID, m.ModSeq)
	if err != nil {
		return mapErr(err)
	}
	return t.insertRefs(ctx, m)
}

// UpdateMessage sets Updated to now when it is zero, and keeps the stored
// Created when m's is zero.
func (t *txn) UpdateMessage(ctx context.Context, m meta.Message) error {
	if err := t.updateMessage(ctx, m); err != nil {
		return fmt.Errorf("meta/sqlite: update message %q of user %d: %w", m.ID, m.UserID, err)
	}
	return nil
}

func (t *txn) updateMessage(ctx context.Context, m meta.Message) error {
	m, err := rows.CheckMessage(m)
	if err != nil {
		return err
	}
	var old string
	var created int64
	err = t.q.QueryRowContext(ctx, `SELECT folder, created, uid FROM messages WHERE id = ? AND user_id = ?`, m.ID, m.UserID).
		Scan(&old, &created, &m.UID)
	if err != nil {
		return mapErr(err)
	}
	changes := rows.UpdateChanges(meta.Folder(old), m.Folder)
	oldUID := m.UID
	if meta.Folder(old) != m.Folder {
		if m.UID, err = t.nextUID(ctx, m.UserID, m.Folder); err != nil {
			return err
		}
	}
	if m.Created.IsZero() {
		m.Created = fromNanos(created)
	}
	if m.Updated.IsZero() {
		m.Updated = time.Now()
	}
	if err := t.refsNotCondemned(ctx, m.Refs); err != nil {
		return err
	}
	_, err = t.q.ExecContext(ctx, `UPDATE messages SET folder = ?, message_id = ?, thread_id = ?, status = ?,
		status_reason = ?, seen = ?, from_ = ?, subject = ?, date = ?, created = ?, updated = ?, placeholder = ?,
		trashed_from = ?, trashed = ?, keywords = ?, uid = ?
		WHERE id = ?`,
		string(m.Folder), m.MessageID, m.ThreadID, string(m.Status),
		m.StatusReason, m.Seen, m.From, m.Subject, nanos(m.Date), nanos(m.Created), nanos(m.Updated), m.Placeholder,
		string(m.TrashedFrom), nanos(m.Trashed), rows.JoinKeywords(m.Keywords), m.UID, m.ID)
	if err != nil {
		return mapErr(err)
	}
	if _, err := t.q.ExecContext(ctx, `DELETE FROM message_refs WHERE message_id = ?`, m.ID); err != nil {
		return fmt.Errorf("refs: %w", err)
	}
	if err := t.insertRefs(ctx, m); err != nil {
		return err
	}
	var seq int64
	for _, c := range changes {
		uid := oldUID
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
	var folder string
	var uid uint32
	err := t.q.QueryRowContext(ctx, `DELETE FROM messages WHERE id = ? AND user_id = ? RETURNING folder, uid`, id, userID).
		Scan(&folder, &uid)
	if err != nil {
		return fmt.Errorf("meta/sqlite: delete message %q of user %d: %w", id, userID, mapErr(err))
	}
	if _, err := t.logChange(ctx, userID, id, meta.Folder(folder), uid, meta.Deleted); err != nil {
		return fmt.Errorf("meta/sqlite: delete message %q of user %d: %w", id, userID, err)
	}
	return nil
}

func (t *txn) Idempotency(ctx context.Context, userID int64, key string) (meta.Idempotency, error) {
	r := meta.Idempotency{UserID: userID, Key: key}
	var created, expires int64
	err := t.q.QueryRowContext(ctx, `SELECT request, result, created, expires FROM idempotency
		WHERE user_id = ? AND key = ?`, userID, key).Scan(&r.Request, &r.Result, &created, &expires)
	if err != nil {
		return meta.Idempotency{}, fmt.Errorf("meta/sqlite: idempotency key of user %d: %w", userID, mapErr(err))
	}
	r.Created, r.Expires = fromNanos(created), fromNanos(expires)
	return r, nil
}

// PutIdempotency: a record for no such user is meta.ErrNotFound.
func (t *txn) PutIdempotency(ctx context.Context, r meta.Idempotency) error {
	if err := checkTimes(r.Created, r.Expires); err != nil {
		return fmt.Errorf("meta/sqlite: idempotency key of user %d: %w", r.UserID, err)
	}
	if _, err := t.q.ExecContext(ctx, `DELETE FROM idempotency WHERE user_id = ? AND expires <= ?`,
		r.UserID, nanos(r.Created)); err != nil {
		return fmt.Errorf("meta/sqlite: pruning idempotency keys of user %d: %w", r.UserID, err)
	}
	_, err := t.q.ExecContext(ctx, `INSERT INTO idempotency (user_id, key, request, result, created, expires)
		VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (user_id, key) DO UPDATE SET request = excluded.request, result = excluded.result,
			created = excluded.created, expires = excluded.expires`,
		r.UserID, r.Key, r.Request, r.Result, nanos(r.Created), nanos(r.Expires))
	if err != nil {
		return fmt.Errorf("meta/sqlite: idempotency key of user %d: %w", r.UserID, mapErr(err))
	}
	return nil
}
