package sqlite

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/pullmail/pullmail/meta"
)

// TestMigrateUserSettings: migration 0006 moves the per-user settings kept
// as "NAME:ADDRESS" to the user who holds the address, drops those of an
// address no user holds (a deleted user's, which a new account at that
// address would have inherited) and the empty ones, and leaves the others.
func TestMigrateUserSettings(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "meta.db")
	db := migratedBefore(t, path, 6)
	for _, q := range []string{
		`INSERT INTO users (address, password_hash, created) VALUES ('carol@c.test', 'h', 1), ('erin@c.test', 'h', 1)`,
		`INSERT INTO settings (key, value) VALUES
			('domain', 'c.test'),
			('forwarding:carol@c.test', 'deny'),
			('autoforwarding:carol@c.test', 'allow'),
			('autoforward:carol@c.test', '{"to":["erin@c.test"]}'),
			('autoforwarding:erin@c.test', ''),
			('autoforwarding:gone@c.test', 'allow'),
			('autoforward:gone@c.test', '{"to":["x@y.test"]}'),
			('FORWARDING:erin@c.test', 'deny')`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	carol, err := s.UserByAddress(ctx, "carol@c.test")
	if err != nil {
		t.Fatal(err)
	}
	erin, err := s.UserByAddress(ctx, "erin@c.test")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		user  int64
		name  string
		value string // "" : unset
	}{
		{carol.ID, "forwarding", "deny"},
		{carol.ID, "autoforwarding", "allow"},
		{carol.ID, "autoforward", `{"to":["erin@c.test"]}`},
		{erin.ID, "autoforwarding", ""},
		{erin.ID, "forwarding", ""},
	} {
		got, err := s.UserSetting(ctx, tc.user, tc.name)
		if tc.value == "" {
			if !errors.Is(err, meta.ErrNotFound) {
				t.Errorf("user %d %s = %q, %v; want unset", tc.user, tc.name, got, err)
			}
		} else if err != nil || got != tc.value {
			t.Errorf("user %d %s = %q, %v; want %q", tc.user, tc.name, got, err, tc.value)
		}
	}
	for key, want := range map[string]string{"domain": "c.test", "FORWARDING:erin@c.test": "deny",
		"forwarding:carol@c.test": "", "autoforwarding:gone@c.test": "", "autoforward:gone@c.test": ""} {
		got, err := s.Setting(ctx, key)
		if want == "" {
			if !errors.Is(err, meta.ErrNotFound) {
				t.Errorf("setting %q = %q, %v after the migration; want it gone", key, got, err)
			}
		} else if err != nil || got != want {
			t.Errorf("setting %q = %q, %v; want %q kept", key, got, err, want)
		}
	}
	var rows int
	if err := rawDB(t, path).QueryRowContext(ctx, `SELECT count(*) FROM user_settings`).Scan(&rows); err != nil || rows != 3 {
		t.Errorf("user_settings has %d rows (%v), want 3", rows, err)
	}
}
