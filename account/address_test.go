package account

import (
	"net/mail"
	"strings"
	"testing"

	"github.com/pullmail/pullmail/errs"
)

func TestNormalizeAddress(t *testing.T) {
	long63 := strings.Repeat("a", 63)
	local64 := strings.Repeat("b", 64)
	// 64 + 1 + 189 = 254 characters.
	domain189 := long63 + "." + long63 + "." + strings.Repeat("c", 58) + ".de"
	tests := []struct {
		in, want string // want "" means refused
	}{
		{"alice@a.test", "alice@a.test"},
		{"Alice@Example.COM", "alice@example.com"},
		{"ALICE.SMITH@MAIL.EXAMPLE.ORG", "alice.smith@mail.example.org"},
		{"a+tag@a.test", "a+tag@a.test"},
		{"o'brien@a.test", "o'brien@a.test"},
		{"!#$%&'*+-/=?^_`{|}~@a.test", "!#$%&'*+-/=?^_`{|}~@a.test"},
		{"x@a-b.c-d.test", "x@a-b.c-d.test"},
		{"x@1.example", "x@1.example"},
		{"x@xn--bcher-kva.example", "x@xn--bcher-kva.example"},
		{local64 + "@" + domain189, local64 + "@" + domain189},
		{"x@" + long63 + ".test", "x@" + long63 + ".test"},

		// Not a bare addr-spec.
		{"", ""},
		{"alice", ""},
		{"@a.test", ""},
		{"alice@", ""},
		{"Alice <alice@a.test>", ""},
		{"<alice@a.test>", ""},
		{" alice@a.test", ""},
		{"alice@a.test ", ""},
		{"alice@a.test\n", ""},
		{"alice@a.test (Alice)", ""},
		{`"alice"@a.test`, ""},
		{`"john doe"@a.test`, ""},
		{"alice@[127.0.0.1]", ""},
		{"a@b@a.test", ""},
		{"alice@a.test,bob@a.test", ""},
		// Local part.
		{".alice@a.test", ""},
		{"alice.@a.test", ""},
		{"al..ice@a.test", ""},
		{"al(ice@a.test", ""},
		{"al\\ice@a.test", ""},
		{"al\"ice@a.test", ""},
		{"al,ice@a.test", ""},
		{"al;ice@a.test", ""},
		{"al\x00ice@a.test", ""},
		{"al\x7fice@a.test", ""},
		{"ålice@a.test", ""},
		{strings.Repeat("b", 65) + "@a.test", ""},
		// Domain.
		{"alice@localhost", ""},
		{"alice@test", ""},
		{"alice@a.test.", ""},
		{"alice@.a.test", ""},
		{"alice@a..test", ""},
		{"alice@-a.test", ""},
		{"alice@a-.test", ""},
		{"alice@a.-test", ""},
		{"alice@a_b.test", ""},
		{"alice@a.tést", ""},
		{"alice@127.0.0.1", ""},
		{"alice@a.123", ""},
		{"alice@" + long63 + "a.test", ""},
		{local64 + "@" + domain189 + "x", ""},
		{"x@" + strings.Repeat("a.", 130) + "test", ""},
	}
	for _, tc := range tests {
		got, err := NormalizeAddress(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("NormalizeAddress(%q) = %q, want an error", tc.in, got)
			} else if errs.KindOf(err) != errs.Invalid || errs.CodeOf(err) != CodeBadAddress {
				t.Errorf("NormalizeAddress(%q): error %v has kind %v code %q", tc.in, err, errs.KindOf(err), errs.CodeOf(err))
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("NormalizeAddress(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func FuzzNormalizeAddress(f *testing.F) {
	for _, s := range []string{
		"alice@a.test", "Alice@Example.COM", "a+b.c@x-y.z", "Alice <alice@a.test>", `"a b"@a.test`,
		"a@localhost", "a..b@a.test", "a@a..b", "a@1.2.3.4", "a@b@c.d", "é@a.test", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := NormalizeAddress(s)
		if err != nil {
			if errs.CodeOf(err) != CodeBadAddress {
				t.Fatalf("NormalizeAddress(%q): error %v has code %q", s, err, errs.CodeOf(err))
			}
			return
		}
		if got != strings.ToLower(s) {
			t.Fatalf("NormalizeAddress(%q) = %q, not the input in lower case", s, got)
		}
		if len(got) > MaxAddressLen || strings.Count(got, "@") != 1 {
			t.Fatalf("NormalizeAddress(%q) = %q", s, got)
		}
		if again, err := NormalizeAddress(got); err != nil || again != got {
			t.Fatalf("not idempotent: NormalizeAddress(%q) = %q, %v", got, again, err)
		}
		// What we accept, net/mail reads as the same bare address.
		a, err := mail.ParseAddress(got)
		if err != nil || a.Address != got || a.Name != "" {
			t.Fatalf("net/mail reads %q as %+v, %v", got, a, err)
		}
	})
}

func BenchmarkNormalizeAddress(b *testing.B) {
	for b.Loop() {
		if _, err := NormalizeAddress("Alice.Smith+tag@Mail.Example.ORG"); err != nil {
			b.Fatal(err)
		}
	}
}
