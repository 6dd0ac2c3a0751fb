package sqlite

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pullmail/pullmail/meta"
)

// TestJobsQueryPlan checks that ClaimJobs's selection and PruneJobs walk
// their indexes rather than the table: the queue keeps finished jobs for
// days, and a scan per claim would grow with them.
func TestJobsQueryPlan(t *testing.T) {
	s, _ := openTemp(t)
	defer s.Close()
	for _, tc := range []struct {
		query string
		index string
	}{
		{`SELECT id FROM jobs WHERE kind = ?1 AND state IN ('queued', 'running') AND next_try <= ?2
			ORDER BY next_try, id LIMIT ?3`, "jobs_claim"},
		{`DELETE FROM jobs WHERE state IN ('done', 'failed') AND updated < ?`, "jobs_finished"},
		{`SELECT id FROM jobs WHERE kind = ? ORDER BY created DESC, id DESC LIMIT ?`, "jobs_list"},
		{`SELECT count(*) FROM jobs WHERE kind = ? AND state IN ('queued', 'running')
			AND substr(CAST(key AS BLOB), 1, ?) = CAST(? AS BLOB)`, "jobs_claim"},
	} {
		rows, err := s.rdb.QueryContext(t.Context(), `EXPLAIN QUERY PLAN `+tc.query, "push", 1, 1)
		if err != nil {
			t.Fatalf("explain %s: %v", tc.query, err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		if p := strings.Join(plan, "; "); !strings.Contains(p, "INDEX "+tc.index) {
			t.Errorf("plan of %q does not use %s: %s", tc.query, tc.index, p)
		}
	}
}

// TestCountJobs: the depth of a queue counts the queued and running jobs
// of the kind whose key has the prefix, and nothing finished; the prefix is
// bytes, not a pattern.
func TestCountJobs(t *testing.T) {
	s, _ := openTemp(t)
	defer s.Close()
	ctx := t.Context()
	err := s.Update(ctx, func(tx meta.Tx) error {
		for _, j := range []meta.Job{
			{Kind: "push", Key: "push:1", State: meta.JobQueued},
			{Kind: "push", Key: "push:2", State: meta.JobRunning},
			{Kind: "push", Key: "push:3", State: meta.JobDone},
			{Kind: "push", Key: "push:4", State: meta.JobFailed},
			{Kind: "push", Key: "forward:1", State: meta.JobQueued},
			{Kind: "push", Key: "p%sh:1", State: meta.JobQueued},
			{Kind: "pull", Key: "pull:1", State: meta.JobQueued},
			{Kind: "pull", Key: "pull:é", State: meta.JobRunning},
		} {
			if _, err := tx.AddJob(ctx, j); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		kind, prefix string
		want         int
	}{
		{"push", "", 4},
		{"push", "push:", 2},
		{"push", "forward:", 1},
		{"push", "p%", 1},
		{"push", "p_sh:", 0},
		{"pull", "", 2},
		{"pull", "pull:é", 1},
		{"pull", "pull:\xc3", 1},
		{"other", "", 0},
	} {
		n, err := s.CountJobs(ctx, tc.kind, tc.prefix)
		if err != nil || n != tc.want {
			t.Errorf("CountJobs(%q, %q) = %d, %v; want %d", tc.kind, tc.prefix, n, err, tc.want)
		}
	}
}

// BenchmarkClaimJobs measures claim+complete cycles: a worker claims a batch
// of due jobs (one write transaction), then marks each done and queues a new
// job in their place (another), so the queue stays at a steady size over a
// backlog of finished jobs, as a busy outbound queue would.
func BenchmarkClaimJobs(b *testing.B) {
	const queued, finished = 1000, 20000
	for _, mode := range []string{"FULL", "NORMAL"} {
		for _, batch := range []int{1, 16} {
			b.Run(fmt.Sprintf("synchronous=%s/batch=%d", mode, batch), func(b *testing.B) {
				ctx := b.Context()
				s, err := open(ctx, filepath.Join(b.TempDir(), "meta.db"), options{synchronous: mode})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				payload := []byte(`{"message":"0123456789abcdef","domain":"b.example","copy":0}`)
				past := time.Now().Add(-time.Hour)
				next := 0
				err = s.Update(ctx, func(tx meta.Tx) error {
					for i := range finished {
						_, err := tx.AddJob(ctx, meta.Job{Kind: "push", Key: fmt.Sprint("done:", i), Payload: payload,
							State: meta.JobDone, NextTry: past, Created: past, Updated: past})
						if err != nil {
							return err
						}
					}
					for ; next < queued; next++ {
						_, err := tx.AddJob(ctx, meta.Job{Kind: "push", Key: fmt.Sprint("push:", next), Payload: payload})
						if err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
				cycles := 0
				for b.Loop() {
					js, err := s.ClaimJobs(ctx, "bench", "push", time.Now(), batch, time.Minute)
					if err != nil {
						b.Fatal(err)
					}
					if len(js) != batch {
						b.Fatalf("claimed %d jobs, want %d", len(js), batch)
					}
					err = s.Update(ctx, func(tx meta.Tx) error {
						for _, j := range js {
							j.State, j.Updated = meta.JobDone, time.Time{}
							if err := tx.UpdateJob(ctx, j); err != nil {
								return err
							}
							if _, err := tx.AddJob(ctx, meta.Job{Kind: "push", Key: fmt.Sprint("push:", next), Payload: payload}); err != nil {
								return err
							}
							next++
						}
						return nil
					})
					if err != nil {
						b.Fatal(err)
					}
					cycles += len(js)
				}
				b.ReportMetric(float64(cycles)/b.Elapsed().Seconds(), "jobs/s")
			})
		}
	}
}
