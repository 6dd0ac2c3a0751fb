package apidoc

import (
	"encoding"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"
)

// Schema is a JSON Schema (draft 2020-12, the dialect of OpenAPI 3.1) as the
// document writes it. encoding/json writes its members sorted, so the same
// schema always gives the same bytes.
type Schema = map[string]any

// Ref is a schema that refers to components.schemas[name].
func Ref(name string) Schema { return Schema{"$ref": "#/components/schemas/" + name} }

// Type names a Go type in the document and annotates it. The shape (the
// members, their JSON types, which are required, which may be null) comes
// from the type by reflection, as encoding/json writes and reads it; a Type
// adds only what Go cannot say: prose, enums, bounds, patterns.
type Type struct {
	Go          reflect.Type
	Name        string // the components.schemas key; default: the Go name
	Description string
	// Fields adds keywords to a member's reflected schema, by JSON name;
	// a "$ref" among them replaces the reflected type (as for a member
	// whose Go type is wider than what it carries, json.RawMessage). A
	// name that is not a member is an error: renaming a JSON field cannot
	// leave its documentation behind.
	Fields map[string]Schema
	// Schema, for a type that is not a struct (or marshals itself), is its
	// whole schema instead of a reflected one.
	Schema Schema
	// Extra adds keywords to the type's schema (an example).
	Extra Schema
}

// TypeOf is Type{Go: reflect.TypeFor[T]()}.
func TypeOf[T any]() reflect.Type { return reflect.TypeFor[T]() }

// reflector turns Go types into components.schemas.
type reflector struct {
	types   map[reflect.Type]*Type
	names   map[string]reflect.Type
	request map[reflect.Type]bool // read from request bodies: closed, never null
	defs    map[string]Schema
	used    map[*Type]bool
}

func newReflector(types []Type) (*reflector, error) {
	r := &reflector{types: map[reflect.Type]*Type{}, names: map[string]reflect.Type{}, request: map[reflect.Type]bool{},
		defs: map[string]Schema{}, used: map[*Type]bool{}}
	for i := range types {
		t := &types[i]
		if t.Name == "" {
			t.Name = t.Go.Name()
		}
		if _, dup := r.types[t.Go]; dup {
			return nil, fmt.Errorf("type %v is annotated twice", t.Go)
		}
		if prev, dup := r.names[t.Name]; dup {
			return nil, fmt.Errorf("schema name %s is used by %v and %v", t.Name, prev, t.Go)
		}
		r.types[t.Go], r.names[t.Name] = t, t.Go
	}
	return r, nil
}

var (
	timeType      = reflect.TypeFor[time.Time]()
	rawType       = reflect.TypeFor[json.RawMessage]()
	marshalerType = reflect.TypeFor[json.Marshaler]()
	textType      = reflect.TypeFor[encoding.TextMarshaler]()
)

// schema returns the schema of t: a $ref for a named struct or an
// annotated type (defining it on first use), else an inline schema.
func (r *reflector) schema(t reflect.Type) (Schema, error) {
	if t.Kind() == reflect.Pointer {
		return r.schema(t.Elem())
	}
	if info := r.types[t]; info != nil {
		return r.define(t, info)
	}
	switch {
	case t == timeType:
		return Schema{"type": "string", "format": "date-time"}, nil
	case t == rawType:
		return Schema{}, nil // any JSON value
	case t.Implements(marshalerType) || reflect.PointerTo(t).Implements(marshalerType),
		t.Implements(textType) || reflect.PointerTo(t).Implements(textType):
		return nil, fmt.Errorf("%v marshals itself: annotate it with a Type.Schema", t)
	}
	switch t.Kind() {
	case reflect.Bool:
		return Schema{"type": "boolean"}, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32:
		return Schema{"type": "integer"}, nil
	case reflect.Int64:
		return Schema{"type": "integer", "format": "int64"}, nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return Schema{"type": "integer", "minimum": 0}, nil
	case reflect.Float32, reflect.Float64:
		return Schema{"type": "number"}, nil
	case reflect.String:
		return Schema{"type": "string"}, nil
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return Schema{"type": "string", "contentEncoding": "base64"}, nil
		}
		items, err := r.schema(t.Elem())
		if err != nil {
			return nil, err
		}
		return Schema{"type": "array", "items": items}, nil
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			return nil, fmt.Errorf("%v: only string-keyed maps are JSON objects", t)
		}
		v, err := r.schema(t.Elem())
		if err != nil {
			return nil, err
		}
		return Schema{"type": "object", "additionalProperties": v}, nil
	case reflect.Interface:
		return Schema{}, nil
	case reflect.Struct:
		if t.Name() == "" {
			return r.object(t, nil)
		}
		return r.define(t, &Type{Go: t, Name: t.Name()})
	}
	return nil, fmt.Errorf("%v: no JSON schema for kind %v", t, t.Kind())
}

// define puts t's schema into components.schemas and returns a $ref to it.
func (r *reflector) define(t reflect.Type, info *Type) (Schema, error) {
	if prev, ok := r.names[info.Name]; ok && prev != t {
		return nil, fmt.Errorf("schema name %s is used by %v and %v: annotate one with a Type.Name", info.Name, prev, t)
	}
	r.names[info.Name] = t
	ref := Ref(info.Name)
	if _, done := r.defs[info.Name]; done {
		return ref, nil
	}
	r.defs[info.Name] = nil // under construction: a recursive type refers to itself
	r.used[info] = true
	var s Schema
	var err error
	switch {
	case info.Schema != nil:
		s = clone(info.Schema)
		if len(info.Fields) > 0 {
			return nil, fmt.Errorf("%s: Fields need a reflected struct, not a Schema", info.Name)
		}
	case t.Kind() == reflect.Struct && t != timeType:
		if s, err = r.object(t, info.Fields); err != nil {
			return nil, fmt.Errorf("%s: %w", info.Name, err)
		}
	default:
		// A named scalar (a string type): its kind's schema.
		if s, err = r.scalar(t); err != nil {
			return nil, fmt.Errorf("%s: %w", info.Name, err)
		}
	}
	if info.Description != "" {
		s["description"] = info.Description
	}
	for k, v := range info.Extra {
		s[k] = v
	}
	r.defs[info.Name] = s
	return ref, nil
}

func (r *reflector) scalar(t reflect.Type) (Schema, error) {
	switch t.Kind() {
	case reflect.String:
		return Schema{"type": "string"}, nil
	case reflect.Bool:
		return Schema{"type": "boolean"}, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return Schema{"type": "integer"}, nil
	}
	return nil, fmt.Errorf("%v: annotate it with a Type.Schema", t)
}

// field is a member encoding/json writes for a struct.
type field struct {
	name      string
	omitempty bool
	typ       reflect.Type
}

// jsonFields returns the members of struct t as encoding/json writes them:
// exported fields by their tag's name, "-" skipped, embedded structs without
// a name promoted (shallower fields win, as in encoding/json).
func jsonFields(t reflect.Type) ([]field, error) {
	var out []field
	seen := map[string]int{} // name → depth
	var walk func(t reflect.Type, depth int) error
	walk = func(t reflect.Type, depth int) error {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			ft := f.Type
			if f.Anonymous && name == "" {
				et := ft
				if et.Kind() == reflect.Pointer {
					et = et.Elem()
				}
				if et.Kind() == reflect.Struct {
					if err := walk(et, depth+1); err != nil {
						return err
					}
					continue
				}
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if slices.Contains(strings.Split(opts, ","), "string") {
				return fmt.Errorf("member %s: the ,string option is not supported", name)
			}
			if d, ok := seen[name]; ok {
				if d == depth {
					return fmt.Errorf("member %s appears twice at one depth (encoding/json drops both)", name)
				}
				continue // the shallower one won
			}
			seen[name] = depth
			o := strings.Split(opts, ",")
			out = append(out, field{name: name, omitempty: slices.Contains(o, "omitempty") || slices.Contains(o, "omitzero"), typ: ft})
		}
		return nil
	}
	if err := walk(t, 0); err != nil {
		return nil, err
	}
	return out, nil
}

// object reflects a struct: its members, required unless omitempty. In a
// response a pointer member that is not omitempty may be null; a request
// body (r.request) refuses null, and members it does not know.
func (r *reflector) object(t reflect.Type, extra map[string]Schema) (Schema, error) {
	fields, err := jsonFields(t)
	if err != nil {
		return nil, err
	}
	props := Schema{}
	required := []string{}
	known := map[string]bool{}
	request := r.request[t]
	for _, f := range fields {
		known[f.name] = true
		var s Schema
		if x := extra[f.name]; x["$ref"] != nil {
			s = Schema{}
		} else if s, err = r.schema(f.typ); err != nil {
			return nil, fmt.Errorf("member %s: %w", f.name, err)
		}
		s = clone(s)
		for k, v := range extra[f.name] {
			s[k] = v
		}
		if f.typ.Kind() == reflect.Pointer && !f.omitempty && !request {
			s = orNull(s)
		}
		props[f.name] = s
		if !f.omitempty {
			required = append(required, f.name)
		}
	}
	for name := range extra {
		if !known[name] {
			return nil, fmt.Errorf("annotates %q, which is not a JSON member of %v", name, t)
		}
	}
	s := Schema{"type": "object", "properties": props}
	if len(required) > 0 {
		s["required"] = required
	}
	if request {
		s["additionalProperties"] = false
	}
	return s, nil
}

// orNull widens s to admit null.
func orNull(s Schema) Schema {
	switch typ := s["type"].(type) {
	case string:
		s["type"] = []string{typ, "null"}
		return s
	case nil:
		if _, ok := s["$ref"]; ok {
			out := Schema{"anyOf": []any{Schema{"$ref": s["$ref"]}, Schema{"type": "null"}}}
			for k, v := range s {
				if k != "$ref" {
					out[k] = v
				}
			}
			return out
		}
	}
	return s
}

func clone(s Schema) Schema {
	out := make(Schema, len(s))
	for k, v := range s {
		out[k] = v
	}
	return out
}
