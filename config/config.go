// Package config reads pullmail's configuration files: the flags of a
// command written one per line, so that an operator's setup is one file
// that can be checked before it is used.
//
// The format, whole:
//
//	# A comment: a line whose first non-blank character is '#'.
//	key = value
//	host = mail.example.com
//	host = mx.example.com
//
// A key is a flag's name without dashes (lowercase letters, digits and
// '-'); the value is everything after the first '=', without the blanks
// around it, taken literally: no quoting, no escapes, and a '#' after the
// '=' is part of the value (paths and URLs may hold one). A repeatable key
// (a list) takes one line per value; any other key may appear once. Blank
// lines are ignored; a leading UTF-8 byte order mark and CRLF line ends are
// accepted. Values are parsed exactly as the flag would parse them, so a
// file and a command line can never disagree on what a value means.
//
// Problems are reported as FILE:LINE: message, every problem of a file at
// once, with messages that stay the same from release to release (scripts
// and tests may match them).
package config

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Entry is one "key = value" line of a file.
type Entry struct {
	Key, Value string
	Line       int // 1-based
}

// Error is one problem of a file, at a line.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// Errors is every problem found in a file, in line order; Parse and Apply
// return it (never empty) rather than stopping at the first, so an operator
// fixes a file in one pass.
type Errors []*Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "; ")
}

// Parse splits data, the contents of the file named file, into entries. It
// checks the syntax only; Apply checks keys and values against the flags.
func Parse(file string, data []byte) ([]Entry, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	var entries []Entry
	var errs Errors
	for i, line := range strings.Split(string(data), "\n") {
		n := i + 1
		line = strings.TrimSuffix(line, "\r")
		if msg := badText(line); msg != "" {
			errs = append(errs, &Error{file, n, msg})
			continue
		}
		t := strings.TrimSpace(line)
		if t == "" || t[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(t, "=")
		if !ok {
			errs = append(errs, &Error{file, n, `missing "=": want key = value`})
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !validKey(k) {
			errs = append(errs, &Error{file, n, fmt.Sprintf(`bad key %q: want lowercase letters, digits and "-"`, k)})
			continue
		}
		entries = append(entries, Entry{Key: k, Value: v, Line: n})
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return entries, nil
}

// badText names what makes a line unreadable text, or returns "". Control
// characters are refused because a value holding one (a NUL in a path, an
// escape sequence) is never what the operator meant and would confuse logs.
func badText(line string) string {
	if !utf8.ValidString(line) {
		return "invalid UTF-8"
	}
	for _, r := range line {
		if r != '\t' && unicode.IsControl(r) {
			return fmt.Sprintf("control character %U", r)
		}
	}
	return ""
}

func validKey(k string) bool {
	if k == "" || k[0] == '-' {
		return false
	}
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// Options says how Apply treats some keys; the zero value is a file where
// every flag is a key that may appear once.
type Options struct {
	// Repeatable reports whether a key is a list (one line per value).
	Repeatable func(key string) bool
	// Skip reports whether a key's entries are left out: the keys given on
	// the command line, which override the file. Their values are not
	// parsed, so check a file first by applying it, unskipped, to a
	// throwaway FlagSet of the same command.
	Skip func(key string) bool
	// Omit lists flags that are not keys (such as the flag naming the file).
	Omit []string
	// Check, if set, vets a value beyond what its flag's parser does; its
	// error's text becomes the message.
	Check func(key, value string) error
}

// Apply sets the flags of fs from entries, read from the file named file,
// and returns every problem as Errors: an unknown key, a second line of a
// key that is not repeatable, a value its flag refuses. Values are given to
// flag.FlagSet.Set, so fs.Visit afterwards counts them as set. On error
// some flags may have been set: throw fs away.
func Apply(fs *flag.FlagSet, file string, entries []Entry, opt Options) error {
	var errs Errors
	first := map[string]int{}
	for _, e := range entries {
		bad := func(format string, args ...any) {
			errs = append(errs, &Error{file, e.Line, fmt.Sprintf(format, args...)})
		}
		f := fs.Lookup(e.Key)
		switch {
		case f != nil && contains(opt.Omit, e.Key):
			bad("key %q is not allowed in a file", e.Key)
			continue
		case f == nil:
			bad("unknown key %q", e.Key)
			continue
		}
		if l, ok := first[e.Key]; ok && (opt.Repeatable == nil || !opt.Repeatable(e.Key)) {
			bad("duplicate key %q (first on line %d)", e.Key, l)
			continue
		}
		if _, ok := first[e.Key]; !ok {
			first[e.Key] = e.Line
		}
		if opt.Check != nil {
			if err := opt.Check(e.Key, e.Value); err != nil {
				bad("bad value for %q: %v", e.Key, err)
				continue
			}
		}
		if opt.Skip != nil && opt.Skip(e.Key) {
			continue
		}
		if err := fs.Set(e.Key, e.Value); err != nil {
			bad("bad value for %q: %s", e.Key, want(f.Value, err))
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// want turns a flag parser's error into a stable message that says what a
// value of that kind looks like; the flag package's own texts ("parse
// error") name neither.
func want(v flag.Value, err error) string {
	g, ok := v.(flag.Getter)
	if !ok {
		return err.Error()
	}
	switch g.Get().(type) {
	case bool:
		return "want true or false"
	case time.Duration:
		return "want a duration such as 90s, 15m or 120h"
	case int, int64:
		return "want a whole number"
	case uint, uint64:
		return "want a whole number, 0 or more"
	case float64:
		return "want a number"
	}
	return err.Error()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// WriteExample writes an annotated file that sets every key of fs (but
// opt.Omit) to its default: each flag's usage as a comment, then
// "key = default". A repeatable key is written commented out with its
// placeholder, since a list's default is empty. Parsing the example and
// applying it changes no flag's value.
func WriteExample(w io.Writer, header string, fs *flag.FlagSet, opt Options) error {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimSpace(header), "\n") {
		b.WriteString(strings.TrimSpace("# "+l) + "\n")
	}
	var flags []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) {
		if !contains(opt.Omit, f.Name) {
			flags = append(flags, f)
		}
	})
	sort.Slice(flags, func(i, j int) bool { return flags[i].Name < flags[j].Name })
	for _, f := range flags {
		name, usage := flag.UnquoteUsage(f)
		b.WriteString("\n")
		rep := opt.Repeatable != nil && opt.Repeatable(f.Name)
		if rep {
			usage += "; one line per value"
		}
		for _, l := range wrap(usage, 76) {
			b.WriteString("# " + l + "\n")
		}
		switch {
		case rep:
			if name == "" || name == "value" { // flag.UnquoteUsage's word for a Var without a name
				name = "VALUE"
			}
			fmt.Fprintf(&b, "# %s = %s\n", f.Name, name)
		case f.DefValue == "":
			fmt.Fprintf(&b, "%s =\n", f.Name)
		default:
			fmt.Fprintf(&b, "%s = %s\n", f.Name, f.DefValue)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// wrap breaks s into lines of at most width bytes at spaces (a longer word
// stays whole).
func wrap(s string, width int) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(s) {
		if line != "" && len(line)+1+len(w) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	return append(lines, line)
}
