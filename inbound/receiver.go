package inbound

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/mail"
	"strings"
	"time"

	"github.com/pullmail/pullmail/account"
	"github.com/pullmail/pullmail/discovery"
	"github.com/pullmail/pullmail/dpop"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/federation"
	"github.com/pullmail/pullmail/keys"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
)

// Discovery is what the Receiver needs to know of the sender's domain;
// *discovery.Client implements it.
type Discovery interface {
	// Authority is the domain's authorization server: its issuer and JWKS.
	Authority(ctx context.Context, domain string) (discovery.Authority, error)
	// Mailbox is the domain's mailbox metadata: its MTA's client_id.
	Mailbox(ctx context.Context, domain string) (discovery.Mailbox, error)
	// RefreshKeys refetches the domain's JWKS (rate-limited by the
	// implementation) when a signature does not verify.
	RefreshKeys(ctx context.Context, domain string) (discovery.Authority, error)
}

var _ Discovery = (*discovery.Client)(nil)

// Mailbox stores what a push delivers: the Receiver decides whether to
// accept it, the mailbox writes the copies (*mailbox.Service, the one
// writer of mailbox rows, implements it).
type Mailbox interface {
	// Receive stores, in tx, an inbox copy of msg for each of recipients
	// (this domain's, normalized) with the envelope as pushed, and applies
	// their automatic forwarding rules (docs/PROTOCOL.md §12.6) in the same
	// transaction. It returns every copy made for this domain's users,
	// those the rules made by reference included: the pull completes them
	// all. A recipient without an account is refused (unknown_recipient)
	// before anything is written; its other errors abort the push, and the
	// sender retries.
	Receive(ctx context.Context, tx meta.Tx, recipients []string, msg meta.Message, envelope []byte) ([]meta.Message, error)
}

// Defaults and limits of the Receiver.
const (
	// MaxAssertionLife is the longest exp - iat an assertion may have
	// (docs/PROTOCOL.md §11.2 item 3).
	MaxAssertionLife = 10 * time.Minute
	// Skew is how far in the future iat and nbf may be.
	Skew = 60 * time.Second
	// DefaultPullHorizon is how long the queued pull may keep trying.
	DefaultPullHorizon = 5 * 24 * time.Hour
)

// Config configures a Receiver.
type Config struct {
	// Domain is this domain: the only audience accepted.
	Domain string
	// MailboxURL is this mailbox's external base URL, e.g.
	// "https://mbx.b.test": the DPoP htu is MailboxURL + federation.PathMessages, and
	// received copies carry it as X-Destination-Mailbox-Service-URL.
	MailboxURL string
	Meta       meta.Store
	// Mailbox stores the copies of a push accepted, in the transaction
	// that queues its pull.
	Mailbox Mailbox
	// Resources, when set, is asked which resources are already held, to
	// fill federation.PullPayload.Missing; the pull runner checks again anyway.
	Resources resource.Statter
	Discovery Discovery
	// DPoP verifies the push's proof; its Replay must be the domain's
	// metadata store.
	DPoP   *dpop.Verifier
	Clock  func() time.Time // default time.Now
	Log    *slog.Logger     // default slog.Default()
	Limits placeholder.Limits
	// PullHorizon is the queued pull's retry horizon (default 5 days).
	PullHorizon time.Duration
	// Accepted, when set, is called after a push is committed (the server
	// wakes its MTA, so the pull starts at once).
	Accepted func()
	// ChainVerified, when set, is told of each push's chain verified, with
	// its number of hops (the server counts them:
	// pullmail_chains_verified_total).
	ChainVerified func(hops int)
}

// Receiver accepts pushed Placeholder Messages (docs/PROTOCOL.md §11.2).
// It is safe for concurrent use.
type Receiver struct {
	cfg Config
	htu string
	max int // bytes of a request body
}

// NewReceiver checks cfg and returns a Receiver.
func NewReceiver(cfg Config) (*Receiver, error) {
	if cfg.Domain == "" || cfg.MailboxURL == "" || cfg.Meta == nil || cfg.Mailbox == nil || cfg.Discovery == nil || cfg.DPoP == nil {
		return nil, errors.New("inbound: Domain, MailboxURL, Meta, Mailbox, Discovery and DPoP are required")
	}
	cfg.Domain = strings.ToLower(cfg.Domain)
	cfg.MailboxURL = strings.TrimRight(cfg.MailboxURL, "/")
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.PullHorizon <= 0 {
		cfg.PullHorizon = DefaultPullHorizon
	}
	lim := cfg.Limits
	if lim.MaxDocument == 0 {
		lim.MaxDocument = placeholder.DefaultLimits().MaxDocument
	}
	// The placeholder, plus one chain element per hop (headers and an
	// assertion of at most keys.MaxTokenSize each).
	max := lim.MaxDocument + federation.MaxChain*(2*keys.MaxTokenSize) + 1024
	return &Receiver{cfg: cfg, htu: cfg.MailboxURL + federation.PathMessages, max: max}, nil
}

// Handler serves POST federation.PathMessages.
func (rc *Receiver) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+federation.PathMessages, rc.serveHTTP)
	return mux
}

func (rc *Receiver) serveHTTP(w http.ResponseWriter, r *http.Request) {
	status, err := rc.receive(r.Context(), r)
	if err != nil {
		log := rc.cfg.Log.With("peer", r.RemoteAddr)
		// Failures of ours (5xx) are logged by errs.Respond, with their
		// cause and the request's id.
		if status, _ := errs.Public(err); status < 500 {
			log.Info("inbound push refused", "req", errs.RequestID(r.Context()), "code", errs.CodeOf(err), "err", err)
		}
		if errs.KindOf(err) == errs.Unauthorized {
			code := errs.CodeOf(err)
			if code == dpop.CodeUseNonce && rc.cfg.DPoP.Nonce != nil {
				w.Header().Set("DPoP-Nonce", rc.cfg.DPoP.Nonce.Current())
			}
			w.Header().Set("WWW-Authenticate", rc.cfg.DPoP.WWWAuthenticate(code))
		}
		errs.Respond(w, r, log, err)
		return
	}
	if status == http.StatusOK {
		writeJSON(w, status, federation.PushAnswer{Status: federation.PushDuplicate})
		return
	}
	if rc.cfg.Accepted != nil {
		rc.cfg.Accepted() // a pull job is committed: wake its runner
	}
	writeJSON(w, status, federation.PushAnswer{Status: federation.PushAccepted})
}

func refuse(kind errs.Kind, code, format string, args ...any) error {
	return errs.E(kind, code, format, args...)
}

// receive runs the checks of §11.2 in order and stores the copies. It
// returns 202 for a new copy, 200 for a duplicate.
func (rc *Receiver) receive(ctx context.Context, r *http.Request) (int, error) {
	now := rc.cfg.Clock()

	// 1. The proof and the token.
	compact, ok := dpopToken(r)
	if !ok {
		return 0, refuse(errs.Unauthorized, "invalid_token", "an Authorization: DPoP <assertion> header is required")
	}
	proof, err := rc.cfg.DPoP.Verify(ctx, r, rc.htu, compact)
	if err != nil {
		return 0, err
	}
	var peek federation.Claims
	typ, err := keys.Peek(compact, &peek)
	if err != nil || len(compact) > keys.MaxTokenSize {
		return 0, errs.Wrap(err, errs.Unauthorized, "invalid_token", "the assertion is not a compact JWS")
	}
	if !keys.SameType(typ, federation.TypAssertion) {
		return 0, refuse(errs.Unauthorized, "invalid_token", "the token is not of typ %s", federation.TypAssertion)
	}
	if peek.Cnf == nil || peek.Cnf.JKT != proof.Thumbprint {
		return 0, refuse(errs.Unauthorized, "dpop_key_mismatch", "the DPoP proof is not by the assertion's cnf.jkt key")
	}

	// The presented assertion's signature, before the body: a sender
	// that cannot sign makes this domain read nothing of it. The chain in
	// the body is verified in full below, this assertion again among it.
	if err := rc.checkSigner(ctx, compact, peek); err != nil {
		return 0, err
	}

	// The body is read now: the From domain is needed for step 2.
	data, err := readBody(r, rc.max)
	if err != nil {
		return 0, err
	}
	env, err := federation.ParseEnvelope(data, rc.max)
	if err != nil {
		return 0, err
	}

	// 2. Who signed it: every hop of the chain, oldest first, each with
	// the keys of the domain that sent it (docs/PROTOCOL.md §12.3).
	if env.Chain[0].Assertion != compact {
		return 0, refuse(errs.Invalid, "bad_chain", "the chain's newest jwt-assertion is not the assertion presented")
	}
	links, err := federation.VerifyChain(ctx, env.Chain, federation.ChainCheck{Final: rc.cfg.Domain,
		Remote: chainKeys{rc.cfg.Discovery}, Refresh: chainKeys{rc.cfg.Discovery}.refresh, Now: now, Limits: rc.cfg.Limits})
	if err != nil {
		if errs.CodeOf(err) == "" {
			return 0, fmt.Errorf("verifying the chain: %w", err) // discovery failed: try again later
		}
		return 0, err
	}
	if rc.cfg.ChainVerified != nil {
		rc.cfg.ChainVerified(len(links))
	}
	// Each hop's azp is the MTA its domain's mailbox metadata names
	// (§11.1: the DNS-bound client identity).
	for _, l := range links {
		mbx, err := rc.cfg.Discovery.Mailbox(ctx, l.Domain)
		if err != nil {
			return 0, fmt.Errorf("discovering the mailbox of %s: %w", l.Domain, err)
		}
		if l.Claims.AZP != mbx.MTAClientID {
			return 0, refuse(errs.Forbidden, "wrong_client", "hop %d: azp is not the MTA of %s", l.Claims.Hop, l.Domain)
		}
	}
	newest, first := links[0], links[len(links)-1]
	c := newest.Claims
	sender, fromDomain := newest.Domain, first.Domain

	// 3. For us, now, once.
	exp := c.Expiry.Time()
	switch {
	case !now.Before(exp):
		return 0, refuse(errs.Unauthorized, "expired_assertion", "the assertion has expired")
	case c.NotBefore != 0 && c.NotBefore.Time().After(now.Add(Skew)):
		return 0, refuse(errs.Unauthorized, "expired_assertion", "the assertion is not valid yet")
	case c.ID == "":
		return 0, refuse(errs.Unauthorized, "invalid_token", "the assertion has no jti")
	}
	fresh, err := rc.cfg.Meta.UseOnce(ctx, "assertion:"+c.Issuer+":"+c.ID, exp.Add(Skew))
	if err != nil {
		return 0, fmt.Errorf("replay cache: %w", err)
	}
	if !fresh {
		return 0, refuse(errs.Unauthorized, "replayed_assertion", "this assertion was used before")
	}

	// 4. The envelope is the one signed.
	m, err := placeholder.Parse(env.Placeholder, rc.cfg.Limits)
	if err != nil {
		return 0, err
	}
	if err := federation.CheckChainMessage(links, m); err != nil {
		return 0, err
	}
	msgid := m.Header.Get(placeholder.HMessageID).String()
	if c.MessageID != msgid {
		return 0, refuse(errs.Invalid, "eht_mismatch", "the assertion is for another Message-ID")
	}
	if !m.IsSent() {
		return 0, refuse(errs.Invalid, "not_sent", "the placeholder has no Date")
	}
	if got, _ := placeholder.NormalizeAddress(m.Header.Get(placeholder.HFrom).String()); domainOf(got) != fromDomain {
		return 0, refuse(errs.Forbidden, "from_domain_mismatch", "the From header changed")
	}
	// The recipients of the newest hop: the message's own for the author's
	// hop, the Forwarded-To of a forward.
	rcptHeader := m.Header
	rcptNames := []string{placeholder.HTo, placeholder.HCc, placeholder.HBcc}
	key := "pull:" + msgid + ":" + m.Header.Get(placeholder.HRecipientsDigest).String()
	if len(links) > 1 {
		rcptHeader, rcptNames = newest.Headers, []string{placeholder.HForwardedTo}
		// One forward is one delivery, whatever its attempts: the hop's
		// own id (or its fixed link to the hop before) names it.
		id := newest.Headers.Get(placeholder.HForwardedMessageID).String()
		if id == "" {
			id = newest.Headers.Get(placeholder.HJWTAssertionDigest).String()
		}
		key = "pull:" + msgid + ":" + newest.Headers.Get(placeholder.HRecipientsDigest).String() + ":" + id
	}
	local, err := rc.localRecipients(rcptHeader, rcptNames)
	if err != nil {
		return 0, err
	}
	if len(local) == 0 {
		return 0, refuse(errs.Invalid, "no_local_recipient", "the message names no recipient at %s", rc.cfg.Domain)
	}

	// 5. Every local recipient exists; then store, all at once.
	leaves, err := m.Leaves()
	if err != nil {
		return 0, err
	}
	var refs []meta.Ref
	seen := map[resource.ID]bool{}
	for _, l := range leaves {
		if !seen[l.ID] {
			seen[l.ID] = true
			refs = append(refs, meta.Ref{ID: l.ID, Size: l.Size})
		}
	}
	var missing []resource.ID
	if rc.cfg.Resources != nil {
		for _, ref := range refs {
			if _, err := rc.cfg.Resources.Stat(ctx, ref.ID); errors.Is(err, resource.ErrNotFound) {
				missing = append(missing, ref.ID)
			} else if err != nil {
				return 0, fmt.Errorf("stat %s: %w", ref.ID, err)
			}
		}
	}
	stored := m.Clone()
	if len(links) > 1 {
		// The forward's trace, newest hop's, at the top of the copy.
		for _, name := range []string{placeholder.HForwardedFrom, placeholder.HForwardedTo,
			placeholder.HForwardedMessageID, placeholder.HForwardedNote} {
			if v := newest.Headers.Get(name); !v.IsZero() {
				stored.Header.Set(name, v)
			}
		}
	}
	received := fmt.Sprintf("from %s by %s; %s", sender, rc.cfg.Domain, placeholder.FormatDate(now))
	if prev := stored.Header.Get(placeholder.HReceived); !prev.IsZero() {
		stored.Header.Set(placeholder.HReceived, placeholder.List(append([]string{received}, prev.List()...)...))
	} else {
		stored.Header.SetString(placeholder.HReceived, received)
	}
	stored.Header.SetString(placeholder.HDestinationMailboxURL, rc.cfg.MailboxURL)
	if err := stored.Validate(rc.cfg.Limits); err != nil {
		return 0, errs.Wrap(err, errs.Invalid, placeholder.CodeDocumentTooLarge, "the message is too large to deliver with its received headers")
	}
	doc := stored.Canonical()
	date, _ := mail.ParseDate(m.Header.Get(placeholder.HDate).String())
	duplicate := false
	err = rc.cfg.Meta.Update(ctx, func(tx meta.Tx) error {
		if _, err := tx.JobByKey(ctx, key); err == nil {
			duplicate = true
			return nil
		} else if !errors.Is(err, meta.ErrNotFound) {
			return err
		}
		p := federation.PullPayload{Origin: fromDomain, MessageID: msgid, Placeholder: env.Placeholder, Chain: env.Chain,
			Resources: refs, Missing: missing}
		copies, err := rc.cfg.Mailbox.Receive(ctx, tx, local, meta.Message{MessageID: msgid,
			ThreadID: m.Header.Get(placeholder.HThreadID).String(), From: m.Header.Get(placeholder.HFrom).String(),
			Subject: m.Header.Get(placeholder.HSubject).String(), Date: date, Created: now, Updated: now,
			Placeholder: doc, Refs: refs}, data)
		if err != nil {
			return err
		}
		for _, c := range copies {
			p.Messages = append(p.Messages, federation.MessageRef{UserID: c.UserID, ID: c.ID})
		}
		var pb bytes.Buffer
		enc := json.NewEncoder(&pb)
		enc.SetEscapeHTML(false) // keep the placeholder's bytes as they came
		if err := enc.Encode(p); err != nil {
			return fmt.Errorf("pull payload: %w", err)
		}
		_, err = tx.AddJob(ctx, meta.Job{Kind: federation.JobPull, Key: key, Payload: bytes.TrimSpace(pb.Bytes()), NextTry: now,
			Created: now, Updated: now, Expires: now.Add(rc.cfg.PullHorizon)})
		if errors.Is(err, meta.ErrExists) {
			return errDuplicate // a concurrent push of the same copy won
		}
		return err
	})
	if errors.Is(err, errDuplicate) {
		duplicate, err = true, nil
	}
	if err != nil {
		return 0, err
	}
	log := rc.cfg.Log.With("msgid", msgid, "from", fromDomain)
	if duplicate {
		log.Info("inbound push: duplicate")
		return http.StatusOK, nil
	}
	log.Info("inbound push accepted", "recipients", len(local))
	return http.StatusAccepted, nil
}

var errDuplicate = errors.New("inbound: duplicate")

// localRecipients returns the normalized addresses (account.NormalizeAddress)
// of the recipients at this domain in the named headers of h, each once, in
// order.
func (rc *Receiver) localRecipients(h placeholder.Header, names []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, name := range names {
		v := h.Get(name)
		if v.IsZero() {
			continue
		}
		list, err := mail.ParseAddressList(strings.Join(v.List(), ", "))
		if err != nil {
			return nil, errs.Wrap(err, errs.Invalid, placeholder.CodeBadAddress, "header "+name+" does not parse")
		}
		for _, a := range list {
			if domainOf(a.Address) != rc.cfg.Domain {
				continue
			}
			norm, err := account.NormalizeAddress(a.Address)
			if err != nil {
				return nil, errs.E(errs.Invalid, "unknown_recipient", "no such user: %s", a.Address)
			}
			if !seen[norm] {
				seen[norm] = true
				out = append(out, norm)
			}
		}
	}
	return out, nil
}

// checkSigner verifies the presented assertion's signature with the keys of
// its sender's domain (the domain of its sub, as federation.VerifyChain finds it),
// refetching them once when it does not verify.
func (rc *Receiver) checkSigner(ctx context.Context, compact string, peek federation.Claims) error {
	domain := domainOf(peek.Subject)
	if domain == "" {
		return refuse(errs.Unauthorized, "invalid_token", "the assertion names no sender (sub)")
	}
	k := chainKeys{rc.cfg.Discovery}
	iss, doc, err := k.IssuerKeys(ctx, domain)
	if err != nil {
		return fmt.Errorf("discovering the authorization server of %s: %w", domain, err)
	}
	if iss != peek.Issuer {
		return refuse(errs.Forbidden, "issuer_mismatch", "the assertion's iss is not the issuer of %s", domain)
	}
	if verifyAssertion(compact, doc) == nil {
		return nil
	}
	if iss2, doc2, err := k.refresh(ctx, domain); err == nil && iss2 == iss && verifyAssertion(compact, doc2) == nil {
		return nil
	}
	return refuse(errs.Unauthorized, "bad_signature", "the assertion does not verify with the keys of %s", domain)
}

func verifyAssertion(compact string, jwks []byte) error {
	set, err := keys.ParseJWKS(jwks)
	if err != nil {
		return err
	}
	_, _, err = keys.Verify(compact, set, keys.Expect{Typ: federation.TypAssertion})
	return err
}

// chainKeys finds other domains' authorization servers for
// federation.VerifyChain through discovery.
type chainKeys struct{ d Discovery }

func (k chainKeys) IssuerKeys(ctx context.Context, domain string) (string, []byte, error) {
	return jwksOf(k.d.Authority(ctx, domain))
}

func (k chainKeys) refresh(ctx context.Context, domain string) (string, []byte, error) {
	return jwksOf(k.d.RefreshKeys(ctx, domain))
}

func jwksOf(a discovery.Authority, err error) (string, []byte, error) {
	if err != nil {
		return "", nil, err
	}
	if len(a.Raw) > 0 {
		return a.Issuer, a.Raw, nil
	}
	doc, err := json.Marshal(a.JWKS)
	return a.Issuer, doc, err
}
