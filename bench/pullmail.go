package bench

import (
	"context"
	"path/filepath"

	"github.com/pullmail/pullmail/client"
	"github.com/pullmail/pullmail/sandbox"
)

// Pullmail is a sandbox's domains as the system under test: Sender sends,
// the other users receive. Its domains should count the wire
// (sandbox.Config.CountWire); its users' clients talk to their servers
// directly, so an upload is not counted as wire bytes.
type Pullmail struct {
	Sandbox *sandbox.Sandbox
	Sender  string
	clients map[string]*client.Client
	// label names the system in the report ("pullmail": SQLite and
	// files); stores, when set, are the shared stores it runs on.
	label  string
	stores *sharedStores
}

// NewPullmail measures sb, whose user sender sends.
func NewPullmail(sb *sandbox.Sandbox, sender string) *Pullmail {
	return &Pullmail{Sandbox: sb, Sender: sender, clients: map[string]*client.Client{}, label: "pullmail"}
}

// client returns a user's client, made once.
func (s *Pullmail) client(user string) (*client.Client, error) {
	if c, ok := s.clients[user]; ok {
		return c, nil
	}
	c, err := s.Sandbox.Client(user)
	if err != nil {
		return nil, err
	}
	s.clients[user] = c
	return c, nil
}

// pullmailRun says how to start one Pullmail system of the run.
type pullmailRun struct {
	label      string // the system's name in the report
	dir        string
	profileDir string // CPU profiles, when set
	users      []string
	serveFlags []string
	stores     *sharedStores  // nil: SQLite and files
	nodes      map[string]int // by domain (stores needed)
}

// startPullmail starts the benchmark's Pullmail domains, each its own
// 'pullmail serve' process of bin under dir behind a counting proxy.
// profileDir, when set, makes each server write its CPU profile there
// (profiles returns their paths, by domain).
func startPullmail(ctx context.Context, bin string, run pullmailRun) (*Pullmail, map[string]string, error) {
	profiles := map[string]string{}
	// SMTP: each domain has a mail exchanger too (workload 6).
	cfg := sandbox.Config{Kind: sandbox.Process, Dir: run.dir, Users: run.users, Binary: bin, CountWire: true, LogLevel: "warn",
		SMTP: true, ServeFlags: run.serveFlags, Nodes: run.nodes}
	if run.profileDir != "" {
		for _, d := range domainsOf(run.users) {
			name := d + ".cpu.pprof"
			if run.label != "pullmail" {
				name = run.label + "." + name
			}
			profiles[d] = filepath.Join(run.profileDir, name)
		}
		// serve has no profiling flag: 'pullmail bench serve' wraps it.
		cfg.Command = func(domain string) []string { return []string{"bench", "serve", "--", profiles[domain]} }
	}
	if run.stores != nil {
		cfg.Backends = map[string]sandbox.Backends{}
		for _, d := range domainsOf(run.users) {
			b, err := run.stores.forDomain(ctx, run.label, d)
			if err != nil {
				return nil, nil, err
			}
			cfg.Backends[d] = b
		}
	}
	sb, err := sandbox.Start(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	pm := NewPullmail(sb, run.users[0])
	pm.label, pm.stores = run.label, run.stores
	return pm, profiles, nil
}

func (s *Pullmail) name() string { return s.label }
func (s *Pullmail) close()       { s.Sandbox.Close() }
func (s *Pullmail) wire() int64  { return s.Sandbox.Wire() }

func (s *Pullmail) pids() map[string]int {
	m := map[string]int{}
	for _, d := range s.Sandbox.Domains() {
		m[d.Name] = d.Pid()
		for _, n := range d.Nodes() {
			m[d.Name+"/"+n.Name] = n.Pid()
		}
	}
	if s.stores != nil {
		for name, pid := range s.stores.servers() {
			m[name] = pid
		}
	}
	return m
}
