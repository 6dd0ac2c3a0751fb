package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pullmail/pullmail/client"
	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/placeholder"
)

// TestDevDelivery is the in-process twin of e2e's three-domain test: the
// sandbox runs inside the test (real DNS server, real TLS, real stores);
// alice@a.test writes to bob@b.test (To), carol@b.test (Cc) and
// dave@c.test (Bcc), and every copy completes with the attachment intact.
func TestDevDelivery(t *testing.T) {
	ctx := context.Background()
	_, _, as, errb := startDev(t, "a.test,b.test,c.test", "alice@a.test,bob@b.test,carol@b.test,dave@c.test")
	alice := as("alice@a.test")
	payload := make([]byte, 1<<20+11)
	rand.Read(payload)
	text, err := alice.Upload(ctx, strings.NewReader("Three domains."), mailbox.UploadOptions{Size: 14})
	if err != nil {
		t.Fatal(err)
	}
	att, err := alice.Upload(ctx, bytes.NewReader(payload), mailbox.UploadOptions{Size: int64(len(payload))})
	if err != nil {
		t.Fatal(err)
	}
	m := placeholder.New("alice@a.test", []string{"bob@b.test"}, []string{"carol@b.test"}, []string{"dave@c.test"}, "Hello")
	tp, _ := placeholder.NewLeaf(text.ContentID, text.Size, "text/plain; charset=UTF-8", "inline", "")
	ap, _ := placeholder.NewLeaf(att.ContentID, att.Size, "application/octet-stream", "attachment", "data.bin")
	m.Parts = append(m.Parts, tp, ap)
	dr, err := alice.CreateDraft(ctx, m.Canonical())
	if err != nil {
		t.Fatal(err)
	}
	sent, err := alice.Send(ctx, dr.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"bob@b.test", "carol@b.test", "dave@c.test"} {
		c := as(addr)
		var got mailbox.Message
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			l, err := c.List(ctx, mailbox.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(l.Messages) == 1 && l.Messages[0].Status == "complete" {
				got = l.Messages[0]
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %+v\n%s", addr, l.Messages, errb.String())
			}
		}
		if got.MessageID != sent.MessageID {
			t.Fatalf("%s got %s", addr, got.MessageID)
		}
		full, err := c.Get(ctx, got.ID)
		if err != nil {
			t.Fatal(err)
		}
		if addr != "dave@c.test" && bytes.Contains(full.Placeholder, []byte("dave")) {
			t.Fatalf("%s's copy reveals the Bcc recipient: %s", addr, full.Placeholder)
		}
		if addr == "dave@c.test" && (len(full.Bcc) != 1 || full.Bcc[0] != "dave@c.test") {
			t.Fatalf("dave's Bcc: %v", full.Bcc)
		}
		rc, _, err := c.Download(ctx, got.ID, att.ContentID)
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(data, payload) {
			t.Fatalf("%s: attachment differs (%v)", addr, err)
		}
	}
}

// startDev runs 'pullmail dev' in process for the test's life and returns
// its dev.json, its directory, a client maker and the sandbox's log.
func startDev(t *testing.T, domains, users string) (DevFile, string, func(addr string) *client.Client, *syncBuffer) {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	env, _, _ := testEnv(nil, false)
	out, errb := &syncBuffer{}, &syncBuffer{}
	env.Stdout, env.Stderr = out, errb
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, env, []string{"dev", "--data", dir, "--domains", domains, "--users", users})
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
	var df DevFile
	if err := json.Unmarshal(b, &df); err != nil {
		t.Fatal(err)
	}
	as := func(addr string) *client.Client {
		u := df.Users[addr]
		c, err := client.New(u.Server, u.Token, df.CA)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.HTTP.CloseIdleConnections)
		return c
	}
	return df, dir, as, errb
}
