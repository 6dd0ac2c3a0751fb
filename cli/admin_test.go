package cli

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/server"
)

// TestUserDelThenAdd: 'pullmail user del' then 'user add' of the same
// address makes a new account with the default forwarding policies and no
// forwarding rule, whatever the old one had (its rule forwarded the new
// account's mail to the old target).
func TestUserDelThenAdd(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const carol = "carol@c.test"
	runAdmin(t, "user", "add", "--data", dir, carol, "--password", "long enough")
	runAdmin(t, "user", "add", "--data", dir, "erin@c.test", "--password", "long enough")
	runAdmin(t, "user", "forwarding", "--data", dir, carol, "deny", "--auto", "allow")
	st, err := server.OpenMeta(ctx, dir, "")
	if err != nil {
		t.Fatal(err)
	}
	var oldID int64
	if err := st.Update(ctx, func(tx meta.Tx) error { // the rule, as the mailbox API stores it
		u, err := tx.UserByAddress(ctx, carol)
		if err != nil {
			return err
		}
		oldID = u.ID
		return tx.SetUserSetting(ctx, u.ID, mailbox.SettingAutoForward, `{"to":["erin@c.test"]}`)
	}); err != nil {
		t.Fatal(err)
	}
	st.Close()

	runAdmin(t, "user", "del", "--data", dir, carol)
	runAdmin(t, "user", "add", "--data", dir, carol, "--password", "another one")

	env, out, errb := testEnv(nil, false)
	if code := Main(ctx, env, []string{"user", "forwarding", "--data", dir, carol, "--json"}); code != 0 {
		t.Fatalf("user forwarding: exit %d: %s", code, errb)
	}
	var p ForwardingPolicy
	if err := json.Unmarshal(out.Bytes(), &p); err != nil || p != (ForwardingPolicy{Address: carol, Forwarding: "allow", Auto: "deny"}) {
		t.Errorf("the new account's policy: %+v (%v), want the defaults: forwarding allow, auto deny", p, err)
	}
	st, err = server.OpenMeta(ctx, dir, "")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	u, err := st.UserByAddress(ctx, carol)
	if err != nil || u.ID == oldID {
		t.Fatalf("the new account: %+v, %v; want an ID other than %d", u, err, oldID)
	}
	if v, err := st.UserSetting(ctx, u.ID, mailbox.SettingAutoForward); !errors.Is(err, meta.ErrNotFound) {
		t.Errorf("the new account's forwarding rule: %q, %v; want none", v, err)
	}
}
