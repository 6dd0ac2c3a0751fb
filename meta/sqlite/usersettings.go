package sqlite

import (
	"context"
	"fmt"

	"github.com/pullmail/pullmail/meta"
)

// UserSetting implements meta.Reader. The rows are in user_settings
// (migration 0006), keyed by the user's id and deleted with the user by ON
// DELETE CASCADE.
func (r reader) UserSetting(ctx context.Context, userID int64, name string) (string, error) {
	var v string
	err := r.q.QueryRowContext(ctx, `SELECT value FROM user_settings WHERE user_id = ? AND name = ?`, userID, name).Scan(&v)
	if err != nil {
		return "", fmt.Errorf("meta/sqlite: setting %q of user %d: %w", name, userID, mapErr(err))
	}
	return v, nil
}

// SetUserSetting implements meta.Tx: the foreign key makes a setting of no
// such user meta.ErrNotFound; unsetting checks the user itself, since a
// DELETE of nothing is no error.
func (t *txn) SetUserSetting(ctx context.Context, userID int64, name, value string) error {
	if value == "" {
		var exists bool
		if err := t.q.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE id = ?)`, userID).Scan(&exists); err != nil {
			return fmt.Errorf("meta/sqlite: unset %q of user %d: %w", name, userID, err)
		}
		if !exists {
			return fmt.Errorf("meta/sqlite: unset %q of user %d: %w", name, userID, meta.ErrNotFound)
		}
		if _, err := t.q.ExecContext(ctx, `DELETE FROM user_settings WHERE user_id = ? AND name = ?`, userID, name); err != nil {
			return fmt.Errorf("meta/sqlite: unset %q of user %d: %w", name, userID, err)
		}
		return nil
	}
	_, err := t.q.ExecContext(ctx, `INSERT INTO user_settings (user_id, name, value) VALUES (?, ?, ?)
		ON CONFLICT (user_id, name) DO UPDATE SET value = excluded.value`, userID, name, value)
	if err != nil {
		return fmt.Errorf("meta/sqlite: set %q of user %d: %w", name, userID, mapErr(err))
	}
	return nil
}
