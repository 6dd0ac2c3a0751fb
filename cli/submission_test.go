package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/pullmail/pullmail/client"
	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/sandbox"
	"github.com/pullmail/pullmail/server"
	"github.com/pullmail/pullmail/testenv"
	"github.com/pullmail/pullmail/tlsca"
)

// TestSubmission: a mail client submits on a.test's submission port
// (STARTTLS, SASL PLAIN or OAUTHBEARER); the message becomes Alice's send to
// a local user, another Pullmail domain and a Bcc only the envelope names.
// Refused: no authentication, a wrong password, a From that is not hers.
func TestSubmission(t *testing.T) {
	sb := testenv.Sandbox(t, sandbox.Config{Kind: sandbox.InProcess, Domains: []string{"a.test", "b.test"},
		Users: []string{"alice@a.test", "bob@a.test", "dave@a.test", "carol@b.test"},
		Server: func(c *server.Config) {
			if c.Domain == "a.test" {
				c.Submission, c.Submissions = "127.0.0.1:0", "127.0.0.1:0"
			}
		}})
	a := sb.Domain("a.test")
	addr, implicitAddr := a.Server.SubmissionAddrs()
	pool, err := tlsca.LoadPool(sb.CA)
	if err != nil {
		t.Fatal(err)
	}
	alice, _ := sb.User("alice@a.test")
	dial := func(t *testing.T) *smtp.Client {
		t.Helper()
		c, err := smtp.DialStartTLS(addr, &tls.Config{RootCAs: pool, ServerName: "a.test"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	msg := "From: Alice <alice@a.test>\r\nTo: Bob <bob@a.test>, carol@b.test\r\nSubject: from my mail client\r\n" +
		"Message-ID: <client-1@laptop>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n" +
		"--x\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello from Thunderbird\r\n" +
		"--x\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n" +
		"Content-Disposition: attachment; filename=notes.bin\r\n\r\nAAECAwQFBgcICQ==\r\n--x--\r\n"
	rcpts := []string{"bob@a.test", "carol@b.test", "dave@a.test"}

	c := dial(t)
	if err := c.Auth(sasl.NewPlainClient("", "alice@a.test", alice.Password)); err != nil {
		t.Fatalf("AUTH PLAIN: %v", err)
	}
	if err := c.SendMail("alice@a.test", rcpts, strings.NewReader(msg)); err != nil {
		t.Fatalf("submission: %v", err)
	}
	// The same bytes again (a client whose 250 was lost): one send.
	c = dial(t)
	if err := c.Auth(sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{Username: "alice@a.test", Token: alice.Token})); err != nil {
		t.Fatalf("AUTH OAUTHBEARER: %v", err)
	}
	if err := c.SendMail("alice@a.test", rcpts, strings.NewReader(msg)); err != nil {
		t.Fatalf("submission again: %v", err)
	}

	// Implicit TLS (port 465's way) takes a message too.
	ic, err := smtp.DialTLS(implicitAddr, &tls.Config{RootCAs: pool, ServerName: "a.test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := ic.Auth(sasl.NewPlainClient("", "alice@a.test", alice.Password)); err != nil {
		t.Fatalf("AUTH over implicit TLS: %v", err)
	}
	if err := ic.SendMail("alice@a.test", []string{"bob@a.test"}, strings.NewReader("From: alice@a.test\r\nTo: bob@a.test\r\nSubject: over 465\r\n\r\nhi\r\n")); err != nil {
		t.Fatalf("submission over implicit TLS: %v", err)
	}
	ic.Close()

	user := func(addr string) *client.Client {
		u, _ := sb.User(addr)
		d := sb.Domain(addr[strings.Index(addr, "@")+1:])
		cl, err := client.New(d.URL, u.Token, sb.CA)
		if err != nil {
			t.Fatal(err)
		}
		return cl
	}
	ctx := context.Background()
	sent, err := user("alice@a.test").List(ctx, mailbox.ListOptions{Folder: "sent"})
	if err != nil || len(sent.Messages) != 2 {
		t.Fatalf("alice's sent: %v %+v", err, sent)
	}
	var s mailbox.Message
	for _, m := range sent.Messages {
		if m.Subject == "from my mail client" {
			s = m
		}
	}
	if s.Subject != "from my mail client" || len(s.Bcc) != 1 || s.Bcc[0] != "dave@a.test" || s.MessageID == "<client-1@laptop>" {
		t.Errorf("the sent copy: %+v", s)
	}
	for _, who := range []string{"bob@a.test", "dave@a.test", "carol@b.test"} {
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			ms, err := user(who).Lookup(ctx, s.MessageID)
			if err == nil && len(ms) == 1 && ms[0].Status == "complete" {
				// A Bcc recipient's copy names at most themselves.
				bccOK := len(ms[0].Bcc) == 0 || (who == "dave@a.test" && len(ms[0].Bcc) == 1 && ms[0].Bcc[0] == who)
				if !bccOK || len(ms[0].Attachments) != 1 || ms[0].Attachments[0].Filename != "notes.bin" {
					t.Errorf("%s's copy: %+v", who, ms[0])
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never got it complete: %v %+v", who, err, ms)
			}
		}
	}

	for _, tc := range []struct {
		name  string
		auth  sasl.Client
		from  string
		msg   string
		code  int
		where string
	}{
		{"no authentication", nil, "alice@a.test", msg, 530, "MAIL"},
		{"wrong password", sasl.NewPlainClient("", "alice@a.test", "not her password"), "", "", 535, "AUTH"},
		{"another user's From", sasl.NewPlainClient("", "alice@a.test", alice.Password), "alice@a.test",
			strings.Replace(msg, "From: Alice <alice@a.test>", "From: Bob <bob@a.test>", 1), 550, "DATA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t)
			var err error
			if tc.auth != nil {
				err = c.Auth(tc.auth)
			}
			if err == nil {
				err = c.SendMail(tc.from, []string{"bob@a.test"}, strings.NewReader(tc.msg))
			}
			var se *smtp.SMTPError
			if !errors.As(err, &se) || se.Code != tc.code {
				t.Fatalf("%s: %v, want %d", tc.where, err, tc.code)
			}
		})
	}
	if sent, _ := user("alice@a.test").List(ctx, mailbox.ListOptions{Folder: "sent"}); len(sent.Messages) != 2 {
		t.Errorf("alice's sent has %d messages after the refusals", len(sent.Messages))
	}
}
