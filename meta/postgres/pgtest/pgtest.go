// Package pgtest gives tests a real PostgreSQL: a throwaway cluster in a
// temporary directory (initdb, then the postgres server on 127.0.0.1 and a
// free port), started once per test binary when a test first asks for a
// database, and a new empty database for each test. It is for tests only
// (meta/postgres, and end-to-end tests that run nodes on PostgreSQL).
//
// The binaries are found in $PULLMAIL_PG_BIN, next to initdb on PATH, or in
// /usr/lib/postgresql/N/bin (Debian's postgresql package). PostgreSQL
// refuses to run as root, so as root the cluster belongs to the "postgres"
// user (which Debian's package creates) and runs as that user.
//
// Where PostgreSQL is missing the tests that need it skip, saying so; with
// the environment variable CI set (CI=true), they fail instead, so that CI
// cannot pass without running them.
//
// A package using it must stop the cluster after its tests:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The cluster of this test binary. Tests share it (each in a database of
// its own); package state because testing gives no per-binary hook but
// TestMain, which Main uses to stop it.
var (
	once    sync.Once
	shared  *cluster
	errInit error
	dbSeq   atomic.Int64
)

// Main runs the tests, then stops the cluster if one was started, and exits
// with the tests' status.
func Main(m *testing.M) { os.Exit(Run(m)) }

// Run is Main for a TestMain with more to do after the tests: it returns
// their status.
func Run(m *testing.M) int {
	code := m.Run()
	if shared != nil {
		shared.stop()
	}
	return code
}

// inCI reports whether missing PostgreSQL must fail the tests.
func inCI() bool {
	v := os.Getenv("CI")
	return v != "" && v != "0" && !strings.EqualFold(v, "false")
}

// URL returns the connection URL of a new, empty database for the test.
// The database is not dropped when the test ends (DROP DATABASE costs a
// checkpoint, a second or so); it goes with the cluster's directory. It skips the test (fails it in CI) when
// PostgreSQL cannot be started here.
func URL(t testing.TB) string {
	t.Helper()
	once.Do(func() { shared, errInit = start() })
	if errInit != nil {
		if inCI() {
			t.Fatalf("PostgreSQL is needed and CI is set: %v", errInit)
		}
		t.Skipf("skipped: no PostgreSQL here (%v); install it with apt-get install postgresql, or set PULLMAIL_PG_BIN", errInit)
	}
	name := fmt.Sprintf("t%d_%s", dbSeq.Add(1), sanitize(t.Name()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := shared.admin(ctx, `CREATE DATABASE "`+name+`"`); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	return shared.url(name)
}

var unsafeChars = regexp.MustCompile(`[^a-z0-9_]+`)

// sanitize turns a test name into part of a database name (at most 63
// bytes in all).
func sanitize(s string) string {
	s = unsafeChars.ReplaceAllString(strings.ToLower(s), "_")
	if len(s) > 40 {
		s = s[len(s)-40:]
	}
	return s
}

// cluster is a running throwaway PostgreSQL.
type cluster struct {
	dir  string // the temporary directory: data/, log
	port int
	cmd  *exec.Cmd
	exit chan struct{} // closed when the server process has exited

	mu   sync.Mutex
	conn *pgx.Conn // to the postgres database, for CREATE and DROP DATABASE
}

func (c *cluster) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

// admin runs a statement on the maintenance connection.
func (c *cluster) admin(ctx context.Context, sql string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil || c.conn.IsClosed() {
		conn, err := pgx.Connect(ctx, c.url("postgres"))
		if err != nil {
			return err
		}
		c.conn = conn
	}
	_, err := c.conn.Exec(ctx, sql)
	return err
}

// binDir finds the directory holding initdb and postgres.
func binDir() (string, error) {
	if d := os.Getenv("PULLMAIL_PG_BIN"); d != "" {
		return d, nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := os.Stat(filepath.Join(filepath.Dir(p), "postgres")); err == nil {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("initdb not found on PATH nor in /usr/lib/postgresql/*/bin")
}

// version is N of /usr/lib/postgresql/N/bin.
func version(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

// asUser is how the cluster's commands run: as the postgres user when we
// are root (PostgreSQL refuses root), else as ourselves.
func asUser(dir string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root and there is no postgres user to run PostgreSQL as: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// freePort asks the kernel for a free port on 127.0.0.1. Another process
// may take it before the server does; start then tries another.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func start() (*cluster, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pullmail-pgtest-")
	if err != nil {
		return nil, err
	}
	cred, err := asUser(dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-A", "trust", "-U", "postgres",
		"-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		if out = bytes.TrimSpace(out); len(out) > 0 {
			err = fmt.Errorf("%w: %s", err, out)
		}
		return nil, fmt.Errorf("initdb: %w", err)
	}
	var last error
	for range 5 {
		c, err := serve(bin, dir, data, cred)
		if err == nil {
			return c, nil
		}
		last = err
	}
	os.RemoveAll(dir)
	return nil, last
}

// serve starts the server on a free port and waits until it accepts
// connections.
func serve(bin, dir, data string, cred *syscall.Credential) (*cluster, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
		"-c", "max_connections=300", "-c", "shared_buffers=64MB")
	cmd.Stdout, cmd.Stderr = logf, logf
	// If the test binary dies without Main's stop (a timeout's panic, a
	// kill), the server gets SIGQUIT (immediate shutdown) rather than
	// living on. Pdeathsig follows the thread that started the process, so
	// that thread is kept for as long as the server runs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT, Setpgid: true}
	c := &cluster{dir: dir, port: port, cmd: cmd, exit: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine, after the server
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		cmd.Wait()
		close(c.exit)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.admin(ctx, `SELECT 1`)
		cancel()
		if err == nil {
			return c, nil
		}
		select {
		case <-c.exit:
			b, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("postgres exited at start: %s", bytes.TrimSpace(b))
		default:
		}
		if time.Now().After(deadline) {
			c.kill()
			return nil, fmt.Errorf("postgres did not accept connections in 30s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill stops the server at once.
func (c *cluster) kill() {
	c.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-c.exit:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-c.exit
	}
}

// stop shuts the server down (fast: SIGINT rolls back open transactions)
// and removes its directory.
func (c *cluster) stop() {
	c.mu.Lock()
	if c.conn != nil {
		c.conn.Close(context.Background())
	}
	c.mu.Unlock()
	c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-c.exit:
	case <-time.After(20 * time.Second):
		c.kill()
	}
	os.RemoveAll(c.dir)
}
