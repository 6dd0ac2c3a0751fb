package meta_test

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/pullmail/pullmail/meta"
)

// TestUserFolderName: what a user may call a folder of their own, and what
// meta.Folder.Valid then accepts.
func TestUserFolderName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"Receipts", true},
		{"Reçus 2026", true},
		{"Re: travel", true},
		{"家族", true},
		{strings.Repeat("é", meta.MaxFolderName), true},
		{strings.Repeat("é", meta.MaxFolderName+1), false},
		{"", false},
		{" lead", false},
		{"trail ", false},
		{"a/b", false},
		{"tab\there", false},
		{"bidi\u202eevil", false},
		{"zero\u200bwidth", false},
		{"\xff", false},
		{"Inbox", false},
		{"TRASH", false},
		{"archive", false},
	}
	for _, tt := range tests {
		err := meta.UserFolderName(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("UserFolderName(%q) = %v, want ok %v", tt.name, err, tt.ok)
		}
		if tt.ok != meta.Folder(tt.name).Valid() && !meta.Folder(tt.name).System() {
			t.Errorf("Folder(%q).Valid() = %v", tt.name, !tt.ok)
		}
	}
	for _, f := range meta.Folders {
		if !f.System() || !f.Valid() {
			t.Errorf("system folder %q: System %v, Valid %v", f, f.System(), f.Valid())
		}
	}
}

// FuzzUserFolderName holds every accepted name to the rules a listing, a
// page token and a terminal rely on.
func FuzzUserFolderName(f *testing.F) {
	for _, s := range []string{"Receipts", "a/b", " x", "Inbox", "bidi\u202e", "\xff", strings.Repeat("x", 65)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if meta.UserFolderName(name) != nil {
			return
		}
		if name == "" || !utf8.ValidString(name) || utf8.RuneCountInString(name) > meta.MaxFolderName ||
			strings.ContainsRune(name, '/') || strings.TrimSpace(name) != name || meta.Folder(name).System() {
			t.Fatalf("accepted %q", name)
		}
		for _, r := range name {
			if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
				t.Fatalf("accepted %q with %U", name, r)
			}
		}
		if !meta.Folder(name).Valid() {
			t.Fatalf("UserFolderName accepts %q, Folder.Valid refuses it", name)
		}
	})
}
