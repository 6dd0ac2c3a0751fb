package apidoc

import (
	"bytes"
	"flag"
	"os"
	"testing"
)

var update = flag.Bool("update", false, "rewrite apidoc/openapi.json and webmail/src/lib/api.gen.ts (go generate ./apidoc)")

const (
	placeholderSchemaFile = "../docs/placeholder.schema.json"
	openapiFile           = "openapi.json"
	typescriptFile        = "../webmail/src/lib/api.gen.ts"
)

// generate builds both files from the Go routes and types.
func generate(t *testing.T) (openapi, ts []byte) {
	t.Helper()
	ph, err := os.ReadFile(placeholderSchemaFile)
	if err != nil {
		t.Fatal(err)
	}
	openapi, ts, err = Generate(ph)
	if err != nil {
		t.Fatal(err)
	}
	return openapi, ts
}

// TestGenerated is the staleness check: the committed document and
// TypeScript types must be what the Go routes and types generate now. CI
// runs it with the rest of go test ./...
func TestGenerated(t *testing.T) {
	openapi, ts := generate(t)
	for _, f := range []struct {
		path string
		want []byte
	}{{openapiFile, openapi}, {typescriptFile, ts}} {
		if *update {
			if err := os.WriteFile(f.path, f.want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, f.want) {
			t.Errorf("%s is stale: run go generate ./apidoc (or go test ./apidoc -run TestGenerated -update) and commit it", f.path)
		}
	}
	if !*update && !bytes.Equal(OpenAPI, openapi) {
		t.Errorf("the embedded document is not openapi.json (rebuild)")
	}
}

// TestGenerateDeterministic: the same routes give the same bytes, so the
// staleness check cannot flap.
func TestGenerateDeterministic(t *testing.T) {
	a, at := generate(t)
	for range 5 {
		b, bt := generate(t)
		if !bytes.Equal(a, b) || !bytes.Equal(at, bt) {
			t.Fatal("two runs of the generator differ")
		}
	}
}
