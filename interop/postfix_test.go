package interop

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pullmail/pullmail/sandbox"
	"github.com/pullmail/pullmail/tlsca"
)

// postfixConfig says what one Postfix instance does.
type postfixConfig struct {
	// Relay maps a domain to the next hop Postfix relays its mail to
	// ("[127.0.0.1]:PORT": no MX lookup), through the smtp transport in
	// clear (the recording proxy between them reads the session).
	Relay map[string]string
	// Mailboxes are the addresses Postfix delivers itself, each to a
	// Maildir under the instance's mail directory (virtual(8)).
	Mailboxes []string
	// CA, when set, issues the certificate Postfix's smtpd offers with
	// STARTTLS, for Hostname.
	CA *tlsca.CA
}

// postfix is a running Postfix of the test's own: Debian's binaries with a
// config_directory, queue_directory and data_directory in a temporary
// directory, one smtpd on 127.0.0.1 at a random port, no DNS lookups.
type postfix struct {
	dir, conf, queue, mail string
	port                   int
}

// postfixHost is the instance's myhostname: the name in its Received.
const postfixHost = "postfix.interop.test"

// startPostfix starts an instance (postfix -c DIR start) and stops it when
// the test ends (postfix -c DIR stop, then waits for its master to end).
func startPostfix(t testing.TB, cfg postfixConfig) *postfix {
	t.Helper()
	_, err := os.Stat("/usr/sbin/postfix")
	require(t, err == nil, "Debian's Postfix", "apt install postfix")
	dir, err := os.MkdirTemp("", "pullmail-postfix-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// The queue and data directories belong to the postfix user, which
	// must reach them through every parent.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := &postfix{dir: dir, conf: filepath.Join(dir, "etc"), queue: filepath.Join(dir, "queue"), mail: filepath.Join(dir, "mail")}
	if p.port, err = sandbox.FreePort(); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{p.conf, p.queue, p.mail, filepath.Join(dir, "data")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// virtual(8) delivers as nobody.
	if err := os.Chown(p.mail, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(dir, "data"), postfixUID(t), -1); err != nil {
		t.Fatal(err)
	}

	var relayDomains, transport, vdomains, vmailbox []string
	for d, hop := range cfg.Relay {
		relayDomains = append(relayDomains, d)
		transport = append(transport, fmt.Sprintf("%s smtp:%s", d, hop))
	}
	for _, a := range cfg.Mailboxes {
		_, d, _ := strings.Cut(a, "@")
		vdomains = append(vdomains, d)
		local, _, _ := strings.Cut(a, "@")
		vmailbox = append(vmailbox, fmt.Sprintf("%s %s/%s/", a, d, local))
	}
	write := func(name, s string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(p.conf, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("transport", strings.Join(transport, "\n")+"\n")
	write("vmailbox", strings.Join(vmailbox, "\n")+"\n")
	tlsConf := "smtpd_tls_security_level = none\n"
	if cfg.CA != nil {
		cert, key, err := cfg.CA.IssueFiles([]string{"mx." + firstOr(vdomains, "interop.test")}, 24*time.Hour, p.conf)
		if err != nil {
			t.Fatal(err)
		}
		tlsConf = fmt.Sprintf("smtpd_tls_security_level = may\nsmtpd_tls_cert_file = %s\nsmtpd_tls_key_file = %s\n", cert, key)
	}
	write("main.cf", fmt.Sprintf(`# A Postfix of the interop tests: loopback only, no DNS, no local delivery.
compatibility_level = 3.6
queue_directory = %[1]s
data_directory = %[2]s
mail_owner = postfix
setgid_group = postdrop
myhostname = %[3]s
mydomain = interop.test
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
relay_domains = %[4]s
transport_maps = texthash:%[5]s/transport
virtual_mailbox_domains = %[6]s
virtual_mailbox_base = %[7]s
virtual_mailbox_maps = texthash:%[5]s/vmailbox
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
virtual_minimum_uid = 100
local_transport = error:no local delivery here
alias_maps =
alias_database =
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
smtp_tls_security_level = none
%[8]smaillog_file = %[9]s/maillog
maillog_file_prefixes = %[9]s
biff = no
append_dot_mydomain = no
message_size_limit = 104857600
virtual_mailbox_limit = 0
`, p.queue, filepath.Join(dir, "data"), postfixHost, strings.Join(relayDomains, ", "), p.conf,
		strings.Join(vdomains, ", "), p.mail, tlsConf, dir))
	write("master.cf", fmt.Sprintf(`# service type private unpriv chroot wakeup maxproc command
127.0.0.1:%d inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n -  0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
proxywrite unix - - n - 1 proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
virtual   unix  - n n - - virtual
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
`, p.port))
	if out, err := p.run("start"); err != nil {
		t.Fatalf("postfix start: %v\n%s\n%s", err, out, p.log())
	}
	t.Cleanup(func() { p.stop(t) })
	// Up when its smtpd greets.
	if err := waitGreeting(fmt.Sprintf("127.0.0.1:%d", p.port), 30*time.Second); err != nil {
		t.Fatalf("postfix: %v\n%s", err, p.log())
	}
	return p
}

func (p *postfix) addr() string { return fmt.Sprintf("127.0.0.1:%d", p.port) }

func (p *postfix) run(args ...string) ([]byte, error) {
	return exec.Command("/usr/sbin/postfix", append([]string{"-c", p.conf}, args...)...).CombinedOutput()
}

// log is what the instance logged (maillog_file).
func (p *postfix) log() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "maillog"))
	return string(b)
}

// stop stops the instance and waits until its master process has ended
// (postfix stop returns before; the master's children end with it).
func (p *postfix) stop(t testing.TB) {
	pid := 0
	if b, err := os.ReadFile(filepath.Join(p.queue, "pid", "master.pid")); err == nil {
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	if out, err := p.run("stop"); err != nil {
		t.Errorf("postfix stop: %v\n%s", err, out)
	}
	if pid <= 0 {
		t.Errorf("postfix's master left no pid file")
	}
	// Every process of the instance has MAIL_CONFIG=conf in its
	// environment (the master passes it on): none may be left.
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		left := instanceProcesses(p.conf)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("postfix processes %v still run 15 s after stop; killing them", left)
			for _, pid := range left {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			break
		}
	}
	if t.Failed() {
		t.Logf("postfix logged:\n%s", p.log())
	}
}

// delivered waits for the Maildir of addr to hold n messages and returns
// their bytes.
func (p *postfix) delivered(t testing.TB, addr string, n int, within time.Duration) [][]byte {
	t.Helper()
	local, d, _ := strings.Cut(addr, "@")
	dir := filepath.Join(p.mail, d, local, "new")
	for deadline := time.Now().Add(within); ; time.Sleep(100 * time.Millisecond) {
		files, _ := filepath.Glob(filepath.Join(dir, "*"))
		if len(files) >= n {
			var out [][]byte
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, b)
			}
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("postfix delivered %d messages to %s in %v, want %d\n%s", len(files), addr, within, n, p.log())
		}
	}
}

func postfixUID(t testing.TB) int {
	t.Helper()
	out, err := exec.Command("id", "-u", "postfix").Output()
	if err != nil {
		t.Fatalf("the postfix user: %v", err)
	}
	uid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	return uid
}

// instanceProcesses lists the live processes whose environment names conf
// as MAIL_CONFIG; a zombie (its parent has not waited yet) has ended.
func instanceProcesses(conf string) []int {
	var out []int
	procs, _ := filepath.Glob("/proc/[0-9]*")
	want := []byte("MAIL_CONFIG=" + conf + "\x00")
	for _, dir := range procs {
		env, err := os.ReadFile(filepath.Join(dir, "environ"))
		if err != nil || !bytes.Contains(append([]byte{0}, env...), append([]byte{0}, want...)) {
			continue
		}
		stat, err := os.ReadFile(filepath.Join(dir, "stat"))
		if err != nil {
			continue
		}
		if _, rest, _ := bytes.Cut(stat, []byte(") ")); len(rest) > 0 && rest[0] == 'Z' {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(dir))
		out = append(out, pid)
	}
	return out
}

func firstOr(l []string, def string) string {
	if len(l) > 0 {
		return l[0]
	}
	return def
}
