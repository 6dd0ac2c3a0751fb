package keys

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// maxJSONDepth bounds the nesting of a header, a payload or a JWKS. Nothing we
// accept nests deeper than a few levels (cnf.jkt, keys[].x).
const maxJSONDepth = 32

// ErrDuplicateMember is the error of CheckObject for two members whose
// names encoding/json would match to the same struct field.
var ErrDuplicateMember = errors.New("duplicate JSON member")

// DuplicateMemberError is the error of CheckObject (and so of
// ParseUnverified) for a duplicate member: errors.Is(err, ErrDuplicateMember)
// holds for it, and Name lets a caller word its own message.
type DuplicateMemberError struct{ Name string }

func (e *DuplicateMemberError) Error() string {
	return ErrDuplicateMember.Error() + " " + quote(e.Name)
}

// Is makes errors.Is(err, ErrDuplicateMember) hold.
func (e *DuplicateMemberError) Is(target error) bool { return target == ErrDuplicateMember }

// CheckObject is checkObject for other packages that decode untrusted JSON
// objects into structs (the mailbox API's request bodies): errors.Is(err,
// ErrDuplicateMember) tells a duplicate member from malformed JSON.
func CheckObject(data []byte) error { return checkObject(data) }

// checkObject reports whether data is exactly one JSON object, nested no
// deeper than maxJSONDepth, in which no object at any depth has two members
// whose names encoding/json would match to the same struct field.
//
// Duplicate names are the classic parser differential (RFC 8725 §3.12 asks
// for a single, well-defined parse; RFC 7515 §4 says a JWS with duplicate
// header names must be rejected or take the last): {"alg":"ES256","alg":"none"}
// means one thing to a first-wins parser and another to a last-wins one. We
// fold names the way encoding/json (v1) matches struct fields, so that
// {"scope":"a","ſcope":"admin"} (U+017F folds to s) is refused as well.
func checkObject(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errors.New("not a JSON object")
	}
	if err := walkObject(dec, 1); err != nil {
		return err
	}
	// The message is encoding/json's, after ours, for those who know it.
	if rest := bytes.TrimLeft(data[dec.InputOffset():], " \t\r\n"); len(rest) > 0 {
		return fmt.Errorf("data after the JSON object: invalid character %q after top-level value", rest[0])
	}
	return nil
}

// walkObject reads the members of an object whose '{' was just read, and its '}'.
func walkObject(dec *json.Decoder, depth int) error {
	seen := make(map[string]struct{})
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("bad JSON: %w", err)
		}
		name, ok := tok.(string)
		if !ok {
			return errors.New("bad JSON: member name not a string")
		}
		f := foldName(name)
		if _, dup := seen[f]; dup {
			return &DuplicateMemberError{Name: name}
		}
		seen[f] = struct{}{}
		if err := walkValue(dec, depth); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // '}'
		return fmt.Errorf("bad JSON: %w", err)
	}
	return nil
}

func walkValue(dec *json.Decoder, depth int) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("bad JSON: %w", err)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	if depth+1 > maxJSONDepth {
		return errors.New("JSON nested too deep")
	}
	switch d {
	case '{':
		return walkObject(dec, depth+1)
	case '[':
		for dec.More() {
			if err := walkValue(dec, depth+1); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil { // ']'
			return fmt.Errorf("bad JSON: %w", err)
		}
		return nil
	}
	return errors.New("bad JSON: unexpected delimiter")
}

// foldName maps a member name to the key under which encoding/json (v1)
// matches it to a struct field: ASCII upper case, and each other rune
// replaced by the smallest rune of its Unicode simple-fold orbit.
func foldName(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			out = append(out, c)
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		for {
			r2 := unicode.SimpleFold(r)
			if r2 <= r {
				r = r2
				break
			}
			r = r2
		}
		out = utf8.AppendRune(out, r)
		i += n
	}
	return string(out)
}

// quote quotes an untrusted string for an error message, cut to 40 bytes.
func quote(s string) string {
	if len(s) > 40 {
		return fmt.Sprintf("%q…", s[:40])
	}
	return fmt.Sprintf("%q", s)
}
