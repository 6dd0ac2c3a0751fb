package mta_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pullmail/pullmail/discovery"
	"github.com/pullmail/pullmail/discovery/dnstest"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/mta"
	"github.com/pullmail/pullmail/tlsca"
)

// receiver is an SMTP mail exchanger on loopback (emersion/go-smtp's
// server): it takes every message, counts the TCP connections it accepts,
// and offers STARTTLS with the certificate given (none: no STARTTLS).
type receiver struct {
	srv   *smtp.Server
	port  int
	conns atomic.Int64 // connections accepted

	mu   sync.Mutex
	msgs []string // each message's body
	open []*smtp.Conn
	// rcpt, when set, answers RCPT TO (nil error: accepted).
	rcpt func(to string) error
}

func newReceiver(t testing.TB, cert *tls.Certificate) *receiver {
	t.Helper()
	r := &receiver{}
	r.srv = smtp.NewServer(r)
	r.srv.Domain = "mx.b.test"
	if cert != nil {
		r.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*cert}}
	}
	r.srv.ErrorLog = nopLogger{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.port = l.Addr().(*net.TCPAddr).Port
	go r.srv.Serve(countingListener{l, &r.conns})
	t.Cleanup(func() { r.srv.Close() })
	return r
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}
func (nopLogger) Println(...any)        {}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

func (r *receiver) NewSession(c *smtp.Conn) (smtp.Session, error) {
	r.mu.Lock()
	r.open = append(r.open, c)
	r.mu.Unlock()
	return &rsession{r: r}, nil
}

// dropAll closes every connection: an exchanger that ends idle sessions.
func (r *receiver) dropAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.open {
		c.Close()
	}
	r.open = nil
}

func (r *receiver) messages() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...)
}

type rsession struct{ r *receiver }

func (s *rsession) Reset()                               {}
func (s *rsession) Logout() error                        { return nil }
func (s *rsession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *rsession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.r.mu.Lock()
	f := s.r.rcpt
	s.r.mu.Unlock()
	if f != nil {
		return f(to)
	}
	return nil
}
func (s *rsession) Data(rd io.Reader) error {
	b, err := io.ReadAll(rd)
	if err != nil {
		return err
	}
	s.r.mu.Lock()
	s.r.msgs = append(s.r.msgs, string(b))
	s.r.mu.Unlock()
	return nil
}

// smtpWorld is a.test sending to b.test, an SMTP domain: the DNS server
// publishes b.test's MX (mx.b.test on 127.0.0.1) and, when a test says,
// its MTA-STS record; an HTTPS server with the test CA's certificate for
// mta-sts.b.test serves the policy and counts the fetches; rcv is the
// exchanger.
type smtpWorld struct {
	*world
	rcv     *receiver
	dns     *dnstest.Server
	ca      *tlsca.CA
	policy  atomic.Value // string: the policy document served
	fetches atomic.Int64
	reg     *prometheus.Registry
}

// smtpOpts says how a smtpWorld is made.
type smtpOpts struct {
	cert  string           // the exchanger's certificate name; "": it offers no STARTTLS
	clock func() time.Time // the MTA-STS cache's clock (nil: time.Now)
	tune  func(*mta.SMTPConfig)
}

func newSMTPWorld(t *testing.T, o smtpOpts) *smtpWorld { return newSMTPWorldTB(t, o) }

func newSMTPWorldTB(t testing.TB, o smtpOpts) *smtpWorld {
	t.Helper()
	d, err := dnstest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	ca, err := tlsca.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sw := &smtpWorld{dns: d, ca: ca, reg: prometheus.NewRegistry()}
	d.AddMX("b.test", 10, "mx.b.test")
	d.AddA("mx.b.test", "127.0.0.1")
	var cert *tls.Certificate
	if o.cert != "" {
		c, err := ca.Issue([]string{o.cert}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cert = &c
	}
	sw.rcv = newReceiver(t, cert)

	ps := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw.fetches.Add(1)
		p, _ := sw.policy.Load().(string)
		if r.URL.Path != "/.well-known/mta-sts.txt" || p == "" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, p)
	}))
	if ps.TLS, err = ca.TLSConfig([]string{"mta-sts.b.test"}); err != nil {
		t.Fatal(err)
	}
	ps.StartTLS()
	t.Cleanup(ps.Close)
	d.AddA("mta-sts.b.test", "127.0.0.1")
	_, pp, _ := net.SplitHostPort(ps.Listener.Addr().String())
	policyPort, _ := strconv.Atoi(pp)

	res := discovery.NewResolver(d.Addr())
	disc := discovery.New(discovery.Config{Resolver: res, AllowPrivate: true})
	sts := discovery.NewSTS(discovery.STSConfig{Resolver: res, RootCAs: ca.Pool(), AllowPrivate: true, Port: policyPort,
		Timeout: 5 * time.Second, Clock: o.clock})
	cfg := mta.SMTPConfig{Peers: disc.Peer, Resolver: res, Port: sw.rcv.port, RootCAs: ca.Pool(), AllowPrivate: true,
		STS: sts.Policy, Timeout: 10 * time.Second}
	if o.tune != nil {
		o.tune(&cfg)
	}
	sw.world = newWorldInProcess(t, mta.Config{SMTP: cfg})
	sw.restartA(mta.Config{SMTP: cfg, Metrics: sw.reg}) // a.test's MTA alone counts in reg
	t.Cleanup(sw.mtaA.CloseIdle)
	return sw
}

// publish puts b.test's MTA-STS record with id and serves policy.
func (sw *smtpWorld) publish(id, policy string) {
	sw.policy.Store(policy)
	sw.dns.Remove("_mta-sts.b.test")
	sw.dns.AddTXT("_mta-sts.b.test", "v=STSv1; id="+id)
}

// counter is the value of a counter of sw's MTA with these labels.
func (sw *smtpWorld) counter(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := sw.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue metric
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func policy(mode, mx string) string {
	return "version: STSv1\nmode: " + mode + "\nmx: " + mx + "\nmax_age: 86400\n"
}

// TestSMTPMTASTS delivers to b.test's exchanger under each policy mode,
// with the exchanger offering no STARTTLS, a certificate for another name,
// or one for its own: enforce delivers only over verified TLS to an MX of
// the policy and otherwise leaves the job queued (temporary, retried),
// never falling back to clear text; testing and no policy deliver as
// opportunistic TLS does, testing counting what enforce would refuse.
func TestSMTPMTASTS(t *testing.T) {
	for _, c := range []struct {
		name      string
		mode, mx  string // "" mode: no policy published
		cert      string // the exchanger's certificate name; "": no STARTTLS
		delivered bool
		stsReason string // the pullmail_mta_sts_failures_total reason counted, if any
		errHas    string
	}{
		{"enforce/verified", "enforce", "mx.b.test", "mx.b.test", true, "", ""},
		{"enforce/wildcard", "enforce", "*.b.test", "mx.b.test", true, "", ""},
		{"enforce/plaintext", "enforce", "mx.b.test", "", false, "starttls", "requires TLS"},
		{"enforce/wrong-name", "enforce", "mx.b.test", "other.test", false, "certificate", "certificate valid for mx.b.test"},
		{"enforce/mx-mismatch", "enforce", "mx.elsewhere.test", "mx.b.test", false, "mx_mismatch", "not in b.test's MTA-STS policy"},
		{"testing/plaintext", "testing", "mx.b.test", "", true, "starttls", ""},
		{"testing/wrong-name", "testing", "mx.b.test", "other.test", true, "certificate", ""},
		{"testing/mx-mismatch", "testing", "mx.elsewhere.test", "mx.b.test", true, "mx_mismatch", ""},
		{"none/plaintext", "none", "mx.b.test", "", true, "", ""},
		{"no-policy/plaintext", "", "", "", true, "", ""},
		{"no-policy/wrong-name", "", "", "other.test", true, "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			sw := newSMTPWorld(t, smtpOpts{cert: c.cert})
			if c.mode != "" {
				sw.publish("one", policy(c.mode, c.mx))
			}
			sw.send(t, []byte("a report"), []string{"bob@b.test"})
			sw.mtaA.RunDue(ctx)
			j := jobs(t, sw.a.Meta, mta.JobPush)[0]
			got := len(sw.rcv.messages())
			if c.delivered {
				if j.State != meta.JobDone || got != 1 {
					t.Fatalf("job %s, %d messages at the exchanger; want done, 1", show(j), got)
				}
			} else {
				if j.State != meta.JobQueued || got != 0 || !strings.Contains(j.LastError, c.errHas) {
					t.Fatalf("job %s, %d messages at the exchanger; want queued with %q, none", show(j), got, c.errHas)
				}
				if c.stsReason == "mx_mismatch" && sw.rcv.conns.Load() != 0 {
					t.Fatalf("%d connections to an MX the policy does not name", sw.rcv.conns.Load())
				}
			}
			n := sw.counter(t, "pullmail_mta_sts_failures_total", map[string]string{"mode": c.mode, "reason": c.stsReason})
			if c.stsReason != "" && n < 1 {
				t.Fatalf("pullmail_mta_sts_failures_total{mode=%q,reason=%q} = %v", c.mode, c.stsReason, n)
			}
			if c.stsReason == "" {
				if n := sw.counter(t, "pullmail_mta_sts_failures_total", nil); n != 0 {
					t.Fatalf("pullmail_mta_sts_failures_total = %v, want 0", n)
				}
			}
		})
	}
}

// TestSMTPMTASTSCache: the policy is fetched once for many deliveries, and
// again when the record's id changes: a domain that moves from enforce to
// testing has its queued mail delivered once the MTA sees the new id.
func TestSMTPMTASTSCache(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	sw := newSMTPWorld(t, smtpOpts{cert: "mx.b.test", clock: clock})
	sw.publish("one", policy("enforce", "mx.b.test"))
	for range 5 {
		sw.send(t, []byte("a report"), []string{"bob@b.test"})
	}
	sw.mtaA.RunDue(ctx)
	if got, n := len(sw.rcv.messages()), sw.fetches.Load(); got != 5 || n != 1 {
		t.Fatalf("%d messages delivered with %d policy fetches; want 5 with 1", got, n)
	}
	advance(2 * discovery.STSRecheck) // the record is looked up again; same id
	sw.send(t, []byte("a report"), []string{"bob@b.test"})
	sw.mtaA.RunDue(ctx)
	if got, n := len(sw.rcv.messages()), sw.fetches.Load(); got != 6 || n != 1 {
		t.Fatalf("%d messages delivered with %d policy fetches; want 6 with 1", got, n)
	}

	// The exchanger loses TLS: enforce holds the mail back.
	sw.rcv.srv.TLSConfig = nil
	sw.mtaA.CloseIdle()
	sw.send(t, []byte("held back"), []string{"bob@b.test"})
	sw.mtaA.RunDue(ctx)
	if got := len(sw.rcv.messages()); got != 6 {
		t.Fatalf("%d messages delivered; want 6 (the 7th held back)", got)
	}
	// The domain publishes mode testing under a new id: fetched once more,
	// and the retry delivers.
	sw.publish("two", policy("testing", "mx.b.test"))
	advance(2 * discovery.STSRecheck)
	for _, j := range jobs(t, sw.a.Meta, mta.JobPush) {
		if j.State == meta.JobQueued {
			wakeJob(t, sw.a.Meta, j)
		}
	}
	sw.mtaA.RunDue(ctx)
	if got, n := len(sw.rcv.messages()), sw.fetches.Load(); got != 7 || n != 2 {
		t.Fatalf("%d messages delivered with %d policy fetches; want 7 with 2", got, n)
	}
}

// wakeJob makes a queued job due now.
func wakeJob(t *testing.T, st meta.Store, j meta.Job) {
	t.Helper()
	err := st.Update(context.Background(), func(tx meta.Tx) error {
		j.NextTry = time.Now().Add(-time.Second)
		return tx.UpdateJob(context.Background(), j)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestSMTPConnectionReuse: messages queued to one exchanger go over one
// session (RSET between), at most MaxPerConn a session; an idle session
// ends after IdleTimeout; one the exchanger dropped is replaced.
func TestSMTPConnectionReuse(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name     string
		cert     string
		perConn  int
		messages int
		conns    int64
	}{
		{"plaintext", "", 0, 10, 1},
		{"starttls", "mx.b.test", 0, 10, 1},
		{"per-conn-limit", "mx.b.test", 4, 10, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			sw := newSMTPWorld(t, smtpOpts{cert: c.cert, tune: func(s *mta.SMTPConfig) {
				s.MaxConns, s.MaxPerConn = 1, c.perConn
			}})
			for range c.messages {
				sw.send(t, []byte("a report"), []string{"bob@b.test"})
			}
			sw.mtaA.RunDue(ctx)
			if got, n := len(sw.rcv.messages()), sw.rcv.conns.Load(); got != c.messages || n != c.conns {
				t.Fatalf("%d messages over %d connections; want %d over %d", got, n, c.messages, c.conns)
			}
			for _, j := range jobs(t, sw.a.Meta, mta.JobPush) {
				if j.State != meta.JobDone {
					t.Fatalf("job %s", show(j))
				}
			}
			reused := sw.counter(t, "pullmail_mta_smtp_transactions_total", map[string]string{"session": "reused"})
			if want := float64(int64(c.messages) - c.conns); reused != want {
				t.Fatalf("%v transactions on reused sessions, want %v", reused, want)
			}
		})
	}

	t.Run("dropped-and-idle", func(t *testing.T) {
		sw := newSMTPWorld(t, smtpOpts{tune: func(s *mta.SMTPConfig) { s.IdleTimeout = 300 * time.Millisecond }})
		deliver := func(want int) {
			t.Helper()
			sw.send(t, []byte("a report"), []string{"bob@b.test"})
			sw.mtaA.RunDue(ctx)
			if got := len(sw.rcv.messages()); got != want {
				t.Fatalf("%d messages, want %d", got, want)
			}
		}
		deliver(1)
		deliver(2) // the same session
		if n := sw.rcv.conns.Load(); n != 1 {
			t.Fatalf("%d connections, want 1", n)
		}
		sw.rcv.dropAll() // the exchanger ends the idle session: RSET fails, a new one
		time.Sleep(50 * time.Millisecond)
		deliver(3)
		if n := sw.rcv.conns.Load(); n != 2 {
			t.Fatalf("%d connections after the exchanger dropped one, want 2", n)
		}
		time.Sleep(600 * time.Millisecond) // past IdleTimeout: the MTA closed it
		deliver(4)
		if n := sw.rcv.conns.Load(); n != 3 {
			t.Fatalf("%d connections after the idle timeout, want 3", n)
		}
	})
}

// TestDeliveries: the sender's delivery state per recipient, as the push
// jobs say: queued before the first attempt; for SMTP, each recipient's
// answer (delivered, failed with the 5xx reply, deferred with the 4xx reply
// and the next retry), the deferred recipient delivered by its own job
// later; for a Pullmail domain, delivered.
func TestDeliveries(t *testing.T) {
	ctx := context.Background()
	sw := newSMTPWorld(t, smtpOpts{cert: "mx.b.test"})
	later := true
	sw.rcv.rcpt = func(to string) error {
		switch {
		case strings.HasPrefix(to, "nobody@"):
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		case strings.HasPrefix(to, "later@") && later:
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "greylisted, try later"}
		}
		return nil
	}
	sent := sw.send(t, []byte("a report"), []string{"bob@b.test", "nobody@b.test", "later@b.test"})
	state := func() map[string]mta.Delivery {
		t.Helper()
		ds, err := mta.Deliveries(ctx, sw.a.Meta, sent.ID)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]mta.Delivery{}
		for _, d := range ds {
			out[d.Recipient] = d
		}
		if len(out) != 3 || len(ds) != 3 {
			t.Fatalf("deliveries %+v", ds)
		}
		return out
	}
	for r, d := range state() {
		if d.State != mta.DeliveryQueued || d.Domain != "b.test" {
			t.Errorf("%s before the first attempt: %+v", r, d)
		}
	}
	sw.mtaA.RunDue(ctx)
	ds := state()
	for _, c := range []struct {
		rcpt, state string
		code        int
		reply       string
		retry       bool
	}{
		{"bob@b.test", mta.DeliveryDelivered, 0, "", false},
		{"nobody@b.test", mta.DeliveryFailed, 550, "550 5.1.1 no such user", false},
		{"later@b.test", mta.DeliveryDeferred, 451, "451 4.7.1 greylisted, try later", true},
	} {
		d := ds[c.rcpt]
		if d.State != c.state || d.Code != c.code || d.Reply != c.reply || d.NextRetry.IsZero() == c.retry ||
			d.Via != "smtp" || d.MX != "mx.b.test" || d.TLS != "verified" {
			t.Errorf("%s: %+v; want %s %d %q retry %v via smtp, mx.b.test, verified", c.rcpt, d, c.state, c.code, c.reply, c.retry)
		}
	}
	// The exchanger takes later@ now: its own job delivers it.
	sw.rcv.mu.Lock()
	later = false
	sw.rcv.mu.Unlock()
	for _, j := range jobs(t, sw.a.Meta, mta.JobPush) {
		if j.State == meta.JobQueued {
			wakeJob(t, sw.a.Meta, j)
		}
	}
	sw.mtaA.RunDue(ctx)
	if d := state()["later@b.test"]; d.State != mta.DeliveryDelivered || d.Reply != "" || !d.NextRetry.IsZero() {
		t.Errorf("later@b.test after its retry: %+v", d)
	}

	// A Pullmail domain: queued, then delivered.
	w := newWorldInProcess(t, mta.Config{})
	sent = w.send(t, []byte("a report"), []string{"bob@b.test"})
	if ds, err := mta.Deliveries(ctx, w.a.Meta, sent.ID); err != nil || len(ds) != 1 || ds[0].State != mta.DeliveryQueued {
		t.Fatalf("before the push: %+v, %v", ds, err)
	}
	w.mtaA.RunDue(ctx)
	if ds, err := mta.Deliveries(ctx, w.a.Meta, sent.ID); err != nil || len(ds) != 1 || ds[0].State != mta.DeliveryDelivered ||
		ds[0].Via != "pullmail" || ds[0].Code != 0 {
		t.Fatalf("after the push: %+v, %v", ds, err)
	}
}

// BenchmarkSMTPDelivery delivers 100 queued messages to one exchanger over
// STARTTLS, with sessions reused (the default) and one per message.
func BenchmarkSMTPDelivery(b *testing.B) {
	for _, c := range []struct {
		name string
		idle time.Duration
	}{{"reuse", 0}, {"per-message", -1}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				sw := newSMTPWorldTB(b, smtpOpts{cert: "mx.b.test", tune: func(s *mta.SMTPConfig) { s.IdleTimeout = c.idle }})
				for range 100 {
					sw.send(b, []byte("a report"), []string{"bob@b.test"})
				}
				b.StartTimer()
				sw.mtaA.RunDue(context.Background())
				b.StopTimer()
				if n := len(sw.rcv.messages()); n != 100 {
					b.Fatalf("%d messages delivered", n)
				}
				b.ReportMetric(float64(sw.rcv.conns.Load()), "conns")
				b.StartTimer()
			}
		})
	}
}
