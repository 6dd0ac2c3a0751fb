package sandbox

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pullmail/pullmail/client"
	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/placeholder"
)

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// pullmailBinary builds cmd/pullmail once for the tests of kind Process.
func pullmailBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pullmail-sandbox-")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "pullmail")
		if out, err := exec.Command("go", "build", "-o", binary, "../cmd/pullmail").CombinedOutput(); err != nil {
			buildErr = err
			t.Logf("go build: %s", out)
		}
	})
	if buildErr != nil {
		t.Fatalf("building pullmail: %v", buildErr)
	}
	return binary
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binary != "" {
		os.RemoveAll(filepath.Dir(binary))
	}
	os.Exit(code)
}

// send sends a message with a text of its own from one user to another
// and returns its Message-ID.
func send(t *testing.T, c *client.Client, from, to, text string) string {
	t.Helper()
	ctx := context.Background()
	up, err := c.Upload(ctx, strings.NewReader(text), mailbox.UploadOptions{Size: int64(len(text))})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := placeholder.NewLeaf(up.ContentID, up.Size, "text/plain; charset=UTF-8", "inline", "")
	if err != nil {
		t.Fatal(err)
	}
	m := placeholder.New(from, []string{to}, nil, nil, "across")
	m.Parts = append(m.Parts, leaf)
	d, err := c.CreateDraft(ctx, m.Canonical())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Send(ctx, d.ID); err != nil {
		t.Fatal(err)
	}
	return d.MessageID
}

// waitComplete waits until c's inbox holds msgid complete.
func waitComplete(t *testing.T, c *client.Client, msgid string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		l, err := c.List(context.Background(), mailbox.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range l.Messages {
			if m.MessageID == msgid && m.Status == "complete" {
				return
			}
			if m.MessageID == msgid && m.Status == "failed" {
				t.Fatalf("the copy failed: %s", m.StatusReason)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not complete after 60 s: %+v", msgid, l.Messages)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTwoDomains starts a.test and b.test under each kind, with the wire
// counted: a message from alice to bob goes as the protocol says (b.test
// finds a.test through the sandbox's DNS and pulls the text), the wire
// carries it, and the users' own traffic is not counted.
func TestTwoDomains(t *testing.T) {
	for _, kind := range Kinds {
		t.Run(kind.String(), func(t *testing.T) {
			cfg := Config{Kind: kind, Dir: t.TempDir(), Users: []string{"alice@a.test", "Bob@B.test"}, CountWire: true}
			if kind == Process {
				cfg.Binary = pullmailBinary(t)
			}
			s, err := Start(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := s.Close(); err != nil {
					t.Errorf("closing: %v", err)
				}
			}()
			if ds := s.Domains(); len(ds) != 2 || ds[0].Name != "a.test" || ds[1].Name != "b.test" {
				t.Fatalf("domains: %+v", ds)
			}
			a, b := s.Domain("a.test"), s.Domain("b.test")
			if a.URL == a.Direct || (kind == InProcess) != (a.Pid() == os.Getpid()) {
				t.Fatalf("a.test: URL %s, direct %s, pid %d", a.URL, a.Direct, a.Pid())
			}
			if _, ok := s.User("bob@b.test"); !ok {
				t.Fatal("no bob@b.test")
			}
			alice, err := s.Client("alice@a.test")
			if err != nil {
				t.Fatal(err)
			}
			bob, err := s.Client("bob@b.test")
			if err != nil {
				t.Fatal(err)
			}
			defer alice.HTTP.CloseIdleConnections()
			defer bob.HTTP.CloseIdleConnections()
			text := strings.Repeat("Pulled, not pushed. ", 1000)
			w0 := s.Wire()
			if _, err := alice.Upload(context.Background(), strings.NewReader(text), mailbox.UploadOptions{Size: int64(len(text))}); err != nil {
				t.Fatal(err)
			}
			if w := s.Wire(); w != w0 {
				t.Errorf("alice's own upload was counted: %d wire bytes", w-w0)
			}
			msgid := send(t, alice, "alice@a.test", "bob@b.test", text)
			waitComplete(t, bob, msgid)
			if w := s.Wire() - w0; w < int64(len(text)) || a.WireBytes()+b.WireBytes() != s.Wire() {
				t.Errorf("wire %d bytes (a.test %d, b.test %d) for a %d-byte text", w, a.WireBytes(), b.WireBytes(), len(text))
			}
			for _, e := range s.Env("bob@b.test") {
				if k, v, _ := strings.Cut(e, "="); v == "" || (k == "PULLMAIL_SERVER" && v != b.Direct) {
					t.Errorf("bob's environment: %s", e)
				}
			}
		})
	}
}

// TestRestart: a domain stopped and started again keeps its port, data and
// users; a sandbox started again on the same directory keeps its users and
// their passwords, with new tokens.
func TestRestart(t *testing.T) {
	for _, kind := range Kinds {
		t.Run(kind.String(), func(t *testing.T) {
			cfg := Config{Kind: kind, Dir: t.TempDir(), Users: []string{"alice@a.test"}, LogLevel: "debug"}
			if kind == Process {
				cfg.Binary = pullmailBinary(t)
			}
			ctx := context.Background()
			s, err := Start(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			first, _ := s.User("alice@a.test")
			a := s.Domain("a.test")
			url := a.URL
			if err := a.Stop(); err != nil {
				t.Fatalf("stop: %v", err)
			}
			if err := a.Start(ctx); err != nil {
				t.Fatal(err)
			}
			c, err := s.Client("alice@a.test")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Me(ctx); err != nil || a.URL != url {
				t.Fatalf("after a restart: %v (URL %s, was %s)", err, a.URL, url)
			}
			c.HTTP.CloseIdleConnections()
			a.Kill()
			if !strings.Contains(a.Log(), "serving") {
				t.Errorf("a.test's log: %q", a.Log())
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}

			s, err = Start(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			again, _ := s.User("alice@a.test")
			if again.Password != first.Password || again.Token == first.Token || again.Password == "" {
				t.Fatalf("restarted sandbox: %+v, first %+v", again, first)
			}
			c, err = s.Client("alice@a.test")
			if err != nil {
				t.Fatal(err)
			}
			defer c.HTTP.CloseIdleConnections()
			if me, err := c.Me(ctx); err != nil || me.Address != "alice@a.test" {
				t.Fatalf("the new token: %+v %v", me, err)
			}
		})
	}
}

// TestProxyKeepsSourceAddress: the server behind the counting proxy sees
// the source address the client dialed from (mox counts deliveries per
// source address), and the proxy counts the bytes both ways.
func TestProxyKeepsSourceAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	seen := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			seen <- err.Error()
			return
		}
		defer c.Close()
		seen <- c.RemoteAddr().(*net.TCPAddr).IP.String()
		io.Copy(c, c) // echo
	}()
	p, err := StartProxy("127.0.0.1:0", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.3.4.1")}}
	c, err := d.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("echo: %q, %v", buf, err)
	}
	if ip := <-seen; ip != "127.3.4.1" {
		t.Errorf("the server saw %s, want the client's 127.3.4.1", ip)
	}
	if n := p.Bytes(); n != 10 {
		t.Errorf("the proxy counted %d bytes, want 10 (5 each way)", n)
	}
}
