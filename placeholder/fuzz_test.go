package placeholder

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf8"

	"github.com/pullmail/pullmail/errs"
)

func addSeeds(f *testing.F) {
	files, _ := filepath.Glob("testdata/valid/*.json")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		var v vector
		if err := json.Unmarshal(data, &v); err != nil {
			f.Fatal(err)
		}
		if v.Message != nil {
			f.Add([]byte(v.Message))
		}
	}
	data, err := os.ReadFile("testdata/invalid.json")
	if err != nil {
		f.Fatal(err)
	}
	var vs []invalidVector
	if err := json.Unmarshal(data, &vs); err != nil {
		f.Fatal(err)
	}
	for _, v := range vs {
		if v.Doc != nil {
			f.Add([]byte(*v.Doc))
		}
	}
}

// FuzzParse: Parse never panics; what it accepts is JSON that encoding/json
// reads as well; what it refuses is an invalid-kind error with a code; the
// canonical form of what it accepts parses back to the same message and is
// a fixed point; Validate agrees with Parse.
func FuzzParse(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data, Limits{})
		if err != nil {
			if !errs.Is(err, errs.Invalid) || errs.CodeOf(err) == "internal" {
				t.Fatalf("refusal without a code: %v", err)
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON: %q", data)
		}
		c := m.Canonical()
		if !json.Valid(c) {
			t.Fatalf("canonical form is not JSON: %q", c)
		}
		m2, err := Parse(c, Limits{})
		if err != nil {
			t.Fatalf("canonical form refused: %v\n%q", err, c)
		}
		if !m2.Equal(m) {
			t.Fatalf("round trip changed the message:\n%q\n%q", c, m2.Canonical())
		}
		if c2 := m2.Canonical(); !bytes.Equal(c, c2) {
			t.Fatalf("canonical form is not idempotent:\n%q\n%q", c, c2)
		}
		if err := m.Validate(Limits{}); err != nil {
			t.Fatalf("Validate refuses what Parse accepts: %v", err)
		}
		if _, err := m.Leaves(); err != nil {
			t.Fatalf("Leaves: %v", err)
		}
		_ = BodyDigest(m)
		if _, err := RecipientsDigest(m.Header); err != nil {
			t.Fatalf("RecipientsDigest of a parsed message: %v", err)
		}
	})
}

// FuzzCanonicalString: JCS strings are JSON that decodes to the input (for
// valid UTF-8), and their parse through a header round-trips.
func FuzzCanonicalString(f *testing.F) {
	for _, s := range []string{"", "a", "\u2028", "\x00\x1f\x7f", `"\`, "😀", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := appendString(nil, s)
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("appendString(%q) = %q: %v", s, b, err)
		}
		if utf8.ValidString(s) && back != s {
			t.Fatalf("appendString(%q) decodes to %q", s, back)
		}
		h, err := ParseHeader(append(append([]byte(`{"X-F":`), b...), '}'), Limits{})
		if err != nil {
			return // CR, LF, NUL
		}
		if got := h.Get("X-F").String(); got != back {
			t.Fatalf("header round trip: %q != %q", got, back)
		}
	})
}
