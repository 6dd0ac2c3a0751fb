package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pullmail/pullmail/client"
	"github.com/pullmail/pullmail/discovery"
	"github.com/pullmail/pullmail/discovery/dnstest"
	"github.com/pullmail/pullmail/tlsca"
)

// federation is a set of Pullmail domains, each its own 'pullmail serve'
// process, that find each other as real domains do (docs/PROTOCOL.md
// §11.1): SRV records in a DNS server of the benchmark's own, whose targets
// as.D and mbx.D (A 127.0.0.1) point at an HTTPS redirect service that
// sends each well-known request on to the domain's URL. One CA signs every
// certificate. Every server gets --dns, so nothing leaves 127.0.0.0/8.
//
// Each domain's public port is a counting proxy (bytes between domains);
// the domain's own users talk to the server's direct port, so their
// uploads are not counted as wire bytes.
type federation struct {
	bin     string
	dir     string
	dns     *dnstest.Server
	caPath  string
	redir   *http.Server
	domains map[string]*domainProc
	order   []string
}

// domainProc is one domain's server.
type domainProc struct {
	domain  string
	dir     string
	url     string // public: the proxy
	direct  string // the server itself
	listen  int
	proxy   *countingProxy
	cmd     *exec.Cmd
	done    chan struct{}
	stderr  *syncBuffer
	tokens  map[string]string
	profile string // CPU profile file, or ""
}

// syncBuffer is a bytes.Buffer safe for a process's writer and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 1<<20 { // keep the tail only
		s.b.Reset()
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// newFederation publishes the users' domains under dir, creates their data
// directories, users and tokens, and starts every server. profileDir, when
// set, makes each server write its CPU profile there.
func newFederation(ctx context.Context, bin, dir, profileDir string, users []string) (_ *federation, err error) {
	caDir := filepath.Join(dir, "ca")
	ca, err := tlsca.LoadOrCreate(caDir)
	if err != nil {
		return nil, fmt.Errorf("local CA: %w", err)
	}
	dns, err := dnstest.Start()
	if err != nil {
		return nil, fmt.Errorf("DNS server: %w", err)
	}
	f := &federation{bin: bin, dir: dir, dns: dns, caPath: ca.CertPath(), domains: map[string]*domainProc{}}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	byDomain := map[string][]string{}
	for _, u := range users {
		_, d, _ := strings.Cut(u, "@")
		if _, ok := byDomain[d]; !ok {
			f.order = append(f.order, d)
		}
		byDomain[d] = append(byDomain[d], u)
	}

	type target struct{ url, path string }
	targets := map[string]target{}
	var hosts []string
	for _, d := range f.order {
		listen, err := freePort()
		if err != nil {
			return nil, err
		}
		proxy, err := startProxy("127.0.0.1:0", fmt.Sprintf("127.0.0.1:%d", listen))
		if err != nil {
			return nil, err
		}
		p := &domainProc{domain: d, dir: filepath.Join(dir, d), listen: listen, proxy: proxy,
			url: "https://" + proxy.ln.Addr().String(), direct: fmt.Sprintf("https://127.0.0.1:%d", listen),
			stderr: &syncBuffer{}, tokens: map[string]string{}}
		if profileDir != "" {
			p.profile = filepath.Join(profileDir, d+".cpu.pprof")
		}
		f.domains[d] = p
		targets["as."+d] = target{p.url, discovery.PathASMetadata}
		targets["mbx."+d] = target{p.url, discovery.PathMailbox}
		hosts = append(hosts, "as."+d, "mbx."+d)
	}
	tc, err := ca.TLSConfig(hosts)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f.redir = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			host, _, err := net.SplitHostPort(r.Host)
			if err != nil {
				host = r.Host
			}
			to, ok := targets[strings.ToLower(host)]
			if !ok || r.URL.Path != to.path {
				http.NotFound(w, r)
				return
			}
			http.Redirect(w, r, to.url+to.path, http.StatusFound)
		}),
		TLSConfig:         tc,
		ReadHeaderTimeout: 10 * time.Second,
	}
	go f.redir.ServeTLS(ln, "", "")
	rport := uint16(ln.Addr().(*net.TCPAddr).Port)
	for _, d := range f.order {
		dns.AddA("as."+d, "127.0.0.1")
		dns.AddA("mbx."+d, "127.0.0.1")
		dns.AddSRV(discovery.ServiceAS+d, 10, 5, rport, "as."+d, 3600)
		dns.AddSRV(discovery.ServiceRS+d, 10, 5, rport, "mbx."+d, 3600)
	}

	// The shared CA is each server's local CA, so its certificate for
	// 127.0.0.1 is trusted by the others (--peer-ca) and by the clients.
	for _, d := range f.order {
		p := f.domains[d]
		if err := os.MkdirAll(p.dir, 0o700); err != nil {
			return nil, err
		}
		for _, name := range []string{tlsca.CertFile, tlsca.KeyFile} {
			b, err := os.ReadFile(filepath.Join(caDir, name))
			if err != nil {
				return nil, err
			}
			if err := os.WriteFile(filepath.Join(p.dir, name), b, 0o600); err != nil {
				return nil, err
			}
		}
		for _, u := range byDomain[d] {
			if _, err := f.run(ctx, "user", "add", "--data", p.dir, u, "--password", u+"-password"); err != nil {
				return nil, err
			}
			tok, err := f.run(ctx, "token", "create", "--data", p.dir, u)
			if err != nil {
				return nil, err
			}
			p.tokens[u] = strings.TrimSpace(tok)
		}
	}
	for _, d := range f.order {
		if err := f.domains[d].start(f); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// run runs a pullmail command and returns its standard output.
func (f *federation) run(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, f.bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("pullmail %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// start runs the domain's server and waits until it serves.
func (p *domainProc) start(f *federation) error {
	args := []string{"serve"}
	if p.profile != "" {
		// serve has no profiling flag: 'pullmail bench serve' wraps it.
		args = []string{"bench", "serve", "--", p.profile}
	}
	args = append(args, "--data", p.dir, "--domain", p.domain,
		"--listen", fmt.Sprintf("127.0.0.1:%d", p.listen), "--public-url", p.url,
		"--dns", f.dns.Addr(), "--peer-ca", f.caPath, "--allow-private-peers", "--log-level", "warn")
	cmd := exec.Command(f.bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", p.domain, err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	exited := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "pullmail serving") {
				close(ready)
				break
			}
		}
		io.Copy(io.Discard, stdout)
		exited <- cmd.Wait()
		close(p.done)
	}()
	select {
	case <-ready:
		return nil
	case err := <-exited:
		return fmt.Errorf("%s exited at start (%v): %s", p.domain, err, p.stderr.String())
	case <-time.After(30 * time.Second):
		return fmt.Errorf("%s did not start: %s", p.domain, p.stderr.String())
	}
}

// stop ends the server with SIGTERM (so a CPU profile is written), or
// SIGKILL after 15 s.
func (p *domainProc) stop() { stopProcess(p.cmd, p.done, 15*time.Second) }

// Close stops every server, the redirect service, the proxies and DNS.
func (f *federation) Close() {
	var wg sync.WaitGroup
	for _, p := range f.domains {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.stop()
			p.proxy.close()
		}()
	}
	wg.Wait()
	if f.redir != nil {
		f.redir.Close()
	}
	f.dns.Close()
}

// client returns a Go client for user that talks to its server directly.
func (f *federation) client(user string) (*client.Client, error) {
	_, d, _ := strings.Cut(user, "@")
	p := f.domains[d]
	return client.New(p.direct, p.tokens[user], f.caPath)
}

// wire is the bytes that passed between domains so far.
func (f *federation) wire() int64 {
	var n int64
	for _, p := range f.domains {
		n += p.proxy.bytes.Load()
	}
	return n
}

// pids returns the server processes of domains, by domain.
func (f *federation) pids(domains ...string) map[string]int {
	m := map[string]int{}
	for _, d := range domains {
		m[d] = f.domains[d].cmd.Process.Pid
	}
	return m
}
