package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pullmail/pullmail/resource/bucket"
	"github.com/pullmail/pullmail/resource/s3store"
	"github.com/pullmail/pullmail/sandbox"
)

// Issue 14's figures: the same workloads on Pullmail domains whose stores
// are PostgreSQL and S3 (--meta and --resources), beside SQLite and files
// in the same run. Each domain gets a database of its own, made on the
// server --meta names (the role needs CREATEDB) and dropped at the end, and
// a prefix of its own under --resources, emptied at the end.

// sharedStores makes the per-domain stores of one run.
type sharedStores struct {
	meta      *url.URL // the server; each domain's database replaces the path
	resources *url.URL // each domain's prefix goes under its path
	run       string
	dbs       []string
	prefixes  []string
}

func newSharedStores(metaURL, resourcesURL string) (*sharedStores, error) {
	m, err := url.Parse(metaURL)
	if err != nil || m.Scheme != "postgres" && m.Scheme != "postgresql" {
		return nil, fmt.Errorf("--meta: a postgres:// URL, not %q", metaURL)
	}
	r, err := url.Parse(resourcesURL)
	if err != nil || r.Scheme != "s3" {
		return nil, fmt.Errorf("--resources: an s3:// URL, not %q", resourcesURL)
	}
	if os.Getenv("AWS_ACCESS_KEY_ID") == "" || os.Getenv("AWS_SECRET_ACCESS_KEY") == "" {
		return nil, errors.New("--resources: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	}
	return &sharedStores{meta: m, resources: r, run: strconv.FormatInt(time.Now().UnixNano()%1e9, 36)}, nil
}

// forDomain creates the domain's database and returns its stores.
func (s *sharedStores) forDomain(ctx context.Context, system, domain string) (sandbox.Backends, error) {
	db := "pullmail_bench_" + s.run + "_" + strings.NewReplacer(".", "_", "-", "_").Replace(system+"_"+domain)
	conn, err := pgx.Connect(ctx, s.meta.String())
	if err != nil {
		return sandbox.Backends{}, fmt.Errorf("--meta: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()); err != nil {
		return sandbox.Backends{}, fmt.Errorf("--meta: creating the database of %s: %w", domain, err)
	}
	s.dbs = append(s.dbs, db)
	m := *s.meta
	m.Path = "/" + db
	r := *s.resources
	prefix := strings.TrimSuffix(r.Path, "/") + "/pullmail-bench-" + s.run + "/" + system + "/" + domain
	r.Path = prefix
	s.prefixes = append(s.prefixes, r.String())
	return sandbox.Backends{Meta: m.String(), Resources: r.String()}, nil
}

// close drops the databases and empties the prefixes.
func (s *sharedStores) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var errs []error
	if conn, err := pgx.Connect(ctx, s.meta.String()); err != nil {
		errs = append(errs, err)
	} else {
		for _, db := range s.dbs {
			if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{db}.Sanitize()+" WITH (FORCE)"); err != nil {
				errs = append(errs, err)
			}
		}
		conn.Close(ctx)
	}
	for _, p := range s.prefixes {
		errs = append(errs, emptyPrefix(ctx, p))
	}
	return errors.Join(errs...)
}

// emptyPrefix deletes every object under the resources URL.
func emptyPrefix(ctx context.Context, raw string) error {
	cfg, err := s3store.ParseURL(raw)
	if err != nil {
		return err
	}
	b, err := s3store.NewBucket(ctx, cfg, s3store.Options{AccessKeyID: os.Getenv("AWS_ACCESS_KEY_ID"),
		SecretAccessKey: os.Getenv("AWS_SECRET_ACCESS_KEY")})
	if err != nil {
		return err
	}
	var names []string
	if err := b.List(ctx, func(name string, _ bucket.Attrs) error { names = append(names, name); return nil }); err != nil {
		return err
	}
	for _, n := range names {
		if err := b.Delete(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

// storeServers are the processes of PostgreSQL and of the S3 server when
// they run on this machine: the ones listening on the ports the URLs name,
// and (PostgreSQL) their children, a backend per connection. Their peak
// RSS goes beside the nodes'.
func (s *sharedStores) servers() map[string]int {
	out := map[string]int{}
	for name, u := range map[string]*url.URL{"postgres": s.meta, "s3": s3Endpoint(s.resources)} {
		if u == nil {
			continue
		}
		port := u.Port()
		if port == "" {
			port = map[string]string{"postgres": "5432", "postgresql": "5432", "http": "80", "https": "443"}[u.Scheme]
		}
		p, _ := strconv.Atoi(port)
		pid := listeningPid(p)
		if pid == 0 {
			continue
		}
		out[name] = pid
		if name == "postgres" {
			for i, c := range childPids(pid) {
				out["postgres."+strconv.Itoa(i+1)] = c
			}
		}
	}
	return out
}

func s3Endpoint(r *url.URL) *url.URL {
	e, err := url.Parse(r.Query().Get("endpoint"))
	if err != nil || e.Host == "" {
		return nil
	}
	return e
}

// listeningPid is the process with a socket listening on TCP port of
// this machine (/proc/net/tcp{,6} and every process's fds), 0 if none is
// found (or not ours to see).
func listeningPid(port int) int {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) < 10 || fs[3] != "0A" { // LISTEN
				continue
			}
			_, hexPort, ok := strings.Cut(fs[1], ":")
			if p, err := strconv.ParseInt(hexPort, 16, 32); ok && err == nil && int(p) == port {
				inodes[fs[9]] = true
			}
		}
		fh.Close()
	}
	if len(inodes) == 0 {
		return 0
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range procs {
		link, err := os.Readlink(fd)
		if err != nil || !strings.HasPrefix(link, "socket:[") {
			continue
		}
		if inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] {
			pid, _ := strconv.Atoi(strings.Split(fd, "/")[2])
			return pid
		}
	}
	return 0
}

// childPids are the processes whose parent is pid.
func childPids(pid int) []int {
	var out []int
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, st := range stats {
		b, err := os.ReadFile(st)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so after ')'.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			c, _ := strconv.Atoi(strings.Split(st, "/")[2])
			out = append(out, c)
		}
	}
	return out
}

// redactURL drops a URL's password (and its query's secrets: none are
// expected there, the S3 keys come from the environment).
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
