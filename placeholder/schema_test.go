package placeholder

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// This file checks docs/placeholder.schema.json with a small validator for
// the JSON Schema 2020-12 keywords that the schema uses, so that the schema
// and the code cannot drift apart unnoticed: every valid vector conforms, and
// every structurally invalid vector does not.

type schemaChecker struct{ root map[string]any }

func (c *schemaChecker) check(s any, v any, path string) error {
	switch s := s.(type) {
	case bool:
		if !s {
			return fmt.Errorf("%s: false schema", path)
		}
		return nil
	case map[string]any:
		for _, kw := range []string{"$ref", "type", "required", "properties", "additionalProperties", "propertyNames",
			"maxProperties", "items", "prefixItems", "minItems", "maxItems", "pattern", "maxLength", "oneOf", "allOf",
			"not", "if"} {
			arg, ok := s[kw]
			if !ok {
				continue
			}
			if err := c.keyword(s, kw, arg, v, path); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("%s: schema of type %T", path, s)
}

func (c *schemaChecker) keyword(s map[string]any, kw string, arg, v any, path string) error {
	obj, isObj := v.(map[string]any)
	arr, isArr := v.([]any)
	str, isStr := v.(string)
	switch kw {
	case "$ref":
		ref := arg.(string)
		name, ok := strings.CutPrefix(ref, "#/$defs/")
		if !ok {
			return fmt.Errorf("unsupported $ref %s", ref)
		}
		def, ok := c.root["$defs"].(map[string]any)[name]
		if !ok {
			return fmt.Errorf("dangling $ref %s", ref)
		}
		return c.check(def, v, path)
	case "type":
		ok := map[string]bool{"object": isObj, "array": isArr, "string": isStr}[arg.(string)]
		if !ok {
			return fmt.Errorf("%s: not of type %s", path, arg)
		}
	case "required":
		for _, r := range arg.([]any) {
			if _, ok := obj[r.(string)]; isObj && !ok {
				return fmt.Errorf("%s: %s is required", path, r)
			}
		}
	case "properties":
		for k, sub := range arg.(map[string]any) {
			if pv, ok := obj[k]; isObj && ok {
				if err := c.check(sub, pv, path+"/"+k); err != nil {
					return err
				}
			}
		}
	case "additionalProperties":
		props, _ := s["properties"].(map[string]any)
		for k, pv := range obj {
			if _, ok := props[k]; !ok {
				if err := c.check(arg, pv, path+"/"+k); err != nil {
					return err
				}
			}
		}
	case "propertyNames":
		for k := range obj {
			if err := c.check(arg, k, path+"/"+k+"(name)"); err != nil {
				return err
			}
		}
	case "maxProperties":
		if isObj && len(obj) > int(arg.(float64)) {
			return fmt.Errorf("%s: too many properties", path)
		}
	case "prefixItems":
		for i, sub := range arg.([]any) {
			if i < len(arr) {
				if err := c.check(sub, arr[i], fmt.Sprintf("%s/%d", path, i)); err != nil {
					return err
				}
			}
		}
	case "items":
		start := 0
		if p, ok := s["prefixItems"].([]any); ok {
			start = len(p)
		}
		for i := start; i < len(arr); i++ {
			if err := c.check(arg, arr[i], fmt.Sprintf("%s/%d", path, i)); err != nil {
				return err
			}
		}
	case "minItems":
		if isArr && len(arr) < int(arg.(float64)) {
			return fmt.Errorf("%s: too few items", path)
		}
	case "maxItems":
		if isArr && len(arr) > int(arg.(float64)) {
			return fmt.Errorf("%s: too many items", path)
		}
	case "pattern":
		if isStr && !regexp.MustCompile(arg.(string)).MatchString(str) {
			return fmt.Errorf("%s: %q does not match %s", path, str, arg)
		}
	case "maxLength":
		if isStr && utf8.RuneCountInString(str) > int(arg.(float64)) {
			return fmt.Errorf("%s: too long", path)
		}
	case "oneOf":
		n := 0
		for _, sub := range arg.([]any) {
			if c.check(sub, v, path) == nil {
				n++
			}
		}
		if n != 1 {
			return fmt.Errorf("%s: matches %d of oneOf", path, n)
		}
	case "allOf":
		for _, sub := range arg.([]any) {
			if err := c.check(sub, v, path); err != nil {
				return err
			}
		}
	case "not":
		if c.check(arg, v, path) == nil {
			return fmt.Errorf("%s: matches a not", path)
		}
	case "if":
		branch := "else"
		if c.check(arg, v, path) == nil {
			branch = "then"
		}
		if sub, ok := s[branch]; ok {
			return c.check(sub, v, path)
		}
	}
	return nil
}

func loadSchema(t *testing.T) *schemaChecker {
	t.Helper()
	data, err := os.ReadFile("../docs/placeholder.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var root map[string]any
	if err := json.Unmarshal(data, &root); err != nil {
		t.Fatal(err)
	}
	if root["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
		t.Errorf("$schema = %v", root["$schema"])
	}
	// Every keyword used is one the checker knows, so nothing is silently skipped.
	known := "$schema $id title description allOf type required properties $defs additionalProperties if then else " +
		"items minItems maxItems maxProperties propertyNames pattern not prefixItems oneOf maxLength $ref"
	var walk func(any)
	walk = func(n any) {
		switch n := n.(type) {
		case map[string]any:
			for k, sub := range n {
				if !strings.Contains(" "+known+" ", " "+k+" ") {
					t.Errorf("schema keyword %q not supported by the checker", k)
				}
				switch k {
				case "properties", "$defs":
					for _, s := range sub.(map[string]any) {
						walk(s)
					}
				default:
					walk(sub)
				}
			}
		case []any:
			for _, s := range n {
				walk(s)
			}
		}
	}
	walk(root)
	return &schemaChecker{root: root}
}

func TestSchemaAcceptsValidVectors(t *testing.T) {
	c := loadSchema(t)
	files, _ := filepath.Glob("testdata/valid/*.json")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var v struct{ Message json.RawMessage }
		if err := json.Unmarshal(data, &v); err != nil {
			t.Fatal(err)
		}
		if v.Message == nil {
			continue
		}
		var doc any
		if err := json.Unmarshal(v.Message, &doc); err != nil {
			t.Fatal(err)
		}
		if err := c.check(c.root, doc, ""); err != nil {
			t.Errorf("%s: %v", file, err)
		}
	}
}

func TestSchemaRefusesStructuralErrors(t *testing.T) {
	c := loadSchema(t)
	data, err := os.ReadFile("testdata/invalid.json")
	if err != nil {
		t.Fatal(err)
	}
	var vs []invalidVector
	if err := json.Unmarshal(data, &vs); err != nil {
		t.Fatal(err)
	}
	structural := map[string]bool{CodeWrongType: true, CodeUnknownMember: true, CodeMissingMember: true,
		CodeEmptyParts: true, CodeBadContentID: true}
	n := 0
	for _, v := range vs {
		if !structural[v.Code] || v.Doc == nil {
			continue
		}
		var doc any
		if json.Unmarshal([]byte(*v.Doc), &doc) != nil {
			continue
		}
		n++
		if err := c.check(c.root, doc, ""); err == nil {
			t.Errorf("%s (%s): the schema accepts it", v.Name, v.Code)
		}
	}
	if n < 10 {
		t.Errorf("only %d structural vectors checked", n)
	}
}
