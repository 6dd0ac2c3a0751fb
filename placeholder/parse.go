package placeholder

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"unicode/utf8"
)

// Part is a node of the parts tree: a multipart when it has Parts, otherwise
// a leaf referencing one External Resource.
type Part struct {
	Header Header
	Parts  []Part
}

// IsLeaf reports whether p has no sub-parts.
func (p Part) IsLeaf() bool { return len(p.Parts) == 0 }

// Message is a Placeholder Message: the envelope headers and the body parts.
type Message struct {
	Header Header
	Parts  []Part
}

// Parse reads a Placeholder Message and checks every rule of
// docs/PROTOCOL.md §2–§3. A zero field of lim means the default.
// Errors are *errs.Error of kind errs.Invalid with a Code* code.
func Parse(data []byte, lim Limits) (*Message, error) {
	lim = lim.withDefaults()
	d, err := newDecoder(data, lim)
	if err != nil {
		return nil, err
	}
	h, parts, hasParts, err := d.part(0)
	if err != nil {
		return nil, err
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	if !hasParts {
		return nil, invalid(CodeMissingMember, `the message has no "parts"`)
	}
	m := &Message{Header: h, Parts: parts}
	if err := m.validate(lim, false); err != nil {
		return nil, err
	}
	return m, nil
}

// ParseHeader reads a lone "headers" object, such as the envelope headers of
// one hop (docs/PROTOCOL.md §5.3), with the same rules as Parse applies to
// the headers of a message, except that Content-Type is not required.
func ParseHeader(data []byte, lim Limits) (Header, error) {
	lim = lim.withDefaults()
	d, err := newDecoder(data, lim)
	if err != nil {
		return Header{}, err
	}
	h, err := d.header()
	if err != nil {
		return Header{}, err
	}
	if err := d.end(); err != nil {
		return Header{}, err
	}
	if err := checkHeader(h, lim); err != nil {
		return Header{}, err
	}
	return h, nil
}

// UnmarshalJSON parses with Parse and DefaultLimits.
func (m *Message) UnmarshalJSON(data []byte) error {
	p, err := Parse(data, Limits{})
	if err != nil {
		return err
	}
	*m = *p
	return nil
}

// MarshalJSON returns the canonical form. Note that encoding/json escapes
// '<', '>' and '&' in what it writes unless told not to: hash Canonical(),
// never the output of json.Marshal.
func (m *Message) MarshalJSON() ([]byte, error) { return m.Canonical(), nil }

// Canonical returns the RFC 8785 (JCS) form of m (docs/PROTOCOL.md §4).
// For a valid message, Parse(m.Canonical()) equals m.
func (m *Message) Canonical() []byte { return appendPart(nil, m.Header, m.Parts) }

// CanonicalParts returns the JCS form of the top-level "parts" array, the
// bytes that Body-Digest hashes.
func (m *Message) CanonicalParts() []byte { return appendParts(nil, m.Parts) }

// Clone returns a deep copy of m.
func (m *Message) Clone() *Message {
	return &Message{Header: m.Header.Clone(), Parts: cloneParts(m.Parts)}
}

func cloneParts(ps []Part) []Part {
	if ps == nil {
		return nil
	}
	out := make([]Part, len(ps))
	for i, p := range ps {
		out[i] = Part{Header: p.Header.Clone(), Parts: cloneParts(p.Parts)}
	}
	return out
}

// Equal reports whether m and n are the same message.
func (m *Message) Equal(n *Message) bool {
	return m.Header.Equal(n.Header) && partsEqual(m.Parts, n.Parts)
}

func partsEqual(a, b []Part) bool {
	return slices.EqualFunc(a, b, func(x, y Part) bool { return x.Header.Equal(y.Header) && partsEqual(x.Parts, y.Parts) })
}

// decoder walks the token stream of encoding/json, which (unlike
// json.Unmarshal) lets us see duplicate keys, in the one shape a message
// may have: anything else is refused at the first token that does not fit.
type decoder struct {
	dec   *json.Decoder
	lim   Limits
	parts int
}

func newDecoder(data []byte, lim Limits) (*decoder, error) {
	if len(data) > lim.MaxDocument {
		return nil, invalid(CodeDocumentTooLarge, "the document has %d bytes, more than %d", len(data), lim.MaxDocument)
	}
	if err := checkText(data); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return &decoder{dec: dec, lim: lim}, nil
}

// checkText refuses what encoding/json would silently replace by U+FFFD:
// invalid UTF-8 and \u escapes of lone surrogates (RFC 7493 §2.1, which
// RFC 8785 requires).
func checkText(data []byte) error {
	if !utf8.Valid(data) {
		return invalid(CodeMalformedJSON, "the document is not valid UTF-8")
	}
	in := false
	for i := 0; i < len(data); i++ {
		c := data[i]
		if !in {
			if c == '"' {
				in = true
			}
			continue
		}
		switch c {
		case '"':
			in = false
		case '\\':
			if i+1 < len(data) && data[i+1] == 'u' {
				u, ok := hex4(data, i+2)
				if ok && u >= 0xD800 && u <= 0xDFFF {
					if u >= 0xDC00 {
						return invalid(CodeMalformedJSON, "lone surrogate escape in a string")
					}
					if !(i+11 < len(data) && data[i+6] == '\\' && data[i+7] == 'u') {
						return invalid(CodeMalformedJSON, "lone surrogate escape in a string")
					}
					if lo, ok := hex4(data, i+8); !ok || lo < 0xDC00 || lo > 0xDFFF {
						return invalid(CodeMalformedJSON, "lone surrogate escape in a string")
					}
					i += 11
					continue
				}
			}
			i++ // skip the escaped character; bad escapes are left to the decoder
		}
	}
	return nil
}

func hex4(b []byte, at int) (rune, bool) {
	if at+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[at : at+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

func (d *decoder) token() (json.Token, error) {
	t, err := d.dec.Token()
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, wrapInvalid(err, CodeMalformedJSON, "malformed JSON")
	}
	return t, nil
}

func (d *decoder) end() error {
	_, err := d.dec.Token()
	if errors.Is(err, io.EOF) {
		return nil
	}
	return invalid(CodeMalformedJSON, "data after the end of the document")
}

// typeName names a token for error messages.
func typeName(t json.Token) string {
	switch t := t.(type) {
	case json.Delim:
		switch t {
		case '{':
			return "an object"
		case '[':
			return "an array"
		}
		return "'" + t.String() + "'"
	case string:
		return "a string"
	case json.Number, float64:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return "an unexpected token"
}

func (d *decoder) expect(delim json.Delim, what string) error {
	t, err := d.token()
	if err != nil {
		return err
	}
	if t != delim {
		return invalid(CodeWrongType, "%s must be %s, not %s", what, typeName(delim), typeName(t))
	}
	return nil
}

// part reads {"headers": ..., "parts": ...} at the given depth (0 for the
// message itself).
func (d *decoder) part(depth int) (h Header, parts []Part, hasParts bool, err error) {
	what := "a part"
	if depth == 0 {
		what = "the message"
	}
	if err := d.expect('{', what); err != nil {
		return Header{}, nil, false, err
	}
	hasHeaders := false
	for d.dec.More() {
		t, err := d.token()
		if err != nil {
			return Header{}, nil, false, err
		}
		key, _ := t.(string)
		switch key {
		case "headers":
			if hasHeaders {
				return Header{}, nil, false, invalid(CodeDuplicateKey, `"headers" appears twice`)
			}
			hasHeaders = true
			if h, err = d.header(); err != nil {
				return Header{}, nil, false, err
			}
		case "parts":
			if hasParts {
				return Header{}, nil, false, invalid(CodeDuplicateKey, `"parts" appears twice`)
			}
			hasParts = true
			if parts, err = d.partList(depth + 1); err != nil {
				return Header{}, nil, false, err
			}
		default:
			return Header{}, nil, false, invalid(CodeUnknownMember, "unknown member %q in %s", key, what)
		}
	}
	if _, err := d.token(); err != nil { // '}'
		return Header{}, nil, false, err
	}
	if !hasHeaders {
		return Header{}, nil, false, invalid(CodeMissingMember, `%s has no "headers"`, what)
	}
	return h, parts, hasParts, nil
}

func (d *decoder) partList(depth int) ([]Part, error) {
	if depth > d.lim.MaxDepth {
		return nil, invalid(CodeTooDeep, "parts are nested deeper than %d", d.lim.MaxDepth)
	}
	if err := d.expect('[', `"parts"`); err != nil {
		return nil, err
	}
	var parts []Part
	for d.dec.More() {
		d.parts++
		if d.parts > d.lim.MaxParts {
			return nil, invalid(CodeTooManyParts, "more than %d parts", d.lim.MaxParts)
		}
		h, sub, _, err := d.part(depth) // an empty "parts" is refused by the inner partList
		if err != nil {
			return nil, err
		}
		parts = append(parts, Part{Header: h, Parts: sub})
	}
	if _, err := d.token(); err != nil { // ']'
		return nil, err
	}
	if len(parts) == 0 {
		return nil, invalid(CodeEmptyParts, `"parts" must not be empty; leave it out for a leaf`)
	}
	return parts, nil
}

func (d *decoder) header() (Header, error) {
	if err := d.expect('{', `"headers"`); err != nil {
		return Header{}, err
	}
	var fs []Field
	seen := map[string]bool{}
	for d.dec.More() {
		t, err := d.token()
		if err != nil {
			return Header{}, err
		}
		name, _ := t.(string)
		if seen[name] {
			return Header{}, invalid(CodeDuplicateKey, "header %q appears twice", name)
		}
		seen[name] = true
		if len(fs) == d.lim.MaxHeaders {
			return Header{}, invalid(CodeTooManyHeaders, "more than %d headers in one part", d.lim.MaxHeaders)
		}
		v, err := d.value(name)
		if err != nil {
			return Header{}, err
		}
		fs = append(fs, Field{Name: name, Value: v})
	}
	if _, err := d.token(); err != nil { // '}'
		return Header{}, err
	}
	slices.SortFunc(fs, func(x, y Field) int { return compareUTF16(x.Name, y.Name) })
	return Header{fields: fs}, nil
}

func (d *decoder) value(name string) (Value, error) {
	t, err := d.token()
	if err != nil {
		return Value{}, err
	}
	if s, ok := t.(string); ok {
		if len(s) > d.lim.MaxHeaderValue {
			return Value{}, invalid(CodeHeaderTooLarge, "header %q is larger than %d bytes", name, d.lim.MaxHeaderValue)
		}
		return Single(s), nil
	}
	if t != json.Delim('[') {
		return Value{}, invalid(CodeWrongType, "header %q must be a string or an array of strings, not %s", name, typeName(t))
	}
	var ss []string
	n := 0
	for d.dec.More() {
		t, err := d.token()
		if err != nil {
			return Value{}, err
		}
		s, ok := t.(string)
		if !ok {
			return Value{}, invalid(CodeWrongType, "header %q: an array value must hold strings only, not %s", name, typeName(t))
		}
		n += len(s)
		if n > d.lim.MaxHeaderValue {
			return Value{}, invalid(CodeHeaderTooLarge, "header %q is larger than %d bytes", name, d.lim.MaxHeaderValue)
		}
		ss = append(ss, s)
	}
	if _, err := d.token(); err != nil { // ']'
		return Value{}, err
	}
	if len(ss) == 0 {
		return Value{}, invalid(CodeBadHeaderValue, "header %q is an empty array", name)
	}
	return Value{vals: ss, list: true}, nil
}
