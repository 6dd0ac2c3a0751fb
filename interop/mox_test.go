package interop

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pullmail/pullmail/client"
	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/sandbox"
	"github.com/pullmail/pullmail/server"
	"github.com/pullmail/pullmail/testenv"
	"github.com/pullmail/pullmail/tlsca"
)

// TestPullmailToMox: Pullmail's MTA delivers a message with an attachment
// to mox (as 'pullmail bench' builds it, in its localserve mode: the SMTP
// server, delivery analysis and account store of 'mox serve'), the MX of
// x.test; the message file mox stores in the account holds it, and
// Python's email package finds the attachment's bytes in it.
//
// (localserve keeps every outgoing message in its own account: mox to
// Pullmail is TestMoxToPullmail, with 'mox serve'.)
func TestPullmailToMox(t *testing.T) {
	bin := peerBinary(t, "mox")
	pnet := peerNet(t)
	// mox checks the MAIL FROM domain: a.test has an address (RFC 5321
	// §5.1's implicit MX); SPF, DMARC and DKIM find nothing.
	pnet.DNS.AddA("a.test", "127.0.0.1")
	port, err := sandbox.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "mox")
	if out, err := exec.Command(bin, "localserve", "-dir", dir, "-initonly").CombinedOutput(); err != nil {
		t.Fatalf("mox localserve -initonly: %v\n%s", err, out)
	}
	mc := fmt.Sprintf(`DataDir: .
LogLevel: info
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
`, os.Getuid(), port)
	dc := "Domains:\n\tlocalhost: nil\n\tx.test: nil\nAccounts:\n" +
		"\tmox:\n\t\tDomain: localhost\n\t\tDestinations:\n\t\t\tmox@localhost: nil\n\t\tNoFirstTimeSenderDelay: true\n" +
		"\tuser:\n\t\tDomain: x.test\n\t\tDestinations:\n\t\t\tuser@x.test: nil\n\t\tNoFirstTimeSenderDelay: true\n"
	if err := os.WriteFile(filepath.Join(dir, "mox.conf"), []byte(mc), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "domains.conf"), []byte(dc), 0o644); err != nil {
		t.Fatal(err)
	}
	log := runPeer(t, "mox", pnet.Command(bin, "-config", filepath.Join(dir, "mox.conf"), "localserve", "-dir", dir),
		fmt.Sprintf("127.0.0.1:%d", port))

	sb := testenv.Sandbox(t, sandbox.Config{Kind: sandbox.InProcess, Domains: []string{"a.test"},
		Users: []string{"alice@a.test"}, Server: func(c *server.Config) { c.SMTPOutPort = port }})
	a := sb.Domain("a.test")
	sb.Directory.DNS.AddMX("x.test", 10, "mx.x.test")
	sb.Directory.DNS.AddA("mx.x.test", "127.0.0.1")
	payload := randomBytes(t, 256<<10)
	attach := filepath.Join(t.TempDir(), "report.bin")
	if err := os.WriteFile(attach, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	alice, _ := sb.User("alice@a.test")
	pullmail(t, map[string]string{"PULLMAIL_SERVER": a.URL, "PULLMAIL_TOKEN": alice.Token, "PULLMAIL_CA": sb.CA},
		"send", "--to", "user@x.test", "--subject", "To mox", "--text", "Grüße an mox", "--attach", attach)

	// mox keeps each message as a file under the account's msg/.
	var stored string
	for deadline := time.Now().Add(30 * time.Second); stored == ""; time.Sleep(200 * time.Millisecond) {
		filepath.WalkDir(filepath.Join(dir, "accounts", "user", "msg"), func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte("Subject: To mox")) {
					stored = p
				}
			}
			return nil
		})
		if stored == "" && time.Now().After(deadline) {
			t.Fatalf("mox stored no message for user@x.test\na.test:\n%s\nmox:\n%s", a.Log(), log.String())
		}
	}
	var m mimeResult
	runJSON(t, &m, "mimecheck.py", stored)
	found := false
	for _, p := range m.Parts {
		found = found || (p.Filename != nil && *p.Filename == "report.bin" && p.SHA256 == hex.EncodeToString(resource.IDOf(payload).Sum()))
	}
	if m.Subject != "To mox" || !found {
		t.Fatalf("mox stored %+v", m)
	}
}

// TestMoxToPullmail: mox as a real installation runs it ('mox serve',
// started as root, serving as nobody), the sender's server: a user of
// x.test submits a message with an attachment for alice@a.test (swaks,
// SASL PLAIN on mox's submission port), and mox's queue delivers it
// directly, finding a.test's MX in the peers' DNS and dialling its port 25,
// where Pullmail's mail exchanger listens. It arrives complete, the
// attachment the file's own resource.
func TestMoxToPullmail(t *testing.T) {
	moxBin := peerBinary(t, "mox")
	sw := swaks(t)
	pnet := peerNet(t)
	// 'mox serve' drops to an unprivileged user, who must reach its
	// binary, its configuration and its data: a directory of their own,
	// outside the test's (mode 0700) temporary directories.
	dir, err := os.MkdirTemp("", "pullmail-mox-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "mox")
	b, err := os.ReadFile(moxBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	conf, data := filepath.Join(dir, "config"), filepath.Join(dir, "data")
	for _, d := range []string{conf, data} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(data, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	mx := port25(t)
	sbDir := t.TempDir()
	sb := testenv.Sandbox(t, sandbox.Config{Kind: sandbox.InProcess, Dir: sbDir, Domains: []string{"a.test"},
		Users: []string{"alice@a.test"}, Server: func(c *server.Config) { c.SMTP = mx }})
	a := sb.Domain("a.test")
	mxIP, _, _ := strings.Cut(mx, ":")
	pnet.DNS.AddMX("a.test", 10, "mx.a.test")
	pnet.DNS.AddA("mx.a.test", mxIP)
	pnet.DNS.AddA("mx.x.test", "127.0.0.1")

	ca, err := tlsca.LoadOrCreate(sbDir)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.IssueFiles([]string{"mx.x.test"}, 24*time.Hour, conf)
	if err != nil {
		t.Fatal(err)
	}
	smtpPort, err := sandbox.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	subPort, err := sandbox.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	mc := fmt.Sprintf(`DataDir: %s
LogLevel: info
User: 65534
Hostname: mx.x.test
Listeners:
	local:
		IPs:
			- 127.0.0.1
		Hostname: mx.x.test
		TLS:
			KeyCerts:
				-
					CertFile: %s
					KeyFile: %s
		SMTP:
			Enabled: true
			Port: %d
		Submission:
			Enabled: true
			Port: %d
			NoRequireSTARTTLS: true
Postmaster:
	Account: user
	Mailbox: Inbox
`, data, cert, key, smtpPort, subPort)
	dc := "Domains:\n\tx.test: nil\nAccounts:\n\tuser:\n\t\tDomain: x.test\n\t\tDestinations:\n\t\t\tuser@x.test: nil\n"
	moxConf := filepath.Join(conf, "mox.conf")
	if err := os.WriteFile(moxConf, []byte(mc), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(conf, "domains.conf"), []byte(dc), 0o644); err != nil {
		t.Fatal(err)
	}
	log := runPeer(t, "mox serve", pnet.Command(bin, "-config", moxConf, "serve"), fmt.Sprintf("127.0.0.1:%d", subPort))
	const password = "correct horse battery staple"
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		cmd := exec.Command(bin, "-config", moxConf, "setaccountpassword", "user")
		cmd.Stdin = strings.NewReader(password + "\n")
		out, err := cmd.CombinedOutput()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mox setaccountpassword: %v\n%s\n%s", err, out, log.String())
		}
	}

	payload := randomBytes(t, 256<<10)
	msg := multipartMessage("user@x.test", "alice@a.test", "From mox", "<from-mox@x.test>", payload)
	file := filepath.Join(t.TempDir(), "msg.eml")
	if err := os.WriteFile(file, bytes.TrimSuffix(msg, []byte("\r\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(sw, "--server", fmt.Sprintf("127.0.0.1:%d", subPort), "--auth", "PLAIN",
		"--auth-user", "user@x.test", "--auth-password", password, "--from", "user@x.test", "--to", "alice@a.test",
		"--data", "@"+file).CombinedOutput(); err != nil {
		t.Fatalf("swaks to mox's submission: %v\n%s", err, out)
	}
	alice, _ := sb.User("alice@a.test")
	c, err := client.New(a.URL, alice.Token, sb.CA)
	if err != nil {
		t.Fatal(err)
	}
	got := waitMessage(t, c, "<from-mox@x.test>", 45*time.Second, log.String)
	if got.Status != "complete" || got.Subject != "From mox" || len(got.Attachments) != 1 ||
		got.Attachments[0].ContentID != resource.IDOf(payload) {
		t.Fatalf("the copy: %+v", got)
	}
}
