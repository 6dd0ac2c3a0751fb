package metatest

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/pullmail/pullmail/meta"
)

// testEnvelopes: an envelope belongs to its message and its user, is
// replaced by a second SetEnvelope, goes with the message, and cannot be
// set for a message that does not exist.
func testEnvelopes(t *testing.T, s meta.Store) {
	ctx := context.Background()
	bob := addUser(t, s, "bob@example.net")
	eve := addUser(t, s, "eve@example.net")
	insert(t, s, message(bob.ID, "m1", meta.Inbox, day(1)), message(bob.ID, "m2", meta.Inbox, day(2)))

	if _, err := s.Envelope(ctx, bob.ID, "m1"); !errors.Is(err, meta.ErrNotFound) {
		t.Fatalf("Envelope before SetEnvelope: %v, want ErrNotFound", err)
	}
	update(t, s, func(ctx context.Context, tx meta.Tx) error { return tx.SetEnvelope(ctx, "m1", []byte(`{"v":1}`)) })
	update(t, s, func(ctx context.Context, tx meta.Tx) error { return tx.SetEnvelope(ctx, "m1", []byte(`{"v":2}`)) })
	got, err := s.Envelope(ctx, bob.ID, "m1")
	if err != nil || !bytes.Equal(got, []byte(`{"v":2}`)) {
		t.Fatalf("Envelope = %q, %v; want the second one", got, err)
	}
	if _, err := s.Envelope(ctx, eve.ID, "m1"); !errors.Is(err, meta.ErrNotFound) {
		t.Errorf("another user's envelope: %v, want ErrNotFound", err)
	}
	if _, err := s.Envelope(ctx, bob.ID, "m2"); !errors.Is(err, meta.ErrNotFound) {
		t.Errorf("a message without one: %v, want ErrNotFound", err)
	}
	err = s.Update(ctx, func(tx meta.Tx) error { return tx.SetEnvelope(ctx, "nope", []byte(`{}`)) })
	if !errors.Is(err, meta.ErrNotFound) {
		t.Errorf("SetEnvelope of a missing message: %v, want ErrNotFound", err)
	}
	update(t, s, func(ctx context.Context, tx meta.Tx) error { return tx.DeleteMessage(ctx, bob.ID, "m1") })
	insert(t, s, message(bob.ID, "m1", meta.Inbox, day(3)))
	if _, err := s.Envelope(ctx, bob.ID, "m1"); !errors.Is(err, meta.ErrNotFound) {
		t.Errorf("a deleted message's envelope survived into a new message with its id: %v", err)
	}
}
