package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pullmail/pullmail/meta"
)

// The change feed.
//
// A client resumes from a cursor (a Seq) and asks for the changes after it,
// so a change must never commit with a Seq at or below one a reader has
// already seen. A plain sequence does not give that: T1 takes 10, T2 takes
// 11, T2 commits, a reader sees 11 and moves its cursor there, then T1
// commits 10 behind it. So a transaction takes the change-log lock, a
// transaction-scoped advisory lock (pg_advisory_xact_lock(feedLock)), before
// its first change, and holds it to its commit or rollback; the numbers come
// from the changes table's identity sequence (CACHE 1) only while it is
// held. The lock's holders follow one another, each taking numbers above its
// predecessors', and PostgreSQL makes a commit visible (ProcArrayEndTransaction)
// before it releases the transaction's locks, so a snapshot that sees a
// change sees every change with a lower Seq that will ever commit. Numbers
// of a rolled-back transaction are skipped, never reused. The lock is the
// database's, so this holds across nodes.
//
// Why an advisory lock and not a counter row (UPDATE feed SET seq = seq + 1):
// under SERIALIZABLE, a transaction that updates a row another transaction
// updated and committed after its snapshot fails with 40001, so every
// writer that queued behind the row lock would fail and run again. An
// advisory lock is not data: waiting for it causes no serialization failure.
//
// The lock is taken by InsertMessage, UpdateMessage and DeleteMessage before
// their own statements, so a writer holds few row locks while it waits for
// it (a deadlock PostgreSQL detects, 40P01, is retried like a conflict).
// Writers of the change log are serialised from their first change to their
// commit; other writes are not.
//
// Cursor is the highest Seq in changes, or in changes_removed (raised when
// changes are pruned or go with their user) when higher: as of the reader's
// snapshot, not the sequence's last value, which counts uncommitted numbers.
//
// Notifications: a transaction that changed users' logs runs pg_notify on
// the channel notifyChannel with their ids just before its COMMIT; PostgreSQL
// delivers it at commit (never on rollback), to every listening session of
// the database, in commit order. OnCommit's listener holds one such session.

// notifyChannel is the channel of change notifications; the payload is the
// changed users' ids, comma-separated.
const notifyChannel = "pullmail_changes"

// maxPayload keeps a notification's payload under PostgreSQL's 8000 bytes.
const maxPayload = 7000

// lockFeed takes the change-log lock, once per transaction.
func (t *txn) lockFeed(ctx context.Context) error {
	if t.locked {
		return nil
	}
	if _, err := t.q.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, feedLock); err != nil {
		return fmt.Errorf("change log lock: %w", err)
	}
	t.locked = true
	return nil
}

// logChange appends to the user's change log a change of the message in
// folder, where it has (or had) uid, raises the folder's highest modseq to
// it and returns its Seq; the lock must be held.
func (t *txn) logChange(ctx context.Context, userID int64, id string, folder meta.Folder, uid uint32, kind meta.ChangeKind) (int64, error) {
	if !t.locked {
		return 0, errors.New("change logged without the change-log lock") // a bug in this package
	}
	var seq int64
	err := t.q.QueryRow(ctx, `INSERT INTO changes (user_id, message_id, folder, kind, at, uid) VALUES ($1, $2, $3, $4, $5, $6)
		RETURNING seq`, userID, id, string(folder), string(kind), nanos(time.Now()), int64(uid)).Scan(&seq)
	if err != nil {
		return 0, fmt.Errorf("log %s change: %w", kind, err)
	}
	_, err = t.q.Exec(ctx, `INSERT INTO folder_uids (user_id, folder, uid_validity, uid_next, highest_modseq)
		SELECT id, $2, greatest(1, created / 1000000000), 1, $3 FROM users WHERE id = $1
		ON CONFLICT (user_id, folder) DO UPDATE SET highest_modseq = excluded.highest_modseq`,
		userID, string(folder), seq)
	if err != nil {
		return 0, fmt.Errorf("folder %q's modseq: %w", folder, mapErr(err))
	}
	t.changedUser(userID)
	return seq, nil
}

// nextUID gives the next UID of the folder.
func (t *txn) nextUID(ctx context.Context, userID int64, folder meta.Folder) (uint32, error) {
	var uid int64
	err := t.q.QueryRow(ctx, `INSERT INTO folder_uids (user_id, folder, uid_validity, uid_next, highest_modseq)
		SELECT id, $2, greatest(1, created / 1000000000), 2, 0 FROM users WHERE id = $1
		ON CONFLICT (user_id, folder) DO UPDATE SET uid_next = folder_uids.uid_next + 1
		RETURNING uid_next - 1`, userID, string(folder)).Scan(&uid)
	if err != nil {
		return 0, fmt.Errorf("folder %q's next UID: %w", folder, mapErr(err))
	}
	return uint32(uid), nil
}

// setModSeq records the Seq of the message's latest change.
func (t *txn) setModSeq(ctx context.Context, id string, seq int64) error {
	if _, err := t.q.Exec(ctx, `UPDATE messages SET modseq = $1 WHERE id = $2`, seq, id); err != nil {
		return fmt.Errorf("modseq: %w", err)
	}
	return nil
}

func (t *txn) changedUser(userID int64) {
	if !slices.Contains(t.changed, userID) {
		t.changed = append(t.changed, userID)
	}
}

// notify announces the users whose logs the transaction changed; it runs
// just before the commit, which delivers it.
func (t *txn) notify(ctx context.Context) error {
	var b []byte
	flush := func() error {
		if len(b) == 0 {
			return nil
		}
		_, err := t.q.Exec(ctx, `SELECT pg_notify($1, $2)`, notifyChannel, string(b))
		b = b[:0]
		return err
	}
	for _, u := range t.changed {
		if len(b) > maxPayload {
			if err := flush(); err != nil {
				return err
			}
		}
		if len(b) > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, u, 10)
	}
	return flush()
}

// Cursor is the highest Seq committed as of the snapshot (see the notes
// above): the change log's, or the highest removed one.
func (r reader) Cursor(ctx context.Context) (int64, error) {
	var seq int64
	err := r.q.QueryRow(ctx, `SELECT greatest((SELECT coalesce(max(seq), 0) FROM changes),
		(SELECT seq FROM changes_removed))`).Scan(&seq)
	if err != nil {
		return 0, fmt.Errorf("meta/postgres: cursor: %w", err)
	}
	return seq, nil
}

// Changes reads the user's floor and their changes in one statement, so
// from one snapshot even outside a transaction.
func (r reader) Changes(ctx context.Context, userID int64, since int64, limit int) ([]meta.Change, error) {
	var lim *int64
	if limit > 0 {
		l := int64(limit)
		lim = &l
	}
	rows, err := r.q.Query(ctx, `SELECT f.floor, c.seq, c.message_id, c.folder, c.kind, c.uid
		FROM (SELECT coalesce((SELECT changes_floor FROM users WHERE id = $1), 0) AS floor) f
		LEFT JOIN LATERAL (SELECT seq, message_id, folder, kind, uid FROM changes
			WHERE user_id = $1 AND seq > $2 ORDER BY seq LIMIT $3::bigint) c ON true`, userID, since, lim)
	if err != nil {
		return nil, fmt.Errorf("meta/postgres: changes of user %d: %w", userID, err)
	}
	defer rows.Close()
	var cs []meta.Change
	var floor int64
	for rows.Next() {
		var seq *int64
		var id, folder, kind *string
		var uid *int64
		if err := rows.Scan(&floor, &seq, &id, &folder, &kind, &uid); err != nil {
			return nil, fmt.Errorf("meta/postgres: changes of user %d: %w", userID, err)
		}
		if seq == nil { // no changes: the one row of the floor
			continue
		}
		cs = append(cs, meta.Change{Seq: *seq, UserID: userID, MessageID: *id, Folder: meta.Folder(*folder),
			Kind: meta.ChangeKind(*kind), UID: uint32(*uid)})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("meta/postgres: changes of user %d: %w", userID, err)
	}
	if since < floor {
		return nil, fmt.Errorf("meta/postgres: changes of user %d since %d (kept from %d): %w", userID, since, floor, meta.ErrCursorGone)
	}
	return cs, nil
}

// PruneChanges deletes changes logged before the time and returns how many;
// each affected user's floor rises to the highest seq pruned from their log
// (older cursors answer meta.ErrCursorGone), and changes_removed to the
// highest pruned at all (Cursor does not go back). One statement, in a
// serializable transaction retried on conflict (a concurrent SetPassword
// of an affected user, for one).
func (s *Store) PruneChanges(ctx context.Context, before time.Time) (int, error) {
	var n int
	err := s.write(ctx, func(t *txn) error {
		return t.q.QueryRow(ctx, `WITH p AS (
				DELETE FROM changes WHERE at < $1 RETURNING user_id, seq
			), f AS (
				UPDATE users u SET changes_floor = greatest(u.changes_floor, x.m)
				FROM (SELECT user_id, max(seq) AS m FROM p GROUP BY user_id) x WHERE u.id = x.user_id
			), r AS (
				UPDATE changes_removed SET seq = x.m FROM (SELECT max(seq) AS m FROM p) x WHERE x.m > changes_removed.seq
			)
			SELECT count(*) FROM p`, nanos(before)).Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("meta/postgres: prune changes: %w", err)
	}
	return n, nil
}

// OnCommit sets fn to be called with the users whose change logs a commit
// changed, for the commits of every process on the database: a listener
// session (LISTEN) receives the notifications. The first call with a
// non-nil fn starts it and waits (up to a few seconds) until it listens, so
// that commits after OnCommit returns are seen. When the listener's session
// breaks it reconnects, and then calls fn with every user, since
// notifications may have been missed meanwhile. nil removes the callback.
func (s *Store) OnCommit(fn func(users []int64)) {
	if fn == nil {
		s.listen.fn.Store(nil)
		return
	}
	s.listen.fn.Store(&fn)
	s.listen.start(s.allUsers)
}

// allUsers lists every user's id, for a wake-up after missed notifications.
func (s *Store) allUsers(ctx context.Context) ([]int64, error) {
	rows, err := s.pool.Query(ctx, `SELECT id FROM users`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

// listener is the Store's LISTEN session and its loop.
type listener struct {
	cfg     *pgx.ConnConfig
	fn      atomic.Pointer[func(users []int64)]
	mu      sync.Mutex
	started bool
	cancel  context.CancelFunc
	done    chan struct{}
}

func (l *listener) init(cfg *pgx.ConnConfig) { l.cfg = cfg }

// start runs the loop unless it runs already, and waits until it listens.
func (l *listener) start(all func(context.Context) ([]int64, error)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.started {
		return
	}
	l.started = true
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel, l.done = cancel, make(chan struct{})
	ready := make(chan struct{})
	go l.run(ctx, ready, all)
	select {
	case <-ready:
	case <-time.After(5 * time.Second): // the loop keeps trying; polling covers meanwhile
	}
}

// stop ends the loop and waits for it.
func (l *listener) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.started {
		l.cancel()
		<-l.done
	}
}

func (l *listener) call(users []int64) {
	if fn := l.fn.Load(); fn != nil && len(users) > 0 {
		(*fn)(users)
	}
}

func (l *listener) run(ctx context.Context, ready chan struct{}, all func(context.Context) ([]int64, error)) {
	defer close(l.done)
	first := true
	for ctx.Err() == nil {
		conn, err := pgx.ConnectConfig(ctx, l.cfg.Copy())
		if err == nil {
			_, err = conn.Exec(ctx, `LISTEN `+notifyChannel)
		}
		if err != nil {
			if conn != nil {
				conn.Close(context.Background())
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		if first {
			close(ready)
			first = false
		} else if users, err := all(ctx); err == nil {
			l.call(users) // whatever was missed while the session was down
		}
		for {
			n, err := conn.WaitForNotification(ctx)
			if err != nil {
				break
			}
			l.call(parseUsers(n.Payload))
		}
		conn.Close(context.Background())
	}
}

// parseUsers reads a notification's payload; what is not a user id is
// skipped (another program's NOTIFY on the channel).
func parseUsers(payload string) []int64 {
	var users []int64
	for f := range strings.SplitSeq(payload, ",") {
		if u, err := strconv.ParseInt(f, 10, 64); err == nil {
			users = append(users, u)
		}
	}
	return users
}
