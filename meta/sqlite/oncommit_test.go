package sqlite

import (
	"context"
	"errors"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/pullmail/pullmail/meta"
)

// TestOnCommit checks that the commit callback names exactly the users
// whose change log a committed Update appended to, and is not called for a
// rollback or for an Update that logged nothing.
func TestOnCommit(t *testing.T) {
	s, _ := openTemp(t)
	defer s.Close()
	ctx := t.Context()
	var calls [][]int64
	s.OnCommit(func(users []int64) {
		u := slices.Clone(users)
		sort.Slice(u, func(i, j int) bool { return u[i] < u[j] })
		calls = append(calls, u)
	})
	var alice, bob meta.User
	err := s.Update(ctx, func(tx meta.Tx) error {
		var err error
		if alice, err = tx.AddUser(ctx, meta.User{Address: "alice@a.test", PasswordHash: "x"}); err != nil {
			return err
		}
		bob, err = tx.AddUser(ctx, meta.User{Address: "bob@a.test", PasswordHash: "x"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	msg := func(id string, user int64) meta.Message {
		now := time.Now()
		return meta.Message{ID: id, UserID: user, Folder: meta.Inbox, MessageID: "<" + id + "@a.test>",
			Status: meta.StatusComplete, Date: now, Created: now, Updated: now}
	}
	boom := errors.New("boom")
	steps := []struct {
		name string
		fn   func(tx meta.Tx) error
		err  error
		want []int64 // nil: no call
	}{
		{"no change logged", func(tx meta.Tx) error { return tx.SetSetting(ctx, "k", "v") }, nil, nil},
		{"two users, one twice", func(tx meta.Tx) error {
			for _, m := range []meta.Message{msg("a1", alice.ID), msg("b1", bob.ID), msg("a2", alice.ID)} {
				if err := tx.InsertMessage(ctx, m); err != nil {
					return err
				}
			}
			return nil
		}, nil, []int64{alice.ID, bob.ID}},
		{"rolled back", func(tx meta.Tx) error {
			if err := tx.InsertMessage(ctx, msg("b2", bob.ID)); err != nil {
				return err
			}
			return boom
		}, boom, nil},
		{"delete", func(tx meta.Tx) error { return tx.DeleteMessage(ctx, bob.ID, "b1") }, nil, []int64{bob.ID}},
	}
	for _, st := range steps {
		calls = nil
		if err := s.Update(context.Background(), st.fn); !errors.Is(err, st.err) {
			t.Fatalf("%s: Update = %v, want %v", st.name, err, st.err)
		}
		switch {
		case st.want == nil && len(calls) != 0:
			t.Errorf("%s: callback called with %v", st.name, calls)
		case st.want != nil && (len(calls) != 1 || !slices.Equal(calls[0], st.want)):
			t.Errorf("%s: callback calls %v, want one with %v", st.name, calls, st.want)
		}
	}
	s.OnCommit(nil)
	calls = nil
	if err := s.Update(ctx, func(tx meta.Tx) error { return tx.InsertMessage(ctx, msg("a3", alice.ID)) }); err != nil {
		t.Fatal(err)
	}
	if len(calls) != 0 {
		t.Errorf("callback called after it was removed: %v", calls)
	}
}
