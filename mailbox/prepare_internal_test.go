package mailbox

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
)

// watched wraps the real stores and notes every use of the resource store
// or of a send grant made while a write transaction of the metadata store
// is open: none may be (prepare.go).
type watched struct {
	meta.Store
	inTx    atomic.Bool
	updates atomic.Int32
	// before, when set, runs once before the next Update opens its
	// transaction: a writer that comes between the look before and the
	// transaction.
	before func()

	mu     sync.Mutex
	inside []string // what ran inside a transaction
	stats  int
	grants int
}

func (w *watched) Update(ctx context.Context, fn func(meta.Tx) error) error {
	if b := w.before; b != nil {
		w.before = nil
		b()
	}
	var indexed atomic.Bool
	err := w.Store.Update(ctx, func(tx meta.Tx) error {
		w.inTx.Store(true)
		defer w.inTx.Store(false)
		return fn(indexingTx{tx, &indexed})
	})
	// The search index's own transactions (after a send, outside it) are
	// not the ones these tests count.
	if !indexed.Load() {
		w.updates.Add(1)
	}
	return err
}

// indexingTx tells watched that a transaction wrote the search index.
type indexingTx struct {
	meta.Tx
	indexed *atomic.Bool
}

func (t indexingTx) IndexMessage(ctx context.Context, userID int64, id string, doc meta.SearchDoc) error {
	t.indexed.Store(true)
	return t.Tx.IndexMessage(ctx, userID, id, doc)
}

func (w *watched) note(what string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch what {
	case "Stat":
		w.stats++
	case "SendGrant":
		w.grants++
	}
	if w.inTx.Load() {
		w.inside = append(w.inside, what)
	}
}

type watchedResources struct {
	resource.Store
	w *watched
}

func (r watchedResources) Stat(ctx context.Context, id resource.ID) (resource.Info, error) {
	r.w.note("Stat")
	return r.Store.Stat(ctx, id)
}

func (r watchedResources) Put(ctx context.Context, rd io.Reader, opt resource.PutOptions) (resource.Info, error) {
	r.w.note("Put")
	return r.Store.Put(ctx, rd, opt)
}

func (r watchedResources) Open(ctx context.Context, id resource.ID) (resource.Object, error) {
	r.w.note("Open")
	return r.Store.Open(ctx, id)
}

type watchedOutbound struct {
	*fakeOutbound
	w *watched
}

func (o watchedOutbound) SendGrant(ctx context.Context, author, messageID string) (string, error) {
	o.w.note("SendGrant")
	return o.fakeOutbound.SendGrant(ctx, author, messageID)
}

// QueueSend queues a job per copy in tx, as the MTA does, so that what it
// queued goes when the transaction rolls back.
func (o watchedOutbound) QueueSend(ctx context.Context, tx meta.Tx, author, grant string, sent meta.Message, copies []RemoteCopy) error {
	if grant != "grant:"+author+":"+sent.MessageID {
		return fmt.Errorf("queued %s with grant %q", sent.MessageID, grant)
	}
	for _, c := range copies {
		if _, err := tx.AddJob(ctx, meta.Job{Kind: "push", Key: "push:" + sent.ID + ":" + c.Domain, Payload: []byte(c.Domain)}); err != nil {
			return err
		}
	}
	return nil
}

// TestNoIOInsideTransactions: drafts, sends (local and remote, with a rule
// that forwards to another domain) and forwards stat resources and sign
// send grants before their transactions, never inside; a draft changed
// between the look before and the transaction makes the send run again
// with what it now needs.
func TestNoIOInsideTransactions(t *testing.T) {
	ctx := t.Context()
	w := &watched{}
	f := newAFFixture(t, func(c *Config) {
		w.Store = c.Meta
		c.Meta, c.Resources, c.Outbound = w, watchedResources{c.Resources, w}, watchedOutbound{c.Outbound.(*fakeOutbound), w}
	})
	svc, st := f.svc, f.st
	f.set(t, map[string]string{SettingAutoForwarding + ":erin@c.test": "allow",
		SettingAutoForward + ":erin@c.test": `{"to":["dave@d.test"]}`})

	bob := f.as("bob@c.test")
	leaf := func(id resource.ID, size int64) placeholder.Part {
		t.Helper()
		l, err := placeholder.NewLeaf(id, size, "text/plain", "inline", "")
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	upload := func(text string) placeholder.Part {
		t.Helper()
		up, err := svc.Upload(bob, strings.NewReader(text), UploadOptions{Size: int64(len(text))})
		if err != nil {
			t.Fatal(err)
		}
		return leaf(up.ContentID, up.Size)
	}
	doc := func(to []string, parts ...placeholder.Part) []byte {
		m := placeholder.New("", to, nil, nil, "Hello")
		m.Header.Del(placeholder.HFrom)
		m.Parts = append(m.Parts, parts...)
		return m.Canonical()
	}
	one, two := upload("one"), upload("two")

	// A draft whose declared size is wrong is refused from the stat taken
	// before the transaction.
	bad := leaf(resource.IDOf([]byte("one")), 4)
	if _, err := svc.CreateDraft(bob, doc([]string{"carol@c.test"}, bad)); err == nil || !strings.Contains(err.Error(), "declares size") {
		t.Fatalf("a wrong size: %v", err)
	}

	d, err := svc.CreateDraft(bob, doc([]string{"carol@c.test"}, one))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.UpdateDraft(bob, d.ID, doc([]string{"carol@c.test", "erin@c.test"}, one)); err != nil {
		t.Fatal(err)
	}
	// Between Send's look at the draft and its transaction, the draft
	// gains an attachment and a recipient at another domain: the first
	// run finds them unprepared, the second sends them.
	w.before = func() {
		if _, err := svc.UpdateDraft(bob, d.ID, doc([]string{"carol@c.test", "erin@c.test", "zed@z.test"}, one, two)); err != nil {
			t.Error(err)
		}
	}
	n := w.updates.Load()
	sent, err := svc.Send(bob, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Three runs: the changed draft's new resource and grant are found
	// missing in the first, the grant of erin's rule's forward to d.test
	// in the second.
	if runs := w.updates.Load() - n - 1; runs != 3 { // one is UpdateDraft's
		t.Errorf("Send ran its transaction %d times, want 3", runs)
	}
	row, err := st.Message(ctx, f.users["bob@c.test"].ID, sent.ID)
	if err != nil || len(row.Refs) != 2 {
		t.Errorf("sent with refs %+v (%v), want the two of the draft as it was at send", row.Refs, err)
	}
	jobs, err := st.Jobs(ctx, "push", 0)
	if err != nil {
		t.Fatal(err)
	}
	var domains []string
	for _, j := range jobs {
		domains = append(domains, string(j.Payload))
	}
	// z.test from the send, d.test from erin's rule, once each.
	if fmt.Sprint(domains) != "[d.test z.test]" && fmt.Sprint(domains) != "[z.test d.test]" {
		t.Errorf("queued for %v, want z.test and d.test", domains)
	}
	if len(f.folder(t, "erin@c.test", meta.Sent)) != 1 {
		t.Errorf("erin's rule did not forward the message in the send's transaction")
	}

	// A forward as a message, with a note.
	in := f.folder(t, "carol@c.test", meta.Inbox)
	if len(in) != 1 {
		t.Fatalf("carol's inbox: %d", len(in))
	}
	if _, err := svc.Forward(f.as("carol@c.test"), in[0].ID, ForwardRequest{To: []string{"yan@y.test"}, Note: "see"}); err != nil {
		t.Fatal(err)
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.inside) > 0 {
		t.Errorf("inside a write transaction: %v", w.inside)
	}
	if w.stats == 0 || w.grants < 3 {
		t.Errorf("%d stats and %d grants: the watch saw nothing", w.stats, w.grants)
	}
}

// TestRulesInTheSendsTransaction: a local delivery and the forward its
// recipient's rule makes commit in one transaction (they used to be three:
// the send, then the forward's draft and its send).
func TestRulesInTheSendsTransaction(t *testing.T) {
	w := &watched{}
	f := newAFFixture(t, func(c *Config) { w.Store, c.Meta = c.Meta, w })
	f.set(t, map[string]string{SettingAutoForwarding + ":carol@c.test": "allow",
		SettingAutoForward + ":carol@c.test": `{"to":["erin@c.test"]}`})
	bob := f.as("bob@c.test")
	text, err := f.svc.Upload(bob, strings.NewReader("hi"), UploadOptions{Size: 2})
	if err != nil {
		t.Fatal(err)
	}
	m := placeholder.New("", []string{"carol@c.test"}, nil, nil, "Hello")
	m.Header.Del(placeholder.HFrom)
	leaf, err := placeholder.NewLeaf(text.ContentID, text.Size, "text/plain", "inline", "")
	if err != nil {
		t.Fatal(err)
	}
	m.Parts = append(m.Parts, leaf)
	d, err := f.svc.CreateDraft(bob, m.Canonical())
	if err != nil {
		t.Fatal(err)
	}
	n := w.updates.Load()
	if _, err := f.svc.Send(bob, d.ID); err != nil {
		t.Fatal(err)
	}
	if got := w.updates.Load() - n; got != 1 {
		t.Errorf("the send and its rule's forward took %d transactions, want 1", got)
	}
	in := f.folder(t, "erin@c.test", meta.Inbox)
	if len(in) != 1 || in[0].Subject != "Fwd: Hello" || len(f.folder(t, "carol@c.test", meta.Sent)) != 1 {
		t.Fatalf("erin's inbox %+v: the forward is not there", in)
	}
	if f.count(AutoQueued) != 1 {
		t.Errorf("queued %d, want 1", f.count(AutoQueued))
	}
}

// TestPullOutcomes: the moves of a received copy's status that the MTA and
// fsck make through the mailbox, and those it refuses or skips.
func TestPullOutcomes(t *testing.T) {
	f := newAFFixture(t)
	ctx := t.Context()
	carol := f.users["carol@c.test"].ID
	_, raw, doc := chainFor(t)
	var id string
	err := f.st.Update(ctx, func(tx meta.Tx) error {
		made, err := f.svc.Receive(ctx, tx, []string{"carol@c.test"}, meta.Message{MessageID: "<m1@a.test>", Placeholder: doc}, raw)
		if err == nil {
			id = made[0].ID
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		op     func(tx meta.Tx) error
		want   meta.Status
		reason string
		fails  bool
	}{
		{name: "received: fetching", want: meta.StatusFetching,
			op: func(tx meta.Tx) error { return nil }},
		{name: "fetch it again while fetching: no change", want: meta.StatusFetching,
			op: func(tx meta.Tx) error { return f.svc.Refetch(ctx, tx, carol, id) }},
		{name: "the pull gives up", want: meta.StatusFailed, reason: "refused: no",
			op: func(tx meta.Tx) error {
				return f.svc.SetPullOutcome(ctx, tx, carol, id, meta.StatusFailed, "refused: no")
			}},
		{name: "a later outcome of a copy not fetching: no change", want: meta.StatusFailed, reason: "refused: no",
			op: func(tx meta.Tx) error { return f.svc.SetPullOutcome(ctx, tx, carol, id, meta.StatusComplete, "") }},
		{name: "fsck fetches it again", want: meta.StatusFetching,
			op: func(tx meta.Tx) error { return f.svc.Refetch(ctx, tx, carol, id) }},
		{name: "a pull does not end fetching", want: meta.StatusFetching, fails: true,
			op: func(tx meta.Tx) error { return f.svc.SetPullOutcome(ctx, tx, carol, id, meta.StatusFetching, "") }},
		{name: "complete", want: meta.StatusComplete,
			op: func(tx meta.Tx) error { return f.svc.SetPullOutcome(ctx, tx, carol, id, meta.StatusComplete, "") }},
		{name: "a copy gone is no error", want: meta.StatusComplete,
			op: func(tx meta.Tx) error { return f.svc.SetPullOutcome(ctx, tx, carol, "mnope", meta.StatusFailed, "x") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := f.st.Update(ctx, tc.op)
			if (err != nil) != tc.fails {
				t.Fatalf("error %v, want failure %v", err, tc.fails)
			}
			m, err := f.st.Message(ctx, carol, id)
			if err != nil {
				t.Fatal(err)
			}
			if m.Status != tc.want || m.StatusReason != tc.reason {
				t.Errorf("status %s %q, want %s %q", m.Status, m.StatusReason, tc.want, tc.reason)
			}
		})
	}
}
