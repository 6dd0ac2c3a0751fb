package metatest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pullmail/pullmail/meta"
)

// increment reads the setting as a number and writes it back plus one: a
// read-check-write that is lost under anything weaker than serializable.
func increment(ctx context.Context, tx meta.Tx, key string) (read int, err error) {
	v, err := tx.Setting(ctx, key)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, err
	}
	return n, tx.SetSetting(ctx, key, strconv.Itoa(n+1))
}

// testWriteConflict: two writers read the same row and write it back
// changed. A store that runs them concurrently must make one of them run
// again (the Update contract's retry), so that neither write is lost; a
// store that serialises them runs each once. Then several writers do it
// many times: every increment counts.
func testWriteConflict(t *testing.T, s meta.Store) {
	ctx := t.Context()
	update(t, s, func(ctx context.Context, tx meta.Tx) error { return tx.SetSetting(ctx, "counter", "0") })

	aRead := make(chan struct{})
	bRead := make(chan struct{}, 1)
	var mu sync.Mutex
	var readsA, readsB []int // what each run of each function read
	errB := make(chan error, 1)
	errA := s.Update(ctx, func(tx meta.Tx) error {
		n, err := tx.Setting(ctx, "counter")
		if err != nil {
			return err
		}
		mu.Lock()
		first := len(readsA) == 0
		v, _ := strconv.Atoi(n)
		readsA = append(readsA, v)
		mu.Unlock()
		if first {
			// Let B start, and give it the chance to read before A
			// writes: a store that runs B only after A commits does
			// not, and A goes on after the wait.
			close(aRead)
			go func() {
				errB <- s.Update(ctx, func(tx meta.Tx) error {
					n, err := increment(ctx, tx, "counter")
					mu.Lock()
					readsB = append(readsB, n)
					mu.Unlock()
					select {
					case bRead <- struct{}{}:
					default:
					}
					return err
				})
			}()
			select {
			case <-bRead:
			case <-time.After(200 * time.Millisecond):
			}
		}
		return tx.SetSetting(ctx, "counter", strconv.Itoa(v+1))
	})
	<-aRead
	if errA != nil {
		t.Errorf("writer A: %v", errA)
	}
	if err := <-errB; err != nil {
		t.Errorf("writer B: %v", err)
	}
	if got, err := s.Setting(ctx, "counter"); err != nil || got != "2" {
		t.Errorf("counter after two increments = %q, %v; want 2 (readsA %v, readsB %v)", got, err, readsA, readsB)
	}
	if len(readsA) > 0 && len(readsB) > 0 && readsA[0] == readsB[0] && len(readsA)+len(readsB) < 3 {
		t.Errorf("both writers read %d and neither ran again (readsA %v, readsB %v)", readsA[0], readsA, readsB)
	}
	t.Logf("runs: A %v, B %v", readsA, readsB)

	// Several writers, many increments.
	const writers, each = 4, 10
	update(t, s, func(ctx context.Context, tx meta.Tx) error { return tx.SetSetting(ctx, "many", "0") })
	var runs atomic.Int64
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for range each {
				err := s.Update(ctx, func(tx meta.Tx) error {
					runs.Add(1)
					_, err := increment(ctx, tx, "many")
					return err
				})
				if err != nil {
					t.Errorf("increment: %v", err)
				}
			}
		})
	}
	wg.Wait()
	if got, err := s.Setting(ctx, "many"); err != nil || got != strconv.Itoa(writers*each) {
		t.Errorf("counter after %d increments = %q, %v", writers*each, got, err)
	}
	t.Logf("%d increments took %d runs", writers*each, runs.Load())
}

// testFeedRace: readers follow users' change logs while 16 writers commit
// concurrently, and none misses a change or sees one twice. Each reader
// follows one way a client does: from the Seq of the last change it read,
// from the store's Cursor (as the event stream does), and from a listing
// taken with its Cursor in one View. The writers' transactions do more
// after their change (a job, an envelope), so that a store numbering
// changes in another order than it commits them is caught.
func testFeedRace(t *testing.T, s meta.Store) {
	ctx := t.Context()
	const writers, each, nusers = 16, 12, 4
	var users []meta.User
	for i := range nusers {
		users = append(users, addUser(t, s, fmt.Sprintf("feed%d@example.org", i)))
	}
	want := make([][]string, nusers) // each user's message ids
	for w := range writers {
		for i := range each {
			u := (w + i) % nusers
			want[u] = append(want[u], fmt.Sprintf("w%d-%d", w, i))
		}
	}
	start := cursor(t, s)
	done := make(chan struct{}) // closed when the writers have finished

	// follow reads user u's log until done, then once more, and returns
	// the message ids of the created changes in the order read.
	type follower func(u int) ([]string, error)
	bySeq := func(u int) ([]string, error) {
		var got []string
		since := start
		for finished := false; ; {
			select {
			case <-done:
				finished = true
			default:
			}
			cs, err := s.Changes(ctx, users[u].ID, since, 5)
			if err != nil {
				return got, err
			}
			for _, c := range cs {
				got = append(got, c.MessageID)
				since = c.Seq
			}
			if len(cs) == 0 {
				if finished {
					return got, nil
				}
				time.Sleep(time.Millisecond)
			}
		}
	}
	byCursor := func(u int) ([]string, error) {
		var got []string
		last := start
		for finished := false; ; {
			select {
			case <-done:
				finished = true
			default:
			}
			head, err := s.Cursor(ctx)
			if err != nil {
				return got, err
			}
			cs, err := s.Changes(ctx, users[u].ID, last, 0)
			if err != nil {
				return got, err
			}
			for _, c := range cs {
				if c.Seq <= head { // the rest is read next time round
					got = append(got, c.MessageID)
				}
			}
			last = max(last, head)
			if finished {
				return got, nil
			}
			time.Sleep(time.Millisecond)
		}
	}
	byListing := func(u int) ([]string, error) {
		// A listing and its cursor, taken while the writers write…
		var listed []string
		var at int64
		<-time.After(5 * time.Millisecond)
		err := s.View(ctx, func(r meta.Reader) error {
			ms, err := r.Messages(ctx, users[u].ID, meta.ListOptions{Folder: meta.Inbox})
			if err != nil {
				return err
			}
			listed = ids(ms)
			at, err = r.Cursor(ctx)
			return err
		})
		if err != nil {
			return nil, err
		}
		// …then, once they are done, the changes since that cursor.
		<-done
		cs, err := s.Changes(ctx, users[u].ID, at, 0)
		if err != nil {
			return nil, err
		}
		for _, c := range cs {
			listed = append(listed, c.MessageID)
		}
		return listed, nil
	}

	type result struct {
		name string
		u    int
		got  []string
		err  error
	}
	results := make(chan result, 3*nusers)
	var readers sync.WaitGroup
	for u := range nusers {
		for name, f := range map[string]follower{"by seq": bySeq, "by cursor": byCursor, "by listing": byListing} {
			readers.Go(func() {
				got, err := f(u)
				results <- result{name, u, got, err}
			})
		}
	}

	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				u := users[(w+i)%nusers]
				id := fmt.Sprintf("w%d-%d", w, i)
				err := s.Update(ctx, func(tx meta.Tx) error {
					if err := tx.InsertMessage(ctx, message(u.ID, id, meta.Inbox, day(1+i%28))); err != nil {
						return err
					}
					if _, err := tx.AddJob(ctx, meta.Job{Kind: "feed", Key: "feed:" + id}); err != nil {
						return err
					}
					return tx.SetEnvelope(ctx, id, []byte(`{"id":"`+id+`"}`))
				})
				if err != nil {
					t.Errorf("writer %d: %v", w, err)
				}
			}
		})
	}
	wg.Wait()
	close(done)
	readers.Wait()
	close(results)
	for r := range results {
		if r.err != nil {
			t.Errorf("reader %s of user %d: %v", r.name, r.u, r.err)
			continue
		}
		got := slices.Clone(r.got)
		slices.Sort(got)
		w := slices.Clone(want[r.u])
		slices.Sort(w)
		if !slices.Equal(got, w) {
			t.Errorf("reader %s of user %d read %d changes, want %d:\n\tmissing %v\n\tunexpected or twice %v",
				r.name, r.u, len(got), len(w), missing(w, got), missing(got, w))
		}
	}
}

// missing returns the elements of a (sorted) not matched in b (sorted),
// counting repeats.
func missing(a, b []string) []string {
	var out []string
	i := 0
	for _, x := range a {
		for i < len(b) && b[i] < x {
			i++
		}
		if i < len(b) && b[i] == x {
			i++
			continue
		}
		out = append(out, x)
	}
	return out
}

// testFailHalfway: a function that fails after writing leaves nothing,
// whether a Tx method's error stopped it or its own; and ErrExists or
// ErrNotFound from a Tx method leave the transaction usable, so that a
// function may go on after them and commit.
func testFailHalfway(t *testing.T, s meta.Store) {
	ctx := t.Context()
	bob := addUser(t, s, "bob@example.org")
	insert(t, s, message(bob.ID, "old", meta.Inbox, day(1)))
	since := cursor(t, s)

	for _, tc := range []struct {
		name string
		fail func(tx meta.Tx) error
		want error
	}{
		{"a taken message id", func(tx meta.Tx) error {
			return tx.InsertMessage(ctx, message(bob.ID, "old", meta.Inbox, day(3)))
		}, meta.ErrExists},
		{"a token of no user", func(tx meta.Tx) error {
			return tx.AddToken(ctx, meta.Token{Hash: []byte("nobody-token-0000000000000000000"), UserID: bob.ID + 1000})
		}, meta.ErrNotFound},
		{"a taken job key", func(tx meta.Tx) error {
			if _, err := tx.AddJob(ctx, meta.Job{Kind: "half", Key: "half:1"}); err != nil {
				return err
			}
			_, err := tx.AddJob(ctx, meta.Job{Kind: "half", Key: "half:1"})
			return err
		}, meta.ErrExists},
	} {
		err := s.Update(ctx, func(tx meta.Tx) error {
			if err := writeAll(ctx, tx, bob.ID); err != nil {
				return err
			}
			return tc.fail(tx)
		})
		wantErr(t, tc.name, err, tc.want)
		checkUnchanged(t, s, bob.ID, since)
		if _, err := s.JobByKey(ctx, "half:1"); err == nil {
			t.Errorf("%s: the job added before the failure was kept", tc.name)
		}
	}

	// Going on after ErrExists and ErrNotFound.
	update(t, s, func(ctx context.Context, tx meta.Tx) error {
		if _, err := tx.AddJob(ctx, meta.Job{Kind: "half", Key: "half:2"}); err != nil {
			return err
		}
		for what, err := range map[string]error{
			"AddJob with a taken key": func() error {
				_, err := tx.AddJob(ctx, meta.Job{Kind: "half", Key: "half:2"})
				return err
			}(),
			"AddUser with a taken address": func() error {
				_, err := tx.AddUser(ctx, meta.User{Address: "bob@example.org", PasswordHash: "h"})
				return err
			}(),
			"InsertMessage with a taken id":   tx.InsertMessage(ctx, message(bob.ID, "old", meta.Inbox, day(3))),
			"InsertMessage of no user":        tx.InsertMessage(ctx, message(bob.ID+1000, "nobody's", meta.Inbox, day(3))),
			"AddToken of no user":             tx.AddToken(ctx, meta.Token{Hash: []byte("nobody-token-1111111111111111111"), UserID: bob.ID + 1000}),
			"SetEnvelope of no message":       tx.SetEnvelope(ctx, "none", []byte(`{}`)),
			"UpdateMessage of no message":     tx.UpdateMessage(ctx, message(bob.ID, "none", meta.Inbox, day(3))),
			"SetUserSetting of no user":       tx.SetUserSetting(ctx, bob.ID+1000, "forwarding", "deny"),
			"AddUpload of no user":            tx.AddUpload(ctx, bob.ID+1000, meta.Ref{ID: rid("u"), Size: 1}),
			"AddGrant of no client":           tx.AddGrant(ctx, meta.Grant{Hash: []byte("g"), Kind: meta.GrantCode, ClientID: "none"}),
			"DeleteMessage of no message":     tx.DeleteMessage(ctx, bob.ID, "none"),
			"UpdateJob of no job":             tx.UpdateJob(ctx, meta.Job{ID: 1 << 40, State: meta.JobDone}),
			"PutIdempotency of no user":       tx.PutIdempotency(ctx, meta.Idempotency{UserID: bob.ID + 1000, Key: "k", Request: "r", Result: []byte("{}")}),
			"DeleteToken of no token":         tx.DeleteToken(ctx, []byte("none")),
			"SetPassword of no user":          tx.SetPassword(ctx, bob.ID+1000, "h"),
			"UpdateGrant of no grant":         tx.UpdateGrant(ctx, meta.Grant{Hash: []byte("none")}),
			"DeleteClient of no client":       tx.DeleteClient(ctx, "none"),
			"DeleteUser of no user":           tx.DeleteUser(ctx, bob.ID+1000),
			"AddClient, then the same client": addTwice(ctx, tx),
		} {
			if !errorsIsAny(err, meta.ErrExists, meta.ErrNotFound) {
				t.Errorf("%s: %v, want ErrExists or ErrNotFound", what, err)
			}
		}
		return tx.InsertMessage(ctx, message(bob.ID, "after", meta.Inbox, day(4)))
	})
	if _, err := s.JobByKey(ctx, "half:2"); err != nil {
		t.Errorf("the job added before the errors: %v", err)
	}
	if _, err := s.Message(ctx, bob.ID, "after"); err != nil {
		t.Errorf("the message inserted after the errors: %v", err)
	}
	if _, err := s.Client(ctx, "twice"); err != nil {
		t.Errorf("the client added once: %v", err)
	}
	if got, want := changes(t, s, bob.ID, since), []change{{"after", meta.Inbox, meta.Created}}; !slices.Equal(got, want) {
		t.Errorf("changes after the errors = %v, want %v", got, want)
	}
}

// addTwice adds a client and then the same one again, returning the
// second error.
func addTwice(ctx context.Context, tx meta.Tx) error {
	if err := tx.AddClient(ctx, meta.Client{ID: "twice", Name: "Twice"}); err != nil {
		return err
	}
	return tx.AddClient(ctx, meta.Client{ID: "twice", Name: "Twice"})
}

func errorsIsAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

// testRangeWriters: sixteen writers, each reading a page of one user's Sent
// folder and adding a message to it, many times at once (a user's sends
// from sixteen tabs). Every Update must succeed: a store may retry a writer
// that conflicts, but not give up on writers that keep meeting each other
// (PostgreSQL's predicate locks cover index pages, so each pair of these
// conflicts, and ten plain retries each were not enough).
func testRangeWriters(t *testing.T, s meta.Store) {
	ctx := t.Context()
	u := addUser(t, s, "ranges@example.com")
	const writers, each = 16, 8
	var runs atomic.Int64
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("r%02d%02d", w, i)
				err := s.Update(ctx, func(tx meta.Tx) error {
					runs.Add(1)
					if _, err := tx.Messages(ctx, u.ID, meta.ListOptions{Folder: meta.Sent, Limit: 10}); err != nil {
						return err
					}
					return tx.InsertMessage(ctx, message(u.ID, id, meta.Sent, day(2).Add(time.Duration(w*each+i)*time.Second)))
				})
				if err != nil {
					t.Errorf("writer %d, message %d: %v", w, i, err)
				}
			}
		})
	}
	wg.Wait()
	l, err := s.Messages(ctx, u.ID, meta.ListOptions{Folder: meta.Sent})
	if err != nil || len(l) != writers*each {
		t.Errorf("the Sent folder holds %d messages (%v), want %d", len(l), err, writers*each)
	}
	t.Logf("%d writes took %d runs", writers*each, runs.Load())
}
