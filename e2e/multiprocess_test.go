package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pullmail/pullmail/discovery"
	"github.com/pullmail/pullmail/discovery/dnstest"
	"github.com/pullmail/pullmail/tlsca"
)

// federation is a set of domains, each its own 'pullmail serve' process,
// that find each other the way real domains do (docs/PROTOCOL.md §11.1):
// SRV records in a DNS server of the test's own, whose targets as.D and
// mbx.D (A records 127.0.0.1) point at an HTTPS redirect service in the test
// process that sends each well-known request on to the domain's URL,
// https://127.0.0.1:PORT. Every certificate comes from one CA. Nothing
// leaves 127.0.0.0/8: every server gets --dns.
type federation struct {
	t       testing.TB
	dns     *dnstest.Server
	caPath  string
	caDir   string
	domains map[string]*domainProc
}

// domainProc is one domain's server; its port stays the same across
// restarts, so that what the other domains discovered stays true.
type domainProc struct {
	fed    *federation
	domain string
	dir    string
	port   int
	url    string
	// listen, when set, is the port the server listens on instead of
	// port (the public one): a proxy in front takes port.
	listen   int
	logLevel string // default info
	cmd      *exec.Cmd
	done     chan struct{} // closed when cmd has been waited for
	stderr   *syncBuffer   // every run's, appended
	tokens   map[string]string
}

// syncBuffer is a bytes.Buffer safe for the process's writer and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// newFederation publishes users' domains and creates their data
// directories, users and tokens; start each with (*domainProc).start.
func newFederation(t testing.TB, users ...string) *federation {
	t.Helper()
	caDir := t.TempDir()
	ca, err := tlsca.LoadOrCreate(caDir)
	if err != nil {
		t.Fatal(err)
	}
	dns, err := dnstest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dns.Close() })
	f := &federation{t: t, dns: dns, caPath: ca.CertPath(), caDir: caDir, domains: map[string]*domainProc{}}

	byDomain := map[string][]string{}
	var order []string
	for _, u := range users {
		_, d, _ := strings.Cut(u, "@")
		if _, ok := byDomain[d]; !ok {
			order = append(order, d)
		}
		byDomain[d] = append(byDomain[d], u)
	}

	// The redirect service.
	type target struct{ url, path string }
	targets := map[string]target{}
	var hosts []string
	for _, d := range order {
		port := freePort(t)
		p := &domainProc{fed: f, domain: d, dir: filepath.Join(t.TempDir(), d), port: port,
			url: fmt.Sprintf("https://127.0.0.1:%d", port), stderr: &syncBuffer{}, tokens: map[string]string{}}
		f.domains[d] = p
		targets["as."+d] = target{p.url, discovery.PathASMetadata}
		targets["mbx."+d] = target{p.url, discovery.PathMailbox}
		hosts = append(hosts, "as."+d, "mbx."+d)
	}
	tc, err := ca.TLSConfig(hosts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	redirect := &http.Server{
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
	go redirect.ServeTLS(ln, "", "")
	t.Cleanup(func() { redirect.Close() })
	rport := uint16(ln.Addr().(*net.TCPAddr).Port)
	for _, d := range order {
		dns.AddA("as."+d, "127.0.0.1")
		dns.AddA("mbx."+d, "127.0.0.1")
		dns.AddSRV(discovery.ServiceAS+d, 10, 5, rport, "as."+d, 3600)
		dns.AddSRV(discovery.ServiceRS+d, 10, 5, rport, "mbx."+d, 3600)
	}

	// Data directories: the shared CA is each server's local CA, so its
	// certificate for 127.0.0.1 is trusted by the others (--peer-ca) and by
	// the CLI (PULLMAIL_CA).
	for _, d := range order {
		p := f.domains[d]
		if err := os.MkdirAll(p.dir, 0o700); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{tlsca.CertFile, tlsca.KeyFile} {
			b, err := os.ReadFile(filepath.Join(caDir, name))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(p.dir, name), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		for _, u := range byDomain[d] {
			mustTB(t, nil, "", "user", "add", "--data", p.dir, u, "--password", u+"-password")
			p.tokens[u] = strings.TrimSpace(mustTB(t, nil, "", "token", "create", "--data", p.dir, u))
		}
	}
	return f
}

// env is the CLI environment of user at its domain.
func (f *federation) env(user string) []string {
	_, d, _ := strings.Cut(user, "@")
	p := f.domains[d]
	return []string{"PULLMAIL_SERVER=" + p.url, "PULLMAIL_TOKEN=" + p.tokens[user], "PULLMAIL_CA=" + f.caPath}
}

// start runs the domain's server and waits until it serves.
func (p *domainProc) start() {
	t := p.fed.t
	t.Helper()
	listen, level := p.port, "info"
	if p.listen != 0 {
		listen = p.listen
	}
	if p.logLevel != "" {
		level = p.logLevel
	}
	cmd := exec.Command(bin, "serve", "--data", p.dir, "--domain", p.domain,
		"--listen", fmt.Sprintf("127.0.0.1:%d", listen), "--public-url", p.url,
		"--dns", p.fed.dns.Addr(), "--peer-ca", p.fed.caPath, "--allow-private-peers", "--log-level", level)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if p.cmd == nil {
		t.Cleanup(func() {
			p.kill()
			if t.Failed() {
				t.Logf("%s said:\n%s", p.domain, p.stderr.String())
			}
		})
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
	case err := <-exited:
		t.Fatalf("%s exited at start (%v): %s", p.domain, err, p.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not start: %s", p.domain, p.stderr.String())
	}
}

// kill ends the server with SIGKILL, as a crash would, and waits for it.
func (p *domainProc) kill() {
	if p.cmd == nil {
		return
	}
	select {
	case <-p.done:
	default:
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
}

// inbox lists user's inbox.
func (f *federation) inbox(user string) []listed {
	var l []listed
	if err := json.Unmarshal([]byte(mustTB(f.t, f.env(user), "", "list", "--json")), &l); err != nil {
		f.t.Fatal(err)
	}
	return l
}

// waitComplete waits until user's inbox holds msgid, complete, and
// returns the inbox.
func (f *federation) waitComplete(user, msgid string, within time.Duration) []listed {
	f.t.Helper()
	deadline := time.Now().Add(within)
	for {
		l := f.inbox(user)
		for _, m := range l {
			if m.MessageID == msgid && m.Status == "complete" {
				return l
			}
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("%s's inbox after %v: %+v", user, within, l)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkAttachment downloads msgid's attachment as user and compares it.
func (f *federation) checkAttachment(user, msgid string, want []byte) {
	f.t.Helper()
	saved := strings.TrimSpace(mustTB(f.t, f.env(user), "", "get", msgid, "--out", f.t.TempDir()))
	got, err := os.ReadFile(saved)
	if err != nil || !bytes.Equal(got, want) {
		f.t.Fatalf("%s's attachment differs from what was sent (%d bytes read, %v)", user, len(got), err)
	}
}

func randomFile(t testing.TB, name string, size int) (string, []byte) {
	t.Helper()
	b := make([]byte, size)
	rand.Read(b)
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, b
}

var fetchServedRE = regexp.MustCompile(`path=/federation/v1/resources/(\S+) status=200`)

// TestThreeDomains: one message from a.test to two users at b.test (To, Cc)
// and one at c.test (Bcc), three processes. Every copy completes with the
// attachment intact, the Bcc stays hidden, and a.test serves each resource
// once per recipient domain: b.test pulls once for its two recipients.
func TestThreeDomains(t *testing.T) {
	f := newFederation(t, "alice@a.test", "bob@b.test", "carol@b.test", "dave@c.test")
	for _, d := range []string{"a.test", "b.test", "c.test"} {
		f.domains[d].start()
	}
	attach, payload := randomFile(t, "plans.bin", 5<<20)
	msgid := strings.TrimSpace(must(t, f.env("alice@a.test"), "", "send", "--to", "Bob <bob@b.test>",
		"--cc", "carol@b.test", "--bcc", "dave@c.test", "--subject", "Three domains", "--text", "One push each, one pull each.",
		"--attach", attach))
	for _, u := range []string{"bob@b.test", "carol@b.test", "dave@c.test"} {
		l := f.waitComplete(u, msgid, 60*time.Second)
		if len(l) != 1 || l[0].Subject != "Three domains" || l[0].From != "alice@a.test" {
			t.Fatalf("%s's inbox: %+v", u, l)
		}
		f.checkAttachment(u, msgid, payload)
	}

	for _, u := range []string{"bob@b.test", "carol@b.test"} {
		out := must(t, f.env(u), "", "show", msgid)
		if strings.Contains(out, "dave") || !strings.Contains(out, "One push each, one pull each.") {
			t.Fatalf("%s's copy:\n%s", u, out)
		}
	}
	if out := must(t, f.env("dave@c.test"), "", "show", msgid); !strings.Contains(out, "Bcc: dave@c.test\n") {
		t.Fatalf("dave's copy:\n%s", out)
	}

	// a.test's log: each resource served once to b.test and once to c.test.
	served := map[string]int{}
	for _, m := range fetchServedRE.FindAllStringSubmatch(f.domains["a.test"].stderr.String(), -1) {
		served[m[1]]++
	}
	if len(served) < 2 { // the text and the attachment
		t.Fatalf("a.test served %v", served)
	}
	for cid, n := range served {
		if n != 2 {
			t.Fatalf("a.test served %s %d times, want 2 (once per recipient domain): %v", cid, n, served)
		}
	}
	t.Logf("a.test served %d resources, each twice (b.test, c.test)", len(served))
}

// waitPulling waits until p holds a partial download of at least min bytes
// in its resources' tmp directory.
func waitPulling(t testing.TB, p *domainProc, min int64, within time.Duration) int64 {
	t.Helper()
	tmp := filepath.Join(p.dir, "resources", "tmp")
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		ents, _ := os.ReadDir(tmp)
		for _, e := range ents {
			if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() && fi.Size() >= min {
				return fi.Size()
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s never held %d bytes of a pull in %s", p.domain, min, tmp)
	return 0
}

// TestKillMidTransfer: kill -9 the receiving domain while it pulls a large
// attachment, restart it on the same data and port, and the copy
// completes byte-identical, once; then the same with the sending domain.
func TestKillMidTransfer(t *testing.T) {
	const size = 200 << 20
	f := newFederation(t, "alice@a.test", "bob@b.test")
	a, b := f.domains["a.test"], f.domains["b.test"]
	a.start()
	b.start()

	// The receiver dies.
	{
		attach, payload := randomFile(t, "big1.bin", size)
		msgid := strings.TrimSpace(must(t, f.env("alice@a.test"), "", "send", "--to", "bob@b.test",
			"--subject", "Kill the receiver", "--text", "Still here?", "--attach", attach))
		n := waitPulling(t, b, 8<<20, 60*time.Second)
		b.kill()
		t.Logf("killed b.test with %d bytes pulled", n)
		start := time.Now()
		b.start()
		l := f.waitComplete("bob@b.test", msgid, 3*time.Minute)
		t.Logf("complete %v after the restart", time.Since(start).Round(time.Second))
		copies := 0
		for _, m := range l {
			if m.MessageID == msgid {
				copies++
			}
		}
		if copies != 1 {
			t.Fatalf("bob holds %d copies: %+v", copies, l)
		}
		f.checkAttachment("bob@b.test", msgid, payload)
	}

	// The sender dies.
	{
		attach, payload := randomFile(t, "big2.bin", size)
		msgid := strings.TrimSpace(must(t, f.env("alice@a.test"), "", "send", "--to", "bob@b.test",
			"--subject", "Kill the sender", "--text", "Still there?", "--attach", attach))
		n := waitPulling(t, b, 8<<20, 60*time.Second)
		a.kill()
		t.Logf("killed a.test with %d bytes pulled", n)
		start := time.Now()
		a.start()
		l := f.waitComplete("bob@b.test", msgid, 3*time.Minute)
		t.Logf("complete %v after the restart", time.Since(start).Round(time.Second))
		copies := 0
		for _, m := range l {
			if m.MessageID == msgid {
				copies++
			}
		}
		if copies != 1 {
			t.Fatalf("bob holds %d copies: %+v", copies, l)
		}
		f.checkAttachment("bob@b.test", msgid, payload)
	}
}
