package mailbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"

	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/keys"
)

// decodeBody decodes the JSON request body doc into v, a pointer to a
// struct, and answers what it refuses with a stable code:
//
//	duplicate_key   two members encoding/json would match to one field
//	                ({"seen":false,"seen":true}, {"to":[],"TO":[]})
//	unknown_member  a member name that is not exactly a field's JSON name
//	                ({"Seen":false}, {"SIZE":10}, {"evil":1})
//	missing_member  a member of required is absent or null ({} for a new
//	                upload: encoding/json would leave its size 0)
//	malformed_json  anything else: not one JSON object, a wrong type,
//	                trailing data (usage says what the body must be)
//
// encoding/json takes the last of duplicate members and matches names case-
// insensitively, so without this pre-pass a body another parser reads
// differently (or a client's typo in case) would change state.
func decodeBody(doc []byte, v any, usage string, required ...string) error {
	malformed := errs.E(errs.Invalid, "malformed_json", "%s", usage)
	if err := keys.CheckObject(doc); errors.Is(err, keys.ErrDuplicateMember) {
		return errs.Wrap(err, errs.Invalid, "duplicate_key", "a member appears twice (names are matched regardless of case): "+usage)
	} else if err != nil {
		return malformed
	}
	if err := exactMembers(doc, reflect.TypeOf(v)); err != nil {
		return err
	}
	if len(required) > 0 {
		var members map[string]json.RawMessage
		if err := json.Unmarshal(doc, &members); err != nil {
			return malformed
		}
		for _, name := range required {
			if raw, ok := members[name]; !ok || string(raw) == "null" {
				return errs.E(errs.Invalid, "missing_member", "the member %q is required and not null: %s", name, usage)
			}
		}
	}
	if err := decodeJSON(doc, v); err != nil {
		return malformed
	}
	return nil
}

// exactMembers checks that every member name of the JSON object doc (its
// duplicates already refused) is exactly the JSON name of a field of the
// struct t points to, at every depth where t has a struct.
func exactMembers(doc []byte, t reflect.Type) error {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array {
		t = t.Elem()
		if doc = bytes.TrimSpace(doc); len(doc) > 0 && doc[0] == '[' {
			var elems []json.RawMessage
			if json.Unmarshal(doc, &elems) != nil {
				return nil // the decode reports it
			}
			for _, e := range elems {
				if err := exactMembers(e, t); err != nil {
					return err
				}
			}
			return nil
		}
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var members map[string]json.RawMessage
	if json.Unmarshal(doc, &members) != nil {
		return nil // null, or not an object: the decode reports it
	}
	fields := map[string]reflect.Type{}
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = f.Type
	}
	for name, raw := range members {
		ft, ok := fields[name]
		if !ok {
			for known := range fields {
				if strings.EqualFold(known, name) {
					return errs.E(errs.Invalid, "unknown_member", "no member %s: member names are case-sensitive (%q)", quoteName(name), known)
				}
			}
			return errs.E(errs.Invalid, "unknown_member", "no member %s in this body", quoteName(name))
		}
		if err := exactMembers(raw, ft); err != nil {
			return err
		}
	}
	return nil
}

// quoteName quotes a client's member name for a message, cut to 40 bytes.
func quoteName(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	b, _ := json.Marshal(s)
	return string(b)
}
