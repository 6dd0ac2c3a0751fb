package authz

import (
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/pullmail/pullmail/dpop"
	"github.com/pullmail/pullmail/meta"
)

// userCodeAlphabet has no vowels (no words) and no look-alikes (RFC 8628
// §6.1): 20 letters, 8 of them give about 34 bits.
const userCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ"

func newUserCode() string {
	var b [8]byte
	rand.Read(b[:])
	out := make([]byte, 0, 9)
	for i, c := range b {
		if i == 4 {
			out = append(out, '-')
		}
		out = append(out, userCodeAlphabet[int(c)%len(userCodeAlphabet)])
	}
	return string(out)
}

// normalizeUserCode accepts what people type: any case, with or without
// the dash or spaces.
func normalizeUserCode(s string) string {
	s = strings.ToUpper(strings.NewReplacer("-", "", " ", "").Replace(s))
	if len(s) != 8 {
		return ""
	}
	return s[:4] + "-" + s[4:]
}

// deviceResponse is RFC 8628 §3.2.
type deviceResponse struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int64  `json:"expires_in"`
	Interval                int64  `json:"interval"`
}

func (s *Server) deviceAuthorization(w http.ResponseWriter, r *http.Request) {
	c, ok := s.clientRequest(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	scope := r.PostFormValue("scope")
	if scope == "" {
		scope = ScopeMail
	}
	if scope != ScopeMail {
		writeOAuthError(w, oerr(400, "invalid_scope", "a device may ask only for "+ScopeMail))
		return
	}
	dc, hash := secret("pmd_")
	var code string
	for i := 0; ; i++ {
		code = newUserCode()
		g := meta.Grant{Hash: hash, Kind: meta.GrantDevice, Family: randomID(), ClientID: c.ID, Scope: scope, UserCode: code,
			Created: s.now(), Expires: s.now().Add(s.cfg.DeviceTTL)}
		err := s.cfg.Meta.Update(ctx, func(tx meta.Tx) error { return tx.AddGrant(ctx, g) })
		if err == nil {
			break
		}
		if !errors.Is(err, meta.ErrExists) || i == 5 {
			writeOAuthError(w, oerr(503, "temporarily_unavailable", "try again"))
			return
		}
	}
	uri := s.cfg.Issuer + PathDevice
	writeJSON(w, http.StatusOK, deviceResponse{DeviceCode: dc, UserCode: code, VerificationURI: uri,
		VerificationURIComplete: uri + "?user_code=" + code, ExpiresIn: int64(s.cfg.DeviceTTL.Seconds()), Interval: int64(s.cfg.DeviceInterval / time.Second)})
}

// device is the page where a person approves a device by its code.
func (s *Server) device(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	form := page{Title: "Sign in a device", Form: true, AskCode: true, Action: PathDevice,
		Note: "Enter the code your device shows, then sign in."}
	if r.Method == http.MethodGet {
		form.UserCode = normalizeUserCode(r.URL.Query().Get("user_code"))
		form.CSRF = s.csrfToken(w, r)
		s.renderPage(w, http.StatusOK, form)
		return
	}
	if err := r.ParseForm(); err != nil || !csrfOK(r) {
		form.CSRF = s.csrfToken(w, r)
		form.Error = "The form expired. Please try again."
		s.renderPage(w, http.StatusForbidden, form)
		return
	}
	form.CSRF = s.csrfToken(w, r)
	form.UserCode, form.Username = normalizeUserCode(r.PostFormValue("user_code")), r.PostFormValue("username")
	ctx := r.Context()
	user, status, msg := s.login(r, r.PostFormValue("username"), r.PostFormValue("password"))
	if msg != "" {
		form.Error = msg
		s.renderPage(w, status, form)
		return
	}
	var bad string
	err := s.cfg.Meta.Update(ctx, func(tx meta.Tx) error {
		g, err := tx.GrantByUserCode(ctx, form.UserCode)
		if errors.Is(err, meta.ErrNotFound) || (err == nil && (g.Kind != meta.GrantDevice || g.Used || g.Revoked || g.UserID != 0 || !s.now().Before(g.Expires))) {
			bad = "That code is not valid (it may have expired). Start again on your device."
			return nil
		} else if err != nil {
			return err
		}
		g.UserID = user.ID
		return tx.UpdateGrant(ctx, g)
	})
	if err != nil {
		s.renderPage(w, http.StatusServiceUnavailable, page{Title: "Sign in a device", Error: "Please try again later."})
		return
	}
	if bad != "" {
		form.Error = bad
		s.renderPage(w, http.StatusBadRequest, form)
		return
	}
	s.log.Info("device approved", "user", user.Address)
	s.renderPage(w, http.StatusOK, page{Title: "Device signed in", Note: "You may close this window and return to your device."})
}

// grantDevice redeems an approved device code (RFC 8628 §3.4, §3.5).
func (s *Server) grantDevice(ctx context.Context, c client, proof *dpop.Proof, r *http.Request) (tokenResponse, *oauthError) {
	dc := r.PostFormValue("device_code")
	var resp tokenResponse
	var refusal *oauthError
	err := s.cfg.Meta.Update(ctx, func(tx meta.Tx) error {
		g, err := tx.GrantByHash(ctx, hashSecret(dc))
		if errors.Is(err, meta.ErrNotFound) || (err == nil && (g.Kind != meta.GrantDevice || g.ClientID != c.ID)) {
			refusal = oerr(400, "invalid_grant", "unknown device code")
			return nil
		} else if err != nil {
			return err
		}
		switch {
		case g.Used || g.Revoked:
			refusal = oerr(400, "invalid_grant", "the device code was already used")
			return tx.RevokeFamily(ctx, g.Family, s.now().Add(s.cfg.RefreshTTL))
		case !s.now().Before(g.Expires):
			refusal = oerr(400, "expired_token", "the device code has expired: start again")
			return nil
		case g.UserID == 0:
			refusal = oerr(400, "authorization_pending", "waiting for the user")
			return nil
		}
		resp, err = s.redeem(ctx, tx, c, g, g.Scope, proof)
		return err
	})
	if err != nil {
		return tokenResponse{}, oerr(500, "server_error", "the device code could not be redeemed")
	}
	return resp, refusal
}
