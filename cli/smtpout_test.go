package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pullmail/pullmail/client"
	"github.com/pullmail/pullmail/discovery"
	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/mta"
	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/sandbox"
	"github.com/pullmail/pullmail/server"
	"github.com/pullmail/pullmail/testenv"
)

// TestSendToSMTPDomain: b.test publishes no Pullmail record, only an MX, so
// a.test's MTA delivers to it by SMTP (docs/PROTOCOL.md §11.1.1, §13.10):
// composed as MIME, DKIM-signed with the keys 'pullmail dkim' made, over
// STARTTLS to b.test's mail exchanger, which converts it back. The
// attachment arrives as the same resource, SPF, DKIM and DMARC pass, and a
// recipient the exchanger refuses gets the author a notice.
func TestSendToSMTPDomain(t *testing.T) {
	outPort := 0 // b.test's SMTP port, once known: a.test dials it on every MX
	sb := testenv.Sandbox(t, sandbox.Config{Kind: sandbox.InProcess, Domains: []string{"a.test", "b.test"},
		Users: []string{"alice@a.test", "bob@b.test"}, SMTP: true,
		Server: func(c *server.Config) { c.SMTPOutPort = outPort }})
	a, b := sb.Domain("a.test"), sb.Domain("b.test")
	_, port, err := net.SplitHostPort(b.SMTP)
	if err != nil {
		t.Fatal(err)
	}
	if outPort, err = strconv.Atoi(port); err != nil {
		t.Fatal(err)
	}

	// a.test's DKIM keys, made by the command, published with SPF and
	// DMARC; b.test becomes an SMTP-only domain.
	env, out, errb := testEnv(nil, false)
	if code := Main(context.Background(), env, []string{"dkim", "--data", a.Dir, "--json"}); code != 0 {
		t.Fatalf("dkim: exit %d: %s", code, errb.String())
	}
	var recs []struct{ Selector, Name, Record string }
	if err := json.Unmarshal(out.Bytes(), &recs); err != nil || len(recs) != 2 {
		t.Fatalf("dkim --json: %v %s", err, out.String())
	}
	dns := sb.Directory.DNS
	keys, err := mta.LoadDKIM(filepath.Join(a.Dir, "keys"))
	if err != nil || len(keys) != 2 {
		t.Fatalf("LoadDKIM: %d keys, %v", len(keys), err)
	}
	for _, r := range recs {
		txt := r.Record[strings.Index(r.Record, "\"")+1 : len(r.Record)-1]
		dns.AddTXT(r.Name, strings.ReplaceAll(txt, "\" \"", ""))
	}
	dns.AddTXT("a.test", "v=spf1 ip4:127.0.0.1 -all")
	dns.AddTXT("_dmarc.a.test", "v=DMARC1; p=reject")
	dns.RemoveSRV(discovery.ServiceRS + "b.test")
	dns.AddMX("b.test", 10, "mx.b.test")
	dns.AddA("mx.b.test", "127.0.0.1")
	// a.test again, with the port and the keys.
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	file := filepath.Join(dir, "report.pdf")
	payload := []byte(strings.Repeat("%PDF-1.7 a report of some length\n", 3000))
	if err := os.WriteFile(file, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	alice, _ := sb.User("alice@a.test")
	vars := map[string]string{"PULLMAIL_SERVER": a.URL, "PULLMAIL_TOKEN": alice.Token, "PULLMAIL_CA": sb.CA}
	env, out, errb = testEnv(vars, false)
	if code := Main(context.Background(), env, []string{"send", "--to", "Bob <bob@b.test>", "--cc", "nobody@b.test",
		"--subject", "By SMTP", "--text", "Grüße über SMTP", "--attach", file}); code != 0 {
		t.Fatalf("send: exit %d: %s", code, errb.String())
	}
	msgid := strings.TrimSpace(out.String())

	bob, _ := sb.User("bob@b.test")
	bc, err := client.New(b.URL, bob.Token, sb.CA)
	if err != nil {
		t.Fatal(err)
	}
	var got mailbox.Message
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		ms, err := bc.Lookup(context.Background(), msgid)
		if err == nil && len(ms) == 1 {
			got = ms[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob never got %s: %v\na.test:\n%s", msgid, err, a.Log())
		}
	}
	if got.Status != "complete" || got.Subject != "By SMTP" || len(got.Attachments) != 1 {
		t.Fatalf("bob's copy: %+v", got)
	}
	if att := got.Attachments[0]; att.ContentID != resource.IDOf(payload) || att.Filename != "report.pdf" {
		t.Errorf("the attachment arrived as %+v, want the file's resource %s", att, resource.IDOf(payload))
	}
	var ph struct {
		Headers map[string]json.RawMessage `json:"headers"`
	}
	full, err := bc.Get(context.Background(), got.ID)
	if err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(full.Placeholder, &ph)
	ar := string(ph.Headers["Authentication-Results"])
	for _, w := range []string{"spf=pass", "dkim=pass", "header.d=a.test", "dmarc=pass"} {
		if !strings.Contains(ar, w) {
			t.Errorf("Authentication-Results %s lacks %q", ar, w)
		}
	}
	// Both signatures (Ed25519 and RSA) verify.
	if n := strings.Count(ar, "dkim=pass"); n != 2 {
		t.Errorf("%d DKIM signatures pass, want 2: %s", n, ar)
	}
	t.Logf("Authentication-Results: %s", ar)

	// nobody@b.test was refused at RCPT (550 5.1.1): Alice gets a notice
	// naming it, and only it.
	ac, err := client.New(a.URL, alice.Token, sb.CA)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		l, err := ac.List(context.Background(), mailbox.ListOptions{Folder: "inbox"})
		if err == nil && len(l.Messages) == 1 {
			if s := l.Messages[0].Subject; !strings.Contains(s, "nobody@b.test") || strings.Contains(s, "bob@b.test") {
				t.Errorf("notice subject %q", s)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no notice for the refused recipient: %+v %v\n%s", l, err, a.Log())
		}
	}

	// Alice sees each recipient's delivery state in list --json and show
	// --json: bob delivered by SMTP over STARTTLS (unverified: b.test's
	// certificate does not name mx.b.test), nobody failed with the
	// exchanger's 550.
	check := func(what string, ds []mailbox.Delivery) {
		t.Helper()
		if len(ds) != 2 {
			t.Fatalf("%s: deliveries %+v", what, ds)
		}
		bob, nobody := ds[0], ds[1]
		if bob.Recipient != "bob@b.test" || bob.Via != "smtp" || bob.State != "delivered" || bob.MX != "mx.b.test" || bob.TLS != "unverified" {
			t.Errorf("%s: bob %+v", what, bob)
		}
		if nobody.Recipient != "nobody@b.test" || nobody.State != "failed" || nobody.Code != 550 || !strings.HasPrefix(nobody.Reply, "550 5.1.1") {
			t.Errorf("%s: nobody %+v", what, nobody)
		}
	}
	env, out, errb = testEnv(vars, false)
	if code := Main(context.Background(), env, []string{"list", "--folder", "sent", "--json"}); code != 0 {
		t.Fatalf("list: exit %d: %s", code, errb.String())
	}
	var sent []mailbox.Message
	if err := json.Unmarshal(out.Bytes(), &sent); err != nil || len(sent) != 1 {
		t.Fatalf("list --json: %v %s", err, out.String())
	}
	check("list --json", sent[0].Deliveries)
	env, out, errb = testEnv(vars, false)
	if code := Main(context.Background(), env, []string{"show", "--json", msgid}); code != 0 {
		t.Fatalf("show: exit %d: %s", code, errb.String())
	}
	var shown mailbox.Message
	if err := json.Unmarshal(out.Bytes(), &shown); err != nil {
		t.Fatalf("show --json: %v %s", err, out.String())
	}
	check("show --json", shown.Deliveries)
	t.Logf("deliveries: %s", out.Bytes()[bytes.Index(out.Bytes(), []byte(`"deliveries"`)):][:400])
}
