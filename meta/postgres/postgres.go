// Package postgres is the scale-out metadata store: a meta.Store in one
// PostgreSQL database, shared by every `pullmail serve` node of a domain
// (and by the admin CLI while they run). It uses github.com/jackc/pgx/v5.
//
// # Transactions
//
// Update runs fn in a SERIALIZABLE transaction. PostgreSQL answers a
// transaction that conflicts with a concurrent one with a serialization
// failure (SQLSTATE 40001) or a deadlock (40P01); Update then rolls back and
// runs fn again, up to maxAttempts times with a short random backoff, as
// meta.Store.Update's contract allows. Every write transaction runs on a
// connection holding retryLock, a session advisory lock taken before BEGIN
// (a lock taken by the transaction's first statement would come after its
// snapshot): shared on a first attempt, so writers run side by side, and
// exclusive on a retry, so that a transaction that conflicted runs again
// alone, on a snapshot taken once every writer it could conflict with has
// ended, and commits. Without it, writers that keep meeting each other
// (sixteen sends of one user at once read and write the same index pages, and
// SSI's predicate locks are by page) failed each other until their attempts
// ran out. A conflict is recognised whatever fn
// did with the error: every statement's error is noted by the transaction
// (conflictNoter), so a fn that swallowed one still gets its retry.
//
// A Tx method that finds a row missing or taken (meta.ErrNotFound,
// meta.ErrExists) does so without a failed statement (ON CONFLICT DO
// NOTHING, EXISTS guards), so that the transaction stays usable, as with
// SQLite: the MTA goes on after AddJob says a push is already queued.
//
// View runs fn in a REPEATABLE READ READ ONLY transaction: one snapshot, which
// is what View promises; it never fails for a conflict. The Store's own reads
// outside a transaction are single statements (each its own snapshot).
// ClaimJobs, UseOnce and the Prune methods are single statements too, run in
// READ COMMITTED, where each is atomic: see their comments for why that is as
// good as serializable for them.
//
// # The change feed
//
// See feed.go: seq numbers are taken under a transaction-scoped advisory
// lock held to commit, so that seq order is commit order on every node, and
// commits that changed users' logs are announced with NOTIFY, which
// OnCommit's listener turns into calls of its callback.
//
// # Schema
//
// migrations/NNNN_name.sql, embedded, applied in order at Open under a
// session advisory lock (two nodes starting at once apply each step once),
// each in its own transaction, recorded in schema_migrations. A database
// holding a migration this build does not know is refused with
// ErrSchemaTooNew. Times are Unix nanoseconds (bigint), as in meta/sqlite.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/meta/internal/rows"
)

// ErrSchemaTooNew is returned by Open when the database was migrated by a
// newer version of Pullmail than this one.
var ErrSchemaTooNew = errors.New("database schema is newer than this program: upgrade Pullmail")

// maxAttempts bounds how many times Update runs fn when it keeps
// conflicting. Conflicts are rare (writers of the change log queue on its
// lock rather than conflict), so reaching it means heavy contention on the
// same rows: the caller gets the conflict error and may retry later.
const maxAttempts = 10

// migrationLock and feedLock are the advisory lock keys of the schema's
// migrations and of the change log ("pullmail" and "pullfeed" in ASCII).
const (
	migrationLock int64 = 0x70756c6c6d61696c
	feedLock      int64 = 0x70756c6c66656564
	retryLock     int64 = 0x70756c6c72657472 // "pullretr"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Store is a meta.Store on a PostgreSQL database. It is safe for concurrent
// use.
type Store struct {
	reader // reads outside a transaction, on the pool
	pool   *pgxpool.Pool

	onceCalls atomic.Uint64 // UseOnce calls, to sweep expired keys now and then
	listen    listener      // feed.go
	closeOnce sync.Once
}

var (
	_ meta.Store    = (*Store)(nil)
	_ meta.Notifier = (*Store)(nil)
)

// Open connects to the database at rawURL, a PostgreSQL connection URL
// (postgres://USER[:PASSWORD]@HOST[:PORT]/DB?sslmode=...&pool_max_conns=N,
// see pgxpool.ParseConfig; pool_max_conns defaults to twice the CPUs, at
// least 8, plus one session for OnCommit's listener), and brings its schema up to date. It fails with
// ErrSchemaTooNew when the database was migrated by a newer version. The
// caller closes the Store.
func Open(ctx context.Context, rawURL string) (*Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, fmt.Errorf("meta/postgres: open: want a postgres:// URL, not %q", redact(rawURL))
	}
	cfg, err := pgxpool.ParseConfig(rawURL)
	if err != nil {
		return nil, fmt.Errorf("meta/postgres: open %s: %w", redact(rawURL), err)
	}
	if !u.Query().Has("pool_max_conns") {
		// pgxpool's default, max(4, CPUs), starves a node whose readers
		// (event streams, listings) wait while writers queue for the
		// change-log lock.
		cfg.MaxConns = int32(max(8, 2*runtime.GOMAXPROCS(0)))
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("meta/postgres: open %s: %w", redact(rawURL), err)
	}
	if err := migrate(ctx, pool, nil); err != nil {
		pool.Close()
		return nil, fmt.Errorf("meta/postgres: open %s: %w", redact(rawURL), err)
	}
	s := &Store{pool: pool, reader: reader{q: pool}}
	s.listen.init(cfg.ConnConfig)
	return s, nil
}

// redact is the URL without its password, for error messages.
func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// Close stops the listener and closes the pool.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.listen.stop()
		s.pool.Close()
	})
	return nil
}

// Update runs fn in a SERIALIZABLE transaction and commits if fn returns
// nil; on a serialization failure or deadlock, wherever it surfaced (a
// statement, the commit), it rolls back and runs fn again, at most
// maxAttempts times in all. If fn returns another error, or panics, it rolls
// back and returns that error, or re-panics.
func (s *Store) Update(ctx context.Context, fn func(meta.Tx) error) error {
	return s.write(ctx, func(t *txn) error { return fn(t) })
}

// write is Update for this package's own transactions.
func (s *Store) write(ctx context.Context, fn func(*txn) error) error {
	var err error
	for attempt := 1; ; attempt++ {
		var retry bool
		retry, err = s.attempt(ctx, fn, attempt > 1)
		if !retry || attempt == maxAttempts || ctx.Err() != nil {
			return err
		}
		// Back off a random while, up to a few milliseconds at first and
		// 50 ms later, so that the conflicting writers spread out.
		d := time.Duration(rand.Int64N(int64(min(time.Millisecond<<attempt, 50*time.Millisecond))))
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return err
		}
	}
}

// attempt runs fn once, reporting whether it ended in a conflict worth
// another run. It holds retryLock around the transaction (see the package
// doc): shared, or exclusive for a retry (again).
func (s *Store) attempt(ctx context.Context, fn func(*txn) error, again bool) (retry bool, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return false, fmt.Errorf("meta/postgres: connecting: %w", err)
	}
	defer conn.Release()
	lock, unlock := `SELECT pg_advisory_lock_shared($1)`, `SELECT pg_advisory_unlock_shared($1)`
	if again {
		lock, unlock = `SELECT pg_advisory_lock($1)`, `SELECT pg_advisory_unlock($1)`
	}
	if _, err := conn.Exec(ctx, lock, retryLock); err != nil {
		// Cancelled while waiting, the lock may be had: only the end of
		// the session is sure to release it.
		conn.Conn().Close(context.WithoutCancel(ctx))
		return false, fmt.Errorf("meta/postgres: waiting for the writers' lock: %w", err)
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, unlock, retryLock); err != nil {
			conn.Conn().Close(uctx) // the session's end releases it
		}
	}()
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.Serializable, AccessMode: pgx.ReadWrite})
	if err != nil {
		return false, fmt.Errorf("meta/postgres: begin: %w", err)
	}
	n := &conflictNoter{tx: tx}
	t := &txn{reader: reader{q: n}, n: n}
	committed := false
	defer func() {
		if !committed {
			// Rollback on a fresh context: ctx may be why we are here.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			tx.Rollback(rctx)
			cancel()
		}
	}()
	if err := fn(t); err != nil {
		if n.conflict != nil {
			return true, err
		}
		return false, err
	}
	if n.conflict != nil { // fn swallowed it: the transaction is aborted
		return true, fmt.Errorf("meta/postgres: %w", n.conflict)
	}
	if err := t.notify(ctx); err != nil {
		return n.conflict != nil, fmt.Errorf("meta/postgres: notify: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		committed = true // nothing left to roll back
		return isConflict(err), fmt.Errorf("meta/postgres: commit: %w", err)
	}
	committed = true
	return false, nil
}

// isConflict reports whether err is a serialization failure or a deadlock,
// after which the transaction may succeed if run again.
func isConflict(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// View runs fn in a REPEATABLE READ, READ ONLY transaction: every read in
// it sees one snapshot, taken at its first statement.
func (s *Store) View(ctx context.Context, fn func(meta.Reader) error) error {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("meta/postgres: begin read: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) // read-only: nothing to commit
	return fn(reader{q: tx})
}

// querier is what *pgxpool.Pool, pgx.Tx and conflictNoter have in common.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// conflictNoter runs a write transaction's statements and keeps the first
// conflict error any of them met, for Update's retry.
type conflictNoter struct {
	tx       pgx.Tx
	conflict error
}

func (n *conflictNoter) note(err error) error {
	if n.conflict == nil && err != nil && isConflict(err) {
		n.conflict = err
	}
	return err
}

func (n *conflictNoter) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	tag, err := n.tx.Exec(ctx, sql, args...)
	return tag, n.note(err)
}

func (n *conflictNoter) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	rows, err := n.tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, n.note(err)
	}
	return notedRows{rows, n}, nil
}

func (n *conflictNoter) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return notedRow{n.tx.QueryRow(ctx, sql, args...), n}
}

type notedRows struct {
	pgx.Rows
	n *conflictNoter
}

func (r notedRows) Err() error { return r.n.note(r.Rows.Err()) }

type notedRow struct {
	row pgx.Row
	n   *conflictNoter
}

func (r notedRow) Scan(dest ...any) error { return r.n.note(r.row.Scan(dest...)) }

// migrations returns the embedded migrations in order.
func migrations() ([]rows.Migration, error) { return rows.Migrations(migrationFiles, "migrations") }

// migrate applies the migrations the database lacks (ms, or all embedded
// ones when ms is nil) on one connection holding the migration lock, so that
// nodes starting together neither apply a step twice nor race to create
// schema_migrations.
func migrate(ctx context.Context, pool *pgxpool.Pool, ms []rows.Migration) error {
	if ms == nil {
		var err error
		if ms, err = migrations(); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrationLock); err != nil {
		return fmt.Errorf("migrate: lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, migrationLock)
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version integer PRIMARY KEY,
		name    text    NOT NULL,
		applied bigint  NOT NULL
	)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	recorded, err := conn.Query(ctx, `SELECT version, name FROM schema_migrations ORDER BY version`)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	applied := map[int]bool{}
	var v int
	var name string
	_, err = pgx.ForEachRow(recorded, []any{&v, &name}, func() error {
		if v < 1 || v > len(ms) {
			return fmt.Errorf("%w (the database has migration %d, %s; this program knows 1 to %d)", ErrSchemaTooNew, v, name, len(ms))
		}
		applied[v] = true
		return nil
	})
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for _, m := range ms {
		if applied[m.Version] {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name, applied) VALUES ($1, $2, $3)`,
				m.Version, m.Name, nanos(time.Now()))
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate: %s: %w", m.Name, err)
		}
	}
	return nil
}

// mapErr turns PostgreSQL's errors into the meta sentinels: no row is
// meta.ErrNotFound, a unique clash meta.ErrExists, a foreign key naming a
// missing row meta.ErrNotFound. (The Tx methods avoid the last two by
// guarding their statements, so that the transaction stays usable; the
// mapping remains for a row deleted by a concurrent commit in between.)
func mapErr(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return meta.ErrNotFound
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "23505": // unique_violation
			return fmt.Errorf("%w (%v)", meta.ErrExists, err)
		case "23503": // foreign_key_violation
			return fmt.Errorf("%w (%v)", meta.ErrNotFound, err)
		}
	}
	return err
}

// checkTimes, nanos and fromNanos are how times are stored (rows.Nanos),
// as in meta/sqlite.
func checkTimes(times ...time.Time) error { return rows.CheckTimes(times...) }
func nanos(t time.Time) int64             { return rows.Nanos(t) }
func fromNanos(n int64) time.Time         { return rows.FromNanos(n) }
