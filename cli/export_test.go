package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/pullmail/pullmail/client"
	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/sandbox"
	"github.com/pullmail/pullmail/testenv"
	"github.com/pullmail/pullmail/tlsca"
)

// TestExportRaw: every corpus message in by SMTP (the domain's mail
// exchanger) and out by 'pullmail export --raw' (the mailbox API) is the
// same bytes; a message written with 'pullmail send' comes out as MIME that
// net/mail reads, its Bcc only in the author's copy.
func TestExportRaw(t *testing.T) {
	sb := testenv.Sandbox(t, sandbox.Config{Kind: sandbox.InProcess, Domains: []string{"a.test"},
		Users: []string{"alice@a.test", "bob@a.test"}, SMTP: true})
	d := sb.Domain("a.test")
	alice, _ := sb.User("alice@a.test")
	bob, _ := sb.User("bob@a.test")
	pool, err := tlsca.LoadPool(sb.CA)
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("../mimeconv/testdata/corpus/*.eml")
	if len(files) < 20 {
		t.Fatalf("corpus: %d files", len(files))
	}
	vars := map[string]string{"PULLMAIL_SERVER": d.URL, "PULLMAIL_TOKEN": alice.Token, "PULLMAIL_CA": sb.CA}
	api, err := client.New(d.URL, alice.Token, sb.CA)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range files {
		msg, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(f)
		c, err := smtp.DialStartTLS(d.SMTP, &tls.Config{RootCAs: pool, ServerName: "a.test"})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.SendMail("someone@example.org", []string{"alice@a.test"}, bytes.NewReader(msg)); err != nil {
			t.Fatalf("%s: smtp: %v", name, err)
		}
		c.Close()
		// The message just delivered, by its id (some corpus messages
		// have no Message-ID, some have two).
		l, err := api.List(context.Background(), mailbox.ListOptions{Folder: "inbox"})
		if err != nil {
			t.Fatal(err)
		}
		id := ""
		for _, m := range l.Messages {
			if !seen[m.ID] {
				id = m.ID
				seen[m.ID] = true
			}
		}
		if id == "" {
			t.Fatalf("%s: no new message in the inbox", name)
		}
		out := filepath.Join(t.TempDir(), "m.eml")
		env, _, errb := testEnv(vars, false)
		if code := Main(context.Background(), env, []string{"export", "--raw", id, "--out", out}); code != 0 {
			t.Fatalf("%s: export: exit %d: %s", name, code, errb.String())
		}
		got, _ := os.ReadFile(out)
		if want := smtpForm(msg); !bytes.Equal(got, want) {
			t.Errorf("%s: exported %d bytes, sent %d: not the same", name, len(got), len(want))
		}
	}

	env, out, errb := testEnv(vars, false)
	if code := Main(context.Background(), env, []string{"send", "--to", "Bob <bob@a.test>", "--bcc", "alice@a.test",
		"--subject", "Grüße", "--text", "hello\nworld"}); code != 0 {
		t.Fatalf("send: exit %d: %s", code, errb.String())
	}
	msgid := strings.TrimSpace(out.String())
	copies, err := api.Lookup(context.Background(), msgid)
	if err != nil {
		t.Fatal(err)
	}
	sent := ""
	for _, c := range copies {
		if c.Folder == "sent" {
			sent = c.ID
		}
	}
	for _, tc := range []struct {
		token, ref string
		bcc        bool
	}{{bob.Token, msgid, false}, {alice.Token, sent, true}} {
		v := map[string]string{"PULLMAIL_SERVER": d.URL, "PULLMAIL_TOKEN": tc.token, "PULLMAIL_CA": sb.CA}
		env, out, errb := testEnv(v, false)
		if code := Main(context.Background(), env, []string{"export", "--raw", tc.ref}); code != 0 {
			t.Fatalf("export: exit %d: %s", code, errb.String())
		}
		m, err := mail.ReadMessage(bytes.NewReader(out.Bytes()))
		if err != nil {
			t.Fatalf("the exported message does not parse: %v\n%s", err, out.Bytes())
		}
		if m.Header.Get("Message-ID") != msgid || m.Header.Get("Subject") != "=?utf-8?q?Gr=C3=BC=C3=9Fe?=" {
			t.Errorf("headers %v", m.Header)
		}
		if (m.Header.Get("Bcc") != "") != tc.bcc {
			t.Errorf("Bcc %q in this copy, want present=%v", m.Header.Get("Bcc"), tc.bcc)
		}
	}
	env, _, errb = testEnv(vars, false)
	if code := Main(context.Background(), env, []string{"export"}); code != 2 || !strings.Contains(errb.String(), "--raw") {
		t.Errorf("export without --raw: exit %d %q", code, errb.String())
	}
}

// smtpForm is msg as an SMTP client puts it on the wire and a server reads
// it back: every line end CRLF and a final one added (RFC 5321 §2.3.8; what
// net/textproto's DotWriter does, byte for byte).
func smtpForm(msg []byte) []byte {
	const (
		begin = iota
		data
		cr
		beginLine
	)
	var out []byte
	state := begin
	for _, c := range msg {
		switch state {
		case begin, beginLine, data:
			state = data
			if c == '\r' {
				state = cr
			}
			if c == '\n' {
				out = append(out, '\r')
				state = beginLine
			}
		case cr:
			state = data
			if c == '\n' {
				state = beginLine
			}
		}
		out = append(out, c)
	}
	switch state {
	case begin, data:
		out = append(out, '\r', '\n')
	case cr:
		out = append(out, '\n')
	}
	return out
}
