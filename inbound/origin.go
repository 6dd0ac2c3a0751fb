package inbound

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/pullmail/pullmail/discovery"
	"github.com/pullmail/pullmail/dpop"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/federation"
	"github.com/pullmail/pullmail/httprange"
	"github.com/pullmail/pullmail/keys"
	"github.com/pullmail/pullmail/meta"
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
	// Served, when set, is told of each resource served and to which
	// domain (the server counts them: pullmail_origin_served_total).
	Served func(domain string)
	Clock  func() time.Time // default time.Now
	Log    *slog.Logger     // default slog.Default()
}

// Origin serves the External Resources of this domain's sent messages to
// the recipient domains that may fetch them (docs/PROTOCOL.md §11.3). It is
// safe for concurrent use.
type Origin struct {
	cfg OriginConfig
}

// NewOrigin checks cfg and returns an Origin.
func NewOrigin(cfg OriginConfig) (*Origin, error) {
	if cfg.Issuer == "" || cfg.FetchURL == "" || cfg.Meta == nil || cfg.Resources == nil || cfg.Keys == nil || cfg.DPoP == nil {
		return nil, errors.New("inbound: Issuer, FetchURL, Meta, Resources, Keys and DPoP are required")
	}
	cfg.FetchURL = strings.TrimRight(cfg.FetchURL, "/")
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Origin{cfg: cfg}, nil
}

// Handler serves GET (and HEAD) federation.PathResources + "/{cid}".
func (o *Origin) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+federation.PathResources+"/{cid}", o.serveHTTP)
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
	payload, _, err := o.cfg.Keys.Verify(tok, keys.Expect{Typ: federation.TypAccessToken})
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
	case !federation.HasScope(ft.Scope, federation.ScopeFetch):
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
	if ft.Fetch == nil {
		return nil, errors.New("fetch token: no fetch grant")
	}

	// The verdict the token carries: its chain was verified when it was
	// issued (docs/PROTOCOL.md §10.6); what may have changed since, the
	// sent copy and the account, is read again.
	if err := federation.Fetchable(ctx, o.cfg.Meta, *ft.Fetch, ft.MessageID, id); err != nil {
		if errs.KindOf(err) == errs.Internal {
			return nil, fail(err)
		}
		return nil, err
	}
	obj, err := o.cfg.Resources.Open(ctx, id)
	if errors.Is(err, resource.ErrNotFound) {
		return nil, errors.New("resource not stored")
	} else if err != nil {
		return nil, fail(fmt.Errorf("open %s: %w", id, err))
	}
	o.cfg.Log.Info("fetch served", "msgid", ft.MessageID, "domain", rcpt, "hops", ft.Fetch.Hops, "cid", cid)
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
