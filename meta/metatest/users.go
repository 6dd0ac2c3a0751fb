package metatest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pullmail/pullmail/meta"
)

// testUserSettings: a user's settings are theirs alone, an empty value
// unsets one, and a user that does not exist has none and can be given
// none.
func testUserSettings(t *testing.T, s meta.Store) {
	ctx := t.Context()
	bob := addUser(t, s, "bob@example.org")
	alice := addUser(t, s, "alice@example.org")
	_, err := s.UserSetting(ctx, bob.ID, "forwarding")
	wantErr(t, "unset user setting", err, meta.ErrNotFound)
	for _, v := range []string{"deny", "allow"} {
		update(t, s, func(ctx context.Context, tx meta.Tx) error { return tx.SetUserSetting(ctx, bob.ID, "forwarding", v) })
		if got, err := s.UserSetting(ctx, bob.ID, "forwarding"); err != nil || got != v {
			t.Errorf("UserSetting after SetUserSetting(%q) = %q, %v", v, got, err)
		}
	}
	_, err = s.UserSetting(ctx, alice.ID, "forwarding")
	wantErr(t, "another user's setting", err, meta.ErrNotFound)
	_, err = s.UserSetting(ctx, bob.ID, "other")
	wantErr(t, "another setting", err, meta.ErrNotFound)
	if _, err := s.Setting(ctx, "forwarding"); !errors.Is(err, meta.ErrNotFound) {
		t.Errorf("a user setting is visible as a domain setting: %v", err)
	}

	update(t, s, func(ctx context.Context, tx meta.Tx) error { return tx.SetUserSetting(ctx, bob.ID, "forwarding", "") })
	_, err = s.UserSetting(ctx, bob.ID, "forwarding")
	wantErr(t, "setting unset by an empty value", err, meta.ErrNotFound)

	nobody := bob.ID + alice.ID + 100
	for _, v := range []string{"deny", ""} {
		err = s.Update(ctx, func(tx meta.Tx) error { return tx.SetUserSetting(ctx, nobody, "forwarding", v) })
		wantErr(t, "SetUserSetting("+v+") of a user that does not exist", err, meta.ErrNotFound)
	}
	_, err = s.UserSetting(ctx, nobody, "forwarding")
	wantErr(t, "setting of a user that does not exist", err, meta.ErrNotFound)
}

// testDeleteUserEverything: DeleteUser leaves nothing of the user behind,
// whatever the row (token, setting, grant, upload, message, envelope,
// change), and a new user at the same address gets a new ID and starts
// from nothing; the other user keeps all of theirs.
func testDeleteUserEverything(t *testing.T, s meta.Store) {
	ctx := t.Context()
	now := time.Now().UTC()
	bob := addUser(t, s, "bob@example.org")
	alice := addUser(t, s, "alice@example.org")
	grant := func(hash string, kind meta.GrantKind, userID int64, userCode string) meta.Grant {
		return meta.Grant{Hash: []byte(hash), Kind: kind, Family: "fam-" + hash, ClientID: "app", UserID: userID,
			Scope: "mail", UserCode: userCode, Created: now, Expires: now.Add(time.Hour)}
	}
	// Everything a user can have, for each of them.
	for _, u := range []meta.User{bob, alice} {
		a := u.Address
		update(t, s, func(ctx context.Context, tx meta.Tx) error {
			if u.ID == bob.ID {
				if err := tx.AddClient(ctx, meta.Client{ID: "app", Name: "App", Public: true}); err != nil {
					return err
				}
			}
			if err := tx.AddToken(ctx, meta.Token{Hash: []byte("token:" + a), UserID: u.ID, Label: "cli"}); err != nil {
				return err
			}
			for _, name := range []string{"forwarding", "autoforwarding", "autoforward"} {
				if err := tx.SetUserSetting(ctx, u.ID, name, "set by "+a); err != nil {
					return err
				}
			}
			for _, g := range []meta.Grant{grant("code:"+a, meta.GrantCode, u.ID, ""), grant("refresh:"+a, meta.GrantRefresh, u.ID, ""),
				grant("device:"+a, meta.GrantDevice, u.ID, "CODE-"+a)} {
				if err := tx.AddGrant(ctx, g); err != nil {
					return err
				}
			}
			if err := tx.AddUpload(ctx, u.ID, meta.Ref{ID: rid("upload:" + a), Size: 1}); err != nil {
				return err
			}
			if err := tx.InsertMessage(ctx, message(u.ID, "m:"+a, meta.Inbox, day(1), meta.Ref{ID: rid("ref:" + a), Size: 1})); err != nil {
				return err
			}
			return tx.SetEnvelope(ctx, "m:"+a, []byte(`{}`))
		})
	}
	// A device code nobody approved yet is no one's.
	pending := grant("device:pending", meta.GrantDevice, 0, "PEND-ING0")
	update(t, s, func(ctx context.Context, tx meta.Tx) error { return tx.AddGrant(ctx, pending) })

	update(t, s, func(ctx context.Context, tx meta.Tx) error { return tx.DeleteUser(ctx, bob.ID) })
	bob2 := addUser(t, s, bob.Address)
	if bob2.ID == bob.ID {
		t.Fatalf("the new user at %s got the deleted user's ID %d", bob.Address, bob.ID)
	}

	for _, tc := range []struct {
		user meta.User
		gone bool
	}{{bob, true}, {bob2, true}, {alice, false}} {
		a := tc.user.Address
		check := func(what string, err error) {
			t.Helper()
			if tc.gone && !errors.Is(err, meta.ErrNotFound) {
				t.Errorf("user %d (%s): %s after DeleteUser: %v, want ErrNotFound", tc.user.ID, a, what, err)
			} else if !tc.gone && err != nil {
				t.Errorf("other user %s: %s after DeleteUser: %v", a, what, err)
			}
		}
		tok, err := s.TokenByHash(ctx, []byte("token:"+a))
		if err == nil && tok.UserID != tc.user.ID {
			err = meta.ErrNotFound
		}
		check("token", err)
		for _, name := range []string{"forwarding", "autoforwarding", "autoforward"} {
			_, err := s.UserSetting(ctx, tc.user.ID, name)
			check("setting "+name, err)
		}
		for _, h := range []string{"code:" + a, "refresh:" + a, "device:" + a} {
			_, err := s.GrantByHash(ctx, []byte(h))
			check("grant "+h, err)
		}
		_, err = s.GrantByUserCode(ctx, "CODE-"+a)
		check("device grant by user code", err)
		_, err = s.Message(ctx, tc.user.ID, "m:"+a)
		check("message", err)
		_, err = s.Envelope(ctx, tc.user.ID, "m:"+a)
		check("envelope", err)
		if held, err := s.Holds(ctx, tc.user.ID, rid("upload:"+a)); err != nil || held == tc.gone {
			t.Errorf("user %d (%s): Holds(upload) = %v, %v", tc.user.ID, a, held, err)
		}
		if cs := changes(t, s, tc.user.ID, 0); (len(cs) == 0) != tc.gone {
			t.Errorf("user %d (%s): changes %v", tc.user.ID, a, cs)
		}
	}
	for _, id := range []string{"upload:bob@example.org", "ref:bob@example.org"} {
		if ref, err := s.Referenced(ctx, rid(id)); err != nil || ref {
			t.Errorf("Referenced(%s) after DeleteUser = %v, %v", id, ref, err)
		}
	}
	if g, err := s.GrantByHash(ctx, pending.Hash); err != nil || g.UserID != 0 {
		t.Errorf("an unapproved device grant after DeleteUser: %+v, %v", g, err)
	}
}
