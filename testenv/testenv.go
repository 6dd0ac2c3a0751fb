// Package testenv starts real Pullmail domains inside a test: the real
// server wiring (SQLite, the file resource store, the local CA's TLS) on a
// loopback port, and real HTTPS clients for its users. Nothing is mocked.
package testenv

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pullmail/pullmail/account"
	"github.com/pullmail/pullmail/client"
	"github.com/pullmail/pullmail/discovery/dnstest"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/server"
)

// Domain is one running domain.
type Domain struct {
	Name   string
	Dir    string
	URL    string
	CA     string // path of the CA PEM clients trust
	Server *server.Server
	stop   func()

	mu      sync.Mutex
	clients []*client.Client
}

// Options tune a domain.
type Options struct {
	EncryptAtRest bool
	MaxUpload     int64
	Clock         func() time.Time
	// DeviceInterval is the device grant's polling interval (default 5s).
	DeviceInterval time.Duration
	Dir            string // default t.TempDir()
	// DNS and PeerCA say how the domain finds and trusts other domains
	// (server.Config); peers on loopback are always allowed here.
	DNS, PeerCA string
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

// Start starts a domain that stops when the test ends.
func Start(t testing.TB, name string, opt Options) *Domain {
	t.Helper()
	dir := opt.Dir
	if dir == "" {
		dir = t.TempDir()
	}
	if opt.DNS == "" {
		// Never the system resolver: a test's lookups stay on loopback
		// (an empty zone answers NXDOMAIN to everything).
		dns, err := dnstest.Start()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { dns.Close() })
		opt.DNS = dns.Addr()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.Open(ctx, server.Config{
		DataDir: dir, Domain: name, Log: Logger(t), EncryptAtRest: opt.EncryptAtRest, PublicURL: "https://" + ln.Addr().String(),
		MaxUpload: opt.MaxUpload, Clock: opt.Clock, GCInterval: -1, DeviceInterval: opt.DeviceInterval,
		DNS: opt.DNS, PeerCA: opt.PeerCA, AllowPrivatePeers: true,
	})
	if err != nil {
		cancel()
		ln.Close()
		t.Fatalf("opening %s: %v", name, err)
	}
	done := make(chan error, 1)
	ready := make(chan string, 1)
	go func() { done <- srv.ServeListener(ctx, ln, func(u string) { ready <- u }) }()
	var url string
	select {
	case url = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("serving %s: %v", name, err)
	}
	d := &Domain{Name: name, Dir: dir, URL: url, CA: filepath.Join(dir, "ca.pem"), Server: srv}
	var stopped bool
	d.stop = func() {
		if stopped {
			return
		}
		stopped = true
		// An HTTP/2 connection left open makes a graceful shutdown wait
		// a second for the client's GOAWAY: close ours first.
		d.mu.Lock()
		for _, c := range d.clients {
			c.HTTP.CloseIdleConnections()
		}
		d.mu.Unlock()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serving %s: %v", name, err)
		}
		srv.Close()
	}
	t.Cleanup(d.stop)
	return d
}

// Stop stops the domain now (it is stopped at the end of the test anyway).
func (d *Domain) Stop() { d.stop() }

// AddUser creates a user and returns a client signed in as them.
func (d *Domain) AddUser(t testing.TB, addr string) *client.Client {
	t.Helper()
	ctx := context.Background()
	norm, err := account.NormalizeAddress(addr)
	if err != nil {
		t.Fatal(err)
	}
	hash, err := account.HashPassword("correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	err = d.Server.Meta.Update(ctx, func(tx meta.Tx) error {
		_, err := tx.AddUser(ctx, meta.User{Address: norm, PasswordHash: hash})
		return err
	})
	if err != nil {
		t.Fatalf("adding %s: %v", addr, err)
	}
	return d.Client(t, d.Token(t, norm, 0))
}

// Token makes a bearer token for a user; ttl 0 never expires, a negative
// ttl makes one that has already expired.
func (d *Domain) Token(t testing.TB, addr string, ttl time.Duration) string {
	t.Helper()
	ctx := context.Background()
	secret, hash := account.NewToken()
	now := time.Now().UTC()
	tok := meta.Token{Hash: hash, Created: now}
	if ttl != 0 {
		tok.Expires = now.Add(ttl)
	}
	err := d.Server.Meta.Update(ctx, func(tx meta.Tx) error {
		u, err := tx.UserByAddress(ctx, addr)
		if err != nil {
			return err
		}
		tok.UserID = u.ID
		return tx.AddToken(ctx, tok)
	})
	if err != nil {
		t.Fatalf("token for %s: %v", addr, err)
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
