// Package e2e runs the built pullmail binary as a user and an operator
// would: real processes, real TLS on loopback, kill -9 in the middle of work.
// Its domains are a sandbox (testenv.Sandbox): 'pullmail serve' processes,
// and, for the tests that run under both sandbox kinds, in-process servers
// too; the CLI is always the binary.
package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pullmail/pullmail/meta/postgres/pgtest"
	"github.com/pullmail/pullmail/sandbox"
	"github.com/pullmail/pullmail/testenv"
	"github.com/pullmail/pullmail/tlsca"
)

var bin string // the pullmail binary under test

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pullmail-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "pullmail")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/pullmail")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building pullmail:", err)
		os.Exit(1)
	}
	code := pgtest.Run(m) // stops the PostgreSQL cluster, if a test started one
	os.RemoveAll(dir)
	os.Exit(code)
}

// run runs pullmail with env added to the environment and stdin, and
// returns stdout, stderr and the exit code.
func run(t testing.TB, env []string, stdin string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// must runs pullmail and fails the test unless it exits 0.
func must(t testing.TB, env []string, stdin string, args ...string) string {
	t.Helper()
	out, errOut, code := run(t, env, stdin, args...)
	if code != 0 {
		t.Fatalf("pullmail %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// serveA starts a.test alone, a 'pullmail serve' process with extra
// flags, with users (pullmail user add, token create) and returns its
// sandbox and domain.
func serveA(t testing.TB, users []string, extra ...string) (*sandbox.Sandbox, *sandbox.Domain) {
	t.Helper()
	sb := testenv.Sandbox(t, sandbox.Config{Kind: sandbox.Process, Binary: bin, Domains: []string{"a.test"}, Users: users,
		LogLevel: "warn", ServeFlags: extra})
	return sb, sb.Domain("a.test")
}

// env is the CLI's environment for a token at d.
func env(sb *sandbox.Sandbox, d *sandbox.Domain, token string) []string {
	return []string{"PULLMAIL_SERVER=" + d.Direct, "PULLMAIL_TOKEN=" + token, "PULLMAIL_CA=" + sb.CA}
}

// token is a user's token in sb.
func token(sb *sandbox.Sandbox, user string) string {
	u, _ := sb.User(user)
	return u.Token
}

// restart starts d's server again, on the same data and port.
func restart(t testing.TB, d *sandbox.Domain) {
	t.Helper()
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// stop ends d's server gracefully and checks it exits 0.
func stop(t testing.TB, d *sandbox.Domain) {
	t.Helper()
	if err := d.Stop(); err != nil {
		t.Fatalf("graceful shutdown: %v", err)
	}
}

type listed struct {
	MessageID   string   `json:"message_id"`
	From        string   `json:"from"`
	To          []string `json:"to"`
	Subject     string   `json:"subject"`
	Date        *string  `json:"date"`
	Status      string   `json:"status"`
	Attachments []struct {
		Filename  string `json:"filename"`
		ContentID string `json:"content_id"`
		Size      int64  `json:"size"`
	} `json:"attachments"`
}

func TestTour(t *testing.T) {
	// The admin commands work beside a running server.
	sb, d := serveA(t, nil)
	dir := d.Dir
	must(t, nil, "", "user", "add", "--data", dir, "alice@a.test", "--password", "alice-password")
	must(t, nil, "bob-password\n", "user", "add", "--data", dir, "bob@a.test")
	if _, errOut, code := run(t, nil, "", "user", "add", "--data", dir, "carol@b.test", "--password", "carol-password"); code == 0 || !strings.Contains(errOut, "a.test") {
		t.Fatalf("a user of another domain: exit %d %q", code, errOut)
	}
	if out := must(t, nil, "", "user", "list", "--data", dir); !strings.Contains(out, "alice@a.test") || !strings.Contains(out, "bob@a.test") {
		t.Fatalf("user list: %q", out)
	}
	aliceTok := strings.TrimSpace(must(t, nil, "", "token", "create", "--data", dir, "alice@a.test"))
	bobTok := strings.TrimSpace(must(t, nil, "", "token", "create", "--data", dir, "bob@a.test"))

	attach := filepath.Join(t.TempDir(), "report.pdf")
	payload := make([]byte, 5<<20+3)
	rand.Read(payload)
	if err := os.WriteFile(attach, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	msgid := strings.TrimSpace(must(t, env(sb, d, aliceTok), "", "send", "--to", "bob@a.test", "--subject", "Quarterly report", "--text", "See attached.", "--attach", attach))
	if !regexp.MustCompile(`^<[0-9a-f-]{36}@a\.test>$`).MatchString(msgid) {
		t.Fatalf("send printed %q", msgid)
	}

	var inbox []listed
	if err := json.Unmarshal([]byte(must(t, env(sb, d, bobTok), "", "list", "--json")), &inbox); err != nil {
		t.Fatal(err)
	}
	if len(inbox) != 1 || inbox[0].MessageID != msgid || inbox[0].Subject != "Quarterly report" || inbox[0].Status != "complete" ||
		inbox[0].Date == nil || !slices.Equal(inbox[0].To, []string{"bob@a.test"}) || inbox[0].From != "alice@a.test" {
		t.Fatalf("bob's inbox: %+v", inbox)
	}
	if a := inbox[0].Attachments; len(a) != 1 || a[0].Filename != "report.pdf" || a[0].Size != int64(len(payload)) || len(a[0].ContentID) != 43 {
		t.Fatalf("attachments: %+v", a)
	}
	if out := must(t, env(sb, d, bobTok), "", "show", msgid); !strings.Contains(out, "Subject: Quarterly report") || !strings.Contains(out, "See attached.") {
		t.Fatalf("show: %q", out)
	}
	var shown struct {
		Body      string `json:"body"`
		MessageID string `json:"message_id"`
	}
	if err := json.Unmarshal([]byte(must(t, env(sb, d, bobTok), "", "show", strings.Trim(msgid, "<>"), "--json")), &shown); err != nil || shown.Body != "See attached." || shown.MessageID != msgid {
		t.Fatalf("show --json: %v %+v", err, shown)
	}
	out := t.TempDir()
	saved := strings.TrimSpace(must(t, env(sb, d, bobTok), "", "get", msgid, "--out", out))
	if saved != filepath.Join(out, "report.pdf") {
		t.Fatalf("get printed %q", saved)
	}
	if got, err := os.ReadFile(saved); err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("saved attachment differs (%v)", err)
	}
	var sent []listed
	json.Unmarshal([]byte(must(t, env(sb, d, aliceTok), "", "list", "--folder", "sent", "--json")), &sent)
	if len(sent) != 1 || sent[0].Status != "sent" {
		t.Fatalf("alice's sent: %+v", sent)
	}

	// Errors: one line on stderr, non-zero exit.
	_, errOut, code := run(t, env(sb, d, aliceTok), "", "send", "--to", "nobody@a.test", "--subject", "x", "--text", "y")
	if code != 1 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.Contains(errOut, "unknown_recipient") {
		t.Fatalf("unknown recipient: exit %d %q", code, errOut)
	}
	_, errOut, code = run(t, env(sb, d, "pmt_nonsense"), "", "list")
	if code != 1 || !strings.Contains(errOut, "invalid_token") {
		t.Fatalf("bad token: exit %d %q", code, errOut)
	}
	_, errOut, code = run(t, []string{"PULLMAIL_SERVER="}, "", "list")
	if code != 1 || !strings.Contains(errOut, "PULLMAIL_SERVER") {
		t.Fatalf("no server: exit %d %q", code, errOut)
	}
	if _, _, code = run(t, nil, "", "frobnicate"); code != 2 {
		t.Fatalf("unknown command: exit %d", code)
	}
	if help := must(t, nil, "", "help", "send"); !strings.Contains(help, "--attach") {
		t.Fatalf("help send: %q", help)
	}

	// Admin commands while the server runs.
	must(t, nil, "", "user", "passwd", "--data", dir, "bob@a.test", "--password", "new-password")
	must(t, nil, "", "user", "del", "--data", dir, "bob@a.test")
	if _, errOut, code := run(t, env(sb, d, bobTok), "", "list"); code != 1 || !strings.Contains(errOut, "invalid_token") {
		t.Fatalf("deleted user's token: exit %d %q", code, errOut)
	}
	stop(t, d)
}

// TestKillDuringUpload kills the server in the middle of a large upload:
// after a restart there is no partial resource, no temporary file and no
// upload row.
func TestKillDuringUpload(t *testing.T) {
	sb, d := serveA(t, []string{"alice@a.test"})
	dir, tok := d.Dir, token(sb, "alice@a.test")
	big := filepath.Join(t.TempDir(), "big.bin")
	f, _ := os.Create(big)
	io.CopyN(f, rand.Reader, 64<<20)
	f.Close()
	cmd := exec.Command(bin, "send", "--to", "alice@a.test", "--subject", "big", "--attach", big)
	cmd.Env = append(os.Environ(), env(sb, d, tok)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until bytes are arriving in the server's temporary directory.
	tmp := filepath.Join(dir, "resources", "tmp")
	deadline := time.Now().Add(20 * time.Second)
	for {
		if largestTmp(tmp) > 1<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the upload never started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	d.Kill()
	cmd.Wait()
	restart(t, d)
	if files := tmpFiles(tmp); len(files) != 0 {
		t.Fatalf("temporary files survived the restart: %v", files)
	}
	var blobs []string
	filepath.Walk(filepath.Join(dir, "resources", "blobs"), func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && info.Size() > 1<<20 {
			blobs = append(blobs, p)
		}
		return nil
	})
	if len(blobs) != 0 {
		t.Fatalf("a partial resource survived: %v", blobs)
	}
	var drafts []listed
	json.Unmarshal([]byte(must(t, env(sb, d, tok), "", "list", "--folder", "drafts", "--json")), &drafts)
	var inbox []listed
	json.Unmarshal([]byte(must(t, env(sb, d, tok), "", "list", "--json")), &inbox)
	if len(drafts) != 0 || len(inbox) != 0 {
		t.Fatalf("half a send survived: drafts %v inbox %v", drafts, inbox)
	}
	stop(t, d)
}

// TestKillDuringSends kills the server while several clients send: after a
// restart every message is either sent and delivered to every recipient or
// not sent at all.
func TestKillDuringSends(t *testing.T) {
	users := []string{"alice@a.test", "bob@a.test", "carol@a.test"}
	sb, d := serveA(t, users)
	toks := map[string]string{}
	for _, u := range users {
		toks[u] = token(sb, u)
	}
	var cmds []*exec.Cmd
	for i := 0; i < 4; i++ {
		script := fmt.Sprintf(`for i in $(seq 1 200); do %q send --to bob@a.test,carol@a.test --subject "m%d-$i" --text "hello $i" >/dev/null 2>&1 || true; done`, bin, i)
		cmd := exec.Command("bash", "-c", script)
		cmd.Env = append(os.Environ(), env(sb, d, toks["alice@a.test"])...)
		// A group of its own: killing it kills the send in flight too,
		// which would otherwise retry against the restarted server (on
		// the same port) while the test counts.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	time.Sleep(1500 * time.Millisecond)
	d.Kill()
	for _, c := range cmds {
		syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
		c.Wait()
	}
	restart(t, d)
	list := func(user, folder string) []listed {
		var l []listed
		if err := json.Unmarshal([]byte(must(t, env(sb, d, toks[user]), "", "list", "--folder", folder, "--json")), &l); err != nil {
			t.Fatal(err)
		}
		return l
	}
	sent := map[string]bool{}
	for _, m := range list("alice@a.test", "sent") {
		sent[m.MessageID] = true
	}
	if len(sent) == 0 {
		t.Fatal("nothing was sent before the kill; the test proves nothing")
	}
	for _, u := range []string{"bob@a.test", "carol@a.test"} {
		got := map[string]bool{}
		for _, m := range list(u, "inbox") {
			if !sent[m.MessageID] {
				t.Errorf("%s holds %s, which alice never sent", u, m.MessageID)
			}
			if got[m.MessageID] {
				t.Errorf("%s holds %s twice", u, m.MessageID)
			}
			got[m.MessageID] = true
		}
		for id := range sent {
			if !got[id] {
				t.Errorf("%s is missing %s", u, id)
			}
		}
	}
	t.Logf("%d messages sent before the kill, all delivered to both", len(sent))
	stop(t, d)
}

// TestServeWithCertificateFiles: serve takes --tls-cert/--tls-key, and a
// client trusting their CA gets through.
func TestServeWithCertificateFiles(t *testing.T) {
	certDir := t.TempDir()
	ca, err := tlsca.LoadOrCreate(certDir)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	var chain []byte
	for _, der := range cert.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	os.WriteFile(filepath.Join(certDir, "cert.pem"), chain, 0o644)
	os.WriteFile(filepath.Join(certDir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600)
	sb, d := serveA(t, []string{"alice@a.test"}, "--tls-cert", filepath.Join(certDir, "cert.pem"), "--tls-key", filepath.Join(certDir, "key.pem"))
	env := []string{"PULLMAIL_SERVER=" + d.Direct, "PULLMAIL_TOKEN=" + token(sb, "alice@a.test"), "PULLMAIL_CA=" + ca.CertPath()}
	must(t, env, "", "list")
	// Another CA does not vouch for these certificates.
	other, err := tlsca.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	env[2] = "PULLMAIL_CA=" + other.CertPath()
	if _, errOut, code := run(t, env, "", "list"); code != 1 || !strings.Contains(errOut, "certificate") {
		t.Fatalf("wrong CA: exit %d %q", code, errOut)
	}
	stop(t, d)
}

// tmpFiles lists the regular files under a resource store's tmp directory,
// whichever node's subdirectory (fsstore keeps tmp/NODE/) they are in.
func tmpFiles(tmp string) map[string]int64 {
	out := map[string]int64{}
	filepath.WalkDir(tmp, func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			if fi, err := e.Info(); err == nil {
				out[p] = fi.Size()
			}
		}
		return nil
	})
	return out
}

// largestTmp is the size of the largest file under tmp (tmpFiles).
func largestTmp(tmp string) int64 {
	var n int64
	for _, sz := range tmpFiles(tmp) {
		n = max(n, sz)
	}
	return n
}
