package mailbox

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
)

// The tests below hold openapi.json to the code: a route added without
// documentation, documented without a route, a renamed JSON field, an enum
// value the code does not produce, or a dangling $ref fails them. They are
// written by hand: no OpenAPI library is a dependency.

// loadOpenAPI parses the embedded document.
func loadOpenAPI(t *testing.T) map[string]any {
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

// pointer resolves a local JSON reference "#/a/b" (RFC 6901 with the ~0 and
// ~1 escapes) in doc.
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

// operations returns "method path" → operation for every operation in paths.
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

func TestOpenAPIVersion(t *testing.T) {
	doc := loadOpenAPI(t)
	if v, _ := doc["openapi"].(string); !strings.HasPrefix(v, "3.1") {
		t.Errorf("openapi = %q, want 3.1.x", v)
	}
	if title, _ := obj(doc, "info")["title"].(string); title != "Pullmail mailbox API" {
		t.Errorf("info.title = %q", title)
	}
	bearer := obj(obj(obj(doc, "components"), "securitySchemes"), "bearer")
	if bearer["type"] != "http" || bearer["scheme"] != "bearer" {
		t.Errorf("components.securitySchemes.bearer = %v, want an http bearer scheme", bearer)
	}
}

// TestOpenAPIRoutes checks that paths and Routes hold the same operations
// under /api/, and who must authenticate.
func TestOpenAPIRoutes(t *testing.T) {
	doc := loadOpenAPI(t)
	ops := operations(doc)
	routes := map[string]bool{}
	for _, rt := range Routes {
		key := strings.ToLower(rt.Method) + " " + rt.Pattern
		if routes[key] {
			t.Errorf("Routes lists %s twice", key)
		}
		routes[key] = true
		if _, ok := ops[key]; !ok {
			t.Errorf("route %s %s is not in openapi.json", rt.Method, rt.Pattern)
		}
	}
	ids := map[string]string{}
	for key, op := range ops {
		_, path, _ := strings.Cut(key, " ")
		if strings.HasPrefix(path, "/api/") && !routes[key] {
			t.Errorf("openapi.json documents %s, which is not in Routes", key)
		}
		id, _ := op["operationId"].(string)
		if id == "" {
			t.Errorf("%s has no operationId", key)
		} else if prev, dup := ids[id]; dup {
			t.Errorf("operationId %q is used by %s and %s", id, prev, key)
		}
		ids[id] = key
		// The API inherits the global bearer requirement; the server's own
		// endpoints opt out with "security": [].
		sec, has := op["security"]
		if strings.HasPrefix(path, "/api/") {
			if has {
				t.Errorf("%s overrides the global security requirement", key)
			}
		} else if l, ok := sec.([]any); !ok || len(l) != 0 {
			t.Errorf(`%s is served without authentication but lacks "security": []`, key)
		}
	}
	for _, key := range []string{"get /healthz", "get /metrics", "get /openapi.json"} {
		if ops[key] == nil {
			t.Errorf("openapi.json does not document %s", key)
		}
	}
}

// TestOpenAPIParameters checks that every path wildcard is a documented path
// parameter and the reverse, and the shape of the ids.
func TestOpenAPIParameters(t *testing.T) {
	doc := loadOpenAPI(t)
	wildcard := regexp.MustCompile(`\{([^}]+)\}`)
	for path, item := range obj(doc, "paths") {
		var want []string
		for _, m := range wildcard.FindAllStringSubmatch(path, -1) {
			want = append(want, m[1])
		}
		sort.Strings(want)
		for _, method := range httpMethods {
			op := obj(item, method)
			if op == nil {
				continue
			}
			var got []string
			params, _ := item.(map[string]any)["parameters"].([]any)
			opParams, _ := op["parameters"].([]any)
			for _, p := range append(slices.Clone(params), opParams...) {
				p := deref(t, doc, p)
				if p["in"] == "path" {
					got = append(got, p["name"].(string))
					if p["required"] != true {
						t.Errorf("%s %s: path parameter %v is not required", method, path, p["name"])
					}
				}
			}
			sort.Strings(got)
			if !slices.Equal(got, want) {
				t.Errorf("%s %s: path parameters %v, want %v", method, path, got, want)
			}
		}
	}

	cid := deref(t, doc, deref(t, doc, obj(obj(doc, "components"), "parameters")["cid"])["schema"])
	pattern, _ := cid["pattern"].(string)
	if pattern != `^[A-Za-z0-9_-]{43}$` {
		t.Fatalf("cid pattern = %q", pattern)
	}
	re := regexp.MustCompile(pattern)
	for _, s := range []string{string(resource.IDOf(nil)), string(resource.IDOf([]byte("pullmail")))} {
		if !re.MatchString(s) {
			t.Errorf("cid pattern refuses the ID %q", s)
		}
	}
	for _, s := range []string{"", "../../etc/passwd", strings.Repeat("A", 42), strings.Repeat("A", 44), "<" + strings.Repeat("A", 43) + ">"} {
		if re.MatchString(s) {
			t.Errorf("cid pattern accepts %q", s)
		}
	}
}

// TestOpenAPIRefs checks that every $ref resolves inside the document.
func TestOpenAPIRefs(t *testing.T) {
	doc := loadOpenAPI(t)
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

// rawErrors are error responses allowed not to be the JSON error shape.
// None: the download route turns http.ServeContent's 412 and 416 into JSON.
var rawErrors = map[string]bool{}

// TestOpenAPIErrors checks that every error response is the one Error
// schema, and that every authenticated operation documents 401.
func TestOpenAPIErrors(t *testing.T) {
	doc := loadOpenAPI(t)
	const errorRef = "#/components/schemas/Error"
	seenRaw := map[string]bool{}
	for key, op := range operations(doc) {
		responses, _ := op["responses"].(map[string]any)
		if len(responses) == 0 {
			t.Errorf("%s has no responses", key)
		}
		for code, r := range responses {
			status, err := strconv.Atoi(code)
			if err != nil {
				t.Errorf("%s: response %q is not a status code", key, code)
				continue
			}
			if status < 400 {
				continue
			}
			if rawErrors[key+" "+code] {
				seenRaw[key+" "+code] = true
				continue
			}
			resp := deref(t, doc, r)
			schema := obj(obj(obj(resp, "content"), "application/json"), "schema")
			if ref, _ := schema["$ref"].(string); ref != errorRef || len(obj(resp, "content")) != 1 {
				t.Errorf("%s %s: the response is not application/json %s", key, code, errorRef)
			}
			if desc, _ := resp["description"].(string); desc == "" {
				t.Errorf("%s %s: no description (name the error codes)", key, code)
			}
		}
		if _, path, _ := strings.Cut(key, " "); strings.HasPrefix(path, "/api/") && responses["401"] == nil {
			t.Errorf("%s does not document 401", key)
		}
	}
	for k := range rawErrors {
		if !seenRaw[k] {
			t.Errorf("rawErrors names %s, which openapi.json does not document", k)
		}
	}
}

// TestOpenAPISchemas checks that the schemas of the JSON shapes have exactly
// the JSON fields of the Go types, that required means "not omitempty", and
// that a field the code may write as null says so.
func TestOpenAPISchemas(t *testing.T) {
	tests := []struct {
		schema string
		typ    reflect.Type
	}{
		{"Me", reflect.TypeFor[Me]()},
		{"Upload", reflect.TypeFor[Upload]()},
		{"Attachment", reflect.TypeFor[Attachment]()},
		{"Message", reflect.TypeFor[Message]()},
		{"List", reflect.TypeFor[List]()},
		{"Change", reflect.TypeFor[Change]()},
		{"Changes", reflect.TypeFor[Changes]()},
		{"Patch", reflect.TypeFor[Patch]()},
		{"NewUploadSession", reflect.TypeFor[NewUploadSession]()},
		{"UploadSession", reflect.TypeFor[UploadSession]()},
		{"AutoForward", reflect.TypeFor[AutoForward]()},
		{"AutoForwardRequest", reflect.TypeFor[AutoForwardRequest]()},
		{"Error", reflect.TypeFor[errs.Body]()},
		{"ErrorDetail", reflect.TypeFor[errs.Detail]()},
	}
	doc := loadOpenAPI(t)
	schemas := obj(obj(doc, "components"), "schemas")
	for _, tt := range tests {
		t.Run(tt.schema, func(t *testing.T) {
			s, _ := schemas[tt.schema].(map[string]any)
			if s == nil {
				t.Fatalf("no schema %s", tt.schema)
			}
			props := obj(s, "properties")
			var required []string
			req, _ := s["required"].([]any)
			for _, r := range req {
				required = append(required, r.(string))
			}
			fields := jsonFields(t, tt.typ)
			var names, wantRequired []string
			for _, f := range fields {
				names = append(names, f.name)
				if !f.omitempty {
					wantRequired = append(wantRequired, f.name)
				}
				p := props[f.name]
				if p == nil {
					continue
				}
				nullable := allowsNull(p.(map[string]any))
				// Request bodies refuse null; only answers carry it.
				wantNull := f.kind == reflect.Pointer && !f.omitempty && tt.schema != "Patch"
				if nullable != wantNull {
					t.Errorf("%s.%s: schema allows null = %v, want %v", tt.schema, f.name, nullable, wantNull)
				}
			}
			var got []string
			for k := range props {
				got = append(got, k)
			}
			sort.Strings(names)
			sort.Strings(got)
			if !slices.Equal(got, names) {
				t.Errorf("%s properties %v, want the JSON fields of %v: %v", tt.schema, got, tt.typ, names)
			}
			sort.Strings(required)
			sort.Strings(wantRequired)
			if !slices.Equal(required, wantRequired) {
				t.Errorf("%s required %v, want the fields without omitempty: %v", tt.schema, required, wantRequired)
			}
		})
	}
}

// TestOpenAPIEnums checks the enums against the values the code writes.
func TestOpenAPIEnums(t *testing.T) {
	doc := loadOpenAPI(t)
	schemas := obj(obj(doc, "components"), "schemas")
	tests := []struct {
		name string
		enum any
		want []string
	}{
		{"Folder", schemas["Folder"].(map[string]any)["enum"],
			[]string{string(meta.Inbox), string(meta.Sent), string(meta.Drafts)}},
		{"Message.status", obj(obj(schemas, "Message"), "properties")["status"].(map[string]any)["enum"],
			[]string{string(meta.StatusDraft), string(meta.StatusSent), string(meta.StatusFetching), string(meta.StatusComplete), string(meta.StatusFailed)}},
		{"Change.kind", obj(obj(schemas, "Change"), "properties")["kind"].(map[string]any)["enum"],
			[]string{string(meta.Created), string(meta.Updated), string(meta.Deleted)}},
	}
	for _, tt := range tests {
		var got []string
		for _, v := range tt.enum.([]any) {
			got = append(got, v.(string))
		}
		sort.Strings(got)
		sort.Strings(tt.want)
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s enum %v, want %v", tt.name, got, tt.want)
		}
	}
	for _, f := range []meta.Folder{meta.Inbox, meta.Sent, meta.Drafts} {
		if !f.Valid() {
			t.Errorf("meta.Folder(%q).Valid() = false", f)
		}
	}
}

// TestOpenAPIStatusCodes checks the success statuses of the operations that
// answer something other than 200.
func TestOpenAPIStatusCodes(t *testing.T) {
	doc := loadOpenAPI(t)
	ops := operations(doc)
	tests := []struct {
		op     string
		status int
	}{
		{"post /api/v1/resources", http.StatusCreated},
		{"post /api/v1/messages", http.StatusCreated},
		{"delete /api/v1/messages/{id}", http.StatusNoContent},
		{"get /api/v1/messages/{id}/resources/{cid}", http.StatusPartialContent},
		{"get /api/v1/messages/{id}/resources/{cid}", http.StatusNotModified},
		{"get /api/v1/changes", http.StatusGone},
		{"post /api/v1/uploads", http.StatusCreated},
		{"patch /api/v1/uploads/{upload_id}", http.StatusCreated},
		{"patch /api/v1/uploads/{upload_id}", http.StatusConflict},
		{"patch /api/v1/uploads/{upload_id}", http.StatusRequestEntityTooLarge},
		{"delete /api/v1/uploads/{upload_id}", http.StatusNoContent},
	}
	for _, tt := range tests {
		if obj(ops[tt.op], "responses")[strconv.Itoa(tt.status)] == nil {
			t.Errorf("%s does not document %d", tt.op, tt.status)
		}
	}
}

// TestOpenAPIPlaceholderSchema checks that the document carries
// docs/placeholder.schema.json unchanged: its top level as PlaceholderMessage
// and each of its $defs as Placeholder<Name>, references rewritten. When the
// schema file changes, copy it again.
func TestOpenAPIPlaceholderSchema(t *testing.T) {
	data, err := os.ReadFile("../docs/placeholder.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var src map[string]any
	if err := json.Unmarshal(data, &src); err != nil {
		t.Fatalf("docs/placeholder.schema.json: %v", err)
	}
	component := func(def string) string { return "Placeholder" + strings.ToUpper(def[:1]) + def[1:] }
	var rewrite func(v any) any
	rewrite = func(v any) any {
		switch v := v.(type) {
		case map[string]any:
			out := map[string]any{}
			for k, e := range v {
				if ref, ok := e.(string); ok && k == "$ref" {
					if def, ok := strings.CutPrefix(ref, "#/$defs/"); ok {
						e = "#/components/schemas/" + component(def)
					} else if ref == "#" {
						e = "#/components/schemas/PlaceholderMessage"
					}
				}
				out[k] = rewrite(e)
			}
			return out
		case []any:
			out := make([]any, len(v))
			for i, e := range v {
				out[i] = rewrite(e)
			}
			return out
		}
		return v
	}
	want := map[string]any{}
	top := map[string]any{}
	for k, v := range src {
		switch k {
		case "$defs":
			defs, _ := v.(map[string]any)
			for name, def := range defs {
				want[component(name)] = rewrite(def)
			}
		case "$schema", "$id":
		default:
			top[k] = v
		}
	}
	want["PlaceholderMessage"] = rewrite(top)

	schemas := obj(obj(loadOpenAPI(t), "components"), "schemas")
	for name, w := range want {
		if !reflect.DeepEqual(schemas[name], w) {
			got, _ := json.Marshal(schemas[name])
			exp, _ := json.Marshal(w)
			t.Errorf("components.schemas.%s differs from docs/placeholder.schema.json:\n got %s\nwant %s", name, got, exp)
		}
	}
	for name := range schemas {
		if strings.HasPrefix(name, "Placeholder") && want[name] == nil {
			t.Errorf("components.schemas.%s is not in docs/placeholder.schema.json", name)
		}
	}
}

// TestOpenAPIDraftHeaders checks that DraftMessage forbids exactly the
// server-owned headers but Message-ID, which an update may echo.
func TestOpenAPIDraftHeaders(t *testing.T) {
	draft := obj(obj(loadOpenAPI(t), "components"), "schemas")["DraftMessage"]
	var got []string
	for _, part := range allOfOf(draft) {
		anyOf, _ := obj(obj(obj(part, "properties"), "headers"), "not")["anyOf"].([]any)
		for _, a := range anyOf {
			req, _ := a.(map[string]any)["required"].([]any)
			for _, r := range req {
				got = append(got, r.(string))
			}
		}
	}
	var want []string
	for _, n := range placeholder.ServerOwned() {
		if n != placeholder.HMessageID {
			want = append(want, n)
		}
	}
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("DraftMessage forbids %v, want the server-owned headers but Message-ID: %v", got, want)
	}
}

func allOfOf(schema any) []any {
	m, _ := schema.(map[string]any)
	l, _ := m["allOf"].([]any)
	return l
}

type jsonField struct {
	name      string
	omitempty bool
	kind      reflect.Kind
}

// jsonFields returns the fields that encoding/json writes for typ.
func jsonFields(t *testing.T, typ reflect.Type) []jsonField {
	t.Helper()
	var out []jsonField
	for i := range typ.NumField() {
		f := typ.Field(i)
		if !f.IsExported() {
			continue
		}
		if f.Anonymous {
			t.Fatalf("%v embeds %v: jsonFields does not follow embedded structs", typ, f.Type)
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		omit := slices.Contains(strings.Split(opts, ","), "omitempty") || slices.Contains(strings.Split(opts, ","), "omitzero")
		out = append(out, jsonField{name: name, omitempty: omit, kind: f.Type.Kind()})
	}
	return out
}

// allowsNull reports whether a property schema's type includes null.
func allowsNull(s map[string]any) bool {
	switch typ := s["type"].(type) {
	case string:
		return typ == "null"
	case []any:
		return slices.Contains(typ, any("null"))
	}
	return false
}

// TestOpenAPIEventsAndPaging checks what the generic tests cannot: the
// events route answers an event stream, listings take page, and the
// upload PATCH documents its offset header.
func TestOpenAPIEventsAndPaging(t *testing.T) {
	doc := loadOpenAPI(t)
	ops := operations(doc)
	ok := obj(obj(ops["get /api/v1/events"], "responses"), "200")
	if obj(obj(ok, "content"), "text/event-stream") == nil {
		t.Error("get /api/v1/events: 200 is not text/event-stream")
	}
	has := func(op, name string) bool {
		params, _ := ops[op]["parameters"].([]any)
		for _, p := range params {
			if deref(t, doc, p)["name"] == name {
				return true
			}
		}
		return false
	}
	if !has("get /api/v1/messages", "page") {
		t.Error("get /api/v1/messages does not take page")
	}
	if !has("patch /api/v1/uploads/{upload_id}", UploadOffsetHeader) {
		t.Error("patch /api/v1/uploads/{upload_id} does not document Upload-Offset")
	}
}
