package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
)

// Group commit.
//
// With synchronous=FULL every commit costs an fsync of the WAL, and with one
// write connection the commits of a busy domain queue behind each other's
// fsync: that, not the CPU, bounded a domain at about a hundred delivered
// small messages per second (docs/BENCHMARKS.md, workload 4). So every write
// transaction of a Store goes through one committer goroutine. It takes the
// writes that queued while the previous commit was syncing, runs each inside
// a SAVEPOINT of one SQLite transaction, and commits them together: one fsync
// for the batch, and each write is acknowledged only after that fsync, so a
// write that Update reported done is as durable as before.
//
// Each write still succeeds or fails alone: a write whose fn returns an error
// (or panics) is rolled back to its savepoint, and the others of its batch
// commit. Only a failure of the transaction itself (its BEGIN, a savepoint
// statement, the COMMIT: I/O errors, a full disk) fails every write of the
// batch that had not been acknowledged, and nothing of them is kept.
//
// Statements inside a batch run with their caller's context values but not its
// cancellation: SQLite answers an interrupted write statement by rolling back
// the whole transaction, which would take the batch's other writes with it. A
// write whose context ends while it waits in the queue is not run at all, and
// one whose context ends while its fn runs is rolled back to its savepoint.

// maxBatch bounds the writes committed together, so that one batch's
// transaction, and the wait of its first write, stay short.
const maxBatch = 64

// errClosed is returned by writes submitted after Close.
var errClosed = errors.New("meta/sqlite: store is closed")

// write is one write transaction waiting for, or run by, the committer.
type write struct {
	ctx     context.Context
	fn      func(*txn) error
	err     error
	panic   any // what fn panicked with, re-panicked in the caller
	changed []int64
	done    chan struct{} // closed when err (or panic) is final
}

// finish tells the caller its write's outcome.
func (w *write) finish(err error) {
	if w.err == nil && w.panic == nil {
		w.err = err
	}
	close(w.done)
}

// committer is a Store's group-commit loop.
type committer struct {
	writes  chan *write
	stop    chan struct{} // closed by Close
	stopped chan struct{} // closed when the loop has returned
}

func (s *Store) startCommitter() {
	s.commit = committer{writes: make(chan *write), stop: make(chan struct{}), stopped: make(chan struct{})}
	go s.commitLoop()
}

// stopCommitter ends the loop after the batch it is running.
func (s *Store) stopCommitter() {
	s.stopOnce.Do(func() { close(s.commit.stop) })
	<-s.commit.stopped
}

// write runs fn in a write transaction through the committer and returns
// once its outcome is final: committed (synced), or rolled back.
func (s *Store) write(ctx context.Context, fn func(*txn) error) error {
	w := &write{ctx: ctx, fn: fn, done: make(chan struct{})}
	select {
	case s.commit.writes <- w:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.commit.stop:
		return errClosed
	}
	// Accepted: fn may be running, so wait for the outcome whatever ctx does.
	<-w.done
	if w.panic != nil {
		panic(w.panic)
	}
	return w.err
}

func (s *Store) commitLoop() {
	defer close(s.commit.stopped)
	for {
		var first *write
		select {
		case first = <-s.commit.writes:
		case <-s.commit.stop:
			return
		}
		batch := []*write{first}
	fill: // the writes that queued meanwhile; never wait for more
		for len(batch) < maxBatch {
			select {
			case w := <-s.commit.writes:
				batch = append(batch, w)
			default:
				break fill
			}
		}
		s.commitBatch(batch)
		s.wstmts.prepareWanted() // the connection is free now
	}
}

// commitBatch runs the writes of batch in one transaction and commits it.
func (s *Store) commitBatch(batch []*write) {
	tx, err := s.wdb.BeginTx(context.Background(), nil)
	if err != nil {
		for _, w := range batch {
			w.finish(fmt.Errorf("meta/sqlite: begin write: %w", err))
		}
		return
	}
	q := uncancelled{cachedTx{tx, s.wstmts}}
	alone := len(batch) == 1 // no savepoint needed: fn's error rolls back all
	var ran []*write         // succeeded, waiting for the commit
	// dead fails the writes that ran and w after the transaction itself
	// failed, and runs the writes not yet tried in a new one.
	dead := func(i int, cause error) {
		tx.Rollback()
		err := fmt.Errorf("meta/sqlite: write transaction failed: %w", cause)
		for _, w := range ran {
			w.finish(err)
		}
		batch[i].finish(err)
		if rest := batch[i+1:]; len(rest) > 0 {
			s.commitBatch(rest)
		}
	}
	for i, w := range batch {
		if err := w.ctx.Err(); err != nil {
			w.finish(err)
			continue
		}
		const sp = "w" // each is released before the next begins
		if !alone {
			if _, err := q.ExecContext(w.ctx, "SAVEPOINT "+sp); err != nil {
				dead(i, err)
				return
			}
		}
		t := &txn{reader: reader{q: q}}
		w.panic, w.err = run(w.fn, t)
		if w.err == nil && w.panic == nil {
			w.err = w.ctx.Err() // ended while fn ran: keep nothing of it
		}
		if w.err == nil && w.panic == nil {
			if !alone {
				if _, err := q.ExecContext(w.ctx, "RELEASE "+sp); err != nil {
					dead(i, err)
					return
				}
			}
			w.changed = t.changed
			ran = append(ran, w)
			continue
		}
		if alone {
			tx.Rollback()
			w.finish(nil)
			return
		}
		if _, err := q.ExecContext(w.ctx, "ROLLBACK TO "+sp); err != nil {
			dead(i, err)
			return
		}
		if _, err := q.ExecContext(w.ctx, "RELEASE "+sp); err != nil {
			dead(i, err)
			return
		}
		w.finish(nil) // nothing of it is in the transaction any more
	}
	if len(ran) == 0 {
		tx.Rollback()
		return
	}
	if err := tx.Commit(); err != nil {
		err = fmt.Errorf("meta/sqlite: commit: %w", err)
		for _, w := range ran {
			w.finish(err)
		}
		return
	}
	if fn := s.onCommit.Load(); fn != nil {
		var users []int64
		for _, w := range ran {
			for _, u := range w.changed {
				if !slices.Contains(users, u) {
					users = append(users, u)
				}
			}
		}
		if len(users) > 0 {
			(*fn)(users)
		}
	}
	for _, w := range ran {
		w.finish(nil)
	}
}

// run calls fn, turning a panic into a value for the caller's goroutine.
func run(fn func(*txn) error, t *txn) (panicked any, err error) {
	defer func() {
		if v := recover(); v != nil {
			panicked = v
		}
	}()
	return nil, fn(t)
}

// uncancelled runs a transaction's statements with their context's values
// but without its cancellation (see the package's group-commit notes).
type uncancelled struct{ q querier }

func (u uncancelled) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return u.q.ExecContext(context.WithoutCancel(ctx), query, args...)
}

func (u uncancelled) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return u.q.QueryContext(context.WithoutCancel(ctx), query, args...)
}

func (u uncancelled) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return u.q.QueryRowContext(context.WithoutCancel(ctx), query, args...)
}
