package placeholder

import (
	"slices"
	"unicode/utf16"
	"unicode/utf8"
)

// This file is RFC 8785 (JSON Canonicalization Scheme) for the only JSON
// types our documents hold: objects, arrays and strings. There is no
// whitespace, object members are sorted by the UTF-16 code units of their
// names (RFC 8785 §3.2.3), and strings are escaped as ECMAScript's
// JSON.stringify does (RFC 8785 §3.2.2.2): `"` and `\` with a backslash,
// U+0008, U+0009, U+000A, U+000C and U+000D as \b \t \n \f \r, the other
// controls below U+0020 as \u00xx in lower-case hex, everything else as its
// UTF-8 bytes.

// compareUTF16 orders strings by their UTF-16 code units.
func compareUTF16(a, b string) int {
	if isASCII(a) && isASCII(b) {
		switch {
		case a < b:
			return -1
		case a > b:
			return 1
		}
		return 0
	}
	return slices.Compare(utf16.Encode([]rune(a)), utf16.Encode([]rune(b)))
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JCS string. Invalid UTF-8 (which Parse and
// Validate refuse) is written as U+FFFD, so the output is always valid JSON.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for _, r := range s {
		switch r {
		case '"':
			b = append(b, '\\', '"')
		case '\\':
			b = append(b, '\\', '\\')
		case '\b':
			b = append(b, '\\', 'b')
		case '\t':
			b = append(b, '\\', 't')
		case '\n':
			b = append(b, '\\', 'n')
		case '\f':
			b = append(b, '\\', 'f')
		case '\r':
			b = append(b, '\\', 'r')
		default:
			if r < 0x20 {
				b = append(b, '\\', 'u', '0', '0', hexDigits[r>>4], hexDigits[r&0xf])
			} else {
				b = utf8.AppendRune(b, r)
			}
		}
	}
	return append(b, '"')
}

func appendStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

func appendValue(b []byte, v Value) []byte {
	if v.list {
		return appendStrings(b, v.vals)
	}
	if len(v.vals) == 0 {
		return appendString(b, "")
	}
	return appendString(b, v.vals[0])
}

// appendHeader appends the header object. Fields are kept sorted by Header;
// a Header built by hand is sorted again here to be safe.
func appendHeader(b []byte, h Header) []byte {
	fs := h.fields
	if !slices.IsSortedFunc(fs, func(x, y Field) int { return compareUTF16(x.Name, y.Name) }) {
		fs = slices.Clone(fs)
		slices.SortStableFunc(fs, func(x, y Field) int { return compareUTF16(x.Name, y.Name) })
	}
	b = append(b, '{')
	for i, f := range fs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, f.Name)
		b = append(b, ':')
		b = appendValue(b, f.Value)
	}
	return append(b, '}')
}

func appendParts(b []byte, ps []Part) []byte {
	b = append(b, '[')
	for i, p := range ps {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendPart(b, p.Header, p.Parts)
	}
	return append(b, ']')
}

// appendPart appends {"headers":...,"parts":...}; "headers" sorts before
// "parts", and "parts" is left out when there are none.
func appendPart(b []byte, h Header, ps []Part) []byte {
	b = append(b, `{"headers":`...)
	b = appendHeader(b, h)
	if len(ps) > 0 {
		b = append(b, `,"parts":`...)
		b = appendParts(b, ps)
	}
	return append(b, '}')
}

// appendAny appends a tree of map[string]any, []any, []string, string and
// Value. Any other type is a bug in this package and panics.
func appendAny(b []byte, v any) []byte {
	switch v := v.(type) {
	case string:
		return appendString(b, v)
	case []string:
		return appendStrings(b, v)
	case Value:
		return appendValue(b, v)
	case []any:
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendAny(b, e)
		}
		return append(b, ']')
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, compareUTF16)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendAny(b, v[k])
		}
		return append(b, '}')
	}
	panic("placeholder: appendAny: unsupported type")
}
