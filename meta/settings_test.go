package meta_test

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/meta/memstore"
)

func TestUserKeys(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	var uid int64
	if err := st.Update(ctx, func(tx meta.Tx) error {
		u, err := tx.AddUser(ctx, meta.User{Address: "alice@a.test", PasswordHash: "h"})
		uid = u.ID
		return err
	}); err != nil {
		t.Fatal(err)
	}
	raw := func(v string) {
		t.Helper()
		if err := st.Update(ctx, func(tx meta.Tx) error { return tx.SetUserSetting(ctx, uid, "k", v) }); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		stored   string
		def, out bool
	}{
		{"", true, true}, {"", false, false},
		{"allow", false, true}, {"allow", true, true},
		{"deny", true, false}, {"deny", false, false},
		{"maybe", true, true}, {"maybe", false, false}, // another word is the default
	} {
		raw(tc.stored)
		got, err := meta.Switch("k", tc.def).Get(ctx, st, uid)
		if err != nil || got != tc.out {
			t.Errorf("Switch(default %v) of %q = %v, %v; want %v", tc.def, tc.stored, got, err, tc.out)
		}
	}
	sw := meta.Switch("k", false)
	for _, on := range []bool{true, false} {
		if err := st.Update(ctx, func(tx meta.Tx) error { return sw.Set(ctx, tx, uid, on) }); err != nil {
			t.Fatal(err)
		}
		if got, err := sw.Get(ctx, st, uid); err != nil || got != on {
			t.Errorf("after Set(%v): %v, %v", on, got, err)
		}
	}

	type rule struct{ To []string }
	jk := meta.JSONKey[rule]("k")
	want := rule{To: []string{"bob@b.test"}}
	if err := st.Update(ctx, func(tx meta.Tx) error { return jk.Set(ctx, tx, uid, want) }); err != nil {
		t.Fatal(err)
	}
	if got, err := jk.Get(ctx, st, uid); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("JSONKey: %+v, %v", got, err)
	}
	if err := st.Update(ctx, func(tx meta.Tx) error { return jk.Clear(ctx, tx, uid) }); err != nil {
		t.Fatal(err)
	}
	if got, err := jk.Get(ctx, st, uid); err != nil || got.To != nil {
		t.Errorf("after Clear: %+v, %v; want the zero value", got, err)
	}
	raw("{not json")
	if _, err := jk.Get(ctx, st, uid); err == nil {
		t.Error("an unreadable stored value read as a value")
	}
	// No such user: unset for Get, ErrNotFound for Set.
	if got, err := meta.Switch("k", true).Get(ctx, st, uid+100); err != nil || !got {
		t.Errorf("Get of no user: %v, %v; want the default", got, err)
	}
	err := st.Update(ctx, func(tx meta.Tx) error { return sw.Set(ctx, tx, uid+100, true) })
	if !errors.Is(err, meta.ErrNotFound) {
		t.Errorf("Set of no user: %v, want ErrNotFound", err)
	}
}
