package mta

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pullmail/pullmail/discovery"
	"github.com/pullmail/pullmail/dpop"
	"github.com/pullmail/pullmail/federation"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/upload"
)

// Job kinds run by the MTA.
const (
	JobPush = "push"
	JobPull = federation.JobPull
)

// Defaults.
const (
	DefaultHorizon = 5 * 24 * time.Hour
	DefaultPoll    = 500 * time.Millisecond
	DefaultBatch   = 16
	// DefaultStageAbove is the size from which a pull stages its bytes
	// (Config.Staging): below it, fetching again costs less than staging.
	DefaultStageAbove = 4 << 20
	// DefaultLease is how long a claimed job is ours before it must be
	// renewed: a running job renews it every third of it, and a worker
	// that dies loses its jobs when it ends.
	DefaultLease = time.Minute
)

// Discovery is what the MTA needs to know of other domains;
// *discovery.Client implements it.
type Discovery interface {
	Authority(ctx context.Context, domain string) (discovery.Authority, error)
	Mailbox(ctx context.Context, domain string) (discovery.Mailbox, error)
}

var _ Discovery = (*discovery.Client)(nil)

// Mailbox is where the jobs' consequences for this domain's users go: the
// status of the copies a pull completes, the delivery-status notice of a
// push that gives up. Each is written in tx, the transaction that finishes
// the job, so that a job and its consequences commit together; the MTA
// writes no mailbox row itself (*mailbox.Service, the one writer of them,
// implements this).
type Mailbox interface {
	// SetPullOutcome moves a received copy, if still fetching, to status:
	// complete, or failed with reason (docs/PROTOCOL.md §11.4). A copy
	// gone is no error.
	SetPullOutcome(ctx context.Context, tx meta.Tx, userID int64, id string, status meta.Status, reason string) error
	// DeliverNotice puts notice, a canonical Placeholder Message whose
	// resources are stored, in the user's inbox as row id.
	DeliverNotice(ctx context.Context, tx meta.Tx, userID int64, id string, notice []byte) error
}

// Config configures an MTA.
type Config struct {
	// Domain is this domain; PublicURL its external base URL, which is
	// also its authorization server's issuer.
	Domain    string
	PublicURL string
	// TokenURL is the token endpoint of this domain's authorization
	// server, where the MTA trades send grants and received assertions.
	TokenURL  string
	Meta      meta.Store
	Resources resource.Store
	Discovery Discovery
	Mailbox   Mailbox
	// ClientID is this domain's MTA client ("mta@DOMAIN"); ClientKey signs
	// its client assertions; DPoPKey binds its tokens.
	ClientID  string
	ClientKey *federation.ClientKey
	DPoPKey   *dpop.Key
	// SendGrant issues the send grant of a message (authz.Server.IssueSendGrant
	// bound to ClientID): MTA.SendGrant, which the mailbox calls before the
	// send's transaction.
	SendGrant func(author, messageID string) (string, error)
	// Transport carries the MTA's requests to other domains and to this
	// domain's token endpoint; nil is federation.HTTPS over HTTP, which
	// must verify TLS. Tests run domains in one process with a
	// federation.InProcess.
	Transport federation.Transport
	HTTP      *http.Client
	// OwnAS, when set, is this domain's authorization server (its
	// Handler): the MTA's token requests at TokenURL (send grants and
	// received assertions traded for this domain's own assertions,
	// docs/PROTOCOL.md §10.5, §10.7) are served by it in process, the same
	// requests with the same proofs, without the network.
	OwnAS http.Handler
	Clock func() time.Time // default time.Now
	Log   *slog.Logger     // default slog.Default()
	// Horizon is how long a push keeps trying (default 5 days); pulls
	// carry their own (inbound.Config.PullHorizon). A job gives up only
	// after an attempt at or past it: the wait before the last retry is
	// cut short so that one attempt is made at the horizon.
	Horizon time.Duration
	// Backoff is the wait after a failed attempt (1 is the first);
	// default exponential from 30 s to 1 h with jitter.
	Backoff func(attempt int) time.Duration
	// Poll is how often Run looks for due jobs (default 0.5 s); Kick wakes
	// it at once.
	Poll  time.Duration
	Batch int           // jobs run at once per kind (default 16)
	Lease time.Duration // default 1 minute, renewed while the job runs
	// Node names this process among the nodes of the domain that share
	// the metadata store (pullmail serve --node; default the host name):
	// the holder of the jobs it claims and of its pull locks. It must be
	// unique among them and stay the same across restarts, since Run
	// hands back, when it starts, the jobs and locks held under it (its
	// previous run's) and no other node's.
	Node string
	// Staging, when set, keeps the bytes of pulls of resources of at least
	// StageAbove bytes (default DefaultStageAbove) as they arrive, so that
	// a pull cut by a restart, clean or not, resumes with Range where it
	// stopped instead of starting again (the server uses DATA/pulls). Nil:
	// a pull resumes only within one attempt.
	Staging    upload.Staging
	StageAbove int64
	// Metrics, when set, is where the MTA registers its metrics: queue
	// depth, retries, failures by reason, storage errors (metrics.go).
	Metrics prometheus.Registerer
	// SMTP is delivery to domains that take mail by SMTP (smtp.go); its
	// zero value pushes to every domain.
	SMTP SMTPConfig
}

// MTA runs push and pull jobs. It is safe for concurrent use.
type MTA struct {
	cfg      Config
	tokenURL string
	tr       federation.Transport
	own      federation.Transport // to this domain's token endpoint (tokenURL)
	kick     [len(kinds)]chan struct{}

	metrics  *metrics
	smtp     *smtpPool // open SMTP sessions, by destination
	scanOnce sync.Once // RunDue's scan of the queue (Run scans at each start)

	mu      sync.Mutex
	pulling map[resource.ID]*digestLock // resources being pulled (fetchOnce)
	// waiting are the queued jobs waiting out a retry, by peer: one success
	// with a peer makes its others due at once (wake). It is rebuilt from
	// the store when Run or RunDue starts.
	waiting map[string]map[int64]bool
}

// New checks cfg and returns an MTA.
func New(cfg Config) (*MTA, error) {
	if cfg.Domain == "" || cfg.PublicURL == "" || cfg.TokenURL == "" || cfg.Meta == nil || cfg.Resources == nil || cfg.Discovery == nil ||
		cfg.Mailbox == nil || cfg.ClientID == "" || cfg.ClientKey == nil || cfg.DPoPKey == nil || cfg.SendGrant == nil || (cfg.HTTP == nil && cfg.Transport == nil) {
		return nil, errors.New("mta: Domain, PublicURL, TokenURL, Meta, Resources, Discovery, Mailbox, ClientID, ClientKey, DPoPKey, SendGrant and HTTP or Transport are required")
	}
	if cfg.Transport == nil {
		cfg.Transport = federation.HTTPS{Client: cfg.HTTP}
	}
	var own federation.Transport = cfg.Transport
	if cfg.OwnAS != nil {
		u, err := url.Parse(cfg.TokenURL)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("mta: TokenURL %q is not a URL", cfg.TokenURL)
		}
		in := &federation.InProcess{}
		in.Handle(u.Host, cfg.OwnAS)
		own = in
	}
	cfg.Domain = strings.ToLower(cfg.Domain)
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Horizon <= 0 {
		cfg.Horizon = DefaultHorizon
	}
	if cfg.Backoff == nil {
		cfg.Backoff = Backoff
	}
	if cfg.Poll <= 0 {
		cfg.Poll = DefaultPoll
	}
	if cfg.Batch <= 0 {
		cfg.Batch = DefaultBatch
	}
	if cfg.Lease <= 0 {
		cfg.Lease = DefaultLease
	}
	if cfg.Node == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "localhost"
		}
		cfg.Node = host
	}
	if cfg.StageAbove <= 0 {
		cfg.StageAbove = DefaultStageAbove
	}
	m := &MTA{cfg: cfg, tokenURL: cfg.TokenURL, tr: cfg.Transport, own: own, pulling: map[resource.ID]*digestLock{},
		waiting: map[string]map[int64]bool{}}
	for i := range m.kick {
		m.kick[i] = make(chan struct{}, 1)
	}
	idle, conns := cfg.SMTP.IdleTimeout, cfg.SMTP.MaxConns
	if idle == 0 {
		idle = DefaultSMTPIdle
	}
	if conns <= 0 {
		conns = DefaultSMTPConns
	}
	m.smtp = newSMTPPool(idle, conns)
	var err error
	if m.metrics, err = newMetrics(cfg.Metrics, m); err != nil {
		return nil, fmt.Errorf("mta: registering metrics: %w", err)
	}
	return m, nil
}

// Backoff is the default backoff: 30 s doubling per attempt up to 1 h, each
// wait drawn uniformly from [d/2, d) so that retries spread out.
func Backoff(attempt int) time.Duration {
	d := 30 * time.Second
	for i := 1; i < attempt && d < time.Hour; i++ {
		d *= 2
	}
	d = min(d, time.Hour)
	return d/2 + rand.N(d/2)
}

// Copy is one copy of a sent message for one recipient domain: the To/Cc
// copy, or one Bcc recipient's.
type Copy struct {
	Domain string
	// Placeholder is the canonical copy as sent to that domain.
	Placeholder []byte
	// Recipients are the copy's recipients at that domain (for the
	// delivery-status notice).
	Recipients []string
}

// PushPayload is the payload of a push job.
type PushPayload struct {
	Author      string          `json:"author"`
	UserID      int64           `json:"user_id"` // the author's, owner of the sent row
	MessageRow  string          `json:"message_row"`
	MessageID   string          `json:"message_id"`
	Domain      string          `json:"domain"`
	Placeholder json.RawMessage `json:"placeholder"`
	Recipients  []string        `json:"recipients"`
	// Grant is the send grant (docs/PROTOCOL.md §10.5): only this
	// domain's MTA client can trade it, with its client key.
	Grant string `json:"grant,omitempty"`
	// Chain and Hop make the job a forward (QueueForward): the chain the
	// copy arrived with, and the new hop's header block.
	Chain []federation.ChainElement `json:"chain,omitempty"`
	Hop   json.RawMessage           `json:"hop,omitempty"`
	// Via, MX, TLS and Outcome are what the last attempt found, written
	// back into the job as it finishes, for the sender's delivery state
	// (Deliveries): how the domain takes mail (discovery.PeerKind), the
	// exchanger and its TLS ("verified", "unverified", "none"), and each
	// recipient's answer when an exchanger gave one.
	Via     string                      `json:"via,omitempty"`
	MX      string                      `json:"mx,omitempty"`
	TLS     string                      `json:"tls,omitempty"`
	Outcome map[string]RecipientOutcome `json:"outcome,omitempty"`
}

// RecipientOutcome is one recipient's end of an SMTP attempt.
type RecipientOutcome struct {
	// State is DeliveryDelivered (2xx), DeliveryFailed (5xx) or
	// DeliveryDeferred (4xx: retried, by a job of its own when the
	// exchanger took the message for others).
	State string `json:"state"`
	Reply string `json:"reply,omitempty"` // the exchanger's answer, "550 5.1.1 …"
}

// SendGrant signs the send grant of an author's message (docs/PROTOCOL.md
// §10.5), for QueueSend. The mailbox calls it before the send's
// transaction: no signing inside a write transaction.
func (m *MTA) SendGrant(author, messageID string) (string, error) {
	grant, err := m.cfg.SendGrant(author, messageID)
	if err != nil {
		return "", fmt.Errorf("mta: send grant for %s: %w", messageID, err)
	}
	return grant, nil
}

// QueueSend adds one push job per copy of sent, with its send grant
// (SendGrant), in tx: the mailbox calls it inside the send transaction. A
// copy already queued (same message row, domain and bytes) is not queued
// again.
func (m *MTA) QueueSend(ctx context.Context, tx meta.Tx, author, grant string, sent meta.Message, copies []Copy) error {
	if len(copies) == 0 {
		return nil
	}
	if grant == "" {
		return fmt.Errorf("mta: no send grant for %s", sent.MessageID)
	}
	now := m.cfg.Clock()
	for _, c := range copies {
		dom := strings.ToLower(c.Domain)
		sum := sha256.Sum256(c.Placeholder)
		p := PushPayload{Author: author, UserID: sent.UserID, MessageRow: sent.ID, MessageID: sent.MessageID,
			Domain: dom, Placeholder: json.RawMessage(c.Placeholder), Recipients: c.Recipients, Grant: grant}
		pb, err := json.Marshal(p)
		if err != nil {
			return fmt.Errorf("mta: push payload: %w", err)
		}
		key := "push:" + sent.ID + ":" + dom + ":" + hex.EncodeToString(sum[:8])
		_, err = tx.AddJob(ctx, meta.Job{Kind: JobPush, Key: key, Payload: pb, NextTry: now, Created: now,
			Updated: now, Expires: now.Add(m.cfg.Horizon)})
		if err != nil && !errors.Is(err, meta.ErrExists) {
			return fmt.Errorf("mta: queueing the push to %s: %w", dom, err)
		}
	}
	return nil
}

// scan reads the queue when Run or RunDue starts: it indexes the queued
// jobs by peer (waiting), and with recover it hands back the jobs and pull
// locks that this node's previous run held when it stopped (a crash, or a
// clean shutdown mid-attempt), whose leases would otherwise keep them idle
// until they end, and drops pull staging past its expiry. Other nodes' jobs
// are theirs: a node that died loses its jobs to the others only when
// their leases end (meta.JobQueue.ClaimJobs).
func (m *MTA) scan(ctx context.Context, recover bool) error {
	now := m.cfg.Clock()
	for _, kind := range kinds {
		jobs, err := m.cfg.Meta.Jobs(ctx, kind, 0)
		if err != nil {
			return err
		}
		for _, j := range jobs {
			if j.State == meta.JobQueued {
				m.await(peerOf(j), j.ID)
			}
		}
	}
	if !recover {
		return nil
	}
	n, err := m.cfg.Meta.ReleaseJobs(ctx, m.cfg.Node, now)
	if err != nil {
		return err
	}
	locks, err := m.cfg.Meta.UnlockAll(ctx, m.cfg.Node)
	if err != nil {
		return err
	}
	if n > 0 || locks > 0 {
		m.cfg.Log.Info("recovered the jobs of this node's previous run", "node", m.cfg.Node, "jobs", n, "pull_locks", locks)
	}
	if m.cfg.Staging != nil {
		if _, err := m.cfg.Staging.Expire(ctx, now); err != nil {
			return fmt.Errorf("expiring pull staging: %w", err)
		}
	}
	return nil
}

// peerOf is the domain a queued job talks to: a push's recipient domain, a
// pull's origin ("" when the payload does not say).
func peerOf(j meta.Job) string {
	var p struct {
		Domain string `json:"domain"`
		Origin string `json:"origin"`
	}
	json.Unmarshal(j.Payload, &p)
	if j.Kind == JobPull {
		return strings.ToLower(p.Origin)
	}
	return strings.ToLower(p.Domain)
}

// await records that job id waits out a retry with peer.
func (m *MTA) await(peer string, id int64) {
	if peer == "" {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.waiting[peer] == nil {
		m.waiting[peer] = map[int64]bool{}
	}
	m.waiting[peer][id] = true
}

// unwait forgets that jobs wait with peer.
func (m *MTA) unwait(peer string, ids ...int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, id := range ids {
		delete(m.waiting[peer], id)
	}
	if len(m.waiting[peer]) == 0 {
		delete(m.waiting, peer)
	}
}

// wake makes the jobs waiting out a retry with peer due at now, in tx (the
// transaction of a success with peer): the peer is back, and each of them
// would otherwise wait out its own delay, up to an hour. It returns the
// jobs woken.
func (m *MTA) wake(ctx context.Context, tx meta.Tx, peer string, now time.Time) ([]int64, error) {
	if peer == "" {
		return nil, nil
	}
	m.mu.Lock()
	var ids []int64
	for id := range m.waiting[peer] {
		ids = append(ids, id)
	}
	m.mu.Unlock()
	var woken []int64
	for _, id := range ids {
		j, err := tx.Job(ctx, id)
		if errors.Is(err, meta.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if j.State != meta.JobQueued || !j.NextTry.After(now) {
			continue
		}
		j.NextTry, j.Updated = now, now
		if err := tx.UpdateJob(ctx, j); err != nil {
			return nil, err
		}
		woken = append(woken, id)
	}
	return woken, nil
}

// Kick wakes Run to look for due jobs now (after a send commits).
func (m *MTA) Kick() {
	for _, c := range m.kick {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// kinds are the job kinds run, each by its own loop so that a long pull
// does not hold up pushes.
var kinds = [...]string{JobPush, JobPull}

// Run claims and runs due push and pull jobs until ctx ends, up to Batch
// of each kind at a time. A slot freed by a finished job is filled at once:
// a slow job (a large pull) does not hold up the others of its batch.
func (m *MTA) Run(ctx context.Context) {
	if err := m.scan(ctx, true); err != nil {
		m.cfg.Log.Error("recovering jobs", "err", err)
	}
	var wg sync.WaitGroup
	for i, kind := range kinds {
		wg.Go(func() { m.runKind(ctx, kind, m.kick[i]) })
	}
	wg.Wait()
	m.CloseIdle()
}

// CloseIdle closes the SMTP sessions kept open for the next message (Run
// does when it returns; after RunDue, whoever called it).
func (m *MTA) CloseIdle() { m.smtp.closeIdle() }

// runKind is Run's loop for one kind of job.
func (m *MTA) runKind(ctx context.Context, kind string, kick <-chan struct{}) {
	t := time.NewTicker(m.cfg.Poll)
	defer t.Stop()
	finished := make(chan struct{}, m.cfg.Batch)
	running := 0
	defer func() { // let the running jobs end (their context is ending too)
		for ; running > 0; running-- {
			<-finished
		}
	}()
	for {
		for running < m.cfg.Batch && ctx.Err() == nil {
			jobs, err := m.cfg.Meta.ClaimJobs(ctx, m.cfg.Node, kind, m.cfg.Clock(), m.cfg.Batch-running, m.cfg.Lease)
			if err != nil {
				if ctx.Err() == nil {
					m.cfg.Log.Error("mta: claiming jobs", "kind", kind, "err", err)
				}
				break
			}
			for _, j := range jobs {
				running++
				go func() {
					defer func() { finished <- struct{}{} }()
					m.runJob(ctx, j)
				}()
			}
			if len(jobs) == 0 {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-kick:
		case <-finished:
			running--
		}
	}
}

// RunDue runs the jobs of every kind due now, until none is due, and
// returns when they are finished.
func (m *MTA) RunDue(ctx context.Context) {
	m.scanOnce.Do(func() {
		if err := m.scan(ctx, false); err != nil {
			m.cfg.Log.Error("mta: reading the queue", "err", err)
		}
	})
	var wg sync.WaitGroup
	for _, kind := range kinds {
		wg.Go(func() { m.runDue(ctx, kind) })
	}
	wg.Wait()
}

// runDue claims the due jobs of a kind, a batch at a time, and runs each
// batch concurrently until none is due.
func (m *MTA) runDue(ctx context.Context, kind string) {
	for ctx.Err() == nil {
		jobs, err := m.cfg.Meta.ClaimJobs(ctx, m.cfg.Node, kind, m.cfg.Clock(), m.cfg.Batch, m.cfg.Lease)
		if err != nil {
			if ctx.Err() == nil {
				m.cfg.Log.Error("mta: claiming jobs", "kind", kind, "err", err)
			}
			return
		}
		if len(jobs) == 0 {
			return
		}
		var wg sync.WaitGroup
		for _, j := range jobs {
			wg.Go(func() { m.runJob(ctx, j) })
		}
		wg.Wait()
	}
}

// failure is an attempt's error, final or to be retried. reason is a
// final one's give-up reason (Reason*); storage marks a temporary failure
// of this domain's own storage.
type failure struct {
	err     error
	final   bool
	reason  string
	storage bool
}

func (f *failure) Error() string { return f.err.Error() }
func (f *failure) Unwrap() error { return f.err }

// final is a failure that no retry can mend: the job itself is at fault.
func final(err error) error { return &failure{err: err, final: true, reason: ReasonInvalid} }

// refused is the peer's permanent refusal (a 4xx but 408 and 429).
func refused(err error) error { return &failure{err: err, final: true, reason: ReasonRefused} }

func temporary(err error) error { return &failure{err: err} }

// storageError is a temporary failure of this domain's own storage.
func storageError(err error) error { return &failure{err: err, storage: true} }

func isFinal(err error) bool {
	var f *failure
	return errors.As(err, &f) && f.final
}

func isStorage(err error) bool {
	var f *failure
	return errors.As(err, &f) && f.storage
}

func (m *MTA) runJob(ctx context.Context, j meta.Job) {
	jctx, cancel := context.WithCancel(ctx)
	defer cancel()
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		m.renew(jctx, cancel, j)
	}()
	defer func() { cancel(); <-renewed }()
	var err error
	ctx = jctx
	switch j.Kind {
	case JobPush:
		err = m.runPush(ctx, j)
	case JobPull:
		err = m.runPull(ctx, j)
	}
	if ctx.Err() != nil {
		return // the lease ends and the job runs again
	}
	if isStorage(err) {
		m.metrics.storage.Inc()
	}
	if err != nil {
		m.cfg.Log.Warn("mta: job failed", "kind", j.Kind, "key", j.Key, "attempt", j.Attempts, "final", isFinal(err), "err", err)
	}
}

// renew extends j's lease every third of it until ctx ends, so that no
// other node takes over a job this one is still running (a pull of a
// gigabyte outlasts many leases); when the lease turns out lost (another
// node holds the job: this one stalled past its lease) it cancels the
// attempt. A renewal that fails otherwise (the database briefly away) is
// tried again at the next tick, while the lease may still run.
func (m *MTA) renew(ctx context.Context, cancel context.CancelFunc, j meta.Job) {
	t := time.NewTicker(m.cfg.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, err := m.cfg.Meta.RenewJob(ctx, j, m.cfg.Clock(), m.cfg.Lease)
		switch {
		case errors.Is(err, meta.ErrLeaseLost):
			if cur, rerr := m.cfg.Meta.Job(ctx, j.ID); ctx.Err() != nil ||
				rerr == nil && cur.Attempts == j.Attempts && cur.State != meta.JobRunning {
				return // this attempt finished it while we were renewing
			}
			m.cfg.Log.Warn("mta: lease lost, abandoning the attempt", "key", j.Key, "node", m.cfg.Node)
			cancel()
			return
		case err != nil && ctx.Err() == nil:
			m.cfg.Log.Warn("mta: renewing a lease", "key", j.Key, "err", err)
		}
	}
}

// outcome is what an attempt of a job comes to, decided once so that a
// push's notice and the job's state agree.
type outcome struct {
	err  error
	peer string // the domain the job talks to
	now  time.Time
	// next is when the job runs again if it does not give up: after the
	// backoff, but never after its horizon, so that the last attempt is
	// made at the horizon (docs/PROTOCOL.md §11.4).
	next   time.Time
	giveUp bool
	reason string // Reason*, when giveUp
	// payload, when set, replaces the job's payload (what the attempt
	// found, for the delivery state).
	payload []byte
}

// outcome decides what err, the end of an attempt of j with peer, does: a
// final error gives up; a temporary one gives up only once the job's
// horizon has passed, and queues it again otherwise.
func (m *MTA) outcome(j meta.Job, err error, peer string) outcome {
	now := m.cfg.Clock()
	o := outcome{err: err, peer: strings.ToLower(peer), now: now, next: now.Add(m.cfg.Backoff(j.Attempts))}
	if !j.Expires.IsZero() && o.next.After(j.Expires) {
		o.next = j.Expires
	}
	var f *failure
	switch {
	case err == nil:
	case errors.As(err, &f) && f.final:
		o.giveUp, o.reason = true, f.reason
	case !j.Expires.IsZero() && !now.Before(j.Expires):
		o.giveUp, o.reason = true, ReasonHorizon
	}
	return o
}

// finish ends an attempt of j in one transaction, as o says: done (and
// onDone, and the peer's waiting jobs woken), queued again at o.next, or
// failed (and onFail). It returns the state set, "" when j's lease was
// lost (then it changes nothing).
func (m *MTA) finish(ctx context.Context, j meta.Job, o outcome, onDone, onFail func(tx meta.Tx) error) (meta.JobState, error) {
	var state meta.JobState
	var woken []int64
	err := m.cfg.Meta.Update(ctx, func(tx meta.Tx) error {
		state, woken = "", nil
		cur, err := tx.Job(ctx, j.ID)
		if err != nil {
			return fmt.Errorf("re-reading job %d: %w", j.ID, err)
		}
		if cur.State != meta.JobRunning || cur.Attempts != j.Attempts {
			m.cfg.Log.Warn("mta: lease lost", "key", j.Key)
			return nil
		}
		cur.Updated = o.now
		if o.payload != nil {
			cur.Payload = o.payload
		}
		switch {
		case o.err == nil:
			cur.State, cur.LastError = meta.JobDone, ""
			if err := tx.UpdateJob(ctx, cur); err != nil {
				return err
			}
			if woken, err = m.wake(ctx, tx, o.peer, o.now); err != nil {
				return fmt.Errorf("waking the jobs for %s: %w", o.peer, err)
			}
			if onDone != nil {
				if err := onDone(tx); err != nil {
					return err
				}
			}
		case !o.giveUp:
			cur.State, cur.NextTry, cur.LastError = meta.JobQueued, o.next, o.err.Error()
			if err := tx.UpdateJob(ctx, cur); err != nil {
				return err
			}
		default:
			cur.State, cur.LastError = meta.JobFailed, o.err.Error()
			if err := tx.UpdateJob(ctx, cur); err != nil {
				return err
			}
			if onFail != nil {
				if err := onFail(tx); err != nil {
					return err
				}
			}
		}
		state = cur.State
		return nil
	})
	if err != nil {
		return "", storageError(err)
	}
	switch state {
	case meta.JobDone:
		m.unwait(o.peer, append(woken, j.ID)...)
		if len(woken) > 0 {
			m.cfg.Log.Info("mta: peer back, its queued jobs woken", "peer", o.peer, "jobs", len(woken))
			m.Kick()
		}
	case meta.JobQueued:
		m.await(o.peer, j.ID)
		m.metrics.retries.WithLabelValues(classOf(j)).Inc()
	case meta.JobFailed:
		m.unwait(o.peer, j.ID)
		m.metrics.failures.WithLabelValues(classOf(j), o.reason).Inc()
	}
	return state, nil
}
