package apidoc

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// The tests in this file check the generated document structurally, as
// OpenAPI 3.1 and JSON Schema 2020-12, by hand: no OpenAPI library is a
// dependency.

// loadDoc parses the committed document.
func loadDoc(t *testing.T) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.json is not JSON: %v", err)
	}
	return doc
}

// obj returns v[key] as an object, or nil.
func obj(v any, key string) map[string]any {
	m, _ := v.(map[string]any)
	o, _ := m[key].(map[string]any)
	return o
}

// pointer resolves a local JSON reference "#/a/b" (RFC 6901, with the ~0
// and ~1 escapes) in doc.
func pointer(doc map[string]any, ref string) (any, error) {
	rest, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, fmt.Errorf("%q is not a reference inside the document", ref)
	}
	var cur any = doc
	for _, tok := range strings.Split(rest, "/") {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[tok]
			if !ok {
				return nil, fmt.Errorf("%q: no member %q", ref, tok)
			}
			cur = v
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(c) {
				return nil, fmt.Errorf("%q: no element %q", ref, tok)
			}
			cur = c[i]
		default:
			return nil, fmt.Errorf("%q: %q is inside a scalar", ref, tok)
		}
	}
	return cur, nil
}

// deref follows $ref until it reaches an object that is not a reference.
func deref(t *testing.T, doc map[string]any, v any) map[string]any {
	t.Helper()
	for range 10 {
		m, _ := v.(map[string]any)
		ref, ok := m["$ref"].(string)
		if !ok {
			return m
		}
		var err error
		if v, err = pointer(doc, ref); err != nil {
			t.Fatal(err)
		}
	}
	t.Fatalf("a $ref chain longer than 10")
	return nil
}

var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// operations returns "method path" → operation for every operation.
func operations(doc map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	for path, item := range obj(doc, "paths") {
		for _, m := range httpMethods {
			if op := obj(item, m); op != nil {
				out[m+" "+path] = op
			}
		}
	}
	return out
}

// TestDocumentVersion: an OpenAPI 3.1 document with the security schemes
// its operations name.
func TestDocumentVersion(t *testing.T) {
	doc := loadDoc(t)
	if v, _ := doc["openapi"].(string); !strings.HasPrefix(v, "3.1.") {
		t.Errorf("openapi = %q, want 3.1.x", v)
	}
	if title, _ := obj(doc, "info")["title"].(string); title == "" {
		t.Error("info.title is empty")
	}
	if v, _ := obj(doc, "info")["version"].(string); v == "" {
		t.Error("info.version is empty")
	}
	schemes := obj(obj(doc, "components"), "securitySchemes")
	if b := obj(schemes, "bearer"); b["type"] != "http" || b["scheme"] != "bearer" {
		t.Errorf("components.securitySchemes.bearer = %v, want an http bearer scheme", b)
	}
	tags := map[string]bool{}
	for _, tg := range doc["tags"].([]any) {
		tags[tg.(map[string]any)["name"].(string)] = true
	}
	checkSecurity := func(at string, sec any) {
		l, ok := sec.([]any)
		if !ok {
			t.Errorf("%s: security is not an array", at)
			return
		}
		for _, req := range l {
			for name := range req.(map[string]any) {
				if schemes[name] == nil {
					t.Errorf("%s: security names the undeclared scheme %q", at, name)
				}
			}
		}
	}
	checkSecurity("#", doc["security"])
	for key, op := range operations(doc) {
		if sec, ok := op["security"]; ok {
			checkSecurity(key, sec)
		}
		tl, _ := op["tags"].([]any)
		if len(tl) == 0 {
			t.Errorf("%s has no tag", key)
		}
		for _, tg := range tl {
			if !tags[tg.(string)] {
				t.Errorf("%s: tag %v is not declared", key, tg)
			}
		}
	}
}

// TestDocumentRefs checks that every $ref resolves inside the document.
func TestDocumentRefs(t *testing.T) {
	doc := loadDoc(t)
	n := 0
	var walk func(at string, v any)
	walk = func(at string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"]; ok {
				n++
				s, _ := ref.(string)
				if _, err := pointer(doc, s); err != nil {
					t.Errorf("%s: %v", at, err)
				}
			}
			for k, e := range v {
				walk(at+"/"+k, e)
			}
		case []any:
			for i, e := range v {
				walk(at+"/"+strconv.Itoa(i), e)
			}
		}
	}
	walk("#", doc)
	if n == 0 {
		t.Error("no $ref at all: the walk is broken")
	}
}

// TestDocumentOperations: operationIds unique, every path template's
// parameters declared (required) and no others, every response a status
// with a description.
func TestDocumentOperations(t *testing.T) {
	doc := loadDoc(t)
	template := regexp.MustCompile(`\{([^}]+)\}`)
	ids := map[string]string{}
	for path, item := range obj(doc, "paths") {
		if !strings.HasPrefix(path, "/") {
			t.Errorf("path %q does not start with /", path)
		}
		var want []string
		for _, m := range template.FindAllStringSubmatch(path, -1) {
			want = append(want, m[1])
		}
		sort.Strings(want)
		for k := range item.(map[string]any) {
			if k != "parameters" && !slices.Contains(httpMethods, k) {
				t.Errorf("%s: unknown path item member %q", path, k)
			}
		}
		for _, method := range httpMethods {
			op := obj(item, method)
			if op == nil {
				continue
			}
			key := method + " " + path
			id, _ := op["operationId"].(string)
			if id == "" {
				t.Errorf("%s has no operationId", key)
			} else if prev, dup := ids[id]; dup {
				t.Errorf("operationId %q is used by %s and %s", id, prev, key)
			}
			ids[id] = key

			var got []string
			seen := map[string]bool{}
			params, _ := item.(map[string]any)["parameters"].([]any)
			opParams, _ := op["parameters"].([]any)
			for _, p := range append(slices.Clone(params), opParams...) {
				p := deref(t, doc, p)
				name, _ := p["name"].(string)
				in, _ := p["in"].(string)
				if !slices.Contains([]string{"path", "query", "header", "cookie"}, in) || name == "" {
					t.Errorf("%s: parameter %q in %q", key, name, in)
				}
				if seen[in+" "+name] {
					t.Errorf("%s: parameter %s %s twice", key, in, name)
				}
				seen[in+" "+name] = true
				if p["schema"] == nil {
					t.Errorf("%s: parameter %s has no schema", key, name)
				}
				if in == "path" {
					got = append(got, name)
					if p["required"] != true {
						t.Errorf("%s: path parameter %s is not required", key, name)
					}
				}
			}
			sort.Strings(got)
			if !slices.Equal(got, want) {
				t.Errorf("%s: path parameters %v, want %v", key, got, want)
			}

			responses, _ := op["responses"].(map[string]any)
			if len(responses) == 0 {
				t.Errorf("%s has no responses", key)
			}
			for code, r := range responses {
				status, err := strconv.Atoi(code)
				if err != nil || http.StatusText(status) == "" {
					t.Errorf("%s: response %q is not a status code", key, code)
				}
				if desc, _ := deref(t, doc, r)["description"].(string); desc == "" {
					t.Errorf("%s %s: no description", key, code)
				}
			}
			if rb := op["requestBody"]; rb != nil {
				if len(obj(deref(t, doc, rb), "content")) == 0 {
					t.Errorf("%s: a request body without content", key)
				}
			}
		}
	}
}

// schemaKeywords are the JSON Schema 2020-12 keywords (and the OpenAPI 3.1
// ones) the document may use; anything else is a typo or a keyword of
// another dialect (nullable, x-...).
var schemaKeywords = map[string]string{
	"$ref": "string", "type": "type", "enum": "array", "const": "any", "format": "string",
	"description": "string", "title": "string", "example": "any", "examples": "array", "default": "any",
	"properties": "schemas", "required": "strings", "additionalProperties": "schema|bool",
	"propertyNames": "schema", "maxProperties": "int", "minProperties": "int",
	"items": "schema", "prefixItems": "schemaList", "minItems": "int", "maxItems": "int",
	"minLength": "int", "maxLength": "int", "pattern": "pattern", "minimum": "number", "maximum": "number",
	"allOf": "schemaList", "anyOf": "schemaList", "oneOf": "schemaList", "not": "schema",
	"if": "schema", "then": "schema", "else": "schema",
	"contentEncoding": "string", "contentMediaType": "string",
}

var jsonTypes = []string{"string", "integer", "number", "boolean", "object", "array", "null"}

// checkSchema checks that s is a schema of the subset the document uses.
func checkSchema(t *testing.T, at string, s any) {
	t.Helper()
	m, ok := s.(map[string]any)
	if !ok {
		if _, isBool := s.(bool); isBool {
			return
		}
		t.Errorf("%s: a schema must be an object or a boolean", at)
		return
	}
	for k, v := range m {
		kind, ok := schemaKeywords[k]
		if !ok {
			t.Errorf("%s: unknown schema keyword %q", at, k)
			continue
		}
		here := at + "/" + k
		switch kind {
		case "string":
			if _, ok := v.(string); !ok {
				t.Errorf("%s: not a string", here)
			}
		case "pattern":
			p, _ := v.(string)
			if _, err := regexp.Compile(p); err != nil {
				t.Errorf("%s: %v", here, err)
			}
		case "int", "number":
			f, ok := v.(float64)
			if !ok || (kind == "int" && (f != float64(int64(f)) || f < 0)) {
				t.Errorf("%s: %v is not a %s", here, v, kind)
			}
		case "array", "strings":
			l, ok := v.([]any)
			if !ok || (k == "enum" && len(l) == 0) {
				t.Errorf("%s: not a (non-empty) array", here)
			}
			if kind == "strings" {
				for _, e := range l {
					if _, ok := e.(string); !ok {
						t.Errorf("%s: %v is not a string", here, e)
					}
				}
			}
		case "type":
			var names []any
			switch tv := v.(type) {
			case string:
				names = []any{tv}
			case []any:
				names = tv
			}
			if len(names) == 0 {
				t.Errorf("%s: empty", here)
			}
			for _, n := range names {
				if s, _ := n.(string); !slices.Contains(jsonTypes, s) {
					t.Errorf("%s: %v is not a JSON type", here, n)
				}
			}
		case "schema", "schema|bool":
			checkSchema(t, here, v)
		case "schemaList":
			l, ok := v.([]any)
			if !ok || len(l) == 0 {
				t.Errorf("%s: not a non-empty array of schemas", here)
			}
			for i, e := range l {
				checkSchema(t, here+"/"+strconv.Itoa(i), e)
			}
		case "schemas":
			props, ok := v.(map[string]any)
			if !ok {
				t.Errorf("%s: not an object", here)
			}
			for name, p := range props {
				checkSchema(t, here+"/"+name, p)
			}
		}
	}
	// Required members are ones the object describes, unless it composes
	// others or leaves members open.
	if req, ok := m["required"].([]any); ok && m["allOf"] == nil && m["additionalProperties"] == false {
		props, _ := m["properties"].(map[string]any)
		for _, r := range req {
			if _, ok := props[r.(string)]; !ok {
				t.Errorf("%s: required %v is not a property of a closed object", at, r)
			}
		}
	}
}

// TestDocumentSchemas checks every schema of the document: components'
// and those of parameters, headers and contents.
func TestDocumentSchemas(t *testing.T) {
	doc := loadDoc(t)
	n := 0
	for name, s := range obj(obj(doc, "components"), "schemas") {
		checkSchema(t, "#/components/schemas/"+name, s)
		n++
	}
	var walk func(at string, v any)
	walk = func(at string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				if k == "schema" {
					checkSchema(t, at+"/schema", e)
					n++
					continue
				}
				walk(at+"/"+k, e)
			}
		case []any:
			for i, e := range v {
				walk(at+"/"+strconv.Itoa(i), e)
			}
		}
	}
	walk("#/paths", doc["paths"])
	for _, part := range []string{"parameters", "headers", "responses", "requestBodies"} {
		walk("#/components/"+part, obj(obj(doc, "components"), part))
	}
	if n < 50 {
		t.Errorf("only %d schemas checked: the walk is broken", n)
	}
}
