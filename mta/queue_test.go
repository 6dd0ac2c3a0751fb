package mta_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/mta"
	"github.com/pullmail/pullmail/upload"
)

// untilComplete runs m (its Run, as a server does) until bob's one copy at
// b.test is complete, kicking it since its poll is an hour; it fails the
// test when that takes a thousand rounds.
func untilComplete(t *testing.T, w *world, m *mta.MTA) meta.Message {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { m.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()
	for i := 0; ; i++ {
		m.Kick()
		in := inbox(t, w.b, "bob@b.test")
		if len(in) == 1 && in[0].Status != meta.StatusFetching {
			return in[0]
		}
		if i == 1000 {
			t.Fatalf("not pulled: %+v; jobs %v", in, jobs(t, w.b.Meta, mta.JobPull))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stagedWorld is a world whose b.test stages its pulls of 64 KiB and more
// in dir, with a 6 MiB message from alice pushed to bob.
func stagedWorld(t *testing.T) (w *world, restart func() *mta.MTA, data []byte, sent meta.Message, dir string) {
	dir = t.TempDir()
	w = newWorld(t, mta.Config{Poll: time.Hour})
	restart = func() *mta.MTA {
		st, err := upload.NewFS(dir)
		if err != nil {
			t.Fatal(err)
		}
		return w.restartB(mta.Config{Poll: time.Hour, StageAbove: 64 << 10, Staging: st})
	}
	data = make([]byte, 6<<20)
	for i := range data {
		data[i] = byte(i*31 + i>>12)
	}
	sent = w.send(t, data, []string{"bob@b.test"})
	w.mtaA.RunDue(context.Background())
	return w, restart, data, sent, dir
}

// stopMidPull runs m until a.test's Origin has served 2 MiB of the pull
// and some of them have reached the staging directory dir, then stops it as
// a server's clean shutdown does (its context ends). It returns how many
// bytes the Origin served. (Stopping as soon as the Origin paused raced the
// MTA's first write: bytes still in the socket were lost with the stop, and
// the next run rightly started from 0.)
func stopMidPull(t *testing.T, w *world, m *mta.MTA, dir string) int64 {
	t.Helper()
	pz := newPause(2 << 20)
	w.aPause.Store(pz)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { m.Run(ctx) })
	select {
	case <-pz.reached:
	case <-time.After(time.Minute):
		t.Fatal("the pull did not start")
	}
	for deadline := time.Now().Add(time.Minute); stagedBytes(t, dir) == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("nothing of the pull reached the staging directory")
		}
	}
	stop()
	wg.Wait()
	close(pz.release)
	w.aPause.Store(nil)
	if j := jobs(t, w.b.Meta, mta.JobPull)[0]; j.State != meta.JobRunning || j.Attempts != 1 {
		t.Fatalf("pull job after the stop: %s", show(j))
	}
	return w.aServed.Swap(0)
}

// stagedBytes is the size of the staged data files in dir.
func stagedBytes(t *testing.T, dir string) int64 {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.data"))
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// TestPullResumesAfterRestart: b.test's MTA is stopped cleanly in the
// middle of a large pull and started again on the same data directory: the
// pull goes on with Range from the bytes staged, the origin serves only the
// remainder, and the stored resource is whole.
func TestPullResumesAfterRestart(t *testing.T) {
	w, restart, data, sent, dir := stagedWorld(t)
	first := stopMidPull(t, w, restart(), dir)
	if in := untilComplete(t, w, restart()); in.Status != meta.StatusComplete {
		t.Fatalf("bob's copy: %+v", in)
	}
	rg, _ := w.aRanges.Load().(string)
	var at int64
	if _, err := fmt.Sscanf(rg, "bytes=%d-", &at); err != nil || at <= 0 || at > first {
		t.Fatalf("the second run asked for %q (the first was served %d bytes)", rg, first)
	}
	if got, want := w.aServed.Load(), int64(len(data))-at; got != want {
		t.Fatalf("the origin served %d bytes after the restart, want the %d from byte %d on", got, want, at)
	}
	if !bytes.Equal(read(t, w.b.Store, sent.Refs[0].ID), data) {
		t.Fatal("the resumed resource differs")
	}
	if j := jobs(t, w.b.Meta, mta.JobPull)[0]; j.State != meta.JobDone || j.Attempts != 2 {
		t.Fatalf("pull job: %s", show(j))
	}
}

// TestPullStartsOver: staged bytes the origin will not resume from (it
// answers the Range with the whole resource, or with 416) are dropped, and
// the pull starts again from byte 0 in the same attempt.
func TestPullStartsOver(t *testing.T) {
	for _, status := range []int32{200, 416} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			w, restart, data, sent, dir := stagedWorld(t)
			stopMidPull(t, w, restart(), dir)
			w.aRangeAnswer.Store(status)
			if in := untilComplete(t, w, restart()); in.Status != meta.StatusComplete {
				t.Fatalf("bob's copy: %+v", in)
			}
			if got := w.aServed.Load(); got != int64(len(data)) {
				t.Fatalf("the origin served %d bytes after the restart, want all %d", got, len(data))
			}
			if !bytes.Equal(read(t, w.b.Store, sent.Refs[0].ID), data) {
				t.Fatal("the pulled resource differs")
			}
			if j := jobs(t, w.b.Meta, mta.JobPull)[0]; j.State != meta.JobDone || j.Attempts != 2 {
				t.Fatalf("pull job: %s", show(j))
			}
		})
	}
}

// TestWakeDomain: while b.test is down, each queued push waits out its own
// retry delay (an hour here); once one push to b.test succeeds, the others
// to it are due at once and delivered in the same run, also after a
// restart of a.test's MTA (which finds the waiting jobs in the store).
func TestWakeDomain(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(fmt.Sprintf("restart=%v", restart), func(t *testing.T) {
			cfg := mta.Config{Backoff: func(int) time.Duration { return time.Hour }}
			w := newWorld(t, cfg)
			ctx := context.Background()
			w.bGate.Store(3)
			for i := range 3 {
				w.send(t, []byte(fmt.Sprint("queued ", i)), []string{"bob@b.test"})
			}
			w.mtaA.RunDue(ctx)
			for _, j := range jobs(t, w.a.Meta, mta.JobPush) {
				if j.State != meta.JobQueued || j.NextTry.Before(time.Now().Add(50*time.Minute)) {
					t.Fatalf("push while b.test is down: %s", show(j))
				}
			}
			if restart {
				w.restartA(cfg)
			}
			// b.test is back: a new message goes through, and wakes the others.
			w.send(t, []byte("the fourth"), []string{"bob@b.test"})
			w.mtaA.RunDue(ctx)
			for _, j := range jobs(t, w.a.Meta, mta.JobPush) {
				if j.State != meta.JobDone {
					t.Fatalf("push after b.test came back: %s", show(j))
				}
			}
			if n := len(inbox(t, w.b, "bob@b.test")); n != 4 {
				t.Fatalf("bob has %d messages, want 4", n)
			}
		})
	}
}

// clock is a settable clock for Config.Clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// TestRetryHorizon: a push that keeps failing (b.test answers 503) does not
// give up before its horizon, 40 s after it was queued, even when the next
// backoff would pass it: the last retry is moved to the horizon, and gives
// up only when it fails there (docs/PROTOCOL.md §11.4). The clock stays
// within a minute of the real one, which the servers check proofs against.
func TestRetryHorizon(t *testing.T) {
	t0 := time.Now().Add(-20 * time.Second).Truncate(time.Second)
	clk := &clock{t: t0}
	w := newWorld(t, mta.Config{Clock: clk.Now, Horizon: 40 * time.Second, Backoff: func(int) time.Duration { return 30 * time.Second }})
	w.bGate.Store(1000)
	w.send(t, []byte("x"), []string{"bob@b.test"})
	for _, step := range []struct {
		at       time.Duration // since the send
		state    meta.JobState
		attempts int
		next     time.Duration // the next try, since the send
	}{
		{0, meta.JobQueued, 1, 30 * time.Second},
		{29 * time.Second, meta.JobQueued, 1, 30 * time.Second},                      // not due
		{30 * time.Second, meta.JobQueued, 2, 40 * time.Second},                      // 60 s would pass the horizon
		{39*time.Second + 999*time.Millisecond, meta.JobQueued, 2, 40 * time.Second}, // not due
		{40 * time.Second, meta.JobFailed, 3, 0},                                     // failed at the horizon
	} {
		clk.Set(t0.Add(step.at))
		w.mtaA.RunDue(context.Background())
		j := jobs(t, w.a.Meta, mta.JobPush)[0]
		if j.State != step.state || j.Attempts != step.attempts || (step.next > 0 && !j.NextTry.Equal(t0.Add(step.next))) {
			t.Fatalf("at %v: %s, want %s after %d attempts, next at %v", step.at, show(j), step.state, step.attempts, step.next)
		}
		if n := len(inbox(t, w.a, "alice@a.test")); (n == 1) != (step.state == meta.JobFailed) {
			t.Fatalf("at %v: alice has %d notices", step.at, n)
		}
	}
}

// TestPullFailures: what the origin answers decides whether a pull gives
// up at once (a permanent refusal: the resource is not found, gone,
// refused) or is retried (5xx, 408, 429, 401: the next attempt may heal),
// and a pull that gives up tells the recipient why in status_reason, with a
// stable code first.
func TestPullFailures(t *testing.T) {
	for _, tc := range []struct {
		status int
		code   string
		state  meta.JobState
		reason string // status_reason's start
	}{
		{404, "not_found", meta.JobFailed, "refused: a.test refused to serve this message's content"},
		{410, "gone", meta.JobFailed, "refused: a.test refused"},
		{403, "forbidden", meta.JobFailed, "refused: a.test refused"},
		{400, "invalid_request", meta.JobFailed, "refused: a.test refused"},
		{401, "invalid_token", meta.JobQueued, ""},
		{408, "timeout", meta.JobQueued, ""},
		{429, "slow_down", meta.JobQueued, ""},
		{500, "internal", meta.JobQueued, ""},
		{502, "bad_gateway", meta.JobQueued, ""},
		{503, "temporarily_unavailable", meta.JobQueued, ""},
		{507, "insufficient_storage", meta.JobQueued, ""},
	} {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			cfg := mta.Config{Backoff: func(int) time.Duration { return time.Hour }}
			w := newWorld(t, cfg)
			reg := prometheus.NewRegistry()
			cfg.Metrics = reg
			w.restartB(cfg)
			ctx := context.Background()
			w.send(t, []byte("the attachment"), []string{"bob@b.test"})
			w.mtaA.RunDue(ctx)
			w.aAnswer.Store(&answer{tc.status, tc.code})
			w.mtaB.RunDue(ctx)
			j := jobs(t, w.b.Meta, mta.JobPull)[0]
			if j.State != tc.state || j.Attempts != 1 {
				t.Fatalf("pull job: %s", show(j))
			}
			in := inbox(t, w.b, "bob@b.test")[0]
			switch tc.state {
			case meta.JobFailed:
				if in.Status != meta.StatusFailed || !strings.HasPrefix(in.StatusReason, tc.reason) ||
					!strings.Contains(in.StatusReason, fmt.Sprint(tc.status, " ", tc.code)) {
					t.Fatalf("bob's copy: %s %q", in.Status, in.StatusReason)
				}
				if n := metric(t, reg, "pullmail_mta_failures_total", "kind", "pull", "reason", mta.ReasonRefused); n != 1 {
					t.Fatalf("pullmail_mta_failures_total{kind=pull,reason=refused} = %v", n)
				}
			case meta.JobQueued:
				if in.Status != meta.StatusFetching || in.StatusReason != "" {
					t.Fatalf("bob's copy: %s %q", in.Status, in.StatusReason)
				}
			}
		})
	}
}

// TestPullGivesUpAtHorizon: a pull still failing at its horizon fails the
// copies with the code "horizon" and the last error in words.
func TestPullGivesUpAtHorizon(t *testing.T) {
	clk := &clock{t: time.Now()}
	w := newWorld(t, mta.Config{Clock: clk.Now})
	ctx := context.Background()
	w.send(t, []byte("the attachment"), []string{"bob@b.test"})
	w.mtaA.RunDue(ctx)
	j := jobs(t, w.b.Meta, mta.JobPull)[0]
	w.aAnswer.Store(&answer{503, "temporarily_unavailable"})
	// Just before the horizon the pull waits; at it, it gives up. The
	// clock is moved by restarting b.test's MTA with the later time.
	for _, tc := range []struct {
		at    time.Time
		state meta.JobState
	}{
		{j.Expires.Add(-time.Second), meta.JobQueued},
		{j.Expires, meta.JobFailed},
	} {
		clk.Set(tc.at)
		// The proofs this clock signs are far from the servers' time; the
		// pull fails for that or for the 503, temporary either way.
		w.mtaB.RunDue(ctx)
		if j := jobs(t, w.b.Meta, mta.JobPull)[0]; j.State != tc.state {
			t.Fatalf("at %v: %s", tc.at, show(j))
		}
	}
	in := inbox(t, w.b, "bob@b.test")[0]
	if in.Status != meta.StatusFailed || !strings.HasPrefix(in.StatusReason, "horizon: this message's content could not be fetched from a.test for 5 days") {
		t.Fatalf("bob's copy: %s %q", in.Status, in.StatusReason)
	}
}

// metric is the value of the metric in reg with the name and labels
// (name, value pairs); 0 when there is none.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue next
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// TestMetrics: the queue depth by kind comes from the store, a retry and a
// give-up are counted by kind (and reason), and a pull that cannot stage
// its bytes counts a storage error and is retried.
func TestMetrics(t *testing.T) {
	cfg := mta.Config{Backoff: func(int) time.Duration { return time.Hour }}
	w := newWorld(t, cfg)
	ctx := context.Background()
	regA, regB := prometheus.NewRegistry(), prometheus.NewRegistry()
	cfg.Metrics = regA
	w.restartA(cfg)
	w.bGate.Store(1)
	w.send(t, []byte("retried"), []string{"bob@b.test"})
	depth := func(reg *prometheus.Registry, kind string) float64 {
		return metric(t, reg, "pullmail_mta_queue_depth", "kind", kind)
	}
	if push, fwd := depth(regA, "push"), depth(regA, "forward"); push != 1 || fwd != 0 {
		t.Fatalf("queue depth before the run: push %v, forward %v", push, fwd)
	}
	w.mtaA.RunDue(ctx) // 503
	if got := metric(t, regA, "pullmail_mta_retries_total", "kind", "push"); got != 1 {
		t.Fatalf("retries: %v", got)
	}
	w.send(t, []byte("refused"), []string{"nobody@b.test"})
	w.mtaA.RunDue(ctx) // unknown_recipient
	if got := metric(t, regA, "pullmail_mta_failures_total", "kind", "push", "reason", mta.ReasonRefused); got != 1 {
		t.Fatalf("refused pushes: %v", got)
	}
	if got := depth(regA, "push"); got != 1 {
		t.Fatalf("queue depth after the runs: %v", got)
	}

	// b.test stages its pulls in a directory that is gone.
	gone := filepath.Join(t.TempDir(), "pulls")
	st, err := upload.NewFS(gone)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(gone); err != nil {
		t.Fatal(err)
	}
	w.restartB(mta.Config{Backoff: cfg.Backoff, Metrics: regB, Staging: st, StageAbove: 1})
	w.send(t, []byte("to stage"), []string{"bob@b.test"})
	w.mtaA.RunDue(ctx) // and its success wakes the push that waited
	if got := depth(regB, "pull"); got != 2 {
		t.Fatalf("pull queue depth: %v", got)
	}
	w.mtaB.RunDue(ctx)
	if got := metric(t, regB, "pullmail_mta_storage_errors_total"); got != 2 {
		t.Fatalf("storage errors: %v", got)
	}
	for _, j := range jobs(t, w.b.Meta, mta.JobPull) {
		if j.State != meta.JobQueued || !strings.Contains(j.LastError, "staging") {
			t.Fatalf("pull job: %s", show(j))
		}
	}
}
