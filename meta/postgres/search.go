package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/pullmail/pullmail/meta"
)

// tsQuery is one phrase (meta.SearchWords) as tsquery text: its lexemes in
// a row (<->), the last a prefix (:*). The words hold only letters and
// digits; quoting them keeps the tsquery parser from reading any as an
// operator.
func tsQuery(phrase []string) string {
	parts := make([]string, len(phrase))
	for i, w := range phrase {
		parts[i] = "'" + strings.ReplaceAll(strings.ReplaceAll(w, `\`, `\\`), "'", "''") + "'"
	}
	parts[len(parts)-1] += ":*"
	return strings.Join(parts, " <-> ")
}

// Search filters the user's messages joined to message_text: words by the
// GIN index on words, a field's phrases by that field's own tsvector.
func (r reader) Search(ctx context.Context, userID int64, q meta.SearchQuery) ([]meta.Message, error) {
	where := []string{"m.user_id = $1"}
	args := []any{userID}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	var hit []string // the words' conditions, answered by the GIN index
	add := func(col string, phrases [][]string) {
		for _, p := range phrases {
			if len(p) == 0 {
				continue
			}
			c := fmt.Sprintf("%s @@ to_tsquery('simple', %s)", col, arg(tsQuery(p)))
			if col == "words" {
				hit = append(hit, c)
			} else {
				where = append(where, c)
			}
		}
	}
	add("words", q.Words)
	add("to_tsvector('simple', t.from_)", q.From)
	add("to_tsvector('simple', t.to_)", q.To)
	add("to_tsvector('simple', t.subject)", q.Subject)
	if q.Folder != "" {
		where = append(where, "m.folder = "+arg(string(q.Folder)))
	} else {
		where = append(where, fmt.Sprintf("m.folder NOT IN (%s, %s)", arg(string(meta.Trash)), arg(string(meta.Junk))))
	}
	if q.HasAttachment {
		where = append(where, "t.has_attachment")
	}
	if !q.Since.IsZero() {
		where = append(where, "m.date >= "+arg(nanos(q.Since)))
	}
	if !q.Until.IsZero() {
		where = append(where, "m.date < "+arg(nanos(q.Until)))
	}
	if k := q.Page; k != nil {
		where = append(where, fmt.Sprintf("(m.date, m.created, m.id) < (%s, %s, %s)", arg(nanos(k.Date)), arg(nanos(k.Created)), arg(k.ID)))
	}
	var limit *int64 // NULL: no limit
	if q.Limit > 0 {
		l := int64(q.Limit)
		limit = &l
	}
	// With words, their GIN hits are found first (MATERIALIZED keeps the
	// planner to it even before statistics show how many messages the user
	// has), then joined to the messages; without, the user's messages are
	// read.
	from := `messages m JOIN message_text t ON t.message_id = m.id`
	with := ""
	if len(hit) > 0 {
		with = `WITH hits AS MATERIALIZED (SELECT message_id FROM message_text WHERE ` + strings.Join(hit, " AND ") + `) `
		from = `hits h JOIN message_text t ON t.message_id = h.message_id JOIN messages m ON m.id = t.message_id`
	}
	ms, err := collect(ctx, r.q, scanMessage, with+`SELECT `+messageColumns+` FROM `+from+`
		WHERE `+strings.Join(where, " AND ")+`
		ORDER BY m.date DESC, m.created DESC, m.id DESC LIMIT `+arg(limit)+`::bigint`, args...)
	if err != nil {
		return nil, fmt.Errorf("meta/postgres: search of user %d: %w", userID, err)
	}
	return ms, nil
}

// Unindexed walks the partial index messages_unindexed (the statuses are
// literals so that the planner can use it).
func (r reader) Unindexed(ctx context.Context, limit int) ([]meta.Message, error) {
	var l *int64
	if limit > 0 {
		n := int64(limit)
		l = &n
	}
	ms, err := collect(ctx, r.q, scanMessage, `SELECT `+messageColumns+` FROM messages m
		WHERE NOT m.indexed AND m.status IN ('sent', 'complete')
		ORDER BY m.created, m.id LIMIT $1::bigint`, l)
	if err != nil {
		return nil, fmt.Errorf("meta/postgres: unindexed messages: %w", err)
	}
	return ms, nil
}

// IndexMessage marks the message indexed and upserts its row.
func (t *txn) IndexMessage(ctx context.Context, userID int64, id string, doc meta.SearchDoc) error {
	tag, err := t.q.Exec(ctx, `UPDATE messages SET indexed = true WHERE id = $1 AND user_id = $2`, id, userID)
	if err != nil {
		return fmt.Errorf("meta/postgres: index message %q of user %d: %w", id, userID, mapErr(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("meta/postgres: index message %q of user %d: %w", id, userID, meta.ErrNotFound)
	}
	body := doc.Body
	if len(body) > meta.MaxSearchBody {
		body = body[:meta.MaxSearchBody]
	}
	_, err = t.q.Exec(ctx, `INSERT INTO message_text (message_id, from_, to_, subject, body, has_attachment)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (message_id) DO UPDATE SET from_ = excluded.from_, to_ = excluded.to_, subject = excluded.subject,
			body = excluded.body, has_attachment = excluded.has_attachment`,
		id, meta.SearchText(doc.From), meta.SearchText(doc.To), meta.SearchText(doc.Subject), meta.SearchText(body), doc.HasAttachment)
	if err != nil {
		return fmt.Errorf("meta/postgres: index message %q of user %d: %w", id, userID, mapErr(err))
	}
	return nil
}

// Analyze refreshes the planner's statistics of the message tables, as
// autovacuum does some time after a bulk load: a benchmark (or an operator
// who has just imported mail) calls it so that searches use the GIN index
// at once.
func (s *Store) Analyze(ctx context.Context) error {
	if _, err := s.pool.Exec(ctx, `ANALYZE messages, message_text`); err != nil {
		return fmt.Errorf("meta/postgres: analyze: %w", err)
	}
	return nil
}
