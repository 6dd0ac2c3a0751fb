package resource

import (
	"bufio"
	"encoding/base64"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestParseIDVectors reads testdata/ids.txt: lines "ok ID" or "bad ID" (Go
// quoted when the ID has spaces, escapes or control characters).
func TestParseIDVectors(t *testing.T) {
	for _, v := range idVectors(t) {
		_, err := ParseID(v.id)
		if (err == nil) != v.ok {
			t.Errorf("ParseID(%q) = %v, want ok=%v", v.id, err, v.ok)
		}
	}
}

type idVector struct {
	ok bool
	id string
}

func idVectors(t testing.TB) []idVector {
	f, err := os.Open("testdata/ids.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var vs []idVector
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		verdict, raw, ok := strings.Cut(line, " ")
		if !ok || verdict != "ok" && verdict != "bad" {
			t.Fatalf("testdata/ids.txt: bad line %q", line)
		}
		id := raw
		if strings.HasPrefix(raw, `"`) {
			var err error
			if id, err = strconv.Unquote(raw); err != nil {
				t.Fatalf("testdata/ids.txt: %q: %v", line, err)
			}
		}
		vs = append(vs, idVector{verdict == "ok", id})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(vs) == 0 {
		t.Fatal("testdata/ids.txt: no vectors")
	}
	return vs
}

func FuzzParseID(f *testing.F) {
	for _, v := range idVectors(f) {
		f.Add(v.id)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err != nil {
			if id != "" {
				t.Fatalf("ParseID(%q) returned %q with an error", s, id)
			}
			return
		}
		if string(id) != s || len(s) != 43 {
			t.Fatalf("ParseID(%q) = %q", s, id)
		}
		for _, c := range []byte(s) {
			if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				t.Fatalf("ParseID accepted %q with byte %q", s, c)
			}
		}
		sum := id.Sum()
		if len(sum) != 32 {
			t.Fatalf("ParseID(%q): Sum is %d bytes", s, len(sum))
		}
		// Canonical: re-encoding the digest gives back the same string, so
		// no two accepted IDs name the same digest (no aliasing).
		if got := base64.RawURLEncoding.EncodeToString(sum); got != s {
			t.Fatalf("ParseID(%q) accepted a non-canonical form of %q", s, got)
		}
	})
}
