package config

import (
	"errors"
	"flag"
	"strings"
	"testing"
	"time"
)

// testFlags is a FlagSet of every kind a file sets, with "to" a list.
func testFlags() (*flag.FlagSet, Options) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.String("name", "def", "a `NAME`")
	fs.Bool("on", false, "a switch")
	fs.Duration("wait", time.Minute, "how long")
	fs.Int64("size", 0, "bytes")
	fs.Uint("count", 1, "how many")
	fs.Func("to", "a list", func(string) error { return nil })
	fs.String("file", "", "names the file")
	fs.String("color", "red", "red or blue")
	return fs, Options{
		Repeatable: func(k string) bool { return k == "to" },
		Omit:       []string{"file"},
		Check: func(k, v string) error {
			if k == "color" && v != "red" && v != "blue" {
				return errors.New("want red or blue")
			}
			return nil
		},
	}
}

func TestParseAndApply(t *testing.T) {
	src := "\xef\xbb\xbf# comment\r\n\n  name =  a b # not a comment \r\non=true\nwait = 90s\nsize = 1048576\nto = x\nto = y\ncount=3\n   # indented comment\ncolor = blue"
	entries, err := Parse("f", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if e := entries[0]; e.Key != "name" || e.Value != "a b # not a comment" || e.Line != 3 {
		t.Fatalf("first entry %+v", e)
	}
	fs, opt := testFlags()
	if err := Apply(fs, "f", entries, opt); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"name": "a b # not a comment", "on": "true", "wait": "1m30s", "size": "1048576", "count": "3", "color": "blue"}
	for k, v := range want {
		if got := fs.Lookup(k).Value.String(); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

func TestRefusals(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"name", `f:1: missing "=": want key = value`},
		{"\n = x", `f:2: bad key "": want lowercase letters, digits and "-"`},
		{"Name = x", `f:1: bad key "Name": want lowercase letters, digits and "-"`},
		{"--name = x", `f:1: bad key "--name": want lowercase letters, digits and "-"`},
		{"my key = x", `f:1: bad key "my key": want lowercase letters, digits and "-"`},
		{"name = \xff", "f:1: invalid UTF-8"},
		{"name = a\x00b", "f:1: control character U+0000"},
		{"name = a\rb", "f:1: control character U+000D"},
		{"bogus = 1", `f:1: unknown key "bogus"`},
		{"file = x", `f:1: key "file" is not allowed in a file`},
		{"name = a\n\nname = b", `f:3: duplicate key "name" (first on line 1)`},
		{"on = yes", `f:1: bad value for "on": want true or false`},
		{"on =", `f:1: bad value for "on": want true or false`},
		{"wait = 5 days", `f:1: bad value for "wait": want a duration such as 90s, 15m or 120h`},
		{"wait = 5", `f:1: bad value for "wait": want a duration such as 90s, 15m or 120h`},
		{"size = 10MB", `f:1: bad value for "size": want a whole number`},
		{"count = -1", `f:1: bad value for "count": want a whole number, 0 or more`},
		{"color = green", `f:1: bad value for "color": want red or blue`},
		// Every problem, in line order.
		{"bogus = 1\non = 2\nx", `f:3: missing "=": want key = value`},
		{"bogus = 1\non = 2", `f:1: unknown key "bogus"; f:2: bad value for "on": want true or false`},
	} {
		entries, err := Parse("f", []byte(tc.src))
		if err == nil {
			fs, opt := testFlags()
			err = Apply(fs, "f", entries, opt)
		}
		var es Errors
		if !errors.As(err, &es) || err.Error() != tc.want {
			t.Errorf("%q: got %v, want %s", tc.src, err, tc.want)
		}
	}
}

func TestSkip(t *testing.T) {
	entries, err := Parse("f", []byte("name = file\nwait = 1s\nname = twice"))
	if err != nil {
		t.Fatal(err)
	}
	fs, opt := testFlags()
	opt.Skip = func(k string) bool { return k == "name" }
	// A skipped key is still a key: given twice it is refused.
	if err := Apply(fs, "f", entries, opt); err == nil || !strings.Contains(err.Error(), "f:3: duplicate") {
		t.Fatalf("duplicate skipped key: %v", err)
	}
	entries = entries[:2]
	fs, _ = testFlags()
	if err := Apply(fs, "f", entries, opt); err != nil {
		t.Fatal(err)
	}
	if fs.Lookup("name").Value.String() != "def" || fs.Lookup("wait").Value.String() != "1s" {
		t.Fatalf("name %s wait %s", fs.Lookup("name").Value, fs.Lookup("wait").Value)
	}
}

// TestExample: the example names every key but the omitted ones, and
// applying it leaves every flag at its default.
func TestExample(t *testing.T) {
	fs, opt := testFlags()
	var b strings.Builder
	if err := WriteExample(&b, "header\n\nmore", fs, opt); err != nil {
		t.Fatal(err)
	}
	ex := b.String()
	if !strings.HasPrefix(ex, "# header\n#\n# more\n") || !strings.Contains(ex, "\n# a NAME\nname = def\n") || !strings.Contains(ex, "\n# to = VALUE\n") || strings.Contains(ex, "file =") {
		t.Fatalf("example:\n%s", ex)
	}
	entries, err := Parse("ex", []byte(ex))
	if err != nil {
		t.Fatal(err)
	}
	if err := Apply(fs, "ex", entries, opt); err != nil {
		t.Fatal(err)
	}
	fs.VisitAll(func(f *flag.Flag) {
		if f.Value.String() != f.DefValue {
			t.Errorf("%s = %q after the example, default %q", f.Name, f.Value, f.DefValue)
		}
	})
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{"", "a = b\n# c\n", "name=x\r\nto = 1\nto = 2", "on = true\nwait = 1h", "=\n", "\xef\xbb\xbfx=y", "a\x00=b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		entries, err := Parse("f", []byte(src))
		if err != nil {
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("error %v is not Errors", err)
			}
			for _, e := range es {
				if e.Line < 1 || e.Line > strings.Count(src, "\n")+1 || !strings.HasPrefix(e.Error(), "f:") {
					t.Fatalf("bad error %v", e)
				}
			}
			return
		}
		for _, e := range entries {
			if !validKey(e.Key) || e.Value != strings.TrimSpace(e.Value) || badText(e.Value) != "" {
				t.Fatalf("bad entry %+v", e)
			}
			// An entry written back parses to itself.
			again, err := Parse("f", []byte(e.Key+" = "+e.Value))
			if err != nil || len(again) != 1 || again[0].Key != e.Key || again[0].Value != e.Value {
				t.Fatalf("round trip of %+v: %v %+v", e, err, again)
			}
		}
		fs, opt := testFlags()
		if err := Apply(fs, "f", entries, opt); err != nil {
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("Apply error %v is not Errors", err)
			}
		}
	})
}
