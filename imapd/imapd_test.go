package imapd_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pullmail/pullmail/client"
	"github.com/pullmail/pullmail/imapd"
	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/sandbox"
	"github.com/pullmail/pullmail/server"
	"github.com/pullmail/pullmail/testenv"
	"github.com/pullmail/pullmail/tlsca"
)

// require skips a test whose outside tool is missing, but fails it in CI
// (CI=true), where .ci/run installs it.
func require(t testing.TB, ok bool, what, install string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is missing (%s); in CI it must run", what, install)
	}
	t.Skipf("%s is not installed (%s)", what, install)
}

// start runs a.test with both IMAP listeners and alice and bob.
func start(t *testing.T) (*sandbox.Sandbox, *sandbox.Domain) {
	t.Helper()
	sb := testenv.Sandbox(t, sandbox.Config{Kind: sandbox.InProcess, Domains: []string{"a.test"},
		Users:  []string{"alice@a.test", "bob@a.test"},
		Server: func(c *server.Config) { c.IMAP, c.IMAPStartTLS = "127.0.0.1:0", "127.0.0.1:0" }})
	return sb, sb.Domain("a.test")
}

// TestImaplib drives the server with Python's standard imaplib: implicit
// TLS and STARTTLS, LOGIN and AUTHENTICATE OAUTHBEARER, LIST with
// SPECIAL-USE, NAMESPACE, STATUS, CREATE and DELETE of a user folder seen
// through the mailbox API (what the webmail reads).
func TestImaplib(t *testing.T) {
	_, err := exec.LookPath("python3")
	require(t, err == nil, "python3", "apt-get install python3")
	sb, a := start(t)
	implicit, starttls := a.Server.IMAPAddrs()
	alice, _ := sb.User("alice@a.test")
	cmd := exec.Command("python3", filepath.Join("testdata", "imaplib_session.py"), implicit, starttls, sb.CA,
		"alice@a.test", alice.Password, alice.Token)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("imaplib: %v\n%s", err, stderr.String())
	}
	var got map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, stdout.String())
	}
	str := func(k string) string { s, _ := got[k].(string); return s }
	strs := func(k string) []string {
		var out []string
		for _, v := range got[k].([]any) {
			out = append(out, v.(string))
		}
		return out
	}
	for _, c := range []string{"IMAP4REV2", "IMAP4REV1", "LITERAL-", "AUTH=PLAIN", "AUTH=OAUTHBEARER"} {
		if !slices.Contains(strs("capabilities"), c) {
			t.Errorf("capability %s missing before login: %v", c, strs("capabilities"))
		}
	}
	for _, c := range []string{"IMAP4REV2", "NAMESPACE", "SPECIAL-USE", "LIST-STATUS", "UNSELECT", "IDLE"} {
		if !slices.Contains(strs("auth_capabilities"), c) {
			t.Errorf("capability %s missing after login: %v", c, strs("auth_capabilities"))
		}
	}
	for _, c := range strs("starttls_capabilities") {
		if strings.HasPrefix(c, "AUTH=") && c != "AUTH=" {
			// Before STARTTLS no mechanism may be offered (LOGINDISABLED).
			t.Errorf("cleartext capabilities offer %s", c)
		}
	}
	if !slices.Contains(strs("starttls_capabilities"), "STARTTLS") {
		t.Errorf("no STARTTLS offered: %v", strs("starttls_capabilities"))
	}
	if !strings.HasPrefix(str("wrong_password"), "NO ") || !strings.HasPrefix(str("login_before_tls"), "NO ") {
		t.Errorf("wrong password: %q, login before TLS: %q; want both refused", str("wrong_password"), str("login_before_tls"))
	}
	if str("login") != "OK" || str("oauthbearer") != "OK" {
		t.Errorf("login %q, oauthbearer %q", str("login"), str("oauthbearer"))
	}
	wantList := []string{`(\HasNoChildren) "/" INBOX`, `(\HasNoChildren \Drafts) "/" "Drafts"`, `(\HasNoChildren \Sent) "/" "Sent"`,
		`(\HasNoChildren \Archive) "/" "Archive"`, `(\HasNoChildren \Junk) "/" "Junk"`, `(\HasNoChildren \Trash) "/" "Trash"`,
		`(\HasNoChildren) "/" "Requests"`}
	for _, w := range wantList {
		if !slices.Contains(strs("list"), w) {
			t.Errorf("LIST lacks %s: %q", w, strs("list"))
		}
	}
	if len(strs("list")) != len(wantList) {
		t.Errorf("LIST = %q, want the %d system folders", strs("list"), len(wantList))
	}
	if want := `(("" "/")) NIL NIL`; str("namespace") != want {
		t.Errorf("NAMESPACE = %q, want %q", str("namespace"), want)
	}
	if want := `INBOX (MESSAGES 0 UNSEEN 0)`; str("status_inbox") != want {
		t.Errorf("STATUS = %q, want %q", str("status_inbox"), want)
	}
	if str("create") != "OK" || str("create_system") != "NO" {
		t.Errorf("CREATE Receipts %q, CREATE Sent %q", str("create"), str("create_system"))
	}
	if want := []string{`(\HasNoChildren) "/" "Receipts"`}; !slices.Equal(strs("list_pattern"), want) {
		t.Errorf(`LIST "" Rec* = %q, want %q`, strs("list_pattern"), want)
	}
	if str("select") != "OK" {
		t.Errorf("SELECT = %q", str("select"))
	}
	if str("delete") != "OK" || !strings.HasPrefix(str("delete_system"), "NO ") {
		t.Errorf("DELETE Receipts %q, DELETE INBOX %q", str("delete"), str("delete_system"))
	}
	if slices.ContainsFunc(strs("list_after"), func(s string) bool { return strings.HasSuffix(s, "Receipts") }) {
		t.Errorf("Receipts still listed after DELETE: %q", strs("list_after"))
	}
}

// TestFoldersSeenByAPI: a folder created over IMAP is the mailbox's
// folder, listed by the API the webmail reads.
func TestFoldersSeenByAPI(t *testing.T) {
	sb, a := start(t)
	implicit, _ := a.Server.IMAPAddrs()
	alice, _ := sb.User("alice@a.test")
	c := dial(t, sb, implicit)
	c.ok(t, "a LOGIN alice@a.test "+quote(alice.Password))
	c.ok(t, "b CREATE Receipts")
	cl, err := client.New(a.URL, alice.Token, sb.CA)
	if err != nil {
		t.Fatal(err)
	}
	fl, err := cl.Folders(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(fl.Folders, func(f mailbox.FolderInfo) bool { return f.Name == "Receipts" && !f.System }) {
		t.Errorf("the API's folders %+v lack Receipts", fl.Folders)
	}
}

// TestBadInput: what a hostile or broken client sends gets a tagged NO or
// BAD (or a BYE for a connection over the limit), and the session, and
// others, go on.
func TestBadInput(t *testing.T) {
	sb, a := start(t)
	implicit, _ := a.Server.IMAPAddrs()
	alice, _ := sb.User("alice@a.test")
	c := dial(t, sb, implicit)
	// A 4 GiB literal announced: refused (no "+" to go on) before a byte
	// of it is read. go-imap answers once the next line has come.
	c.send(t, "a LOGIN {4294967296}")
	c.send(t, "")
	if l := c.tagged(t, "a"); !strings.HasPrefix(l, "a NO") && !strings.HasPrefix(l, "a BAD") {
		t.Errorf("4 GiB literal: %q", l)
	}
	// The same session goes on.
	c.ok(t, "a LOGIN alice@a.test "+quote(alice.Password))
	for _, tc := range []struct{ name, cmd, want string }{
		{"garbage", "b FROB", "b BAD"},
		{"nesting", "c STATUS INBOX " + strings.Repeat("(", 10000), "c BAD"},
		{"no such mailbox", "d STATUS Nope (MESSAGES)", "d NO"},
		{"fetch unselected", "e FETCH 1:*,*:1 (FLAGS)", "e BAD"},
		{"unknown UIDs", "g EXAMINE INBOX", "g OK"},
		{"unknown UIDs fetch", "h UID FETCH 4000000000:* (FLAGS)", "h OK"},
		{"star on empty", "i FETCH 1:*,*:1 (FLAGS)", "i OK"},
		{"store read-only", "j STORE 1 +FLAGS (\\Seen)", "j NO"},
		{"rename", "f RENAME INBOX Other", "f NO"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.send(t, tc.cmd)
			if l := c.tagged(t, tc.cmd[:1]); !strings.HasPrefix(l, tc.want) {
				t.Errorf("%s: %q, want %s", tc.cmd, l, tc.want)
			}
		})
	}
	c.ok(t, "z NOOP") // the session survived
}

// TestConnectionLimits: a user's connections past imapd's per-user limit
// are refused at authentication; closing one frees its place.
func TestConnectionLimits(t *testing.T) {
	sb, a := start(t)
	implicit, _ := a.Server.IMAPAddrs()
	alice, _ := sb.User("alice@a.test")
	bob, _ := sb.User("bob@a.test")
	var conns []*conn
	for range imapd.DefaultMaxConnsPerUser {
		c := dial(t, sb, implicit)
		c.ok(t, "a LOGIN alice@a.test "+quote(alice.Password))
		conns = append(conns, c)
	}
	c := dial(t, sb, implicit)
	c.send(t, "a LOGIN alice@a.test "+quote(alice.Password))
	if l := c.tagged(t, "a"); !strings.HasPrefix(l, "a NO [LIMIT]") {
		t.Errorf("login past the limit: %q", l)
	}
	// Another user is not affected.
	dial(t, sb, implicit).ok(t, "a LOGIN bob@a.test "+quote(bob.Password))
	conns[0].send(t, "z LOGOUT")
	if l := conns[0].tagged(t, "z"); !strings.HasPrefix(l, "* BYE") {
		t.Fatalf("LOGOUT: %q", l)
	}
	conns[0].c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := dial(t, sb, implicit)
		c.send(t, "a LOGIN alice@a.test "+quote(alice.Password))
		l := c.tagged(t, "a")
		if strings.HasPrefix(l, "a OK") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a freed place was not reused: %q", l)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// conn is a raw IMAP connection: the tests send exact bytes.
type conn struct {
	c *tls.Conn
	r *bufio.Reader
}

func dial(t *testing.T, sb *sandbox.Sandbox, addr string) *conn {
	t.Helper()
	pool, err := tlsca.LoadPool(sb.CA)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "a.test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cc := &conn{c: c, r: bufio.NewReader(c)}
	if l := cc.line(t); !strings.HasPrefix(l, "* OK") {
		t.Fatalf("greeting %q", l)
	}
	return cc
}

func (c *conn) send(t *testing.T, line string) {
	t.Helper()
	c.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c.c, "%s\r\n", line); err != nil {
		t.Fatal(err)
	}
}

func (c *conn) line(t *testing.T) string {
	t.Helper()
	c.c.SetDeadline(time.Now().Add(10 * time.Second))
	l, err := c.r.ReadString('\n')
	if err != nil {
		t.Fatalf("reading: %v (after %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

// tagged reads up to the tagged answer to tag (or a BYE) and returns it.
func (c *conn) tagged(t *testing.T, tag string) string {
	t.Helper()
	for {
		l := c.line(t)
		if strings.HasPrefix(l, tag+" ") || strings.HasPrefix(l, "* BYE") {
			// A BYE ends the session: nothing tagged follows.
			return l
		}
	}
}

func (c *conn) ok(t *testing.T, cmd string) {
	t.Helper()
	c.send(t, cmd)
	tag, _, _ := strings.Cut(cmd, " ")
	if l := c.tagged(t, tag); !strings.HasPrefix(l, tag+" OK") {
		t.Fatalf("%s: %q", cmd, l)
	}
}

func quote(s string) string { return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"` }
