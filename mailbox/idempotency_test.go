package mailbox_test

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pullmail/pullmail/client"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/testenv"
)

func TestParseIdempotencyKey(t *testing.T) {
	long := strings.Repeat("k", mailbox.MaxIdempotencyKey)
	for _, tc := range []struct{ in, want string }{
		{`"8e03978e-40d5-43e8-bc93-6894a57f9324"`, "8e03978e-40d5-43e8-bc93-6894a57f9324"},
		{`"a b"`, "a b"},
		{`"q\"s\\b"`, `q"s\b`},
		{`bare-token_1`, "bare-token_1"},
		{`"` + long + `"`, long},
		{``, ""},
		{`""`, ""},
		{`"open`, ""},
		{`"a"b"`, ""},
		{`"a\b"`, ""},
		{"\"tab\there\"", ""},
		{"\"esc\x1b\"", ""},
		{"\"é\"", ""},
		{`a b`, ""},
		{`"` + long + `k"`, ""},
	} {
		got, err := mailbox.ParseIdempotencyKey(tc.in)
		if tc.want == "" {
			if errs.CodeOf(err) != "bad_idempotency_key" {
				t.Errorf("ParseIdempotencyKey(%q) = %q, %v; want bad_idempotency_key", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseIdempotencyKey(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
		if back, err := mailbox.ParseIdempotencyKey(mailbox.FormatIdempotencyKey(got)); err != nil || back != got {
			t.Errorf("FormatIdempotencyKey(%q) does not parse back: %q %v", got, back, err)
		}
	}
}

// rawSend posts a send with the given Idempotency-Key header values and
// returns the status and the error code of the answer ("" on success).
func rawSend(t *testing.T, c *client.Client, id string, keys ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.BaseURL+"/api/v1/messages/"+id+"/send", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	for _, k := range keys {
		req.Header.Add(mailbox.IdempotencyKeyHeader, k)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return resp.StatusCode, ""
	}
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, errs.CodeOf(errs.FromHTTP(resp.StatusCode, data))
}

// TestSendIdempotencyKey: a send repeated with its Idempotency-Key (the
// answer was lost) answers the same sent message and delivers one copy;
// the key used for another draft is refused with idempotency_key_reused
// and sends nothing; keys are per user; concurrent repeats send once; a
// key is forgotten after IdempotencyTTL; a malformed key changes nothing.
func TestSendIdempotencyKey(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	d := testenv.Start(t, "a.test", testenv.Options{Clock: clock})
	alice := d.AddUser(t, "alice@a.test")
	carol := d.AddUser(t, "carol@a.test")
	bob := d.AddUser(t, "bob@a.test")
	text := upload(t, alice, []byte("hello"))
	upload(t, carol, []byte("hello"))
	draft := func(c mailbox.API, subject string) string {
		t.Helper()
		m, err := c.CreateDraft(ctx, compose(t, "", []string{"bob@a.test"}, nil, nil, subject, text))
		if err != nil {
			t.Fatal(err)
		}
		return m.ID
	}
	bobHas := func(subject string) int {
		t.Helper()
		n := 0
		for _, m := range inbox(t, bob) {
			if m.Subject == subject {
				n++
			}
		}
		return n
	}
	kctx := mailbox.WithIdempotencyKey(ctx, "key-1")

	d1 := draft(alice, "one")
	first, err := alice.Send(kctx, d1)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		again, err := alice.Send(kctx, d1)
		if err != nil || again.ID != first.ID || again.MessageID != first.MessageID || again.Folder != "sent" {
			t.Fatalf("repeat %d: %v %+v, want %s %s", i, err, again, first.ID, first.MessageID)
		}
	}
	if status, code := rawSend(t, alice, d1, mailbox.FormatIdempotencyKey("key-1")); status != http.StatusOK {
		t.Fatalf("repeat on the wire: %d %s", status, code)
	}
	if n := bobHas("one"); n != 1 {
		t.Fatalf("bob has %d copies, want 1", n)
	}
	// Without the key, the draft is simply no longer a draft.
	if _, err := alice.Send(ctx, d1); errs.CodeOf(err) != "not_a_draft" {
		t.Fatalf("send again without the key: %v", err)
	}

	// The key again for another draft: refused, nothing sent.
	d2 := draft(alice, "two")
	before := snapshot(t, d)
	if _, err := alice.Send(kctx, d2); errs.CodeOf(err) != "idempotency_key_reused" || errs.KindOf(err) != errs.Conflict {
		t.Fatalf("key reused: %v", err)
	}
	if !snapshot(t, d).equal(before) || bobHas("two") != 0 {
		t.Fatal("a refused reuse changed something")
	}
	// Another user's key of the same name is theirs.
	if m, err := carol.Send(kctx, draft(carol, "carol's")); err != nil || m.Folder != "sent" || bobHas("carol's") != 1 {
		t.Fatalf("carol with alice's key: %v %+v", err, m)
	}

	// Malformed keys: refused, nothing sent, the draft stays a draft.
	for _, keys := range [][]string{{""}, {`"a b`}, {"a b"}, {`"` + strings.Repeat("x", 256) + `"`}, {`"x"`, `"y"`}} {
		before := snapshot(t, d)
		if status, code := rawSend(t, alice, d2, keys...); status != http.StatusBadRequest || code != "bad_idempotency_key" {
			t.Errorf("keys %q: %d %s", keys, status, code)
		}
		if !snapshot(t, d).equal(before) {
			t.Errorf("keys %q changed something", keys)
		}
	}

	// Concurrent repeats of one send: one delivery, one answer.
	d3 := draft(alice, "three")
	k3 := mailbox.WithIdempotencyKey(ctx, "key-3")
	var wg sync.WaitGroup
	ids := make([]string, 8)
	for i := range ids {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			m, err := alice.Send(k3, d3)
			if err != nil {
				t.Errorf("concurrent send %d: %v", i, err)
			}
			ids[i] = m.MessageID
		}(i)
	}
	wg.Wait()
	for _, id := range ids[1:] {
		if id != ids[0] {
			t.Fatalf("concurrent repeats answered %q", ids)
		}
	}
	if n := bobHas("three"); n != 1 {
		t.Fatalf("concurrent repeats: bob has %d copies", n)
	}

	// After IdempotencyTTL the key is forgotten: it may name a new send.
	now.Add(int64(mailbox.IdempotencyTTL + time.Minute))
	if _, err := alice.Send(kctx, d1); errs.CodeOf(err) != "not_a_draft" {
		t.Fatalf("expired key, sent draft: %v", err)
	}
	if m, err := alice.Send(kctx, d2); err != nil || m.Folder != "sent" || bobHas("two") != 1 {
		t.Fatalf("expired key for a new draft: %v %+v", err, m)
	}
}
