package metatest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/resource"
)

// wantCondemned checks that err is the CondemnedError of id.
func wantCondemned(t *testing.T, what string, err error, id resource.ID) {
	t.Helper()
	var ce *meta.CondemnedError
	if !errors.As(err, &ce) || ce.ID != id || !errors.Is(err, meta.ErrCondemned) {
		t.Errorf("%s: %v, want the CondemnedError of %s", what, err, id)
	}
}

// testCondemn: garbage collection's condemnations (meta.CollectorWriter).
// Only an unreferenced resource is condemned; while it is, every write that
// would reference it fails with a CondemnedError, writes nothing and leaves
// the transaction usable; Release ends it.
func testCondemn(t *testing.T, s meta.Store) {
	ctx := t.Context()
	u := addUser(t, s, "alice@example.org")
	up, named, free := rid("uploaded"), rid("named by a message"), rid("nothing's")
	update(t, s, func(ctx context.Context, tx meta.Tx) error {
		if err := tx.AddUpload(ctx, u.ID, meta.Ref{ID: up, Size: 8}); err != nil {
			return err
		}
		return tx.InsertMessage(ctx, message(u.ID, "m1", meta.Inbox, day(2), meta.Ref{ID: named, Size: 18}))
	})
	at := time.Now().Add(-time.Minute).Truncate(time.Microsecond)
	for _, tc := range []struct {
		id   resource.ID
		want bool
	}{{up, false}, {named, false}, {free, true}, {free, false}} {
		var got bool
		update(t, s, func(ctx context.Context, tx meta.Tx) error {
			var err error
			got, err = tx.Condemn(ctx, tc.id, at)
			return err
		})
		if got != tc.want {
			t.Errorf("Condemn(%s) = %v, want %v", tc.id, got, tc.want)
		}
	}
	for id, want := range map[resource.ID]bool{up: false, named: false, free: true} {
		if got, err := s.Condemned(ctx, id); err != nil || got != want {
			t.Errorf("Condemned(%s) = %v, %v; want %v", id, got, err, want)
		}
	}
	if cs, err := s.Condemnations(ctx, time.Now(), 0); err != nil || len(cs) != 1 || cs[0].ID != free || !cs[0].At.Equal(at) {
		t.Errorf("Condemnations(now) = %+v, %v; want %s at %v", cs, err, free, at)
	}
	if cs, err := s.Condemnations(ctx, at, 0); err != nil || len(cs) != 0 {
		t.Errorf("Condemnations(before the condemnation) = %+v, %v; want none", cs, err)
	}

	cursor, err := s.Cursor(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Each write that would reference it fails, and the function goes
	// on and commits what else it did.
	update(t, s, func(ctx context.Context, tx meta.Tx) error {
		wantCondemned(t, "AddUpload", tx.AddUpload(ctx, u.ID, meta.Ref{ID: free, Size: 9}), free)
		wantCondemned(t, "InsertMessage", tx.InsertMessage(ctx, message(u.ID, "m2", meta.Inbox, day(3), meta.Ref{ID: up, Size: 8}, meta.Ref{ID: free, Size: 9})), free)
		m, err := tx.Message(ctx, u.ID, "m1")
		if err != nil {
			return err
		}
		m.Refs = append(m.Refs, meta.Ref{ID: free, Size: 9})
		m.Subject = "changed"
		wantCondemned(t, "UpdateMessage", tx.UpdateMessage(ctx, m), free)
		return tx.SetSetting(ctx, "after", "condemned")
	})
	if v, err := s.Setting(ctx, "after"); err != nil || v != "condemned" {
		t.Errorf("the transaction after the CondemnedErrors did not commit: %q, %v", v, err)
	}
	if _, err := s.Message(ctx, u.ID, "m2"); !errors.Is(err, meta.ErrNotFound) {
		t.Errorf("the refused InsertMessage stored m2: %v", err)
	}
	if m, err := s.Message(ctx, u.ID, "m1"); err != nil || m.Subject == "changed" || len(m.Refs) != 1 {
		t.Errorf("the refused UpdateMessage changed m1: %+v, %v", m, err)
	}
	if ref, err := s.Referenced(ctx, free); err != nil || ref {
		t.Errorf("Referenced(condemned) = %v, %v", ref, err)
	}
	if c, err := s.Cursor(ctx); err != nil || c != cursor {
		t.Errorf("refused writes logged changes: cursor %d, was %d (%v)", c, cursor, err)
	}

	// Released, it may be referenced again (and then not condemned).
	update(t, s, func(ctx context.Context, tx meta.Tx) error {
		if err := tx.Release(ctx, free); err != nil {
			return err
		}
		if err := tx.Release(ctx, rid("never condemned")); err != nil {
			return fmt.Errorf("releasing a resource not condemned: %w", err)
		}
		return tx.AddUpload(ctx, u.ID, meta.Ref{ID: free, Size: 9})
	})
	if c, err := s.Condemned(ctx, free); err != nil || c {
		t.Errorf("Condemned after Release = %v, %v", c, err)
	}
	update(t, s, func(ctx context.Context, tx meta.Tx) error {
		if ok, err := tx.Condemn(ctx, free, time.Now()); err != nil || ok {
			return fmt.Errorf("condemning an uploaded resource = %v, %v", ok, err)
		}
		return nil
	})
	// A deleted user's resources become unreferenced: condemnable.
	update(t, s, func(ctx context.Context, tx meta.Tx) error { return tx.DeleteUser(ctx, u.ID) })
	update(t, s, func(ctx context.Context, tx meta.Tx) error {
		for _, id := range []resource.ID{up, named, free} {
			if ok, err := tx.Condemn(ctx, id, time.Now()); err != nil || !ok {
				return fmt.Errorf("condemning %s after DeleteUser = %v, %v", id, ok, err)
			}
		}
		return nil
	})
}

// testCondemnRace: garbage collection racing writers of the same
// resources. The blob store is modelled by a set: a writer reads the
// collector's epoch, "puts" the bytes, then references them in a message
// after meta.CheckStored; a collector condemns, removes from the set, and
// releases, as mailbox.Service.CollectGarbage does. A writer that meets a
// condemnation, or a moved epoch, waits for the release, reads the epoch
// again and puts the bytes again if they went. Whatever the interleaving, a committed
// reference always finds its bytes stored until it is deleted: that is
// what "GC cannot lose a blob to a concurrent upload of the same bytes"
// means, and it rests on Condemn and the writes being serializable.
func testCondemnRace(t *testing.T, s meta.Store) {
	ctx := t.Context()
	u := addUser(t, s, "alice@example.org")
	const digests, writers, rounds, collectors = 3, 6, 25, 2
	ids := make([]resource.ID, digests)
	for i := range ids {
		ids[i] = rid(fmt.Sprint("shared bytes ", i))
	}
	var mu sync.Mutex
	stored := map[resource.ID]bool{}
	put := func(id resource.ID) { mu.Lock(); stored[id] = true; mu.Unlock() }
	has := func(id resource.ID) bool { mu.Lock(); defer mu.Unlock(); return stored[id] }

	var lost, met, removed, gaveUp atomic.Int64
	// Updates that gave up on conflicts (PostgreSQL under this contention,
	// every table a page) are run again, up to a bound.
	const maxGaveUp = 200
	done := make(chan struct{})
	var cwg sync.WaitGroup
	for range collectors {
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			for {
				// A sweep every few milliseconds: far busier than
				// any real collector (hourly), not a spin that
				// starves the writers of a store whose conflicts
				// are retried a bounded number of times.
				select {
				case <-done:
					return
				case <-time.After(3 * time.Millisecond):
				}
				for _, id := range ids {
					// A look first, as the real collector takes:
					// the condemnation decides.
					if ref, err := s.Referenced(ctx, id); err != nil || ref {
						if err != nil {
							t.Errorf("Referenced: %v", err)
							return
						}
						continue
					}
					var ok bool
					err := s.Update(ctx, func(tx meta.Tx) error {
						var err error
						ok, err = tx.Condemn(ctx, id, time.Now())
						return err
					})
					if err != nil {
						t.Errorf("Condemn: %v", err)
						return
					}
					if !ok {
						continue
					}
					mu.Lock()
					delete(stored, id)
					mu.Unlock()
					removed.Add(1)
					if err := s.Update(ctx, func(tx meta.Tx) error { return tx.Release(ctx, id) }); err != nil {
						t.Errorf("Release: %v", err)
						return
					}
				}
			}
		}()
	}
	var wwg sync.WaitGroup
	for w := range writers {
		wwg.Add(1)
		go func() {
			defer wwg.Done()
			for r := range rounds {
				id := ids[(w+r)%digests]
				mid := fmt.Sprintf("w%d-r%d", w, r)
				epoch, err := s.CollectorEpoch(ctx)
				if err != nil {
					t.Errorf("CollectorEpoch: %v", err)
					return
				}
				put(id)
				// An upload takes a while: long enough, often, for a
				// whole condemnation, removal and release to pass.
				time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
				for {
					err := s.Update(ctx, func(tx meta.Tx) error {
						if err := meta.CheckStored(ctx, tx, id, epoch); err != nil {
							return err
						}
						return tx.InsertMessage(ctx, message(u.ID, mid, meta.Inbox, day(2), meta.Ref{ID: id, Size: 14}))
					})
					if err != nil && !errors.Is(err, meta.ErrCondemned) && !errors.Is(err, meta.ErrCollectedSince) {
						// Update may give up on conflicts (its
						// contract); nothing of it committed.
						if gaveUp.Add(1) > maxGaveUp {
							t.Errorf("InsertMessage: %v", err)
							return
						}
						continue
					}
					if err == nil {
						break
					}
					met.Add(1)
					for {
						c, err := s.Condemned(ctx, id)
						if err != nil {
							t.Errorf("Condemned: %v", err)
							return
						}
						if !c {
							break
						}
						time.Sleep(time.Millisecond)
					}
					if epoch, err = s.CollectorEpoch(ctx); err != nil {
						t.Errorf("CollectorEpoch: %v", err)
						return
					}
					if !has(id) {
						put(id) // removed: stored again
					}
				}
				// Referenced now: no collector may take the bytes.
				for range 3 {
					if !has(id) {
						lost.Add(1)
					}
				}
				for {
					err := s.Update(ctx, func(tx meta.Tx) error { return tx.DeleteMessage(ctx, u.ID, mid) })
					if err == nil {
						break
					}
					if gaveUp.Add(1) > maxGaveUp {
						t.Errorf("DeleteMessage: %v", err)
						return
					}
				}
			}
		}()
	}
	wwg.Wait()
	close(done)
	cwg.Wait()
	if n := lost.Load(); n != 0 {
		t.Errorf("%d times a referenced resource's bytes were gone", n)
	}
	if cs, err := s.Condemnations(ctx, time.Now().Add(time.Hour), 0); err != nil || len(cs) != 0 {
		t.Errorf("condemnations left: %+v, %v", cs, err)
	}
	t.Logf("%d removals, %d writes met a condemnation, %d updates gave up on conflicts", removed.Load(), met.Load(), gaveUp.Load())
	if removed.Load() == 0 {
		t.Errorf("no collector ever removed a resource: the race was not run")
	}
}
