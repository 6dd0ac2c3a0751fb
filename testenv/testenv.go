// Package testenv runs real Pullmail domains inside a test: package
// sandbox's domains (the real server wiring, SQLite, the file resource
// store, the local CA's TLS, a DNS server of their own), tied to the test's
// life and log. Start runs one domain in process and gives the test its
// stores; Sandbox runs N that find each other, in process or as 'pullmail
// serve' processes (sandbox.Kind). Nothing is mocked.
package testenv

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pullmail/pullmail/account"
	"github.com/pullmail/pullmail/client"
	"github.com/pullmail/pullmail/sandbox"
	"github.com/pullmail/pullmail/server"
)

// Domain is one running domain of its own sandbox, in this process.
type Domain struct {
	*sandbox.Domain
	CA      string // path of the CA PEM clients trust
	Sandbox *sandbox.Sandbox
	t       testing.TB

	mu      sync.Mutex
	clients []*client.Client
	stopped bool
}

// Options tune a domain.
type Options struct {
	EncryptAtRest bool
	MaxUpload     int64
	Clock         func() time.Time
	// GCInterval > 0 runs the server's collector (the trash sweep, then
	// garbage collection) that often; by default it does not run, so that
	// tests decide when to collect.
	GCInterval time.Duration
	// DeviceInterval is the device grant's polling interval (default 5s).
	DeviceInterval time.Duration
	Dir            string // default t.TempDir()
	// MetaURL and ResourcesURL name the stores (server.Config); "" for
	// SQLite and files in Dir.
	MetaURL, ResourcesURL string
}

// Logger returns a logger that writes to the test log when -v is given.
func Logger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// Sandbox starts cfg's domains (sandbox.Start) for the test and closes
// them when it ends, checking that every server stopped cleanly; a failed
// test shows what each domain logged. Dir defaults to t.TempDir().
func Sandbox(t testing.TB, cfg sandbox.Config) *sandbox.Sandbox {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	sb, err := sandbox.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("starting the sandbox: %v", err)
	}
	t.Cleanup(func() {
		if err := sb.Close(); err != nil {
			t.Errorf("stopping the sandbox: %v", err)
		}
		if t.Failed() {
			for _, d := range sb.Domains() {
				if l := d.Log(); l != "" {
					t.Logf("%s logged:\n%s", d.Name, l)
				}
			}
		}
	})
	return sb
}

// Start starts one domain in process, with its data (and its CA) in
// opt.Dir, that stops when the test ends.
func Start(t testing.TB, name string, opt Options) *Domain {
	t.Helper()
	dir := opt.Dir
	if dir == "" {
		dir = t.TempDir()
	}
	// The sandbox's directory is the domain's: its CA is the domain's
	// local CA, as 'pullmail serve' makes it.
	sb, err := sandbox.Start(context.Background(), sandbox.Config{Kind: sandbox.InProcess, Dir: dir,
		DataDirs: map[string]string{name: dir}, Domains: []string{name}, Log: Logger(t),
		Server: func(c *server.Config) {
			c.EncryptAtRest, c.MaxUpload, c.Clock = opt.EncryptAtRest, opt.MaxUpload, opt.Clock
			c.GCInterval, c.DeviceInterval = -1, opt.DeviceInterval
			c.MetaURL, c.ResourcesURL = opt.MetaURL, opt.ResourcesURL
			if opt.GCInterval > 0 {
				c.GCInterval = opt.GCInterval
			}
		}})
	if err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	d := &Domain{Domain: sb.Domain(name), CA: filepath.Join(dir, "ca.pem"), Sandbox: sb, t: t}
	t.Cleanup(d.Stop)
	return d
}

// Stop stops the domain now (it is stopped at the end of the test anyway).
func (d *Domain) Stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return
	}
	d.stopped = true
	// An HTTP/2 connection left open makes a graceful shutdown wait
	// a second for the client's GOAWAY: close ours first.
	for _, c := range d.clients {
		c.HTTP.CloseIdleConnections()
	}
	if err := d.Sandbox.Close(); err != nil {
		d.t.Errorf("serving %s: %v", d.Name, err)
	}
}

// AddUser creates a user and returns a client signed in as them.
func (d *Domain) AddUser(t testing.TB, addr string) *client.Client {
	t.Helper()
	norm, err := account.NormalizeAddress(addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := sandbox.AddUser(context.Background(), d.Server.Meta, norm, "correct horse battery staple"); err != nil {
		t.Fatalf("adding %s: %v", addr, err)
	}
	return d.Client(t, d.Token(t, norm, 0))
}

// Token makes a bearer token for a user; ttl 0 never expires, a negative
// ttl makes one that has already expired.
func (d *Domain) Token(t testing.TB, addr string, ttl time.Duration) string {
	t.Helper()
	secret, err := sandbox.NewToken(context.Background(), d.Server.Meta, addr, ttl, "")
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

// Client returns a client of the domain with a token.
func (d *Domain) Client(t testing.TB, token string) *client.Client {
	t.Helper()
	c, err := client.New(d.URL, token, d.CA)
	if err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	d.clients = append(d.clients, c)
	d.mu.Unlock()
	return c
}

// Files lists every file under dir relative to it, for tests that check that
// nothing was left behind.
func Files(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

// DamageBlob damages the stored file of resource id in the data directory
// dir as a failing disk would: one bit of the byte at off. The path is
// resource/fsstore's (format 2: resources/blobs/ab/ID).
func DamageBlob(t testing.TB, dir, id string, off int64) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, "resources", "blobs", id[:2], id), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x10
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}
