package cli

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pullmail/pullmail/account"
	"github.com/pullmail/pullmail/discovery"
	"github.com/pullmail/pullmail/discovery/dnstest"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/server"
	"github.com/pullmail/pullmail/tlsca"
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
	ca, err := tlsca.LoadOrCreate(dir)
	if err != nil {
		return fmt.Errorf("local CA: %w", err)
	}
	known := map[string]bool{}
	for _, d := range domains {
		known[d] = true
	}
	byDomain := map[string][]string{}
	for _, u := range users {
		addr, err := account.NormalizeAddress(u)
		if err != nil {
			return fmt.Errorf("--users: %q: %w", u, err)
		}
		_, d, _ := strings.Cut(addr, "@")
		if !known[d] {
			return usagef("user %s is not in any of --domains", addr)
		}
		byDomain[d] = append(byDomain[d], addr)
	}

	out := DevFile{CA: ca.CertPath(), Domains: map[string]DevDomain{}, Users: map[string]DevUser{}}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, len(domains))
	// Listen first: the sandbox DNS publishes the URLs, and every server
	// must know the DNS server when it opens (to find the others).
	lns := map[string]net.Listener{}
	urls := map[string]string{}
	for _, d := range domains {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer ln.Close()
		lns[d], urls[d] = ln, "https://"+ln.Addr().String()
	}
	fed, err := startDevFederation(ca, urls, log)
	if err != nil {
		return err
	}
	defer fed.Close()
	out.DNS = fed.DNS.Addr()
	for _, d := range domains {
		ddir := filepath.Join(dir, d)
		// Every domain's certificate comes from the sandbox's one CA.
		if err := os.MkdirAll(ddir, 0o700); err != nil {
			return err
		}
		for _, f := range []string{"ca.pem", "ca-key.pem"} {
			if err := copyFile(filepath.Join(dir, f), filepath.Join(ddir, f)); err != nil {
				return err
			}
		}
		ln, url := lns[d], urls[d]
		srv, err := server.Open(ctx, server.Config{DataDir: ddir, Domain: d, Log: log, PublicURL: url,
			DNS: out.DNS, PeerCA: ca.CertPath(), AllowPrivatePeers: true})
		if err != nil {
			return fmt.Errorf("%s: %w", d, err)
		}
		defer srv.Close()
		out.Domains[d] = DevDomain{URL: url}
		for _, addr := range byDomain[d] {
			u, err := devUser(ctx, srv.Meta, ddir, addr)
			if err != nil {
				return fmt.Errorf("%s: %w", addr, err)
			}
			u.Server = url
			out.Users[addr] = u
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.ServeListener(ctx, ln, nil); err != nil {
				errc <- fmt.Errorf("%s: %w", d, err)
				cancel()
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-ctx.Done()
		fed.Shutdown()
	}()

	b, _ := json.MarshalIndent(out, "", "  ")
	if err := writeFileAtomic(filepath.Join(dir, "dev.json"), append(b, '\n'), 0o600); err != nil {
		return err
	}
	w := env.Stdout
	fmt.Fprintf(w, "Pullmail sandbox in %s (details: %s)\n\n", dir, filepath.Join(dir, "dev.json"))
	for _, d := range domains {
		fmt.Fprintf(w, "  %-12s %s\n", d, out.Domains[d].URL)
	}
	fmt.Fprintf(w, "\n  DNS          %s (SRV records of every domain: pass --dns %s)\n\n", out.DNS, out.DNS)
	for _, u := range users {
		addr, _ := account.NormalizeAddress(u)
		du := out.Users[addr]
		fmt.Fprintf(w, "  %s (password %s):\n    export PULLMAIL_SERVER=%s PULLMAIL_CA=%s PULLMAIL_TOKEN=%s\n", addr, du.Password, du.Server, out.CA, du.Token)
	}
	fmt.Fprintln(w, "\nPress Ctrl-C to stop.")
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// devFederation makes the sandbox's domains discoverable (docs/PROTOCOL.md
// §11.1): a DNS server with each domain's two SRV records, and the HTTPS
// redirect service that their targets name.
//
// An SRV target is a host name, never an address, and a domain's server is
// at https://127.0.0.1:PORT (the URL its users and its issuer use). So the
// targets are as.D and mbx.D, with A records 127.0.0.1, on the port of one
// redirect service whose certificate (from the sandbox's CA) names them all;
// it redirects the well-known request once to the same path on the domain's
// URL, which discovery maps to the base URL https://127.0.0.1:PORT, equal to
// the AS's issuer and the mailbox document's url. (Making the domain's own
// server the target would need its issuer to be https://D:PORT, a name that
// only this DNS server knows, and the CLI could not reach it.)
type devFederation struct {
	DNS  *dnstest.Server
	Port uint16 // the redirect service's
	srv  *http.Server
	done chan struct{}
}

// startDevFederation publishes urls (domain → base URL).
func startDevFederation(ca *tlsca.CA, urls map[string]string, log *slog.Logger) (*devFederation, error) {
	type target struct{ url, path string } // the domain's URL, the one path served
	targets := map[string]target{}         // by host: as.D, mbx.D
	var hosts []string
	for d, u := range urls {
		targets["as."+d] = target{u, discovery.PathASMetadata}
		targets["mbx."+d] = target{u, discovery.PathMailbox}
		hosts = append(hosts, "as."+d, "mbx."+d)
	}
	tc, err := ca.TLSConfig(hosts)
	if err != nil {
		return nil, fmt.Errorf("redirect service certificate: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("redirect service: %w", err)
	}
	dns, err := dnstest.Start()
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("DNS server: %w", err)
	}
	f := &devFederation{DNS: dns, Port: uint16(ln.Addr().(*net.TCPAddr).Port), done: make(chan struct{})}
	for d := range urls {
		dns.AddA("as."+d, "127.0.0.1")
		dns.AddA("mbx."+d, "127.0.0.1")
		dns.AddSRV(discovery.ServiceAS+d, 10, 5, f.Port, "as."+d, 3600)
		dns.AddSRV(discovery.ServiceRS+d, 10, 5, f.Port, "mbx."+d, 3600)
	}
	f.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			host, _, err := net.SplitHostPort(r.Host)
			if err != nil {
				host = r.Host
			}
			to, ok := targets[strings.ToLower(host)]
			if !ok || r.URL.Path != to.path || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
				http.NotFound(w, r)
				return
			}
			http.Redirect(w, r, to.url+to.path, http.StatusFound)
		}),
		TLSConfig:         tc,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	go func() {
		defer close(f.done)
		f.srv.ServeTLS(ln, "", "")
	}()
	return f, nil
}

// Shutdown stops the redirect service gracefully.
func (f *devFederation) Shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f.srv.Shutdown(ctx)
}

// Close stops the redirect service and the DNS server.
func (f *devFederation) Close() error {
	err := f.srv.Close()
	<-f.done
	return errors.Join(err, f.DNS.Close())
}

// devUser creates the user on first start, keeping its password in
// DIR/passwords/<address> so a restarted sandbox has the same passwords; it
// makes a new token each start.
func devUser(ctx context.Context, st meta.Store, dir, addr string) (DevUser, error) {
	pwFile := filepath.Join(dir, "passwords", addr)
	var pw string
	if b, err := os.ReadFile(pwFile); err == nil {
		pw = strings.TrimSpace(string(b))
	} else {
		var r [12]byte
		rand.Read(r[:])
		pw = base64.RawURLEncoding.EncodeToString(r[:])
	}
	if _, err := st.UserByAddress(ctx, addr); errors.Is(err, meta.ErrNotFound) {
		hash, err := account.HashPassword(pw)
		if err != nil {
			return DevUser{}, err
		}
		if err := st.Update(ctx, func(tx meta.Tx) error {
			_, err := tx.AddUser(ctx, meta.User{Address: addr, PasswordHash: hash})
			return err
		}); err != nil {
			return DevUser{}, err
		}
		if err := os.MkdirAll(filepath.Dir(pwFile), 0o700); err != nil {
			return DevUser{}, err
		}
		if err := writeFileAtomic(pwFile, []byte(pw+"\n"), 0o600); err != nil {
			return DevUser{}, err
		}
	} else if err != nil {
		return DevUser{}, err
	}
	tok, err := CreateToken(ctx, st, addr, 0, "pullmail dev")
	if err != nil {
		return DevUser{}, err
	}
	return DevUser{Token: tok, Password: pw}, nil
}

// writeFileAtomic writes a file by temp file, fsync and rename, so readers
// never see half of it.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	if cur, err := os.ReadFile(dst); err == nil && string(cur) == string(b) {
		return nil
	}
	return writeFileAtomic(dst, b, st.Mode().Perm())
}
