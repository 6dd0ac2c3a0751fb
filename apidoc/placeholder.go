package apidoc

import (
	"encoding/json"
	"fmt"
	"strings"
)

// placeholderSchemas carries docs/placeholder.schema.json into the
// document unchanged: its top level as PlaceholderMessage and each of its
// $defs as Placeholder<Name>, references rewritten to match.
func placeholderSchemas(data []byte) (map[string]Schema, error) {
	var src map[string]any
	if err := json.Unmarshal(data, &src); err != nil {
		return nil, fmt.Errorf("docs/placeholder.schema.json: %w", err)
	}
	out := map[string]Schema{}
	top := Schema{}
	for k, v := range src {
		switch k {
		case "$defs":
			defs, _ := v.(map[string]any)
			for name, def := range defs {
				d, ok := rewritePlaceholderRefs(def).(map[string]any)
				if !ok {
					return nil, fmt.Errorf("docs/placeholder.schema.json: $defs.%s is not an object", name)
				}
				out[placeholderComponent(name)] = d
			}
		case "$schema", "$id": // the document's dialect is 2020-12 already
		default:
			top[k] = v
		}
	}
	out["PlaceholderMessage"] = rewritePlaceholderRefs(map[string]any(top)).(map[string]any)
	return out, nil
}

func placeholderComponent(def string) string {
	return "Placeholder" + strings.ToUpper(def[:1]) + def[1:]
}

func rewritePlaceholderRefs(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range v {
			if ref, ok := e.(string); ok && k == "$ref" {
				if def, ok := strings.CutPrefix(ref, "#/$defs/"); ok {
					e = "#/components/schemas/" + placeholderComponent(def)
				} else if ref == "#" {
					e = "#/components/schemas/PlaceholderMessage"
				}
			}
			out[k] = rewritePlaceholderRefs(e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = rewritePlaceholderRefs(e)
		}
		return out
	}
	return v
}
