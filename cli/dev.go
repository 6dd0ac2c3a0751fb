package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/pullmail/pullmail/account"
	"github.com/pullmail/pullmail/atomicfile"
	"github.com/pullmail/pullmail/sandbox"
	"github.com/pullmail/pullmail/server"
)

// DevFile is the shape of DIR/dev.json that 'pullmail dev' writes, a contract
// for scripts and tests (issue: local sandbox).
type DevFile struct {
	CA      string               `json:"ca"`
	DNS     string               `json:"dns,omitempty"`
	Domains map[string]DevDomain `json:"domains"`
	Users   map[string]DevUser   `json:"users"`
}

// DevDomain is one domain of the sandbox.
type DevDomain struct {
	URL string `json:"url"`
	// SMTP is the domain's mail exchanger (host:port): send to its users
	// with any SMTP client.
	SMTP string `json:"smtp,omitempty"`
	// IMAP is the domain's IMAP listener (host:port, implicit TLS with the
	// sandbox's CA): read the users' mailboxes with any mail client.
	IMAP string `json:"imap,omitempty"`
}

// DevUser is one user of the sandbox.
type DevUser struct {
	Server   string `json:"server"`
	Token    string `json:"token"`
	Password string `json:"password"`
}

func init() {
	register(&command{
		name: "dev", args: "--data DIR [--domains a.test,b.test] [--users alice@a.test,bob@a.test,carol@b.test]",
		short: "run a local sandbox: servers, users and tokens on loopback",
		long: `Starts one full Pullmail server per domain on loopback, with HTTPS from one local CA
(DIR/ca.pem), creates the users (with random passwords, kept across restarts), writes
DIR/dev.json with every URL, token and password, prints the lines to paste into a shell, and
runs until interrupted. Each domain keeps its data in DIR/<domain>.

It also runs a DNS server on loopback (its address is "dns" in dev.json: pass it as --dns)
that publishes each domain as docs/PROTOCOL.md §11.1 says:

  _federizer._as._tcp.D  SRV 10 5 PORT as.D.     as.D  A 127.0.0.1
  _federizer._rs._tcp.D  SRV 10 5 PORT mbx.D.    mbx.D A 127.0.0.1

where PORT is a small HTTPS redirect service (certificate from the same CA) that redirects
https://as.D:PORT/.well-known/... and https://mbx.D:PORT/.well-known/... to the domain's
server, https://127.0.0.1:<port>, once (the redirect service of seed 004 Note 1: SRV targets
cannot be IP addresses). 'pullmail doctor D --dns ADDR --ca DIR/ca.pem --allow-private'
checks it.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			data := fs.String("data", "pullmail-dev", "sandbox `DIR`ectory")
			domains := fs.String("domains", "a.test,b.test", "comma-separated domains")
			users := fs.String("users", "alice@a.test,bob@a.test,carol@b.test", "comma-separated user addresses")
			level := fs.String("log-level", "warn", "debug, info, warn or error")
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 0 {
					return usagef("unexpected arguments: %s", strings.Join(args, " "))
				}
				log, err := newLogger(env, *level, "text")
				if err != nil {
					return err
				}
				return runDev(ctx, env, log, *data, splitList(*domains), splitList(*users))
			}
		},
	})
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, strings.ToLower(f))
		}
	}
	return out
}

func runDev(ctx context.Context, env *Env, log *slog.Logger, dir string, domains, users []string) error {
	if len(domains) == 0 {
		return usagef("--domains names no domain")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	dir, _ = filepath.Abs(dir)
	known := map[string]bool{}
	for _, d := range domains {
		known[d] = true
	}
	var addrs []string
	for _, u := range users {
		addr, err := account.NormalizeAddress(u)
		if err != nil {
			return fmt.Errorf("--users: %q: %w", u, err)
		}
		_, d, _ := strings.Cut(addr, "@")
		if !known[d] {
			return usagef("user %s is not in any of --domains", addr)
		}
		addrs = append(addrs, addr)
	}
	// Every domain in this process, each in DIR/<domain> with a copy of
	// the sandbox's one CA, published by the sandbox's DNS server.
	sb, err := sandbox.Start(ctx, sandbox.Config{Kind: sandbox.InProcess, Dir: dir, Domains: domains, Users: addrs,
		Log: log, TokenLabel: "pullmail dev", SMTP: true,
		// An IMAP listener per domain, on a free loopback port.
		Server: func(c *server.Config) { c.IMAP = "127.0.0.1:0" }})
	if err != nil {
		return err
	}
	defer sb.Close()
	out := DevFile{CA: sb.CA, DNS: sb.DNS(), Domains: map[string]DevDomain{}, Users: map[string]DevUser{}}
	for _, d := range sb.Domains() {
		imap, _ := d.Server.IMAPAddrs()
		out.Domains[d.Name] = DevDomain{URL: d.URL, SMTP: d.SMTP, IMAP: imap}
	}
	for _, addr := range addrs {
		u, _ := sb.User(addr)
		_, d, _ := strings.Cut(addr, "@")
		out.Users[addr] = DevUser{Server: out.Domains[d].URL, Token: u.Token, Password: u.Password}
	}

	b, _ := json.MarshalIndent(out, "", "  ")
	if err := atomicfile.Replace(filepath.Join(dir, "dev.json"), append(b, '\n'), 0o600); err != nil {
		return err
	}
	w := env.Stdout
	fmt.Fprintf(w, "Pullmail sandbox in %s (details: %s)\n\n", dir, filepath.Join(dir, "dev.json"))
	for _, d := range domains {
		fmt.Fprintf(w, "  %-12s %s   smtp %s   imap %s\n", d, out.Domains[d].URL, out.Domains[d].SMTP, out.Domains[d].IMAP)
	}
	fmt.Fprintf(w, "\n  DNS          %s (SRV records of every domain: pass --dns %s)\n\n", out.DNS, out.DNS)
	for _, addr := range addrs {
		du := out.Users[addr]
		fmt.Fprintf(w, "  %s (password %s):\n    export PULLMAIL_SERVER=%s PULLMAIL_CA=%s PULLMAIL_TOKEN=%s\n", addr, du.Password, du.Server, out.CA, du.Token)
	}
	fmt.Fprintln(w, "\nPress Ctrl-C to stop.")
	select {
	case <-ctx.Done():
		return sb.Close()
	case err := <-sb.Err():
		return err
	}
}
