package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-smtp"

	"github.com/pullmail/pullmail/client"
	"github.com/pullmail/pullmail/discovery"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/testenv"
	"github.com/pullmail/pullmail/tlsca"
)

// testEnv is an Env with buffers, an environment map and a terminal switch.
func testEnv(vars map[string]string, terminal bool) (*Env, *bytes.Buffer, *bytes.Buffer) {
	var out, errb bytes.Buffer
	return &Env{
		Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb,
		Getenv:     func(k string) string { return vars[k] },
		IsTerminal: func(any) bool { return terminal },
	}, &out, &errb
}

func TestHelpEveryCommand(t *testing.T) {
	env, out, _ := testEnv(nil, false)
	if code := Main(context.Background(), env, nil); code != 0 {
		t.Fatalf("no arguments: exit %d", code)
	}
	list := out.String()
	for _, c := range commands {
		if !strings.Contains(list, c.name) {
			t.Errorf("the command list lacks %q", c.name)
		}
		env, out, _ := testEnv(nil, false)
		if code := Main(context.Background(), env, append([]string{"help"}, strings.Fields(c.name)...)); code != 0 {
			t.Errorf("help %s: exit %d", c.name, code)
		}
		if !strings.HasPrefix(out.String(), "Usage: pullmail "+c.name) || len(out.String()) < 80 {
			t.Errorf("help %s: %q", c.name, out.String())
		}
		env, out, _ = testEnv(nil, false)
		if code := Main(context.Background(), env, append(strings.Fields(c.name), "--help")); code != 0 || !strings.Contains(out.String(), "Usage:") {
			t.Errorf("%s --help: exit %d %q", c.name, code, out.String())
		}
	}
	env, _, errb := testEnv(nil, false)
	if code := Main(context.Background(), env, []string{"send", "--bogus"}); code != 2 || !strings.Contains(errb.String(), "bogus") {
		t.Fatalf("unknown flag: exit %d %q", code, errb.String())
	}
}

func TestSendGetWithProgress(t *testing.T) {
	d := testenv.Start(t, "a.test", testenv.Options{})
	alice := d.AddUser(t, "alice@a.test")
	bob := d.AddUser(t, "bob@a.test")
	dir := t.TempDir()
	big := make([]byte, 6<<20)
	rand.Read(big)
	// Two attachments with one name, one of them hostile.
	os.MkdirAll(filepath.Join(dir, "x"), 0o755)
	for _, p := range []string{"same.bin", "x/same.bin"} {
		if err := os.WriteFile(filepath.Join(dir, p), big[:len(big)-len(p)], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	vars := map[string]string{"PULLMAIL_SERVER": d.URL, "PULLMAIL_TOKEN": alice.Token, "PULLMAIL_CA": d.CA}
	env, out, errb := testEnv(vars, true)
	code := Main(context.Background(), env, []string{"send", "--to", "Bob <bob@a.test>", "--subject", "two files",
		"--text", "hi", "--attach", filepath.Join(dir, "same.bin"), "--attach", filepath.Join(dir, "x/same.bin")})
	if code != 0 {
		t.Fatalf("send: exit %d: %s", code, errb.String())
	}
	msgid := strings.TrimSpace(out.String())
	if !strings.Contains(errb.String(), "same.bin") {
		t.Fatalf("no progress bar on a terminal: %q", errb.String())
	}
	// Not a terminal: no progress output at all.
	env2, _, errb2 := testEnv(vars, false)
	if code := Main(context.Background(), env2, []string{"send", "--to", "bob@a.test", "--subject", "quiet", "--attach", filepath.Join(dir, "same.bin")}); code != 0 || errb2.Len() != 0 {
		t.Fatalf("send without a terminal: exit %d, stderr %q", code, errb2.String())
	}
	vars["PULLMAIL_TOKEN"] = bob.Token
	outDir := t.TempDir()
	env, out, errb = testEnv(vars, false)
	if code := Main(context.Background(), env, []string{"get", msgid, "--out", outDir, "--json"}); code != 0 {
		t.Fatalf("get: exit %d: %s", code, errb.String())
	}
	var saved []struct {
		Path      string      `json:"path"`
		ContentID resource.ID `json:"content_id"`
	}
	if err := json.Unmarshal(out.Bytes(), &saved); err != nil || len(saved) != 2 {
		t.Fatalf("get --json: %v %s", err, out.String())
	}
	if saved[0].Path != filepath.Join(outDir, "same.bin") || saved[1].Path != filepath.Join(outDir, "same (1).bin") {
		t.Fatalf("names: %+v", saved)
	}
	for _, s := range saved {
		b, err := os.ReadFile(s.Path)
		if err != nil || resource.IDOf(b) != s.ContentID {
			t.Fatalf("%s: %v", s.Path, err)
		}
	}
	ents, _ := os.ReadDir(outDir)
	if len(ents) != 2 {
		t.Fatalf("stray files in %s: %v", outDir, ents)
	}
}

func TestSafeFilename(t *testing.T) {
	cid := resource.IDOf([]byte("x"))
	for in, want := range map[string]string{
		"report.pdf":         "report.pdf",
		"../../etc/passwd":   "passwd",
		`..\..\win.ini`:      "win.ini",
		".hidden":            "hidden",
		"...":                string(cid),
		"":                   string(cid),
		"a\x00b\nc":          "a_b_c",
		"C:evil":             "C_evil",
		"/":                  string(cid),
		"Venice – photo.png": "Venice – photo.png",
	} {
		if got := SafeFilename(in, cid); got != want {
			t.Errorf("SafeFilename(%q) = %q, want %q", in, got, want)
		}
	}
	if got := SafeFilename(strings.Repeat("é", 300), cid); len(got) > 200 || !utf8.ValidString(got) {
		t.Errorf("long name: %d bytes, valid %v", len(got), utf8.ValidString(got))
	}
}

func FuzzSafeFilename(f *testing.F) {
	for _, s := range []string{"a.txt", "../x", "\x00", "é/é", ".", "a\\b"} {
		f.Add(s)
	}
	cid := resource.IDOf([]byte("x"))
	f.Fuzz(func(t *testing.T, name string) {
		got := SafeFilename(name, cid)
		if got == "" || strings.ContainsAny(got, "/\\\x00") || strings.HasPrefix(got, ".") || len(got) > 200 {
			t.Fatalf("SafeFilename(%q) = %q", name, got)
		}
		if got == "." || got == ".." || filepath.Base(got) != got {
			t.Fatalf("SafeFilename(%q) = %q is not a plain name", name, got)
		}
	})
}

func TestSplitAddresses(t *testing.T) {
	got := splitAddresses(`a@x.test, "Doe, Jane" <jane@x.test>,<b@x.test>,,`)
	want := []string{"a@x.test", `"Doe, Jane" <jane@x.test>`, "<b@x.test>"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q", got)
	}
}

// TestDev runs the sandbox, checks DIR/dev.json's shape (a contract for
// scripts), uses a token from it, and stops it.
func TestDev(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	env, _, _ := testEnv(nil, false)
	// dev writes while the test reads: synchronised buffers.
	out, errb := &syncBuffer{}, &syncBuffer{}
	env.Stdout, env.Stderr = out, errb
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, env, []string{"dev", "--data", dir, "--domains", "a.test,b.test", "--users", "alice@a.test,bob@b.test"})
	}()
	path := filepath.Join(dir, "dev.json")
	var raw []byte
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if b, err := os.ReadFile(path); err == nil {
			raw = b
			break
		}
		select {
		case code := <-done:
			t.Fatalf("dev exited %d: %s", code, errb.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("no dev.json")
		}
	}
	var shape map[string]json.RawMessage
	if err := json.Unmarshal(raw, &shape); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ca", "domains", "users"} {
		if _, ok := shape[k]; !ok {
			t.Errorf("dev.json lacks %q", k)
		}
	}
	var df DevFile
	if err := json.Unmarshal(raw, &df); err != nil {
		t.Fatal(err)
	}
	if len(df.Domains) != 2 || !strings.HasPrefix(df.Domains["a.test"].URL, "https://127.0.0.1:") {
		t.Fatalf("domains %+v", df.Domains)
	}
	u := df.Users["bob@b.test"]
	if u.Server != df.Domains["b.test"].URL || u.Token == "" || u.Password == "" {
		t.Fatalf("user %+v", u)
	}
	c, err := client.New(u.Server, u.Token, df.CA)
	if err != nil {
		t.Fatal(err)
	}
	me, err := c.Me(ctx)
	if err != nil || me.Address != "bob@b.test" {
		t.Fatalf("me: %v %+v", err, me)
	}
	if _, err := c.List(ctx, mailbox.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	// The summary is printed after dev.json is written: wait for its end.
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(out.String(), "Press Ctrl-C"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no summary: %s", out.String())
		}
	}
	if !strings.Contains(out.String(), "PULLMAIL_TOKEN="+u.Token) {
		t.Fatalf("summary lacks the env lines: %s", out.String())
	}
	if _, ok := shape["dns"]; !ok || !strings.HasPrefix(df.DNS, "127.0.0.1:") || !strings.Contains(out.String(), df.DNS) {
		t.Fatalf("dns %q, summary %s", df.DNS, out.String())
	}

	// Another domain finds b.test as docs/PROTOCOL.md §11.1 says: SRV, the
	// redirect service, the AS metadata and the mailbox metadata.
	pool, err := tlsca.LoadPool(df.CA)
	if err != nil {
		t.Fatal(err)
	}
	dc := discovery.New(discovery.Config{Resolver: discovery.NewResolver(df.DNS), RootCAs: pool, AllowPrivate: true})
	defer dc.Close()
	bURL := df.Domains["b.test"].URL
	a, err := dc.Authority(ctx, "b.test")
	if err != nil {
		t.Fatal(err)
	}
	if a.Issuer != bURL || a.TokenEndpoint != bURL+"/oauth/token" || len(a.JWKS.Keys) == 0 {
		t.Errorf("authority %+v, want issuer %s", a, bURL)
	}
	m, err := dc.Mailbox(ctx, "b.test")
	if err != nil {
		t.Fatal(err)
	}
	if m.Domain != "b.test" || m.URL != bURL || m.MTAClientID != "mta@b.test" || m.InboundEndpoint != bURL+"/federation/v1/messages" {
		t.Errorf("mailbox %+v", m.MailboxMetadata)
	}
	if a2, err := dc.Authority(ctx, "a.test"); err != nil || a2.Issuer != df.Domains["a.test"].URL {
		t.Errorf("a.test: %+v %v", a2, err)
	}
	if _, err := dc.Authority(ctx, "c.test"); errs.CodeOf(err) != "no_srv_record" {
		t.Errorf("c.test: %v, want no_srv_record", err)
	}
	// Any SMTP client reaches a domain's users at its "smtp" address
	// (STARTTLS with the sandbox's CA); the message is bob's at once.
	if !strings.HasPrefix(df.Domains["b.test"].SMTP, "127.0.0.1:") || !strings.Contains(out.String(), "smtp "+df.Domains["b.test"].SMTP) {
		t.Fatalf("b.test's smtp %q, summary %s", df.Domains["b.test"].SMTP, out.String())
	}
	sc, err := smtp.DialStartTLS(df.Domains["b.test"].SMTP, &tls.Config{RootCAs: pool, ServerName: "b.test"})
	if err != nil {
		t.Fatalf("smtp: %v", err)
	}
	msg := "From: Someone <someone@example.org>\r\nTo: bob@b.test\r\nSubject: by smtp\r\nMessage-ID: <dev-1@example.org>\r\n\r\nhello from SMTP\r\n"
	if err := sc.SendMail("someone@example.org", []string{"bob@b.test"}, strings.NewReader(msg)); err != nil {
		t.Fatalf("smtp send: %v", err)
	}
	sc.Close()
	l, err := c.List(ctx, mailbox.ListOptions{Folder: "inbox"})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Messages) != 1 || l.Messages[0].Subject != "by smtp" || l.Messages[0].Status != "complete" {
		t.Fatalf("bob's inbox after an SMTP message: %+v", l.Messages)
	}
	// Its "imap" address is an IMAP server (implicit TLS, the sandbox's
	// CA) that bob logs in to with his password.
	imapAddr := df.Domains["b.test"].IMAP
	if !strings.HasPrefix(imapAddr, "127.0.0.1:") || !strings.Contains(out.String(), "imap "+imapAddr) {
		t.Fatalf("b.test's imap %q, summary %s", imapAddr, out.String())
	}
	ic, err := tls.Dial("tcp", imapAddr, &tls.Config{RootCAs: pool, ServerName: "b.test"})
	if err != nil {
		t.Fatalf("imap: %v", err)
	}
	ir := bufio.NewReader(ic)
	fmt.Fprintf(ic, "a LOGIN bob@b.test %q\r\nb STATUS INBOX (MESSAGES)\r\n", df.Users["bob@b.test"].Password)
	var lines []string
	for len(lines) < 3 {
		l, err := ir.ReadString('\n')
		if err != nil {
			t.Fatalf("imap: %v after %q", err, lines)
		}
		lines = append(lines, strings.TrimSpace(l))
	}
	ic.Close()
	if !strings.HasPrefix(lines[0], "* OK") || !strings.HasPrefix(lines[1], "a OK") || lines[2] != "* STATUS INBOX (MESSAGES 1)" {
		t.Errorf("imap session: %q", lines)
	}
	c.HTTP.CloseIdleConnections()
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("dev exit %d: %s", code, errb.String())
	}
}
