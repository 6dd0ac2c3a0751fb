package authz

import (
	"context"
	"crypto/subtle"
	"errors"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pullmail/pullmail/account"
	"github.com/pullmail/pullmail/meta"
)

// csrfCookie holds the login forms' CSRF token (double submit). The
// __Host- prefix pins it to this origin: no subdomain can plant one.
const csrfCookie = "__Host-pm_csrf"

// pkceChallenge is a base64url SHA-256: 43 characters (RFC 7636 §4.2).
var pkceChallenge = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

// pkceVerifier is RFC 7636 §4.1's code_verifier.
var pkceVerifier = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`)

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} · Pullmail</title>
<style>
body{font:16px/1.5 system-ui,sans-serif;background:#f4f5f7;color:#1b1f24;margin:0;display:flex;min-height:100vh;align-items:center;justify-content:center}
main{background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 4px #0003;width:min(22rem,90vw)}
h1{font-size:1.4rem;margin:0 0 1rem}label{display:block;margin:.8rem 0 .2rem;font-weight:600}
input{width:100%;box-sizing:border-box;padding:.6rem;border:1px solid #6b7280;border-radius:4px;font-size:1rem}
input:focus,button:focus{outline:3px solid #1d4ed8;outline-offset:2px}
button{margin-top:1.2rem;width:100%;padding:.7rem;background:#1d4ed8;color:#fff;border:0;border-radius:4px;font-size:1rem;cursor:pointer}
.err{background:#fde8e8;color:#8a1c1c;padding:.6rem;border-radius:4px}.note{color:#374151}
</style></head><body><main>
<h1>{{.Title}}</h1>
{{if .Error}}<p class="err" role="alert">{{.Error}}</p>{{end}}
{{if .Note}}<p class="note">{{.Note}}</p>{{end}}
{{if .Form}}<form method="post" action="{{.Action}}">
<input type="hidden" name="csrf" value="{{.CSRF}}">
{{range $k, $v := .Hidden}}<input type="hidden" name="{{$k}}" value="{{$v}}">
{{end}}{{if .AskCode}}<label for="user_code">Code shown on your device</label>
<input id="user_code" name="user_code" value="{{.UserCode}}" autocomplete="off" required autocapitalize="characters">
{{end}}<label for="username">Email address</label>
<input id="username" name="username" type="email" value="{{.Username}}" autocomplete="username" required autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>{{end}}
</main></body></html>
`))

type page struct {
	Title, Error, Note, Action, CSRF, Username, UserCode string
	Form, AskCode                                        bool
	Hidden                                               map[string]string
}

// renderPage writes a login-style page with the headers RFC 9700 §4.16
// and the security checklist ask for: no framing, no referrer, no caching.
func (s *Server) renderPage(w http.ResponseWriter, status int, p page) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	w.WriteHeader(status)
	pageTmpl.Execute(w, p)
}

// csrfToken returns the request's CSRF token, setting a new cookie if it
// has none.
func (s *Server) csrfToken(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(csrfCookie); err == nil && len(c.Value) == 43 {
		return c.Value
	}
	tok := randomID() + randomID()[:21]
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: tok, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	return tok
}

// csrfOK checks the double-submitted token of a form post.
func csrfOK(r *http.Request) bool {
	c, err := r.Cookie(csrfCookie)
	form := r.PostFormValue("csrf")
	return err == nil && len(c.Value) == 43 && subtle.ConstantTimeCompare([]byte(c.Value), []byte(form)) == 1
}

// authzRequest is a validated authorization request.
type authzRequest struct {
	client      meta.Client
	redirectURI string
	state       string
	challenge   string
	scope       string
}

var authzParams = []string{"response_type", "client_id", "redirect_uri", "state", "code_challenge", "code_challenge_method", "scope"}

// parseAuthz validates an authorization request (RFC 6749 §4.1.1). Until
// the client and redirect URI are known good it returns a page error
// (never redirect to an unchecked URI: RFC 9700 §4.11); after that, an
// error to send back to the client through the redirect.
func (s *Server) parseAuthz(ctx context.Context, q url.Values) (req *authzRequest, pageErr string, redirectErr *oauthError) {
	for _, k := range authzParams {
		if len(q[k]) > 1 {
			return nil, "The request repeats the parameter " + k + ".", nil
		}
	}
	c, err := s.cfg.Meta.Client(ctx, q.Get("client_id"))
	if err != nil {
		return nil, "This application is not registered here.", nil
	}
	ru := q.Get("redirect_uri")
	if !slices.ContainsFunc(c.RedirectURIs, func(reg string) bool { return RedirectURIMatches(reg, ru) }) {
		return nil, "The application asked to return to an address it has not registered.", nil
	}
	req = &authzRequest{client: c, redirectURI: ru, state: q.Get("state")}
	if rt := q.Get("response_type"); rt != "code" {
		return req, "", oerr(0, "unsupported_response_type", "only response_type=code is supported")
	}
	req.challenge = q.Get("code_challenge")
	method := q.Get("code_challenge_method")
	switch {
	case req.challenge == "" && c.Public:
		return req, "", oerr(0, "invalid_request", "PKCE is required: send code_challenge with code_challenge_method=S256")
	case req.challenge != "" && method != "S256":
		return req, "", oerr(0, "invalid_request", "code_challenge_method must be S256")
	case req.challenge != "" && !pkceChallenge.MatchString(req.challenge):
		return req, "", oerr(0, "invalid_request", "code_challenge must be 43 base64url characters")
	}
	req.scope = q.Get("scope")
	if req.scope == "" {
		req.scope = ScopeMail
	}
	for _, sc := range strings.Fields(req.scope) {
		if sc != ScopeMail {
			return req, "", oerr(0, "invalid_scope", "a user may grant only the scope "+ScopeMail)
		}
	}
	return req, "", nil
}

// RedirectURIMatches reports whether an authorization request's
// redirect_uri matches a registered one: the exact same string (RFC 9700
// §2.1), or, for a loopback IP literal, the same string but for the port.
// RFC 8252 §7.3 has a native app listen on whatever port the OS gives it,
// so a registered http://127.0.0.1/cb or http://[::1]/cb (with a port or
// without) matches that URI with any port, and the same scheme, host, path
// and query, byte for byte. Nothing else is relaxed: not https, not other
// hosts, not "localhost", which RFC 8252 §8.3 does not recommend (a name can
// resolve elsewhere, and listening on it can be hijacked); register such a
// URI with its exact port.
func RedirectURIMatches(registered, requested string) bool {
	if registered == requested {
		return true
	}
	reg, ok := withoutLoopbackPort(registered)
	if !ok {
		return false
	}
	req, ok := withoutLoopbackPort(requested)
	return ok && req == reg
}

// withoutLoopbackPort returns an http URI of a loopback IP literal with its
// port (1 to 65535, decimal, no leading zero) taken out, if it is one: what
// follows the authority must be empty or start a path or a query, so that
// userinfo ("http://127.0.0.1:80@evil/") or anything else after the port
// makes it no loopback URI at all.
func withoutLoopbackPort(u string) (string, bool) {
	for _, host := range []string{"http://127.0.0.1", "http://[::1]"} {
		rest, ok := strings.CutPrefix(u, host)
		if !ok {
			continue
		}
		if p, ok := strings.CutPrefix(rest, ":"); ok {
			end := strings.IndexFunc(p, func(r rune) bool { return r < '0' || r > '9' })
			if end < 0 {
				end = len(p)
			}
			n, err := strconv.Atoi(p[:end])
			if err != nil || n < 1 || n > 65535 || p[0] == '0' {
				return "", false
			}
			rest = p[end:]
		}
		if rest != "" && rest[0] != '/' && rest[0] != '?' {
			return "", false
		}
		return host + rest, true
	}
	return "", false
}

// redirect sends the user agent back to the client (303 after a POST), with
// the issuer (RFC 9207) and the state.
func (s *Server) redirect(w http.ResponseWriter, r *http.Request, req *authzRequest, params url.Values) {
	if req.state != "" {
		params.Set("state", req.state)
	}
	params.Set("iss", s.cfg.Issuer)
	sep := "?"
	if strings.Contains(req.redirectURI, "?") {
		sep = "&"
	}
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, req.redirectURI+sep+params.Encode(), http.StatusSeeOther)
}

// authorize serves the login page (GET) and takes its answer (POST).
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	q := r.URL.Query()
	if r.Method == http.MethodPost {
		if err := r.ParseForm(); err != nil {
			s.renderPage(w, http.StatusBadRequest, page{Title: "Sign in", Error: "The form could not be read."})
			return
		}
		q = r.PostForm
	}
	req, pageErr, rerr := s.parseAuthz(r.Context(), q)
	if pageErr != "" {
		s.renderPage(w, http.StatusBadRequest, page{Title: "Sign in", Error: pageErr})
		return
	}
	if rerr != nil {
		s.redirect(w, r, req, url.Values{"error": {rerr.Code}, "error_description": {rerr.Description}})
		return
	}
	hidden := map[string]string{}
	for _, k := range authzParams {
		if v := q.Get(k); v != "" {
			hidden[k] = v
		}
	}
	form := page{Title: "Sign in to " + s.cfg.Domain, Form: true, Action: PathAuthorize, Hidden: hidden,
		Note: req.client.Name + " asks to read and send your mail."}
	if r.Method == http.MethodGet {
		form.CSRF = s.csrfToken(w, r)
		s.renderPage(w, http.StatusOK, form)
		return
	}
	if !csrfOK(r) {
		form.CSRF = s.csrfToken(w, r)
		form.Error = "The form expired. Please sign in again."
		s.renderPage(w, http.StatusForbidden, form)
		return
	}
	form.CSRF = s.csrfToken(w, r)
	user, status, msg := s.login(r, r.PostFormValue("username"), r.PostFormValue("password"))
	if msg != "" {
		form.Error, form.Username = msg, r.PostFormValue("username")
		s.renderPage(w, status, form)
		return
	}
	code, hash := secret("pmc_")
	g := meta.Grant{Hash: hash, Kind: meta.GrantCode, Family: randomID(), ClientID: req.client.ID, UserID: user.ID,
		Scope: req.scope, RedirectURI: req.redirectURI, Challenge: req.challenge, Created: s.now(), Expires: s.now().Add(s.cfg.CodeTTL)}
	if err := s.cfg.Meta.Update(r.Context(), func(tx meta.Tx) error { return tx.AddGrant(r.Context(), g) }); err != nil {
		s.log.Error("storing an authorization code", "err", err)
		s.redirect(w, r, req, url.Values{"error": {"server_error"}})
		return
	}
	s.log.Info("signed in", "user", user.Address, "client", req.client.ID)
	s.redirect(w, r, req, url.Values{"code": {code}})
}

// login checks a user's credentials under the rate limits. It returns the
// user, or an HTTP status and a message for the page.
func (s *Server) login(r *http.Request, username, password string) (meta.User, int, string) {
	ip := clientIP(r)
	addr, err := account.NormalizeAddress(strings.TrimSpace(username))
	if err != nil {
		addr = strings.ToLower(strings.TrimSpace(username))
	}
	if !s.limiter.allow("ip:"+ip, 50) || !s.limiter.allow("user:"+addr, 5) {
		return meta.User{}, http.StatusTooManyRequests, "Too many failed attempts. Wait a few minutes and try again."
	}
	fail := func() (meta.User, int, string) {
		s.limiter.fail("ip:" + ip)
		s.limiter.fail("user:" + addr)
		s.log.Warn("failed sign-in", "user", addr, "peer", ip)
		return meta.User{}, http.StatusUnauthorized, "The email address or the password is wrong."
	}
	u, err := s.cfg.Meta.UserByAddress(r.Context(), addr)
	if errors.Is(err, meta.ErrNotFound) {
		account.CheckPassword(dummyHash(), password) // the same time as a real check
		return fail()
	} else if err != nil {
		s.log.Error("user lookup", "err", err)
		return meta.User{}, http.StatusServiceUnavailable, "The server cannot check your password right now."
	}
	ok, err := account.CheckPassword(u.PasswordHash, password)
	if err != nil || !ok {
		return fail()
	}
	s.limiter.reset("user:" + addr)
	return u, 0, ""
}

// dummyHash is checked against for unknown users, so that a login's timing
// does not tell whether the address exists. It is made on first use: every
// process that links this package (the CLI too) would otherwise pay an
// argon2id hash at start.
var dummyHash = sync.OnceValue(func() string {
	h, _ := account.HashPassword("not a password of anyone")
	return h
})

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// limiter counts failures per key in a sliding window (15 minutes). It is
// in memory: one server process guards its own logins.
type limiter struct {
	mu    sync.Mutex
	clock func() time.Time
	fails map[string][]time.Time
}

const limitWindow = 15 * time.Minute

func newLimiter(clock func() time.Time) *limiter {
	return &limiter{clock: clock, fails: map[string][]time.Time{}}
}

func (l *limiter) recent(key string) []time.Time {
	cut := l.clock().Add(-limitWindow)
	ts := l.fails[key]
	i := 0
	for i < len(ts) && ts[i].Before(cut) {
		i++
	}
	ts = ts[i:]
	if len(ts) == 0 {
		delete(l.fails, key)
	} else {
		l.fails[key] = ts
	}
	return ts
}

func (l *limiter) allow(key string, max int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.recent(key)) < max
}

func (l *limiter) fail(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fails[key] = append(l.recent(key), l.clock())
	if len(l.fails) > 100000 { // bound memory under a spray of keys
		for k := range l.fails {
			l.recent(k)
		}
	}
}

func (l *limiter) reset(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.fails, key)
}
