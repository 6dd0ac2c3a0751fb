package apidoc

import (
	"strings"
	"testing"
)

// TestTypeScript checks the TypeScript of each shape the document uses.
func TestTypeScript(t *testing.T) {
	doc := `{"components": {"schemas": {
		"Obj": {"type": "object", "required": ["a", "n"], "description": "An object.", "properties": {
			"a": {"type": "string"},
			"n": {"type": ["string", "null"], "format": "date-time"},
			"o": {"type": "integer", "description": "optional"},
			"e": {"type": "string", "enum": ["x", "y"]},
			"l": {"type": "array", "items": {"$ref": "#/components/schemas/Kind"}},
			"m": {"type": "object", "additionalProperties": {"type": "boolean"}},
			"t": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "number"}]},
			"u": {"anyOf": [{"$ref": "#/components/schemas/Kind"}, {"type": "null"}]},
			"x-y": {}
		}},
		"Kind": {"type": "string", "enum": ["a", "b"]},
		"Both": {"allOf": [{"$ref": "#/components/schemas/Obj"}, {"type": "object", "required": ["k"], "properties": {"k": {"const": "ok"}}}]},
		"Open": {"type": "object", "properties": {"h": {"type": "string"}}, "additionalProperties": {"type": "string"}}
	}}}`
	b, err := TypeScript([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	for _, want := range []string{
		"/** An object. */\nexport interface Obj {",
		"  a: string;\n",
		"  n: string | null;\n",
		"  /** optional */\n  o?: number;\n",
		`  e?: "x" | "y";` + "\n",
		"  l?: Kind[];\n",
		"  m?: Record<string, boolean>;\n",
		"  t?: [string, number];\n",
		"  u?: Kind | null;\n",
		`  "x-y"?: unknown;` + "\n",
		`export type Kind = "a" | "b";`,
		"export type Both = Obj & {\n  k: \"ok\";\n};",
		"  h?: string;\n  [name: string]: string | undefined;\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in\n%s", want, got)
		}
	}
	if _, err := TypeScript([]byte(`{"components": {"schemas": {"A": {"$ref": "other.json#/B"}}}}`)); err == nil {
		t.Error("a $ref outside components.schemas was written")
	}
}
