package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
	"github.com/pullmail/pullmail/testenv"
)

func TestSafe(t *testing.T) {
	for _, tc := range []struct{ in, line, text string }{
		{"plain", "plain", "plain"},
		{"Venice – photo ✓", "Venice – photo ✓", "Venice – photo ✓"},
		{"a\x1b[2Jb", `a\x1b[2Jb`, `a\x1b[2Jb`},
		{"\x1b]0;pwned\x07", `\x1b]0;pwned\x07`, `\x1b]0;pwned\x07`},
		{"\x1b]52;c;ZXZpbA==\x1b\\", `\x1b]52;c;ZXZpbA==\x1b\`, `\x1b]52;c;ZXZpbA==\x1b\`},
		{"l1\nl2\tx", `l1\x0al2\x09x`, "l1\nl2\tx"},
		{"a\r\nb", `a\x0d\x0ab`, "a\nb"},
		{"paid\rdue", `paid\x0ddue`, `paid\x0ddue`},
		{"ab\b\bxy", `ab\x08\x08xy`, `ab\x08\x08xy`},
		{"\x00\x7f", `\x00\x7f`, `\x00\x7f`},
		{"csi\u009b2J", `csi\u009b2J`, `csi\u009b2J`},
		{"\u0085nel", `\u0085nel`, `\u0085nel`},
		{"invoice\u202efdp.exe", `invoice\u202efdp.exe`, `invoice\u202efdp.exe`},
		{"\u202a\u202b\u202c\u202d\u2066\u2067\u2068\u2069", `\u202a\u202b\u202c\u202d\u2066\u2067\u2068\u2069`, `\u202a\u202b\u202c\u202d\u2066\u2067\u2068\u2069`},
		{"sep\u2028x", `sep\u2028x`, `sep\u2028x`},
		{"bad\xffutf8\xc2", `bad\xffutf8\xc2`, `bad\xffutf8\xc2`},
		{"", "", ""},
	} {
		if got := safe(tc.in); got != tc.line {
			t.Errorf("safe(%q) = %q, want %q", tc.in, got, tc.line)
		}
		if got := safeText(tc.in); got != tc.text {
			t.Errorf("safeText(%q) = %q, want %q", tc.in, got, tc.text)
		}
	}
}

// rawUnsafe returns the first unsafe rune (or invalid byte) of out that a
// terminal would see raw; text allows newlines and tabs.
func rawUnsafe(out string, text bool) (rune, bool) {
	for i, r := range out {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(out[i:]); n == 1 {
				return rune(out[i]), true
			}
		}
		if unsafeRune(r) && !(text && (r == '\n' || r == '\t')) {
			return r, true
		}
	}
	return 0, false
}

func FuzzSafe(f *testing.F) {
	for _, s := range []string{"a", "\x1b[2J", "\r\n", "\u202e", "\xff", "\u009b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if r, bad := rawUnsafe(safe(s), false); bad {
			t.Fatalf("safe(%q) holds %U", s, r)
		}
		if r, bad := rawUnsafe(safeText(s), true); bad {
			t.Fatalf("safeText(%q) holds %U", s, r)
		}
		if !utf8.ValidString(safe(s)) {
			t.Fatalf("safe(%q) is not UTF-8", s)
		}
	})
}

// TestSafeJSON: encoding/json leaves DEL, C1 and bidi controls raw;
// printJSON escapes them, and the output decodes to the same strings.
func TestSafeJSON(t *testing.T) {
	in := map[string]string{"s": "a\x1b]0;t\x07\x7f\u009b\u202e\u2066\n<x@y>\"\\"}
	env, out, _ := testEnv(nil, false)
	if err := printJSON(env, in); err != nil {
		t.Fatal(err)
	}
	if r, bad := rawUnsafe(out.String(), true); bad {
		t.Fatalf("printJSON wrote %U raw: %q", r, out.String())
	}
	var back map[string]string
	if err := json.Unmarshal(out.Bytes(), &back); err != nil || back["s"] != in["s"] {
		t.Fatalf("round trip: %v %q", err, back)
	}
	if !strings.Contains(out.String(), "<x@y>") {
		t.Fatalf("HTML escaping crept in: %s", out.String())
	}
}

func TestSafeFilenameBidi(t *testing.T) {
	cid := resource.IDOf([]byte("x"))
	for in, want := range map[string]string{
		"invoice\u202efdp.exe": "invoice_fdp.exe",
		"\u2066a\u2069.txt":    "_a_.txt",
		"x\u009b2J.txt":        "x_2J.txt",
		"t\x1b]0;x\x07.txt":    "t_]0;x_.txt",
		"a\u2028b":             "a_b",
	} {
		if got := SafeFilename(in, cid); got != want {
			t.Errorf("SafeFilename(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestHostileMessageOutput: a message whose subject, sender's display
// name, attachment filename and body carry terminal control sequences
// (ESC CSI and OSC, C1 CSI, a bidi override) reaches the recipient through
// a real server; list, show and get (text and --json) print none of them
// raw, and get writes the attachment under a clean name.
func TestHostileMessageOutput(t *testing.T) {
	ctx := context.Background()
	d := testenv.Start(t, "a.test", testenv.Options{})
	mallory := d.AddUser(t, "mallory@a.test")
	bob := d.AddUser(t, "bob@a.test")
	const (
		subject  = "Invoice \x1b]0;pwned\x07\x1b[2J\u009b31m\u202efdp.exe"
		body     = "Dear Bob,\r\n\x1b]52;c;cm0gLXJmIH4=\x07\tpay now\x1b[8m hidden\u202e\x7f\n"
		filename = "report\x1b[2J\u202efdp.exe\u009b.txt"
	)
	// Display names: RFC 5322 refuses ESC in them, but RFC 6532 UTF-8
	// lets C1 CSI and the bidi override through.
	const from = "\"M\u009b2J\u202eallory\" <mallory@a.test>"
	text, err := mallory.Upload(ctx, strings.NewReader(body), mailbox.UploadOptions{Size: int64(len(body))})
	if err != nil {
		t.Fatal(err)
	}
	att, err := mallory.Upload(ctx, strings.NewReader("data"), mailbox.UploadOptions{Size: 4})
	if err != nil {
		t.Fatal(err)
	}
	m := placeholder.New(from, []string{"\"Bob\u009b8m\u2066\" <bob@a.test>"}, nil, nil, subject)
	tl, err := placeholder.NewLeaf(text.ContentID, text.Size, "text/plain; charset=UTF-8", "inline", "")
	if err != nil {
		t.Fatal(err)
	}
	al, err := placeholder.NewLeaf(att.ContentID, att.Size, "text/plain", "attachment", filename)
	if err != nil {
		t.Fatal(err)
	}
	m.Parts = append(m.Parts, tl, al)
	dr, err := mallory.CreateDraft(ctx, m.Canonical())
	if err != nil {
		t.Fatal(err)
	}
	sent, err := mallory.Send(ctx, dr.ID)
	if err != nil {
		t.Fatal(err)
	}

	vars := map[string]string{"PULLMAIL_SERVER": d.URL, "PULLMAIL_TOKEN": bob.Token, "PULLMAIL_CA": d.CA}
	outDir := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		env, out, errb := testEnv(vars, false)
		if code := Main(ctx, env, args); code != 0 {
			t.Fatalf("%s: exit %d: %s", args, code, errb.String())
		}
		if r, bad := rawUnsafe(errb.String(), true); bad {
			t.Errorf("%s: stderr holds %U raw: %q", args, r, errb.String())
		}
		return out.String()
	}
	for _, args := range [][]string{
		{"list"},
		{"list", "--json"},
		{"show", sent.MessageID},
		{"show", sent.MessageID, "--json"},
		{"get", sent.MessageID, "--out", outDir},
	} {
		out := run(args...)
		if r, bad := rawUnsafe(out, true); bad {
			t.Errorf("%s: output holds %U raw:\n%q", args, r, out)
		}
		switch args[0] + " " + args[len(args)-1] {
		case "list list":
			if !strings.Contains(out, `Invoice \x1b]0;pwned\x07`) {
				t.Errorf("list does not show the escaped subject:\n%s", out)
			}
		case "show " + sent.MessageID:
			for _, want := range []string{
				`Subject: ` + safe(subject), `Attachment: ` + safe(filename), `From: ` + safe(from),
				"Dear Bob,\n" + `\x1b]52;c;cm0gLXJmIH4=\x07` + "\tpay now",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("show lacks %q:\n%s", want, out)
				}
			}
		case "show --json":
			// The JSON still decodes to the sender's exact strings.
			var got struct {
				mailbox.Message
				Body string `json:"body"`
			}
			if err := json.Unmarshal([]byte(out), &got); err != nil || got.Subject != subject || got.Body != body ||
				len(got.Attachments) != 1 || got.Attachments[0].Filename != filename {
				t.Errorf("show --json: %v %q %q %+v", err, got.Subject, got.Body, got.Attachments)
			}
		}
	}
	ents, err := os.ReadDir(outDir)
	if err != nil || len(ents) != 1 {
		t.Fatalf("get wrote %v: %v", ents, err)
	}
	name := ents[0].Name()
	if r, bad := rawUnsafe(name, false); bad || name != filepath.Base(name) {
		t.Fatalf("get wrote %q (holds %U)", name, r)
	}
}
