package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/meta/metatest"
	"github.com/pullmail/pullmail/resource"
)

func openTemp(t testing.TB) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "meta.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s, path
}

func TestConformance(t *testing.T) {
	metatest.Test(t, func(t *testing.T) meta.Store {
		s, _ := openTemp(t)
		return s
	})
}

// rawDB opens the file without the Store, as another tool would.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestPragmas(t *testing.T) {
	s, _ := openTemp(t)
	defer s.Close()
	ctx := t.Context()
	for _, tc := range []struct {
		db     *sql.DB
		pragma string
		want   string
	}{
		{s.wdb, "journal_mode", "wal"},
		{s.wdb, "synchronous", "2"}, // FULL
		{s.wdb, "foreign_keys", "1"},
		{s.wdb, "busy_timeout", "10000"},
		{s.wdb, "query_only", "0"},
		{s.rdb, "journal_mode", "wal"},
		{s.rdb, "foreign_keys", "1"},
		{s.rdb, "busy_timeout", "10000"},
		{s.rdb, "query_only", "1"},
	} {
		name := "writer"
		if tc.db == s.rdb {
			name = "reader"
		}
		var got string
		if err := tc.db.QueryRowContext(ctx, "PRAGMA "+tc.pragma).Scan(&got); err != nil {
			t.Errorf("%s: PRAGMA %s: %v", name, tc.pragma, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%s: PRAGMA %s = %s, want %s", name, tc.pragma, got, tc.want)
		}
	}
}

func TestOpenBadPath(t *testing.T) {
	dir := t.TempDir()
	for _, path := range []string{
		"",
		filepath.Join(dir, "a?mode=ro"),
		filepath.Join(dir, "a#b"),
		filepath.Join(dir, "missing", "dir", "meta.db"),
	} {
		if s, err := Open(t.Context(), path); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", path)
		}
	}
}

// appliedMigrations returns version → applied time from schema_migrations.
func appliedMigrations(t *testing.T, path string) map[int]int64 {
	t.Helper()
	rows, err := rawDB(t, path).QueryContext(t.Context(), `SELECT version, applied FROM schema_migrations`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	m := map[int]int64{}
	for rows.Next() {
		var v int
		var at int64
		if err := rows.Scan(&v, &at); err != nil {
			t.Fatal(err)
		}
		m[v] = at
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMigrations(t *testing.T) {
	ms, err := migrations()
	if err != nil {
		t.Fatalf("embedded migrations: %v", err)
	}
	if len(ms) == 0 {
		t.Fatal("no embedded migrations")
	}
	s, path := openTemp(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	first := appliedMigrations(t, path)
	if len(first) != len(ms) {
		t.Fatalf("schema_migrations has %d rows, want %d", len(first), len(ms))
	}
	for _, m := range ms {
		if first[m.version] == 0 {
			t.Errorf("migration %s not recorded", m.name)
		}
	}

	// Reopening applies nothing again.
	for range 2 {
		s, err := Open(t.Context(), path)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	again := appliedMigrations(t, path)
	if len(again) != len(first) {
		t.Fatalf("after reopening: %d migrations, want %d", len(again), len(first))
	}
	for v, at := range first {
		if again[v] != at {
			t.Errorf("migration %d re-applied: %d then %d", v, at, again[v])
		}
	}
}

// TestMigrationsConcurrentOpen opens a new file from several goroutines at
// once, as a server and an admin command might: each migration runs once.
func TestMigrationsConcurrentOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	const n = 4
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			s, err := Open(t.Context(), path)
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
	ms, _ := migrations()
	if got := appliedMigrations(t, path); len(got) != len(ms) {
		t.Errorf("%d migrations recorded, want %d", len(got), len(ms))
	}
}

func TestSchemaTooNew(t *testing.T) {
	s, path := openTemp(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ms, _ := migrations()
	db := rawDB(t, path)
	if _, err := db.ExecContext(t.Context(), `INSERT INTO schema_migrations (version, name, applied) VALUES (?, ?, ?)`,
		len(ms)+1, fmt.Sprintf("%04d_from_the_future.sql", len(ms)+1), time.Now().UnixNano()); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err := Open(t.Context(), path)
	if err == nil {
		s.Close()
		t.Fatal("Open of a newer schema succeeded")
	}
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Errorf("Open: %v, want ErrSchemaTooNew", err)
	}
	t.Logf("error: %v", err)
}

// TestTwoStores opens the same file twice, as the server and the admin
// command do from two processes, and writes from both at once.
func TestTwoStores(t *testing.T) {
	ctx := t.Context()
	a, path := openTemp(t)
	defer a.Close()
	b, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	var users [2]meta.User
	for i, s := range []*Store{a, b} {
		err := s.Update(ctx, func(tx meta.Tx) error {
			var err error
			users[i], err = tx.AddUser(ctx, meta.User{Address: fmt.Sprintf("user%d@example.org", i), PasswordHash: "h"})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// Each sees the other's user.
	for i, s := range []*Store{b, a} {
		if _, err := s.UserByID(ctx, users[i].ID); err != nil {
			t.Errorf("store %d does not see user %d: %v", 1-i, i, err)
		}
	}

	const each = 50
	var wg sync.WaitGroup
	errc := make(chan error, 2*2*each)
	for i, s := range []*Store{a, b} {
		for w := range 2 {
			wg.Go(func() {
				for j := range each {
					m := meta.Message{
						ID: fmt.Sprintf("s%d-w%d-%d", i, w, j), UserID: users[(i+w)%2].ID, Folder: meta.Inbox,
						Status: meta.StatusComplete, MessageID: "<x@example.org>",
						Refs: []meta.Ref{{ID: resource.IDOf([]byte{byte(i), byte(w), byte(j)}), Size: 3}},
					}
					errc <- s.Update(ctx, func(tx meta.Tx) error { return tx.InsertMessage(ctx, m) })
				}
			})
		}
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			t.Errorf("insert: %v", err)
		}
	}
	for i, s := range []*Store{a, b} {
		total := 0
		for _, u := range users {
			ms, err := s.Messages(ctx, u.ID, meta.ListOptions{Folder: meta.Inbox})
			if err != nil {
				t.Fatal(err)
			}
			total += len(ms)
		}
		if total != 2*2*each {
			t.Errorf("store %d sees %d messages, want %d", i, total, 2*2*each)
		}
		if c, err := s.Cursor(ctx); err != nil || c != 2*2*each {
			t.Errorf("store %d: Cursor = %d, %v; want %d", i, c, err, 2*2*each)
		}
	}
}

// helperEnv names the database file a helper process writes to.
const helperEnv = "PULLMAIL_META_SQLITE_HELPER"

// TestHelperProcess is not a test: TestTwoProcesses runs the test binary
// again with it selected, as a second process writing the same file.
func TestHelperProcess(t *testing.T) {
	path := os.Getenv(helperEnv)
	if path == "" {
		t.Skip("helper process for TestTwoProcesses")
	}
	ctx := t.Context()
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	u, err := s.UserByAddress(ctx, "helper@example.org")
	if err != nil {
		t.Fatal(err)
	}
	for i := range twoProcessesEach {
		m := meta.Message{ID: fmt.Sprintf("helper-%d", i), UserID: u.ID, Folder: meta.Inbox, Status: meta.StatusComplete}
		if err := s.Update(ctx, func(tx meta.Tx) error { return tx.InsertMessage(ctx, m) }); err != nil {
			t.Fatal(err)
		}
	}
}

const twoProcessesEach = 100

// TestTwoProcesses writes the same file from this process and another at
// the same time: busy_timeout and BEGIN IMMEDIATE serialise them.
func TestTwoProcesses(t *testing.T) {
	if os.Getenv(helperEnv) != "" {
		t.Skip("in the helper")
	}
	if testing.Short() {
		t.Skip("starts a process")
	}
	ctx := t.Context()
	s, path := openTemp(t)
	defer s.Close()
	var helper, parent meta.User
	err := s.Update(ctx, func(tx meta.Tx) error {
		var err error
		if helper, err = tx.AddUser(ctx, meta.User{Address: "helper@example.org"}); err != nil {
			return err
		}
		parent, err = tx.AddUser(ctx, meta.User{Address: "parent@example.org"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+path)
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	out := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { out <- cmd.Wait() }()
	// Wait for the helper's first write, then write alongside it. (The
	// parent must not write flat out for the helper's whole life: SQLite's
	// busy handler is not fair, and a writer that never pauses starves the
	// other process.)
	for started := false; !started; {
		select {
		case err := <-out:
			t.Fatalf("helper process ended before writing: %v\n%s", err, output.String())
		default:
		}
		if _, err := s.Message(ctx, helper.ID, "helper-0"); err == nil {
			started = true
		} else if !errors.Is(err, meta.ErrNotFound) {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	const n = 2 * twoProcessesEach
	for i := range n {
		m := meta.Message{ID: fmt.Sprintf("parent-%d", i), UserID: parent.ID, Folder: meta.Inbox, Status: meta.StatusComplete}
		if err := s.Update(ctx, func(tx meta.Tx) error { return tx.InsertMessage(ctx, m) }); err != nil {
			t.Fatalf("parent insert %d: %v", i, err)
		}
	}
	if err := <-out; err != nil {
		t.Fatalf("helper process: %v\n%s", err, output.String())
	}
	for _, tc := range []struct {
		u    meta.User
		want int
	}{{helper, twoProcessesEach}, {parent, n}} {
		ms, err := s.Messages(ctx, tc.u.ID, meta.ListOptions{Folder: meta.Inbox})
		if err != nil || len(ms) != tc.want {
			t.Errorf("%s has %d messages, %v; want %d", tc.u.Address, len(ms), err, tc.want)
		}
	}
}

// TestUpdateCancelled checks that a cancelled context leaves nothing and
// does not wedge the single write connection.
func TestUpdateCancelled(t *testing.T) {
	s, _ := openTemp(t)
	defer s.Close()
	ctx, cancel := context.WithCancel(t.Context())
	err := s.Update(ctx, func(tx meta.Tx) error {
		if _, err := tx.AddUser(ctx, meta.User{Address: "a@example.org"}); err != nil {
			return err
		}
		cancel()
		return nil
	})
	if err == nil {
		t.Fatal("Update with a cancelled context succeeded")
	}
	if _, err := s.UserByAddress(t.Context(), "a@example.org"); !errors.Is(err, meta.ErrNotFound) {
		t.Errorf("user after cancelled Update: %v", err)
	}
	err = s.Update(t.Context(), func(tx meta.Tx) error {
		_, err := tx.AddUser(t.Context(), meta.User{Address: "a@example.org"})
		return err
	})
	if err != nil {
		t.Errorf("Update after a cancelled one: %v", err)
	}
}

func BenchmarkInsertMessage(b *testing.B) {
	for _, mode := range []string{"FULL", "NORMAL"} {
		b.Run("synchronous="+mode, func(b *testing.B) {
			ctx := b.Context()
			s, err := open(ctx, filepath.Join(b.TempDir(), "meta.db"), options{synchronous: mode})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			var u meta.User
			err = s.Update(ctx, func(tx meta.Tx) error {
				u, err = tx.AddUser(ctx, meta.User{Address: "bench@example.org", PasswordHash: "h"})
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
			placeholder := make([]byte, 2048)
			n := 0
			for ; b.Loop(); n++ {
				i := n
				m := meta.Message{
					ID: fmt.Sprintf("m%d", i), UserID: u.ID, Folder: meta.Inbox, Status: meta.StatusComplete,
					MessageID: fmt.Sprintf("<%d@example.org>", i), ThreadID: "<t@example.org>",
					From: "Alice <alice@example.org>", Subject: "Benchmark", Date: time.Now(),
					Placeholder: placeholder,
					Refs: []meta.Ref{
						{ID: resource.IDOf(fmt.Appendf(nil, "a%d", i)), Size: 100},
						{ID: resource.IDOf(fmt.Appendf(nil, "b%d", i)), Size: 1 << 20},
						{ID: resource.IDOf(fmt.Appendf(nil, "c%d", i)), Size: 1 << 30},
					},
				}
				if err := s.Update(ctx, func(tx meta.Tx) error { return tx.InsertMessage(ctx, m) }); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "inserts/s")
		})
	}
}

func TestTimeRange(t *testing.T) {
	s, _ := openTemp(t)
	defer s.Close()
	ctx := t.Context()
	var u meta.User
	err := s.Update(ctx, func(tx meta.Tx) error {
		var err error
		u, err = tx.AddUser(ctx, meta.User{Address: "a@example.org"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		date time.Time
		ok   bool
	}{
		{time.Time{}, true},
		{time.Date(1678, 1, 1, 0, 0, 0, 0, time.UTC), true},
		{time.Date(2262, 1, 1, 0, 0, 0, 0, time.UTC), true},
		{time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC), false},
		{time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC), false},
	} {
		id := fmt.Sprint("m", tc.date.Year())
		err := s.Update(ctx, func(tx meta.Tx) error {
			return tx.InsertMessage(ctx, meta.Message{ID: id, UserID: u.ID, Folder: meta.Inbox, Date: tc.date})
		})
		if (err == nil) != tc.ok {
			t.Errorf("Date %v: error %v, want ok=%v", tc.date, err, tc.ok)
			continue
		}
		if !tc.ok {
			continue
		}
		m, err := s.Message(ctx, u.ID, id)
		if err != nil || !m.Date.Equal(tc.date) {
			t.Errorf("Date %v read back as %v, %v", tc.date, m.Date, err)
		}
	}
}
