package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/crypto/acme/autocert"

	"github.com/pullmail/pullmail/account"
	"github.com/pullmail/pullmail/apidoc"
	"github.com/pullmail/pullmail/atomicfile"
	"github.com/pullmail/pullmail/auth"
	"github.com/pullmail/pullmail/authz"
	"github.com/pullmail/pullmail/discovery"
	"github.com/pullmail/pullmail/dpop"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/federation"
	"github.com/pullmail/pullmail/imapd"
	"github.com/pullmail/pullmail/inbound"
	"github.com/pullmail/pullmail/jmap"
	"github.com/pullmail/pullmail/keys"
	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/mta"
	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/smtpd"
	"github.com/pullmail/pullmail/tlsca"
	"github.com/pullmail/pullmail/upload"
	"github.com/pullmail/pullmail/webui"
)

// Config configures one domain's server. Zero values are the defaults.
type Config struct {
	DataDir string // required
	// MetaURL and ResourcesURL name the stores (OpenBackends): "" for
	// sqlite:DATADIR/meta.db and file:DATADIR/resources, or
	// postgres://USER@HOST/DB?… and s3://BUCKET/PREFIX?endpoint=URL&region=R.
	MetaURL, ResourcesURL string
	Domain                string // required on first start; afterwards it must match
	Listen                string // host:port; default 127.0.0.1:8443
	// PublicURL is the server's external base URL: the OAuth issuer and
	// the base of every URL the server names (DPoP htu values among them).
	// Default: https://DOMAIN when listening on port 443, else
	// https://LISTEN-ADDRESS. With port 0, listen first and set it.
	PublicURL string

	// TLS: certificate files, or ACME, or (neither) a certificate from the
	// local CA in DataDir.
	TLSCert, TLSKey string
	ACME            bool
	ACMEEmail       string
	// Hosts are extra names for the local CA's certificate (the domain,
	// localhost and the listen address are always included).
	Hosts []string

	// EncryptAtRest encrypts resources with the key in KeyFile (default
	// DataDir/keys/resource.key, created if missing). Once a data directory
	// is encrypted it must always be opened with the key, and the reverse.
	EncryptAtRest bool
	KeyFile       string

	MaxUpload int64 // bytes; 0: no limit
	// DeviceInterval is the device grant's polling interval (default 5s).
	DeviceInterval time.Duration

	// Federation: DNS is the resolver for other domains' SRV records
	// (host:port; "" the system's), PeerCA a PEM file of extra CAs to trust
	// for their TLS, and AllowPrivatePeers lets peers live on loopback and
	// private addresses (tests, the sandbox; never in production).
	DNS               string
	PeerCA            string
	AllowPrivatePeers bool
	// RetryHorizon is how long the MTA keeps trying a delivery before it
	// gives up and tells the sender (default 5 days).
	RetryHorizon time.Duration
	// MetricsPublic serves /metrics to every peer; by default only to
	// loopback peers.
	MetricsPublic bool
	GCInterval    time.Duration // default 1h; < 0 disables the collector
	// GCGrace is the age past which a condemnation of garbage collection
	// is taken for a dead collector's and finished (mailbox.Service.
	// CollectGarbage); default 1h. No blob's time is trusted.
	GCGrace time.Duration

	// BodyTimeout bounds the time to receive a request body outside /api/
	// (the authorization server, federation, device grant, login form:
	// all reachable without credentials); default DefaultBodyTimeout. A
	// body late is answered 408 request_timeout and its connection closed.
	BodyTimeout time.Duration
	// BodyIdleTimeout bounds, under /api/ (authenticated first, home of
	// long uploads), the pause before each read of a body instead;
	// default DefaultBodyIdleTimeout.
	BodyIdleTimeout time.Duration
	// MaxBody bounds a request body outside /api/ (default
	// DefaultMaxBody); a larger one is answered 413 too_large.
	MaxBody int64
	// ReadyMinFree is the free space of the data directory's file system
	// below which /readyz fails (default DefaultReadyMinFree).
	ReadyMinFree uint64
	// Node names this server among the nodes of its domain that share
	// its stores (default: the host name; see ResolveNode): the holder of
	// the jobs and pull locks its MTA takes, its own temporary directory
	// in a shared resource directory, and what /healthz, /metrics
	// (pullmail_node_info) and the logs call it.
	Node string

	// SMTP is where the mail exchanger listens (host:port, port 25 in
	// production; package smtpd): mail from SMTP domains for this domain's
	// users. "" runs none. SMTPMaxSize bounds a message (default 1 GiB).
	SMTP        string
	SMTPMaxSize int64
	// Submission and Submissions are where mail clients submit (RFC 6409):
	// port 587 with STARTTLS, port 465 with implicit TLS; SASL PLAIN (the
	// user's password) and OAUTHBEARER (the domain's tokens). "": none.
	Submission, Submissions string
	// IMAP and IMAPStartTLS are where mail clients read the mailbox
	// (package imapd, RFC 9051): port 993 with implicit TLS, port 143 with
	// STARTTLS; the submission listeners' PLAIN and OAUTHBEARER. "": none.
	IMAP, IMAPStartTLS string
	// SMTPOutPort is the port the MTA dials on other domains' mail
	// exchangers: 25 (the default), but for tests and the sandbox.
	SMTPOutPort int
	// JobLease is how long a node's claim on a delivery or pull lasts
	// unrenewed: how soon the other nodes take over the work of a node
	// that died (default mta.DefaultLease, a minute).
	JobLease time.Duration

	Log   *slog.Logger
	Clock func() time.Time
}

// Server is one running domain.
type Server struct {
	cfg    Config
	Domain string
	Meta   meta.Store
	Store  resource.Store
	// Backends are the two stores above and what they are.
	Backends  *Backends
	Mailbox   *mailbox.Service
	Authz     *authz.Server
	MTAKey    *federation.ClientKey // the MTA's private_key_jwt key
	Discovery *discovery.Client
	STS       *discovery.STS // SMTP domains' MTA-STS policies, for the MTA
	MTA       *mta.MTA
	Keys      *keys.Set
	Registry  *prometheus.Registry
	chains    *prometheus.CounterVec // pullmail_chains_verified_total
	// Events wakes the mailbox's event streams on every commit that
	// advances a user's change log (docs/PROTOCOL.md §8.13).
	Events  *mailbox.Hub
	Uploads *upload.FS // resumable upload sessions, DATA/uploads
	log     *slog.Logger
	tls     *tls.Config
	handler http.Handler
	url     atomic.Value // string
	// smtpAddr is where the mail exchanger listens, once it does; subAddr
	// and subsAddr the submission listeners (STARTTLS, implicit TLS).
	smtpAddr, subAddr, subsAddr atomic.Value // string
	// imapAddr and imapSTAddr are the IMAP listeners (implicit TLS,
	// STARTTLS), once they listen.
	imapAddr, imapSTAddr atomic.Value // string
	authn                auth.Authenticator
	lock                 *os.File // DATA/lock, held while the server is open
	readiness
}

// Open opens the data directory and builds the server; it does not listen
// yet. Close releases what Open took.
func Open(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:8443"
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.GCInterval == 0 {
		cfg.GCInterval = time.Hour
	}
	if cfg.GCGrace == 0 {
		cfg.GCGrace = time.Hour
	}
	orDefault(&cfg.BodyTimeout, DefaultBodyTimeout)
	orDefault(&cfg.BodyIdleTimeout, DefaultBodyIdleTimeout)
	orDefault(&cfg.MaxBody, DefaultMaxBody)
	orDefault(&cfg.ReadyMinFree, DefaultReadyMinFree)
	node, err := ResolveNode(cfg.Node)
	if err != nil {
		return nil, err
	}
	cfg.Node = node
	// The lock first: nothing of the directory (the stores clear their
	// temporary files on opening) is touched while another server runs.
	lock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, lock: lock}
	// The damage counter is the resource store's; it exists once the
	// store does.
	var damaged func() uint64
	b, err := OpenBackends(ctx, cfg.DataDir, cfg.MetaURL, cfg.ResourcesURL, BackendOptions{
		EncryptAtRest: cfg.EncryptAtRest, KeyFile: cfg.KeyFile, Log: cfg.Log, Node: cfg.Node})
	if err != nil {
		lock.Close()
		return nil, err
	}
	s.Backends, s.Meta, s.Store = b, b.Meta, b.Resources
	if dc, ok := b.Resources.(interface{ DamageCount() uint64 }); ok {
		damaged = dc.DamageCount
	}
	if err := s.open(ctx, damaged); err != nil {
		b.Close()
		lock.Close()
		return nil, err
	}
	return s, nil
}

// orDefault sets a zero (or negative) setting to its default.
func orDefault[T int64 | uint64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

func (s *Server) open(ctx context.Context, damaged func() uint64) error {
	cfg := s.cfg
	domain, err := BindDomain(ctx, s.Meta, cfg.Domain)
	if err != nil {
		return err
	}
	s.Domain = domain
	s.log = cfg.Log.With("domain", domain, "node", cfg.Node)
	s.log.Info("backends", "meta", s.Backends.MetaURL.String(), "resources", s.Backends.ResourcesURL.String(),
		"encrypted", s.Backends.Encrypted)

	s.Registry = prometheus.NewRegistry()
	s.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pullmail_resource_damaged_total",
		Help: "Stored resources found damaged, each counted once until stored again or removed."},
		func() float64 {
			if damaged == nil {
				return 0
			}
			return float64(damaged())
		}))
	s.Registry.MustRegister(nodeInfo(cfg.Node))
	if s.Keys, err = OpenSigningKeys(cfg.DataDir, cfg.Clock); err != nil {
		return fmt.Errorf("signing keys: %w", err)
	}
	var peerCAs *x509.CertPool
	if cfg.PeerCA != "" {
		if peerCAs, err = tlsca.LoadPool(cfg.PeerCA); err != nil {
			return fmt.Errorf("peer CA: %w", err)
		}
	}
	s.Discovery = discovery.New(discovery.Config{Resolver: discovery.NewResolver(cfg.DNS), RootCAs: peerCAs,
		AllowPrivate: cfg.AllowPrivatePeers, Clock: cfg.Clock, Log: s.log})
	// Chains verified, by where: at a push (the receiver) and at the fetch
	// token (the origin's AS), once each per delivery (docs/PROTOCOL.md
	// §10.6).
	s.chains = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pullmail_chains_verified_total",
		Help: "Chains of signed envelopes verified, by where: push (received here) or fetch_token (this domain's mail pulled elsewhere)."},
		[]string{"where"})
	s.Registry.MustRegister(s.chains)
	if s.Authz, err = authz.New(authz.Config{Remote: s.Discovery, Issuer: s.PublicURL(), Domain: domain, Meta: s.Meta, Keys: s.Keys,
		Log: s.log, Clock: cfg.Clock, DeviceInterval: cfg.DeviceInterval,
		ChainVerified: func(int) { s.chains.WithLabelValues("fetch_token").Inc() }}); err != nil {
		return err
	}
	if s.MTAKey, err = federation.LoadOrCreateClientKey(filepath.Join(cfg.DataDir, "keys", "mta-client.json")); err != nil {
		return fmt.Errorf("the MTA's client key: %w", err)
	}
	if err := ensureBuiltinClients(ctx, s.Meta, s.PublicURL(), s.MTAClientID(), s.MTAKey.JWKS()); err != nil {
		return err
	}
	// Every writer of this process (mailbox, inbound, MTA) commits through
	// s.Meta: its commit callback wakes the users' event streams.
	s.Events = mailbox.NewHub()
	if n, ok := s.Meta.(meta.Notifier); ok {
		n.OnCommit(s.Events.Publish)
	}
	if s.Uploads, err = upload.NewFS(filepath.Join(cfg.DataDir, "uploads")); err != nil {
		return fmt.Errorf("upload sessions: %w", err)
	}
	// The mailbox is the one writer of mailbox rows: the MTA and the
	// inbound receiver write through it, and it queues through the MTA
	// (outbound), made next.
	s.Mailbox = mailbox.New(mailbox.Config{
		Domain: domain, Meta: s.Meta, Resources: s.Store, Log: s.log, Clock: cfg.Clock,
		MaxUpload: cfg.MaxUpload, Metrics: mailbox.NewMetrics(s.Registry), Outbound: outbound{s}, Deliveries: outbound{s},
		Staging: s.Uploads, Events: s.Events,
	})
	if err := s.openMTA(); err != nil {
		return err
	}
	// The AS's access tokens first, then admin-made tokens (pullmail token create).
	authn := auth.Chain{s.Authz.Authenticator(), &auth.Tokens{Meta: s.Meta, Clock: cfg.Clock}}
	s.authn = authn

	mux := http.NewServeMux()
	mux.Handle("/api/", auth.Middleware(authn, mailbox.NewHandler(s.Mailbox)))
	// JMAP (package jmap, docs/PROTOCOL.md §14): the same service and the
	// same tokens as the mailbox API.
	jh := auth.Middleware(authn, jmap.NewHandler(jmap.Config{Mailbox: s.Mailbox, URL: s.PublicURL(),
		Limits: jmap.Limits{MaxSizeUpload: cfg.MaxUpload}, Log: s.log}))
	mux.Handle("/jmap/", jh)
	mux.Handle(jmap.PathSession, jh)
	asHandler := s.Authz.Handler()
	for _, p := range []string{authz.PathJWKS, authz.PathAuthorize, authz.PathToken, authz.PathRevoke,
		authz.PathDeviceAuthz, authz.PathDevice} {
		mux.Handle(p, asHandler)
	}
	mux.Handle(federation.PathASMetadata, s.atPublicHost(asHandler))
	base := s.PublicURL()
	mux.Handle(discovery.PathMailbox, s.atPublicHost(discovery.MailboxHandler(discovery.MailboxMetadata{
		Domain: domain, URL: base, InboundEndpoint: base + federation.PathMessages, FetchEndpoint: base + federation.PathResources,
		MTAClientID: s.MTAClientID(), MTAJWKS: s.MTAKey.JWKS(),
	})))
	if err := s.federation(mux); err != nil {
		return err
	}
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	// A collector that cannot read the store (the MTA's queue depth while
	// the database is down) drops its own series, not the whole scrape:
	// the error counters matter most exactly then.
	metrics := promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		// Metrics describe the server's load and traffic: only for the
		// machine itself (a scraper on loopback) unless made public.
		if !cfg.MetricsPublic && !fromLoopback(r) {
			errs.Respond(w, r, s.log, errs.E(errs.NotFound, "no_route", "no such endpoint: %s %s", r.Method, r.URL.Path))
			return
		}
		metrics.ServeHTTP(w, r)
	})
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(apidoc.OpenAPI)
	})
	// The webmail (docs/PROTOCOL.md §8.15): /webmail/, and / and /webmail
	// redirect there.
	web := webui.Handler()
	mux.Handle(webui.Prefix, web)
	mux.Handle("/webmail", web)
	mux.Handle("GET /{$}", web)
	mux.Handle("GET "+webui.Favicon, web)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		errs.Respond(w, r, s.log, errs.E(errs.NotFound, "no_route", "no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	s.handler = s.observe(s.hygiene(mux))
	return nil
}

// SigningKeyLifetime is the longest life of anything the authorization
// server signs (a send grant lives for the delivery retry horizon, 5 days),
// plus a margin: a retired key keeps verifying that long. Every process
// that opens or rotates the key file uses it (keys.Options).
const SigningKeyLifetime = 5*24*time.Hour + time.Hour

// OpenSigningKeys opens the authorization server's key set in DIR/keys.
func OpenSigningKeys(dir string, clock func() time.Time) (*keys.Set, error) {
	return keys.Open(filepath.Join(dir, "keys", "signing.json"), keys.Options{MaxTokenLifetime: SigningKeyLifetime, Clock: clock})
}

// Built-in clients the server registers itself (docs/PROTOCOL.md §10.1).
const (
	CLIClientID     = "pullmail-cli" // 'pullmail login' (device grant)
	WebmailClientID = "webmail"      // the webmail (Authorization Code + PKCE)
	WebmailCallback = "/webmail/callback"
)

// MTAClientID is the client id of this domain's MTA: "mta@DOMAIN".
func (s *Server) MTAClientID() string { return "mta@" + s.Domain }

// ensureBuiltinClients registers the clients that ship with the server, and
// re-registers one whose redirect URI or keys changed (a new public URL, a
// replaced key file).
func ensureBuiltinClients(ctx context.Context, st meta.Store, publicURL, mtaID string, mtaJWKS []byte) error {
	want := []meta.Client{
		{ID: CLIClientID, Name: "pullmail command line", Public: true},
		{ID: WebmailClientID, Name: "Pullmail webmail", Public: true, RedirectURIs: []string{publicURL + WebmailCallback}},
		{ID: mtaID, Name: "this domain's MTA", JWKS: mtaJWKS},
	}
	return st.Update(ctx, func(tx meta.Tx) error {
		for _, c := range want {
			cur, err := tx.Client(ctx, c.ID)
			if err == nil && cur.Public == c.Public && slices.Equal(cur.RedirectURIs, c.RedirectURIs) && string(cur.JWKS) == string(c.JWKS) {
				continue
			}
			if err == nil {
				if err := tx.DeleteClient(ctx, c.ID); err != nil {
					return err
				}
			}
			if err := tx.AddClient(ctx, c); err != nil {
				return err
			}
		}
		return nil
	})
}

// openMTA makes this domain's MTA: its DPoP key (DATA/keys/mta-dpop.json),
// an HTTP client that trusts the system's CAs, the peer CAs and this
// server's own local CA, and its authorization server: the send grants,
// and the token requests of the MTA served in process (mta.Config.OwnAS).
func (s *Server) openMTA() error {
	dk, err := loadOrCreateDPoPKey(filepath.Join(s.cfg.DataDir, "keys", "mta-dpop.json"))
	if err != nil {
		return fmt.Errorf("the MTA's DPoP key: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	for _, extra := range []string{s.cfg.PeerCA, filepath.Join(s.cfg.DataDir, "ca.pem")} {
		if b, err := os.ReadFile(extra); err == nil && extra != "" {
			pool.AppendCertsFromPEM(b)
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	tr.ForceAttemptHTTP2 = false // see client.New: HTTP/1.1 moves large bodies faster
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	// The MTA runs up to mta.DefaultBatch pushes and as many pulls at once,
	// mostly to a few domains: with the default two idle connections per
	// host, every request beyond those paid a new TLS handshake (CPU
	// profiles of pullmail bench, workload 4).
	tr.MaxIdleConnsPerHost = 2 * mta.DefaultBatch
	// Pulls of large resources stage their bytes in DATA/pulls, so that a
	// restart resumes them with Range instead of fetching them again.
	pulls, err := upload.NewFS(filepath.Join(s.cfg.DataDir, "pulls"))
	if err != nil {
		return fmt.Errorf("the MTA's pull staging: %w", err)
	}
	id := s.MTAClientID()
	// DKIM keys (pullmail dkim makes them): without, mail to SMTP
	// domains goes unsigned, and doctor says so.
	dk2, err := mta.LoadDKIM(filepath.Join(s.cfg.DataDir, "keys"))
	if err != nil {
		return err
	}
	if len(dk2) == 0 {
		s.log.Warn("no DKIM keys: mail to SMTP domains goes unsigned (pullmail dkim --data DIR makes them)")
	}
	// MTA-STS policies (RFC 8461) of the SMTP domains mail goes to,
	// fetched with the MTA's resolver and verified against its roots.
	s.STS = discovery.NewSTS(discovery.STSConfig{Resolver: discovery.NewResolver(s.cfg.DNS), RootCAs: pool,
		AllowPrivate: s.cfg.AllowPrivatePeers, Clock: s.cfg.Clock, Log: s.log})
	s.MTA, err = mta.New(mta.Config{
		Domain: s.Domain, PublicURL: s.PublicURL(), Meta: s.Meta, Resources: s.Store, Discovery: s.Discovery,
		TokenURL: s.PublicURL() + authz.PathToken,
		Mailbox:  s.Mailbox, ClientID: id, ClientKey: s.MTAKey, DPoPKey: dk, HTTP: &http.Client{Transport: tr},
		OwnAS:     s.Authz.Handler(), // this domain's assertions are had in process
		SendGrant: func(author, msgid string) (string, error) { return s.Authz.IssueSendGrant(author, id, msgid) },
		Clock:     s.cfg.Clock, Log: s.log, Horizon: s.cfg.RetryHorizon,
		Metrics: s.Registry, Staging: pulls, Node: s.cfg.Node, Lease: s.cfg.JobLease,
		SMTP: mta.SMTPConfig{Peers: s.Discovery.Peer, Resolver: discovery.NewResolver(s.cfg.DNS), Port: s.cfg.SMTPOutPort,
			RootCAs: pool, DKIM: dk2, AllowPrivate: s.cfg.AllowPrivatePeers, STS: s.STS.Policy},
	})
	return err
}

// loadOrCreateDPoPKey reads a DPoP key (mode 0600) or creates it.
func loadOrCreateDPoPKey(path string) (*dpop.Key, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return dpop.ParseKey(b)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		// Unreadable (permissions, a directory in its place): making a new
		// key would only meet the old file again, forever.
		return nil, err
	}
	k, err := dpop.NewKey()
	if err != nil {
		return nil, err
	}
	if b, err = k.MarshalJSON(); err != nil {
		return nil, err
	}
	if err := atomicfile.Create(path, b, 0o600); atomicfile.IsExist(err) {
		return loadOrCreateDPoPKey(path) // another process made it first
	} else if err != nil {
		return nil, err
	}
	return k, nil
}

// The mailbox service writes the rows that the MTA and the inbound
// receiver decide.
var (
	_ mta.Mailbox     = (*mailbox.Service)(nil)
	_ inbound.Mailbox = (*mailbox.Service)(nil)
)

// outbound hands the mailbox's copies for other domains to the MTA. It
// reads s.MTA when called: the MTA is made after the mailbox, which it
// writes through, and both before the server serves.
type outbound struct{ s *Server }

// SendGrant signs a message's send grant, before the send's transaction
// (mailbox.Outbound).
func (o outbound) SendGrant(_ context.Context, author, messageID string) (string, error) {
	return o.s.MTA.SendGrant(author, messageID)
}

func (o outbound) QueueSend(ctx context.Context, tx meta.Tx, author, grant string, sent meta.Message, copies []mailbox.RemoteCopy) error {
	cs := make([]mta.Copy, len(copies))
	for i, c := range copies {
		cs[i] = mta.Copy{Domain: c.Domain, Placeholder: c.Placeholder, Recipients: c.Recipients}
	}
	if err := o.s.MTA.QueueSend(ctx, tx, author, grant, sent, cs); err != nil {
		return err
	}
	o.s.MTA.Kick()
	return nil
}

// Deliveries reads a sent message's remote delivery state from the MTA's
// push jobs (mailbox.Deliveries).
func (o outbound) Deliveries(ctx context.Context, sent meta.Message) ([]mailbox.Delivery, error) {
	ds, err := mta.Deliveries(ctx, o.s.Meta, sent.ID)
	if err != nil {
		return nil, err
	}
	out := make([]mailbox.Delivery, len(ds))
	for i, d := range ds {
		out[i] = mailbox.Delivery{Recipient: d.Recipient, Domain: d.Domain, Via: d.Via, State: d.State, Reply: d.Reply,
			Code: d.Code, MX: d.MX, TLS: d.TLS, Updated: d.Updated.UTC()}
		if !d.NextRetry.IsZero() {
			t := d.NextRetry.UTC()
			out[i].NextRetry = &t
		}
	}
	return out, nil
}

// QueueForward hands a chain forward's copies to the MTA (mailbox.Forwarder).
func (o outbound) QueueForward(ctx context.Context, tx meta.Tx, forwarder string, record meta.Message, hop mailbox.ForwardHop, copies []mailbox.ForwardCopy) error {
	hdr, err := mta.Hop(hop).Header()
	if err != nil {
		return fmt.Errorf("forward hop: %w", err)
	}
	fs := make([]mta.Forward, len(copies))
	for i, c := range copies {
		fs[i] = mta.Forward{Domain: c.Domain, Placeholder: c.Placeholder, Chain: c.Chain, Hop: hdr, Recipients: c.Recipients}
	}
	if err := o.s.MTA.QueueForward(ctx, tx, forwarder, record, fs); err != nil {
		return err
	}
	o.s.MTA.Kick()
	return nil
}

// federation mounts the receiving side of federation (docs/PROTOCOL.md
// §11.2, §11.3): pushes from other domains' MTAs, and their pulls of this
// domain's resources.
func (s *Server) federation(mux *http.ServeMux) error {
	base := s.PublicURL()
	proofs := &dpop.Verifier{Replay: s.Meta, Clock: s.cfg.Clock}
	recv, err := inbound.NewReceiver(inbound.Config{Domain: s.Domain, MailboxURL: base, Meta: s.Meta, Mailbox: s.Mailbox,
		Resources: s.Store, Discovery: s.Discovery, DPoP: proofs, Clock: s.cfg.Clock, Log: s.log, Accepted: s.MTA.Kick,
		PullHorizon: s.cfg.RetryHorizon, ChainVerified: func(int) { s.chains.WithLabelValues("push").Inc() }})
	if err != nil {
		return fmt.Errorf("inbound: %w", err)
	}
	served := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pullmail_origin_served_total",
		Help: "Resources served to other domains' pulls, by recipient domain."}, []string{"domain"})
	s.Registry.MustRegister(served)
	origin, err := inbound.NewOrigin(inbound.OriginConfig{Issuer: base, FetchURL: base + federation.PathResources, Meta: s.Meta,
		Resources: s.Store, Keys: s.Keys, DPoP: proofs, Clock: s.cfg.Clock, Log: s.log, Served: func(d string) { served.WithLabelValues(d).Inc() }})
	if err != nil {
		return fmt.Errorf("origin: %w", err)
	}
	mux.Handle(federation.PathMessages, recv.Handler())
	mux.Handle(federation.PathResources+"/", origin.Handler())
	return nil
}

// PublicURL is the server's external base URL (Config.PublicURL or its
// default).
func (s *Server) PublicURL() string {
	if s.cfg.PublicURL != "" {
		return strings.TrimRight(s.cfg.PublicURL, "/")
	}
	host, port, err := net.SplitHostPort(s.cfg.Listen)
	if err != nil || port == "443" {
		return "https://" + s.Domain
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = s.Domain
	}
	return "https://" + net.JoinHostPort(host, port)
}

// Handler is the server's whole HTTP handler (for tests with httptest).
func (s *Server) Handler() http.Handler { return s.handler }

// URL is the base URL the server listens on, once Serve has started.
func (s *Server) URL() string {
	u, _ := s.url.Load().(string)
	return u
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if _, err := s.Meta.Cursor(ctx); err != nil {
		errs.Respond(w, r, s.log, errs.Wrap(err, errs.Temporary, "unhealthy", "metadata store unavailable"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(health{Status: "ok", Node: s.cfg.Node})
}

// atPublicHost answers a GET of a discovery document (docs/PROTOCOL.md
// §11.1) reached under one of the node's own names (Config.Hosts, --host),
// when that is not the public URL's host, with one redirect to the same
// path at the public URL: the redirect service of seed 004 Note 1, built
// in. So each node of a domain can be an SRV target of its own, n1.D and
// n2.D at equal priority (other domains fall over from one to the next),
// while all of them serve the one issuer, https://D, that the documents
// must name exactly. Any other name is served as before: a reverse proxy
// that rewrites Host to its upstream's keeps working.
func (s *Server) atPublicHost(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			host, _, err := net.SplitHostPort(r.Host)
			if err != nil {
				host = r.Host
			}
			host = strings.ToLower(strings.TrimSuffix(host, "."))
			pub, err := url.Parse(s.PublicURL())
			if err == nil && host != strings.ToLower(pub.Hostname()) && slices.ContainsFunc(s.cfg.Hosts, func(n string) bool {
				return strings.EqualFold(strings.TrimSuffix(n, "."), host)
			}) {
				http.Redirect(w, r, s.PublicURL()+r.URL.Path, http.StatusFound)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// health is the answer of /healthz (apidoc's Health): the node answering is
// named so that an operator (pullmail doctor) can tell which of a domain's
// nodes a load balancer or an SRV target reached.
type health struct {
	Status string `json:"status"`
	Node   string `json:"node,omitempty"`
}

// Node is the name of this server among its domain's nodes (Config.Node).
func (s *Server) Node() string { return s.cfg.Node }

// TLSConfig returns the server's TLS configuration, building it on first use.
func (s *Server) TLSConfig(listenHost string) (*tls.Config, error) {
	if s.tls != nil {
		return s.tls, nil
	}
	cfg := s.cfg
	var tc *tls.Config
	switch {
	case cfg.ACME:
		m := &autocert.Manager{
			Prompt:     autocert.AcceptTOS,
			HostPolicy: autocert.HostWhitelist(append([]string{s.Domain}, cfg.Hosts...)...),
			Cache:      autocert.DirCache(filepath.Join(cfg.DataDir, "acme")),
			Email:      cfg.ACMEEmail,
		}
		tc = m.TLSConfig()
	case cfg.TLSCert != "" || cfg.TLSKey != "":
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("loading TLS certificate: %w", err)
		}
		tc = &tls.Config{Certificates: []tls.Certificate{cert}}
	default:
		ca, err := tlsca.LoadOrCreate(cfg.DataDir)
		if err != nil {
			return nil, fmt.Errorf("local CA: %w", err)
		}
		hosts := append([]string{s.Domain, "localhost", "127.0.0.1", "::1"}, cfg.Hosts...)
		if listenHost != "" {
			hosts = append(hosts, listenHost)
		}
		// The CA's config renews the certificate before it expires, so a
		// long-running server never serves a stale one.
		if tc, err = ca.TLSConfig(hosts); err != nil {
			return nil, fmt.Errorf("issuing a certificate: %w", err)
		}
	}
	tc.MinVersion = tls.VersionTLS12
	tc.CipherSuites = TLS12Suites
	s.tls = tc
	return tc, nil
}

// TLS12Suites are the cipher suites offered with TLS 1.2 in every TLS mode:
// ECDHE with an AEAD only (AES-GCM, ChaCha20-Poly1305), no CBC, whose
// MAC-then-encrypt has a long history of padding oracles (Lucky13). TLS 1.3
// suites are all AEAD and not configurable.
var TLS12Suites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// Serve listens on cfg.Listen and serves HTTPS until ctx is done, then shuts
// down gracefully: it stops accepting, lets requests in flight finish (up to
// 30 seconds), and returns. ready, if not nil, is called with the base URL
// once the listener is open.
func (s *Server) Serve(ctx context.Context, ready func(url string)) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", s.cfg.Listen, err)
	}
	return s.ServeListener(ctx, ln, ready)
}

// ServeListener is Serve on an open listener, which it closes.
func (s *Server) ServeListener(ctx context.Context, ln net.Listener, ready func(url string)) error {
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	tc, err := s.TLSConfig(host)
	if err != nil {
		ln.Close()
		return err
	}
	srv := &http.Server{
		Handler:           s.handler,
		TLSConfig:         tc,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		// Go's HTTP/2 defaults (1 MiB of flow-control window) throttle
		// browsers' large uploads even on loopback; 4 MiB per stream
		// keeps the memory an upload may pin small (docs/BENCHMARKS.md).
		HTTP2:       &http.HTTP2Config{MaxReceiveBufferPerConnection: 8 << 20, MaxReceiveBufferPerStream: 4 << 20},
		ErrorLog:    slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	url := "https://" + net.JoinHostPort(host, port)
	s.url.Store(url)
	s.log.Info("serving", "url", url, "data", s.cfg.DataDir)

	gcCtx, stopGC := context.WithCancel(ctx)
	defer stopGC()
	if s.cfg.GCInterval > 0 {
		go s.collectLoop(gcCtx)
	}
	if s.MTA != nil {
		go s.MTA.Run(gcCtx)
	}
	go s.Mailbox.RunIndexer(gcCtx, time.Minute) // search (mailbox/search.go)
	if s.cfg.SMTP != "" {
		mx, err := s.startSMTP(tc)
		if err != nil {
			ln.Close()
			return err
		}
		defer mx.Close()
	}
	for _, l := range []struct {
		addr     string
		implicit bool
		store    *atomic.Value
	}{{s.cfg.Submission, false, &s.subAddr}, {s.cfg.Submissions, true, &s.subsAddr}} {
		if l.addr == "" {
			continue
		}
		sub, err := s.startSubmission(tc, l.addr, l.implicit, l.store)
		if err != nil {
			ln.Close()
			return err
		}
		defer sub.Close()
	}
	for _, l := range []struct {
		addr     string
		implicit bool
		store    *atomic.Value
	}{{s.cfg.IMAP, true, &s.imapAddr}, {s.cfg.IMAPStartTLS, false, &s.imapSTAddr}} {
		if l.addr == "" {
			continue
		}
		is, err := s.startIMAP(gcCtx, tc, l.addr, l.implicit, l.store)
		if err != nil {
			ln.Close()
			return err
		}
		defer is.Close()
	}
	// Event streams never end by themselves: shutting down ends them.
	srv.RegisterOnShutdown(s.Events.Close)
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	if ready != nil {
		ready(url)
	}
	select {
	case err := <-errc:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	s.log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
		return fmt.Errorf("shutting down: %w", err)
	}
	return nil
}

func (s *Server) collectLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.GCInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// The sweep first: what it purges is garbage at once.
			if n, err := s.Mailbox.SweepTrash(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("trash sweep failed", "err", err)
			} else if n > 0 {
				s.log.Info("trash swept", "purged", n)
			}
			if _, err := s.Mailbox.CollectGarbage(ctx, s.cfg.GCGrace); err != nil && ctx.Err() == nil {
				s.log.Error("garbage collection failed", "err", err)
			}
		}
	}
}

// fromLoopback reports whether the request's peer is on this machine.
func fromLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Close releases the stores, then the data directory's lock.
func (s *Server) Close() error {
	err := s.Backends.Close()
	s.lock.Close()
	return err
}

// observe gives every request an id (answered as X-Request-ID, carried in
// the context for errs.Respond), logs the request and counts it in the
// metrics: every answer by status, and the server's own failures (5xx:
// internal, out of storage, unavailable) by their JSON code, so that an
// operator can alert on insufficient_storage apart from the rest.
func (s *Server) observe(next http.Handler) http.Handler {
	reqs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pullmail_http_requests_total", Help: "HTTP requests by method and status."}, []string{"method", "code"})
	dur := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "pullmail_http_request_duration_seconds", Help: "HTTP request durations.", Buckets: prometheus.DefBuckets}, []string{"method"})
	failures := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pullmail_http_errors_total",
		Help: "HTTP answers of status 500 or more, by their JSON error code (unknown when the body has none)."}, []string{"code"})
	s.Registry.MustRegister(reqs, dur, failures)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := requestID(r)
		w.Header().Set("X-Request-ID", id)
		r = r.WithContext(errs.WithRequestID(r.Context(), id))
		rw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(rw, r)
		d := time.Since(start)
		reqs.WithLabelValues(r.Method, strconv.Itoa(rw.code)).Inc()
		dur.WithLabelValues(r.Method).Observe(d.Seconds())
		if rw.code >= 500 {
			failures.WithLabelValues(rw.errorCode()).Inc()
		}
		level := slog.LevelDebug
		if rw.code >= 500 {
			level = slog.LevelError
		} else if r.URL.Path != "/healthz" && r.URL.Path != "/metrics" {
			level = slog.LevelInfo
		}
		attrs := []any{"req", id, "method", r.Method, "path", r.URL.Path, "status", rw.code,
			"bytes", rw.n, "dur", d.Round(time.Microsecond), "peer", r.RemoteAddr}
		if rw.code >= 500 && rw.cause != nil {
			// The cause that errs.WriteHTTP recorded: the client saw only
			// "internal error", the operator needs the reason.
			attrs = append(attrs, "code", rw.errorCode(), "err", rw.cause)
		}
		s.log.Log(r.Context(), level, "http", attrs...)
	})
}

type statusWriter struct {
	http.ResponseWriter
	code  int
	n     int64
	wrote bool
	head  []byte // the start of a 5xx answer's body, for its error code
	cause error  // what errs.WriteHTTP answered (errs.CauseRecorder)
}

// RecordCause implements errs.CauseRecorder.
func (w *statusWriter) RecordCause(err error) { w.cause = err }

// errorCode is the JSON error code of a 5xx answer, "unknown" if its body
// has none.
func (w *statusWriter) errorCode() string {
	var b errs.Body
	if json.Unmarshal(w.head, &b) != nil || b.Error.Code == "" {
		return "unknown"
	}
	return b.Error.Code
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	w.wrote = true
	if w.code >= 500 && len(w.head) < 1024 {
		w.head = append(w.head, p[:min(len(p), 1024-len(w.head))]...)
	}
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer (flush,
// deadlines).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// startSMTP starts the mail exchanger on cfg.SMTP, with the HTTPS server's
// certificate for STARTTLS.
func (s *Server) startSMTP(tc *tls.Config) (*smtpd.Server, error) {
	l, err := net.Listen("tcp", s.cfg.SMTP)
	if err != nil {
		return nil, fmt.Errorf("listening for SMTP on %s: %w", s.cfg.SMTP, err)
	}
	stc := tc.Clone()
	stc.NextProtos = nil
	mx := smtpd.New(smtpd.Config{Domain: s.Domain, TLS: stc, Users: s.Meta, Mailbox: s.Mailbox, Resources: s.Store,
		MaxSize: s.cfg.SMTPMaxSize, Resolver: discovery.NewResolver(s.cfg.DNS), Log: s.log, Clock: s.cfg.Clock})
	s.smtpAddr.Store(l.Addr().String())
	s.log.Info("smtp listening", "addr", l.Addr().String())
	go func() {
		if err := mx.Serve(l); err != nil {
			s.log.Error("smtp server stopped", "err", err)
		}
	}()
	return mx, nil
}

// SMTPAddr is the address the mail exchanger listens on ("" if none yet).
func (s *Server) SMTPAddr() string {
	a, _ := s.smtpAddr.Load().(string)
	return a
}

// startSubmission starts a submission listener: STARTTLS, or implicit TLS
// (RFC 8314) when implicit.
func (s *Server) startSubmission(tc *tls.Config, addr string, implicit bool, store *atomic.Value) (*smtpd.Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening for submission on %s: %w", addr, err)
	}
	stc := tc.Clone()
	stc.NextProtos = nil
	store.Store(l.Addr().String())
	if implicit {
		l = tls.NewListener(smtpd.CloseOnWriteError(l), stc)
	}
	sub := &smtpd.Submission{Password: s.checkPassword, Token: s.checkToken,
		Mailbox: s.Mailbox,
	}
	srv := smtpd.New(smtpd.Config{Domain: s.Domain, TLS: stc, Users: s.Meta, Mailbox: s.Mailbox, Resources: s.Store,
		MaxSize: s.cfg.SMTPMaxSize, Log: s.log.With("listener", "submission"), Clock: s.cfg.Clock, Submission: sub})
	s.log.Info("submission listening", "addr", l.Addr().String(), "implicit_tls", implicit)
	go func() {
		if err := srv.Serve(l); err != nil {
			s.log.Error("submission server stopped", "err", err)
		}
	}()
	return srv, nil
}

// checkPassword is the one password check of the mail listeners (submission
// and IMAP: SASL PLAIN, LOGIN): the user's address and password.
func (s *Server) checkPassword(ctx context.Context, address, password string) (auth.Principal, error) {
	addr, err := account.NormalizeAddress(address)
	if err != nil {
		return auth.Principal{}, err
	}
	u, err := s.Meta.UserByAddress(ctx, addr)
	if err != nil {
		return auth.Principal{}, err
	}
	if ok, err := account.CheckPassword(u.PasswordHash, password); err != nil || !ok {
		return auth.Principal{}, errors.New("wrong password")
	}
	return auth.Principal{UserID: u.ID, Address: u.Address}, nil
}

// checkToken is the one token check of the mail listeners (SASL
// OAUTHBEARER, RFC 7628): one of the domain's access tokens, checked as the
// mailbox API checks it.
func (s *Server) checkToken(ctx context.Context, token string) (auth.Principal, error) {
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, s.PublicURL()+"/api/v1/messages", nil)
	if err != nil {
		return auth.Principal{}, err
	}
	r.Header.Set("Authorization", "Bearer "+token)
	return s.authn.Authenticate(ctx, r)
}

// startIMAP starts an IMAP listener (package imapd): implicit TLS, or
// STARTTLS when not implicit; the same password and token checks as
// submission.
func (s *Server) startIMAP(ctx context.Context, tc *tls.Config, addr string, implicit bool, store *atomic.Value) (*imapd.Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening for IMAP on %s: %w", addr, err)
	}
	itc := tc.Clone()
	itc.NextProtos = []string{"imap"}
	store.Store(l.Addr().String())
	if implicit {
		l = tls.NewListener(l, itc)
	}
	srv := imapd.New(ctx, imapd.Config{Mailbox: s.Mailbox, Password: s.checkPassword, Token: s.checkToken,
		TLS: itc, Log: s.log.With("listener", "imap")})
	s.log.Info("imap listening", "addr", l.Addr().String(), "implicit_tls", implicit)
	go func() {
		if err := srv.Serve(l); err != nil {
			s.log.Error("imap server stopped", "err", err)
		}
	}()
	return srv, nil
}

// IMAPAddrs are the IMAP listeners' addresses ("" if none): implicit TLS
// and STARTTLS.
func (s *Server) IMAPAddrs() (implicit, starttls string) {
	a, _ := s.imapAddr.Load().(string)
	b, _ := s.imapSTAddr.Load().(string)
	return a, b
}

// SubmissionAddrs are the submission listeners' addresses ("" if none):
// STARTTLS and implicit TLS.
func (s *Server) SubmissionAddrs() (starttls, implicit string) {
	a, _ := s.subAddr.Load().(string)
	b, _ := s.subsAddr.Load().(string)
	return a, b
}
