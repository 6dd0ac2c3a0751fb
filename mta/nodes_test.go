package mta_test

import (
	"bytes"
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/pullmail/pullmail/federation"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/mta"
	"github.com/pullmail/pullmail/resource"
)

// node makes one more MTA of b.test on its stores, as another
// `pullmail serve --node NAME` of the domain sharing its database and
// resource store.
func (w *world) node(name string, cfg mta.Config) *mta.MTA {
	cfg.Node = name
	return w.mk(w.b, "https://b.test.invalid", cfg)
}

// waitFor polls cond every 5 ms for up to a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// running starts m.Run until the test ends, kicking it every 10 ms.
func running(t *testing.T, m *mta.MTA) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { m.Run(ctx) })
	wg.Go(func() {
		for ctx.Err() == nil {
			m.Kick()
			time.Sleep(10 * time.Millisecond)
		}
	})
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// pullResource is the one resource of b.test's only pull job.
func pullResource(t *testing.T, w *world) resource.ID {
	t.Helper()
	js := jobs(t, w.b.Meta, mta.JobPull)
	if len(js) != 1 {
		t.Fatalf("%d pull jobs, want 1", len(js))
	}
	var p federation.PullPayload
	if err := json.Unmarshal(js[0].Payload, &p); err != nil || len(p.Resources) != 1 {
		t.Fatalf("pull payload: %v, %d resources", err, len(p.Resources))
	}
	return p.Resources[0].ID
}

// TestTwoNodesPullOnce: two nodes of b.test each claim one of two pull
// jobs that want the same resource, at the same time. The database's lock
// on the digest makes the second wait for the first, which fetches it;
// the second finds it stored: the origin serves the bytes once.
func TestTwoNodesPullOnce(t *testing.T) {
	w := newWorld(t, mta.Config{})
	ctx := context.Background()
	data := bytes.Repeat([]byte("one attachment, two nodes "), 40000)
	w.send(t, data, []string{"bob@b.test"})
	w.send(t, data, []string{"bob@b.test"})
	w.mtaA.RunDue(ctx)
	if n := len(jobs(t, w.b.Meta, mta.JobPull)); n != 2 {
		t.Fatalf("%d pull jobs, want 2", n)
	}
	cfg := mta.Config{Batch: 1, Poll: 20 * time.Millisecond}
	b1, b2 := w.node("b1", cfg), w.node("b2", cfg)
	pz := newPause(64 << 10)
	w.aPause.Store(pz)
	w.aGate.Store(0) // every fetch counts one below zero

	var wg sync.WaitGroup
	wg.Go(func() { b1.RunDue(ctx) })
	<-pz.reached // b1 is fetching, held mid-body
	wg.Go(func() { b2.RunDue(ctx) })
	waitFor(t, "b2 to claim the other job", func() bool {
		for _, j := range jobs(t, w.b.Meta, mta.JobPull) {
			if j.State == meta.JobRunning && j.Holder == "b2" {
				return true
			}
		}
		return false
	})
	time.Sleep(200 * time.Millisecond) // ten of b2's polls of the lock
	if fetches := -w.aGate.Load(); fetches != 1 {
		t.Errorf("%d fetches while b1 held the digest's lock, want 1", fetches)
	}
	close(pz.release)
	w.aPause.Store(nil)
	wg.Wait()

	holders := map[string]bool{}
	for _, j := range jobs(t, w.b.Meta, mta.JobPull) {
		if j.State != meta.JobDone || j.Attempts != 1 {
			t.Errorf("pull job: %s", show(j))
		}
		holders[j.Holder] = true
	}
	if !holders["b1"] || !holders["b2"] {
		t.Errorf("the jobs were run by %v, want b1 and b2", holders)
	}
	if fetches := -w.aGate.Load(); fetches != 1 {
		t.Errorf("the origin served the resource %d times, want 1", fetches)
	}
	if served := w.aServed.Load(); served != int64(len(data)) {
		t.Errorf("the origin served %d bytes, want %d", served, len(data))
	}
	for _, m := range inbox(t, w.b, "bob@b.test") {
		if m.Status != meta.StatusComplete {
			t.Errorf("bob's copy %s: %s", m.ID, m.Status)
		}
	}
}

// TestDeadNodeTakenOver: node b1 died mid-pull (kill -9), holding the pull
// job's lease and the digest's lock. Node b2, starting up, leaves them
// alone (they are not its own); when the job's lease ends it claims the
// job, waits for the lock's lease to end too, and completes the pull,
// exactly once.
func TestDeadNodeTakenOver(t *testing.T) {
	w := newWorld(t, mta.Config{})
	ctx := context.Background()
	data := bytes.Repeat([]byte("taken over "), 50000)
	w.send(t, data, []string{"bob@b.test"})
	w.mtaA.RunDue(ctx)
	id := pullResource(t, w)

	const jobLease, lockLease = 400 * time.Millisecond, 800 * time.Millisecond
	died := time.Now()
	js, err := w.b.Meta.ClaimJobs(ctx, "b1", mta.JobPull, died, 1, jobLease)
	if err != nil || len(js) != 1 {
		t.Fatalf("b1's claim: %v, %v", js, err)
	}
	if ok, err := w.b.Meta.Lock(ctx, "pull:"+string(id), "b1", died, lockLease); err != nil || !ok {
		t.Fatalf("b1's lock: %v, %v", ok, err)
	}

	b2 := w.node("b2", mta.Config{Lease: jobLease, Poll: 20 * time.Millisecond})
	stop := running(t, b2)
	time.Sleep(jobLease / 2)
	if j := jobs(t, w.b.Meta, mta.JobPull)[0]; j.State != meta.JobRunning || j.Holder != "b1" || j.Attempts != 1 {
		t.Fatalf("b2 took b1's job within its lease: %s holder %s", show(j), j.Holder)
	}
	var done time.Time
	waitFor(t, "b2 to finish the pull", func() bool {
		j := jobs(t, w.b.Meta, mta.JobPull)[0]
		if j.State == meta.JobDone {
			done = time.Now()
			return true
		}
		return false
	})
	stop()
	j := jobs(t, w.b.Meta, mta.JobPull)[0]
	if j.Holder != "b2" || j.Attempts != 2 {
		t.Errorf("pull job: %s holder %s, want done by b2 at attempt 2", show(j), j.Holder)
	}
	if since := done.Sub(died); since < lockLease {
		t.Errorf("b2 pulled %v after b1 died, within the lease of b1's lock (%v)", since, lockLease)
	}
	if served := w.aServed.Load(); served != int64(len(data)) {
		t.Errorf("the origin served %d bytes, want %d once", served, len(data))
	}
	if in := inbox(t, w.b, "bob@b.test"); len(in) != 1 || in[0].Status != meta.StatusComplete {
		t.Errorf("bob's copy: %+v", in)
	}
	// b2 released the lock when it was done: b1, back, may take it.
	if ok, err := w.b.Meta.Lock(ctx, "pull:"+string(id), "b1", time.Now(), time.Minute); err != nil || !ok {
		t.Errorf("the digest's lock after the pull: %v, %v; want free", ok, err)
	}
}

// TestLongPullKeepsItsLease: a pull that lasts four leases (the origin
// holds the body) keeps its job, renewed by its node, while another node
// asks for due jobs all along; it completes at its first attempt.
func TestLongPullKeepsItsLease(t *testing.T) {
	w := newWorld(t, mta.Config{})
	ctx := context.Background()
	data := bytes.Repeat([]byte("a long pull "), 50000)
	w.send(t, data, []string{"bob@b.test"})
	w.mtaA.RunDue(ctx)

	const lease = 300 * time.Millisecond
	cfg := mta.Config{Lease: lease, Poll: 20 * time.Millisecond}
	b1, b2 := w.node("b1", cfg), w.node("b2", cfg)
	pz := newPause(64 << 10)
	w.aPause.Store(pz)
	running(t, b1)
	<-pz.reached
	running(t, b2)
	for deadline := time.Now().Add(4 * lease); time.Now().Before(deadline); time.Sleep(lease / 10) {
		if j := jobs(t, w.b.Meta, mta.JobPull)[0]; j.State != meta.JobRunning || j.Holder != "b1" || j.Attempts != 1 {
			t.Fatalf("during b1's long pull: %s holder %s", show(j), j.Holder)
		}
	}
	close(pz.release)
	w.aPause.Store(nil)
	waitFor(t, "the pull to finish", func() bool { return jobs(t, w.b.Meta, mta.JobPull)[0].State != meta.JobRunning })
	if j := jobs(t, w.b.Meta, mta.JobPull)[0]; j.State != meta.JobDone || j.Holder != "b1" || j.Attempts != 1 {
		t.Errorf("pull job: %s holder %s, want done by b1 at attempt 1", show(j), j.Holder)
	}
	if served := w.aServed.Load(); served != int64(len(data)) {
		t.Errorf("the origin served %d bytes, want %d once", served, len(data))
	}
}
