package sqlite

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/meta/internal/rows"
)

const jobColumns = `id, kind, key, payload, state, attempts, next_try, last_error, created, updated, expires, holder`

func scanJob(row interface{ Scan(...any) error }) (meta.Job, error) {
	j, err := rows.ScanJob(row)
	return j, mapErr(err)
}

// jobs runs a query selecting jobColumns.
func jobs(ctx context.Context, q querier, query string, args ...any) ([]meta.Job, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var js []meta.Job
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, err
		}
		js = append(js, j)
	}
	return js, rows.Err()
}

func (r reader) Job(ctx context.Context, id int64) (meta.Job, error) {
	j, err := scanJob(r.q.QueryRowContext(ctx, `SELECT `+jobColumns+` FROM jobs WHERE id = ?`, id))
	if err != nil {
		return meta.Job{}, fmt.Errorf("meta/sqlite: job %d: %w", id, err)
	}
	return j, nil
}

func (r reader) JobByKey(ctx context.Context, key string) (meta.Job, error) {
	j, err := scanJob(r.q.QueryRowContext(ctx, `SELECT `+jobColumns+` FROM jobs WHERE key = ?`, key))
	if err != nil {
		return meta.Job{}, fmt.Errorf("meta/sqlite: job %q: %w", key, err)
	}
	return j, nil
}

// Jobs orders by Created, then ID, both descending.
func (r reader) Jobs(ctx context.Context, kind string, limit int) ([]meta.Job, error) {
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	var js []meta.Job
	var err error
	if kind == "" {
		js, err = jobs(ctx, r.q, `SELECT `+jobColumns+` FROM jobs ORDER BY created DESC, id DESC LIMIT ?`, limit)
	} else {
		js, err = jobs(ctx, r.q, `SELECT `+jobColumns+` FROM jobs WHERE kind = ?
			ORDER BY created DESC, id DESC LIMIT ?`, kind, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("meta/sqlite: jobs of kind %q: %w", kind, err)
	}
	return js, nil
}

// JobsByKeyPrefix ranges over the key's unique index (BINARY collation:
// byte order), and checks the prefix again for a prefix ending in 0xff.
func (r reader) JobsByKeyPrefix(ctx context.Context, prefix string) ([]meta.Job, error) {
	if prefix == "" {
		return nil, fmt.Errorf("meta/sqlite: jobs by key prefix: empty prefix")
	}
	end := meta.KeyPrefixEnd(prefix)
	js, err := jobs(ctx, r.q, `SELECT `+jobColumns+` FROM jobs
		WHERE key >= ? AND (? = '' OR key < ?) AND substr(CAST(key AS BLOB), 1, ?) = CAST(? AS BLOB) ORDER BY id`,
		prefix, end, end, len(prefix), prefix)
	if err != nil {
		return nil, fmt.Errorf("meta/sqlite: jobs with key prefix %q: %w", prefix, err)
	}
	return js, nil
}

// AddJob returns the job with its times in UTC.
func (t *txn) AddJob(ctx context.Context, j meta.Job) (meta.Job, error) {
	j, err := t.addJob(ctx, j)
	if err != nil {
		return meta.Job{}, fmt.Errorf("meta/sqlite: add job %q: %w", j.Key, err)
	}
	return j, nil
}

func (t *txn) addJob(ctx context.Context, j meta.Job) (meta.Job, error) {
	j, err := rows.NewJob(j, time.Now())
	if err != nil {
		return j, err
	}
	err = t.q.QueryRowContext(ctx, `INSERT INTO jobs (kind, key, payload, state, attempts, next_try, last_error,
		created, updated, expires, holder) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		j.Kind, j.Key, j.Payload, string(j.State), j.Attempts, nanos(j.NextTry), j.LastError,
		nanos(j.Created), nanos(j.Updated), nanos(j.Expires), j.Holder).Scan(&j.ID)
	if err != nil {
		return j, mapErr(err)
	}
	return j, nil
}

func (t *txn) UpdateJob(ctx context.Context, j meta.Job) error {
	if err := t.updateJob(ctx, j); err != nil {
		return fmt.Errorf("meta/sqlite: update job %d: %w", j.ID, err)
	}
	return nil
}

func (t *txn) updateJob(ctx context.Context, j meta.Job) error {
	j, err := rows.JobUpdate(j, time.Now())
	if err != nil {
		return err
	}
	return one(t.q.ExecContext(ctx, `UPDATE jobs SET state = ?, attempts = ?, next_try = ?, last_error = ?,
		payload = ?, updated = ? WHERE id = ?`,
		string(j.State), j.Attempts, nanos(j.NextTry), j.LastError, j.Payload, nanos(j.Updated), j.ID))
}

// ClaimJobs selects the due jobs and marks them running in one write
// transaction on the write connection (BEGIN IMMEDIATE): claimers in this
// process queue for that connection, those in other processes for the
// database's write lock, so no two see the same job due. The selection walks
// jobs_claim.
func (s *Store) ClaimJobs(ctx context.Context, holder, kind string, now time.Time, n int, lease time.Duration) ([]meta.Job, error) {
	js, err := s.claimJobs(ctx, holder, kind, now, n, lease)
	if err != nil {
		return nil, fmt.Errorf("meta/sqlite: claim %q jobs: %w", kind, err)
	}
	return js, nil
}

func (s *Store) claimJobs(ctx context.Context, holder, kind string, now time.Time, n int, lease time.Duration) ([]meta.Job, error) {
	if n <= 0 {
		return nil, nil
	}
	if lease <= 0 {
		return nil, fmt.Errorf("lease %v is not positive", lease)
	}
	if len(holder) > rows.MaxName {
		return nil, fmt.Errorf("holder of %d bytes", len(holder))
	}
	until := now.Add(lease)
	if err := checkTimes(now, until); err != nil {
		return nil, err
	}
	var js []meta.Job
	err := s.write(ctx, func(t *txn) error {
		var err error
		js, err = claim(ctx, t.q, holder, kind, now, until, n)
		return err
	})
	if err != nil {
		return nil, err
	}
	return js, nil
}

// claim is claimJobs's transaction.
func claim(ctx context.Context, tx querier, holder, kind string, now, until time.Time, n int) ([]meta.Job, error) {
	rows, err := tx.QueryContext(ctx, `SELECT id FROM jobs
		WHERE kind = ?1 AND state IN ('queued', 'running') AND next_try <= ?2
		ORDER BY next_try, id LIMIT ?3`, kind, nanos(now), n)
	if err != nil {
		return nil, err
	}
	rank := map[int64]int{} // id: place in the claim order
	var ids []byte          // a JSON array for json_each
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		if len(ids) > 0 {
			ids = append(ids, ',')
		}
		ids = strconv.AppendInt(ids, id, 10)
		rank[id] = len(rank)
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(rank) == 0 {
		return nil, nil
	}
	// RETURNING gives the rows in no set order and with the new next_try:
	// rank restores the order of the selection.
	js, err := jobs(ctx, tx, `UPDATE jobs SET state = 'running', attempts = attempts + 1, next_try = ?, updated = ?, holder = ?
		WHERE id IN (SELECT value FROM json_each(?))
		RETURNING `+jobColumns, nanos(until), nanos(now), holder, "["+string(ids)+"]")
	if err != nil {
		return nil, err
	}
	if len(js) != len(rank) {
		return nil, fmt.Errorf("claimed %d of %d selected jobs", len(js), len(rank))
	}
	slices.SortFunc(js, func(a, b meta.Job) int { return rank[a.ID] - rank[b.ID] })
	return js, nil
}

// RenewJob extends the lease in one statement on the write connection: the
// WHERE clause is the check that the lease is still j's.
func (s *Store) RenewJob(ctx context.Context, j meta.Job, now time.Time, lease time.Duration) (meta.Job, error) {
	if lease <= 0 {
		return meta.Job{}, fmt.Errorf("meta/sqlite: renew job %d: lease %v is not positive", j.ID, lease)
	}
	until := now.Add(lease)
	if err := checkTimes(now, until); err != nil {
		return meta.Job{}, fmt.Errorf("meta/sqlite: renew job %d: %w", j.ID, err)
	}
	var got []meta.Job
	err := s.write(ctx, func(t *txn) error {
		var err error
		got, err = jobs(ctx, t.q, `UPDATE jobs SET next_try = ?, updated = ?
			WHERE id = ? AND state = 'running' AND attempts = ? AND holder = ?
			RETURNING `+jobColumns, nanos(until), nanos(now), j.ID, j.Attempts, j.Holder)
		return err
	})
	if err != nil {
		return meta.Job{}, fmt.Errorf("meta/sqlite: renew job %d: %w", j.ID, err)
	}
	if len(got) == 0 {
		return meta.Job{}, fmt.Errorf("meta/sqlite: renew job %d: %w", j.ID, meta.ErrLeaseLost)
	}
	return got[0], nil
}

// ReleaseJobs walks jobs_holder, the running jobs by holder.
func (s *Store) ReleaseJobs(ctx context.Context, holder string, now time.Time) (int, error) {
	if err := checkTimes(now); err != nil {
		return 0, fmt.Errorf("meta/sqlite: release jobs: %w", err)
	}
	var n int64
	err := s.write(ctx, func(t *txn) error {
		res, err := t.q.ExecContext(ctx, `UPDATE jobs SET state = 'queued', next_try = ?1, updated = ?1
			WHERE state = 'running' AND holder = ?2`, nanos(now), holder)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("meta/sqlite: release the jobs of %q: %w", holder, err)
	}
	return int(n), nil
}

// PruneJobs deletes done and failed jobs updated before the time and
// returns how many; the condition matches the partial index jobs_finished.
func (s *Store) PruneJobs(ctx context.Context, before time.Time) (int, error) {
	res, err := s.wdb.ExecContext(ctx, `DELETE FROM jobs WHERE state IN ('done', 'failed') AND updated < ?`, nanos(before))
	if err != nil {
		return 0, fmt.Errorf("meta/sqlite: prune jobs: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("meta/sqlite: prune jobs: %w", err)
	}
	return int(n), nil
}

// CountJobs walks jobs_claim (kind, state): the prefix test reads only the
// unfinished jobs of the kind. A byte substr, not LIKE, so that a prefix holding
// '%' or '_' means itself.
func (r reader) CountJobs(ctx context.Context, kind, keyPrefix string) (int, error) {
	var n int
	err := r.q.QueryRowContext(ctx, `SELECT count(*) FROM jobs
		WHERE kind = ? AND state IN ('queued', 'running') AND substr(CAST(key AS BLOB), 1, ?) = CAST(? AS BLOB)`,
		kind, len(keyPrefix), keyPrefix).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("meta/sqlite: count %q jobs: %w", kind, err)
	}
	return n, nil
}

// Lock is one upsert on the write connection: the row is taken when there
// is none, or changed when its lease has ended or it is holder's already.
func (s *Store) Lock(ctx context.Context, name, holder string, now time.Time, lease time.Duration) (bool, error) {
	until, err := rows.CheckLock(name, holder, now, lease)
	if err != nil {
		return false, fmt.Errorf("meta/sqlite: lock %q: %w", name, err)
	}
	var got bool
	err = s.write(ctx, func(t *txn) error {
		res, err := t.q.ExecContext(ctx, `INSERT INTO locks (name, holder, until) VALUES (?1, ?2, ?3)
			ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
			WHERE locks.until <= ?4 OR locks.holder = excluded.holder`, name, holder, nanos(until), nanos(now))
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		got = n > 0
		return err
	})
	if err != nil {
		return false, fmt.Errorf("meta/sqlite: lock %q: %w", name, err)
	}
	return got, nil
}

func (s *Store) Unlock(ctx context.Context, name, holder string) error {
	err := s.write(ctx, func(t *txn) error {
		_, err := t.q.ExecContext(ctx, `DELETE FROM locks WHERE name = ? AND holder = ?`, name, holder)
		return err
	})
	if err != nil {
		return fmt.Errorf("meta/sqlite: unlock %q: %w", name, err)
	}
	return nil
}

func (s *Store) UnlockAll(ctx context.Context, holder string) (int, error) {
	var n int64
	err := s.write(ctx, func(t *txn) error {
		res, err := t.q.ExecContext(ctx, `DELETE FROM locks WHERE holder = ?`, holder)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("meta/sqlite: unlock the locks of %q: %w", holder, err)
	}
	return int(n), nil
}
