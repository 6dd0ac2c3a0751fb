package metatest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pullmail/pullmail/meta"
)

// Bench measures a representative write and a representative read, each
// from 1 and from 8 goroutines, so that implementations can be compared
// (docs/BENCHMARKS.md):
//
//   - Write: one Update that inserts a received message (two refs, logged
//     in its owner's change log), keeps its envelope and queues its pull
//     job, as an inbound delivery does. The goroutines write to 8 users.
//   - Read: a page of 20 messages of an inbox of 200, with their refs, and
//     the user's changes since a cursor, as a client's sync does.
//
// open must return a new, empty store; Bench closes it.
func Bench(b *testing.B, open func(b *testing.B) meta.Store) {
	for _, g := range []int{1, 8} {
		b.Run(fmt.Sprintf("Write/goroutines=%d", g), func(b *testing.B) {
			s := open(b)
			defer s.Close()
			ctx := context.Background()
			users := benchUsers(b, s, 8)
			var seq atomic.Int64
			parallel(b, g, func(w int) error {
				i := seq.Add(1)
				u := users[int(i)%len(users)]
				id := fmt.Sprintf("m%d", i)
				m := message(u.ID, id, meta.Inbox, day(1+int(i%28)),
					meta.Ref{ID: rid(id + "/a"), Size: 1000}, meta.Ref{ID: rid(id + "/b"), Size: 2000})
				return s.Update(ctx, func(tx meta.Tx) error {
					if err := tx.InsertMessage(ctx, m); err != nil {
						return err
					}
					if err := tx.SetEnvelope(ctx, id, []byte(`{"placeholder":{},"chain":[]}`)); err != nil {
						return err
					}
					_, err := tx.AddJob(ctx, meta.Job{Kind: "pull", Key: "pull:" + id, Payload: []byte(`{"id":"` + id + `"}`)})
					return err
				})
			})
		})
		b.Run(fmt.Sprintf("Read/goroutines=%d", g), func(b *testing.B) {
			s := open(b)
			defer s.Close()
			ctx := context.Background()
			users := benchUsers(b, s, 1)
			u := users[0]
			since := int64(0)
			for i := range 200 {
				id := fmt.Sprintf("r%d", i)
				m := message(u.ID, id, meta.Inbox, day(1).Add(time.Duration(i)*time.Minute),
					meta.Ref{ID: rid(id + "/a"), Size: 1000}, meta.Ref{ID: rid(id + "/b"), Size: 2000})
				if err := s.Update(ctx, func(tx meta.Tx) error { return tx.InsertMessage(ctx, m) }); err != nil {
					b.Fatal(err)
				}
				if i == 189 {
					var err error
					if since, err = s.Cursor(ctx); err != nil {
						b.Fatal(err)
					}
				}
			}
			parallel(b, g, func(int) error {
				ms, err := s.Messages(ctx, u.ID, meta.ListOptions{Folder: meta.Inbox, Limit: 20})
				if err != nil {
					return err
				}
				if len(ms) != 20 || len(ms[0].Refs) != 2 {
					return fmt.Errorf("listed %d messages", len(ms))
				}
				cs, err := s.Changes(ctx, u.ID, since, 0)
				if err != nil {
					return err
				}
				if len(cs) != 10 {
					return fmt.Errorf("%d changes since the cursor, want 10", len(cs))
				}
				return nil
			})
		})
	}
}

func benchUsers(b *testing.B, s meta.Store, n int) []meta.User {
	b.Helper()
	var users []meta.User
	ctx := context.Background()
	err := s.Update(ctx, func(tx meta.Tx) error {
		users = nil // the function may run again
		for i := range n {
			u, err := tx.AddUser(ctx, meta.User{Address: fmt.Sprintf("bench%d@example.org", i), PasswordHash: "h"})
			if err != nil {
				return err
			}
			users = append(users, u)
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return users
}

// parallel runs b.N calls of fn spread over g goroutines (fn gets the
// goroutine's number) and fails the benchmark on the first error.
func parallel(b *testing.B, g int, fn func(w int) error) {
	b.Helper()
	var left atomic.Int64
	left.Store(int64(b.N))
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	b.ResetTimer()
	for w := range g {
		wg.Go(func() {
			for left.Add(-1) >= 0 {
				if err := fn(w); err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if first != nil {
		b.Fatal(first)
	}
}

// BenchSearch measures Search in one user's mailbox of 10,000 indexed
// messages, each with a 100-word body drawn from a 5,000-word vocabulary
// (docs/BENCHMARKS.md): a word in a few messages, a word in about 2% of
// them (a page of 50 of its ~200), a two-word prefix phrase, and a word with from: and has:attachment,
// each answering its first page of 50. open must return a new, empty
// store; BenchSearch closes it.
func BenchSearch(b *testing.B, open func(b *testing.B) meta.Store) {
	s := open(b)
	defer s.Close()
	ctx := context.Background()
	u := benchUsers(b, s, 1)[0]
	const n, vocab, words = 10000, 5000, 100
	word := func(i int) string { return fmt.Sprintf("w%dx", i) }
	rng := uint64(1)
	next := func() int { rng = rng*6364136223846793005 + 1442695040888963407; return int(rng>>33) % vocab }
	for start := 0; start < n; start += 500 {
		err := s.Update(ctx, func(tx meta.Tx) error {
			for i := start; i < start+500; i++ {
				id := fmt.Sprintf("s%05d", i)
				if err := tx.InsertMessage(ctx, message(u.ID, id, meta.Inbox, day(1).Add(time.Duration(i)*time.Minute))); err != nil {
					return err
				}
				var body []byte
				for range words {
					body = append(body, word(next())...)
					body = append(body, ' ')
				}
				if i%1000 == 0 {
					body = append(body, "rarely"...) // in 10 messages
				}
				doc := meta.SearchDoc{From: fmt.Sprintf("Sender %d <s%d@example.org>", i%50, i%50), To: "bench@example.org",
					Subject: "Subject " + word(next()) + " " + word(next()), Body: string(body), HasAttachment: i%10 == 0}
				if err := tx.IndexMessage(ctx, u.ID, id, doc); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	// A store with planner statistics refreshes them, as it would by
	// itself some time after such a load (PostgreSQL's autovacuum).
	if a, ok := s.(interface{ Analyze(context.Context) error }); ok {
		if err := a.Analyze(ctx); err != nil {
			b.Fatal(err)
		}
	}
	w := meta.SearchWords
	for _, c := range []struct {
		name string
		q    meta.SearchQuery
	}{
		{"RareWord", meta.SearchQuery{Words: [][]string{w("rarely")}}},
		{"CommonWord", meta.SearchQuery{Words: [][]string{w(word(17))}}},
		{"PrefixPhrase", meta.SearchQuery{Words: [][]string{w("w17x w2")}}},
		{"FromHasAttachment", meta.SearchQuery{From: [][]string{w("s7")}, HasAttachment: true, Words: [][]string{w(word(17))}}},
	} {
		b.Run(c.name, func(b *testing.B) {
			c.q.Limit = 50
			for b.Loop() {
				if _, err := s.Search(ctx, u.ID, c.q); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
