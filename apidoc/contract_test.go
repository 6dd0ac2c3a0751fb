package apidoc

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/pullmail/pullmail/mailbox"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/resource"
)

// The tests below were mailbox/openapi_test.go's, which held the
// hand-written document to the code; what the generator now does by
// construction (the schemas' members and required lists, the Placeholder
// schemas copied from docs/placeholder.schema.json, DraftMessage's
// server-owned headers, the enums from meta's constants) is checked by
// TestGenerated and by the tests of the generator.

// TestRoutes checks that the document's /api/ operations and
// mailbox.Routes (from which the mailbox API's mux is built) are the same
// set, and who must authenticate. server's TestDocumentedRoutesServed
// holds every path to the whole server's mux.
func TestRoutes(t *testing.T) {
	doc := loadDoc(t)
	ops := operations(doc)
	routes := map[string]bool{}
	for _, rt := range mailbox.Routes {
		key := strings.ToLower(rt.Method) + " " + rt.Pattern
		if routes[key] {
			t.Errorf("mailbox.Routes lists %s twice", key)
		}
		routes[key] = true
		if _, ok := ops[key]; !ok {
			t.Errorf("route %s %s is not in the document", rt.Method, rt.Pattern)
		}
	}
	for key, op := range ops {
		_, path, _ := strings.Cut(key, " ")
		if strings.HasPrefix(path, "/api/") && !routes[key] {
			t.Errorf("the document has %s, which is not in mailbox.Routes", key)
		}
		// The mailbox API inherits the global bearer requirement; the
		// rest opts out ("security": []) or names DPoP (federation).
		sec, has := op["security"]
		switch l, _ := sec.([]any); {
		case strings.HasPrefix(path, "/api/"):
			if has {
				t.Errorf("%s overrides the global security requirement", key)
			}
		case strings.HasPrefix(path, "/federation/"):
			if len(l) != 1 || l[0].(map[string]any)["dpop"] == nil {
				t.Errorf("%s: security %v, want dpop", key, sec)
			}
		default:
			if !has || len(l) != 0 {
				t.Errorf(`%s is served without authentication but lacks "security": []`, key)
			}
		}
	}
	for _, key := range []string{"get /healthz", "get /readyz", "get /metrics", "get /openapi.json",
		"get /.well-known/oauth-authorization-server", "get /.well-known/pullmail-mailbox", "get /oauth/jwks",
		"get /oauth/authorize", "post /oauth/authorize", "post /oauth/token", "post /oauth/revoke",
		"post /oauth/device_authorization", "get /oauth/device", "post /oauth/device",
		"post /federation/v1/messages", "get /federation/v1/resources/{cid}"} {
		if ops[key] == nil {
			t.Errorf("the document does not describe %s", key)
		}
	}
}

// TestContentIDPattern checks the cid parameter's pattern against real ids.
func TestContentIDPattern(t *testing.T) {
	doc := loadDoc(t)
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

// TestErrorResponses checks that every error answer has the error shape
// of its part of the server (the mailbox API's, federation's and
// discovery's Error; the AS's OAuthError, or its HTML pages) and a
// description naming its codes, and that every authenticated operation
// documents 401.
func TestErrorResponses(t *testing.T) {
	doc := loadDoc(t)
	code := regexp.MustCompile("`[a-z][a-z0-9_]*`")
	for key, op := range operations(doc) {
		_, path, _ := strings.Cut(key, " ")
		responses, _ := op["responses"].(map[string]any)
		for c, r := range responses {
			status, _ := strconv.Atoi(c)
			if status < 400 {
				continue
			}
			resp := deref(t, doc, r)
			content := obj(resp, "content")
			desc, _ := resp["description"].(string)
			if html := obj(content, "text/html"); html != nil && strings.HasPrefix(path, "/oauth/") && len(content) == 1 {
				continue // a sign-in page answers in HTML
			}
			want := "#/components/schemas/Error"
			// The server's request bounds answer before the AS sees the
			// request: 408 and 413 carry the Error shape there too.
			if strings.HasPrefix(path, "/oauth/") && status != 408 && status != 413 {
				want = "#/components/schemas/OAuthError"
			}
			schema := obj(obj(content, "application/json"), "schema")
			ref, _ := schema["$ref"].(string)
			if ref != want && ref != "" {
				// Or a schema that extends it (readyz's Unready).
				if all, _ := deref(t, doc, schema)["allOf"].([]any); len(all) > 0 && obj(map[string]any{"x": all[0]}, "x")["$ref"] == want {
					ref = want
				}
			}
			if ref != want || len(content) != 1 {
				t.Errorf("%s %s: the response is not application/json %s", key, c, want)
			}
			if !code.MatchString(desc) {
				t.Errorf("%s %s: the description names no error code: %q", key, c, desc)
			}
		}
		if strings.HasPrefix(path, "/api/") && responses["401"] == nil {
			t.Errorf("%s does not document 401", key)
		}
	}
}

// TestStatusCodes checks the success statuses of the operations that
// answer something other than 200.
func TestStatusCodes(t *testing.T) {
	ops := operations(loadDoc(t))
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
		{"post /federation/v1/messages", http.StatusAccepted},
		{"post /federation/v1/messages", http.StatusOK},
		{"get /federation/v1/resources/{cid}", http.StatusPartialContent},
		{"post /oauth/authorize", http.StatusSeeOther},
		{"get /readyz", http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		if obj(ops[tt.op], "responses")[strconv.Itoa(tt.status)] == nil {
			t.Errorf("%s does not document %d", tt.op, tt.status)
		}
	}
}

// TestEventsAndPaging checks what the generic tests cannot: the events
// route answers an event stream, listings take page, and the upload PATCH
// documents its offset header.
func TestEventsAndPaging(t *testing.T) {
	doc := loadDoc(t)
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
	if !has("patch /api/v1/uploads/{upload_id}", mailbox.UploadOffsetHeader) {
		t.Error("patch /api/v1/uploads/{upload_id} does not document Upload-Offset")
	}
}

// TestFolderEnum: the document names exactly the folders meta knows.
func TestFolderEnum(t *testing.T) {
	schemas := obj(obj(loadDoc(t), "components"), "schemas")
	folder := obj(schemas, "Folder")
	alts, _ := folder["anyOf"].([]any)
	if first, _ := alts[0].(map[string]any); len(alts) != 2 || first["$ref"] != "#/components/schemas/SystemFolder" {
		t.Fatalf("Folder is not anyOf the system folders and a user folder's name: %v", folder)
	}
	l, _ := obj(schemas, "SystemFolder")["enum"].([]any)
	if len(l) != len(meta.Folders) {
		t.Fatalf("Folder enum %v, want %v", l, meta.Folders)
	}
	for _, v := range l {
		if !meta.Folder(v.(string)).System() {
			t.Errorf("Folder enum has %v, which meta.Folder refuses", v)
		}
	}
}

// TestSchemasMatchEncodingJSON holds the reflected schemas to
// encoding/json itself, an oracle the generator does not share: a value of
// each annotated Go type, zero and filled, marshals to members that the
// schema lists, with every required one present.
func TestSchemasMatchEncodingJSON(t *testing.T) {
	api, err := Description(mustRead(t, placeholderSchemaFile))
	if err != nil {
		t.Fatal(err)
	}
	schemas := obj(obj(loadDoc(t), "components"), "schemas")
	for _, ty := range api.Types {
		if ty.Go.Kind() != reflect.Struct {
			continue
		}
		name := ty.Name
		if name == "" {
			name = ty.Go.Name()
		}
		s := schemas[name].(map[string]any)
		props := obj(s, "properties")
		req, _ := s["required"].([]any)
		for _, v := range []reflect.Value{reflect.New(ty.Go).Elem(), filled(ty.Go, 0)} {
			b, err := json.Marshal(v.Interface())
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			var got map[string]any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			for k := range got {
				if props[k] == nil {
					t.Errorf("%s: encoding/json writes %q, which the schema does not list", name, k)
				}
			}
			for _, r := range req {
				if _, ok := got[r.(string)]; !ok {
					t.Errorf("%s: %q is required but encoding/json left it out of %s", name, r, b)
				}
			}
		}
	}
}

// filled returns a value of t with every field set (strings, numbers,
// one-element slices, structs recursively).
func filled(t reflect.Type, depth int) reflect.Value {
	v := reflect.New(t).Elem()
	if depth > 3 {
		return v
	}
	switch t.Kind() {
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(1)
	case reflect.Pointer:
		v.Set(filled(t.Elem(), depth+1).Addr())
	case reflect.Slice:
		if t == reflect.TypeFor[json.RawMessage]() {
			v.SetBytes([]byte(`{}`))
			break
		}
		s := reflect.MakeSlice(t, 1, 1)
		s.Index(0).Set(filled(t.Elem(), depth+1))
		v.Set(s)
	case reflect.Struct:
		for i := range t.NumField() {
			if t.Field(i).IsExported() {
				v.Field(i).Set(filled(t.Field(i).Type, depth+1))
			}
		}
	}
	return v
}

// TestExamples checks that the examples of Go-typed schemas decode into
// their Go types without unknown members.
func TestExamples(t *testing.T) {
	api, err := Description(mustRead(t, placeholderSchemaFile))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ty := range api.Types {
		ex, ok := ty.Extra["example"]
		if !ok {
			continue
		}
		n++
		b, _ := json.Marshal(ex)
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(reflect.New(ty.Go).Interface()); err != nil {
			t.Errorf("%v: the example %s does not decode: %v", ty.Go, b, err)
		}
	}
	if n == 0 {
		t.Error("no examples checked")
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
