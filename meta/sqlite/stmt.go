package sqlite

import (
	"context"
	"database/sql"
	"sync"
)

// Prepared statements.
//
// SQLite compiles every statement before it runs it, and with the pure-Go
// driver that compilation was a tenth of a busy domain's CPU (profiles of
// pullmail bench, workload 4). A stmtCache prepares each distinct query text
// once per pool; database/sql then keeps it prepared on each connection that
// runs it. Queries are fixed strings in this package but a few are built
// (lists of placeholders), so the cache holds at most maxStmts and runs the
// rest unprepared.

const maxStmts = 256

type stmtCache struct {
	db *sql.DB
	// deferred: the pool has one connection (the write connection), which
	// the transaction asking for a statement holds, so the statement cannot
	// be prepared then; the query runs unprepared and the committer
	// prepares it after the commit (prepareWanted).
	deferred bool
	mu       sync.Mutex
	m        map[string]*sql.Stmt
	wanted   map[string]bool
}

func newStmtCache(db *sql.DB, deferred bool) *stmtCache {
	return &stmtCache{db: db, deferred: deferred, m: make(map[string]*sql.Stmt), wanted: make(map[string]bool)}
}

// get returns the query's statement, preparing it if needed, or nil when
// it is not prepared (yet): the cache is full, the query does not prepare
// (running its text gives the error), or it cannot be prepared now. inTx
// says the caller holds a connection of the pool in a transaction: then a
// prepare could wait for a connection that never comes free (the write pool
// has one; the read pool's could all be so held), so it is left to the
// committer (deferred) or to a goroutine of its own.
//
// The mutex is never held while preparing: a prepare may wait for a
// connection, and a transaction holding one may be asking for a statement.
func (c *stmtCache) get(_ context.Context, query string, inTx bool) *sql.Stmt {
	c.mu.Lock()
	if st, ok := c.m[query]; ok {
		c.mu.Unlock()
		return st
	}
	if len(c.m)+len(c.wanted) >= maxStmts || c.wanted[query] {
		c.mu.Unlock()
		return nil
	}
	c.wanted[query] = true
	c.mu.Unlock()
	if inTx {
		if !c.deferred {
			go c.prepare(query)
		}
		return nil
	}
	c.prepare(query)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[query] // nil if it did not prepare
}

// prepare prepares a wanted query.
func (c *stmtCache) prepare(query string) {
	st, err := c.db.PrepareContext(context.Background(), query)
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.wanted, query)
	if err == nil {
		c.m[query] = st
	}
}

// prepareWanted prepares the statements that gets of a deferred cache
// asked for. The caller holds no transaction of the pool.
func (c *stmtCache) prepareWanted() {
	c.mu.Lock()
	var qs []string
	for q := range c.wanted {
		qs = append(qs, q)
	}
	c.mu.Unlock()
	for _, q := range qs {
		c.prepare(q)
	}
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for q, st := range c.m {
		st.Close()
		delete(c.m, q)
	}
}

// cachedDB runs queries on a pool through its statement cache.
type cachedDB struct{ c *stmtCache }

func (d cachedDB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := d.c.get(ctx, query, false); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return d.c.db.ExecContext(ctx, query, args...)
}

func (d cachedDB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := d.c.get(ctx, query, false); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return d.c.db.QueryContext(ctx, query, args...)
}

func (d cachedDB) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := d.c.get(ctx, query, false); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return d.c.db.QueryRowContext(ctx, query, args...)
}

// cachedTx runs queries in a transaction of the cache's pool, through the
// cache: Tx.StmtContext reuses the statement already prepared on the
// transaction's connection.
type cachedTx struct {
	tx *sql.Tx
	c  *stmtCache
}

func (t cachedTx) stmt(ctx context.Context, query string) *sql.Stmt {
	if st := t.c.get(ctx, query, true); st != nil {
		return t.tx.StmtContext(ctx, st)
	}
	return nil
}

func (t cachedTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := t.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return t.tx.ExecContext(ctx, query, args...)
}

func (t cachedTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := t.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return t.tx.QueryContext(ctx, query, args...)
}

func (t cachedTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := t.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return t.tx.QueryRowContext(ctx, query, args...)
}
