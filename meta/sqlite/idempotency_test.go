package sqlite

import (
	"errors"
	"testing"
	"time"

	"github.com/pullmail/pullmail/meta"
)

// TestIdempotency: a record reads back as stored, Put replaces the user's
// record of the same key, keys are per user, the user's expired records go
// at the next Put, a record for no user is ErrNotFound, and records go
// with their user.
func TestIdempotency(t *testing.T) {
	ctx := t.Context()
	s, _ := openTemp(t)
	defer s.Close()
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	var alice, bob meta.User
	err := s.Update(ctx, func(tx meta.Tx) (err error) {
		if alice, err = tx.AddUser(ctx, meta.User{Address: "alice@a.test", PasswordHash: "h"}); err != nil {
			return err
		}
		bob, err = tx.AddUser(ctx, meta.User{Address: "bob@a.test", PasswordHash: "h"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	rec := func(u meta.User, key, request string, created time.Time) meta.Idempotency {
		return meta.Idempotency{UserID: u.ID, Key: key, Request: request, Result: []byte(`{"id":"` + request + `"}`),
			Created: created, Expires: created.Add(time.Hour)}
	}
	put := func(r meta.Idempotency) error {
		return s.Update(ctx, func(tx meta.Tx) error { return tx.PutIdempotency(ctx, r) })
	}
	get := func(u meta.User, key string) (r meta.Idempotency, err error) {
		err = s.Update(ctx, func(tx meta.Tx) error {
			r, err = tx.Idempotency(ctx, u.ID, key)
			return err
		})
		return r, err
	}
	for _, r := range []meta.Idempotency{
		rec(alice, "k1", "send:a", t0),
		rec(alice, "old", "send:o", t0.Add(-2*time.Hour)), // already expired at t0
		rec(bob, "k1", "send:b", t0),
	} {
		if err := put(r); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		u    meta.User
		key  string
		want meta.Idempotency
	}{
		{alice, "k1", rec(alice, "k1", "send:a", t0)},
		{bob, "k1", rec(bob, "k1", "send:b", t0)},
		{alice, "old", rec(alice, "old", "send:o", t0.Add(-2*time.Hour))},
	} {
		got, err := get(tc.u, tc.key)
		if err != nil || got.Request != tc.want.Request || string(got.Result) != string(tc.want.Result) ||
			!got.Created.Equal(tc.want.Created) || !got.Expires.Equal(tc.want.Expires) || got.UserID != tc.u.ID || got.Key != tc.key {
			t.Fatalf("%s %s: %+v %v, want %+v", tc.u.Address, tc.key, got, err, tc.want)
		}
	}
	// A later Put of alice's replaces her k1 and prunes her expired "old".
	if err := put(rec(alice, "k1", "send:a2", t0.Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	if got, err := get(alice, "k1"); err != nil || got.Request != "send:a2" {
		t.Fatalf("replaced: %+v %v", got, err)
	}
	if _, err := get(alice, "old"); !errors.Is(err, meta.ErrNotFound) {
		t.Fatalf("expired record: %v, want ErrNotFound", err)
	}
	if got, err := get(bob, "k1"); err != nil || got.Request != "send:b" {
		t.Fatalf("bob's record: %+v %v", got, err)
	}
	if err := put(rec(meta.User{ID: 999}, "k", "send:x", t0)); !errors.Is(err, meta.ErrNotFound) {
		t.Fatalf("a record for no user: %v", err)
	}
	if err := s.Update(ctx, func(tx meta.Tx) error { return tx.DeleteUser(ctx, bob.ID) }); err != nil {
		t.Fatal(err)
	}
	if _, err := get(bob, "k1"); !errors.Is(err, meta.ErrNotFound) {
		t.Fatalf("a deleted user's record: %v", err)
	}
}
