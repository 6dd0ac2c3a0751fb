// Package sandbox starts N real Pullmail domains on loopback that find each
// other as real domains do (docs/PROTOCOL.md §11.1): SRV records in a DNS
// server of the sandbox's own and an HTTPS redirect service (Directory),
// one local CA for every certificate, each domain with its data directory,
// users and bearer tokens. A Kind switches how the domains run: as servers
// inside this process (the server package) or each as its own 'pullmail
// serve' process. Nothing is mocked and nothing leaves 127.0.0.0/8: every
// server resolves through the sandbox's DNS server.
//
// 'pullmail dev' is a sandbox (InProcess), 'pullmail bench' runs its
// Pullmail domains in one (Process), and the tests run theirs through
// package testenv, which ties a sandbox to a test.
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/pullmail/pullmail/account"
	"github.com/pullmail/pullmail/atomicfile"
	"github.com/pullmail/pullmail/client"
	"github.com/pullmail/pullmail/server"
	"github.com/pullmail/pullmail/tlsca"
)

// Kind is how a sandbox runs its domains.
type Kind int

const (
	// InProcess runs every domain as a server.Server in this process: the
	// same wiring as 'pullmail serve', and a test can reach its stores.
	InProcess Kind = iota
	// Process runs every domain as its own 'pullmail serve' process of
	// Config.Binary, which can be killed as a crash would.
	Process
)

// Kinds are every Kind, for tests that run under each.
var Kinds = []Kind{InProcess, Process}

func (k Kind) String() string {
	if k == Process {
		return "processes"
	}
	return "in-process"
}

// Config says what to start. Zero values are the defaults.
type Config struct {
	Kind Kind
	// Dir holds the sandbox: its CA (Dir/ca.pem, Dir/ca-key.pem), copied
	// into every domain's data directory so that each server's certificate
	// comes from it, and the data directories, Dir/DOMAIN. Required.
	Dir string
	// Domains are the domains to start, in order; the domains of Users
	// that are not among them follow.
	Domains []string
	// Users are created on their domains (once: a restarted sandbox keeps
	// them and their passwords), each with a new bearer token.
	Users []string
	// TokenLabel labels the users' tokens (default "sandbox").
	TokenLabel string
	// DataDirs replaces Dir/DOMAIN as a domain's data directory.
	DataDirs map[string]string
	// CountWire puts a counting TCP proxy on each domain's public port,
	// which DNS and the other domains use; the domain's own users
	// (Sandbox.Client, Sandbox.Env) talk to its server directly, so that
	// Sandbox.Wire counts the bytes between domains only.
	CountWire bool
	// LogLevel is each server's: debug, info (the default), warn or error.
	// Domain.Log returns what it logged, unless Log is set.
	LogLevel string
	// Log, when set, is every in-process server's logger (and the
	// redirect service's, in either kind).
	Log *slog.Logger

	// Server adjusts each in-process server's configuration before it
	// opens (InProcess).
	Server func(*server.Config)

	// Binary is the pullmail binary whose 'serve' runs each domain
	// (Process; required there).
	Binary string
	// Command, when set, returns the command that runs a domain's server
	// in place of "serve" (its flags follow): 'pullmail bench' wraps serve
	// to profile it.
	Command func(domain string) []string
	// ServeFlags are added to every serve command line (Process).
	ServeFlags []string
	// SMTP gives each domain a mail exchanger too, on a port of its own
	// (Domain.SMTP): mail from SMTP clients for the domain's users.
	SMTP bool
	// Backends are domains' stores (by domain; default the data
	// directory's SQLite and files).
	Backends map[string]Backends
	// Nodes is how many serve processes a domain runs on its stores (by
	// domain; default 1): more than one needs Process and Backends that
	// the nodes can share. Domain.Nodes returns the others; the domain's
	// public port spreads connections over those running.
	Nodes map[string]int
}

// Sandbox is a running set of domains.
type Sandbox struct {
	// CA is the PEM file of the CA that issued every certificate: the one
	// clients trust (PULLMAIL_CA).
	CA string
	// Directory publishes the domains: its DNS server (pass DNS() as
	// --dns) and redirect service.
	Directory *Directory

	cfg     Config
	log     *slog.Logger
	domains map[string]*Domain
	order   []string
	errc    chan error

	mu      sync.Mutex
	clients []*client.Client
	closed  bool
}

// Start starts every domain of cfg and returns once each serves. The
// servers run until Close (or their Domain's Stop); ctx bounds the start.
func Start(ctx context.Context, cfg Config) (_ *Sandbox, err error) {
	if cfg.Dir == "" {
		return nil, errors.New("sandbox: Config.Dir is required")
	}
	if cfg.Kind == Process && cfg.Binary == "" {
		return nil, errors.New("sandbox: Config.Binary is required for Process")
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = "info"
	}
	if cfg.TokenLabel == "" {
		cfg.TokenLabel = "sandbox"
	}
	if err := checkNodes(cfg); err != nil {
		return nil, err
	}
	s := &Sandbox{cfg: cfg, log: cfg.Log, domains: map[string]*Domain{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, err
	}
	ca, err := tlsca.LoadOrCreate(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("sandbox: local CA: %w", err)
	}
	s.CA = ca.CertPath()
	for _, name := range cfg.Domains {
		s.add(strings.ToLower(name))
	}
	for _, u := range cfg.Users {
		addr, err := account.NormalizeAddress(u)
		if err != nil {
			return nil, fmt.Errorf("sandbox: user %q: %w", u, err)
		}
		_, name, _ := strings.Cut(addr, "@")
		d := s.add(name)
		if !slices.Contains(d.addrs, addr) {
			d.addrs = append(d.addrs, addr)
		}
	}
	s.errc = make(chan error, len(s.order))
	defer func() {
		if err != nil {
			s.Close()
		}
	}()

	// Ports first: the directory publishes the URLs, and every server
	// must know the DNS server when it opens (to find the others).
	urls := map[string]string{}
	for _, name := range s.order {
		d := s.domains[name]
		if err := d.listen(); err != nil {
			return nil, err
		}
		urls[name] = d.URL
	}
	if s.Directory, err = StartDirectory(ca, urls, s.log); err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	errs := make([]error, len(s.order))
	for i, name := range s.order {
		wg.Go(func() {
			d := s.domains[name]
			if errs[i] = d.prepare(ctx); errs[i] == nil {
				errs[i] = d.Start(ctx)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// The other nodes once the first has made the domain's keys.
	for _, name := range s.order {
		for _, n := range s.domains[name].nodes {
			if err := n.Start(ctx); err != nil {
				return nil, err
			}
		}
	}
	return s, nil
}

// add returns the domain name, new or not.
func (s *Sandbox) add(name string) *Domain {
	if d, ok := s.domains[name]; ok {
		return d
	}
	dir := s.cfg.DataDirs[name]
	if dir == "" {
		dir = filepath.Join(s.cfg.Dir, name)
	}
	d := &Domain{Name: name, Dir: dir, sb: s, accounts: map[string]User{}}
	s.domains[name] = d
	s.order = append(s.order, name)
	return d
}

// DNS is the address of the sandbox's DNS server (a server's --dns).
func (s *Sandbox) DNS() string { return s.Directory.DNS.Addr() }

// Domain returns the domain name, nil if the sandbox has none.
func (s *Sandbox) Domain(name string) *Domain { return s.domains[name] }

// Domains returns every domain, in the order of Config.
func (s *Sandbox) Domains() []*Domain {
	out := make([]*Domain, len(s.order))
	for i, name := range s.order {
		out[i] = s.domains[name]
	}
	return out
}

// User returns a user of Config.Users with their token and password.
func (s *Sandbox) User(addr string) (User, bool) {
	_, name, _ := strings.Cut(addr, "@")
	d := s.domains[name]
	if d == nil {
		return User{}, false
	}
	return d.User(addr)
}

// Env is the CLI's environment for a user: PULLMAIL_SERVER (their
// domain's server, directly), PULLMAIL_TOKEN and PULLMAIL_CA.
func (s *Sandbox) Env(addr string) []string {
	u, _ := s.User(addr)
	_, name, _ := strings.Cut(addr, "@")
	server := ""
	if d := s.domains[name]; d != nil {
		server = d.Direct
	}
	return []string{"PULLMAIL_SERVER=" + server, "PULLMAIL_TOKEN=" + u.Token, "PULLMAIL_CA=" + s.CA}
}

// Client returns a Go client signed in as a user, talking to their
// domain's server directly.
func (s *Sandbox) Client(addr string) (*client.Client, error) {
	u, ok := s.User(addr)
	if !ok {
		return nil, fmt.Errorf("sandbox: no user %s", addr)
	}
	_, name, _ := strings.Cut(addr, "@")
	c, err := client.New(s.domains[name].Direct, u.Token, s.CA)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.clients = append(s.clients, c)
	s.mu.Unlock()
	return c, nil
}

// Wire is the bytes that passed between domains so far (CountWire).
func (s *Sandbox) Wire() int64 {
	var n int64
	for _, d := range s.domains {
		if d.proxy != nil {
			n += d.proxy.Bytes()
		}
	}
	return n
}

// Err receives the error of an in-process server that stopped serving by
// itself ('pullmail dev' ends with it).
func (s *Sandbox) Err() <-chan error { return s.errc }

func (s *Sandbox) report(err error) {
	select {
	case s.errc <- err:
	default:
	}
}

// Close stops every server gracefully (Domain.Stop), then the proxies and
// the directory, and returns what the servers' ends reported. Closing
// again does nothing.
func (s *Sandbox) Close() error {
	// An HTTP/2 connection left open makes a graceful shutdown wait a
	// second for the client's GOAWAY: close the clients' first.
	s.mu.Lock()
	closed := s.closed
	s.closed = true
	for _, c := range s.clients {
		c.HTTP.CloseIdleConnections()
	}
	s.mu.Unlock()
	if closed {
		return nil
	}
	var wg sync.WaitGroup
	errs := make([]error, len(s.order))
	for i, name := range s.order {
		wg.Go(func() {
			d := s.domains[name]
			for _, n := range d.nodes {
				errs[i] = errors.Join(errs[i], n.Stop())
			}
			errs[i] = errors.Join(errs[i], d.Stop())
			if d.proxy != nil {
				d.proxy.Close()
			}
			if d.ln != nil {
				d.ln.Close()
			}
		})
	}
	wg.Wait()
	if s.Directory != nil {
		s.Directory.Shutdown()
		errs = append(errs, s.Directory.Close())
	}
	return errors.Join(errs...)
}

// listen picks the domain's port and, with CountWire, starts its proxy.
func (d *Domain) listen() error {
	if d.sb.cfg.Kind == InProcess {
		// Held from now to the first start, on a port FreePort chose
		// (restarts bind it again).
		port, err := FreePort()
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			return err
		}
		d.ln, d.port = ln, port
	} else {
		var err error
		if d.port, err = FreePort(); err != nil {
			return err
		}
	}
	d.Direct = fmt.Sprintf("https://127.0.0.1:%d", d.port)
	d.URL = d.Direct
	if d.sb.cfg.SMTP {
		p, err := FreePort()
		if err != nil {
			return err
		}
		d.SMTP = fmt.Sprintf("127.0.0.1:%d", p)
	}
	nodes := d.sb.cfg.Nodes[d.Name]
	if d.sb.cfg.CountWire || nodes > 1 {
		p, err := StartProxy("127.0.0.1:0", fmt.Sprintf("127.0.0.1:%d", d.port))
		if err != nil {
			return err
		}
		d.proxy, d.URL = p, "https://"+p.Addr()
	}
	if nodes > 1 {
		return d.addNodes(nodes)
	}
	return nil
}

// prepare makes the data directory with the sandbox's CA in it and, for
// a process, the users (in process, Start adds them to the open server).
func (d *Domain) prepare(ctx context.Context) error {
	if err := os.MkdirAll(d.Dir, 0o700); err != nil {
		return err
	}
	for _, name := range []string{tlsca.CertFile, tlsca.KeyFile} {
		src, dst := filepath.Join(d.sb.cfg.Dir, name), filepath.Join(d.Dir, name)
		b, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		if cur, err := os.ReadFile(dst); err == nil && string(cur) == string(b) {
			continue
		}
		if err := atomicfile.Replace(dst, b, 0o600); err != nil {
			return err
		}
	}
	if d.sb.cfg.Kind == Process {
		return d.addUsersByCLI(ctx)
	}
	return nil
}
