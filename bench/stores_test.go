package bench

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pullmail/pullmail/meta/postgres/pgtest"
	"github.com/pullmail/pullmail/resource/bucket"
	"github.com/pullmail/pullmail/resource/s3store"
	"github.com/pullmail/pullmail/resource/s3store/s3test"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestStoresRun: with Meta and Resources the run measures Pullmail on
// PostgreSQL and S3 beside SQLite and files (workloads 1 and 4, and 4 on
// two nodes per domain), names every node and the store servers in peak
// RSS, and leaves neither a database nor an object behind.
func TestStoresRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts servers")
	}
	pg := pgtest.URL(t)
	s3 := s3test.Start(t)
	t.Setenv("AWS_ACCESS_KEY_ID", s3.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3.SecretKey)
	dir := t.TempDir()
	bin := filepath.Join(dir, "pullmail")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/pullmail").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	sz := Sizes{Large: []int64{1 << 20}, FanoutDomains: 1, FanoutPerDomain: 2, Small: 20, Senders: []int{2}}
	var progress strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res := s3.URL()
	r, err := Run(ctx, Options{Binary: bin, Quick: true, TempDir: dir, Progress: &progress, Sizes: &sz, Meta: pg, Resources: res})
	if err != nil {
		t.Fatalf("%v\nprogress:\n%s", err, progress.String())
	}
	sys := func(rs []Result) map[string]Result {
		m := map[string]Result{}
		for _, x := range rs {
			m[x.System] = x
		}
		return m
	}
	w1 := sys(r.Large[0].Results)
	for _, name := range []string{"pullmail", "pullmail-pg"} {
		if x, ok := w1[name]; !ok || x.Delivered != 1 || x.Refused != "" {
			t.Errorf("workload 1 on %s: %+v", name, x)
		}
	}
	if rss := w1["pullmail-pg"].PeakRSS; rss["postgres"] == 0 || rss["s3"] == 0 || rss["d1.test"] == 0 {
		t.Errorf("pullmail-pg's peak RSS lacks a node or a store server: %v", rss)
	}
	small := map[string]SmallResult{}
	for _, x := range r.Small[0].Results {
		small[x.System] = x
	}
	for _, name := range []string{"pullmail", "pullmail-pg", "pullmail-pg-2nodes"} {
		if x, ok := small[name]; !ok || x.Delivered != sz.Small || x.Refused != "" || x.PerSecond <= 0 {
			t.Errorf("workload 4 on %s: %+v", name, x)
		}
	}
	if rss := small["pullmail-pg-2nodes"].PeakRSS; rss["a.test/n2"] == 0 || rss["d1.test/n2"] == 0 {
		t.Errorf("the second nodes are not in peak RSS: %v", rss)
	}
	var md strings.Builder
	r.Markdown(&md, "pullmail bench --meta postgres://… --resources s3://…")
	if !strings.Contains(md.String(), "PostgreSQL and S3 against SQLite and files") || strings.Contains(md.String(), s3.SecretKey) {
		t.Errorf("markdown:\n%s", md.String())
	}

	// Nothing left: the run's databases dropped, its objects deleted.
	conn, err := pgx.Connect(ctx, pg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname LIKE 'pullmail_bench_%'").Scan(&n); err != nil || n != 0 {
		t.Errorf("%d databases of the run left (%v)", n, err)
	}
	cfg, err := s3store.ParseURL(res)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s3store.NewBucket(ctx, cfg, s3.Options())
	if err != nil {
		t.Fatal(err)
	}
	objects := 0
	if err := b.List(ctx, func(string, bucket.Attrs) error { objects++; return nil }); err != nil || objects != 0 {
		t.Errorf("%d objects of the run left (%v)", objects, err)
	}
}
