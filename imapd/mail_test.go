package imapd_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/pullmail/pullmail/client"
	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/sandbox"
	"github.com/pullmail/pullmail/server"
	"github.com/pullmail/pullmail/testenv"
	"github.com/pullmail/pullmail/tlsca"
)

// startMX runs a.test with IMAP and its mail exchanger, and alice.
func startMX(t *testing.T) (*sandbox.Sandbox, *sandbox.Domain) {
	t.Helper()
	sb := testenv.Sandbox(t, sandbox.Config{Kind: sandbox.InProcess, Domains: []string{"a.test"},
		Users: []string{"alice@a.test"}, SMTP: true,
		Server: func(c *server.Config) { c.IMAP = "127.0.0.1:0" }})
	return sb, sb.Domain("a.test")
}

// deliver sends msg to alice by SMTP, as any mail system would.
func deliver(t *testing.T, sb *sandbox.Sandbox, d *sandbox.Domain, msg []byte) {
	t.Helper()
	pool, err := tlsca.LoadPool(sb.CA)
	if err != nil {
		t.Fatal(err)
	}
	c, err := smtp.DialStartTLS(d.SMTP, &tls.Config{RootCAs: pool, ServerName: "a.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SendMail("someone@example.org", []string{"alice@a.test"}, bytes.NewReader(msg)); err != nil {
		t.Fatalf("smtp: %v", err)
	}
}

func plain(n int) []byte {
	return []byte(fmt.Sprintf("From: Someone <someone@example.org>\r\nTo: alice@a.test\r\nSubject: note %d\r\n"+
		"Date: Thu, 03 Dec 2026 10:00:0%d +0000\r\nMessage-ID: <note-%d@example.org>\r\n\r\nhello %d\r\n", n, n, n, n))
}

// withAttachment is a message with an attachment of size random bytes.
func withAttachment(t *testing.T, size int) []byte {
	blob := make([]byte, size)
	rand.Read(blob)
	var b bytes.Buffer
	b.WriteString("From: Someone <someone@example.org>\r\nTo: alice@a.test\r\nSubject: big\r\n" +
		"Date: Thu, 03 Dec 2026 11:00:00 +0000\r\nMessage-ID: <big@example.org>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nthe file\r\n" +
		"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n" +
		"Content-Disposition: attachment; filename=big.bin\r\n\r\n")
	enc := base64.StdEncoding.EncodeToString(blob)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n--b--\r\n")
	return b.Bytes()
}

// TestImaplibMail: Python's imaplib fetches mail that came by SMTP
// byte-identical (an 8 MiB attachment among it), flags one, moves one and
// expunges one; the mailbox API (what the webmail reads) sees each change.
func TestImaplibMail(t *testing.T) {
	_, err := exec.LookPath("python3")
	require(t, err == nil, "python3", "apt-get install python3")
	sb, a := startMX(t)
	msgs := [][]byte{plain(1), plain(2), withAttachment(t, 8<<20)}
	for _, m := range msgs {
		deliver(t, sb, a, m)
	}
	implicit, _ := a.Server.IMAPAddrs()
	alice, _ := sb.User("alice@a.test")
	dir := t.TempDir()
	cmd := exec.Command("python3", filepath.Join("testdata", "imaplib_mail.py"), implicit, sb.CA, "alice@a.test", alice.Password, dir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("imaplib: %v\n%s", err, stderr.String())
	}
	var got struct {
		Exists   int `json:"exists"`
		Messages []struct {
			UID, Size, Len int
			Flags          string
		} `json:"messages"`
		Partial, Envelope, Bodystructure, Store, Move, Delete string
		HeaderSubject                                         string `json:"header_subject"`
		Expunge                                               []string
		SearchFlagged                                         string `json:"search_flagged"`
		EmptyFetch                                            string `json:"empty_fetch"`
		StarFetch                                             string `json:"star_fetch"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, stdout.String())
	}
	t.Logf("imaplib: %s", stdout.String()[:min(stdout.Len(), 1500)])
	if got.Exists != 3 || len(got.Messages) != 3 {
		t.Fatalf("EXISTS %d, fetched %d; want 3", got.Exists, len(got.Messages))
	}
	for i, m := range got.Messages {
		body, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("%d.eml", m.UID)))
		if err != nil {
			t.Fatal(err)
		}
		if m.Size != len(body) {
			t.Errorf("message %d: RFC822.SIZE %d, BODY[] %d bytes", i, m.Size, len(body))
		}
		// What came by SMTP comes back as it came (after the trace
		// header the exchanger adds on top).
		if !bytes.HasSuffix(body, msgs[i]) {
			t.Errorf("message %d: BODY[] (%d bytes) does not end with the %d bytes sent", i, len(body), len(msgs[i]))
		}
		if strings.Contains(m.Flags, `\Seen`) {
			t.Errorf("BODY.PEEK set \\Seen on %d: %q", i, m.Flags)
		}
	}
	first, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("%d.eml", got.Messages[0].UID)))
	if got.Partial != string(first[:10]) {
		t.Errorf("BODY[]<0.10> = %q, want %q", got.Partial, first[:10])
	}
	if got.HeaderSubject != "Subject: note 1\r\n\r\n" {
		t.Errorf("HEADER.FIELDS (SUBJECT) = %q", got.HeaderSubject)
	}
	if !strings.Contains(got.Envelope, `"note 1"`) || !strings.Contains(got.Envelope, `"<note-1@example.org>"`) {
		t.Errorf("ENVELOPE %q", got.Envelope)
	}
	if !strings.Contains(strings.ToLower(got.Bodystructure), `"application" "octet-stream"`) || !strings.Contains(strings.ToLower(got.Bodystructure), `"mixed"`) {
		t.Errorf("BODYSTRUCTURE %q", got.Bodystructure)
	}
	if !strings.Contains(got.Store, `\Flagged`) || !strings.Contains(got.Store, `$work`) || got.Move != "OK" {
		t.Errorf("STORE %q, MOVE %q", got.Store, got.Move)
	}
	if !slices.Contains(got.Expunge, "2") {
		t.Errorf("EXPUNGE answered %q, want the third message's new number 2", got.Expunge)
	}
	if got.SearchFlagged != fmt.Sprint(got.Messages[0].UID) {
		t.Errorf("UID SEARCH FLAGGED = %q, want %d", got.SearchFlagged, got.Messages[0].UID)
	}
	if got.EmptyFetch != "0" || got.StarFetch != "OK" {
		t.Errorf("empty Junk: EXISTS %q, FETCH 1:*,*:1 %q", got.EmptyFetch, got.StarFetch)
	}

	// What the webmail reads.
	cl, err := client.New(a.URL, alice.Token, sb.CA)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	folder := func(f string) []mailbox.Message {
		l, err := cl.List(ctx, mailbox.ListOptions{Folder: f})
		if err != nil {
			t.Fatal(err)
		}
		return l.Messages
	}
	inbox, archive, trash := folder("inbox"), folder("archive"), folder("trash")
	if len(inbox) != 1 || inbox[0].Subject != "note 1" || !slices.Contains(inbox[0].Keywords, "$flagged") || !slices.Contains(inbox[0].Keywords, "$work") {
		t.Errorf("inbox %+v, want note 1 with $flagged and $work", inbox)
	}
	if len(archive) != 1 || archive[0].Subject != "note 2" {
		t.Errorf("archive %+v, want note 2 (MOVE)", archive)
	}
	if len(trash) != 1 || trash[0].Subject != "big" {
		t.Errorf("trash %+v, want big (\\Deleted and EXPUNGE outside Trash move it there)", trash)
	}
}

// TestIdle: a client in IDLE hears of a delivery within a second.
func TestIdle(t *testing.T) {
	sb, a := startMX(t)
	implicit, _ := a.Server.IMAPAddrs()
	alice, _ := sb.User("alice@a.test")
	c := dial(t, sb, implicit)
	c.ok(t, "a LOGIN alice@a.test "+quote(alice.Password))
	c.ok(t, "b SELECT INBOX")
	c.send(t, "c IDLE")
	if l := c.line(t); !strings.HasPrefix(l, "+") {
		t.Fatalf("IDLE: %q", l)
	}
	deliver(t, sb, a, plain(1))
	delivered := time.Now()
	if l := c.line(t); l != "* 1 EXISTS" {
		t.Fatalf("in IDLE: %q, want * 1 EXISTS", l)
	}
	if d := time.Since(delivered); d > time.Second {
		t.Errorf("IDLE woke %v after the delivery", d)
	}
	c.send(t, "DONE")
	if l := c.tagged(t, "c"); !strings.HasPrefix(l, "c OK") {
		t.Errorf("DONE: %q", l)
	}
}
