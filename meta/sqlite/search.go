package sqlite

import (
	"context"
	"fmt"
	"strings"

	"github.com/pullmail/pullmail/meta"
)

// ftsQuery is q's phrases as an FTS5 MATCH expression: each phrase a
// quoted string whose last token is a prefix ("w1 w2"*), scoped to a
// column where the query says, all ANDed. "" when q has no phrase.
func ftsQuery(q meta.SearchQuery) string {
	var parts []string
	add := func(col string, phrases [][]string) {
		for _, p := range phrases {
			if len(p) == 0 {
				continue
			}
			s := `"` + strings.ReplaceAll(strings.Join(p, " "), `"`, `""`) + `"*`
			if col != "" {
				s = col + " : " + s
			}
			parts = append(parts, s)
		}
	}
	add("", q.Words)
	add("from_", q.From)
	add("to_", q.To)
	add("subject", q.Subject)
	return strings.Join(parts, " AND ")
}

// Search joins message_text to the user's messages; the words go through
// the FTS5 index, the rest is the messages' own columns.
func (r reader) Search(ctx context.Context, userID int64, q meta.SearchQuery) ([]meta.Message, error) {
	where := []string{"m.user_id = ?"}
	args := []any{userID}
	// With words, the FTS5 hits drive the join (CROSS JOIN keeps SQLite to
	// that order): each hit is two primary-key lookups, and only the hits
	// are sorted. Without, the user's messages are read.
	from := `messages m JOIN message_text t ON t.message_id = m.id`
	if m := ftsQuery(q); m != "" {
		from = `message_fts f CROSS JOIN message_text t ON t.docid = f.rowid CROSS JOIN messages m ON m.id = t.message_id`
		where = append([]string{"message_fts MATCH ?"}, where...)
		args = append([]any{m}, args...)
	}
	if q.Folder != "" {
		where = append(where, "m.folder = ?")
		args = append(args, string(q.Folder))
	} else {
		where = append(where, "m.folder NOT IN (?, ?)")
		args = append(args, string(meta.Trash), string(meta.Junk))
	}
	if q.HasAttachment {
		where = append(where, "t.has_attachment = 1")
	}
	if !q.Since.IsZero() {
		where = append(where, "m.date >= ?")
		args = append(args, nanos(q.Since))
	}
	if !q.Until.IsZero() {
		where = append(where, "m.date < ?")
		args = append(args, nanos(q.Until))
	}
	if k := q.Page; k != nil {
		where = append(where, "(m.date, m.created, m.id) < (?, ?, ?)")
		args = append(args, nanos(k.Date), nanos(k.Created), k.ID)
	}
	limit := q.Limit
	if limit <= 0 {
		limit = -1
	}
	args = append(args, limit)
	ms, err := r.messages(ctx, `SELECT `+messageColumns+` FROM `+from+`
		WHERE `+strings.Join(where, " AND ")+`
		ORDER BY m.date DESC, m.created DESC, m.id DESC LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("meta/sqlite: search of user %d: %w", userID, err)
	}
	return ms, nil
}

// Unindexed walks the partial index messages_unindexed (the statuses are
// literals so that the planner can use it).
func (r reader) Unindexed(ctx context.Context, limit int) ([]meta.Message, error) {
	if limit <= 0 {
		limit = -1
	}
	ms, err := r.messages(ctx, `SELECT `+messageColumns+` FROM messages m
		WHERE m.indexed = 0 AND m.status IN ('sent', 'complete')
		ORDER BY m.created, m.id LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("meta/sqlite: unindexed messages: %w", err)
	}
	return ms, nil
}

// IndexMessage marks the message indexed and replaces its row: the
// trigger drops the old words, the new ones go in under a new docid.
func (t *txn) IndexMessage(ctx context.Context, userID int64, id string, doc meta.SearchDoc) error {
	res, err := t.q.ExecContext(ctx, `UPDATE messages SET indexed = 1 WHERE id = ? AND user_id = ?`, id, userID)
	if err != nil {
		return fmt.Errorf("meta/sqlite: index message %q of user %d: %w", id, userID, mapErr(err))
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return fmt.Errorf("meta/sqlite: index message %q of user %d: %w", id, userID, meta.ErrNotFound)
	}
	if _, err := t.q.ExecContext(ctx, `DELETE FROM message_text WHERE message_id = ?`, id); err != nil {
		return fmt.Errorf("meta/sqlite: index message %q: %w", id, err)
	}
	var docid int64
	err = t.q.QueryRowContext(ctx, `INSERT INTO message_text (message_id, has_attachment) VALUES (?, ?) RETURNING docid`,
		id, doc.HasAttachment).Scan(&docid)
	if err != nil {
		return fmt.Errorf("meta/sqlite: index message %q: %w", id, err)
	}
	body := doc.Body
	if len(body) > meta.MaxSearchBody {
		body = body[:meta.MaxSearchBody]
	}
	_, err = t.q.ExecContext(ctx, `INSERT INTO message_fts (rowid, from_, to_, subject, body) VALUES (?, ?, ?, ?, ?)`,
		docid, meta.SearchText(doc.From), meta.SearchText(doc.To), meta.SearchText(doc.Subject), meta.SearchText(body))
	if err != nil {
		return fmt.Errorf("meta/sqlite: index message %q: %w", id, err)
	}
	return nil
}
