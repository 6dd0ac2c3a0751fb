package interop

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pullmail/pullmail/client"
	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/sandbox"
	"github.com/pullmail/pullmail/server"
	"github.com/pullmail/pullmail/testenv"
	"github.com/pullmail/pullmail/tlsca"
)

// swaks returns Debian's swaks, the SMTP client of these tests.
func swaks(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("swaks")
	require(t, err == nil, "swaks", "apt install swaks")
	return bin
}

// multipartMessage is a message with a text part and a base64 attachment
// of payload, CRLF line ends, as a mail client writes it.
func multipartMessage(from, to, subject, msgid string, payload []byte) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: Sender <%s>\r\nTo: <%s>\r\nSubject: %s\r\nDate: Thu, 03 Dec 2026 12:00:00 +0000\r\n", from, to, subject)
	fmt.Fprintf(&b, "Message-ID: %s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n", msgid)
	b.WriteString("This is a multi-part message in MIME format.\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n")
	b.WriteString("Content-Transfer-Encoding: 8bit\r\n\r\nGrüße, the file is attached.\r\n--b1\r\n")
	b.WriteString("Content-Type: application/octet-stream; name=\"data.bin\"\r\nContent-Disposition: attachment; filename=\"data.bin\"\r\n")
	b.WriteString("Content-Transfer-Encoding: base64\r\n\r\n")
	enc := base64Lines(payload)
	b.WriteString(enc)
	b.WriteString("--b1--\r\n")
	return []byte(b.String())
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// waitMessage waits until the user's inbox holds a message with msgid and
// returns it.
func waitMessage(t testing.TB, c *client.Client, msgid string, within time.Duration, log func() string) mailbox.Message {
	t.Helper()
	for deadline := time.Now().Add(within); ; time.Sleep(100 * time.Millisecond) {
		ms, err := c.Lookup(context.Background(), msgid)
		if err == nil && len(ms) == 1 {
			return ms[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never arrived (%v, %d copies):\n%s", msgid, err, len(ms), log())
		}
	}
}

// receivedRE is the trace field Postfix prepends (RFC 5321 §4.4), unfolded.
var receivedRE = regexp.MustCompile(`^Received: from \S+ \(\S+ \[127\.0\.0\.1\]\) by ` + regexp.QuoteMeta(postfixHost) +
	` \(Postfix\) with (ESMTPS?) id [0-9A-F]+ for <([^>]+)>; \w{3}, +\d+ \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4} \(UTC\)$`)

// splitReceived cuts the first header field off msg, which must be a
// Received field, and returns it unfolded and the rest.
func splitReceived(t testing.TB, msg []byte) (string, []byte) {
	t.Helper()
	if !bytes.HasPrefix(msg, []byte("Received: ")) {
		t.Fatalf("does not begin with a Received field: %.200q", msg)
	}
	i := 0
	for {
		j := bytes.Index(msg[i:], []byte("\r\n"))
		if j < 0 {
			t.Fatalf("an unterminated header: %.200q", msg)
		}
		i += j + 2
		if i >= len(msg) || (msg[i] != ' ' && msg[i] != '\t') {
			break
		}
	}
	field := strings.Join(strings.Fields(strings.ReplaceAll(string(msg[:i]), "\r\n", "")), " ")
	return field, msg[i:]
}

// TestPostfixRelaysToPullmail: swaks submits a message for user@b.test to
// Postfix, which relays it (transport_maps, no DNS) to b.test's mail
// exchanger through a proxy that records the session. The message is in
// the user's inbox, complete, the attachment the file's own resource; and
// 'pullmail export --raw' writes exactly the bytes Postfix sent in DATA,
// which are swaks' bytes under one Received field of Postfix's. Pullmail's
// own trace line (Received: from postfix.interop.test ... by b.test) is in
// the placeholder, not in the exported original (PROTOCOL §13).
func TestPostfixRelaysToPullmail(t *testing.T) {
	sw := swaks(t)
	sb := testenv.Sandbox(t, sandbox.Config{Kind: sandbox.InProcess, Domains: []string{"b.test"},
		Users: []string{"user@b.test"}, SMTP: true})
	b := sb.Domain("b.test")
	rec := startRecorder(t, b.SMTP)
	pf := startPostfix(t, postfixConfig{Relay: map[string]string{"b.test": "[127.0.0.1]:" + portOf(t, rec.addr())}})

	payload := randomBytes(t, 300<<10)
	msg := multipartMessage("someone@example.org", "user@b.test", "Through Postfix", "<postfix-in@example.org>", payload)
	file := filepath.Join(t.TempDir(), "msg.eml")
	// swaks ends DATA with CRLF.CRLF after the file: without the file's
	// last line end, it sends msg exactly.
	if err := os.WriteFile(file, bytes.TrimSuffix(msg, []byte("\r\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sw, "--server", pf.addr(), "--ehlo", "swaks.example", "--from", "someone@example.org",
		"--to", "user@b.test", "--data", "@"+file).CombinedOutput()
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}

	user, _ := sb.User("user@b.test")
	c, err := client.New(b.URL, user.Token, sb.CA)
	if err != nil {
		t.Fatal(err)
	}
	got := waitMessage(t, c, "<postfix-in@example.org>", 30*time.Second, pf.log)
	if got.Status != "complete" || got.Subject != "Through Postfix" || len(got.Attachments) != 1 ||
		got.Attachments[0].ContentID != resource.IDOf(payload) || got.Attachments[0].Filename != "data.bin" {
		t.Fatalf("the copy: %+v", got)
	}

	// What Postfix sent, as the proxy saw it.
	sent, err := rec.messages()
	if err != nil || len(sent) != 1 {
		t.Fatalf("the recorded session holds %d messages: %v", len(sent), err)
	}
	field, rest := splitReceived(t, sent[0])
	m := receivedRE.FindStringSubmatch(field)
	if m == nil || m[2] != "user@b.test" {
		t.Errorf("Postfix's trace field %q does not match %s", field, receivedRE)
	}
	if !bytes.Equal(rest, msg) {
		t.Errorf("Postfix changed the message beyond its Received field:\n%s", diffAt(rest, msg))
	}
	raw := filepath.Join(t.TempDir(), "raw.eml")
	pullmail(t, map[string]string{"PULLMAIL_SERVER": b.URL, "PULLMAIL_TOKEN": user.Token, "PULLMAIL_CA": sb.CA},
		"export", "--raw", got.ID, "--out", raw)
	exported, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(exported, sent[0]) {
		t.Errorf("export --raw is not what Postfix delivered (%d vs %d bytes):\n%s", len(exported), len(sent[0]), diffAt(exported, sent[0]))
	}

	full, err := c.Get(context.Background(), got.ID)
	if err != nil {
		t.Fatal(err)
	}
	var ph struct {
		Headers map[string]json.RawMessage `json:"headers"`
	}
	if err := json.Unmarshal(full.Placeholder, &ph); err != nil {
		t.Fatal(err)
	}
	rcv := string(ph.Headers["Received"])
	if !strings.Contains(rcv, "from "+postfixHost+" ([127.0.0.1]) by ") || !strings.Contains(rcv, " with ESMTP;") {
		t.Errorf("Pullmail's Received %s", rcv)
	}
	t.Logf("Postfix: %s", field)
	t.Logf("Pullmail: Received %s", rcv)
}

// diffAt says where a and b first differ.
func diffAt(a, b []byte) string {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	lo := max(0, i-80)
	return fmt.Sprintf("first difference at byte %d of %d/%d:\n got: %q\nwant: %q", i, len(a), len(b),
		a[lo:min(len(a), i+80)], b[lo:min(len(b), i+80)])
}

func portOf(t testing.TB, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// publishDKIM makes a domain's DKIM keys with 'pullmail dkim' (its data
// directory dir) and returns the TXT records it printed, by name, as a
// receiver finds them in DNS.
func publishDKIM(t testing.TB, dir string) map[string]string {
	t.Helper()
	var recs []struct{ Selector, Name, Record string }
	if err := json.Unmarshal([]byte(pullmail(t, nil, "dkim", "--data", dir, "--json")), &recs); err != nil || len(recs) != 2 {
		t.Fatalf("dkim --json: %d records, %v", len(recs), err)
	}
	out := map[string]string{}
	for _, r := range recs {
		// NAME. TTL IN TXT "part" "part": the value is the parts joined.
		txt := r.Record[strings.Index(r.Record, "\"")+1 : len(r.Record)-1]
		out[r.Name] = strings.ReplaceAll(txt, "\" \"", "")
	}
	return out
}

type dkimResult struct {
	File       string
	Signatures []struct {
		D, S, A string
		OK      bool
		Error   *string
	}
}

// verifyDKIM checks every signature of each file with dkimpy, its DNS
// answered from records.
func verifyDKIM(t testing.TB, records map[string]string, files ...string) []dkimResult {
	t.Helper()
	recFile := filepath.Join(t.TempDir(), "records.json")
	b, _ := json.Marshal(records)
	if err := os.WriteFile(recFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	var res []dkimResult
	runJSON(t, &res, "dkimcheck.py", append([]string{recFile}, files...)...)
	return res
}

type mimeResult struct {
	Subject, From, To string
	ContentType       string `json:"content_type"`
	MessageID         string `json:"message_id"`
	Received, Defects []string
	Parts             []struct {
		ContentType string `json:"content_type"`
		Filename    *string
		Charset     *string
		Size        int
		SHA256      string
		Text        *string
		Defects     []string
	}
}

// TestPullmailDeliversToPostfix: alice@a.test sends (pullmail send) to
// someone@c.test, whose MX in the sandbox's DNS is the Postfix instance;
// a.test's MTA delivers by SMTP over STARTTLS, DKIM-signed with the keys
// 'pullmail dkim' made, and Postfix's virtual(8) writes the message to a
// Maildir. Python's email package reads that file as the message sent
// (subject, text, the attachment's bytes), and dkimpy verifies both
// signatures, ed25519-sha256 and rsa-sha256, against the TXT records the
// command printed.
func TestPullmailDeliversToPostfix(t *testing.T) {
	python(t)
	sbDir := t.TempDir()
	ca, err := tlsca.LoadOrCreate(sbDir)
	if err != nil {
		t.Fatal(err)
	}
	pf := startPostfix(t, postfixConfig{Mailboxes: []string{"someone@c.test"}, CA: ca})
	port, _ := strconv.Atoi(portOf(t, pf.addr()))
	sb := testenv.Sandbox(t, sandbox.Config{Kind: sandbox.InProcess, Dir: sbDir, Domains: []string{"a.test"},
		Users: []string{"alice@a.test"}, Server: func(c *server.Config) { c.SMTPOutPort = port }})
	a := sb.Domain("a.test")
	records := publishDKIM(t, a.Dir)
	dns := sb.Directory.DNS
	for name, txt := range records {
		dns.AddTXT(name, txt)
	}
	dns.AddMX("c.test", 10, "mx.c.test")
	dns.AddA("mx.c.test", "127.0.0.1")
	// a.test again, to load the keys.
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}

	payload := randomBytes(t, 200<<10)
	attach := filepath.Join(t.TempDir(), "plans.bin")
	if err := os.WriteFile(attach, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	alice, _ := sb.User("alice@a.test")
	msgid := strings.TrimSpace(pullmail(t, map[string]string{"PULLMAIL_SERVER": a.URL, "PULLMAIL_TOKEN": alice.Token, "PULLMAIL_CA": sb.CA},
		"send", "--to", "Someone <someone@c.test>", "--subject", "Grüße an Postfix", "--text", "Grüße über SMTP\nzweite Zeile",
		"--attach", attach))
	got := pf.delivered(t, "someone@c.test", 1, 30*time.Second)
	file := filepath.Join(t.TempDir(), "delivered.eml")
	if err := os.WriteFile(file, got[0], 0o644); err != nil {
		t.Fatal(err)
	}

	var m mimeResult
	runJSON(t, &m, "mimecheck.py", file)
	if m.Subject != "Grüße an Postfix" || m.MessageID != msgid || !strings.Contains(m.From, "alice@a.test") ||
		!strings.Contains(m.To, "someone@c.test") || m.ContentType != "multipart/mixed" || len(m.Defects) != 0 {
		t.Errorf("python's email package read: %+v", m)
	}
	var text, file2 bool
	for _, p := range m.Parts {
		switch {
		case p.ContentType == "text/plain" && p.Text != nil:
			text = strings.Contains(*p.Text, "Grüße über SMTP\nzweite Zeile")
		case p.Filename != nil && *p.Filename == "plans.bin":
			file2 = p.SHA256 == hex.EncodeToString(resource.IDOf(payload).Sum()) && p.Size == len(payload)
		}
		if len(p.Defects) != 0 {
			t.Errorf("part %s: defects %v", p.ContentType, p.Defects)
		}
	}
	if !text || !file2 {
		t.Errorf("text found %v, attachment intact %v: %+v", text, file2, m.Parts)
	}
	// ESMTPS, or UTF8SMTPS where the message needed SMTPUTF8 (RFC 6531
	// §4.3): either way over TLS.
	if len(m.Received) == 0 || !regexp.MustCompile(`with (ESMTPS|UTF8SMTPS) `).MatchString(m.Received[0]) {
		t.Errorf("Postfix's Received %q: want ESMTPS or UTF8SMTPS (Pullmail's MTA used STARTTLS)", m.Received)
	}

	res := verifyDKIM(t, records, file)
	algs := map[string]bool{}
	for _, s := range res[0].Signatures {
		if !s.OK || s.D != "a.test" {
			t.Errorf("dkimpy: signature %+v does not verify", s)
		}
		algs[s.A] = s.OK
	}
	if len(res[0].Signatures) != 2 || !algs["ed25519-sha256"] || !algs["rsa-sha256"] {
		t.Errorf("dkimpy verified %+v, want ed25519-sha256 and rsa-sha256", res[0].Signatures)
	}
	t.Logf("dkimpy: %+v", res[0].Signatures)
}
