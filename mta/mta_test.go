package mta_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pullmail/pullmail/authz"
	"github.com/pullmail/pullmail/discovery"
	"github.com/pullmail/pullmail/dpop"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/federation"
	"github.com/pullmail/pullmail/inbound"
	"github.com/pullmail/pullmail/keys"
	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/meta/sqlite"
	"github.com/pullmail/pullmail/mta"
	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/resource/fsstore"
	"github.com/pullmail/pullmail/testenv"
)

// domain is one domain's state: real SQLite metadata, a real resource store
// on disk, signing keys and its MTA's client key. Not a testenv server: a
// running server runs its own MTA, which would claim this test's jobs.
type domain struct {
	Name    string
	Meta    meta.Store
	Store   resource.Store
	Mailbox *mailbox.Service // the writer of its mailbox rows, for its MTA and Receiver
	Keys    *keys.Set
	MTAKey  *federation.ClientKey
}

func newDomain(t testing.TB, name string, users ...string) *domain {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	fs, err := fsstore.New(filepath.Join(dir, "resources"), fsstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ks, err := keys.Open(filepath.Join(dir, "signing.json"), keys.Options{MaxTokenLifetime: 6 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ck, err := federation.NewClientKey()
	if err != nil {
		t.Fatal(err)
	}
	err = st.Update(ctx, func(tx meta.Tx) error {
		if err := tx.AddClient(ctx, meta.Client{ID: "mta@" + name, Name: "MTA", JWKS: ck.JWKS()}); err != nil {
			return err
		}
		for _, u := range users {
			if _, err := tx.AddUser(ctx, meta.User{Address: u, PasswordHash: "h"}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	mbx := mailbox.New(mailbox.Config{Domain: name, Meta: st, Resources: fs})
	return &domain{Name: name, Meta: st, Store: fs, Mailbox: mbx, Keys: ks, MTAKey: ck}
}

// world is a.test (alice) and b.test (bob), each served on a TLS listener
// of its own (newWorld) or in this process through a federation.InProcess
// transport (newWorldInProcess): a.test's authorization server and Origin,
// b.test's Receiver. Discovery is a table of what each domain's SRV records
// would lead to; everything in it comes from the running servers.
type world struct {
	a, b       *domain
	aURL, bURL string
	client     *http.Client // to the TLS listeners (nil in process)
	authzA     *authz.Server
	disc       *fakeDisc
	mtaA, mtaB *mta.MTA
	bGate      atomic.Int32           // answers 503 to this many more pushes at b.test
	aGate      atomic.Int32           // answers 503 to this many more fetches at a.test
	aCut       atomic.Int64           // the next fetch's connection breaks after this many bytes of body
	aRanges    atomic.Value           // the Range header of the last fetch
	aAnswer    atomic.Pointer[answer] // when set, every fetch at a.test answers this error
	aServed    atomic.Int64           // body bytes a.test's Origin has written
	// aRangeAnswer, when set, is a.test's answer to a fetch with Range:
	// 200 (it ignores the Range) or 416.
	aRangeAnswer atomic.Int32
	aPause       atomic.Pointer[pause]
	mk           func(d *domain, publicURL string, cfg mta.Config) *mta.MTA
	opt          mta.Config
}

// answer is an error answer of a.test's Origin.
type answer struct {
	status int
	code   string
}

// pause holds a.test's fetch answers once they have written at bytes of
// body (for all fetches), until release is closed or the request ends.
type pause struct {
	at      int64
	once    sync.Once
	reached chan struct{}
	release chan struct{}
}

func newPause(at int64) *pause {
	return &pause{at: at, reached: make(chan struct{}), release: make(chan struct{})}
}

// tap counts the body bytes of a.test's fetch answers into w.aServed and
// holds them at w.aPause.
type tap struct {
	http.ResponseWriter
	w   *world
	ctx context.Context
}

func (t *tap) Write(p []byte) (int, error) {
	if pz := t.w.aPause.Load(); pz != nil && t.w.aServed.Load()+int64(len(p)) > pz.at {
		head := max(pz.at-t.w.aServed.Load(), 0)
		n, err := t.ResponseWriter.Write(p[:head])
		t.w.aServed.Add(int64(n))
		if err != nil {
			return n, err
		}
		t.ResponseWriter.(http.Flusher).Flush()
		pz.once.Do(func() { close(pz.reached) })
		select {
		case <-pz.release:
		case <-t.ctx.Done():
			return n, t.ctx.Err()
		}
		m, err := t.ResponseWriter.Write(p[head:])
		t.w.aServed.Add(int64(m))
		return n + m, err
	}
	n, err := t.ResponseWriter.Write(p)
	t.w.aServed.Add(int64(n))
	return n, err
}

func (t *tap) Flush() { t.ResponseWriter.(http.Flusher).Flush() }

type fakeDisc struct {
	auth map[string]discovery.Authority
	mbx  map[string]discovery.Mailbox
}

func (f *fakeDisc) Authority(ctx context.Context, domain string) (discovery.Authority, error) {
	a, ok := f.auth[domain]
	if !ok {
		return a, errs.E(errs.NotFound, "no_srv_record", "no SRV record for %s", domain)
	}
	return a, nil
}

func (f *fakeDisc) RefreshKeys(ctx context.Context, domain string) (discovery.Authority, error) {
	return f.Authority(ctx, domain)
}

func (f *fakeDisc) Mailbox(ctx context.Context, domain string) (discovery.Mailbox, error) {
	m, ok := f.mbx[domain]
	if !ok {
		return m, errs.E(errs.NotFound, "no_srv_record", "no SRV record for %s", domain)
	}
	return m, nil
}

// remote authenticates b.test's MTA at a.test's authorization server with
// the keys b.test would publish in its mailbox metadata.
type remote struct{ b *domain }

func (r remote) ClientKeys(ctx context.Context, clientID string) (string, []byte, error) {
	if clientID != "mta@b.test" {
		return "", nil, errs.E(errs.NotFound, "unknown_client", "no such client %s", clientID)
	}
	return "b.test", r.b.MTAKey.JWKS(), nil
}

func (r remote) IssuerKeys(ctx context.Context, domain string) (string, []byte, error) {
	return "", nil, errs.E(errs.NotFound, "no_srv_record", "no issuer for %s", domain)
}

// newWorld serves each domain on a TLS listener.
func newWorld(t testing.TB, opt mta.Config) *world { return newWorldOver(t, opt, false) }

// newWorldInProcess serves both domains' handlers in process: no sockets.
func newWorldInProcess(t testing.TB, opt mta.Config) *world { return newWorldOver(t, opt, true) }

// transports runs test over HTTPS and in process.
func transports(t *testing.T, test func(t *testing.T, newWorld func(testing.TB, mta.Config) *world)) {
	t.Run("https", func(t *testing.T) { test(t, newWorld) })
	t.Run("inprocess", func(t *testing.T) { test(t, newWorldInProcess) })
}

func newWorldOver(t testing.TB, opt mta.Config, inProcess bool) *world {
	t.Helper()
	w := &world{opt: opt, disc: &fakeDisc{auth: map[string]discovery.Authority{}, mbx: map[string]discovery.Mailbox{}}}
	w.a = newDomain(t, "a.test", "alice@a.test")
	w.b = newDomain(t, "b.test", "bob@b.test")
	log := testenv.Logger(t)

	var tr *federation.InProcess
	var client *http.Client
	var serveA, serveB func(http.Handler)
	if inProcess {
		tr = &federation.InProcess{}
		w.aURL, w.bURL = "https://a.test", "https://b.test"
		serveA = func(h http.Handler) { tr.Handle("a.test", h) }
		serveB = func(h http.Handler) { tr.Handle("b.test", h) }
	} else {
		aSrv := httptest.NewUnstartedServer(nil)
		aSrv.StartTLS()
		t.Cleanup(aSrv.Close)
		bSrv := httptest.NewUnstartedServer(nil)
		bSrv.StartTLS()
		t.Cleanup(bSrv.Close)
		w.aURL, w.bURL, client = aSrv.URL, bSrv.URL, aSrv.Client() // httptest servers share one test certificate
		w.client = client
		serveA = func(h http.Handler) { aSrv.Config.Handler = h }
		serveB = func(h http.Handler) { bSrv.Config.Handler = h }
	}

	// a.test: its authorization server and Origin on aSrv.
	var err error
	w.authzA, err = authz.New(authz.Config{Issuer: w.aURL, Domain: "a.test", Meta: w.a.Meta,
		Keys: w.a.Keys, Log: log, Remote: remote{w.b}})
	if err != nil {
		t.Fatal(err)
	}
	origin, err := inbound.NewOrigin(inbound.OriginConfig{Issuer: w.aURL, FetchURL: w.aURL + federation.PathResources,
		Meta: w.a.Meta, Resources: w.a.Store, Keys: w.a.Keys,
		DPoP: &dpop.Verifier{Replay: w.a.Meta}, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	muxA := http.NewServeMux()
	muxA.Handle("/oauth/", w.authzA.Handler())
	muxA.Handle(federation.PathResources+"/", origin.Handler())
	serveA(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, federation.PathResources+"/") {
			w.aRanges.Store(r.Header.Get("Range"))
		}
		if strings.HasPrefix(r.URL.Path, federation.PathResources+"/") && w.aGate.Add(-1) >= 0 {
			http.Error(rw, `{"error":{"code":"temporarily_unavailable","message":"down for a moment"}}`, http.StatusServiceUnavailable)
			return
		}
		if strings.HasPrefix(r.URL.Path, federation.PathResources+"/") {
			if a := w.aAnswer.Load(); a != nil {
				rw.Header().Set("Content-Type", "application/json")
				rw.WriteHeader(a.status)
				fmt.Fprintf(rw, `{"error":{"code":%q,"message":"the test answers %d"}}`, a.code, a.status)
				return
			}
			if r.Header.Get("Range") != "" {
				switch w.aRangeAnswer.Load() {
				case http.StatusOK:
					r.Header.Del("Range")
				case http.StatusRequestedRangeNotSatisfiable:
					rw.Header().Set("Content-Type", "application/json")
					rw.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
					io.WriteString(rw, `{"error":{"code":"range_not_satisfiable","message":"no such range"}}`)
					return
				}
			}
			rw = &tap{ResponseWriter: rw, w: w, ctx: r.Context()}
			if cut := w.aCut.Swap(0); cut > 0 {
				rw = &cutter{ResponseWriter: rw, left: cut}
			}
		}
		muxA.ServeHTTP(rw, r)
	}))

	// b.test: its Receiver on bSrv, behind a gate that can answer 503.
	recv, err := inbound.NewReceiver(inbound.Config{Domain: "b.test", MailboxURL: w.bURL, Meta: w.b.Meta,
		Mailbox: w.b.Mailbox, Resources: w.b.Store, Discovery: w.disc, DPoP: &dpop.Verifier{Replay: w.b.Meta}, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	rh := recv.Handler()
	serveB(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if w.bGate.Add(-1) >= 0 {
			http.Error(rw, `{"error":{"code":"temporarily_unavailable","message":"down for a moment"}}`, http.StatusServiceUnavailable)
			return
		}
		rh.ServeHTTP(rw, r)
	}))

	w.disc.auth["a.test"] = discovery.Authority{Issuer: w.aURL, TokenEndpoint: w.aURL + authz.PathToken,
		JWKS: w.a.Keys.PublicJWKS()}
	w.disc.mbx["a.test"] = discovery.Mailbox{MailboxMetadata: discovery.MailboxMetadata{Domain: "a.test", URL: w.aURL,
		InboundEndpoint: w.aURL + federation.PathMessages, FetchEndpoint: w.aURL + federation.PathResources,
		MTAClientID: "mta@a.test"}}
	w.disc.mbx["b.test"] = discovery.Mailbox{MailboxMetadata: discovery.MailboxMetadata{Domain: "b.test", URL: w.bURL,
		InboundEndpoint: w.bURL + federation.PathMessages, FetchEndpoint: w.bURL + federation.PathResources,
		MTAClientID: "mta@b.test"}}

	w.mk = func(d *domain, publicURL string, cfg mta.Config) *mta.MTA {
		key, err := dpop.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		cfg.Domain, cfg.PublicURL, cfg.Meta, cfg.Resources, cfg.Mailbox = d.Name, publicURL, d.Meta, d.Store, d.Mailbox
		cfg.TokenURL = publicURL + authz.PathToken
		cfg.Discovery, cfg.ClientID, cfg.ClientKey, cfg.DPoPKey = w.disc, "mta@"+d.Name, d.MTAKey, key
		cfg.HTTP, cfg.Log = client, log
		if tr != nil {
			cfg.Transport = tr
		}
		cfg.SendGrant = func(author, msgid string) (string, error) {
			return w.authzA.IssueSendGrant(author, "mta@a.test", msgid)
		}
		m, err := mta.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	w.mtaA = w.mk(w.a, w.aURL, opt)
	w.mtaB = w.mk(w.b, "https://b.test.invalid", opt)
	return w
}

// restartB makes b.test's MTA anew on the same stores, as a restart of its
// server on the same data directory would, with cfg instead of the world's
// options.
func (w *world) restartB(cfg mta.Config) *mta.MTA {
	w.mtaB = w.mk(w.b, "https://b.test.invalid", cfg)
	return w.mtaB
}

// restartA does the same for a.test.
func (w *world) restartA(cfg mta.Config) *mta.MTA {
	w.mtaA = w.mk(w.a, w.aURL, cfg)
	return w.mtaA
}

// cutter writes left bytes of a body, then breaks the connection.
type cutter struct {
	http.ResponseWriter
	left int64
}

func (c *cutter) Write(p []byte) (int, error) {
	if int64(len(p)) > c.left {
		n, _ := c.ResponseWriter.Write(p[:c.left])
		c.left -= int64(n)
		c.ResponseWriter.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	n, err := c.ResponseWriter.Write(p)
	c.left -= int64(n)
	return n, err
}

// send stores alice's sent message with one attachment at a.test and queues
// its copy for b.test as the mailbox does, in one transaction.
func (w *world) send(t testing.TB, data []byte, to []string) meta.Message {
	t.Helper()
	return w.sendParts(t, to, data)
}

// sendParts is send with one attachment for each of datas.
func (w *world) sendParts(t testing.TB, to []string, datas ...[]byte) meta.Message {
	t.Helper()
	ctx := context.Background()
	m := placeholder.New("Alice <alice@a.test>", to, nil, nil, "hello")
	var refs []meta.Ref
	for _, data := range datas {
		info, err := w.a.Store.Put(ctx, bytes.NewReader(data), resource.PutOptions{Size: int64(len(data))})
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := placeholder.NewLeaf(info.ID, info.Size, "application/octet-stream", "attachment", "f.bin")
		if err != nil {
			t.Fatal(err)
		}
		m.Parts = append(m.Parts, leaf)
		refs = append(refs, meta.Ref{ID: info.ID, Size: info.Size})
	}
	m.Header.SetString(placeholder.HDate, placeholder.FormatDate(time.Now()))
	m.Header.SetString(placeholder.HMessageID, placeholder.NewMessageID("a.test"))
	m.Header.SetString(placeholder.HThreadID, placeholder.NewMessageID("a.test"))
	m.Header.SetString(placeholder.HBodyDigest, placeholder.BodyDigest(m))
	rd, err := placeholder.RecipientsDigest(m.Header)
	if err != nil {
		t.Fatal(err)
	}
	m.Header.SetString(placeholder.HRecipientsDigest, rd)
	if err := m.Validate(placeholder.Limits{}); err != nil {
		t.Fatal(err)
	}
	alice, err := w.a.Meta.UserByAddress(ctx, "alice@a.test")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	sent := meta.Message{ID: "sent-" + string(resource.IDOf(m.Canonical()))[:12], UserID: alice.ID, Folder: meta.Sent,
		MessageID: m.Header.Get(placeholder.HMessageID).String(), Status: meta.StatusSent, Date: now, Created: now,
		Updated: now, Placeholder: m.Canonical(), Refs: refs}
	copies := []mta.Copy{{Domain: "b.test", Placeholder: m.Canonical(), Recipients: to}}
	grant, err := w.mtaA.SendGrant("alice@a.test", sent.MessageID) // before the transaction, as the mailbox does
	if err != nil {
		t.Fatal(err)
	}
	err = w.a.Meta.Update(ctx, func(tx meta.Tx) error {
		if err := tx.InsertMessage(ctx, sent); err != nil {
			return err
		}
		return w.mtaA.QueueSend(ctx, tx, "alice@a.test", grant, sent, copies)
	})
	if err != nil {
		t.Fatal(err)
	}
	// Queueing the same copy again is a no-op.
	err = w.a.Meta.Update(ctx, func(tx meta.Tx) error {
		return w.mtaA.QueueSend(ctx, tx, "alice@a.test", grant, sent, copies)
	})
	if err != nil {
		t.Fatal(err)
	}
	return sent
}

// show is a job for a failure message, without its payload.
func show(j meta.Job) string {
	return fmt.Sprintf("%s %s attempts=%d next=%s error=%q", j.Key, j.State, j.Attempts, j.NextTry.Format(time.RFC3339), j.LastError)
}

func jobs(t testing.TB, st meta.Store, kind string) []meta.Job {
	t.Helper()
	js, err := st.Jobs(context.Background(), kind, 0)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func inbox(t testing.TB, d *domain, addr string) []meta.Message {
	t.Helper()
	ctx := context.Background()
	u, err := d.Meta.UserByAddress(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := d.Meta.Messages(ctx, u.ID, meta.ListOptions{Folder: meta.Inbox})
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

func read(t testing.TB, st resource.Fetcher, id resource.ID) []byte {
	t.Helper()
	o, err := st.Open(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	b, err := io.ReadAll(o)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPushThenPull(t *testing.T) {
	transports(t, func(t *testing.T, newWorld func(testing.TB, mta.Config) *world) {
		w := newWorld(t, mta.Config{})
		ctx := context.Background()
		data := bytes.Repeat([]byte("pullmail "), 100_000)
		sent := w.send(t, data, []string{"Bob <bob@b.test>"})

		pushes := jobs(t, w.a.Meta, mta.JobPush)
		if len(pushes) != 1 || !strings.HasPrefix(pushes[0].Key, "push:"+sent.ID+":b.test:") {
			t.Fatalf("push jobs: %+v", pushes)
		}
		w.mtaA.RunDue(ctx)
		if j := jobs(t, w.a.Meta, mta.JobPush)[0]; j.State != meta.JobDone || j.Attempts != 1 {
			t.Fatalf("push job after the run: %s", show(j))
		}
		in := inbox(t, w.b, "bob@b.test")
		if len(in) != 1 || in[0].Status != meta.StatusFetching || in[0].MessageID != sent.MessageID {
			t.Fatalf("bob's inbox after the push: %+v", in)
		}
		if _, err := w.b.Store.Stat(ctx, sent.Refs[0].ID); err == nil {
			t.Fatal("b.test holds the resource before the pull")
		}

		w.mtaB.RunDue(ctx)
		pulls := jobs(t, w.b.Meta, mta.JobPull)
		if len(pulls) != 1 {
			t.Fatalf("%d pull jobs", len(pulls))
		}
		if pulls[0].State != meta.JobDone {
			t.Fatalf("pull job: %s", show(pulls[0]))
		}
		if got := read(t, w.b.Store, sent.Refs[0].ID); !bytes.Equal(got, data) {
			t.Fatalf("pulled %d bytes, want %d identical", len(got), len(data))
		}
		in = inbox(t, w.b, "bob@b.test")
		if len(in) != 1 || in[0].Status != meta.StatusComplete {
			t.Fatalf("bob's copy after the pull: %+v", in)
		}
		// Nothing is left to run, and alice got no notice.
		w.mtaA.RunDue(ctx)
		w.mtaB.RunDue(ctx)
		if n := len(inbox(t, w.a, "alice@a.test")); n != 0 {
			t.Fatalf("alice's inbox holds %d messages", n)
		}

	})
}

// notice returns alice's one delivery-status notice and its text.
func notice(t *testing.T, w *world) (meta.Message, string) {
	t.Helper()
	in := inbox(t, w.a, "alice@a.test")
	if len(in) != 1 {
		t.Fatalf("alice's inbox: %d messages, want one notice", len(in))
	}
	n := in[0]
	if n.Status != meta.StatusComplete || !strings.Contains(n.From, "postmaster@a.test") || len(n.Refs) != 1 {
		t.Fatalf("notice: %+v", n)
	}
	if _, err := placeholder.Parse(n.Placeholder, placeholder.Limits{}); err != nil {
		t.Fatalf("notice placeholder: %v", err)
	}
	return n, string(read(t, w.a.Store, n.Refs[0].ID))
}

func TestPushRefused(t *testing.T) {
	transports(t, func(t *testing.T, newWorld func(testing.TB, mta.Config) *world) {
		w := newWorld(t, mta.Config{})
		w.send(t, []byte("x"), []string{"nobody@b.test"})
		w.mtaA.RunDue(context.Background())
		j := jobs(t, w.a.Meta, mta.JobPush)[0]
		if j.State != meta.JobFailed || j.Attempts != 1 || !strings.Contains(j.LastError, "unknown_recipient") {
			t.Fatalf("push job: %s", show(j))
		}
		_, text := notice(t, w)
		if !strings.Contains(text, "nobody@b.test") || !strings.Contains(text, "unknown_recipient") {
			t.Fatalf("notice text: %q", text)
		}

	})
}

func TestPushRetry(t *testing.T) {
	transports(t, func(t *testing.T, newWorld func(testing.TB, mta.Config) *world) {
		tests := []struct {
			name      string
			cfg       mta.Config
			down      int32
			state     meta.JobState
			attempts  int
			delivered bool
		}{
			{"delivered on the second try", mta.Config{Backoff: func(int) time.Duration { return 0 }}, 1, meta.JobDone, 2, true},
			{"the last retry at the horizon", mta.Config{Backoff: func(int) time.Duration { return time.Hour }, Horizon: time.Minute}, 1, meta.JobQueued, 1, false},
			{"queued for later", mta.Config{Backoff: func(int) time.Duration { return time.Hour }}, 1, meta.JobQueued, 1, false},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				w := newWorld(t, tc.cfg)
				w.bGate.Store(tc.down)
				w.send(t, []byte("x"), []string{"bob@b.test"})
				w.mtaA.RunDue(context.Background())
				j := jobs(t, w.a.Meta, mta.JobPush)[0]
				if j.State != tc.state || j.Attempts != tc.attempts {
					t.Fatalf("push job: %s", show(j))
				}
				if got := len(inbox(t, w.b, "bob@b.test")) == 1; got != tc.delivered {
					t.Fatalf("delivered: %v", got)
				}
				switch tc.state {
				case meta.JobFailed:
					if _, text := notice(t, w); !strings.Contains(text, "503") {
						t.Fatalf("notice text: %q", text)
					}
				case meta.JobQueued:
					if tc.cfg.Horizon > 0 {
						if !j.NextTry.Equal(j.Expires) {
							t.Fatalf("queued job: %s, want the next try at the horizon %s", show(j), j.Expires)
						}
					} else if !strings.Contains(j.LastError, "503") || !j.NextTry.After(time.Now().Add(50*time.Minute)) {
						t.Fatalf("queued job: %s", show(j))
					}
				}
			})
		}

	})
}

func TestPull(t *testing.T) {
	transports(t, func(t *testing.T, newWorld func(testing.TB, mta.Config) *world) {
		tests := []struct {
			name   string
			down   int32
			unsend bool // alice's sent copy is gone: the origin's AS grants no fetch token
			state  meta.JobState
			status meta.Status
		}{
			{"after a 503", 1, false, meta.JobDone, meta.StatusComplete},
			{"refused", 0, true, meta.JobFailed, meta.StatusFailed},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				w := newWorld(t, mta.Config{Backoff: func(int) time.Duration { return 0 }})
				ctx := context.Background()
				data := []byte("the attachment")
				sent := w.send(t, data, []string{"bob@b.test"})
				w.mtaA.RunDue(ctx)
				if tc.unsend {
					if err := w.a.Meta.Update(ctx, func(tx meta.Tx) error { return tx.DeleteMessage(ctx, sent.UserID, sent.ID) }); err != nil {
						t.Fatal(err)
					}
				}
				w.aGate.Store(tc.down)
				w.mtaB.RunDue(ctx)
				pulls := jobs(t, w.b.Meta, mta.JobPull)
				if len(pulls) != 1 || pulls[0].State != tc.state || pulls[0].Attempts != int(tc.down)+1 {
					t.Fatalf("pull jobs: %d, %s", len(pulls), show(pulls[0]))
				}
				in := inbox(t, w.b, "bob@b.test")
				if len(in) != 1 || in[0].Status != tc.status {
					t.Fatalf("bob's copy: %+v", in)
				}
				_, err := w.b.Store.Stat(ctx, sent.Refs[0].ID)
				switch tc.status {
				case meta.StatusComplete:
					if err != nil || !bytes.Equal(read(t, w.b.Store, sent.Refs[0].ID), data) {
						t.Fatalf("pulled resource: %v", err)
					}
				case meta.StatusFailed:
					if err == nil || !strings.Contains(in[0].StatusReason, federation.CodeNoSentCopy) {
						t.Fatalf("failed copy: reason %q, resource held: %v", in[0].StatusReason, err == nil)
					}
				}
			})
		}

	})
}

// TestPullResumed: a transfer cut midway goes on with Range from where it
// stopped, in the same attempt, and the stored bytes are the origin's.
func TestPullResumed(t *testing.T) {
	transports(t, func(t *testing.T, newWorld func(testing.TB, mta.Config) *world) {
		w := newWorld(t, mta.Config{})
		ctx := context.Background()
		data := make([]byte, 1<<20)
		for i := range data {
			data[i] = byte(i * 7)
		}
		sent := w.send(t, data, []string{"bob@b.test"})
		w.mtaA.RunDue(ctx)
		w.aCut.Store(300_000)
		w.mtaB.RunDue(ctx)
		if j := jobs(t, w.b.Meta, mta.JobPull)[0]; j.State != meta.JobDone || j.Attempts != 1 {
			t.Fatalf("pull job: %s", show(j))
		}
		rg, _ := w.aRanges.Load().(string)
		var at int64
		if _, err := fmt.Sscanf(rg, "bytes=%d-", &at); err != nil || at < 1 || at > 300_000 {
			t.Fatalf("the last fetch asked for %q", rg)
		}
		if !bytes.Equal(read(t, w.b.Store, sent.Refs[0].ID), data) {
			t.Fatal("the resumed resource differs")
		}

	})
}

// TestPullHeld: a resource the domain holds already is not pulled again.
func TestPullHeld(t *testing.T) {
	transports(t, func(t *testing.T, newWorld func(testing.TB, mta.Config) *world) {
		w := newWorld(t, mta.Config{})
		ctx := context.Background()
		data := []byte("already here")
		if _, err := w.b.Store.Put(ctx, bytes.NewReader(data), resource.PutOptions{Size: int64(len(data))}); err != nil {
			t.Fatal(err)
		}
		w.send(t, data, []string{"bob@b.test"})
		w.mtaA.RunDue(ctx)
		w.aGate.Store(1000) // any fetch would fail
		w.mtaB.RunDue(ctx)
		if j := jobs(t, w.b.Meta, mta.JobPull)[0]; j.State != meta.JobDone || j.Attempts != 1 {
			t.Fatalf("pull job: %s", show(j))
		}
		if n := w.aGate.Load(); n != 1000 {
			t.Fatalf("%d fetches made", 1000-n)
		}
		if in := inbox(t, w.b, "bob@b.test"); len(in) != 1 || in[0].Status != meta.StatusComplete {
			t.Fatalf("bob's copy: %+v", in)
		}

	})
}

func TestBackoff(t *testing.T) {
	tests := []struct {
		attempt  int
		min, max time.Duration
	}{
		{1, 15 * time.Second, 30 * time.Second},
		{2, 30 * time.Second, time.Minute},
		{5, 4 * time.Minute, 8 * time.Minute},
		{8, 30 * time.Minute, time.Hour},
		{100, 30 * time.Minute, time.Hour},
	}
	for _, tc := range tests {
		for range 50 {
			if d := mta.Backoff(tc.attempt); d < tc.min || d >= tc.max {
				t.Fatalf("Backoff(%d) = %v, want [%v, %v)", tc.attempt, d, tc.min, tc.max)
			}
		}
	}
}

func TestPayloadRoundTrip(t *testing.T) {
	p := mta.PushPayload{Author: "alice@a.test", Placeholder: json.RawMessage(`{"headers":{}}`)}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var q mta.PushPayload
	if err := json.Unmarshal(b, &q); err != nil || q.Author != p.Author || string(q.Placeholder) != string(p.Placeholder) {
		t.Fatalf("round trip: %+v %v", q, err)
	}
}

// TestRun: Run, woken by Kick after a send, carries the message; it returns
// when its context ends.
func TestRun(t *testing.T) {
	transports(t, func(t *testing.T, newWorld func(testing.TB, mta.Config) *world) {
		w := newWorld(t, mta.Config{Poll: time.Hour})
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { w.mtaA.Run(ctx) })
		wg.Go(func() { w.mtaB.Run(ctx) })
		sent := w.send(t, []byte("run"), []string{"bob@b.test"})
		w.mtaA.Kick()
		for i := 0; ; i++ {
			// Bob's copy goes complete when b.test's MTA pulls; its poll is an
			// hour, so kick it until then.
			w.mtaB.Kick()
			in := inbox(t, w.b, "bob@b.test")
			if len(in) == 1 && in[0].Status == meta.StatusComplete && in[0].MessageID == sent.MessageID {
				break
			}
			if i == 1000 {
				t.Fatalf("not delivered: %+v", in)
			}
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		wg.Wait()

	})
}

// TestPullOncePerDomain: two pull jobs that want the same resource (two
// messages with one attachment, or two Bcc copies to one domain) run
// together, and the origin serves it once.
func TestPullOncePerDomain(t *testing.T) {
	transports(t, func(t *testing.T, newWorld func(testing.TB, mta.Config) *world) {
		w := newWorld(t, mta.Config{})
		ctx := context.Background()
		data := bytes.Repeat([]byte("one attachment, two messages "), 20000)
		w.send(t, data, []string{"bob@b.test"})
		w.send(t, data, []string{"bob@b.test"})
		w.mtaA.RunDue(ctx)
		if n := len(jobs(t, w.b.Meta, mta.JobPull)); n != 2 {
			t.Fatalf("%d pull jobs, want 2", n)
		}
		w.aGate.Store(0) // every fetch now counts one below zero
		w.mtaB.RunDue(ctx)
		for _, j := range jobs(t, w.b.Meta, mta.JobPull) {
			if j.State != meta.JobDone {
				t.Fatalf("pull job: %s", show(j))
			}
		}
		if fetches := -w.aGate.Load(); fetches != 1 {
			t.Fatalf("the origin served the resource %d times, want 1", fetches)
		}

	})
}
