package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/resource"
)

// Garbage collection's condemnations (meta.CollectorWriter). Condemn reads
// the references and writes the condemnation; a write that adds a
// reference reads the condemnations and writes the reference. Both run in
// SERIALIZABLE transactions, so when they overlap PostgreSQL sees the two
// read-write dependencies and fails one with a serialization failure,
// which Update runs again: it then sees the other's commit.

func (r reader) Condemned(ctx context.Context, id resource.ID) (bool, error) {
	var ok bool
	if err := r.q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM condemned WHERE digest = $1)`, string(id)).Scan(&ok); err != nil {
		return false, fmt.Errorf("meta/postgres: condemned %s: %w", id, err)
	}
	return ok, nil
}

func (r reader) CollectorEpoch(ctx context.Context) (int64, error) {
	var e int64
	if err := r.q.QueryRow(ctx, `SELECT epoch FROM collector WHERE id = 1`).Scan(&e); err != nil {
		return 0, fmt.Errorf("meta/postgres: collector epoch: %w", err)
	}
	return e, nil
}

// advance moves the collector's epoch on.
func (t *txn) advance(ctx context.Context) error {
	if _, err := t.q.Exec(ctx, `UPDATE collector SET epoch = epoch + 1 WHERE id = 1`); err != nil {
		return fmt.Errorf("collector epoch: %w", err)
	}
	return nil
}

func (r reader) Condemnations(ctx context.Context, before time.Time, limit int) ([]meta.Condemnation, error) {
	var lim *int
	if limit > 0 {
		lim = &limit
	}
	rs, err := r.q.Query(ctx, `SELECT digest, at FROM condemned WHERE at < $1 ORDER BY at, digest LIMIT $2`, nanos(before), lim)
	if err != nil {
		return nil, fmt.Errorf("meta/postgres: condemnations: %w", err)
	}
	defer rs.Close()
	var out []meta.Condemnation
	for rs.Next() {
		var d string
		var at int64
		if err := rs.Scan(&d, &at); err != nil {
			return nil, fmt.Errorf("meta/postgres: condemnations: %w", err)
		}
		out = append(out, meta.Condemnation{ID: resource.ID(d), At: fromNanos(at)})
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("meta/postgres: condemnations: %w", err)
	}
	return out, nil
}

func (t *txn) Condemn(ctx context.Context, id resource.ID, at time.Time) (bool, error) {
	tag, err := t.q.Exec(ctx, `INSERT INTO condemned (digest, at) SELECT $1, $2
		WHERE NOT EXISTS (SELECT 1 FROM uploads WHERE digest = $1)
		AND NOT EXISTS (SELECT 1 FROM message_refs WHERE digest = $1)
		ON CONFLICT DO NOTHING`, string(id), nanos(at))
	if err != nil {
		return false, fmt.Errorf("meta/postgres: condemn %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return false, nil
	}
	if err := t.advance(ctx); err != nil {
		return false, fmt.Errorf("meta/postgres: condemn %s: %w", id, err)
	}
	return true, nil
}

func (t *txn) Release(ctx context.Context, id resource.ID) error {
	tag, err := t.q.Exec(ctx, `DELETE FROM condemned WHERE digest = $1`, string(id))
	if err != nil {
		return fmt.Errorf("meta/postgres: release %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return nil
	}
	if err := t.advance(ctx); err != nil {
		return fmt.Errorf("meta/postgres: release %s: %w", id, err)
	}
	return nil
}

// refsNotCondemned fails with a *meta.CondemnedError when one of the
// resources is condemned: every write that adds a reference asks it
// before writing anything, so that the error leaves nothing of the write.
func (t *txn) refsNotCondemned(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	var d string
	err := t.q.QueryRow(ctx, `SELECT digest FROM condemned WHERE digest = ANY($1::text[]) LIMIT 1`, ids).Scan(&d)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("condemned: %w", err)
	}
	return &meta.CondemnedError{ID: resource.ID(d)}
}
