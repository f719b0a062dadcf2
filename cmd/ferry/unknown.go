package main

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// unknownKeys walks a config document against the Config type and names every key it does not
// know by where it stands (repo platform: "tokn"), which the YAML decoder's message does not.
func unknownKeys(data []byte) []string {
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil
	}
	var out []string
	walkKeys(doc, reflect.TypeOf(Config{}), "", &out)
	sort.Strings(out)
	return out
}

func walkKeys(v any, t reflect.Type, where string, out *[]string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch x := v.(type) {
	case map[string]any:
		if t.Kind() != reflect.Struct {
			return
		}
		fields := map[string]reflect.Type{}
		for i := range t.NumField() {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
			fields[name] = t.Field(i).Type
		}
		for k, vv := range x {
			ft, ok := fields[k]
			if !ok {
				loc := "top level"
				if where != "" {
					loc = where
				}
				*out = append(*out, fmt.Sprintf("%s: unknown key %q", loc, k))
				continue
			}
			walkKeys(vv, ft, join(where, k), out)
		}
	case []any:
		if t.Kind() != reflect.Slice {
			return
		}
		for i, item := range x {
			loc := fmt.Sprintf("%s[%d]", where, i)
			if m, ok := item.(map[string]any); ok {
				if n, ok := m["name"].(string); ok && n != "" {
					loc = fmt.Sprintf("%s %s", strings.TrimSuffix(where, "s"), n)
				}
			}
			walkKeys(item, t.Elem(), loc, out)
		}
	}
}

func join(where, key string) string {
	if where == "" {
		return key
	}
	return where + "." + key
}
