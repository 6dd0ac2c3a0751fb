package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pullmail/pullmail/client"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
)

// TestForwardChain forwards one message a.test → b.test → c.test →
// d.test with real servers (in process, real DNS, TLS and stores): each
// final domain pulls the attachment from a.test with the whole chain, the
// origin serves each resource once per final domain, the chain shows in
// the copy, and a user whose policy forbids forwards cannot forward.
func TestForwardChain(t *testing.T) {
	ctx := context.Background()
	df, dir, as, errb := startDev(t, "a.test,b.test,c.test,d.test",
		"alice@a.test,bob@b.test,erin@b.test,carol@c.test,dave@d.test")
	alice, bob, carol, dave := as("alice@a.test"), as("bob@b.test"), as("carol@c.test"), as("dave@d.test")

	payload := make([]byte, 3<<20+5)
	rand.Read(payload)
	att, err := alice.Upload(ctx, bytes.NewReader(payload), mailbox.UploadOptions{Size: int64(len(payload))})
	if err != nil {
		t.Fatal(err)
	}
	sent, err := Send(ctx, quietEnv(), alice, SendOptions{To: []string{"bob@b.test"}, Subject: "Venice", Text: "Look!"})
	if err != nil {
		t.Fatal(err)
	}
	// A second message with the attachment, so that forwards carry it.
	m := placeholder.New("alice@a.test", []string{"Bob <bob@b.test>"}, nil, nil, "Photo")
	leaf, _ := placeholder.NewLeaf(att.ContentID, att.Size, "image/png", "attachment", "venice.png")
	m.Parts = append(m.Parts, leaf)
	dr, err := alice.CreateDraft(ctx, m.Canonical())
	if err != nil {
		t.Fatal(err)
	}
	photo, err := alice.Send(ctx, dr.ID)
	if err != nil {
		t.Fatal(err)
	}
	waitComplete(t, bob, sent.MessageID, errb)

	atBob := waitComplete(t, bob, photo.MessageID, errb)
	// bob → carol@c.test, carol → dave@d.test: two forwarding hops.
	f1, err := bob.Forward(ctx, atBob.ID, mailbox.ForwardRequest{To: []string{"Carol <carol@c.test>"}, Note: "from Alice"})
	if err != nil {
		t.Fatal(err)
	}
	if f1.Mode != "chain" || !strings.HasSuffix(f1.ForwardID, "@b.test>") || f1.Message.Folder != "sent" {
		t.Fatalf("bob's forward: %+v", f1)
	}
	atCarol := waitComplete(t, carol, photo.MessageID, errb)
	full, err := carol.Get(ctx, atCarol.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(full.Chain) != 2 || full.Chain[0].Domain != "a.test" || full.Chain[1].Domain != "b.test" ||
		full.Chain[1].Audience != "c.test" || full.Chain[1].Note != "from Alice" {
		t.Fatalf("carol's chain: %+v", full.Chain)
	}
	if full.Forward == nil || full.Forward.From != "bob@b.test" || full.Forward.ID != f1.ForwardID {
		t.Fatalf("carol's copy does not show the forward: %+v", full.Forward)
	}
	checkAttachment(t, carol, atCarol.ID, att.ContentID, payload)

	// Carol forwards with the CLI, which prints the forward's id.
	cenv, out, cerr := testEnv(map[string]string{"PULLMAIL_SERVER": df.Users["carol@c.test"].Server,
		"PULLMAIL_TOKEN": df.Users["carol@c.test"].Token, "PULLMAIL_CA": df.CA}, false)
	if code := Main(ctx, cenv, []string{"forward", photo.MessageID, "--to", "dave@d.test", "--text", "via Bob"}); code != 0 {
		t.Fatalf("pullmail forward: exit %d: %s", code, cerr)
	}
	fid := strings.TrimSpace(out.String())
	if !strings.HasPrefix(fid, "<") || !strings.HasSuffix(fid, "@c.test>") {
		t.Fatalf("pullmail forward printed %q", fid)
	}
	atDave := waitComplete(t, dave, photo.MessageID, errb)
	checkAttachment(t, dave, atDave.ID, att.ContentID, payload)

	// pullmail show --json has the three hops.
	denv, dout, derr := testEnv(map[string]string{"PULLMAIL_SERVER": df.Users["dave@d.test"].Server,
		"PULLMAIL_TOKEN": df.Users["dave@d.test"].Token, "PULLMAIL_CA": df.CA}, false)
	if code := Main(ctx, denv, []string{"show", "--json", photo.MessageID}); code != 0 {
		t.Fatalf("pullmail show: exit %d: %s", code, derr)
	}
	for _, want := range []string{`"chain"`, `"hop": 3`, `"forward_id": "` + fid, `"note": "via Bob"`} {
		if !strings.Contains(dout.String(), want) {
			t.Errorf("show --json lacks %s:\n%s", want, dout)
		}
	}

	// The origin served each resource once to each final domain: b.test
	// the two messages' resources (Venice's text, the photo), c.test and
	// d.test the photo, each pulled once with its chain.
	served := originServed(t, df, "a.test")
	if served["b.test"] != 2 || served["c.test"] != 1 || served["d.test"] != 1 {
		t.Errorf("origin served %v, want b.test 2 (two messages' resources), c.test 1, d.test 1", served)
	}

	// bob's policy forbids forwards: refused, nothing recorded.
	runAdmin(t, "user", "forwarding", "--data", filepath.Join(dir, "b.test"), "bob@b.test", "deny")
	before, _ := bob.List(ctx, mailbox.ListOptions{Folder: "sent"})
	_, err = bob.Forward(ctx, atBob.ID, mailbox.ForwardRequest{To: []string{"dave@d.test"}})
	if errs.CodeOf(err) != "forwarding_denied" {
		t.Fatalf("forward against policy: %v", err)
	}
	after, _ := bob.List(ctx, mailbox.ListOptions{Folder: "sent"})
	if len(after.Messages) != len(before.Messages) {
		t.Errorf("a refused forward left a record")
	}
}

// TestReplyThread: a reply across domains stays in the thread, carries
// In-Reply-To and References, and an attachment the replier holds is
// referenced, not uploaded again.
func TestReplyThread(t *testing.T) {
	ctx := context.Background()
	df, _, as, errb := startDev(t, "a.test,b.test", "alice@a.test,bob@b.test,carol@b.test")
	alice, bob := as("alice@a.test"), as("bob@b.test")
	file := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(file, []byte("meeting notes\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	orig, err := Send(ctx, quietEnv(), alice, SendOptions{To: []string{"bob@b.test"}, Cc: []string{"carol@b.test"},
		Subject: "Plans", Text: "Shall we?", Attach: []string{file}})
	if err != nil {
		t.Fatal(err)
	}
	atBob := waitComplete(t, bob, orig.MessageID, errb)

	env, out, errOut := testEnv(map[string]string{"PULLMAIL_SERVER": df.Users["bob@b.test"].Server,
		"PULLMAIL_TOKEN": df.Users["bob@b.test"].Token, "PULLMAIL_CA": df.CA}, false)
	if code := Main(ctx, env, []string{"reply", orig.MessageID, "--all", "--text", "Yes.", "--attach", file}); code != 0 {
		t.Fatalf("pullmail reply: exit %d: %s", code, errOut)
	}
	if !strings.Contains(errOut.String(), "already in your mailbox") {
		t.Errorf("the held attachment was uploaded again: %s", errOut)
	}
	replyID := strings.TrimSpace(out.String())
	atAlice := waitComplete(t, alice, replyID, errb)
	full, err := alice.Get(ctx, atAlice.ID)
	if err != nil {
		t.Fatal(err)
	}
	pm, err := placeholder.Parse(full.Placeholder, placeholder.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if full.ThreadID != orig.ThreadID || full.ThreadID != atBob.ThreadID {
		t.Errorf("thread: reply %s, original %s at alice, %s at bob", full.ThreadID, orig.ThreadID, atBob.ThreadID)
	}
	if full.InReplyTo != orig.MessageID || pm.Header.Get(placeholder.HReferences).String() != orig.MessageID {
		t.Errorf("In-Reply-To %q, References %q; want %s", full.InReplyTo, pm.Header.Get(placeholder.HReferences), orig.MessageID)
	}
	if full.Subject != "Re: Plans" || len(full.Cc) != 1 || full.Cc[0] != "carol@b.test" {
		t.Errorf("reply-all: subject %q, cc %v", full.Subject, full.Cc)
	}
}

func quietEnv() *Env { e, _, _ := testEnv(nil, false); return e }

// waitComplete waits until c holds a complete copy with the Message-ID.
func waitComplete(t *testing.T, c *client.Client, msgid string, log *syncBuffer) mailbox.Message {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		ms, err := c.Lookup(context.Background(), msgid)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if m.Folder == "inbox" && m.Status == "complete" {
				return m
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no complete copy of %s: %+v\n%s", msgid, ms, log.String())
		}
	}
}

func checkAttachment(t *testing.T, c *client.Client, id string, cid resource.ID, want []byte) {
	t.Helper()
	rc, _, err := c.Download(context.Background(), id, cid)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("attachment differs (%d bytes, %v)", len(got), err)
	}
}

// originServed reads pullmail_origin_served_total of a domain's server.
func originServed(t *testing.T, df DevFile, domain string) map[string]int {
	t.Helper()
	pem, err := os.ReadFile(df.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := hc.Get(df.Domains[domain].URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]int{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, `pullmail_origin_served_total{domain="`)
		if !ok {
			continue
		}
		d, v, _ := strings.Cut(rest, `"} `)
		n, _ := strconv.Atoi(v)
		out[d] = n
	}
	return out
}

// runAdmin runs an admin command of the CLI.
func runAdmin(t *testing.T, args ...string) {
	t.Helper()
	env, _, errb := testEnv(nil, false)
	if code := Main(context.Background(), env, args); code != 0 {
		t.Fatalf("pullmail %s: exit %d: %s", strings.Join(args, " "), code, errb)
	}
}
