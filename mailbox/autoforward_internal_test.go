package mailbox

import (
	"context"
	"encoding/json"
	"fmt"
	"net/mail"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pullmail/pullmail/auth"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/federation"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/meta/sqlite"
	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/resource/fsstore"
)

// fakeOutbound records what the mailbox queues for other domains.
type fakeOutbound struct {
	sends    []RemoteCopy
	forwards []queuedForward
}

type queuedForward struct {
	forwarder string
	hop       ForwardHop
	copies    []ForwardCopy
}

func (o *fakeOutbound) SendGrant(_ context.Context, author, messageID string) (string, error) {
	return "grant:" + author + ":" + messageID, nil
}

func (o *fakeOutbound) QueueSend(_ context.Context, _ meta.Tx, _, _ string, _ meta.Message, copies []RemoteCopy) error {
	o.sends = append(o.sends, copies...)
	return nil
}

func (o *fakeOutbound) QueueForward(_ context.Context, _ meta.Tx, forwarder string, _ meta.Message, hop ForwardHop, copies []ForwardCopy) error {
	o.forwards = append(o.forwards, queuedForward{forwarder, hop, copies})
	return nil
}

// afFixture is c.test's mailbox over SQLite, with carol (who receives),
// erin (a local target) and bob@c.test (a local sender).
type afFixture struct {
	svc   *Service
	st    *sqlite.Store
	out   *fakeOutbound
	reg   *prometheus.Registry
	users map[string]meta.User
}

// newAFFixture makes the fixture; wrap, when given, changes the service's
// Config first (to watch its stores).
func newAFFixture(t *testing.T, wrap ...func(*Config)) *afFixture {
	t.Helper()
	ctx := t.Context()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rs, err := fsstore.New(filepath.Join(t.TempDir(), "resources"), fsstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := &afFixture{st: st, out: &fakeOutbound{}, reg: prometheus.NewRegistry(), users: map[string]meta.User{}}
	err = st.Update(ctx, func(tx meta.Tx) error {
		for _, a := range []string{"carol@c.test", "erin@c.test", "bob@c.test"} {
			u, err := tx.AddUser(ctx, meta.User{Address: a, PasswordHash: "x"})
			if err != nil {
				return err
			}
			f.users[a] = u
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Domain: "c.test", Meta: st, Resources: rs, Outbound: f.out, Metrics: NewMetrics(f.reg)}
	for _, w := range wrap {
		w(&cfg)
	}
	f.svc = New(cfg)
	return f
}

func (f *afFixture) as(addr string) context.Context {
	u := f.users[addr]
	return auth.WithPrincipal(context.Background(), auth.Principal{UserID: u.ID, Address: u.Address})
}

// set sets per-user settings, keyed NAME:ADDRESS.
func (f *afFixture) set(t *testing.T, kv map[string]string) {
	t.Helper()
	ctx := context.Background()
	if err := f.st.Update(ctx, func(tx meta.Tx) error {
		for k, v := range kv {
			name, addr, _ := strings.Cut(k, ":")
			if err := tx.SetUserSetting(ctx, f.users[addr].ID, name, v); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// count reads pullmail_autoforwards_total{result}.
func (f *afFixture) count(result string) int {
	mfs, err := f.reg.Gather()
	if err != nil {
		panic(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "pullmail_autoforwards_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return int(m.GetCounter().GetValue())
				}
			}
		}
	}
	return 0
}

func (f *afFixture) folder(t *testing.T, addr string, folder meta.Folder) []meta.Message {
	t.Helper()
	ms, err := f.st.Messages(context.Background(), f.users[addr].ID, meta.ListOptions{Folder: folder})
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// TestSetAutoForward: the rule as the API stores it, with the policy.
func TestSetAutoForward(t *testing.T) {
	f := newAFFixture(t)
	ctx := f.as("carol@c.test")
	many := make([]string, MaxForwardRecipients+1)
	for i := range many {
		many[i] = fmt.Sprintf("u%d@d.test", i)
	}
	for _, tc := range []struct {
		name     string
		settings map[string]string
		to       []string
		code     string   // the error's code, "" for success
		want     []string // the rule after
		allowed  bool
	}{
		{name: "policy unset: refused", to: []string{"dave@d.test"}, code: "forwarding_denied", want: []string{}},
		{name: "policy unset: off is allowed", to: nil, want: []string{}},
		{name: "policy deny: refused", settings: map[string]string{SettingAutoForwarding + ":carol@c.test": "deny"},
			to: []string{"dave@d.test"}, code: "forwarding_denied", want: []string{}},
		{name: "allowed", settings: map[string]string{SettingAutoForwarding + ":carol@c.test": "allow"},
			to: []string{"Dave <dave@d.test>"}, want: []string{`"Dave" <dave@d.test>`}, allowed: true},
		{name: "two, one local, duplicates dropped", to: []string{"dave@d.test", "erin@c.test", "DAVE@d.test"},
			want: []string{"<dave@d.test>", "<erin@c.test>"}, allowed: true},
		{name: "to yourself", to: []string{"Carol@c.test"}, code: "bad_address", want: []string{"<dave@d.test>", "<erin@c.test>"}, allowed: true},
		{name: "not an address", to: []string{"dave at d.test"}, code: "bad_address", want: []string{"<dave@d.test>", "<erin@c.test>"}, allowed: true},
		{name: "an unknown local user", to: []string{"nobody@c.test"}, code: "unknown_recipient", want: []string{"<dave@d.test>", "<erin@c.test>"}, allowed: true},
		{name: "too many", to: many, code: "no_recipients", want: []string{"<dave@d.test>", "<erin@c.test>"}, allowed: true},
		{name: "forwarding denied denies the rule", settings: map[string]string{SettingForwarding + ":carol@c.test": "deny"},
			to: []string{"dave@d.test"}, code: "forwarding_denied", want: []string{"<dave@d.test>", "<erin@c.test>"}},
		{name: "off even when denied", to: []string{}, want: []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.set(t, tc.settings)
			got, err := f.svc.SetAutoForward(ctx, AutoForwardRequest{To: tc.to})
			if tc.code != "" {
				wantCodeIs(t, err, tc.code)
			} else if err != nil {
				t.Fatal(err)
			} else if got.Enabled != (len(tc.want) > 0) || !sameAddrs(got.To, tc.want) {
				t.Errorf("SetAutoForward: %+v, want to %v", got, tc.want)
			}
			af, err := f.svc.AutoForward(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !sameAddrs(af.To, tc.want) || af.Enabled != (len(tc.want) > 0) || af.Allowed != tc.allowed {
				t.Errorf("AutoForward: %+v, want to %v, allowed %v", af, tc.want, tc.allowed)
			}
		})
	}
}

// sameAddrs compares address lists by their addr-specs.
func sameAddrs(got, want []string) bool {
	spec := func(l []string) []string {
		var out []string
		for _, s := range l {
			a, err := mail.ParseAddress(s)
			if err != nil {
				return nil
			}
			out = append(out, strings.ToLower(a.Address))
		}
		return out
	}
	return len(got) == len(want) && slices.Equal(spec(got), spec(want))
}

func wantCodeIs(t *testing.T, err error, code string) {
	t.Helper()
	if errs.CodeOf(err) != code {
		t.Fatalf("error %v, want code %s", err, code)
	}
}

// chainFor builds a received envelope: alice@a.test's message to
// bob@b.test, then forwarding hops by each forwarder in turn (the last one
// forwarding to carol@c.test), with opaque assertions: the rule's checks
// read the headers, the AS and the receiver verify.
func chainFor(t *testing.T, forwarders ...string) (federation.Envelope, []byte, []byte) {
	t.Helper()
	m := placeholder.New("alice@a.test", []string{"bob@b.test"}, nil, nil, "Photo")
	m.Header.SetString(placeholder.HMessageID, "<m1@a.test>")
	m.Header.SetString(placeholder.HDate, placeholder.FormatDate(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)))
	leaf, err := placeholder.NewLeaf(resource.IDOf([]byte("photo")), 5, "image/png", "attachment", "p.png")
	if err != nil {
		t.Fatal(err)
	}
	m.Parts = append(m.Parts, leaf)
	doc := m.Canonical()
	env := federation.Envelope{Placeholder: doc}
	hb, _ := json.Marshal(m.Header)
	env.Chain = []federation.ChainElement{{Headers: hb, Assertion: "hop1.a.test"}}
	for i, fwd := range forwarders {
		to := "carol@c.test"
		if i+1 < len(forwarders) {
			to = forwarders[i+1]
		}
		var h placeholder.Header
		h.SetString(placeholder.HMessageID, "<m1@a.test>")
		h.SetString(placeholder.HForwardedFrom, fwd)
		h.SetString(placeholder.HForwardedTo, to)
		b, _ := json.Marshal(h)
		env.Chain = append([]federation.ChainElement{{Headers: b, Assertion: fmt.Sprintf("hop%d", i+2)}}, env.Chain...)
	}
	raw, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return env, raw, doc
}

// receive stores carol's copy of the envelope as the inbound receiver
// does (Receive), which runs the rules in its transaction, and returns the
// copies the rules made.
func (f *afFixture) receive(t *testing.T, raw, doc []byte) []meta.Message {
	t.Helper()
	ctx := context.Background()
	var made []meta.Message
	err := f.st.Update(ctx, func(tx meta.Tx) error {
		now := time.Now()
		row := meta.Message{MessageID: "<m1@a.test>", From: "alice@a.test", Subject: "Photo", Date: now, Created: now,
			Updated: now, Placeholder: doc}
		all, err := f.svc.Receive(ctx, tx, []string{"carol@c.test"}, row, raw)
		if err != nil {
			return err
		}
		if len(all) == 0 || all[0].UserID != f.users["carol@c.test"].ID {
			return fmt.Errorf("Receive made %+v, carol's copy first", all)
		}
		made = all[1:]
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return made
}

// TestAutoForwardReceived: a received copy goes on by carol's rule in
// chain mode, marked automatic, unless the policy is off at delivery, the
// chain already reaches the target or carol, or it is at its length limit.
func TestAutoForwardReceived(t *testing.T) {
	allow := map[string]string{SettingAutoForwarding + ":carol@c.test": "allow", SettingForwarding + ":carol@c.test": ""}
	eight := []string{"bob@b.test", "u3@x3.test", "u4@x4.test", "u5@x5.test", "u6@x6.test", "u7@x7.test", "u8@x8.test"}
	for _, tc := range []struct {
		name       string
		settings   map[string]string
		rule       string // the stored rule's JSON
		forwarders []string
		result     string   // the metric counted
		domains    []string // the forward's copies, by domain
		to         []string // the hop's Forwarded-To
		local      int      // copies made for this domain's users
	}{
		{name: "no rule", rule: "", forwarders: []string{"bob@b.test"}},
		{name: "forwarded", settings: allow, rule: `{"to":["dave@d.test"]}`, forwarders: []string{"bob@b.test"},
			result: AutoQueued, domains: []string{"d.test"}, to: []string{"dave@d.test"}},
		{name: "a direct delivery (one hop)", settings: allow, rule: `{"to":["dave@d.test"]}`,
			result: AutoQueued, domains: []string{"d.test"}, to: []string{"dave@d.test"}},
		{name: "policy unset at delivery", settings: map[string]string{SettingAutoForwarding + ":carol@c.test": ""},
			rule: `{"to":["dave@d.test"]}`, forwarders: []string{"bob@b.test"}, result: AutoSkippedPolicy},
		{name: "forwarding denied at delivery", settings: map[string]string{SettingAutoForwarding + ":carol@c.test": "allow",
			SettingForwarding + ":carol@c.test": "deny"}, rule: `{"to":["dave@d.test"]}`, result: AutoSkippedPolicy},
		{name: "target is a forwarder of the chain", settings: allow, rule: `{"to":["bob@b.test"]}`,
			forwarders: []string{"bob@b.test"}, result: AutoSkippedLoop},
		{name: "target is the author", settings: allow, rule: `{"to":["Alice <ALICE@a.test>"]}`,
			forwarders: []string{"bob@b.test"}, result: AutoSkippedLoop},
		{name: "target's domain sent a hop", settings: allow, rule: `{"to":["zed@b.test"]}`,
			forwarders: []string{"bob@b.test"}, result: AutoSkippedLoop},
		{name: "carol forwarded it before", settings: allow, rule: `{"to":["dave@d.test"]}`,
			forwarders: []string{"carol@c.test", "bob@b.test"}, result: AutoSkippedLoop},
		{name: "looping targets left out", settings: allow, rule: `{"to":["bob@b.test","dave@d.test","erin@c.test"]}`,
			forwarders: []string{"bob@b.test"}, result: AutoQueued, domains: []string{"d.test"},
			to: []string{"dave@d.test", "erin@c.test"}, local: 1},
		{name: "a local target only", settings: allow, rule: `{"to":["erin@c.test"]}`, forwarders: []string{"bob@b.test"},
			result: AutoQueued, to: []string{"erin@c.test"}, local: 1},
		{name: "chain at its limit", settings: allow, rule: `{"to":["dave@d.test"]}`, forwarders: eight, result: AutoSkippedLimit},
		{name: "one below its limit", settings: allow, rule: `{"to":["dave@d.test"]}`, forwarders: eight[:6],
			result: AutoQueued, domains: []string{"d.test"}, to: []string{"dave@d.test"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newAFFixture(t)
			settings := map[string]string{SettingAutoForward + ":carol@c.test": tc.rule}
			for k, v := range tc.settings {
				settings[k] = v
			}
			f.set(t, settings)
			env, raw, doc := chainFor(t, tc.forwarders...)
			made := f.receive(t, raw, doc)

			for _, r := range []string{AutoQueued, AutoSkippedPolicy, AutoSkippedLoop, AutoSkippedLimit, AutoFailed} {
				want := 0
				if r == tc.result {
					want = 1
				}
				if got := f.count(r); got != want {
					t.Errorf("pullmail_autoforwards_total{result=%q} = %d, want %d", r, got, want)
				}
			}
			sent := f.folder(t, "carol@c.test", meta.Sent)
			if tc.result != AutoQueued {
				if len(f.out.forwards)+len(made)+len(sent) != 0 {
					t.Fatalf("skipped, yet forwarded: %+v, made %v, sent %d", f.out.forwards, made, len(sent))
				}
				return
			}
			if len(sent) != 1 || sent[0].MessageID != "<m1@a.test>" {
				t.Fatalf("carol's sent: %+v", sent)
			}
			if len(made) != tc.local {
				t.Fatalf("local copies %v, want %d", made, tc.local)
			}
			for _, c := range made {
				m, err := f.st.Message(context.Background(), c.UserID, c.ID)
				if err != nil || m.Status != meta.StatusFetching || c.UserID != f.users["erin@c.test"].ID {
					t.Errorf("local copy %+v: %v", m, err)
				}
			}
			if len(tc.domains) == 0 {
				if len(f.out.forwards) != 0 {
					t.Fatalf("queued %+v for a local forward", f.out.forwards)
				}
				return
			}
			if len(f.out.forwards) != 1 {
				t.Fatalf("queued %d forwards", len(f.out.forwards))
			}
			q := f.out.forwards[0]
			var doms []string
			for _, c := range q.copies {
				doms = append(doms, c.Domain)
				if len(c.Chain) != len(env.Chain) || c.Chain[0].Assertion != env.Chain[0].Assertion {
					t.Errorf("the copy does not carry the chain as received")
				}
			}
			if !slices.Equal(doms, tc.domains) || q.forwarder != "carol@c.test" || !q.hop.Auto ||
				q.hop.Forwarder != "carol@c.test" || q.hop.Prev != env.Chain[0].Assertion || q.hop.Note != "" ||
				!sameAddrs(q.hop.To, tc.to) {
				t.Errorf("queued %+v, want domains %v, to %v, automatic", q, tc.domains, tc.to)
			}
		})
	}
}

// TestAutoForwardLocal: a message delivered inside the domain goes on by
// the recipient's rule as a new message marked Auto-Submitted, which no
// rule forwards again; a rule whose policy is off at delivery is skipped.
func TestAutoForwardLocal(t *testing.T) {
	f := newAFFixture(t)
	f.set(t, map[string]string{
		SettingAutoForwarding + ":carol@c.test": "allow", SettingAutoForward + ":carol@c.test": `{"to":["erin@c.test","dave@d.test"]}`,
		SettingAutoForwarding + ":erin@c.test": "allow", SettingAutoForward + ":erin@c.test": `{"to":["carol@c.test"]}`,
	})
	send := func(subject string) {
		t.Helper()
		ctx := f.as("bob@c.test")
		text, err := f.svc.Upload(ctx, strings.NewReader(subject), UploadOptions{Size: int64(len(subject))})
		if err != nil {
			t.Fatal(err)
		}
		m := placeholder.New("", []string{"carol@c.test"}, nil, nil, subject)
		m.Header.Del(placeholder.HFrom)
		leaf, _ := placeholder.NewLeaf(text.ContentID, text.Size, "text/plain", "inline", "")
		m.Parts = append(m.Parts, leaf)
		d, err := f.svc.CreateDraft(ctx, m.Canonical())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.Send(ctx, d.ID); err != nil {
			t.Fatal(err)
		}
	}
	send("Hello")
	in := f.folder(t, "erin@c.test", meta.Inbox)
	if len(in) != 1 || in[0].Subject != "Fwd: Hello" || in[0].From != "carol@c.test" {
		t.Fatalf("erin's inbox: %+v", in)
	}
	pm, err := placeholder.Parse(in[0].Placeholder, placeholder.Limits{})
	if err != nil || pm.Header.Get(federation.HAutoSubmitted).String() != federation.AutoForwarded {
		t.Fatalf("erin's copy is not marked automatic: %v", err)
	}
	if len(f.out.sends) != 1 || f.out.sends[0].Domain != "d.test" {
		t.Errorf("the remote target's copy: %+v", f.out.sends)
	}
	if n := len(f.folder(t, "carol@c.test", meta.Inbox)); n != 1 {
		t.Errorf("carol holds %d messages: erin's rule forwarded an automatic message back", n)
	}
	if f.count(AutoQueued) != 1 || f.count(AutoSkippedAuto) != 1 {
		t.Errorf("queued %d, skipped_auto %d; want 1, 1", f.count(AutoQueued), f.count(AutoSkippedAuto))
	}

	// The admin denies carol's automatic forwarding: the rule stays, and
	// is skipped.
	f.set(t, map[string]string{SettingAutoForwarding + ":carol@c.test": "deny"})
	send("Again")
	if n := len(f.folder(t, "erin@c.test", meta.Inbox)); n != 1 || f.count(AutoSkippedPolicy) != 1 {
		t.Errorf("policy off: erin holds %d, skipped_policy %d", n, f.count(AutoSkippedPolicy))
	}
}
