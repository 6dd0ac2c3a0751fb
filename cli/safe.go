package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// What a message's sender writes (subject, names, filenames, bodies, even
// a Message-ID from another domain) reaches the user's terminal through the
// CLI. A terminal obeys control sequences in it: ESC starts CSI and OSC
// sequences (clear the screen, set the window title, write the clipboard on
// some terminals), C1 bytes do the same on others, CR and BS overwrite what
// was printed, and the bidirectional overrides and isolates reorder text so
// that "invoice\u202Efdp.exe" reads as "invoiceexe.pdf" (Trojan Source,
// CVE-2021-42574). So every such string goes through safe (one-line fields)
// or safeText (bodies) before it is printed, and the --json output through
// safeJSON.

// unsafeRune reports whether r must not reach a terminal raw: C0 controls,
// DEL, C1 controls, the line and paragraph separators, and the bidi
// embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069).
func unsafeRune(r rune) bool {
	return r < 0x20 || r >= 0x7f && r <= 0x9f || r == 0x2028 || r == 0x2029 ||
		r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069
}

// safe renders s for one line of output: every unsafe rune (tab and
// newline included) is written visibly as its escape, \x1b for an ASCII
// control and \u009b or \u202e above, and every byte that is not UTF-8 as
// \xNN. The result holds no control character and no bidi control.
func safe(s string) string { return escape(s, false) }

// safeText renders a message body: like safe, but newlines and tabs stay,
// and a CR LF line end becomes a newline (a lone CR, which would overwrite
// the line, is escaped).
func safeText(s string) string { return escape(s, true) }

func escape(s string, text bool) string {
	if !needsEscape(s, text) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case text && (r == '\n' || r == '\t'):
			b.WriteRune(r)
		case text && r == '\r' && strings.HasPrefix(s[i+1:], "\n"):
			// CR LF: the LF follows.
		case r < 0x80 && unsafeRune(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case unsafeRune(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

func needsEscape(s string, text bool) bool {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				return true
			}
		}
		if unsafeRune(r) && !(text && (r == '\n' || r == '\t')) {
			return true
		}
	}
	return false
}

// safeStrings is safe of each of ss, joined by ", ".
func safeStrings(ss []string) string { return safe(strings.Join(ss, ", ")) }

// printJSON prints v as indented JSON, through safeJSON: --json output is
// read by programs, but also lands on terminals.
func printJSON(env *Env, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	_, err := env.Stdout.Write(safeJSON(buf.Bytes()))
	return err
}

// safeJSON rewrites encoded JSON so that it holds no unsafe rune raw:
// encoding/json already writes the C0 controls and U+2028, U+2029 as
// \u00XX escapes, but DEL, the C1 controls and the bidi controls go out as
// they are. Outside strings JSON is ASCII punctuation, digits and letters,
// so each such rune is inside a string, where \uXXXX means the same rune:
// the document decodes exactly as before.
func safeJSON(data []byte) []byte {
	if !bytes.ContainsFunc(data, jsonUnsafe) {
		return data
	}
	var b bytes.Buffer
	b.Grow(len(data) + 16)
	for len(data) > 0 {
		r, size := utf8.DecodeRune(data)
		if jsonUnsafe(r) {
			fmt.Fprintf(&b, `\u%04x`, r)
		} else {
			b.Write(data[:size])
		}
		data = data[size:]
	}
	return b.Bytes()
}

// jsonUnsafe: the unsafe runes that encoding/json leaves raw. The C0
// controls it escapes inside strings; outside them newline, tab and CR are
// whitespace of the document's own.
func jsonUnsafe(r rune) bool { return r >= 0x20 && unsafeRune(r) }
