package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"

	"github.com/pullmail/pullmail/discovery"
	"github.com/pullmail/pullmail/discovery/dnstest"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/meta/memstore"
	"github.com/pullmail/pullmail/mimeconv"
	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
	rmem "github.com/pullmail/pullmail/resource/memstore"
	"github.com/pullmail/pullmail/tlsca"
)

// mx is a.test's mail exchanger on loopback, over real stores and the
// mailbox service, with users alice and bob.
type mx struct {
	addr   string
	meta   *memstore.Store
	res    *rmem.Store
	users  map[string]int64
	tls    *tls.Config // for clients: trusts the server's CA
	caFile string      // the same CA as a PEM file, for swaks
	mb     *mailbox.Service
	dns    *dnstest.Server // answers SPF, DKIM and DMARC queries
}

func startMX(t *testing.T, maxSize int64) *mx {
	t.Helper()
	return startMXTimeout(t, maxSize, 10*time.Second)
}

// startMXTimeout is startMX with the server's read and write timeout.
func startMXTimeout(t *testing.T, maxSize int64, timeout time.Duration) *mx {
	t.Helper()
	ctx := context.Background()
	m := &mx{meta: memstore.New(), res: rmem.New(), users: map[string]int64{}}
	err := m.meta.Update(ctx, func(tx meta.Tx) error {
		for _, a := range []string{"alice@a.test", "bob@a.test"} {
			u, err := tx.AddUser(ctx, meta.User{Address: a, PasswordHash: "x"})
			if err != nil {
				return err
			}
			m.users[a] = u.ID
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := tlsca.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	stc, err := ca.TLSConfig([]string{"mx.a.test", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	m.tls = &tls.Config{RootCAs: ca.Pool(), ServerName: "mx.a.test"}
	m.caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(m.caFile, ca.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	mb := mailbox.New(mailbox.Config{Domain: "a.test", Meta: m.meta, Resources: m.res})
	m.mb = mb
	// Every lookup goes to a DNS server of the test's (nothing leaves
	// loopback): names it does not know do not exist.
	if m.dns, err = dnstest.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.dns.Close() })
	s := New(Config{Domain: "a.test", Hostname: "mx.a.test", TLS: stc, Users: m.meta, Mailbox: mb, Resources: m.res,
		MaxSize: maxSize, Timeout: timeout, TempDir: t.TempDir(), Resolver: discovery.NewResolver(m.dns.Addr())})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(smallSendBuffers{l})
	t.Cleanup(func() { s.Close() })
	m.addr = l.Addr().String()
	return m
}

// smallSendBuffers gives the server's connections a 4 KiB send buffer, so
// that a client that reads no replies blocks the server's writes after a
// few hundred replies, not after the megabytes loopback's autotuning
// allows: how soon TestPipelineFlood's client is closed then depends on
// the write timeout, not on how fast the server answers. The server writes
// only replies, so nothing else is slower for it.
type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(4096)
	}
	return c, err
}

// send delivers msg with go-smtp's client, over STARTTLS.
func (m *mx) send(t *testing.T, from string, to []string, msg []byte) error {
	t.Helper()
	c, err := smtp.DialStartTLS(m.addr, m.tls)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.SendMail(from, to, bytes.NewReader(msg))
}

func (m *mx) inbox(t *testing.T, addr string) []meta.Message {
	t.Helper()
	var out []meta.Message
	ctx := context.Background()
	ms, err := m.meta.Messages(ctx, m.users[addr], meta.ListOptions{Folder: meta.Inbox})
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range ms {
		full, err := m.meta.Message(ctx, m.users[addr], row.ID)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, full)
	}
	return out
}

func corpus(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "mimeconv", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rendered writes a stored copy back as RFC 5322 bytes from its record.
func (m *mx) rendered(t *testing.T, row meta.Message) []byte {
	t.Helper()
	ph, err := placeholder.Parse(row.Placeholder, placeholder.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	cid := ph.Header.Get(mailbox.HMIMERecord).String()
	id, err := resource.ParseID(strings.Trim(cid, "<>"))
	if err != nil {
		t.Fatalf("%s %q: %v", mailbox.HMIMERecord, cid, err)
	}
	o, err := m.res.Open(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	var js bytes.Buffer
	if _, err := js.ReadFrom(o); err != nil {
		t.Fatal(err)
	}
	rec, err := mimeconv.ParseRecord(js.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := mimeconv.Render(context.Background(), &out, rec, m.res); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestReceive: a message by SMTP reaches both recipients, complete, with the
// attachment as the file's own resource and the original recoverable byte
// for byte.
func TestReceive(t *testing.T) {
	m := startMX(t, 0)
	msg := corpus(t, "corpus/02-attachment.eml")
	if err := m.send(t, "carol@example.org", []string{"alice@a.test", "Bob@A.test"}, msg); err != nil {
		t.Fatalf("send: %v", err)
	}
	file := corpus(t, "attachment.bin")
	for _, who := range []string{"alice@a.test", "bob@a.test"} {
		in := m.inbox(t, who)
		if len(in) != 1 {
			t.Fatalf("%s has %d messages", who, len(in))
		}
		row := in[0]
		if row.Status != meta.StatusComplete || row.Subject != "a file" || row.MessageID != "<m02@example.org>" {
			t.Errorf("%s: row %+v", who, row)
		}
		ph, _ := placeholder.Parse(row.Placeholder, placeholder.Limits{})
		if rcv := ph.Header.Get(placeholder.HReceived).String(); !strings.HasPrefix(rcv, "from localhost ([127.0.0.1]) by mx.a.test with ESMTPS;") {
			t.Errorf("Received %q", rcv)
		}
		found := false
		for _, r := range row.Refs {
			found = found || r.ID == resource.IDOf(file)
		}
		if !found {
			t.Errorf("%s: the attachment is not the file's resource %s: %+v", who, resource.IDOf(file), row.Refs)
		}
		if got := m.rendered(t, row); !bytes.Equal(got, msg) {
			t.Errorf("%s: the rendered message differs from what was sent (%d vs %d bytes)", who, len(got), len(msg))
		}
	}
}

// TestOnce: a sender that retries the same message (its 250 was lost)
// delivers it once.
func TestOnce(t *testing.T) {
	m := startMX(t, 0)
	msg := corpus(t, "corpus/01-plain.eml")
	for range 2 {
		if err := m.send(t, "carol@example.org", []string{"alice@a.test"}, msg); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(m.inbox(t, "alice@a.test")); n != 1 {
		t.Fatalf("%d copies after a retry, want 1", n)
	}
}

// TestRefusals: each refusal has its reply code and stores nothing.
func TestRefusals(t *testing.T) {
	m := startMX(t, 4096)
	big := append([]byte("From: c@example.org\r\nSubject: big\r\n\r\n"), bytes.Repeat([]byte("0123456789abcdef\r\n"), 400)...)
	for _, tc := range []struct {
		name   string
		to     []string
		msg    []byte
		code   int
		enh    smtp.EnhancedCode
		reason string
	}{
		{"relay", []string{"someone@elsewhere.example"}, corpus(t, "corpus/01-plain.eml"), 550, smtp.EnhancedCode{5, 7, 1}, "never an open relay"},
		{"unknown user", []string{"nobody@a.test"}, corpus(t, "corpus/01-plain.eml"), 550, smtp.EnhancedCode{5, 1, 1}, ""},
		{"bad address", []string{"x@-bad-.test"}, corpus(t, "corpus/01-plain.eml"), 553, smtp.EnhancedCode{5, 1, 3}, ""},
		{"too large", []string{"alice@a.test"}, big, 552, smtp.EnhancedCode{5, 3, 4}, ""},
		{"too many recipients", slices.Repeat([]string{"alice@a.test"}, 101), corpus(t, "corpus/01-plain.eml"), 452, smtp.EnhancedCode{4, 5, 3}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := m.send(t, "c@example.org", tc.to, tc.msg)
			var se *smtp.SMTPError
			if !errors.As(err, &se) || se.Code != tc.code || se.EnhancedCode != tc.enh {
				t.Fatalf("send: %v, want %d %v", err, tc.code, tc.enh)
			}
		})
	}
	for _, who := range []string{"alice@a.test", "bob@a.test"} {
		if n := len(m.inbox(t, who)); n != 0 {
			t.Errorf("%s has %d messages after refusals", who, n)
		}
	}
}

// TestSmuggling: a bare-LF or bare-CR "dot" inside DATA (SMTP smuggling)
// never ends the message and never starts a second one.
func TestSmuggling(t *testing.T) {
	m := startMX(t, 0)
	conn, err := net.Dial("tcp", m.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	expect := func(prefix string) string {
		t.Helper()
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("waiting for %s: %v", prefix, err)
			}
			if len(line) >= 4 && line[3] == '-' {
				continue // a multi-line reply
			}
			if !strings.HasPrefix(line, prefix) {
				t.Fatalf("reply %q, want %s", line, prefix)
			}
			return line
		}
	}
	send := func(s string) {
		if _, err := conn.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	expect("220")
	send("EHLO smuggler.example\r\n")
	expect("250")
	send("MAIL FROM:<c@example.org>\r\n")
	expect("250")
	send("RCPT TO:<alice@a.test>\r\n")
	expect("250")
	send("DATA\r\n")
	expect("354")
	send("Subject: one\r\n\r\nfirst\n.\nMAIL FROM:<c@example.org>\r\nRCPT TO:<bob@a.test>\r\nDATA\r\nSubject: two\r\n\r\nsecond\r.\rthird\r\n.\r\n")
	reply := expect("")
	send("QUIT\r\n")
	a, b := m.inbox(t, "alice@a.test"), m.inbox(t, "bob@a.test")
	if len(b) != 0 {
		t.Fatalf("a smuggled second message reached bob: %d", len(b))
	}
	switch {
	case strings.HasPrefix(reply, "250"):
		if len(a) != 1 || !bytes.Contains(m.rendered(t, a[0]), []byte("\n.\nMAIL FROM:")) {
			t.Fatalf("accepted (%q) but alice has %d messages, or the body was split", reply, len(a))
		}
	case strings.HasPrefix(reply, "5"):
		if len(a) != 0 {
			t.Fatalf("refused (%q) but alice has %d messages", reply, len(a))
		}
	default:
		t.Fatalf("reply %q", reply)
	}
	t.Logf("the server answered %q", strings.TrimSpace(reply))
}

// TestSwaks: swaks (Debian's, an SMTP client no one here wrote) sends a
// message with an attachment over verified STARTTLS; the attachment is the
// file's own resource and the message renders back as swaks sent it.
func TestSwaks(t *testing.T) {
	bin, err := exec.LookPath("swaks")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("swaks is missing (apt install swaks); in CI it must run")
		}
		t.Skip("swaks is not installed (apt install swaks)")
	}
	m := startMX(t, 0)
	file := corpus(t, "attachment.bin")
	path := filepath.Join(t.TempDir(), "data.bin")
	if err := os.WriteFile(path, file, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--server", m.addr, "--tls", "--tls-verify", "--tls-ca-path", m.caFile,
		"--ehlo", "swaks.example", "--from", "someone@example.org", "--to", "alice@a.test",
		"--header", "Subject: from swaks", "--attach-type", "application/octet-stream", "--attach", "@"+path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	in := m.inbox(t, "alice@a.test")
	if len(in) != 1 || in[0].Subject != "from swaks" || in[0].Status != meta.StatusComplete {
		t.Fatalf("alice's inbox: %+v\n%s", in, out)
	}
	found := false
	for _, r := range in[0].Refs {
		found = found || r.ID == resource.IDOf(file)
	}
	if !found {
		t.Errorf("the attachment is not the file's resource; refs %+v\nswaks said:\n%s", in[0].Refs, out)
	}
	// The rendered message is what swaks wrote: its transcript shows each
	// line of the data it sent after " > ".
	got := m.rendered(t, in[0])
	for _, line := range strings.Split(string(out), "\n") {
		if sent, ok := strings.CutPrefix(line, " > "); ok && strings.HasPrefix(sent, "Subject:") {
			if !bytes.Contains(got, []byte(strings.TrimRight(sent, "\r")+"\r\n")) {
				t.Errorf("swaks sent %q; the rendered message lacks it:\n%s", sent, got)
			}
		}
	}
	if !bytes.Contains(bytes.ToLower(got), []byte("content-transfer-encoding: base64")) {
		t.Errorf("rendered message has no base64 part:\n%s", got)
	}
	ph, _ := placeholder.Parse(in[0].Placeholder, placeholder.Limits{})
	if rcv := ph.Header.Get(placeholder.HReceived).String(); !strings.Contains(rcv, "from swaks.example ([127.0.0.1]) by mx.a.test with ESMTPS") {
		t.Errorf("Received %q", rcv)
	}
}

// TestCollectedMeanwhile: a delivery whose resources were stored before a
// garbage collection ran is refused as temporary (the sender retries), not
// committed over bytes the collection may have removed.
func TestCollectedMeanwhile(t *testing.T) {
	m := startMX(t, 0)
	ctx := context.Background()
	epoch, err := m.mb.CollectorEpoch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, err := mimeconv.Convert(ctx, bytes.NewReader(corpus(t, "corpus/01-plain.eml")), m.res, mimeconv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// An unreferenced resource for the collector to take: it condemns,
	// removes and releases, and the epoch moves.
	if _, err := m.res.Put(ctx, strings.NewReader("orphan"), resource.PutOptions{Size: -1}); err != nil {
		t.Fatal(err)
	}
	if n, err := m.mb.CollectGarbage(ctx, 0); err != nil || n == 0 {
		t.Fatalf("CollectGarbage removed %d: %v", n, err)
	}
	d := mailbox.SMTPDelivery{Recipients: []string{"alice@a.test"}, Message: res.Message, Resources: res.Resources,
		Digest: res.Record.SHA256, Epoch: epoch}
	if _, err := m.mb.ReceiveSMTP(ctx, d); errs.CodeOf(err) != "collecting" || errs.KindOf(err) != errs.Temporary {
		t.Fatalf("ReceiveSMTP after a collection: %v, want temporary collecting", err)
	}
	if n := len(m.inbox(t, "alice@a.test")); n != 0 {
		t.Fatalf("%d messages stored", n)
	}
	// What the check guards against: the collection took the delivery's
	// unreferenced resources, so committing it would name missing bytes.
	gone := 0
	for _, r := range res.Resources {
		if _, err := m.res.Stat(ctx, r.ID); errors.Is(err, resource.ErrNotFound) {
			gone++
		}
	}
	if gone == 0 {
		t.Fatal("the collection took none of the delivery's resources: the test shows nothing")
	}
}

// TestAuthentication: SPF, DKIM and DMARC as the mail exchanger records
// them in Authentication-Results, against records in a real DNS server and
// messages signed by go-msgauth's signer; a forged Authentication-Results
// in this server's name is dropped.
func TestAuthentication(t *testing.T) {
	m := startMX(t, 0)
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	m.dns.AddTXT("sel._domainkey.signer.test", "v=DKIM1; k=ed25519; p="+base64.StdEncoding.EncodeToString(pub))
	m.dns.AddTXT("signer.test", "v=spf1 ip4:127.0.0.1 -all")
	m.dns.AddTXT("_dmarc.signer.test", "v=DMARC1; p=reject")
	m.dns.AddTXT("elsewhere.test", "v=spf1 ip4:192.0.2.1 -all")
	m.dns.AddTXT("_dmarc.elsewhere.test", "v=DMARC1; p=quarantine")

	sign := func(msg string) []byte {
		var b bytes.Buffer
		if err := dkim.Sign(&b, strings.NewReader(msg), &dkim.SignOptions{Domain: "signer.test", Selector: "sel", Signer: priv}); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	body := "From: Sig <sig@signer.test>\r\nTo: alice@a.test\r\nSubject: %s\r\nAuthentication-Results: mx.a.test; dkim=pass (forged)\r\n\r\nsigned body\r\n"
	tampered := sign(fmt.Sprintf(body, "tampered"))
	tampered = bytes.Replace(tampered, []byte("signed body"), []byte("changed body"), 1)
	for _, tc := range []struct {
		subject, from string // the subject names the case
		msg           []byte
		want          []string // substrings of the Authentication-Results value
	}{
		{"all pass", "bounce@signer.test", sign(fmt.Sprintf(body, "all pass")),
			[]string{"mx.a.test;", "spf=pass", "dkim=pass", "header.d=signer.test", "dmarc=pass", "header.from=signer.test"}},
		{"tampered", "bounce@signer.test", tampered, []string{"spf=pass", "dkim=fail", "dmarc=pass"}},
		// Header fields only, no empty line (RFC 5322 §3.5): the
		// signature still verifies (dkimpy agrees; interop's corpus test).
		{"headers only", "bounce@signer.test", bytes.TrimSuffix(sign("From: Sig <sig@signer.test>\r\nSubject: headers only\r\n\r\n"), []byte("\r\n")),
			[]string{"spf=pass", "dkim=pass", "header.d=signer.test", "dmarc=pass"}},
		{"spf fail", "x@elsewhere.test", []byte("From: x@elsewhere.test\r\nSubject: spf fail\r\n\r\nhi\r\n"),
			[]string{"spf=fail", "dkim=none", "dmarc=fail", "header.from=elsewhere.test"}},
		{"no records", "x@unknown.test", []byte("From: x@unknown.test\r\nSubject: no records\r\n\r\nhi\r\n"),
			[]string{"spf=none", "dkim=none", "dmarc=none"}},
	} {
		t.Run(tc.subject, func(t *testing.T) {
			if err := m.send(t, tc.from, []string{"alice@a.test"}, tc.msg); err != nil {
				t.Fatal(err)
			}
			var row *meta.Message
			for _, r := range m.inbox(t, "alice@a.test") {
				if r.Subject == tc.subject {
					row = &r
				}
			}
			if row == nil {
				t.Fatal("not delivered")
			}
			ph, _ := placeholder.Parse(row.Placeholder, placeholder.Limits{})
			ar := ph.Header.Get(HAuthenticationResults).List()
			if len(ar) != 1 {
				t.Fatalf("Authentication-Results %q: want exactly ours (the forged one dropped)", ar)
			}
			for _, w := range tc.want {
				if !strings.Contains(ar[0], w) {
					t.Errorf("Authentication-Results %q lacks %q", ar[0], w)
				}
			}
			// The original keeps what was sent, forged header and all.
			if got := m.rendered(t, *row); !bytes.Equal(got, tc.msg) {
				t.Errorf("the record does not render what was sent")
			}
		})
	}
}

// TestStallingClient: a client that stops sending, between commands or in
// the middle of DATA, is disconnected once the server's timeout has passed
// (RFC 5321 §4.5.3.2; 5 minutes by default, a second here), and the
// message it never finished is not stored.
func TestStallingClient(t *testing.T) {
	if d := New(Config{}).cfg.Timeout; d != 5*time.Minute {
		t.Errorf("default timeout %v, want RFC 5321 §4.5.3.2's 5 minutes", d)
	}
	const timeout = time.Second
	m := startMXTimeout(t, 0, timeout)
	for _, tc := range []struct {
		name  string
		sends []string // before the client stalls, each answered
		data  string   // then written unanswered
	}{
		{"after the greeting", nil, ""},
		{"after EHLO", []string{"EHLO staller.example"}, ""},
		{"in a command", []string{"EHLO staller.example"}, "MAIL FROM:<c@exa"},
		{"in DATA", []string{"EHLO staller.example", "MAIL FROM:<c@example.org>", "RCPT TO:<alice@a.test>", "DATA"},
			"Subject: stalled\r\n\r\nthe first line, and no more\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", m.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(timeout + 10*time.Second))
			br := bufio.NewReader(conn)
			reply := func() string {
				t.Helper()
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						t.Fatalf("reading a reply: %v", err)
					}
					if len(line) < 4 || line[3] != '-' {
						return line
					}
				}
			}
			reply() // 220
			for _, c := range tc.sends {
				conn.Write([]byte(c + "\r\n"))
				if r := reply(); r[0] != '2' && r[0] != '3' {
					t.Fatalf("%s: %q", c, r)
				}
			}
			conn.Write([]byte(tc.data))
			start := time.Now()
			// Whatever the server says on closing (421), then the end.
			rest, err := io.ReadAll(br)
			took := time.Since(start)
			if err != nil {
				t.Fatalf("the server did not close the connection: %v after %v (%q)", err, took, rest)
			}
			// go-smtp answers what a stall cut short (a partial command
			// as a command, a DATA as a temporary failure) and closes
			// after one more timeout: at most two.
			if took < timeout-100*time.Millisecond || took > 2*timeout+3*time.Second {
				t.Errorf("closed after %v, want within twice the timeout %v", took, timeout)
			}
			replies := strings.Split(strings.TrimSuffix(string(rest), "\r\n"), "\r\n")
			if last := replies[len(replies)-1]; len(rest) > 0 && !strings.HasPrefix(last, "421 4.4.2") {
				t.Errorf("closing reply %q, want 421 4.4.2", rest)
			}
			if tc.name == "in DATA" && (len(replies) != 2 || replies[0][0] != '4') {
				t.Errorf("replies to the stalled DATA %q, want a temporary failure (the sender retries), then 421", replies)
			}
		})
	}
	if n := len(m.inbox(t, "alice@a.test")); n != 0 {
		t.Errorf("a stalled message was stored: %d", n)
	}
}

// TestHostileInput: a declared SIZE over the limit is refused at MAIL,
// before any data (RFC 1870 §6.1); a header of a megabyte and ten thousand
// nested multiparts are answered without storing a half message.
func TestHostileInput(t *testing.T) {
	m := startMX(t, 8<<20)
	t.Run("declared SIZE", func(t *testing.T) {
		c, err := smtp.DialStartTLS(m.addr, m.tls)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		err = c.Mail("c@example.org", &smtp.MailOptions{Size: 9 << 20})
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 552 || se.EnhancedCode != (smtp.EnhancedCode{5, 3, 4}) {
			t.Fatalf("MAIL with SIZE over the limit: %v, want 552 5.3.4", err)
		}
	})
	var deep bytes.Buffer
	deep.WriteString("From: c@example.org\r\nSubject: deep\r\nMIME-Version: 1.0\r\n")
	for i := range 10000 {
		fmt.Fprintf(&deep, "Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n", i, i)
	}
	deep.WriteString("Content-Type: text/plain\r\n\r\nthe bottom\r\n")
	for i := 9999; i >= 0; i-- {
		fmt.Fprintf(&deep, "--b%d--\r\n", i)
	}
	for _, tc := range []struct {
		name string
		msg  []byte
	}{
		// Over the line limit (1 MiB), with a second transaction after
		// it that must not be read as commands.
		{"a 1 MB header", []byte("From: c@example.org\r\nSubject: big header\r\nX-Big: " + strings.Repeat("a", 1<<20) +
			"\r\n\r\nbody\r\n.\r\nMAIL FROM:<c@example.org>\r\nRCPT TO:<bob@a.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n")},
		{"10,000 nested multiparts", deep.Bytes()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(m.inbox(t, "alice@a.test"))
			err := m.send(t, "c@example.org", []string{"alice@a.test"}, tc.msg)
			after := m.inbox(t, "alice@a.test")
			t.Logf("%s: %v; %d stored", tc.name, err, len(after)-before)
			if err == nil {
				// Accepted: then whole, and written back exactly.
				if len(after) != before+1 || !bytes.Equal(m.rendered(t, after[len(after)-1]), tc.msg) {
					t.Fatalf("accepted, but not stored whole")
				}
				return
			}
			var se *smtp.SMTPError
			if !errors.As(err, &se) || se.Code/100 != 5 || len(after) != before {
				t.Fatalf("%v, %d stored: want a permanent refusal that stores nothing", err, len(after)-before)
			}
			if n := len(m.inbox(t, "bob@a.test")); n != 0 {
				t.Fatalf("bob got %d messages: the rest of the refused data was read as commands", n)
			}
		})
	}
}

// TestPipelineFlood: a client that pipelines commands without ever reading
// the replies (RFC 2920 abuse) fills its own receive window; the server's
// write then times out and it closes the connection, instead of buffering
// replies without bound, and serves the next client as before. The flood is
// of NOOPs, which the server answers without refusing anything, so it is the
// write timeout that ends it, not MaxErrors (TestErrorLimit).
func TestPipelineFlood(t *testing.T) {
	const timeout = time.Second
	m := startMXTimeout(t, 0, timeout)
	conn, err := net.Dial("tcp", m.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.(*net.TCPConn).SetReadBuffer(4096)
	conn.SetWriteDeadline(time.Now().Add(timeout + 60*time.Second))
	flood := []byte(strings.Repeat("NOOP\r\n", 16384))
	conn.Write([]byte("EHLO flood.example\r\nMAIL FROM:<c@example.org>\r\n"))
	start := time.Now()
	var sent int64
	for {
		n, err := conn.Write(flood)
		sent += int64(n)
		if err != nil {
			t.Logf("closed after %v and %d KiB of commands: %v", time.Since(start), sent>>10, err)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("the server never closed a client that reads nothing")
			}
			break
		}
	}
	if err := m.send(t, "c@example.org", []string{"alice@a.test"}, corpus(t, "corpus/01-plain.eml")); err != nil {
		t.Fatalf("the next client: %v", err)
	}
	if n := len(m.inbox(t, "alice@a.test")); n != 1 {
		t.Errorf("alice has %d messages, want the next client's 1", n)
	}
}

// TestErrorLimit: a session that has had MaxErrors recipients refused gets
// 421 and is closed (a directory-harvest probe ends there): the valid
// recipient it had gets nothing, and the next client is served.
func TestErrorLimit(t *testing.T) {
	m := startMX(t, 0)
	conn, err := net.Dial("tcp", m.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	var cmds strings.Builder
	cmds.WriteString("EHLO probe.example\r\nMAIL FROM:<c@example.org>\r\nRCPT TO:<alice@a.test>\r\n")
	for i := range 25 {
		fmt.Fprintf(&cmds, "RCPT TO:<guess%d@a.test>\r\n", i)
	}
	if _, err := conn.Write([]byte(cmds.String())); err != nil {
		t.Fatal(err)
	}
	replies, err := io.ReadAll(conn) // until the server closes
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("reading the replies: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(replies)), "\r\n")
	var unknown int
	for _, l := range lines {
		if strings.HasPrefix(l, "550 5.1.1 ") {
			unknown++
		}
	}
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "421 4.7.0 ") {
		t.Errorf("last reply %q, want 421 4.7.0", last)
	}
	if unknown != 19 {
		t.Errorf("%d recipients refused with 550 before the 421, want 19 (the 20th is the 421)", unknown)
	}
	if err := m.send(t, "c@example.org", []string{"alice@a.test"}, corpus(t, "corpus/01-plain.eml")); err != nil {
		t.Fatalf("the next client: %v", err)
	}
	if n := len(m.inbox(t, "alice@a.test")); n != 1 {
		t.Errorf("alice has %d messages, want the next client's 1", n)
	}
}
