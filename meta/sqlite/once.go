package sqlite

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// pruneEvery is how many UseOnce calls pass between sweeps of expired keys.
const pruneEvery = 1024

// UseOnce implements meta.Once. The check and the insert are one statement
// on the single write connection, so two callers racing with one key get
// one true and one false.
func (s *Store) UseOnce(ctx context.Context, key string, expires time.Time) (bool, error) {
	if key == "" || len(key) > 512 {
		return false, errors.New("meta/sqlite: once: key must be 1 to 512 bytes")
	}
	now := nanos(time.Now())
	tx, err := s.odb.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("meta/sqlite: once: %w", err)
	}
	defer tx.Rollback()
	if s.onceCalls.Add(1)%pruneEvery == 0 {
		if _, err := tx.ExecContext(ctx, `DELETE FROM once WHERE expires <= ?`, now); err != nil {
			return false, fmt.Errorf("meta/sqlite: once: %w", err)
		}
	}
	// An expired entry for the key no longer counts.
	res, err := tx.ExecContext(ctx, `
		INSERT INTO once (key, expires) VALUES (?1, ?2)
		ON CONFLICT (key) DO UPDATE SET expires = excluded.expires WHERE once.expires <= ?3`,
		key, nanos(expires), now)
	if err != nil {
		return false, fmt.Errorf("meta/sqlite: once: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("meta/sqlite: once: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("meta/sqlite: once: %w", err)
	}
	return n == 1, nil
}
