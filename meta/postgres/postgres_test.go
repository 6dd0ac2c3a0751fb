package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/meta/metatest"
	"github.com/pullmail/pullmail/meta/postgres/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// openTemp opens a store on a new database of the test cluster.
func openTemp(t testing.TB) *Store {
	t.Helper()
	s, err := Open(t.Context(), pgtest.URL(t))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	metatest.Test(t, func(t *testing.T) meta.Store { return openTemp(t) })
}

// openURL opens a store on the database at url.
func openURL(t testing.TB, url string) *Store {
	t.Helper()
	s, err := Open(t.Context(), url)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// rawConn connects to the database without the Store, as another tool would.
func rawConn(t testing.TB, url string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func TestOpenBadURL(t *testing.T) {
	for _, u := range []string{"", "sqlite:/tmp/x", "/var/lib/pullmail/meta.db", "postgres://%zz"} {
		if s, err := Open(t.Context(), u); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", u)
		}
	}
	// Nothing listens on port 1: the error names the URL but not its password.
	_, err := Open(t.Context(), "postgres://pullmail:hunter2@127.0.0.1:1/meta?connect_timeout=2")
	if err == nil {
		t.Fatal("Open of a closed port succeeded")
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error shows the password: %v", err)
	}
}

func appliedMigrations(t *testing.T, c *pgx.Conn) map[int]int64 {
	t.Helper()
	rows, err := c.Query(t.Context(), `SELECT version, applied FROM schema_migrations`)
	if err != nil {
		t.Fatal(err)
	}
	m := map[int]int64{}
	var v int
	var at int64
	if _, err := pgx.ForEachRow(rows, []any{&v, &at}, func() error { m[v] = at; return nil }); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestMigrationsConcurrentOpen opens a new database from several goroutines
// at once, as nodes starting together do: each migration runs once, and
// reopening applies nothing again.
func TestMigrationsConcurrentOpen(t *testing.T) {
	url := pgtest.URL(t)
	const n = 4
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			s, err := Open(t.Context(), url)
			if err == nil {
				err = s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Open %d: %v", i, err)
		}
	}
	ms, err := migrations()
	if err != nil || len(ms) == 0 {
		t.Fatalf("embedded migrations: %d, %v", len(ms), err)
	}
	c := rawConn(t, url)
	first := appliedMigrations(t, c)
	if len(first) != len(ms) {
		t.Fatalf("%d migrations recorded, want %d", len(first), len(ms))
	}
	openURL(t, url).Close()
	for v, at := range appliedMigrations(t, c) {
		if first[v] != at {
			t.Errorf("migration %d re-applied", v)
		}
	}
}

func TestSchemaTooNew(t *testing.T) {
	url := pgtest.URL(t)
	openURL(t, url).Close()
	ms, _ := migrations()
	if _, err := rawConn(t, url).Exec(t.Context(), `INSERT INTO schema_migrations (version, name, applied) VALUES ($1, $2, $3)`,
		len(ms)+1, fmt.Sprintf("%04d_from_the_future.sql", len(ms)+1), time.Now().UnixNano()); err != nil {
		t.Fatal(err)
	}
	s, err := Open(t.Context(), url)
	if err == nil {
		s.Close()
		t.Fatal("Open of a newer schema succeeded")
	}
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Errorf("Open: %v, want ErrSchemaTooNew", err)
	}
}

func addUser(t *testing.T, s meta.Store, address string) meta.User {
	t.Helper()
	var u meta.User
	err := s.Update(t.Context(), func(tx meta.Tx) error {
		var err error
		u, err = tx.AddUser(t.Context(), meta.User{Address: address, PasswordHash: "x"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func msg(id string, user int64) meta.Message {
	now := time.Now()
	return meta.Message{ID: id, UserID: user, Folder: meta.Inbox, MessageID: "<" + id + "@a.test>",
		Status: meta.StatusComplete, Date: now, Created: now, Updated: now}
}

// TestOnCommitAcrossStores: a store's commit callback hears the commits of
// another store on the same database (another node), through LISTEN/NOTIFY:
// the users whose logs changed, once per commit, and nothing of a rollback.
func TestOnCommitAcrossStores(t *testing.T) {
	url := pgtest.URL(t)
	a, b := openURL(t, url), openURL(t, url)
	ctx := t.Context()
	alice, bob := addUser(t, b, "alice@a.test"), addUser(t, b, "bob@a.test")
	calls := make(chan []int64, 16)
	a.OnCommit(func(users []int64) {
		u := slices.Clone(users)
		slices.Sort(u)
		calls <- u
	})
	next := func(what string) []int64 {
		t.Helper()
		select {
		case u := <-calls:
			return u
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no notification in 10s", what)
			return nil
		}
	}
	// Two users in one commit, one of them twice: one call naming each once.
	if err := b.Update(ctx, func(tx meta.Tx) error {
		for _, m := range []meta.Message{msg("a1", alice.ID), msg("b1", bob.ID), msg("a2", alice.ID)} {
			if err := tx.InsertMessage(ctx, m); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got, want := next("two users"), []int64{alice.ID, bob.ID}; !slices.Equal(got, want) {
		t.Errorf("notified %v, want %v", got, want)
	}
	// A rollback and a write that logs nothing notify nothing: the next
	// call is the delete's (notifications come in commit order).
	boom := errors.New("boom")
	if err := b.Update(ctx, func(tx meta.Tx) error {
		if err := tx.InsertMessage(ctx, msg("a3", alice.ID)); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if err := b.Update(ctx, func(tx meta.Tx) error { return tx.SetSetting(ctx, "k", "v") }); err != nil {
		t.Fatal(err)
	}
	if err := a.Update(ctx, func(tx meta.Tx) error { return tx.DeleteMessage(ctx, bob.ID, "b1") }); err != nil {
		t.Fatal(err)
	}
	if got, want := next("delete"), []int64{bob.ID}; !slices.Equal(got, want) {
		t.Errorf("notified %v, want %v (the delete's)", got, want)
	}
	a.OnCommit(nil)
	if err := b.Update(ctx, func(tx meta.Tx) error { return tx.InsertMessage(ctx, msg("a4", alice.ID)) }); err != nil {
		t.Fatal(err)
	}
	// A commit after it; by then the removed callback would have had a4's.
	c := openURL(t, url)
	heard := make(chan []int64, 4)
	c.OnCommit(func(users []int64) { heard <- users })
	if err := b.Update(ctx, func(tx meta.Tx) error { return tx.InsertMessage(ctx, msg("b2", bob.ID)) }); err != nil {
		t.Fatal(err)
	}
	select {
	case <-heard:
	case <-time.After(10 * time.Second):
		t.Fatal("the third store heard nothing")
	}
	select {
	case u := <-calls:
		t.Errorf("callback called after it was removed: %v", u)
	default:
	}
}

// TestClaimSkipsLocked: a job row locked by another session (a claimer in
// the middle of its statement, on another node) is skipped, not waited for.
func TestClaimSkipsLocked(t *testing.T) {
	url := pgtest.URL(t)
	s := openURL(t, url)
	ctx := t.Context()
	now := time.Now()
	var locked meta.Job
	if err := s.Update(ctx, func(tx meta.Tx) error {
		var err error
		if locked, err = tx.AddJob(ctx, meta.Job{Kind: "k", Key: "k:1", NextTry: now.Add(-time.Minute)}); err != nil {
			return err
		}
		_, err = tx.AddJob(ctx, meta.Job{Kind: "k", Key: "k:2", NextTry: now})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	other := rawConn(t, url)
	tx, err := other.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, `SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE`, locked.ID); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	js, err := s.ClaimJobs(cctx, "n", "k", now, 2, time.Minute)
	if err != nil {
		t.Fatalf("ClaimJobs while a row is locked: %v", err)
	}
	if len(js) != 1 || js[0].Key != "k:2" {
		t.Fatalf("claimed %+v, want only k:2", js)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if js, err := s.ClaimJobs(ctx, "n", "k", now, 2, time.Minute); err != nil || len(js) != 1 || js[0].Key != "k:1" {
		t.Fatalf("after the lock went: %+v, %v; want k:1", js, err)
	}
}

// TestUpdateRetriesSwallowedConflict: a function that ignores the
// serialization failure of one of its statements and returns nil is run
// again all the same, and its write is not lost.
func TestUpdateRetriesSwallowedConflict(t *testing.T) {
	s := openTemp(t)
	defer s.Close()
	ctx := t.Context()
	if err := s.Update(ctx, func(tx meta.Tx) error { return tx.SetSetting(ctx, "n", "0") }); err != nil {
		t.Fatal(err)
	}
	var reads []string
	err := s.Update(ctx, func(tx meta.Tx) error {
		v, err := tx.Setting(ctx, "n")
		if err != nil {
			return err
		}
		reads = append(reads, v)
		if len(reads) == 1 { // another writer commits after our snapshot
			if err := s.Update(ctx, func(tx meta.Tx) error { return tx.SetSetting(ctx, "n", "1") }); err != nil {
				return err
			}
		}
		n, _ := strconv.Atoi(v)
		tx.SetSetting(ctx, "n", strconv.Itoa(n+1)) // the error ignored, on purpose
		return nil
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if got, _ := s.Setting(ctx, "n"); got != "2" || !slices.Equal(reads, []string{"0", "1"}) {
		t.Errorf("n = %s after runs that read %v; want 2 after reads [0 1]", got, reads)
	}
}

// TestUpdateRetryBounded: a function that conflicts every time is run
// maxAttempts times, and Update returns the conflict.
func TestUpdateRetryBounded(t *testing.T) {
	s := openTemp(t)
	defer s.Close()
	runs := 0
	conflict := &pgconn.PgError{Code: "40001", Message: "could not serialize access (a test's)"}
	err := s.Update(t.Context(), func(tx meta.Tx) error {
		runs++
		tx.(*txn).n.note(conflict)
		return fmt.Errorf("wrapped: %w", conflict)
	})
	if !isConflict(err) || runs != maxAttempts {
		t.Errorf("Update = %v after %d runs; want the conflict after %d", err, runs, maxAttempts)
	}
	runs = 0
	plain := errors.New("not a conflict")
	if err := s.Update(t.Context(), func(tx meta.Tx) error { runs++; return plain }); !errors.Is(err, plain) || runs != 1 {
		t.Errorf("Update = %v after %d runs; want the error after 1", err, runs)
	}
}
