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
}

// NewPullmail measures sb, whose user sender sends.
func NewPullmail(sb *sandbox.Sandbox, sender string) *Pullmail {
	return &Pullmail{Sandbox: sb, Sender: sender, clients: map[string]*client.Client{}}
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

// startPullmail starts the benchmark's Pullmail domains, each its own
// 'pullmail serve' process of bin under dir behind a counting proxy.
// profileDir, when set, makes each server write its CPU profile there
// (profiles returns their paths, by domain).
func startPullmail(ctx context.Context, bin, dir, profileDir string, users, serveFlags []string) (*Pullmail, map[string]string, error) {
	profiles := map[string]string{}
	// SMTP: each domain has a mail exchanger too (workload 6).
	cfg := sandbox.Config{Kind: sandbox.Process, Dir: dir, Users: users, Binary: bin, CountWire: true, LogLevel: "warn", SMTP: true, ServeFlags: serveFlags}
	if profileDir != "" {
		for _, d := range domainsOf(users) {
			profiles[d] = filepath.Join(profileDir, d+".cpu.pprof")
		}
		// serve has no profiling flag: 'pullmail bench serve' wraps it.
		cfg.Command = func(domain string) []string { return []string{"bench", "serve", "--", profiles[domain]} }
	}
	sb, err := sandbox.Start(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	return NewPullmail(sb, users[0]), profiles, nil
}

func (s *Pullmail) name() string { return "pullmail" }
func (s *Pullmail) close()       { s.Sandbox.Close() }
func (s *Pullmail) wire() int64  { return s.Sandbox.Wire() }

func (s *Pullmail) pids() map[string]int {
	m := map[string]int{}
	for _, d := range s.Sandbox.Domains() {
		m[d.Name] = d.Pid()
	}
	return m
}
