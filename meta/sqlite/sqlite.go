// Package sqlite is the embedded metadata store: a meta.Store in one SQLite
// file, so that a domain runs with no database server to set up. It uses the
// pure-Go driver modernc.org/sqlite, so CGO_ENABLED=0 builds work.
//
// # Connections
//
// A Store holds two pools on the same file: one write connection, through
// which every Update runs as BEGIN IMMEDIATE (writes are serialised in the
// process and take the write lock up front, so a transaction never fails half
// way for want of it), and a pool of query-only read connections for View and
// the Store's own reads. The file is in WAL mode, so readers never block the
// writer nor the writer them. Other processes may open the same file (the
// admin CLI while the server runs): busy_timeout makes each wait for the
// other's write lock instead of failing with SQLITE_BUSY.
//
// synchronous=FULL: in WAL mode, NORMAL does not sync the WAL at commit, so
// a commit acknowledged just before a power loss may vanish. A send that the
// API reported as done must survive, so every commit is synced. The cost is
// one fsync per Update; BenchmarkInsertMessage measures both settings.
//
// # Schema
//
// The schema is in migrations/NNNN_name.sql, embedded, applied in order at
// Open, each in its own transaction and recorded in schema_migrations. A
// database holding a migration this build does not know (written by a newer
// Pullmail) is refused with ErrSchemaTooNew rather than used.
//
// Times are stored as Unix nanoseconds in UTC (0 for the zero time); resource
// ids as their text form. Change sequence numbers come from an AUTOINCREMENT
// key, never reused, so the cursor only grows even when every change has been
// pruned; each user's changes_floor is the highest of their pruned changes.
//
// Holds counts every upload row: uploads expire when PruneUploads removes
// them, which the server runs periodically.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/meta/internal/rows"
)

// ErrSchemaTooNew is returned by Open when the database was migrated by a
// newer version of Pullmail than this one.
var ErrSchemaTooNew = errors.New("database schema is newer than this program: upgrade Pullmail")

// busyTimeout is how long a connection waits for another's lock (another
// process writing, a checkpoint) before failing with SQLITE_BUSY.
const busyTimeout = 10 * time.Second

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Store is a meta.Store in one SQLite file. It is safe for concurrent use.
type Store struct {
	reader         // reads outside a transaction, on the read pool
	path   string  // the database file
	wdb    *sql.DB // the single write connection
	odb    *sql.DB // the replay cache's write connection (see open)

	onceCalls atomic.Uint64 // UseOnce calls, to sweep expired keys now and then
	onCommit  atomic.Pointer[func(users []int64)]
	rdb       *sql.DB // the read pool

	commit   committer  // runs every write transaction (commit.go)
	rstmts   *stmtCache // prepared statements of the read pool (stmt.go)
	wstmts   *stmtCache // and of the write connection
	stopOnce sync.Once
}

var (
	_ meta.Store    = (*Store)(nil)
	_ meta.Notifier = (*Store)(nil)
)

// options are the knobs Open fixes; tests and benchmarks vary them.
type options struct {
	synchronous string // FULL or NORMAL
}

// Open opens, creating it if needed, the database at path and brings its
// schema up to date. It fails with ErrSchemaTooNew when the file was migrated
// by a newer version. The caller closes the Store.
func Open(ctx context.Context, path string) (*Store, error) {
	return open(ctx, path, options{synchronous: "FULL"})
}

func open(ctx context.Context, path string, opt options) (*Store, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("meta/sqlite: open %q: the path must be non-empty and hold no '?' or '#'", path)
	}
	common := url.Values{}
	common.Add("_pragma", "busy_timeout("+strconv.FormatInt(busyTimeout.Milliseconds(), 10)+")")
	common.Add("_pragma", "foreign_keys(1)")

	w := url.Values{"_txlock": {"immediate"}}
	for k, v := range common {
		w[k] = append(w[k], v...)
	}
	w.Add("_pragma", "journal_mode(WAL)")
	w.Add("_pragma", "synchronous("+opt.synchronous+")")
	wdb, err := sql.Open("sqlite", path+"?"+w.Encode())
	if err != nil {
		return nil, fmt.Errorf("meta/sqlite: open %s: %w", path, err)
	}
	// One write connection: writes queue in database/sql rather than
	// contending for SQLite's lock.
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxIdleTime(0)
	wdb.SetConnMaxLifetime(0)
	if err := retryBusy(ctx, func() error {
		if err := wdb.PingContext(ctx); err != nil {
			return err
		}
		return migrate(ctx, wdb)
	}); err != nil {
		wdb.Close()
		return nil, fmt.Errorf("meta/sqlite: open %s: %w", path, err)
	}

	// The replay cache (UseOnce) writes on a connection of its own with
	// synchronous=NORMAL: in WAL mode its commits survive a process crash
	// (they are in the OS's cache) and only a power cut can lose the last
	// few, which re-opens a replay window of seconds for proofs seen in
	// those milliseconds. An fsync per DPoP proof would cap a domain at a
	// few thousand requests per second (docs/BENCHMARKS.md).
	o := url.Values{"_txlock": {"immediate"}}
	for k, v := range common {
		o[k] = append(o[k], v...)
	}
	o.Add("_pragma", "synchronous(NORMAL)")
	odb, err := sql.Open("sqlite", path+"?"+o.Encode())
	if err != nil {
		wdb.Close()
		return nil, fmt.Errorf("meta/sqlite: open %s: %w", path, err)
	}
	odb.SetMaxOpenConns(1)
	odb.SetMaxIdleConns(1)
	odb.SetConnMaxIdleTime(0)
	odb.SetConnMaxLifetime(0)

	// The read pool opens after the write connection has put the file in
	// WAL mode (a persistent setting) and migrated it.
	r := common
	r.Add("_pragma", "query_only(1)")
	rdb, err := sql.Open("sqlite", path+"?"+r.Encode())
	if err != nil {
		odb.Close()
		wdb.Close()
		return nil, fmt.Errorf("meta/sqlite: open %s: %w", path, err)
	}
	n := max(4, 2*runtime.GOMAXPROCS(0))
	rdb.SetMaxOpenConns(n)
	rdb.SetMaxIdleConns(n)
	if err := rdb.PingContext(ctx); err != nil {
		rdb.Close()
		odb.Close()
		wdb.Close()
		return nil, fmt.Errorf("meta/sqlite: open %s: %w", path, err)
	}
	s := &Store{path: path, wdb: wdb, odb: odb, rdb: rdb, rstmts: newStmtCache(rdb, false), wstmts: newStmtCache(wdb, true)}
	s.reader = reader{q: cachedDB{s.rstmts}}
	s.startCommitter()
	return s, nil
}

// Close closes the connections. The last connection to close checkpoints the WAL
// into the database file.
func (s *Store) Close() error {
	s.stopCommitter()
	s.rstmts.close()
	s.wstmts.close()
	return errors.Join(s.rdb.Close(), s.odb.Close(), s.wdb.Close())
}

// Update runs fn in a write transaction and commits if fn returns nil. If
// fn returns an error, or panics, it rolls back and returns that error, or
// re-panics. Updates that arrive while another commits are committed
// together, with one fsync, each under a savepoint of its own (group commit,
// see commit.go): fn runs on the committer's goroutine, its statements are
// not interrupted when ctx ends, and Update returns only once the commit is
// synced. Updates queue for the one committer, so fn must not call Update
// itself: it would wait for ever.
func (s *Store) Update(ctx context.Context, fn func(meta.Tx) error) error {
	return s.write(ctx, func(t *txn) error { return fn(t) })
}

// OnCommit sets fn to be called after every commit that appended to
// users' change logs, with those users' ids (each once), in the
// committer's goroutine: fn must be quick and must not call Update. It sees
// the commits of this Store only; another process writing the same file is
// not seen (poll Cursor for those). nil removes the callback.
func (s *Store) OnCommit(fn func(users []int64)) {
	if fn == nil {
		s.onCommit.Store(nil)
		return
	}
	s.onCommit.Store(&fn)
}

// View runs fn in a read transaction: every read in it sees the database as
// of its first read, whatever commits meanwhile.
func (s *Store) View(ctx context.Context, fn func(meta.Reader) error) error {
	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("meta/sqlite: begin read: %w", err)
	}
	defer tx.Rollback() // read-only: nothing to commit
	return fn(reader{q: cachedTx{tx, s.rstmts}})
}

// Changes is the Reader method, run in a read transaction so that the
// user's floor and their changes are read from the same snapshot.
func (s *Store) Changes(ctx context.Context, userID int64, since int64, limit int) ([]meta.Change, error) {
	var cs []meta.Change
	err := s.View(ctx, func(r meta.Reader) error {
		var err error
		cs, err = r.Changes(ctx, userID, since, limit)
		return err
	})
	return cs, err
}

// PruneUploads forgets uploads recorded before the time and returns how many.
func (s *Store) PruneUploads(ctx context.Context, before time.Time) (int, error) {
	res, err := s.wdb.ExecContext(ctx, `DELETE FROM uploads WHERE created < ?`, nanos(before))
	if err != nil {
		return 0, fmt.Errorf("meta/sqlite: prune uploads: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("meta/sqlite: prune uploads: %w", err)
	}
	return int(n), nil
}

// PruneChanges deletes changes logged before the time and returns how many.
// Each affected user's floor rises to the highest seq pruned from their log,
// so that Changes with an older cursor answers meta.ErrCursorGone.
func (s *Store) PruneChanges(ctx context.Context, before time.Time) (int, error) {
	var n int64
	err := s.write(ctx, func(t *txn) error {
		at := nanos(before)
		if _, err := t.q.ExecContext(ctx, `
		UPDATE users SET changes_floor = max(changes_floor,
			(SELECT max(seq) FROM changes WHERE changes.user_id = users.id AND at < ?1))
		WHERE id IN (SELECT user_id FROM changes WHERE at < ?1)`, at); err != nil {
			return fmt.Errorf("raise floors: %w", err)
		}
		res, err := t.q.ExecContext(ctx, `DELETE FROM changes WHERE at < ?`, at)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("meta/sqlite: prune changes: %w", err)
	}
	return int(n), nil
}

// migration is one numbered schema step from migrations/.
type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded migrations in order.
func migrations() ([]migration, error) {
	rs, err := rows.Migrations(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	ms := make([]migration, len(rs))
	for i, m := range rs {
		ms[i] = migration{version: m.Version, name: m.Name, sql: m.SQL}
	}
	return ms, nil
}

// migrate applies the migrations db lacks, each in its own transaction that
// first checks, under the write lock, that no other process applied it.
func migrate(ctx context.Context, db *sql.DB) error {
	ms, err := migrations()
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return migrateTo(ctx, db, ms)
}

// migrateTo applies the migrations of ms that db lacks: all of them, or the
// first few for a test of a later one.
func migrateTo(ctx context.Context, db *sql.DB, ms []migration) error {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY,
		name    TEXT    NOT NULL,
		applied INTEGER NOT NULL
	) STRICT`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	rows, err := db.QueryContext(ctx, `SELECT version, name FROM schema_migrations ORDER BY version`)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	applied := map[int]bool{}
	for rows.Next() {
		var v int
		var name string
		if err := rows.Scan(&v, &name); err != nil {
			rows.Close()
			return fmt.Errorf("migrate: %w", err)
		}
		if v < 1 || v > len(ms) {
			rows.Close()
			return fmt.Errorf("%w (the database has migration %d, %s; this program knows 1 to %d)", ErrSchemaTooNew, v, name, len(ms))
		}
		applied[v] = true
	}
	if err := rows.Close(); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for _, m := range ms {
		if applied[m.version] {
			continue
		}
		if err := apply(ctx, db, m); err != nil {
			return fmt.Errorf("migrate: %s: %w", m.name, err)
		}
	}
	return nil
}

// retryBusy runs fn again while it fails with SQLITE_BUSY, for up to
// busyTimeout. Processes that open a new file at the same moment race to
// put it in WAL mode and to migrate it, and SQLite answers some of those
// races (a connection that finds the WAL index being built, or a read that
// would have to become a write) with SQLITE_BUSY at once, without its busy
// handler (meta/sqlite TestMigrationsConcurrentOpen met it in CI).
func retryBusy(ctx context.Context, fn func() error) error {
	deadline := time.Now().Add(busyTimeout)
	for wait := time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		err := fn()
		var se *sqlite.Error
		if err == nil || !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_BUSY || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

func apply(ctx context.Context, db *sql.DB, m migration) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var done bool
	if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?)`, m.version).Scan(&done); err != nil {
		return err
	}
	if done { // another process got there first
		return nil
	}
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied) VALUES (?, ?, ?)`,
		m.version, m.name, nanos(time.Now())); err != nil {
		return err
	}
	return tx.Commit()
}

// mapErr turns SQLite's constraint errors into the meta sentinels: a unique
// or primary key clash is meta.ErrExists, a foreign key naming a missing row
// (a token or message for no such user) is meta.ErrNotFound.
func mapErr(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return meta.ErrNotFound
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return fmt.Errorf("%w (%v)", meta.ErrExists, err)
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return fmt.Errorf("%w (%v)", meta.ErrNotFound, err)
		}
	}
	return err
}

// checkTimes, nanos and fromNanos are how times are stored (rows.Nanos):
// Unix nanoseconds, 0 for the zero time; the Unix epoch itself reads back
// as the zero time.
func checkTimes(times ...time.Time) error { return rows.CheckTimes(times...) }
func nanos(t time.Time) int64             { return rows.Nanos(t) }
func fromNanos(n int64) time.Time         { return rows.FromNanos(n) }
