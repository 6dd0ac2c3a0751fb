package sqlite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pullmail/pullmail/meta"
)

// addUser is a write that adds the address, or fails with err after adding it.
func addUser(ctx context.Context, addr string, err error) *write {
	return &write{ctx: ctx, done: make(chan struct{}), fn: func(t *txn) error {
		if _, e := t.AddUser(ctx, meta.User{Address: addr}); e != nil {
			return e
		}
		return err
	}}
}

func userExists(t *testing.T, s *Store, addr string) bool {
	t.Helper()
	_, err := s.UserByAddress(t.Context(), addr)
	if err != nil && !errors.Is(err, meta.ErrNotFound) {
		t.Fatalf("UserByAddress(%s): %v", addr, err)
	}
	return err == nil
}

// TestCommitBatch runs one batch by hand: every write succeeds or fails on
// its own, whatever its neighbours do, and one commit makes the good ones
// durable and tells OnCommit of all their changes at once.
func TestCommitBatch(t *testing.T) {
	s, _ := openTemp(t)
	defer s.Close()
	ctx := t.Context()
	var users []meta.User
	if err := s.Update(ctx, func(tx meta.Tx) error {
		for _, a := range []string{"u1@example.org", "u2@example.org"} {
			u, err := tx.AddUser(ctx, meta.User{Address: a})
			if err != nil {
				return err
			}
			users = append(users, u)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var notified [][]int64
	s.OnCommit(func(ids []int64) { notified = append(notified, slices.Clone(ids)) })

	insert := func(u meta.User, id string) *write {
		return &write{ctx: ctx, done: make(chan struct{}), fn: func(t *txn) error {
			return t.InsertMessage(ctx, meta.Message{ID: id, UserID: u.ID, Folder: meta.Inbox, Status: meta.StatusComplete,
				MessageID: "<" + id + "@example.org>", ThreadID: "<" + id + "@example.org>", Date: time.Now(), Placeholder: []byte("{}")})
		}}
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	boom := errors.New("boom")
	batch := []*write{
		addUser(ctx, "ok1@example.org", nil),
		addUser(ctx, "failed@example.org", boom),
		{ctx: ctx, done: make(chan struct{}), fn: func(t *txn) error {
			if _, err := t.AddUser(ctx, meta.User{Address: "panicked@example.org"}); err != nil {
				return err
			}
			panic("fn panicked")
		}},
		addUser(cancelled, "cancelled@example.org", nil),
		addUser(ctx, "ok1@example.org", nil), // sees ok1's write: ErrExists
		insert(users[0], "m1"),
		insert(users[1], "m2"),
		insert(users[0], "m3"),
		addUser(ctx, "ok2@example.org", nil),
	}
	s.commitBatch(batch)
	for i, w := range batch {
		select {
		case <-w.done:
		default:
			t.Fatalf("write %d not finished", i)
		}
	}
	for _, tc := range []struct {
		i       int
		wantErr error
		panics  bool
	}{{0, nil, false}, {1, boom, false}, {2, nil, true}, {3, context.Canceled, false}, {4, meta.ErrExists, false},
		{5, nil, false}, {6, nil, false}, {7, nil, false}, {8, nil, false}} {
		w := batch[tc.i]
		if (w.panic != nil) != tc.panics {
			t.Errorf("write %d: panic %v, want panic %v", tc.i, w.panic, tc.panics)
		}
		if tc.wantErr == nil && w.err != nil || tc.wantErr != nil && !errors.Is(w.err, tc.wantErr) {
			t.Errorf("write %d: err %v, want %v", tc.i, w.err, tc.wantErr)
		}
	}
	for addr, want := range map[string]bool{"ok1@example.org": true, "ok2@example.org": true,
		"failed@example.org": false, "panicked@example.org": false, "cancelled@example.org": false} {
		if got := userExists(t, s, addr); got != want {
			t.Errorf("%s exists: %v, want %v", addr, got, want)
		}
	}
	if len(notified) != 1 || !slices.Equal(notified[0], []int64{users[0].ID, users[1].ID}) {
		t.Errorf("OnCommit calls %v, want one with %d and %d", notified, users[0].ID, users[1].ID)
	}
}

// TestCommitBatchDeadTransaction: when the transaction itself fails in the
// middle of a batch, the writes that had run fail with it (nothing of them is
// kept) and the writes not yet run go on in a new transaction.
func TestCommitBatchDeadTransaction(t *testing.T) {
	s, _ := openTemp(t)
	defer s.Close()
	ctx := t.Context()
	killer := &write{ctx: ctx, done: make(chan struct{}), fn: func(t *txn) error {
		_, err := t.q.ExecContext(ctx, "ROLLBACK") // the transaction is gone
		return err
	}}
	batch := []*write{addUser(ctx, "before@example.org", nil), killer, addUser(ctx, "after@example.org", nil)}
	s.commitBatch(batch)
	if batch[0].err == nil || killer.err == nil || batch[2].err != nil {
		t.Errorf("errors: before %v, killer %v, after %v; want error, error, nil", batch[0].err, killer.err, batch[2].err)
	}
	if userExists(t, s, "before@example.org") || !userExists(t, s, "after@example.org") {
		t.Errorf("before exists %v (want false), after exists %v (want true)",
			userExists(t, s, "before@example.org"), userExists(t, s, "after@example.org"))
	}
	// The store still works.
	if err := s.Update(ctx, func(tx meta.Tx) error {
		_, err := tx.AddUser(ctx, meta.User{Address: "later@example.org"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// TestUpdateConcurrent runs many Updates at once through the committer:
// each gets its own outcome, the panicking one panics in its own goroutine.
func TestUpdateConcurrent(t *testing.T) {
	s, _ := openTemp(t)
	defer s.Close()
	ctx := t.Context()
	const n = 200
	errs := make([]error, n)
	panics := make([]any, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			defer func() { panics[i] = recover() }()
			errs[i] = s.Update(ctx, func(tx meta.Tx) error {
				if _, err := tx.AddUser(ctx, meta.User{Address: fmt.Sprintf("u%d@example.org", i)}); err != nil {
					return err
				}
				switch i % 10 {
				case 3:
					return fmt.Errorf("write %d refused", i)
				case 7:
					panic(i)
				}
				return nil
			})
		})
	}
	wg.Wait()
	for i := range n {
		exists := userExists(t, s, fmt.Sprintf("u%d@example.org", i))
		switch i % 10 {
		case 3:
			if errs[i] == nil || exists {
				t.Errorf("write %d: err %v, exists %v; want an error and no user", i, errs[i], exists)
			}
		case 7:
			if panics[i] != i || exists {
				t.Errorf("write %d: panic %v, exists %v; want panic %d and no user", i, panics[i], exists, i)
			}
		default:
			if errs[i] != nil || panics[i] != nil || !exists {
				t.Errorf("write %d: err %v, panic %v, exists %v", i, errs[i], panics[i], exists)
			}
		}
	}
}

func TestUpdateAfterClose(t *testing.T) {
	s, _ := openTemp(t)
	s.Close()
	err := s.Update(t.Context(), func(meta.Tx) error { return nil })
	if !errors.Is(err, errClosed) {
		t.Errorf("Update after Close: %v, want errClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Logf("second Close: %v", err) // database/sql answers a second Close with nil
	}
}

// BenchmarkUpdateParallel is BenchmarkInsertMessage's write with many
// writers at once (parallelism × GOMAXPROCS goroutines), where group commit
// shares each fsync among them.
func BenchmarkUpdateParallel(b *testing.B) {
	for _, writers := range []int{1, 4, 16, 64} {
		b.Run(fmt.Sprintf("parallelism=%d", writers), func(b *testing.B) {
			ctx := b.Context()
			s, err := open(ctx, filepath.Join(b.TempDir(), "meta.db"), options{synchronous: "FULL"})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			var u meta.User
			if err := s.Update(ctx, func(tx meta.Tx) error {
				u, err = tx.AddUser(ctx, meta.User{Address: "bench@example.org"})
				return err
			}); err != nil {
				b.Fatal(err)
			}
			var mu sync.Mutex
			next := 0
			b.SetParallelism(writers)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					mu.Lock()
					next++
					id := fmt.Sprintf("m%d", next)
					mu.Unlock()
					m := meta.Message{ID: id, UserID: u.ID, Folder: meta.Inbox, Status: meta.StatusComplete,
						MessageID: "<" + id + "@example.org>", ThreadID: "<t@example.org>", Date: time.Now(),
						Placeholder: make([]byte, 2048)}
					if err := s.Update(ctx, func(tx meta.Tx) error { return tx.InsertMessage(ctx, m) }); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
		})
	}
}

// TestStmtCache: queries run whether or not their statement is prepared
// (cache full, or asked for inside a transaction), and many read
// transactions asking at once for statements not yet prepared do not wait
// for each other's connections.
func TestStmtCache(t *testing.T) {
	s, _ := openTemp(t)
	defer s.Close()
	ctx := t.Context()
	if err := s.Update(ctx, func(tx meta.Tx) error {
		_, err := tx.AddUser(ctx, meta.User{Address: "a@example.org"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// More Views at once than the read pool has connections.
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Go(func() {
			errs <- s.View(ctx, func(r meta.Reader) error {
				var n int
				q := r.(reader).q
				return q.QueryRowContext(ctx, fmt.Sprintf("SELECT count(*) + %d FROM users", i%8)).Scan(&n)
			})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// Past maxStmts distinct queries, the rest run unprepared.
	for i := range maxStmts + 10 {
		var n int
		if err := s.reader.q.QueryRowContext(ctx, fmt.Sprintf("SELECT %d", i)).Scan(&n); err != nil || n != i {
			t.Fatalf("query %d: %d, %v", i, n, err)
		}
	}
	s.rstmts.mu.Lock()
	cached := len(s.rstmts.m) + len(s.rstmts.wanted)
	s.rstmts.mu.Unlock()
	if cached > maxStmts {
		t.Errorf("the read cache holds %d statements, more than %d", cached, maxStmts)
	}
	// A bad query still gives its error.
	if _, err := s.reader.q.ExecContext(ctx, "SELEC nonsense"); err == nil {
		t.Error("a malformed query succeeded")
	}
}
