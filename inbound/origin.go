package inbound

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/mail"
	"strings"
	"time"

	"github.com/pullmail/pullmail/authz"
	"github.com/pullmail/pullmail/discovery"
	"github.com/pullmail/pullmail/dpop"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/federation"
	"github.com/pullmail/pullmail/httprange"
	"github.com/pullmail/pullmail/keys"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
)

// OriginConfig configures an Origin.
type OriginConfig struct {
	// Issuer is this domain's authorization server: the issuer of the
	// fetch tokens and of the first-hop assertions accepted.
	Issuer string
	// FetchURL is the external URL of the fetch endpoint, e.g.
	// "https://a.test/federation/v1/resources"; a request's DPoP htu is
	// FetchURL + "/" + content-id.
	FetchURL  string
	Meta      meta.Reader
	Resources resource.Fetcher
	Keys      *keys.Set
	DPoP      *dpop.Verifier
	// Domain is this domain; Remote finds the keys of the other domains a
	// forwarded message passed (package discovery). Without Remote only
	// chains of one hop verify.
	Domain string
	Remote federation.ChainKeys
	// Served, when set, is told of each resource served and to which
	// domain (the server counts them: pullmail_origin_served_total).
	Served func(domain string)
	Clock  func() time.Time // default time.Now
	Log    *slog.Logger     // default slog.Default()
	Limits placeholder.Limits
}

// Origin serves the External Resources of this domain's sent messages to
// the recipient domains that may fetch them (docs/PROTOCOL.md §11.3). It is
// safe for concurrent use.
type Origin struct {
	cfg OriginConfig
	max int
}

// NewOrigin checks cfg and returns an Origin.
func NewOrigin(cfg OriginConfig) (*Origin, error) {
	if cfg.Issuer == "" || cfg.FetchURL == "" || cfg.Meta == nil || cfg.Resources == nil || cfg.Keys == nil || cfg.DPoP == nil ||
		cfg.Domain == "" {
		return nil, errors.New("inbound: Issuer, FetchURL, Meta, Resources, Keys, DPoP and Domain are required")
	}
	cfg.Domain = strings.ToLower(cfg.Domain)
	cfg.FetchURL = strings.TrimRight(cfg.FetchURL, "/")
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	lim := cfg.Limits
	if lim.MaxDocument == 0 {
		lim.MaxDocument = placeholder.DefaultLimits().MaxDocument
	}
	return &Origin{cfg: cfg, max: lim.MaxDocument + federation.MaxChain*(2*keys.MaxTokenSize) + 1024}, nil
}

// Handler serves POST federation.PathResources + "/{cid}".
func (o *Origin) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+federation.PathResources+"/{cid}", o.serveHTTP)
	return mux
}

// notFound is the one answer to every refusal.
var notFound = errs.E(errs.NotFound, "not_found", "no such resource")

func (o *Origin) serveHTTP(w http.ResponseWriter, r *http.Request) {
	cid := r.PathValue("cid")
	obj, err := o.authorize(r.Context(), r, cid)
	if err != nil {
		log := o.cfg.Log.With("peer", r.RemoteAddr, "cid", cid)
		var f *failure
		if errors.As(err, &f) {
			errs.Respond(w, r, log, f.err) // logs the cause, with the request's id
			return
		}
		log.Info("fetch refused", "req", errs.RequestID(r.Context()), "why", err)
		if errs.CodeOf(err) == dpop.CodeUseNonce && o.cfg.DPoP.Nonce != nil {
			w.Header().Set("DPoP-Nonce", o.cfg.DPoP.Nonce.Current())
			w.Header().Set("WWW-Authenticate", o.cfg.DPoP.WWWAuthenticate(dpop.CodeUseNonce))
			errs.WriteHTTP(w, err)
			return
		}
		errs.WriteHTTP(w, notFound)
		return
	}
	defer obj.Close()
	// Conditional and range requests by RFC 9110 (package httprange): a
	// pull resumes with Range and If-Range (§11.3). A copy found damaged
	// where the answer starts is 503 resource_damaged, not a cut body: the
	// pulling MTA retries later without downloading anything meanwhile.
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	httprange.Serve(w, r, obj, obj.Info().Size, `"`+cid+`"`, httprange.Options{
		Content:  func(h http.Header) { h.Set("Content-Type", "application/octet-stream") },
		Classify: resource.ReadFailure, Retrieval: true,
	})
}

// authorize runs every check of §11.3 and opens the resource. Any refusal is
// an error whose detail is for the log only: the client gets not_found.
func (o *Origin) authorize(ctx context.Context, r *http.Request, cid string) (resource.Object, error) {
	id, err := resource.ParseID(cid)
	if err != nil {
		return nil, fmt.Errorf("bad content-id: %w", err)
	}
	now := o.cfg.Clock()

	// The fetch token and its proof.
	tok, ok := dpopToken(r)
	if !ok {
		return nil, errors.New("no DPoP token")
	}
	proof, err := o.cfg.DPoP.Verify(ctx, r, o.cfg.FetchURL+"/"+cid, tok)
	if err != nil {
		if errs.KindOf(err) == errs.Internal {
			return nil, fail(err)
		}
		return nil, fmt.Errorf("proof: %w", err)
	}
	payload, _, err := o.cfg.Keys.Verify(tok, keys.Expect{Typ: authz.TypAccessToken})
	if err != nil {
		return nil, fmt.Errorf("fetch token: %w", err)
	}
	var ft federation.Claims
	if err := json.Unmarshal(payload, &ft); err != nil {
		return nil, fmt.Errorf("fetch token claims: %w", err)
	}
	if err := ft.Validate(keys.ClaimsExpect{Issuer: o.cfg.Issuer, Audience: o.cfg.Issuer, Now: now,
		Leeway: Skew, SoleAudience: true}); err != nil {
		return nil, fmt.Errorf("fetch token claims: %w", err)
	}
	rcpt := strings.ToLower(ft.RecipientDomain)
	switch {
	case !hasScope(ft.Scope, federation.ScopeFetch):
		return nil, errors.New("fetch token: no fetch scope")
	case ft.Cnf == nil || ft.Cnf.JKT != proof.Thumbprint:
		return nil, errors.New("fetch token: cnf.jkt is not the proof's key")
	case rcpt == "" || ft.ClientID != discovery.MTAClientID(rcpt):
		return nil, errors.New("fetch token: client_id is not the recipient domain's MTA")
	case ft.MessageID == "":
		return nil, errors.New("fetch token: no msgid")
	}
	if ft.Family != "" {
		if revoked, err := o.cfg.Meta.FamilyRevoked(ctx, ft.Family); err != nil {
			return nil, fail(fmt.Errorf("family: %w", err))
		} else if revoked {
			return nil, errors.New("fetch token: family revoked")
		}
	}

	// The envelope.
	data, err := readBody(r, o.max)
	if err != nil {
		return nil, err
	}
	env, err := federation.ParseEnvelope(data, o.max)
	if err != nil {
		return nil, err
	}
	// The chain, link by link, from our own assertion to the token's
	// domain (docs/PROTOCOL.md §12.4); its expiries are not checked: the
	// pull may come days later (§10.6).
	m, err := placeholder.Parse(env.Placeholder, o.cfg.Limits)
	if err != nil {
		return nil, fmt.Errorf("placeholder: %w", err)
	}
	links, err := federation.VerifyChain(ctx, env.Chain, federation.ChainCheck{Final: rcpt, Origin: o.cfg.Issuer,
		Placeholder: m, Domain: o.cfg.Domain, OwnIssuer: o.cfg.Issuer, Own: o.cfg.Keys, Remote: o.cfg.Remote,
		Now: now, Limits: o.cfg.Limits})
	if err != nil {
		return nil, fmt.Errorf("chain: %w", err)
	}
	a := links[len(links)-1].Claims
	if a.MessageID != ft.MessageID {
		return nil, errors.New("assertion: another msgid than the token's")
	}
	bodyDigest := m.Header.Get(placeholder.HBodyDigest).String()
	firstDomain := strings.ToLower(a.Audience[0])

	// The sent message stored here under that Message-ID.
	author, err := o.cfg.Meta.UserByAddress(ctx, a.Subject)
	if errors.Is(err, meta.ErrNotFound) {
		return nil, errors.New("author unknown")
	} else if err != nil {
		return nil, fail(fmt.Errorf("author: %w", err))
	}
	copies, err := o.cfg.Meta.MessagesByMessageID(ctx, author.ID, a.MessageID)
	if err != nil {
		return nil, fail(fmt.Errorf("sent copies: %w", err))
	}
	var sent *placeholder.Message
	for _, c := range copies {
		if c.Folder != meta.Sent {
			continue
		}
		sm, err := placeholder.Parse(c.Placeholder, placeholder.Limits{})
		if err != nil {
			return nil, fail(fmt.Errorf("stored sent copy %s: %w", c.ID, err))
		}
		if placeholder.BodyDigest(sm) == bodyDigest {
			sent = sm
			break
		}
	}
	if sent == nil {
		return nil, errors.New("no sent copy with that Body-Digest")
	}
	if !namesDomain(sent, firstDomain) {
		return nil, fmt.Errorf("%s has no recipient of the message", firstDomain)
	}
	leaves, err := sent.Leaves()
	if err != nil {
		return nil, fmt.Errorf("sent copy leaves: %w", err)
	}
	referenced := false
	for _, l := range leaves {
		referenced = referenced || l.ID == id
	}
	if !referenced {
		return nil, errors.New("the body does not reference the resource")
	}
	obj, err := o.cfg.Resources.Open(ctx, id)
	if errors.Is(err, resource.ErrNotFound) {
		return nil, errors.New("resource not stored")
	} else if err != nil {
		return nil, fail(fmt.Errorf("open %s: %w", id, err))
	}
	o.cfg.Log.Info("fetch served", "msgid", a.MessageID, "domain", rcpt, "hops", len(links), "cid", cid)
	if o.cfg.Served != nil {
		o.cfg.Served(rcpt)
	}
	return obj, nil
}

// failure marks an error of the origin itself (the store failing), answered
// 500 internal and logged, as opposed to a refusal, answered not_found.
type failure struct{ err error }

func (f *failure) Error() string { return f.err.Error() }
func (f *failure) Unwrap() error { return f.err }

func fail(err error) error { return &failure{err: err} }

// namesDomain reports whether a To, Cc or Bcc recipient of m is at domain.
func namesDomain(m *placeholder.Message, domain string) bool {
	for _, name := range []string{placeholder.HTo, placeholder.HCc, placeholder.HBcc} {
		v := m.Header.Get(name)
		if v.IsZero() {
			continue
		}
		list, err := mail.ParseAddressList(strings.Join(v.List(), ", "))
		if err != nil {
			continue
		}
		for _, a := range list {
			if domainOf(a.Address) == domain {
				return true
			}
		}
	}
	return false
}

func hasScope(scope, want string) bool {
	for _, s := range strings.Fields(scope) {
		if s == want {
			return true
		}
	}
	return false
}
