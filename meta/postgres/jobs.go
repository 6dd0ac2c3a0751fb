package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/meta/internal/rows"
)

const jobColumns = `id, kind, key, payload, state, attempts, next_try, last_error, created, updated, expires, holder`

func scanJob(row scanner) (meta.Job, error) {
	j, err := rows.ScanJob(row)
	return j, mapErr(err)
}

func (r reader) Job(ctx context.Context, id int64) (meta.Job, error) {
	j, err := scanJob(r.q.QueryRow(ctx, `SELECT `+jobColumns+` FROM jobs WHERE id = $1`, id))
	if err != nil {
		return meta.Job{}, fmt.Errorf("meta/postgres: job %d: %w", id, err)
	}
	return j, nil
}

func (r reader) JobByKey(ctx context.Context, key string) (meta.Job, error) {
	j, err := scanJob(r.q.QueryRow(ctx, `SELECT `+jobColumns+` FROM jobs WHERE key = $1`, key))
	if err != nil {
		return meta.Job{}, fmt.Errorf("meta/postgres: job %q: %w", key, err)
	}
	return j, nil
}

// Jobs orders by Created, then ID, both descending.
func (r reader) Jobs(ctx context.Context, kind string, limit int) ([]meta.Job, error) {
	var lim *int64
	if limit > 0 {
		l := int64(limit)
		lim = &l
	}
	var js []meta.Job
	var err error
	if kind == "" {
		js, err = collect(ctx, r.q, scanJob, `SELECT `+jobColumns+` FROM jobs
			ORDER BY created DESC, id DESC LIMIT $1::bigint`, lim)
	} else {
		js, err = collect(ctx, r.q, scanJob, `SELECT `+jobColumns+` FROM jobs WHERE kind = $1
			ORDER BY created DESC, id DESC LIMIT $2::bigint`, kind, lim)
	}
	if err != nil {
		return nil, fmt.Errorf("meta/postgres: jobs of kind %q: %w", kind, err)
	}
	return js, nil
}

// JobsByKeyPrefix ranges over the key's unique index (COLLATE "C": byte
// order).
func (r reader) JobsByKeyPrefix(ctx context.Context, prefix string) ([]meta.Job, error) {
	if prefix == "" {
		return nil, fmt.Errorf("meta/postgres: jobs by key prefix: empty prefix")
	}
	end := meta.KeyPrefixEnd(prefix)
	js, err := collect(ctx, r.q, scanJob, `SELECT `+jobColumns+` FROM jobs
		WHERE key >= $1 AND ($2 = '' OR key < $2) AND starts_with(key, $1) ORDER BY id`, prefix, end)
	if err != nil {
		return nil, fmt.Errorf("meta/postgres: jobs with key prefix %q: %w", prefix, err)
	}
	return js, nil
}

// CountJobs walks jobs_claim, the unfinished jobs of the kind; starts_with
// compares bytes, so a prefix holding '%' or '_' means itself.
func (r reader) CountJobs(ctx context.Context, kind, keyPrefix string) (int, error) {
	var n int
	err := r.q.QueryRow(ctx, `SELECT count(*) FROM jobs
		WHERE kind = $1 AND state IN ('queued', 'running') AND starts_with(key, $2)`, kind, keyPrefix).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("meta/postgres: count %q jobs: %w", kind, err)
	}
	return n, nil
}

// AddJob returns the job with its times in UTC. A taken key is
// meta.ErrExists, found by ON CONFLICT DO NOTHING so that the transaction
// goes on.
func (t *txn) AddJob(ctx context.Context, j meta.Job) (meta.Job, error) {
	j, err := t.addJob(ctx, j)
	if err != nil {
		return meta.Job{}, fmt.Errorf("meta/postgres: add job %q: %w", j.Key, err)
	}
	return j, nil
}

func (t *txn) addJob(ctx context.Context, j meta.Job) (meta.Job, error) {
	j, err := rows.NewJob(j, time.Now())
	if err != nil {
		return j, err
	}
	err = t.q.QueryRow(ctx, `INSERT INTO jobs (kind, key, payload, state, attempts, next_try, last_error,
		created, updated, expires, holder) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		ON CONFLICT DO NOTHING RETURNING id`,
		j.Kind, j.Key, j.Payload, string(j.State), j.Attempts, nanos(j.NextTry), j.LastError,
		nanos(j.Created), nanos(j.Updated), nanos(j.Expires), j.Holder).Scan(&j.ID)
	if errors.Is(err, pgx.ErrNoRows) {
		return j, meta.ErrExists
	}
	if err != nil {
		return j, mapErr(err)
	}
	return j, nil
}

func (t *txn) UpdateJob(ctx context.Context, j meta.Job) error {
	if err := t.updateJob(ctx, j); err != nil {
		return fmt.Errorf("meta/postgres: update job %d: %w", j.ID, err)
	}
	return nil
}

func (t *txn) updateJob(ctx context.Context, j meta.Job) error {
	j, err := rows.JobUpdate(j, time.Now())
	if err != nil {
		return err
	}
	return one(t.q.Exec(ctx, `UPDATE jobs SET state = $1, attempts = $2, next_try = $3, last_error = $4,
		payload = $5, updated = $6 WHERE id = $7`,
		string(j.State), j.Attempts, nanos(j.NextTry), j.LastError, j.Payload, nanos(j.Updated), j.ID))
}

// ClaimJobs selects the due jobs with FOR UPDATE SKIP LOCKED and marks them
// running in the same statement, in READ COMMITTED: concurrent claimers, on
// this node or another, skip the rows another has locked instead of waiting
// for them, and a row that another claimer updated and committed after this
// statement's snapshot is re-read and re-checked (no longer due: its
// next_try is that claimer's lease) before it is locked. So no two get one
// job for one lease. That is what SERIALIZABLE would guarantee for this
// statement, which reads nothing but the rows it locks; run serializable it
// would instead fail (40001) whenever claimers touched the same rows. The
// selection walks jobs_claim.
func (s *Store) ClaimJobs(ctx context.Context, holder, kind string, now time.Time, n int, lease time.Duration) ([]meta.Job, error) {
	js, err := s.claimJobs(ctx, holder, kind, now, n, lease)
	if err != nil {
		return nil, fmt.Errorf("meta/postgres: claim %q jobs: %w", kind, err)
	}
	return js, nil
}

// claimed is a claimed job with its next_try before the claim, by which
// the claims are ordered.
type claimed struct {
	meta.Job
	was int64
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
	cs, err := collect(ctx, s.pool, func(row scanner) (claimed, error) {
		var c claimed
		var err error
		c.Job, err = rows.ScanJob(row, &c.was)
		return c, err
	}, `WITH due AS (
			SELECT id, next_try FROM jobs
			WHERE kind = $1 AND state IN ('queued', 'running') AND next_try <= $2
			ORDER BY next_try, id LIMIT $3
			FOR UPDATE SKIP LOCKED
		)
		UPDATE jobs j SET state = 'running', attempts = j.attempts + 1, next_try = $4, updated = $2, holder = $5
		FROM due WHERE j.id = due.id
		RETURNING j.id, j.kind, j.key, j.payload, j.state, j.attempts, j.next_try, j.last_error,
			j.created, j.updated, j.expires, j.holder, due.next_try`,
		kind, nanos(now), n, nanos(until), holder)
	if err != nil {
		return nil, err
	}
	// RETURNING gives the rows in no set order: restore the selection's.
	slices.SortFunc(cs, func(a, b claimed) int {
		if a.was != b.was {
			return cmp.Compare(a.was, b.was)
		}
		return cmp.Compare(a.ID, b.ID)
	})
	js := make([]meta.Job, len(cs))
	for i, c := range cs {
		js[i] = c.Job
	}
	return js, nil
}

// RenewJob is one UPDATE in READ COMMITTED whose WHERE clause is the check
// that the lease is still j's: a concurrent claim of the row (possible only
// once the lease has ended) either commits first, and the re-checked row no
// longer matches, or waits for this one and then finds the row not due.
func (s *Store) RenewJob(ctx context.Context, j meta.Job, now time.Time, lease time.Duration) (meta.Job, error) {
	if lease <= 0 {
		return meta.Job{}, fmt.Errorf("meta/postgres: renew job %d: lease %v is not positive", j.ID, lease)
	}
	until := now.Add(lease)
	if err := checkTimes(now, until); err != nil {
		return meta.Job{}, fmt.Errorf("meta/postgres: renew job %d: %w", j.ID, err)
	}
	got, err := scanJob(s.pool.QueryRow(ctx, `UPDATE jobs SET next_try = $1, updated = $2
		WHERE id = $3 AND state = 'running' AND attempts = $4 AND holder = $5
		RETURNING `+jobColumns, nanos(until), nanos(now), j.ID, j.Attempts, j.Holder))
	if errors.Is(err, meta.ErrNotFound) {
		err = meta.ErrLeaseLost
	}
	if err != nil {
		return meta.Job{}, fmt.Errorf("meta/postgres: renew job %d: %w", j.ID, err)
	}
	return got, nil
}

// ReleaseJobs walks jobs_holder, the running jobs by holder.
func (s *Store) ReleaseJobs(ctx context.Context, holder string, now time.Time) (int, error) {
	if err := checkTimes(now); err != nil {
		return 0, fmt.Errorf("meta/postgres: release jobs: %w", err)
	}
	tag, err := s.pool.Exec(ctx, `UPDATE jobs SET state = 'queued', next_try = $1, updated = $1
		WHERE state = 'running' AND holder = $2`, nanos(now), holder)
	if err != nil {
		return 0, fmt.Errorf("meta/postgres: release the jobs of %q: %w", holder, err)
	}
	return int(tag.RowsAffected()), nil
}

// PruneJobs deletes done and failed jobs updated before the time and
// returns how many; the condition matches the partial index jobs_finished.
func (s *Store) PruneJobs(ctx context.Context, before time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM jobs WHERE state IN ('done', 'failed') AND updated < $1`, nanos(before))
	if err != nil {
		return 0, fmt.Errorf("meta/postgres: prune jobs: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// Lock is one upsert in READ COMMITTED: INSERT ... ON CONFLICT DO UPDATE
// ... WHERE locks the conflicting row, waiting for a concurrent locker of
// the same name to commit, and then evaluates the condition on the row as
// committed. So two nodes racing for a free or expired lock cannot both get
// it. (An advisory lock would die with its session, but would tie the lock
// to one pooled connection for the length of a pull.)
func (s *Store) Lock(ctx context.Context, name, holder string, now time.Time, lease time.Duration) (bool, error) {
	until, err := rows.CheckLock(name, holder, now, lease)
	if err != nil {
		return false, fmt.Errorf("meta/postgres: lock %q: %w", name, err)
	}
	tag, err := s.pool.Exec(ctx, `INSERT INTO locks (name, holder, until) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
		WHERE locks.until <= $4 OR locks.holder = excluded.holder`, name, holder, nanos(until), nanos(now))
	if err != nil {
		return false, fmt.Errorf("meta/postgres: lock %q: %w", name, mapErr(err))
	}
	return tag.RowsAffected() > 0, nil
}

func (s *Store) Unlock(ctx context.Context, name, holder string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM locks WHERE name = $1 AND holder = $2`, name, holder); err != nil {
		return fmt.Errorf("meta/postgres: unlock %q: %w", name, err)
	}
	return nil
}

func (s *Store) UnlockAll(ctx context.Context, holder string) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM locks WHERE holder = $1`, holder)
	if err != nil {
		return 0, fmt.Errorf("meta/postgres: unlock the locks of %q: %w", holder, err)
	}
	return int(tag.RowsAffected()), nil
}
