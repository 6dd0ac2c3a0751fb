package mailbox_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pullmail/pullmail/cli"
	"github.com/pullmail/pullmail/client"
	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/testenv"
)

// watch runs c.Events in the background and returns its events; the
// stream ends with the test.
func watch(t *testing.T, c *client.Client) <-chan mailbox.Event {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan mailbox.Event, 100)
	done := make(chan error, 1)
	go func() {
		done <- c.Events(ctx, func(ev mailbox.Event) error {
			if ev.Kind != mailbox.EventPing {
				ch <- ev
			}
			return nil
		})
		close(ch)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Events: %v", err)
		}
	})
	return ch
}

// nextEvent returns the next event or fails when the stream ends.
func nextEvent(t *testing.T, ch <-chan mailbox.Event) mailbox.Event {
	t.Helper()
	ev, ok := <-ch
	if !ok {
		t.Fatal("the event stream ended")
	}
	return ev
}

// TestEventsLocal opens event streams over HTTPS (real TLS, real server)
// and sees a local delivery and the user's own writes; a user with no
// change hears nothing until their own message arrives.
func TestEventsLocal(t *testing.T) {
	d := testenv.Start(t, "a.test", testenv.Options{})
	alice := d.AddUser(t, "alice@a.test")
	bob := d.AddUser(t, "bob@a.test")
	carol := d.AddUser(t, "carol@a.test")
	bobEvents, carolEvents := watch(t, bob), watch(t, carol)
	first := nextEvent(t, bobEvents)
	if first.Kind != mailbox.EventCursor || first.Cursor == "" {
		t.Fatalf("first event %+v", first)
	}
	carolFirst := nextEvent(t, carolEvents)

	// alice → bob: bob's stream announces it, and Changes from his
	// cursor shows the message.
	text := upload(t, alice, []byte("hello bob"))
	dr, err := alice.CreateDraft(ctx, compose(t, "", []string{"bob@a.test"}, nil, nil, "hi", text))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Send(ctx, dr.ID); err != nil {
		t.Fatal(err)
	}
	ev := nextEvent(t, bobEvents)
	if ev.Kind != mailbox.EventChange {
		t.Fatalf("event %+v, want a change", ev)
	}
	chs, err := bob.Changes(ctx, first.Cursor, 0)
	if err != nil || len(chs.Changes) != 1 || chs.Changes[0].Kind != "created" || chs.Changes[0].Message.Subject != "hi" {
		t.Fatalf("bob's changes after the event: %+v, %v", chs, err)
	}
	// Bob's own write (mark read) is announced to his stream too.
	if _, err := bob.SetSeen(ctx, chs.Changes[0].ID, true); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, bobEvents); ev.Kind != mailbox.EventChange {
		t.Fatalf("after bob's write: %+v", ev)
	}
	// Carol heard nothing of alice's and bob's changes: her first change
	// event comes with her own message, at a cursor at or after it.
	dr, err = alice.CreateDraft(ctx, compose(t, "", []string{"carol@a.test"}, nil, nil, "for carol", text))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Send(ctx, dr.ID); err != nil {
		t.Fatal(err)
	}
	cl, err := carol.List(ctx, mailbox.ListOptions{})
	if err != nil || len(cl.Messages) != 1 {
		t.Fatalf("carol's inbox: %+v, %v", cl, err)
	}
	ev = nextEvent(t, carolEvents)
	chs, err = carol.Changes(ctx, carolFirst.Cursor, 0)
	if ev.Kind != mailbox.EventChange || err != nil || len(chs.Changes) != 1 || chs.Changes[0].ID != cl.Messages[0].ID {
		t.Fatalf("carol's first change event %+v: changes %+v, %v", ev, chs, err)
	}
}

// TestEventsInbound runs two domains ('pullmail dev', in process) and sees
// an inbound delivery from the other domain on the recipient's stream: the
// copy arrives (fetching), then its resources do (complete).
func TestEventsInbound(t *testing.T) {
	as := startDev(t, "a.test,b.test", "alice@a.test,bob@b.test")
	alice, bob := as("alice@a.test"), as("bob@b.test")
	events := watch(t, bob)
	cursor := nextEvent(t, events).Cursor

	payload := bytes.Repeat([]byte("cross-domain "), 50000)
	text := upload(t, alice, []byte("From a.test."))
	att := upload(t, alice, payload)
	m := placeholder.New("alice@a.test", []string{"bob@b.test"}, nil, nil, "Over the border")
	tp, _ := placeholder.NewLeaf(text.ContentID, text.Size, "text/plain; charset=UTF-8", "inline", "")
	ap, _ := placeholder.NewLeaf(att.ContentID, att.Size, "application/octet-stream", "attachment", "data.bin")
	m.Parts = append(m.Parts, tp, ap)
	dr, err := alice.CreateDraft(ctx, m.Canonical())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Send(ctx, dr.ID); err != nil {
		t.Fatal(err)
	}
	// Follow the stream, reading changes at each event, until the copy is
	// complete: every step of the delivery is announced.
	status := ""
	var id string
	for status != string(meta.StatusComplete) {
		if ev := nextEvent(t, events); ev.Kind != mailbox.EventChange {
			t.Fatalf("event %+v, want a change", ev)
		}
		chs, err := bob.Changes(ctx, cursor, 0)
		if err != nil {
			t.Fatal(err)
		}
		cursor = chs.Cursor
		for _, c := range chs.Changes {
			if c.Message != nil && c.Message.Subject == "Over the border" {
				status, id = c.Message.Status, c.ID
			}
		}
	}
	if got := download(t, bob, id, att.ContentID); !bytes.Equal(got, payload) {
		t.Fatal("attachment differs")
	}
}

// startDev runs 'pullmail dev' in process for the test's life and returns
// a client maker for its users.
func startDev(t *testing.T, domains, users string) func(addr string) *client.Client {
	t.Helper()
	dir := t.TempDir()
	cctx, cancel := context.WithCancel(context.Background())
	out, errb := &syncBuffer{}, &syncBuffer{}
	env := &cli.Env{Stdin: strings.NewReader(""), Stdout: out, Stderr: errb,
		Getenv: func(string) string { return "" }, IsTerminal: func(any) bool { return false }}
	done := make(chan int, 1)
	go func() {
		done <- cli.Main(cctx, env, []string{"dev", "--data", dir, "--domains", domains, "--users", users})
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("dev exit %d: %s", code, errb.String())
		}
	})
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(out.String(), "Press Ctrl-C"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("dev did not start: %s", errb.String())
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "dev.json"))
	if err != nil {
		t.Fatal(err)
	}
	var df cli.DevFile
	if err := json.Unmarshal(b, &df); err != nil {
		t.Fatal(err)
	}
	return func(addr string) *client.Client {
		u := df.Users[addr]
		c, err := client.New(u.Server, u.Token, df.CA)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.HTTP.CloseIdleConnections)
		return c
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
