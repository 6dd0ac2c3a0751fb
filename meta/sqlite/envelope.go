package sqlite

import (
	"context"
	"fmt"
)

// Envelope implements meta.Reader.
func (r reader) Envelope(ctx context.Context, userID int64, id string) ([]byte, error) {
	var env []byte
	err := r.q.QueryRowContext(ctx, `SELECT e.envelope FROM envelopes e JOIN messages m ON m.id = e.message_id
		WHERE e.message_id = ? AND m.user_id = ?`, id, userID).Scan(&env)
	if err != nil {
		return nil, fmt.Errorf("meta/sqlite: envelope of %q: %w", id, mapErr(err))
	}
	return env, nil
}

// SetEnvelope implements meta.Tx; the message must exist (meta.ErrNotFound).
func (t *txn) SetEnvelope(ctx context.Context, id string, envelope []byte) error {
	_, err := t.q.ExecContext(ctx, `INSERT INTO envelopes (message_id, envelope) VALUES (?, ?)
		ON CONFLICT (message_id) DO UPDATE SET envelope = excluded.envelope`, id, envelope)
	if err != nil {
		// A missing message is a foreign-key failure: ErrNotFound.
		return fmt.Errorf("meta/sqlite: envelope of %q: %w", id, mapErr(err))
	}
	return nil
}
