package metatest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pullmail/pullmail/meta"
)

// testNodes: several nodes on one queue. A job names the node that claimed
// it; a live node renews its lease so that no other takes the job over; a
// dead node's job goes to another when the lease ends; a node starting up
// hands back its own running jobs and nobody else's.
func testNodes(t *testing.T, s meta.Store) {
	t.Run("RenewKeeps", func(t *testing.T) {
		now := day(10)
		const lease = time.Minute
		addJob(t, s, meta.Job{Kind: "renew", Key: "renew:1", NextTry: now})
		js := claimAs(t, s, "node-a", "renew", now, 1, lease)
		if len(js) != 1 || js[0].Holder != "node-a" {
			t.Fatalf("claimed %+v, want the job held by node-a", js)
		}
		held := js[0]
		// node-a renews every third of the lease, for a job (a long pull)
		// that lasts ten leases: node-b, asking all along, never gets it.
		at := now
		for i := range 30 {
			at = at.Add(lease / 3)
			renewed, err := s.RenewJob(t.Context(), held, at, lease)
			if err != nil {
				t.Fatalf("renewal %d: %v", i, err)
			}
			if !renewed.NextTry.Equal(at.Add(lease)) || !renewed.Updated.Equal(at) || renewed.Attempts != 1 ||
				renewed.Holder != "node-a" || renewed.State != meta.JobRunning {
				t.Fatalf("renewal %d returned %+v", i, renewed)
			}
			if js := claimAs(t, s, "node-b", "renew", at.Add(lease/3+lease/6), 1, lease); len(js) != 0 {
				t.Fatalf("node-b took over a renewed job at renewal %d: %+v", i, js)
			}
		}

		// node-a dies: when its last lease ends, node-b takes the job over.
		end := at.Add(lease)
		js = claimAs(t, s, "node-b", "renew", end, 1, lease)
		if len(js) != 1 || js[0].Holder != "node-b" || js[0].Attempts != 2 {
			t.Fatalf("take-over after the lease ended: %+v", js)
		}
		// node-a's late renewal is refused, and changes nothing.
		_, err := s.RenewJob(t.Context(), held, end, lease)
		wantErr(t, "RenewJob of a job taken over", err, meta.ErrLeaseLost)
		readJob(t, s, js[0])
		// The same attempt count under another holder is not the lease
		// either (a node renewing a job it never claimed).
		other := js[0]
		other.Holder = "node-c"
		_, err = s.RenewJob(t.Context(), other, end, lease)
		wantErr(t, "RenewJob by another holder", err, meta.ErrLeaseLost)

		// A finished job cannot be renewed.
		done := js[0]
		done.State = meta.JobDone
		update(t, s, func(ctx context.Context, tx meta.Tx) error { return tx.UpdateJob(ctx, done) })
		_, err = s.RenewJob(t.Context(), js[0], end, lease)
		wantErr(t, "RenewJob of a done job", err, meta.ErrLeaseLost)
		_, err = s.RenewJob(t.Context(), meta.Job{ID: 1 << 40, Attempts: 1, Holder: "node-a"}, end, lease)
		wantErr(t, "RenewJob of an unknown job", err, meta.ErrLeaseLost)
		if _, err := s.RenewJob(t.Context(), js[0], end, 0); err == nil || errors.Is(err, meta.ErrLeaseLost) {
			t.Errorf("RenewJob with a zero lease: %v, want an error other than ErrLeaseLost", err)
		}
	})

	t.Run("ExpiredReclaimed", func(t *testing.T) {
		// Jobs of a node that died, never renewed: each is claimed again by
		// the first node to ask after its lease, once.
		now := day(11)
		const lease = time.Minute
		for i := range 4 {
			addJob(t, s, meta.Job{Kind: "expired", Key: fmt.Sprint("expired:", i), NextTry: now})
		}
		if js := claimAs(t, s, "dead", "expired", now, 4, lease); len(js) != 4 {
			t.Fatalf("dead node claimed %d, want 4", len(js))
		}
		if js := claimAs(t, s, "node-a", "expired", now.Add(lease-time.Nanosecond), 4, lease); len(js) != 0 {
			t.Fatalf("claimed %v before the dead node's lease ended", jobKeys(js))
		}
		a := claimAs(t, s, "node-a", "expired", now.Add(lease), 3, lease)
		b := claimAs(t, s, "node-b", "expired", now.Add(lease), 3, lease)
		if len(a) != 3 || len(b) != 1 {
			t.Fatalf("after the lease node-a got %v, node-b %v; want 3 and 1", jobKeys(a), jobKeys(b))
		}
		for _, j := range append(a, b...) {
			if j.Attempts != 2 {
				t.Errorf("%s re-claimed with attempts %d, want 2", j.Key, j.Attempts)
			}
		}
	})

	t.Run("Release", func(t *testing.T) {
		now := day(12)
		const lease = time.Hour
		for i := range 3 {
			addJob(t, s, meta.Job{Kind: "release", Key: fmt.Sprint("release:", i), NextTry: now})
		}
		addJob(t, s, meta.Job{Kind: "release", Key: "release:queued", NextTry: now.Add(time.Hour)})
		a := claimAs(t, s, "rel-a", "release", now, 2, lease)
		b := claimAs(t, s, "rel-b", "release", now, 1, lease)
		if len(a) != 2 || len(b) != 1 {
			t.Fatalf("claims: node-a %v, node-b %v", jobKeys(a), jobKeys(b))
		}
		// node-a restarts: its two running jobs are queued again, due now;
		// rel-b's stays with node-b, and the queued job is untouched.
		restart := now.Add(time.Second)
		n, err := s.ReleaseJobs(t.Context(), "rel-a", restart)
		if err != nil || n != 2 {
			t.Fatalf("ReleaseJobs(node-a) = %d, %v; want 2", n, err)
		}
		for _, j := range a {
			want := j
			want.State, want.NextTry, want.Updated = meta.JobQueued, restart, restart
			readJob(t, s, want)
		}
		readJob(t, s, b[0])
		if js := claimAs(t, s, "rel-a", "release", restart, 10, lease); len(js) != 2 || js[0].Attempts != 2 {
			t.Fatalf("node-a claimed %+v after its release, want its two jobs at attempt 2", js)
		}
		if n, err := s.ReleaseJobs(t.Context(), "rel-z", restart); err != nil || n != 0 {
			t.Errorf("ReleaseJobs of a holder without jobs = %d, %v", n, err)
		}
		// rel-b's renewal still holds after rel-a's release.
		if _, err := s.RenewJob(t.Context(), b[0], restart, lease); err != nil {
			t.Errorf("rel-b's renewal after rel-a's release: %v", err)
		}
	})

	t.Run("AddKeepsHolder", func(t *testing.T) {
		j := addJob(t, s, meta.Job{Kind: "holder", Key: "holder:1", State: meta.JobRunning, Attempts: 1, Holder: "node-a",
			NextTry: day(2)})
		readJob(t, s, j)
		// UpdateJob leaves the holder as it is: a finished job still
		// names who ran it.
		done := j
		done.State, done.Holder = meta.JobDone, "node-z"
		update(t, s, func(ctx context.Context, tx meta.Tx) error { return tx.UpdateJob(ctx, done) })
		got, err := s.Job(t.Context(), j.ID)
		if err != nil || got.Holder != "node-a" || got.State != meta.JobDone {
			t.Errorf("after UpdateJob: %+v, %v; want done, still held by node-a", got, err)
		}
		err = s.Update(t.Context(), func(tx meta.Tx) error {
			_, err := tx.AddJob(t.Context(), meta.Job{Kind: "holder", Key: "holder:long", Holder: strings.Repeat("n", 513)})
			return err
		})
		if err == nil {
			t.Error("AddJob with a holder of 513 bytes accepted")
		}
	})

	t.Run("TwoNodesRace", func(t *testing.T) {
		// Two nodes, four workers each, claiming and finishing 200 jobs:
		// each job is claimed once and done once.
		const jobs = 200
		now := time.Now()
		update(t, s, func(ctx context.Context, tx meta.Tx) error {
			for i := range jobs {
				if _, err := tx.AddJob(ctx, meta.Job{Kind: "nodes", Key: fmt.Sprint("nodes:", i), NextTry: now}); err != nil {
					return err
				}
			}
			return nil
		})
		var mu sync.Mutex
		by := map[int64]string{}
		var wg sync.WaitGroup
		for w := range 8 {
			holder := []string{"node-a", "node-b"}[w%2]
			wg.Go(func() {
				for range jobs + 1 {
					js, err := s.ClaimJobs(t.Context(), holder, "nodes", now, 4, time.Hour)
					if err != nil {
						t.Errorf("ClaimJobs: %v", err)
						return
					}
					if len(js) == 0 {
						return
					}
					for _, j := range js {
						mu.Lock()
						if prev, ok := by[j.ID]; ok {
							t.Errorf("job %s claimed by %s and %s", j.Key, prev, holder)
						}
						by[j.ID] = holder
						mu.Unlock()
						if j.Holder != holder {
							t.Errorf("job %s claimed by %s names %q", j.Key, holder, j.Holder)
						}
						j.State = meta.JobDone
						if err := s.Update(t.Context(), func(tx meta.Tx) error { return tx.UpdateJob(t.Context(), j) }); err != nil {
							t.Errorf("finishing %s: %v", j.Key, err)
						}
					}
				}
				t.Errorf("a worker was still claiming after %d claims", jobs+1)
			})
		}
		wg.Wait()
		if len(by) != jobs {
			t.Errorf("%d distinct jobs claimed, want %d", len(by), jobs)
		}
		if n, err := s.CountJobs(t.Context(), "nodes", ""); err != nil || n != 0 {
			t.Errorf("%d jobs unfinished, %v", n, err)
		}
	})
}

// testLocks: named leases (the MTA's per-digest pull lock).
func testLocks(t *testing.T, s meta.Store) {
	ctx := t.Context()
	lock := func(name, holder string, now time.Time, lease time.Duration) bool {
		t.Helper()
		ok, err := s.Lock(ctx, name, holder, now, lease)
		if err != nil {
			t.Fatalf("Lock(%q, %q): %v", name, holder, err)
		}
		return ok
	}
	now := day(10)
	const lease = time.Minute
	t.Run("Lease", func(t *testing.T) {
		if !lock("pull:x", "node-a", now, lease) {
			t.Fatal("a free lock was refused")
		}
		if lock("pull:x", "node-b", now.Add(lease-time.Nanosecond), lease) {
			t.Fatal("node-b got the lock within node-a's lease")
		}
		if !lock("pull:y", "node-b", now, lease) {
			t.Fatal("another name is another lock")
		}
		// node-a renews: its lease runs from the renewal.
		if !lock("pull:x", "node-a", now.Add(lease/2), lease) {
			t.Fatal("node-a's renewal was refused")
		}
		if lock("pull:x", "node-b", now.Add(lease), lease) {
			t.Fatal("node-b got the lock within node-a's renewed lease")
		}
		// node-a dies: node-b takes it when the renewed lease ends.
		if !lock("pull:x", "node-b", now.Add(lease/2+lease), lease) {
			t.Fatal("node-b did not get the lock after node-a's lease ended")
		}
		if lock("pull:x", "node-a", now.Add(lease/2+lease), lease) {
			t.Fatal("node-a's late renewal took the lock back")
		}
		// node-a's late unlock leaves node-b's lock alone.
		if err := s.Unlock(ctx, "pull:x", "node-a"); err != nil {
			t.Fatal(err)
		}
		if lock("pull:x", "node-c", now.Add(lease/2+lease), lease) {
			t.Fatal("node-a's unlock released node-b's lock")
		}
		if err := s.Unlock(ctx, "pull:x", "node-b"); err != nil {
			t.Fatal(err)
		}
		if !lock("pull:x", "node-c", now.Add(lease/2+lease), lease) {
			t.Fatal("an unlocked lock was refused")
		}
		if err := s.Unlock(ctx, "pull:none", "node-a"); err != nil {
			t.Errorf("Unlock of a lock nobody holds: %v", err)
		}
	})

	t.Run("UnlockAll", func(t *testing.T) {
		for _, name := range []string{"all:1", "all:2", "all:3"} {
			if !lock(name, "node-a", now, time.Hour) {
				t.Fatalf("%s refused", name)
			}
		}
		if !lock("all:4", "node-b", now, time.Hour) {
			t.Fatal("all:4 refused")
		}
		n, err := s.UnlockAll(ctx, "node-a")
		if err != nil || n != 3 {
			t.Fatalf("UnlockAll(node-a) = %d, %v; want 3", n, err)
		}
		if !lock("all:1", "node-c", now, time.Hour) {
			t.Error("a lock of node-a's was not released")
		}
		if lock("all:4", "node-c", now, time.Hour) {
			t.Error("UnlockAll(node-a) released node-b's lock")
		}
	})

	t.Run("Bad", func(t *testing.T) {
		for _, tc := range []struct {
			name, holder string
			lease        time.Duration
		}{
			{"", "node-a", lease}, {"bad:1", "", lease}, {"bad:2", "node-a", 0}, {"bad:3", "node-a", -time.Second},
			{strings.Repeat("n", 513), "node-a", lease}, {"bad:4", strings.Repeat("h", 513), lease},
		} {
			if _, err := s.Lock(ctx, tc.name, tc.holder, now, tc.lease); err == nil {
				t.Errorf("Lock(%.10q, %.10q, %v) accepted", tc.name, tc.holder, tc.lease)
			}
		}
	})

	t.Run("Race", func(t *testing.T) {
		// 16 nodes race for a free lock, then for it once expired: exactly
		// one gets it each time.
		for round, at := range []time.Time{now, now.Add(time.Hour)} {
			var mu sync.Mutex
			var winners []string
			var wg sync.WaitGroup
			for i := range 16 {
				holder := fmt.Sprintf("race-%d-%d", round, i)
				wg.Go(func() {
					ok, err := s.Lock(ctx, "race", holder, at, time.Minute)
					if err != nil {
						t.Errorf("Lock: %v", err)
						return
					}
					if ok {
						mu.Lock()
						winners = append(winners, holder)
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			if len(winners) != 1 {
				t.Errorf("round %d: %d holders got the lock (%v), want 1", round, len(winners), winners)
			}
		}
	})
}
