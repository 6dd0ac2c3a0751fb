package interop

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pullmail/pullmail/cli"
)

// require skips the test when a tool is missing (what) and says how to
// install it; with CI set (.ci/run installs every tool) it fails.
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

// python is Debian's python3, the one that sees Debian's python3-dkim (a
// python3 earlier on PATH, pyenv's say, does not).
func python(t testing.TB) string {
	t.Helper()
	bin := "/usr/bin/python3"
	err := exec.Command(bin, "-c", "import dkim, nacl, email").Run()
	require(t, err == nil, "Debian's python3 with python3-dkim", "apt install python3-dkim")
	return bin
}

// runJSON runs a script of testdata with Debian's python3 and decodes
// what it prints as JSON into v.
func runJSON(t testing.TB, v any, script string, args ...string) {
	t.Helper()
	cmd := exec.Command(python(t), append([]string{filepath.Join("testdata", script)}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, errb.String())
	}
	if err := json.Unmarshal(out.Bytes(), v); err != nil {
		t.Fatalf("%s printed %q: %v", script, out.String(), err)
	}
}

// pullmail runs a command of the pullmail CLI in this process with vars
// as its environment and returns its standard output.
func pullmail(t testing.TB, vars map[string]string, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	env := &cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb,
		Getenv: func(k string) string { return vars[k] }, IsTerminal: func(any) bool { return false }}
	if code := cli.Main(context.Background(), env, args); code != 0 {
		t.Fatalf("pullmail %s: exit %d: %s", strings.Join(args, " "), code, errb.String())
	}
	return out.String()
}

// wireForm is msg as an SMTP server reads it: what a client's DATA writer
// (net/textproto's, which go-smtp uses) sends, dot-stuffing undone. Every
// line end becomes CRLF and a last one is added (RFC 5321 §2.3.8).
func wireForm(msg []byte) []byte {
	var b bytes.Buffer
	w := textproto.NewWriter(bufio.NewWriter(&b))
	dw := w.DotWriter()
	dw.Write(msg)
	dw.Close()
	w.W.Flush()
	s := strings.TrimSuffix(b.String(), ".\r\n")
	s = strings.ReplaceAll("\r\n"+s, "\r\n..", "\r\n.")[2:]
	return []byte(s)
}

// recorder is a TCP proxy that keeps what the client sent: the SMTP
// session Postfix held with Pullmail, in clear.
type recorder struct {
	ln   net.Listener
	to   string
	mu   sync.Mutex
	sent bytes.Buffer
	wg   sync.WaitGroup
}

func startRecorder(t testing.TB, to string) *recorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{ln: ln, to: to}
	r.wg.Go(r.serve)
	t.Cleanup(func() { ln.Close(); r.wg.Wait() })
	return r
}

func (r *recorder) addr() string { return r.ln.Addr().String() }

func (r *recorder) serve() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.wg.Go(func() {
			defer c.Close()
			up, err := net.DialTimeout("tcp", r.to, 5*time.Second)
			if err != nil {
				return
			}
			defer up.Close()
			done := make(chan struct{})
			go func() { io.Copy(c, up); c.Close(); close(done) }()
			io.Copy(io.MultiWriter(up, lockedWriter{r}), c)
			up.Close()
			<-done
		})
	}
}

type lockedWriter struct{ r *recorder }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	return w.r.sent.Write(p)
}

// messages returns the content of every DATA the client sent, dot-stuffing
// undone: the bytes the server received.
func (r *recorder) messages() ([][]byte, error) {
	r.mu.Lock()
	s := r.sent.String()
	r.mu.Unlock()
	var out [][]byte
	for {
		i := strings.Index(s, "\r\nDATA\r\n")
		if i < 0 {
			return out, nil
		}
		s = s[i+len("\r\nDATA\r\n"):]
		end := strings.Index(s, "\r\n.\r\n")
		if end < 0 {
			return out, fmt.Errorf("a DATA without its end")
		}
		body := strings.ReplaceAll("\r\n"+s[:end+2], "\r\n..", "\r\n.")[2:]
		out = append(out, []byte(body))
		s = s[end+len("\r\n.\r\n")-2:]
	}
}

// waitGreeting waits until the SMTP server at addr greets with 220.
func waitGreeting(addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			l, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if strings.HasPrefix(l, "220") {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not greet within %v: %v", addr, within, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// base64Lines is b in base64, 76 characters a line, each ended by CRLF.
func base64Lines(b []byte) string {
	s := base64.StdEncoding.EncodeToString(b)
	var out strings.Builder
	for len(s) > 76 {
		out.WriteString(s[:76] + "\r\n")
		s = s[76:]
	}
	out.WriteString(s + "\r\n")
	return out.String()
}
