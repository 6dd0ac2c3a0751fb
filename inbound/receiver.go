package inbound

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/mail"
	"strings"
	"time"

	"github.com/pullmail/pullmail/account"
	"github.com/pullmail/pullmail/authz"
	"github.com/pullmail/pullmail/discovery"
	"github.com/pullmail/pullmail/dpop"
	"github.com/pullmail/pullmail/errs"
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

// Defaults and limits of the Receiver.
const (
	// MaxAssertionLife is the longest exp - iat an assertion may have
	// (docs/PROTOCOL.md §11.2 item 3).
	MaxAssertionLife = 10 * time.Minute
	// Skew is how far in the future iat and nbf may be.
	Skew = 60 * time.Second
	// DefaultPullHorizon is how long the queued pull may keep trying.
	DefaultPullHorizon = 5 * 24 * time.Hour
	// JobPull is the kind of the job a push queues.
	JobPull = "pull"
)

// Config configures a Receiver.
type Config struct {
	// Domain is this domain: the only audience accepted.
	Domain string
	// MailboxURL is this mailbox's external base URL, e.g.
	// "https://mbx.b.test": the DPoP htu is MailboxURL + PathMessages, and
	// received copies carry it as X-Destination-Mailbox-Service-URL.
	MailboxURL string
	Meta       meta.Store
	// Resources, when set, is asked which resources are already held, to
	// fill PullPayload.Missing; the pull runner checks again anyway.
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
}

// Receiver accepts pushed Placeholder Messages (docs/PROTOCOL.md §11.2).
// It is safe for concurrent use.
type Receiver struct {
	cfg Config
	htu string
	max int // bytes of a request body
}

// PullPayload is the payload of the pull job a push queues: everything the
// pull runner needs to fetch the message's resources from the origin
// (docs/PROTOCOL.md §11.3) and to update the local copies.
type PullPayload struct {
	Origin      string          `json:"origin"`      // the From domain
	MessageID   string          `json:"message_id"`  // with angle brackets
	Placeholder json.RawMessage `json:"placeholder"` // exactly as received, without the headers added here
	Chain       []ChainElement  `json:"chain"`       // as pushed
	Messages    []MessageRef    `json:"messages"`    // the inbox copies made
	Resources   []meta.Ref      `json:"resources"`   // every resource the placeholder names, once each
	// Missing lists those not held when the push was accepted (nil when
	// Config.Resources is nil: then all of them may be missing).
	Missing []resource.ID `json:"missing,omitempty"`
}

// MessageRef names one stored copy.
type MessageRef struct {
	UserID int64  `json:"user_id"`
	ID     string `json:"id"`
}

// NewReceiver checks cfg and returns a Receiver.
func NewReceiver(cfg Config) (*Receiver, error) {
	if cfg.Domain == "" || cfg.MailboxURL == "" || cfg.Meta == nil || cfg.Discovery == nil || cfg.DPoP == nil {
		return nil, errors.New("inbound: Domain, MailboxURL, Meta, Discovery and DPoP are required")
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
	max := lim.MaxDocument + MaxChain*(2*keys.MaxTokenSize) + 1024
	return &Receiver{cfg: cfg, htu: cfg.MailboxURL + PathMessages, max: max}, nil
}

// Handler serves POST PathMessages.
func (rc *Receiver) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+PathMessages, rc.serveHTTP)
	return mux
}

func (rc *Receiver) serveHTTP(w http.ResponseWriter, r *http.Request) {
	status, err := rc.receive(r.Context(), r)
	if err != nil {
		log := rc.cfg.Log.With("peer", r.RemoteAddr)
		if errs.KindOf(err) == errs.Internal {
			log.Error("inbound push failed", "err", err)
		} else {
			log.Info("inbound push refused", "code", errs.CodeOf(err), "err", err)
		}
		if errs.KindOf(err) == errs.Unauthorized {
			code := errs.CodeOf(err)
			if code == dpop.CodeUseNonce && rc.cfg.DPoP.Nonce != nil {
				w.Header().Set("DPoP-Nonce", rc.cfg.DPoP.Nonce.Current())
			}
			w.Header().Set("WWW-Authenticate", rc.cfg.DPoP.WWWAuthenticate(code))
		}
		errs.WriteHTTP(w, err)
		return
	}
	if status == http.StatusOK {
		writeJSON(w, status, map[string]string{"status": "duplicate"})
		return
	}
	if rc.cfg.Accepted != nil {
		rc.cfg.Accepted() // a pull job is committed: wake its runner
	}
	writeJSON(w, status, map[string]string{"status": "accepted"})
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
	var peek authz.AccessClaims
	typ, err := peekJWT(compact, &peek)
	if err != nil || len(compact) > keys.MaxTokenSize {
		return 0, errs.Wrap(err, errs.Unauthorized, "invalid_token", "the assertion is not a compact JWS")
	}
	if !typIs(typ, authz.TypAssertion) {
		return 0, refuse(errs.Unauthorized, "invalid_token", "the token is not of typ %s", authz.TypAssertion)
	}
	if peek.Cnf == nil || peek.Cnf.JKT != proof.Thumbprint {
		return 0, refuse(errs.Unauthorized, "dpop_key_mismatch", "the DPoP proof is not by the assertion's cnf.jkt key")
	}

	// The body is read now: the From domain is needed for step 2.
	data, err := readBody(r, rc.max)
	if err != nil {
		return 0, err
	}
	env, err := ParseEnvelope(data, rc.max)
	if err != nil {
		return 0, err
	}

	// 2. Who signed it.
	from, err := fromAddress(env.Placeholder)
	if err != nil {
		return 0, errs.Wrap(err, errs.Forbidden, "from_domain_mismatch", "the placeholder has no readable From address")
	}
	fromDomain := domainOf(from)
	if fromDomain == "" || domainOf(peek.Subject) != fromDomain {
		return 0, refuse(errs.Forbidden, "from_domain_mismatch", "the assertion's sub is not of the From domain %s", fromDomain)
	}
	auth, err := rc.cfg.Discovery.Authority(ctx, fromDomain)
	if err != nil {
		return 0, fmt.Errorf("discovering the authorization server of %s: %w", fromDomain, err)
	}
	if peek.Issuer != auth.Issuer {
		return 0, refuse(errs.Forbidden, "issuer_mismatch", "the assertion's iss is not the issuer of %s", fromDomain)
	}
	payload, _, err := keys.Verify(compact, auth.JWKS, keys.Expect{Typ: authz.TypAssertion})
	if err != nil {
		// Perhaps a key we have not seen yet: refetch once (rate-limited).
		if auth, rerr := rc.cfg.Discovery.RefreshKeys(ctx, fromDomain); rerr == nil && auth.Issuer == peek.Issuer {
			payload, _, err = keys.Verify(compact, auth.JWKS, keys.Expect{Typ: authz.TypAssertion})
		}
	}
	if err != nil {
		return 0, errs.Wrap(err, errs.Unauthorized, "bad_signature", "the assertion does not verify with the keys of "+fromDomain)
	}
	var c authz.AccessClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return 0, errs.Wrap(err, errs.Unauthorized, "invalid_token", "the assertion's claims are malformed")
	}
	// The verified claims must be those peeked at (they are the same bytes).
	mbx, err := rc.cfg.Discovery.Mailbox(ctx, fromDomain)
	if err != nil {
		return 0, fmt.Errorf("discovering the mailbox of %s: %w", fromDomain, err)
	}
	if c.AZP == "" || c.AZP != mbx.MTAClientID {
		return 0, refuse(errs.Forbidden, "wrong_client", "azp is not the MTA of %s", fromDomain)
	}

	// 3. For us, now, once.
	if len(c.Audience) != 1 || !strings.EqualFold(c.Audience[0], rc.cfg.Domain) {
		return 0, refuse(errs.Forbidden, "wrong_audience", "the assertion is not for %s alone", rc.cfg.Domain)
	}
	exp, iat := c.Expiry.Time(), c.IssuedAt.Time()
	switch {
	case c.Expiry == 0 || !now.Before(exp):
		return 0, refuse(errs.Unauthorized, "expired_assertion", "the assertion has expired")
	case c.IssuedAt == 0 || exp.Sub(iat) > MaxAssertionLife:
		return 0, refuse(errs.Unauthorized, "expired_assertion", "the assertion lives longer than %v", MaxAssertionLife)
	case iat.After(now.Add(Skew)) || (c.NotBefore != 0 && c.NotBefore.Time().After(now.Add(Skew))):
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
	if len(env.Chain) != 1 || c.Hop > 1 {
		return 0, refuse(errs.Invalid, "bad_chain", "only first-hop messages are accepted (a chain of one element)")
	}
	if env.Chain[0].Assertion != compact {
		return 0, refuse(errs.Invalid, "bad_chain", "the chain's jwt-assertion is not the assertion presented")
	}
	m, err := placeholder.Parse(env.Placeholder, rc.cfg.Limits)
	if err != nil {
		return 0, err
	}
	eh, err := placeholder.ParseHeader(env.Chain[0].Headers, rc.cfg.Limits)
	if err != nil {
		return 0, err
	}
	if c.EH == nil {
		return 0, refuse(errs.Invalid, placeholder.CodeBadEHL, "the assertion has no eh claim")
	}
	if err := placeholder.CheckEHL(c.EH.EHL, placeholder.FirstHop); err != nil {
		return 0, err
	}
	eht, err := placeholder.EHT(eh, c.EH.EHL)
	if err != nil || eht != c.EH.EHT {
		return 0, refuse(errs.Invalid, "eht_mismatch", "the chain's headers are not those the assertion signs")
	}
	if eh.Len() != len(c.EH.EHL) {
		return 0, refuse(errs.Invalid, "eht_mismatch", "the chain's headers hold names the assertion does not sign")
	}
	for _, name := range c.EH.EHL {
		if !m.Header.Get(name).Equal(eh.Get(name)) {
			return 0, refuse(errs.Invalid, "eht_mismatch", "the placeholder's %s differs from the signed one", name)
		}
	}
	msgid := m.Header.Get(placeholder.HMessageID).String()
	if c.MessageID != msgid {
		return 0, refuse(errs.Invalid, "eht_mismatch", "the assertion is for another Message-ID")
	}
	if !m.Header.Has(placeholder.HBodyDigest) || !m.Header.Has(placeholder.HRecipientsDigest) {
		return 0, refuse(errs.Invalid, placeholder.CodeDigestMismatch, "Body-Digest and Recipients-Digest are required")
	}
	if err := placeholder.VerifyDigests(m); err != nil {
		return 0, err
	}
	if !m.IsSent() {
		return 0, refuse(errs.Invalid, "not_sent", "the placeholder has no Date")
	}
	if got, _ := placeholder.NormalizeAddress(m.Header.Get(placeholder.HFrom).String()); domainOf(got) != fromDomain {
		return 0, refuse(errs.Forbidden, "from_domain_mismatch", "the From header changed")
	}
	local, err := rc.localRecipients(m)
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
	received := fmt.Sprintf("from %s by %s; %s", fromDomain, rc.cfg.Domain, placeholder.FormatDate(now))
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
	key := "pull:" + msgid + ":" + m.Header.Get(placeholder.HRecipientsDigest).String()

	duplicate := false
	err = rc.cfg.Meta.Update(ctx, func(tx meta.Tx) error {
		if _, err := tx.JobByKey(ctx, key); err == nil {
			duplicate = true
			return nil
		} else if !errors.Is(err, meta.ErrNotFound) {
			return err
		}
		var unknown []string
		var ids []int64
		for _, addr := range local {
			u, err := tx.UserByAddress(ctx, addr)
			if errors.Is(err, meta.ErrNotFound) {
				unknown = append(unknown, addr)
				continue
			} else if err != nil {
				return fmt.Errorf("looking up %s: %w", addr, err)
			}
			ids = append(ids, u.ID)
		}
		if len(unknown) > 0 {
			return refuse(errs.Invalid, "unknown_recipient", "no such user: %s", strings.Join(unknown, ", "))
		}
		p := PullPayload{Origin: fromDomain, MessageID: msgid, Placeholder: env.Placeholder, Chain: env.Chain,
			Resources: refs, Missing: missing}
		done := map[int64]bool{}
		for _, uid := range ids {
			if done[uid] {
				continue
			}
			done[uid] = true
			row := meta.Message{
				ID: newID(), UserID: uid, Folder: meta.Inbox, MessageID: msgid,
				ThreadID: m.Header.Get(placeholder.HThreadID).String(), Status: meta.StatusFetching,
				From: m.Header.Get(placeholder.HFrom).String(), Subject: m.Header.Get(placeholder.HSubject).String(),
				Date: date, Created: now, Updated: now, Placeholder: doc, Refs: refs,
			}
			if err := tx.InsertMessage(ctx, row); err != nil {
				return fmt.Errorf("storing the copy of user %d: %w", uid, err)
			}
			p.Messages = append(p.Messages, MessageRef{UserID: uid, ID: row.ID})
		}
		var pb bytes.Buffer
		enc := json.NewEncoder(&pb)
		enc.SetEscapeHTML(false) // keep the placeholder's bytes as they came
		if err := enc.Encode(p); err != nil {
			return fmt.Errorf("pull payload: %w", err)
		}
		_, err = tx.AddJob(ctx, meta.Job{Kind: JobPull, Key: key, Payload: bytes.TrimSpace(pb.Bytes()), NextTry: now,
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
// of the To, Cc and Bcc recipients at this domain, each once, in order.
func (rc *Receiver) localRecipients(m *placeholder.Message) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, name := range []string{placeholder.HTo, placeholder.HCc, placeholder.HBcc} {
		v := m.Header.Get(name)
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

// fromAddress reads the From address of a placeholder without parsing the
// rest: step 2 of §11.2 needs the From domain before step 4 parses it all.
func fromAddress(doc json.RawMessage) (string, error) {
	var top struct {
		Headers map[string]json.RawMessage `json:"headers"`
	}
	if err := json.Unmarshal(doc, &top); err != nil {
		return "", err
	}
	raw, ok := top.Headers[placeholder.HFrom]
	if !ok {
		return "", errors.New("no From header")
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("From is not one string: %w", err)
	}
	return placeholder.NormalizeAddress(s)
}

// newID returns a new opaque message row id, in the mailbox's form.
func newID() string {
	var b [15]byte
	rand.Read(b[:])
	return "m" + strings.ToLower(base32.StdEncoding.EncodeToString(b[:]))
}
