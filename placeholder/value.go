package placeholder

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/pullmail/pullmail/errs"
)

// Value is a header value: a single string or a non-empty list of strings.
// The two forms are distinct on the wire and in every digest: the string "a"
// and the list ["a"] are different values. The zero Value means "absent".
type Value struct {
	vals []string
	list bool
}

// Single returns the string form of a value.
func Single(s string) Value { return Value{vals: []string{s}} }

// List returns the list form of a value. List() with no elements is the zero
// (absent) Value, which Set treats as a deletion.
func List(ss ...string) Value {
	if len(ss) == 0 {
		return Value{}
	}
	return Value{vals: append([]string(nil), ss...), list: true}
}

// IsZero reports whether v is absent.
func (v Value) IsZero() bool { return len(v.vals) == 0 }

// IsList reports whether v has the list form.
func (v Value) IsList() bool { return v.list }

// String returns the string of a single value, or the elements of a list
// joined by ", " (as RFC 5322 would fold repeated address fields). For values
// whose list form carries structure (a leaf's Content-Type) use List.
func (v Value) String() string { return strings.Join(v.vals, ", ") }

// List returns the elements: one for a single value, none for the zero Value.
// The slice is a copy.
func (v Value) List() []string { return append([]string(nil), v.vals...) }

// Len returns the number of strings in v.
func (v Value) Len() int { return len(v.vals) }

// size is the number of bytes of all the strings, the measure that
// Limits.MaxHeaderValue applies to.
func (v Value) size() int {
	n := 0
	for _, s := range v.vals {
		n += len(s)
	}
	return n
}

// Equal reports whether v and w are the same value, form included.
func (v Value) Equal(w Value) bool {
	if v.list != w.list || len(v.vals) != len(w.vals) {
		return false
	}
	for i := range v.vals {
		if v.vals[i] != w.vals[i] {
			return false
		}
	}
	return true
}

// MarshalJSON writes the value in its form, JCS-escaped.
func (v Value) MarshalJSON() ([]byte, error) {
	if v.IsZero() {
		return nil, errs.E(errs.Invalid, CodeBadHeaderValue, "empty header value")
	}
	return appendValue(nil, v), nil
}

// UnmarshalJSON accepts a string or a non-empty array of strings, nothing else.
func (v *Value) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return errs.Wrap(err, errs.Invalid, CodeMalformedJSON, "header value is not a JSON string")
		}
		*v = Single(s)
		return nil
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return errs.E(errs.Invalid, CodeWrongType, "a header value must be a string or an array of strings")
	}
	if len(raw) == 0 {
		return errs.E(errs.Invalid, CodeBadHeaderValue, "a header value array must not be empty")
	}
	ss := make([]string, len(raw))
	for i, r := range raw {
		r = bytes.TrimSpace(r)
		if len(r) == 0 || r[0] != '"' {
			return errs.E(errs.Invalid, CodeWrongType, "a header value array must hold strings only")
		}
		if err := json.Unmarshal(r, &ss[i]); err != nil {
			return errs.Wrap(err, errs.Invalid, CodeMalformedJSON, "bad string in header value")
		}
	}
	*v = List(ss...)
	return nil
}
