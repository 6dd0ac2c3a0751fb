package apidoc

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

type inner struct {
	N int `json:"n"`
}

type embedded struct {
	E string `json:"e"`
}

type sample struct {
	embedded
	Name     string            `json:"name"`
	Opt      string            `json:"opt,omitempty"`
	Zero     int64             `json:"zero,omitzero"`
	When     time.Time         `json:"when"`
	Maybe    *time.Time        `json:"maybe"`
	Bytes    []byte            `json:"bytes"`
	Raw      json.RawMessage   `json:"raw"`
	Tags     map[string]string `json:"tags"`
	Inner    inner             `json:"inner"`
	PtrInner *inner            `json:"ptr_inner"`
	List     []inner           `json:"list"`
	Skipped  string            `json:"-"`
	private  string
	Untagged bool
}

type request struct {
	Seen *bool `json:"seen"`
}

type selfMarshal struct{}

func (selfMarshal) MarshalJSON() ([]byte, error) { return []byte(`1`), nil }

func reflectOne(t *testing.T, typ reflect.Type, types []Type, asRequest bool) (map[string]Schema, error) {
	t.Helper()
	r, err := newReflector(types)
	if err != nil {
		return nil, err
	}
	r.request[typ] = asRequest
	if _, err := r.schema(typ); err != nil {
		return nil, err
	}
	return r.defs, nil
}

// TestReflect checks the schema of each kind of member, as encoding/json
// writes it.
func TestReflect(t *testing.T) {
	defs, err := reflectOne(t, reflect.TypeFor[sample](), nil, false)
	if err != nil {
		t.Fatal(err)
	}
	s := defs["sample"]
	props := s["properties"].(Schema)
	want := map[string]Schema{
		"e":         {"type": "string"},
		"name":      {"type": "string"},
		"opt":       {"type": "string"},
		"zero":      {"type": "integer", "format": "int64"},
		"when":      {"type": "string", "format": "date-time"},
		"maybe":     {"type": []string{"string", "null"}, "format": "date-time"},
		"bytes":     {"type": "string", "contentEncoding": "base64"},
		"raw":       {},
		"tags":      {"type": "object", "additionalProperties": Schema{"type": "string"}},
		"inner":     Ref("inner"),
		"ptr_inner": {"anyOf": []any{Schema{"$ref": "#/components/schemas/inner"}, Schema{"type": "null"}}},
		"list":      {"type": "array", "items": Ref("inner")},
		"Untagged":  {"type": "boolean"},
	}
	if len(props) != len(want) {
		t.Errorf("members %v, want %d", keys(props), len(want))
	}
	for k, w := range want {
		if !reflect.DeepEqual(props[k], w) {
			t.Errorf("%s: %#v, want %#v", k, props[k], w)
		}
	}
	req := s["required"].([]string)
	for _, opt := range []string{"opt", "zero"} {
		for _, r := range req {
			if r == opt {
				t.Errorf("%s is omitempty/omitzero but required", opt)
			}
		}
	}
	if len(req) != len(want)-2 {
		t.Errorf("required %v", req)
	}
	if _, ok := s["additionalProperties"]; ok {
		t.Error("a response is closed: clients must ignore unknown members")
	}
	if defs["inner"]["type"] != "object" {
		t.Errorf("inner not defined: %v", defs["inner"])
	}
}

// An unexported field is no member.
var _ = sample{private: "not a member"}

func keys(m Schema) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestReflectRequest: a request body is closed and its pointers never null
// (the server refuses unknown members and null).
func TestReflectRequest(t *testing.T) {
	defs, err := reflectOne(t, reflect.TypeFor[request](), nil, true)
	if err != nil {
		t.Fatal(err)
	}
	s := defs["request"]
	if s["additionalProperties"] != false {
		t.Error("a request body is not closed")
	}
	if got := s["properties"].(Schema)["seen"]; !reflect.DeepEqual(got, Schema{"type": "boolean"}) {
		t.Errorf("seen: %v", got)
	}
}

// TestReflectAnnotations: annotations add keywords, a $ref replaces the
// type, and an annotation of a member that does not exist, a type that
// marshals itself without a schema, or a name used twice is an error.
func TestReflectAnnotations(t *testing.T) {
	defs, err := reflectOne(t, reflect.TypeFor[inner](), []Type{{Go: reflect.TypeFor[inner](), Name: "Inner", Description: "d",
		Fields: map[string]Schema{"n": {"minimum": 1, "description": "count"}}}}, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := defs["Inner"]; got["description"] != "d" || !reflect.DeepEqual(got["properties"].(Schema)["n"], Schema{"type": "integer", "minimum": 1, "description": "count"}) {
		t.Errorf("Inner = %v", got)
	}
	defs, err = reflectOne(t, reflect.TypeFor[sample](), []Type{{Go: reflect.TypeFor[sample](), Fields: map[string]Schema{"raw": Ref("Other")}}}, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := defs["sample"]["properties"].(Schema)["raw"]; !reflect.DeepEqual(got, Ref("Other")) {
		t.Errorf("raw = %v", got)
	}

	for _, tt := range []struct {
		name  string
		typ   reflect.Type
		types []Type
		want  string
	}{
		{"unknown member", reflect.TypeFor[inner](), []Type{{Go: reflect.TypeFor[inner](), Fields: map[string]Schema{"m": {}}}}, `"m", which is not a JSON member`},
		{"self-marshalling", reflect.TypeFor[struct{ S selfMarshal }](), nil, "marshals itself"},
		{"name twice", reflect.TypeFor[inner](), []Type{{Go: reflect.TypeFor[inner](), Name: "X"}, {Go: reflect.TypeFor[sample](), Name: "X"}}, "used by"},
	} {
		_, err := reflectOne(t, tt.typ, tt.types, false)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error with %q", tt.name, err, tt.want)
		}
	}
}

// TestBuildRefusesGaps: a wildcard without its parameter, an operationId
// used twice, an annotation no operation uses are errors, not a document.
func TestBuildRefusesGaps(t *testing.T) {
	resp := []Response{{Status: 200, Description: "ok"}}
	for _, tt := range []struct {
		name string
		api  API
		want string
	}{
		{"wildcard", API{Ops: []Op{{Method: "GET", Path: "/x/{id}", ID: "a", Responses: resp}}}, "wildcard {id}"},
		{"operationId", API{Ops: []Op{{Method: "GET", Path: "/x", ID: "a", Responses: resp}, {Method: "PUT", Path: "/x", ID: "a", Responses: resp}}}, "used twice"},
		{"unused type", API{Ops: []Op{{Method: "GET", Path: "/x", ID: "a", Responses: resp}}, Types: []Type{{Go: reflect.TypeFor[inner]()}}}, "no operation carries it"},
		{"no responses", API{Ops: []Op{{Method: "GET", Path: "/x", ID: "a"}}}, "no responses"},
		{"dangling response", API{Ops: []Op{{Method: "GET", Path: "/x", ID: "a", Responses: []Response{{Status: 401, Ref: "Nope"}}}}}, "no components.responses.Nope"},
	} {
		_, err := Build(tt.api)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error with %q", tt.name, err, tt.want)
		}
	}
}
