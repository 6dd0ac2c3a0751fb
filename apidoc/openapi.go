package apidoc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Auth is what an operation demands of its caller.
type Auth int

const (
	// Bearer: the mailbox API's token (docs/PROTOCOL.md §8.2), the
	// document's global requirement.
	Bearer Auth = iota
	// Public: nothing, or what the operation's own parameters carry (an
	// OAuth client authenticates in the form, RFC 7523).
	Public
	// DPoP: a DPoP-bound token of another domain (docs/PROTOCOL.md §11).
	DPoP
)

// Op is one HTTP operation of the server.
type Op struct {
	Method string // as in the ServeMux pattern; GET also answers HEAD
	Path   string // the ServeMux pattern's path; wildcards {name} become path parameters
	ID     string // operationId
	Tags   []string
	Auth   Auth

	Summary, Description string
	// Params are the query and header parameters. Path parameters come
	// from API.PathParams, one per wildcard, so none can be left out.
	Params    []Param
	Body      *Body
	Responses []Response
}

// Param is a parameter, or (Ref) a reference to components.parameters.
type Param struct {
	Ref         string
	Name, In    string
	Description string
	Required    bool
	Schema      Schema
	Example     any
}

// Body is a request body, or (Ref) a reference to components.requestBodies.
type Body struct {
	Ref         string
	Description string
	Optional    bool
	Content     []Content
}

// Content is one media type of a body: its schema given, or reflected from a
// Go type.
type Content struct {
	Media   string
	Go      reflect.Type
	Schema  Schema
	Example any
}

// JSON is application/json of the Go type T.
func JSON[T any]() Content { return Content{Media: "application/json", Go: reflect.TypeFor[T]()} }

// FormField is a member of an application/x-www-form-urlencoded body (or
// a query string): a string.
type FormField struct {
	Name, Description string
	Required          bool
	Enum              []string
}

// Form is the schema of an application/x-www-form-urlencoded body.
func Form(fields ...FormField) Schema {
	props := Schema{}
	var req []string
	for _, f := range fields {
		p := Schema{"type": "string"}
		if f.Description != "" {
			p["description"] = f.Description
		}
		if len(f.Enum) > 0 {
			p["enum"] = f.Enum
		}
		props[f.Name] = p
		if f.Required {
			req = append(req, f.Name)
		}
	}
	s := Schema{"type": "object", "properties": props}
	if len(req) > 0 {
		s["required"] = req
	}
	return s
}

// Response is an answer of one status, or (Ref) a reference to
// components.responses.
type Response struct {
	Status      int
	Ref         string
	Description string
	Headers     map[string]Header
	Content     []Content
}

// Header is a response header, or (Ref) a reference to components.headers.
type Header struct {
	Ref         string
	Description string
	Schema      Schema
}

// Tag groups operations.
type Tag struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

// API is everything the document says, as Go values.
type API struct {
	Title, Summary, Description, Version string
	Tags                                 []Tag
	Ops                                  []Op
	// Types annotates the Go types the operations carry.
	Types []Type
	// Schemas are components.schemas that no Go type has (the Placeholder
	// Message's, a JSON Schema of its own).
	Schemas map[string]Schema
	// PathParams maps a path wildcard to its components.parameters key.
	PathParams    map[string]string
	Parameters    map[string]Param
	Headers       map[string]Header
	Responses     map[string]Response
	RequestBodies map[string]Body
	Security      map[string]Schema // components.securitySchemes
}

// The OpenAPI objects, in the order the document writes their members.
type (
	document struct {
		OpenAPI    string                `json:"openapi"`
		Info       info                  `json:"info"`
		Servers    []map[string]string   `json:"servers"`
		Security   []map[string][]string `json:"security"`
		Tags       []Tag                 `json:"tags"`
		Paths      map[string]*pathItem  `json:"paths"`
		Components components            `json:"components"`
	}
	info struct {
		Title       string            `json:"title"`
		Version     string            `json:"version"`
		Summary     string            `json:"summary,omitempty"`
		Description string            `json:"description,omitempty"`
		License     map[string]string `json:"license,omitempty"`
	}
	pathItem struct {
		Parameters []*parameter `json:"parameters,omitempty"`
		Get        *operation   `json:"get,omitempty"`
		Put        *operation   `json:"put,omitempty"`
		Post       *operation   `json:"post,omitempty"`
		Delete     *operation   `json:"delete,omitempty"`
		Patch      *operation   `json:"patch,omitempty"`
	}
	operation struct {
		OperationID string                 `json:"operationId"`
		Tags        []string               `json:"tags,omitempty"`
		Summary     string                 `json:"summary,omitempty"`
		Description string                 `json:"description,omitempty"`
		Security    *[]map[string][]string `json:"security,omitempty"` // [] opts out
		Parameters  []*parameter           `json:"parameters,omitempty"`
		RequestBody *requestBody           `json:"requestBody,omitempty"`
		Responses   map[string]*response   `json:"responses"`
	}
	parameter struct {
		Ref         string `json:"$ref,omitempty"`
		Name        string `json:"name,omitempty"`
		In          string `json:"in,omitempty"`
		Required    bool   `json:"required,omitempty"`
		Description string `json:"description,omitempty"`
		Schema      Schema `json:"schema,omitempty"`
		Example     any    `json:"example,omitempty"`
	}
	requestBody struct {
		Ref         string                `json:"$ref,omitempty"`
		Required    bool                  `json:"required,omitempty"`
		Description string                `json:"description,omitempty"`
		Content     map[string]*mediaType `json:"content,omitempty"`
	}
	mediaType struct {
		Schema  Schema `json:"schema"`
		Example any    `json:"example,omitempty"`
	}
	response struct {
		Ref         string                `json:"$ref,omitempty"`
		Description string                `json:"description,omitempty"`
		Headers     map[string]*header    `json:"headers,omitempty"`
		Content     map[string]*mediaType `json:"content,omitempty"`
	}
	header struct {
		Ref         string `json:"$ref,omitempty"`
		Description string `json:"description,omitempty"`
		Schema      Schema `json:"schema,omitempty"`
	}
	components struct {
		SecuritySchemes map[string]Schema       `json:"securitySchemes"`
		Parameters      map[string]*parameter   `json:"parameters"`
		RequestBodies   map[string]*requestBody `json:"requestBodies"`
		Headers         map[string]*header      `json:"headers"`
		Responses       map[string]*response    `json:"responses"`
		Schemas         map[string]Schema       `json:"schemas"`
	}
)

var wildcard = regexp.MustCompile(`\{([^}.$]+)(\.\.\.)?\}`)

// docPath is a ServeMux pattern path as an OpenAPI path: "{$}" (the end of
// the path) is implied there.
func docPath(pattern string) string { return strings.ReplaceAll(pattern, "{$}", "") }

// Build writes the OpenAPI 3.1 document of api: deterministic bytes, the
// same for the same api.
func Build(api API) ([]byte, error) {
	r, err := newReflector(api.Types)
	if err != nil {
		return nil, err
	}
	// Request bodies first: their types are closed (the server refuses
	// unknown members, docs/PROTOCOL.md §8.1) and never null.
	for _, op := range api.Ops {
		if op.Body != nil {
			for _, c := range op.Body.Content {
				if c.Go != nil {
					r.request[c.Go] = true
				}
			}
		}
	}
	for _, b := range api.RequestBodies {
		for _, c := range b.Content {
			if c.Go != nil {
				r.request[c.Go] = true
			}
		}
	}
	b := &builder{api: api, r: r}
	doc := document{
		OpenAPI: "3.1.0",
		Info: info{Title: api.Title, Version: api.Version, Summary: api.Summary, Description: api.Description,
			License: map[string]string{"name": "See the repository"}},
		Servers:  []map[string]string{{"url": "/"}},
		Security: []map[string][]string{{"bearer": {}}},
		Tags:     api.Tags,
		Paths:    map[string]*pathItem{},
		Components: components{SecuritySchemes: api.Security, Parameters: map[string]*parameter{},
			RequestBodies: map[string]*requestBody{}, Headers: map[string]*header{}, Responses: map[string]*response{}},
	}
	for name, p := range api.Parameters {
		if doc.Components.Parameters[name], err = b.param(p); err != nil {
			return nil, fmt.Errorf("components.parameters.%s: %w", name, err)
		}
	}
	for name, h := range api.Headers {
		if doc.Components.Headers[name], err = b.header(h); err != nil {
			return nil, fmt.Errorf("components.headers.%s: %w", name, err)
		}
	}
	for name, resp := range api.Responses {
		if doc.Components.Responses[name], err = b.response(resp); err != nil {
			return nil, fmt.Errorf("components.responses.%s: %w", name, err)
		}
	}
	for name, body := range api.RequestBodies {
		if doc.Components.RequestBodies[name], err = b.body(&body); err != nil {
			return nil, fmt.Errorf("components.requestBodies.%s: %w", name, err)
		}
	}
	ids := map[string]bool{}
	for _, op := range api.Ops {
		if ids[op.ID] {
			return nil, fmt.Errorf("operationId %s is used twice", op.ID)
		}
		ids[op.ID] = true
		if err := b.op(&doc, op); err != nil {
			return nil, fmt.Errorf("%s %s: %w", op.Method, op.Path, err)
		}
	}
	for i := range api.Types {
		if !r.used[&api.Types[i]] {
			return nil, fmt.Errorf("type %v is annotated but no operation carries it", api.Types[i].Go)
		}
	}
	doc.Components.Schemas = r.defs
	for name, s := range api.Schemas {
		if _, dup := r.defs[name]; dup {
			return nil, fmt.Errorf("components.schemas.%s is both a Go type and a given schema", name)
		}
		r.defs[name] = s
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

type builder struct {
	api API
	r   *reflector
}

func (b *builder) op(doc *document, op Op) error {
	item := doc.Paths[docPath(op.Path)]
	if item == nil {
		item = &pathItem{}
		for _, m := range wildcard.FindAllStringSubmatch(op.Path, -1) {
			key, ok := b.api.PathParams[m[1]]
			if !ok {
				return fmt.Errorf("no API.PathParams entry for the wildcard {%s}", m[1])
			}
			item.Parameters = append(item.Parameters, &parameter{Ref: "#/components/parameters/" + key})
		}
		doc.Paths[docPath(op.Path)] = item
	}
	o := &operation{OperationID: op.ID, Tags: op.Tags, Summary: op.Summary, Description: op.Description,
		Responses: map[string]*response{}}
	switch op.Auth {
	case Public:
		o.Security = &[]map[string][]string{} // written as []: no requirement
	case DPoP:
		o.Security = &[]map[string][]string{{"dpop": {}}}
	}
	var err error
	for _, p := range op.Params {
		pp, err := b.param(p)
		if err != nil {
			return err
		}
		o.Parameters = append(o.Parameters, pp)
	}
	if op.Body != nil {
		if o.RequestBody, err = b.body(op.Body); err != nil {
			return err
		}
	}
	if len(op.Responses) == 0 {
		return fmt.Errorf("no responses")
	}
	for _, resp := range op.Responses {
		code := strconv.Itoa(resp.Status)
		if http.StatusText(resp.Status) == "" {
			return fmt.Errorf("response status %d", resp.Status)
		}
		if o.Responses[code] != nil {
			return fmt.Errorf("response %d twice", resp.Status)
		}
		if o.Responses[code], err = b.response(resp); err != nil {
			return fmt.Errorf("response %d: %w", resp.Status, err)
		}
	}
	var slot **operation
	switch op.Method {
	case http.MethodGet:
		slot = &item.Get
	case http.MethodPut:
		slot = &item.Put
	case http.MethodPost:
		slot = &item.Post
	case http.MethodDelete:
		slot = &item.Delete
	case http.MethodPatch:
		slot = &item.Patch
	default:
		return fmt.Errorf("method %q", op.Method)
	}
	if *slot != nil {
		return fmt.Errorf("documented twice")
	}
	*slot = o
	return nil
}

func (b *builder) param(p Param) (*parameter, error) {
	if p.Ref != "" {
		if _, ok := b.api.Parameters[p.Ref]; !ok {
			return nil, fmt.Errorf("no components.parameters.%s", p.Ref)
		}
		return &parameter{Ref: "#/components/parameters/" + p.Ref}, nil
	}
	if !slices.Contains([]string{"path", "query", "header", "cookie"}, p.In) || p.Name == "" {
		return nil, fmt.Errorf("parameter %q in %q", p.Name, p.In)
	}
	if p.In == "path" && !p.Required {
		return nil, fmt.Errorf("path parameter %s must be required", p.Name)
	}
	return &parameter{Name: p.Name, In: p.In, Required: p.Required, Description: p.Description, Schema: p.Schema, Example: p.Example}, nil
}

func (b *builder) header(h Header) (*header, error) {
	if h.Ref != "" {
		if _, ok := b.api.Headers[h.Ref]; !ok {
			return nil, fmt.Errorf("no components.headers.%s", h.Ref)
		}
		return &header{Ref: "#/components/headers/" + h.Ref}, nil
	}
	return &header{Description: h.Description, Schema: h.Schema}, nil
}

func (b *builder) content(cs []Content) (map[string]*mediaType, error) {
	if len(cs) == 0 {
		return nil, nil
	}
	out := map[string]*mediaType{}
	for _, c := range cs {
		s := c.Schema
		if c.Go != nil {
			var err error
			if s, err = b.r.schema(c.Go); err != nil {
				return nil, err
			}
		}
		if s == nil {
			s = Schema{}
		}
		if out[c.Media] != nil {
			return nil, fmt.Errorf("media type %s twice", c.Media)
		}
		out[c.Media] = &mediaType{Schema: s, Example: c.Example}
	}
	return out, nil
}

func (b *builder) body(body *Body) (*requestBody, error) {
	if body.Ref != "" {
		if _, ok := b.api.RequestBodies[body.Ref]; !ok {
			return nil, fmt.Errorf("no components.requestBodies.%s", body.Ref)
		}
		return &requestBody{Ref: "#/components/requestBodies/" + body.Ref}, nil
	}
	c, err := b.content(body.Content)
	if err != nil {
		return nil, err
	}
	return &requestBody{Required: !body.Optional, Description: body.Description, Content: c}, nil
}

func (b *builder) response(resp Response) (*response, error) {
	if resp.Ref != "" {
		if _, ok := b.api.Responses[resp.Ref]; !ok {
			return nil, fmt.Errorf("no components.responses.%s", resp.Ref)
		}
		return &response{Ref: "#/components/responses/" + resp.Ref}, nil
	}
	if resp.Description == "" {
		return nil, fmt.Errorf("a response needs a description")
	}
	out := &response{Description: resp.Description}
	for name, h := range resp.Headers {
		hh, err := b.header(h)
		if err != nil {
			return nil, fmt.Errorf("header %s: %w", name, err)
		}
		if out.Headers == nil {
			out.Headers = map[string]*header{}
		}
		out.Headers[name] = hh
	}
	var err error
	out.Content, err = b.content(resp.Content)
	return out, err
}
