// Package authz is a domain's OAuth 2.0 Authorization Server (seed 004):
//
//   - Authorization Code with PKCE (RFC 6749 §4.1, RFC 7636, S256 only) for
//     public clients such as the webmail, with a server-rendered login page;
//   - the Device Authorization Grant (RFC 8628) for the command line;
//   - refresh tokens with rotation and reuse detection (RFC 9700 §4.14),
//     revocation (RFC 7009);
//   - Token Exchange (RFC 8693) for the Cross-Domain Authorization Grant:
//     an access token for a JWT assertion bound to one message's envelope
//     headers, an assertion for a fetch token, an assertion for a chained
//     (forwarding) assertion (docs/PROTOCOL.md §10);
//   - DPoP (RFC 9449) on every token request that offers it and on every
//     cross-domain one; private_key_jwt (RFC 7523) for confidential clients;
//   - metadata (RFC 8414) and a JWKS with rotation (package keys).
//
// Access tokens are RFC 9068 JWTs (typ at+jwt), short-lived (5 minutes), and
// name their grant family, so that the revocation of a family (code or
// refresh token reuse, sign-out) also stops the access tokens it issued:
// the resource server checks the family on every request (Authenticator).
//
// The OAuth endpoints answer errors in the RFC 6749 §5.2 shape
// ({"error": "...", "error_description": "..."}), the one OAuth clients
// expect, not the mailbox API's.
//
// The package holds the authorization server and nothing else: what it
// shares with other domains and with the rest of this one (the assertions'
// claims and JWT type, the token-exchange URNs and scopes, the chain and its
// verifier, the metadata document, the MTA's client key, the forwarding
// policy) is package federation's.
package authz

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/pullmail/pullmail/dpop"
	"github.com/pullmail/pullmail/federation"
	"github.com/pullmail/pullmail/keys"
	"github.com/pullmail/pullmail/meta"
)

// Paths of the endpoints, under the issuer URL.
const (
	PathJWKS        = "/oauth/jwks"
	PathAuthorize   = "/oauth/authorize"
	PathToken       = "/oauth/token"
	PathRevoke      = "/oauth/revoke"
	PathDeviceAuthz = "/oauth/device_authorization"
	PathDevice      = "/oauth/device"
	ScopeMail       = "mail" // the mailbox API
)

// Token and grant types of this server's own clients; those of the
// requests between domains are package federation's.
const (
	TokenTypeRefresh = "urn:ietf:params:oauth:token-type:refresh_token"
	GrantDeviceCode  = "urn:ietf:params:oauth:grant-type:device_code"
)

// Config configures the authorization server of one domain.
type Config struct {
	// Issuer is the server's external base URL, e.g. "https://a.test"; the
	// endpoints' URLs (and the DPoP htu values) are built from it, never
	// from a request's Host header.
	Issuer string
	Domain string
	Meta   meta.Store
	Keys   *keys.Set
	Log    *slog.Logger
	Clock  func() time.Time
	// Remote finds the keys of other domains' clients and authorization
	// servers (package discovery in production); nil refuses every
	// cross-domain request.
	Remote Remote

	AccessTokenTTL time.Duration // default 5 minutes
	RefreshTTL     time.Duration // default 30 days
	CodeTTL        time.Duration // default 1 minute
	DeviceTTL      time.Duration // default 10 minutes
	// DeviceInterval is the polling interval asked of device clients
	// (default 5 seconds, RFC 8628 §3.2; whole seconds).
	DeviceInterval time.Duration
	AssertionTTL   time.Duration // default 5 minutes (at most 10: SECURITY.md)
	FetchTokenTTL  time.Duration // default 1 hour
	// SendGrantTTL is how long the MTA may obtain assertions for one sent
	// message: the delivery retry horizon (default 5 days).
	SendGrantTTL time.Duration
	// MaxChain is the most hops a forwarding chain may have (default 8).
	MaxChain int
	// ChainVerified, when set, is told of each chain verified for a fetch
	// token, with its number of hops: the one verification of a delivery
	// at the origin (docs/PROTOCOL.md §10.6); the server counts them in
	// pullmail_chains_verified_total.
	ChainVerified func(hops int)
}

// Remote is what the authorization server needs to know of other domains.
type Remote interface {
	// ClientKeys returns the public keys of a remote domain's MTA client,
	// whose client_id names its domain (docs/PROTOCOL.md §10.1), and that
	// domain.
	ClientKeys(ctx context.Context, clientID string) (domain string, jwks []byte, err error)
	// IssuerKeys returns the issuer URL and JWKS of a domain's
	// authorization server, as discovered for that domain.
	IssuerKeys(ctx context.Context, domain string) (issuer string, jwks []byte, err error)
}

// Server is the authorization server.
type Server struct {
	cfg     Config
	log     *slog.Logger
	dpop    *dpop.Verifier
	limiter *limiter
}

// New returns the authorization server.
func New(cfg Config) (*Server, error) {
	cfg.Issuer = strings.TrimRight(cfg.Issuer, "/")
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.AccessTokenTTL, 5*time.Minute)
	def(&cfg.RefreshTTL, 30*24*time.Hour)
	def(&cfg.CodeTTL, time.Minute)
	def(&cfg.DeviceTTL, 10*time.Minute)
	def(&cfg.DeviceInterval, 5*time.Second)
	def(&cfg.AssertionTTL, 5*time.Minute)
	def(&cfg.FetchTokenTTL, time.Hour)
	def(&cfg.SendGrantTTL, 5*24*time.Hour)
	if cfg.AssertionTTL > 10*time.Minute {
		cfg.AssertionTTL = 10 * time.Minute
	}
	if cfg.MaxChain <= 0 {
		cfg.MaxChain = 8
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Log.With("component", "authz"),
		dpop:    &dpop.Verifier{Replay: cfg.Meta, Clock: cfg.Clock},
		limiter: newLimiter(cfg.Clock),
	}
	return s, nil
}

// Issuer returns the issuer URL.
func (s *Server) Issuer() string { return s.cfg.Issuer }

func (s *Server) now() time.Time { return s.cfg.Clock() }

// Handler returns the authorization server's endpoints. A request with a
// method an endpoint does not serve is answered 405 with an Allow header and
// a JSON error (method_not_allowed, in the RFC 6749 §5.2 shape of the AS's
// other errors), never the mux's plain text.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	route := func(path string, h http.HandlerFunc, methods ...string) {
		for _, m := range methods {
			mux.HandleFunc(m+" "+path, h)
		}
		allow := strings.Join(methods, ", ")
		if methods[0] == http.MethodGet { // a GET pattern serves HEAD too
			allow = "GET, HEAD" + strings.TrimPrefix(allow, "GET")
		}
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			writeOAuthError(w, oerr(http.StatusMethodNotAllowed, "method_not_allowed", "this endpoint answers "+allow+" only"))
		})
	}
	route(federation.PathASMetadata, s.metadata, http.MethodGet)
	route(PathJWKS, s.jwks, http.MethodGet)
	route(PathAuthorize, s.authorize, http.MethodGet, http.MethodPost)
	route(PathToken, s.token, http.MethodPost)
	route(PathRevoke, s.revoke, http.MethodPost)
	route(PathDeviceAuthz, s.deviceAuthorization, http.MethodPost)
	route(PathDevice, s.device, http.MethodGet, http.MethodPost)
	return mux
}

func (s *Server) metadata(w http.ResponseWriter, r *http.Request) {
	iss := s.cfg.Issuer
	// Both endpoints authenticate clients with authenticateClient: a
	// public client by its client_id alone, a confidential one by
	// private_key_jwt.
	authMethods, authAlgs := []string{"none", "private_key_jwt"}, []string{"ES256", "EdDSA"}
	writeJSON(w, http.StatusOK, federation.ASMetadata{
		Issuer: iss, AuthorizationEndpoint: iss + PathAuthorize, TokenEndpoint: iss + PathToken,
		JWKSURI: iss + PathJWKS, RevocationEndpoint: iss + PathRevoke, DeviceAuthorizationEndpoint: iss + PathDeviceAuthz,
		RevocationEndpointAuthMethods:     authMethods,
		RevocationEndpointAuthSigningAlgs: authAlgs,
		ResponseTypesSupported:            []string{"code"},
		GrantTypesSupported:               []string{"authorization_code", "refresh_token", GrantDeviceCode, federation.GrantTokenExch},
		CodeChallengeMethodsSupported:     []string{"S256"},
		TokenEndpointAuthMethodsSupported: authMethods,
		TokenEndpointAuthSigningAlgs:      authAlgs,
		DPoPSigningAlgValuesSupported:     []string{"ES256", "EdDSA"},
		ScopesSupported:                   []string{ScopeMail, federation.ScopeInternetMail, federation.ScopeFetch},
		AuthorizationResponseIssParameter: true,
	})
}

func (s *Server) jwks(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=300")
	b, _ := json.Marshal(s.cfg.Keys.PublicJWKS())
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Write(b)
}

// oauthError is an RFC 6749 §5.2 error.
type oauthError struct {
	Status      int    `json:"-"`
	Code        string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

func (e *oauthError) Error() string { return e.Code + ": " + e.Description }

func oerr(status int, code, desc string) *oauthError {
	return &oauthError{Status: status, Code: code, Description: desc}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

func writeOAuthError(w http.ResponseWriter, e *oauthError) {
	if e.Status == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="pullmail"`)
	}
	writeJSON(w, e.Status, e)
}

// secret returns a new random secret with a prefix, and its SHA-256.
func secret(prefix string) (string, []byte) {
	var b [32]byte
	rand.Read(b[:])
	s := prefix + base64.RawURLEncoding.EncodeToString(b[:])
	h := sha256.Sum256([]byte(s))
	return s, h[:]
}

func hashSecret(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func randomID() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
