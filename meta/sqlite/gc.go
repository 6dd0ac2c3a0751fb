package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/resource"
)

// Garbage collection's condemnations (meta.CollectorWriter): one table,
// read by every write that adds a reference. SQLite runs one write
// transaction at a time, so a condemnation and a reference never commit
// unseen by each other.

func (r reader) Condemned(ctx context.Context, id resource.ID) (bool, error) {
	var ok bool
	if err := r.q.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM condemned WHERE digest = ?)`, string(id)).Scan(&ok); err != nil {
		return false, fmt.Errorf("meta/sqlite: condemned %s: %w", id, err)
	}
	return ok, nil
}

func (r reader) CollectorEpoch(ctx context.Context) (int64, error) {
	var e int64
	if err := r.q.QueryRowContext(ctx, `SELECT epoch FROM collector WHERE id = 1`).Scan(&e); err != nil {
		return 0, fmt.Errorf("meta/sqlite: collector epoch: %w", err)
	}
	return e, nil
}

// advance moves the collector's epoch on.
func (t *txn) advance(ctx context.Context) error {
	if _, err := t.q.ExecContext(ctx, `UPDATE collector SET epoch = epoch + 1 WHERE id = 1`); err != nil {
		return fmt.Errorf("collector epoch: %w", err)
	}
	return nil
}

func (r reader) Condemnations(ctx context.Context, before time.Time, limit int) ([]meta.Condemnation, error) {
	if limit <= 0 {
		limit = -1
	}
	rs, err := r.q.QueryContext(ctx, `SELECT digest, at FROM condemned WHERE at < ? ORDER BY at, digest LIMIT ?`, nanos(before), limit)
	if err != nil {
		return nil, fmt.Errorf("meta/sqlite: condemnations: %w", err)
	}
	defer rs.Close()
	var out []meta.Condemnation
	for rs.Next() {
		var d string
		var at int64
		if err := rs.Scan(&d, &at); err != nil {
			return nil, fmt.Errorf("meta/sqlite: condemnations: %w", err)
		}
		out = append(out, meta.Condemnation{ID: resource.ID(d), At: fromNanos(at)})
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("meta/sqlite: condemnations: %w", err)
	}
	return out, nil
}

func (t *txn) Condemn(ctx context.Context, id resource.ID, at time.Time) (bool, error) {
	res, err := t.q.ExecContext(ctx, `INSERT INTO condemned (digest, at) SELECT ?1, ?2
		WHERE NOT EXISTS (SELECT 1 FROM uploads WHERE digest = ?1)
		AND NOT EXISTS (SELECT 1 FROM message_refs WHERE digest = ?1)
		ON CONFLICT DO NOTHING`, string(id), nanos(at))
	if err != nil {
		return false, fmt.Errorf("meta/sqlite: condemn %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("meta/sqlite: condemn %s: %w", id, err)
	}
	if n == 0 {
		return false, nil
	}
	if err := t.advance(ctx); err != nil {
		return false, fmt.Errorf("meta/sqlite: condemn %s: %w", id, err)
	}
	return true, nil
}

func (t *txn) Release(ctx context.Context, id resource.ID) error {
	res, err := t.q.ExecContext(ctx, `DELETE FROM condemned WHERE digest = ?`, string(id))
	if err != nil {
		return fmt.Errorf("meta/sqlite: release %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return err
	}
	if err := t.advance(ctx); err != nil {
		return fmt.Errorf("meta/sqlite: release %s: %w", id, err)
	}
	return nil
}

// notCondemned fails with a *meta.CondemnedError when id is condemned:
// every write that adds a reference to a resource asks it first.
func (t *txn) notCondemned(ctx context.Context, id resource.ID) error {
	c, err := t.Condemned(ctx, id)
	if err != nil {
		return err
	}
	if c {
		return &meta.CondemnedError{ID: id}
	}
	return nil
}

// refsNotCondemned is notCondemned for each of a message's refs, before
// any of its rows is written: a CondemnedError leaves nothing of the write.
func (t *txn) refsNotCondemned(ctx context.Context, refs []meta.Ref) error {
	for _, r := range refs {
		if err := t.notCondemned(ctx, r.ID); err != nil {
			return err
		}
	}
	return nil
}
