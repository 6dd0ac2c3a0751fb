package authz_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/pullmail/pullmail/authz"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/federation"
	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/meta"
)

// TestUserDeletedAndAddedAgain: after the admin deletes a user and adds one
// at the same address (pullmail user del, user add), nothing of the old
// account reaches the new one: its access tokens (Bearer and DPoP-bound,
// still within their 5 minutes) are refused with invalid_token, its refresh
// token is gone, and the new account has the default forwarding policies
// and no forwarding rule (the old one's rule forwarded to the old target).
func TestUserDeletedAndAddedAgain(t *testing.T) {
	e := newEnv(t, "a.test")
	ctx := context.Background()
	e.d.AddUser(t, "bob@a.test")
	k := newDPoPKey(t)
	bearerTok := e.login(t, nil)
	dpopTok := e.login(t, e.proof(t, k, http.MethodPost, authz.PathToken, ""))
	if c := claimsOf(t, bearerTok.AccessToken); c.UserID != e.uid || c.Subject != e.user {
		t.Fatalf("the access token names uid %d sub %q, want %d %q", c.UserID, c.Subject, e.uid, e.user)
	}
	old := e.d.Client(t, e.d.Token(t, e.user, 0))
	setUserSetting(t, e.d, e.user, federation.SettingAutoForwarding, "allow")
	if _, err := old.SetAutoForward(ctx, mailbox.AutoForwardRequest{To: []string{"bob@a.test"}}); err != nil {
		t.Fatal(err)
	}
	setUserSetting(t, e.d, e.user, federation.SettingForwarding, "deny")
	e.wantMe(t, bearer(bearerTok.AccessToken))
	e.wantMe(t, e.dpopAuth(t, k, dpopTok.AccessToken))

	// pullmail user del, then user add.
	if err := e.d.Server.Meta.Update(ctx, func(tx meta.Tx) error {
		u, err := tx.UserByAddress(ctx, e.user)
		if err != nil {
			return err
		}
		return tx.DeleteUser(ctx, u.ID)
	}); err != nil {
		t.Fatal(err)
	}
	fresh := e.d.AddUser(t, e.user)
	u, err := e.d.Server.Meta.UserByAddress(ctx, e.user)
	if err != nil || u.ID == e.uid {
		t.Fatalf("the new user: %+v, %v; want an ID other than %d", u, err, e.uid)
	}

	for name, hdr := range map[string]http.Header{"Bearer": bearer(bearerTok.AccessToken),
		"DPoP": e.dpopAuth(t, k, dpopTok.AccessToken)} {
		t.Run("old "+name+" access token", func(t *testing.T) {
			e.wantRefused(t, hdr, "invalid_token")
		})
	}
	if err := authenticate(e, bearer(bearerTok.AccessToken)); errs.CodeOf(err) != "invalid_token" || errs.KindOf(err) != errs.Unauthorized {
		t.Errorf("Authenticator: %v, want invalid_token", err)
	}
	wantOAuthError(t, e.refresh(t, bearerTok.RefreshToken, nil), 400, "invalid_grant")
	if _, err := old.Me(ctx); errs.CodeOf(err) != "invalid_token" {
		t.Errorf("the old account's admin token: %v, want invalid_token", err)
	}

	af, err := fresh.AutoForward(ctx)
	if err != nil || af.Enabled || len(af.To) != 0 || af.Allowed {
		t.Errorf("the new account's automatic forwarding: %+v, %v; want no rule, not allowed", af, err)
	}
	for _, name := range []string{federation.SettingForwarding, federation.SettingAutoForwarding, mailbox.SettingAutoForward} {
		if v, err := e.d.Server.Meta.UserSetting(ctx, u.ID, name); !errors.Is(err, meta.ErrNotFound) {
			t.Errorf("the new account's %s = %q, %v; want unset", name, v, err)
		}
	}
	if denied, err := federation.ForwardingDenied(ctx, e.d.Server.Meta, u.ID); err != nil || denied {
		t.Errorf("the new account's forwarding is denied (%v, %v): want the default, allowed", denied, err)
	}

	// The new account signs in as itself.
	e.uid = u.ID
	tok := e.login(t, nil)
	if c := claimsOf(t, tok.AccessToken); c.UserID != u.ID {
		t.Errorf("the new access token names uid %d, want %d", c.UserID, u.ID)
	}
	e.wantMe(t, bearer(tok.AccessToken))
}
