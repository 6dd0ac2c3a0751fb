package account

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/pullmail/pullmail/errs"
)

// TestVectors checks hashes made by the Argon2 reference implementation
// (testdata/argon2id.json says how): hashing with the same salt gives the
// same string, and CheckPassword accepts the password and nothing else.
func TestVectors(t *testing.T) {
	b, err := os.ReadFile("testdata/argon2id.json")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Vectors []struct{ Password, Salt, PHC string }
	}
	if err := json.Unmarshal(b, &file); err != nil {
		t.Fatal(err)
	}
	if len(file.Vectors) == 0 {
		t.Fatal("no vectors")
	}
	for _, v := range file.Vectors {
		p, _, _, err := parsePHC(v.PHC)
		if err != nil {
			t.Fatalf("%s: %v", v.PHC, err)
		}
		if got := hashWith(v.Password, []byte(v.Salt), p); got != v.PHC {
			t.Errorf("hash of %q with salt %q:\n got %s\nwant %s", v.Password, v.Salt, got, v.PHC)
		}
		if ok, err := CheckPassword(v.PHC, v.Password); !ok || err != nil {
			t.Errorf("CheckPassword(%s, %q) = %v, %v", v.PHC, v.Password, ok, err)
		}
		if ok, err := CheckPassword(v.PHC, v.Password+"x"); ok || err != nil {
			t.Errorf("CheckPassword accepted a wrong password (%v)", err)
		}
	}
	// The first vector uses the default parameters, so it pins them.
	if !strings.HasPrefix(file.Vectors[0].PHC, "$argon2id$v=19$m=19456,t=2,p=1$") || NeedsRehash(file.Vectors[0].PHC) {
		t.Error("the default parameters are not m=19456,t=2,p=1")
	}
}

func TestHashPassword(t *testing.T) {
	const pw = "correct horse battery staple"
	h1, err := HashPassword(pw)
	if err != nil {
		t.Fatal(err)
	}
	h2, err := HashPassword(pw)
	if err != nil {
		t.Fatal(err)
	}
	if h1 == h2 {
		t.Error("two hashes of one password are equal: the salt is not random")
	}
	if !strings.HasPrefix(h1, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Errorf("hash %s", h1)
	}
	_, salt, key, err := parsePHC(h1)
	if err != nil || len(salt) != 16 || len(key) != 32 {
		t.Errorf("salt %d bytes, hash %d bytes, %v", len(salt), len(key), err)
	}
	for _, tc := range []struct {
		pw   string
		want bool
	}{
		{pw, true},
		{"Correct horse battery staple", false},
		{"correct horse battery staple ", false},
		{"correct horse battery stapl", false},
		{"", false},
		{strings.Repeat("x", MaxPasswordLen+1), false},
	} {
		ok, err := CheckPassword(h1, tc.pw)
		if err != nil || ok != tc.want {
			t.Errorf("CheckPassword(%q) = %v, %v; want %v", tc.pw, ok, err, tc.want)
		}
	}
	if NeedsRehash(h1) {
		t.Error("a fresh hash needs rehashing")
	}
}

func TestValidatePassword(t *testing.T) {
	tests := []struct {
		pw string
		ok bool
	}{
		{"", false},
		{"1234567", false},
		{"12345678", true},
		{"ümlauts", true}, // 8 bytes, 7 characters: the limits are in bytes
		{strings.Repeat("x", MaxPasswordLen), true},
		{strings.Repeat("x", MaxPasswordLen+1), false},
	}
	for _, tc := range tests {
		err := ValidatePassword(tc.pw)
		if (err == nil) != tc.ok {
			t.Errorf("ValidatePassword(%d bytes) = %v, want ok %v", len(tc.pw), err, tc.ok)
		}
		if err != nil && (errs.KindOf(err) != errs.Invalid || errs.CodeOf(err) != CodeBadPassword) {
			t.Errorf("ValidatePassword: error %v has kind %v code %q", err, errs.KindOf(err), errs.CodeOf(err))
		}
		if _, herr := HashPassword(tc.pw); (herr == nil) != tc.ok {
			t.Errorf("HashPassword(%d bytes) = %v, want ok %v", len(tc.pw), herr, tc.ok)
		}
	}
}

// A cheap valid hash for the malformed-hash table: m=8,t=1,p=1.
const cheap = "$argon2id$v=19$m=8,t=1,p=1$c29tZXNhbHQ$" + "AAAAAAAAAAAAAAAAAAAAAA"

func TestMalformedHash(t *testing.T) {
	if _, _, _, err := parsePHC(cheap); err != nil {
		t.Fatalf("the base case is bad: %v", err)
	}
	bad := []string{
		"",
		"$",
		"password",
		"$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy", // bcrypt
		"$argon2i$v=19$m=8,t=1,p=1$c29tZXNhbHQ$AAAAAAAAAAAAAAAAAAAAAA",
		"$argon2d$v=19$m=8,t=1,p=1$c29tZXNhbHQ$AAAAAAAAAAAAAAAAAAAAAA",
		"$argon2id$v=16$m=8,t=1,p=1$c29tZXNhbHQ$AAAAAAAAAAAAAAAAAAAAAA",
		"$argon2id$m=8,t=1,p=1$c29tZXNhbHQ$AAAAAAAAAAAAAAAAAAAAAA", // no version
		"argon2id$v=19$m=8,t=1,p=1$c29tZXNhbHQ$AAAAAAAAAAAAAAAAAAAAAA",
		cheap + "$",
		"$argon2id$v=19$t=1,m=8,p=1$c29tZXNhbHQ$AAAAAAAAAAAAAAAAAAAAAA",
		"$argon2id$v=19$m=8,t=1$c29tZXNhbHQ$AAAAAAAAAAAAAAAAAAAAAA",
		"$argon2id$v=19$m=8,t=1,p=1,k=2$c29tZXNhbHQ$AAAAAAAAAAAAAAAAAAAAAA",
		"$argon2id$v=19$m=08,t=1,p=1$c29tZXNhbHQ$AAAAAAAAAAAAAAAAAAAAAA",
		"$argon2id$v=19$m=+8,t=1,p=1$c29tZXNhbHQ$AAAAAAAAAAAAAAAAAAAAAA",
		"$argon2id$v=19$m=,t=1,p=1$c29tZXNhbHQ$AAAAAAAAAAAAAAAAAAAAAA",
		"$argon2id$v=19$m=7,t=1,p=1$c29tZXNhbHQ$AAAAAAAAAAAAAAAAAAAAAA",          // m < 8p
		"$argon2id$v=19$m=15,t=1,p=2$c29tZXNhbHQ$AAAAAAAAAAAAAAAAAAAAAA",         // m < 8p
		"$argon2id$v=19$m=1048577,t=1,p=1$c29tZXNhbHQ$AAAAAAAAAAAAAAAAAAAAAA",    // over 1 GiB
		"$argon2id$v=19$m=4294967295,t=1,p=1$c29tZXNhbHQ$AAAAAAAAAAAAAAAAAAAAAA", // 4 TiB
		"$argon2id$v=19$m=8,t=0,p=1$c29tZXNhbHQ$AAAAAAAAAAAAAAAAAAAAAA",
		"$argon2id$v=19$m=8,t=65,p=1$c29tZXNhbHQ$AAAAAAAAAAAAAAAAAAAAAA",
		"$argon2id$v=19$m=8,t=1,p=0$c29tZXNhbHQ$AAAAAAAAAAAAAAAAAAAAAA",
		"$argon2id$v=19$m=8192,t=1,p=256$c29tZXNhbHQ$AAAAAAAAAAAAAAAAAAAAAA",
		"$argon2id$v=19$m=8,t=1,p=1$c29tZXNhbHQ=$AAAAAAAAAAAAAAAAAAAAAA",    // padded salt
		"$argon2id$v=19$m=8,t=1,p=1$c29tZXNhbHR$AAAAAAAAAAAAAAAAAAAAAA",     // non-canonical last character
		"$argon2id$v=19$m=8,t=1,p=1$c29tZXNh$AAAAAAAAAAAAAAAAAAAAAA",        // 6-byte salt
		"$argon2id$v=19$m=8,t=1,p=1$c29tZX-hbHQ$AAAAAAAAAAAAAAAAAAAAAA",     // base64url alphabet
		"$argon2id$v=19$m=8,t=1,p=1$c29tZXNhbHQ$AAAAAAAAAAAAAAAAAAAA",       // 15-byte hash
		"$argon2id$v=19$m=8,t=1,p=1$c29tZXNhbHQ$" + strings.Repeat("A", 87), // 65-byte hash
		"$argon2id$v=19$m=8,t=1,p=1$$AAAAAAAAAAAAAAAAAAAAAA",                // no salt
		"$argon2id$v=19$m=8,t=1,p=1$c29tZXNhbHQ$",                           // no hash
		"$argon2id$v=19$m=8,t=1,p=1$c29tZXNhbHQ$AAAAAAAAAAAAAAAAAAAAAA\n",   // trailing newline
		"$argon2id$v=19$m=8,t=1,p=1$c29tZXNhbHQ$AAAAAAAAAA\nAAAAAAAAAAAA",   // newline inside
		" $argon2id$v=19$m=8,t=1,p=1$c29tZXNhbHQ$AAAAAAAAAAAAAAAAAAAAAA",    // leading space
		"$ARGON2ID$v=19$m=8,t=1,p=1$c29tZXNhbHQ$AAAAAAAAAAAAAAAAAAAAAA",
	}
	for _, h := range bad {
		ok, err := CheckPassword(h, "password")
		if ok || !errors.Is(err, ErrMalformedHash) {
			t.Errorf("CheckPassword(%q) = %v, %v; want ErrMalformedHash", h, ok, err)
		}
		if !NeedsRehash(h) {
			t.Errorf("NeedsRehash(%q) = false", h)
		}
	}
}

// TestRaisedParameters: a hash made with other parameters is checked with
// them, so the defaults can change without locking anyone out.
func TestRaisedParameters(t *testing.T) {
	for _, p := range []params{{Memory: 8, Time: 1, Threads: 1}, {Memory: 64, Time: 3, Threads: 4}, {Memory: 32 * 1024, Time: 3, Threads: 2}} {
		h := hashWith("a password", []byte("0123456789abcdef"), p)
		if ok, err := CheckPassword(h, "a password"); !ok || err != nil {
			t.Errorf("%+v: CheckPassword = %v, %v", p, ok, err)
		}
		weaker := p.Memory < DefaultMemory || p.Time < DefaultTime
		if NeedsRehash(h) != weaker {
			t.Errorf("%+v: NeedsRehash = %v, want %v", p, NeedsRehash(h), weaker)
		}
	}
}

func FuzzParsePHC(f *testing.F) {
	f.Add(cheap)
	f.Add("$argon2id$v=19$m=19456,t=2,p=1$cHVsbG1haWwtc2FsdC0xNg$EIr5h+FnWUNbS6QSKc/d9ghE4lwOEECvgFR7XHdJKM4")
	f.Add("$argon2id$v=19$m=08,t=1,p=1$c29tZXNhbHQ$AAAAAAAAAAAAAAAAAAAAAA")
	f.Add("$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy")
	f.Fuzz(func(t *testing.T, s string) {
		p, salt, key, err := parsePHC(s)
		if err != nil {
			if !errors.Is(err, ErrMalformedHash) {
				t.Fatalf("parsePHC(%q): error %v does not wrap ErrMalformedHash", s, err)
			}
			return
		}
		if p.Memory > maxMemory || p.Time > maxTime || p.Threads == 0 || p.Memory < 8*uint32(p.Threads) {
			t.Fatalf("parsePHC(%q) accepted parameters %+v", s, p)
		}
		// The parser is strict: what it accepts is written back byte for byte.
		if again := encodePHC(p, salt, key); again != s {
			t.Fatalf("parsePHC(%q) then encodePHC = %q", s, again)
		}
	})
}

func BenchmarkHashPassword(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := HashPassword("correct horse battery staple"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheckPassword(b *testing.B) {
	h, err := HashPassword("correct horse battery staple")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if ok, err := CheckPassword(h, "correct horse battery staple"); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}
