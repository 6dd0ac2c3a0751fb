package bench

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"github.com/pullmail/pullmail/discovery/dnstest"
	"github.com/pullmail/pullmail/sandbox"
	"github.com/pullmail/pullmail/tlsca"
)

// peerSpec says where a peer's source comes from and how it is built.
type peerSpec struct {
	name, module, version string
	pkg                   string // the main package, relative to the module root
	cgo                   bool
	tags                  string // build tags ("": none), part of the cache's name
}

// Peers are the SMTP servers the benchmark compares Pullmail with.
var peerSpecs = map[string]peerSpec{
	"maddy": {name: "maddy", module: "github.com/foxcpp/maddy", version: "v0.8.2", pkg: "./cmd/maddy", cgo: true},
	"mox":   {name: "mox", module: "github.com/mjl-/mox", version: "v0.0.15", pkg: ".", cgo: false},
}

// PeerNames lists the peers 'pullmail bench --peers' knows, in table order.
var PeerNames = []string{"maddy", "mox"}

// Build is how a peer's binary was had.
type Build struct {
	Peer    string  `json:"peer"`
	Version string  `json:"version"`
	Binary  string  `json:"binary"`
	Cached  bool    `json:"cached"`            // built by an earlier run
	Seconds float64 `json:"seconds,omitempty"` // go mod download + copy + go build, this run
}

// buildPeer returns the peer's binary from cacheDir, building it first if
// it is not there: 'go mod download -json module@version' (the module
// proxy; 'go install' is refused there), a copy of the read-only module
// directory in a temporary directory, and 'go build' in it. Nothing is
// vendored or kept but the binary.
func buildPeer(ctx context.Context, spec peerSpec, cacheDir string, progress io.Writer) (Build, error) {
	key := spec.name + "-" + spec.version
	if spec.tags != "" {
		key += "-" + spec.tags
	}
	b := Build{Peer: spec.name, Version: spec.version, Binary: filepath.Join(cacheDir, key, spec.name)}
	if fi, err := os.Stat(b.Binary); err == nil && fi.Mode().IsRegular() {
		b.Cached = true
		return b, nil
	}
	start := time.Now()
	goBin, err := exec.LookPath("go")
	if err != nil {
		return b, fmt.Errorf("building %s needs the go command: %w", spec.name, err)
	}
	fmt.Fprintf(progress, "building %s %s (once; cached in %s)\n", spec.name, spec.version, filepath.Dir(b.Binary))
	out, err := exec.CommandContext(ctx, goBin, "mod", "download", "-json", spec.module+"@"+spec.version).Output()
	if err != nil {
		return b, fmt.Errorf("go mod download %s@%s: %w", spec.module, spec.version, errText(err))
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return b, fmt.Errorf("go mod download %s@%s: no module directory (%v %s)", spec.module, spec.version, err, mod.Error)
	}
	tmp, err := os.MkdirTemp("", "pullmail-bench-build-")
	if err != nil {
		return b, err
	}
	defer os.RemoveAll(tmp)
	src := filepath.Join(tmp, spec.name)
	if err := os.CopyFS(src, os.DirFS(mod.Dir)); err != nil {
		return b, fmt.Errorf("copying %s: %w", mod.Dir, err)
	}
	if err := os.MkdirAll(filepath.Dir(b.Binary), 0o755); err != nil {
		return b, err
	}
	tmpBin := b.Binary + ".tmp"
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-tags", spec.tags, "-o", tmpBin, spec.pkg)
	cmd.Dir = src
	cgo := "0"
	if spec.cgo {
		cgo = "1"
	}
	// -mod=mod: mox's module holds a vendor/modules.txt without the
	// vendored files (module zips leave them out).
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local", "CGO_ENABLED="+cgo, "GOFLAGS=-mod=mod -buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		return b, fmt.Errorf("go build %s: %v: %s", spec.name, err, lastLines(string(out), 10))
	}
	if err := os.Rename(tmpBin, b.Binary); err != nil {
		return b, err
	}
	b.Seconds = time.Since(start).Seconds()
	return b, nil
}

func errText(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return fmt.Errorf("%v: %s", err, lastLines(string(ee.Stderr), 5))
	}
	return err
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

// peer is one running SMTP server: the receiving MX of every recipient
// domain.
type peer struct {
	name, version string
	dir           string   // everything it stores
	msgDirs       []string // where message files appear
	settings      []string // every setting changed from its defaults
	port          int      // the server's own SMTP port
	proxy         *sandbox.Proxy
	cmd           *exec.Cmd
	done          chan struct{}
	stderr        *sandbox.Buffer
	onStop        func() // after the process has ended
}

// addr is where senders connect: the counting proxy.
func (p *peer) addr() string { return p.proxy.Addr() }

// The peers' DNS server. They resolve with their own resolvers from
// /etc/resolv.conf (mox checks the MAIL FROM domain's MX and evaluates SPF,
// DKIM, DMARC and iprev on every delivery); each runs in a mount namespace
// of its own whose /etc/resolv.conf names a loopback address where the
// benchmark serves a dnstest server's records on port 53 (the first of
// peerDNSAddrs free: another run may hold one). No query leaves 127.0.0.0/8.
func peerDNSAddrs() []string {
	var as []string
	for i := 3; i < 43; i++ {
		as = append(as, fmt.Sprintf("127.1.2.%d", i))
	}
	return as
}

func resolvConf(dnsAddr string) string {
	return "# pullmail bench: the peers' DNS\nnameserver " + dnsAddr + "\n"
}

// peerDNS serves records to the peers on addr:53 (UDP and TCP): A records
// for the sending domain (so it has an implicit MX, RFC 5321 §5.1) and
// nothing else, so SPF, DMARC, DKIM and PTR queries get quick negative
// answers.
type peerDNS struct {
	addr     string // the IP address
	recs     *dnstest.Server
	udp, tcp *dns.Server
}

func startPeerDNS(senderDomains ...string) (*peerDNS, error) {
	recs, err := dnstest.Start()
	if err != nil {
		return nil, err
	}
	for _, d := range senderDomains {
		recs.AddA(d, "127.0.0.1")
	}
	var first error
	for _, ip := range peerDNSAddrs() {
		addr := net.JoinHostPort(ip, "53")
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			if first == nil {
				first = fmt.Errorf("the peers' DNS server on %s (root needed): %w", addr, err)
			}
			continue
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			pc.Close()
			if first == nil {
				first = fmt.Errorf("the peers' DNS server on %s: %w", addr, err)
			}
			continue
		}
		p := &peerDNS{addr: ip, recs: recs, udp: &dns.Server{PacketConn: pc, Handler: recs}, tcp: &dns.Server{Listener: ln, Handler: recs}}
		go p.udp.ActivateAndServe()
		go p.tcp.ActivateAndServe()
		return p, nil
	}
	recs.Close()
	return nil, first
}

func (p *peerDNS) Close() {
	p.udp.Shutdown()
	p.tcp.Shutdown()
	p.recs.Close()
}

// isolatedCommand runs bin with args in a new mount namespace whose
// /etc/resolv.conf is resolv (unshare(1), needs root or CAP_SYS_ADMIN).
// The process is bin itself (exec), so its pid is the server's.
func isolatedCommand(resolv, bin string, args ...string) *exec.Cmd {
	a := append([]string{"--mount", "--propagation", "private", "sh", "-c",
		`mount --bind "$0" /etc/resolv.conf && exec "$@"`, resolv, bin}, args...)
	return exec.Command("unshare", a...)
}

// checkIsolation writes the peers' resolv.conf, naming dnsAddr, and makes
// sure isolatedCommand works here.
func checkIsolation(dir, dnsAddr string) (string, error) {
	resolv := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte(resolvConf(dnsAddr)), 0o644); err != nil {
		return "", err
	}
	out, err := isolatedCommand(resolv, "cat", "/etc/resolv.conf").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "nameserver "+dnsAddr) {
		return "", fmt.Errorf("the SMTP peers run in a mount namespace with a loopback-only /etc/resolv.conf, and unshare failed (root or CAP_SYS_ADMIN needed): %v %s", err, strings.TrimSpace(string(out)))
	}
	return resolv, nil
}

// peerCert writes a certificate for localhost from ca and its key, PEM.
func peerCert(ca *tlsca.CA, dir string) (certPath, keyPath string, err error) {
	c, err := ca.Issue([]string{"localhost", "mx.bench.test", outMX}, 24*time.Hour)
	if err != nil {
		return "", "", err
	}
	var certPEM []byte
	for _, der := range c.Certificate {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	key, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		return "", "", err
	}
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certPath, certPEM, 0o644); err != nil {
		return "", "", err
	}
	return certPath, keyPath, os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600)
}

// startMaddy configures maddy in dir and starts it: one SMTP endpoint on
// loopback that delivers straight into its storage.imapsql (SQLite
// index, message bodies as files in state/messages).
func startMaddy(ctx context.Context, bin, dir, resolv string, ca *tlsca.CA, users []string) (*peer, error) {
	port, err := sandbox.FreePort()
	if err != nil {
		return nil, err
	}
	cert, key, err := peerCert(ca, dir)
	if err != nil {
		return nil, err
	}
	state := filepath.Join(dir, "state")
	conf := fmt.Sprintf(`state_dir %s
runtime_dir %s
hostname mx.bench.test
tls file %s %s

storage.imapsql local_mailboxes {
    driver sqlite3
    dsn imapsql.db
    sqlite3_busy_timeout 600000
}

smtp tcp://127.0.0.1:%d {
    max_message_size 4G
    dmarc no
    deliver_to &local_mailboxes
}
`, state, filepath.Join(dir, "run"), cert, key, port)
	confPath := filepath.Join(dir, "maddy.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	for _, u := range users {
		out, err := exec.CommandContext(ctx, bin, "--config", confPath, "imap-acct", "create", u).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("maddy imap-acct create %s: %v: %s", u, err, lastLines(string(out), 3))
		}
	}
	p := &peer{name: "maddy", version: peerSpecs["maddy"].version, dir: state, port: port,
		msgDirs: []string{filepath.Join(state, "messages")},
		settings: []string{
			"one `smtp` endpoint on tcp://127.0.0.1:PORT (random port), no submission/IMAP endpoints",
			"`max_message_size 4G` (default 32M)",
			"`sqlite3_busy_timeout 600000` (default 5000 ms): with the default, the fan-out's parallel 100 MiB transactions failed with 554 \"database is locked\" while another stored its copies",
			"`dmarc no` (default yes); no `check { }` block: no SPF, DKIM, require_mx_record, rDNS or DNSBL checks",
			"no `limits { }` block (the sample config has `all rate 20 1s`, `all concurrency 10`)",
			"one IMAP account per recipient (`maddy imap-acct create`, default folders): imapsql refuses unknown recipients",
			"`deliver_to &local_mailboxes` directly (storage.imapsql, SQLite `imapsql.db`, default `fs messages/` blob store): no queue, no local_routing/rewrites",
			"`tls file` with a self-signed certificate (STARTTLS offered; the sender uses it)",
			"state_dir/runtime_dir under the run's temporary directory; default log (stderr, no debug)",
			"/etc/resolv.conf replaced in its own mount namespace by one naming the benchmark's loopback DNS server (no DNS leaves the machine)",
		}}
	return p, p.start(ctx, isolatedCommand(resolv, bin, "--config", confPath, "run"))
}

// startMox configures mox in dir and starts it in its localserve mode:
// the same SMTP server, delivery analysis and account store (bstore index,
// one file per message) as 'mox serve', run as the invoking user ('mox
// serve' must start as root and hand its sockets to an unprivileged
// child). One account per recipient address, one domain per recipient
// domain.
func startMox(ctx context.Context, bin, dir, resolv string, rcptDomains []string, users []string) (*peer, error) {
	port, err := sandbox.FreePort()
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "mox")
	init := exec.CommandContext(ctx, bin, "localserve", "-dir", cfg, "-initonly")
	if out, err := init.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("mox localserve -initonly: %v: %s", err, lastLines(string(out), 5))
	}
	mc := fmt.Sprintf(`DataDir: .
LogLevel: error
User: %d
Hostname: localhost
TLS:
	CA:
		AdditionalToSystem: true
		CertFiles:
			- localhost.crt
AdminPasswordFile: adminpasswd
Listeners:
	local:
		IPs:
			- 127.0.0.1
		SMTPMaxMessageSize: %d
		TLS:
			KeyCerts:
				-
					CertFile: localhost.crt
					KeyFile: localhost.key
		SMTP:
			Enabled: true
			Port: %d
Postmaster:
	Account: mox
	Mailbox: Inbox
`, os.Getuid(), int64(4)<<30, port)
	var dc strings.Builder
	dc.WriteString("Domains:\n\tlocalhost: nil\n")
	for _, d := range rcptDomains {
		fmt.Fprintf(&dc, "\t%s: nil\n", d)
	}
	dc.WriteString("Accounts:\n\tmox:\n\t\tDomain: localhost\n\t\tDestinations:\n\t\t\tmox@localhost: nil\n\t\tNoFirstTimeSenderDelay: true\n")
	for _, u := range users {
		l, d, _ := strings.Cut(u, "@")
		fmt.Fprintf(&dc, "\t%s-%s:\n\t\tDomain: %s\n\t\tDestinations:\n\t\t\t%s: nil\n\t\tNoFirstTimeSenderDelay: true\n",
			l, strings.ReplaceAll(d, ".", "-"), d, u)
	}
	if err := os.WriteFile(filepath.Join(cfg, "mox.conf"), []byte(mc), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(cfg, "domains.conf"), []byte(dc.String()), 0o644); err != nil {
		return nil, err
	}
	p := &peer{name: "mox", version: peerSpecs["mox"].version, dir: cfg, port: port,
		msgDirs: []string{filepath.Join(cfg, "accounts")},
		settings: []string{
			"`mox localserve -dir DIR` (created with `-initonly`, then mox.conf and domains.conf replaced): the SMTP server, delivery analysis and account store of `mox serve`, run as the invoking user",
			"listener `local` on 127.0.0.1 only with SMTP on a random port; submission, IMAP, HTTP, admin, webmail, webapi and metrics listeners removed",
			"`SMTPMaxMessageSize: 4294967296` (default 100 MB)",
			"`LogLevel: error` (localserve's default is traceauth); `Pedantic` off (localserve turns it on)", "`User:` the invoking user's uid",
			"one account per recipient address, one domain per recipient domain, each account without `JunkFilter` (else a first message from an unknown sender is filed as junk), without `RejectsMailbox` and `AutomaticJunkFlags`, with `NoFirstTimeSenderDelay: true` (default: a 15 s delay)",
			"localserve's self-signed certificate for STARTTLS (the sender uses it)",
			"no DKIM signing selectors, no DNSBLs; mox still checks the MAIL FROM domain's MX and evaluates SPF, DKIM, DMARC and iprev (none of these can be switched off): /etc/resolv.conf is replaced in its own mount namespace by one naming the benchmark's loopback DNS server, which has an A record for the sending domain and nothing else (SPF/DMARC none, iprev fails)",
			"mox's fixed per-IP limits (not configurable: 500 messages and 1000 MiB per minute, 10,000 messages and 3000 MB per day per source address): the sender spreads its connections over source addresses 127.X.Y.1, at most 400 messages each",
		}}
	return p, p.start(ctx, isolatedCommand(resolv, bin, "-config", filepath.Join(cfg, "mox.conf"), "localserve", "-dir", cfg))
}

// start runs cmd, puts a counting proxy in front of the SMTP port and
// waits until the server greets.
func (p *peer) start(ctx context.Context, cmd *exec.Cmd) error {
	p.stderr = &sandbox.Buffer{}
	cmd.Stdout, cmd.Stderr = p.stderr, p.stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", p.name, err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	to := fmt.Sprintf("127.0.0.1:%d", p.port)
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited at start: %s", p.name, lastLines(p.stderr.String(), 10))
		default:
		}
		c, err := net.DialTimeout("tcp", to, time.Second)
		if err == nil {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			l, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if strings.HasPrefix(l, "220") {
				break
			}
		}
		if time.Now().After(deadline) {
			p.stop()
			return fmt.Errorf("%s did not start: %s", p.name, lastLines(p.stderr.String(), 10))
		}
		time.Sleep(100 * time.Millisecond)
	}
	proxy, err := sandbox.StartProxy("127.0.0.1:0", to)
	if err != nil {
		p.stop()
		return err
	}
	p.proxy = proxy
	return nil
}

// stop ends the server: SIGTERM, SIGKILL after 10 s.
func (p *peer) stop() {
	if p.onStop != nil {
		defer p.onStop()
	}
	if p.proxy != nil {
		p.proxy.Close()
	}
	stopProcess(p.cmd, p.done, 10*time.Second)
}

// stopProcess ends cmd, whose exit closes done: SIGTERM, then SIGKILL after
// grace. It does nothing to a process not started or already ended.
func stopProcess(cmd *exec.Cmd, done <-chan struct{}, grace time.Duration) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
}

func (p *peer) pids() map[string]int { return map[string]int{p.name: p.cmd.Process.Pid} }

// sourceIPs hands out loopback source addresses, each in a /21 of its
// own, so that per-address limits (mox's) apply per sender connection.
type sourceIPs struct {
	mu   sync.Mutex
	next int
}

func (s *sourceIPs) get() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.next
	s.next++
	return fmt.Sprintf("127.%d.%d.1", 1+k/32, 8*(k%32))
}

// PeerBinary returns the binary of the peer name ("maddy" or "mox", at the
// version the benchmark pins) from cacheDir, building it there first if it
// is missing, as the benchmark does: for the interop tests, which exchange
// mail with the same builds.
func PeerBinary(ctx context.Context, name, cacheDir string, progress io.Writer) (string, error) {
	spec, ok := peerSpecs[name]
	if !ok {
		return "", fmt.Errorf("unknown peer %q (known: %s)", name, strings.Join(PeerNames, ", "))
	}
	b, err := buildPeer(ctx, spec, cacheDir, progress)
	return b.Binary, err
}

// PeerVersion is the version of the peer name that PeerBinary builds.
func PeerVersion(name string) string { return peerSpecs[name].version }

// DefaultCacheDir is where 'pullmail bench' keeps the peers' binaries
// unless --cache says otherwise.
func DefaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "pullmail-bench")
	}
	return "pullmail-bench-cache"
}

// PeerNet is the network the peers run in, for tests outside bench: a
// DNS server on port 53 of a loopback address (its records in DNS) and a
// resolv.conf naming it that Command binds over /etc/resolv.conf in a
// mount namespace of the peer's own (root needed). Nothing leaves
// 127.0.0.0/8.
type PeerNet struct {
	DNS    *dnstest.Server
	resolv string
	p      *peerDNS
}

// StartPeerNet starts the DNS server and writes the resolv.conf in dir.
func StartPeerNet(dir string) (*PeerNet, error) {
	p, err := startPeerDNS()
	if err != nil {
		return nil, err
	}
	resolv, err := checkIsolation(dir, p.addr)
	if err != nil {
		p.Close()
		return nil, err
	}
	return &PeerNet{DNS: p.recs, resolv: resolv, p: p}, nil
}

// Command runs bin with args in the peers' network (the process is bin).
func (n *PeerNet) Command(bin string, args ...string) *exec.Cmd {
	return isolatedCommand(n.resolv, bin, args...)
}

// Close stops the DNS server.
func (n *PeerNet) Close() { n.p.Close() }
