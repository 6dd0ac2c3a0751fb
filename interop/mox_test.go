package interop

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/sandbox"
	"github.com/pullmail/pullmail/server"
	"github.com/pullmail/pullmail/testenv"
)

// TestPullmailToMox: Pullmail's MTA delivers a message with an attachment
// to mox (as 'pullmail bench' builds it, in its localserve mode: the SMTP
// server, delivery analysis and account store of 'mox serve'), the MX of
// x.test; the message file mox stores in the account holds it, and
// Python's email package finds the attachment's bytes in it.
//
// mox to Pullmail is not tested: localserve keeps every outgoing message
// in its own account, and 'mox serve' needs a system set-up (root start,
// an unprivileged user, ports 25/443).
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
