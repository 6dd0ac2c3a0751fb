package interop

import (
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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

// TestMaddy: maddy (as 'pullmail bench' builds it) and Pullmail exchange
// mail both ways. maddy is the MX of m.test (storage.imapsql) and relays
// everything else through its queue and target.remote, which finds a.test's
// MX in the peers' DNS and dials its port 25, where Pullmail's mail
// exchanger listens. A message with an attachment submitted to maddy for
// alice@a.test arrives complete, the attachment the file's own resource;
// alice's message to user@m.test, with an attachment, is in maddy's store
// ('maddy imap-msgs dump'), and Python's email package finds the
// attachment's bytes in it.
func TestMaddy(t *testing.T) {
	bin := peerBinary(t, "maddy")
	sw := swaks(t)
	pnet := peerNet(t)
	dir := t.TempDir()
	port, err := sandbox.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	mx := port25(t)
	sbDir := t.TempDir()
	sb := testenv.Sandbox(t, sandbox.Config{Kind: sandbox.InProcess, Dir: sbDir, Domains: []string{"a.test"},
		Users:  []string{"alice@a.test"},
		Server: func(c *server.Config) { c.SMTP, c.SMTPOutPort = mx, port }})
	a := sb.Domain("a.test")
	// Pullmail finds maddy as m.test's MX; maddy finds Pullmail as a.test's.
	sb.Directory.DNS.AddMX("m.test", 10, "mx.m.test")
	sb.Directory.DNS.AddA("mx.m.test", "127.0.0.1")
	mxIP, _, _ := strings.Cut(mx, ":")
	pnet.DNS.AddMX("a.test", 10, "mx.a.test")
	pnet.DNS.AddA("mx.a.test", mxIP)
	pnet.DNS.AddA("mx.m.test", "127.0.0.1")

	ca, err := tlsca.LoadOrCreate(sbDir)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.IssueFiles([]string{"mx.m.test"}, 24*time.Hour, dir)
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "maddy.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`state_dir %s
runtime_dir %s
hostname mx.m.test
tls file %s %s

storage.imapsql local_mailboxes {
    driver sqlite3
    dsn imapsql.db
}

target.remote outbound_delivery { }

target.queue remote_queue {
    target &outbound_delivery
}

smtp tcp://127.0.0.1:%d {
    dmarc no
    destination m.test {
        deliver_to &local_mailboxes
    }
    default_destination {
        deliver_to &remote_queue
    }
}
`, filepath.Join(dir, "state"), filepath.Join(dir, "run"), cert, key, port)), 0o644); err != nil {
		t.Fatal(err)
	}
	maddy := func(args ...string) (string, error) {
		out, err := exec.Command(bin, append([]string{"--config", conf}, args...)...).CombinedOutput()
		return string(out), err
	}
	if out, err := maddy("imap-acct", "create", "user@m.test"); err != nil {
		t.Fatalf("maddy imap-acct create: %v\n%s", err, out)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	log := runPeer(t, "maddy", pnet.Command(bin, "--config", conf, "run"), addr)

	t.Run("maddy to Pullmail", func(t *testing.T) {
		payload := randomBytes(t, 256<<10)
		msg := multipartMessage("someone@m.test", "alice@a.test", "From maddy", "<from-maddy@m.test>", payload)
		file := filepath.Join(t.TempDir(), "msg.eml")
		if err := os.WriteFile(file, []byte(strings.TrimSuffix(string(msg), "\r\n")), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(sw, "--server", addr, "--from", "someone@m.test", "--to", "alice@a.test",
			"--data", "@"+file).CombinedOutput(); err != nil {
			t.Fatalf("swaks to maddy: %v\n%s", err, out)
		}
		alice, _ := sb.User("alice@a.test")
		c, err := client.New(a.URL, alice.Token, sb.CA)
		if err != nil {
			t.Fatal(err)
		}
		got := waitMessage(t, c, "<from-maddy@m.test>", 45*time.Second, log.String)
		if got.Status != "complete" || got.Subject != "From maddy" || len(got.Attachments) != 1 ||
			got.Attachments[0].ContentID != resource.IDOf(payload) {
			t.Fatalf("the copy: %+v", got)
		}
	})

	t.Run("Pullmail to maddy", func(t *testing.T) {
		payload := randomBytes(t, 256<<10)
		attach := filepath.Join(t.TempDir(), "report.bin")
		if err := os.WriteFile(attach, payload, 0o644); err != nil {
			t.Fatal(err)
		}
		alice, _ := sb.User("alice@a.test")
		pullmail(t, map[string]string{"PULLMAIL_SERVER": a.URL, "PULLMAIL_TOKEN": alice.Token, "PULLMAIL_CA": sb.CA},
			"send", "--to", "user@m.test", "--subject", "To maddy", "--text", "Grüße an maddy", "--attach", attach)
		var dump string
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			out, err := maddy("imap-msgs", "dump", "user@m.test", "INBOX", "1")
			if err == nil && strings.Contains(out, "To maddy") {
				dump = out
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("maddy's INBOX of user@m.test: %v %s\na.test:\n%s\nmaddy:\n%s", err, out, a.Log(), log.String())
			}
		}
		file := filepath.Join(t.TempDir(), "dump.eml")
		if err := os.WriteFile(file, []byte(dump), 0o644); err != nil {
			t.Fatal(err)
		}
		var m mimeResult
		runJSON(t, &m, "mimecheck.py", file)
		found := false
		for _, p := range m.Parts {
			found = found || (p.Filename != nil && *p.Filename == "report.bin" && p.SHA256 == hex.EncodeToString(resource.IDOf(payload).Sum()))
		}
		if m.Subject != "To maddy" || !found {
			t.Fatalf("maddy stored %+v", m)
		}
	})
}
