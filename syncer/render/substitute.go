package render

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// AnnotationSubstitute set to "disabled" on an object leaves its ${…} as they are: scripts and
// templates in ConfigMaps often hold ${…} of their own.
const AnnotationSubstitute = "ferry.dev/substitute"

// ErrUndefinedVariable marks a strict substitution that met a variable nobody defined. It is
// permanent: the same commit and variables fail the same way.
var ErrUndefinedVariable = errors.New("undefined variable")

// UndefinedError names the variables an object uses without a value or a default.
type UndefinedError struct {
	// File is the repository file the object came from.
	File, Kind, Name string
	Vars             []string
}

// Error implements error.
func (e *UndefinedError) Error() string {
	return fmt.Sprintf("%s: %s %s uses undefined variable(s) %s (define them in substitute or substituteFrom, or give a default: ${name:=value})",
		e.File, e.Kind, e.Name, strings.Join(e.Vars, ", "))
}

// Is lets callers test errors.Is(err, ErrUndefinedVariable).
func (e *UndefinedError) Is(target error) bool { return target == ErrUndefinedVariable }

// ValidVariableName reports whether v can be written as ${v}: a letter or _, then letters,
// digits and _.
func ValidVariableName(v string) bool { return v != "" && name(v) == v }

// Variables replace ${name} in an app's manifests, as Flux's post-build substitution does, so
// that one set of manifests serves several clusters and environments. ${name:=default} and
// ${name:-default} take the default when name is unset or empty, ${name=default} and
// ${name-default} only when it is unset; $${ writes a literal ${. Anything else after ${ (a
// shell's ${1}, ${x#y}) is left as it is, and so is $name without braces. Unset variables
// become "" unless Strict, when the render fails naming the file, the object and the variables.
// Documents annotated ferry.dev/substitute: disabled are left alone. The values never appear
// in errors.
//
// Substitution works on each YAML or JSON document's text as the repository (or the chart)
// wrote it, before it is parsed: `replicas: ${replicas:=2}` is a number while
// `value: "${port}"` stays a string (kustomize's output has lost the quotes, so a
// kustomization's files are substituted before kustomize reads them; files that generators
// read, such as scripts and .env files, are not). It is hand-written rather than a library
// because the one Flux uses needs a newer Go, and the general ones also replace $name without
// braces, which would break shell scripts in ConfigMaps.
type Variables struct {
	Values map[string]string
	Strict bool
}

// substitute returns file's text with its variables replaced, document by document; a file
// none of whose documents holds a ${ outside comments is returned as it is.
func (v *Variables) substitute(file string, data []byte, isJSON bool) ([]byte, error) {
	if v == nil || !bytes.Contains(data, []byte("${")) {
		return data, nil
	}
	docs := [][]byte{data}
	if !isJSON {
		var err error
		if docs, err = splitYAML(data); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
	}
	changed := false
	for i, doc := range docs {
		var x any
		if err := yaml.Unmarshal(doc, &x); err != nil {
			// The parse that follows names the document and the error.
			continue
		}
		if !mentionsVariable(x) || optedOut(x) {
			continue
		}
		if v.Strict {
			if undefined := v.undefinedIn(x); len(undefined) > 0 {
				kind, name := identify(x)
				return nil, &UndefinedError{File: file, Kind: kind, Name: name, Vars: undefined}
			}
		}
		text, _ := expand(string(doc), v.Values)
		docs[i], changed = []byte(text), true
	}
	if !changed {
		return data, nil
	}
	return bytes.Join(docs, []byte("\n---\n")), nil
}

// splitYAML splits a YAML stream into its documents.
func splitYAML(data []byte) ([][]byte, error) {
	var docs [][]byte
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		} else if err != nil {
			return nil, err
		}
		docs = append(docs, doc)
	}
}

// undefinedIn lists, sorted, the variables that strings under x use with neither a value nor a
// default.
func (v *Variables) undefinedIn(x any) []string {
	names := map[string]bool{}
	var walk func(any)
	walk = func(x any) {
		switch t := x.(type) {
		case string:
			_, undefined := expand(t, v.Values)
			for _, n := range undefined {
				names[n] = true
			}
		case map[string]any:
			for k, e := range t {
				walk(k)
				walk(e)
			}
		case []any:
			for _, e := range t {
				walk(e)
			}
		}
	}
	walk(x)
	return slices.Sorted(maps.Keys(names))
}

// optedOut reports whether a decoded document carries ferry.dev/substitute: disabled.
func optedOut(x any) bool {
	u := unstructured.Unstructured{}
	if m, ok := x.(map[string]any); ok {
		u.Object = m
	}
	return u.Object != nil && u.GetAnnotations()[AnnotationSubstitute] == "disabled"
}

// identify returns a decoded document's kind and namespace/name, as far as it has them.
func identify(x any) (string, string) {
	m, _ := x.(map[string]any)
	u := &unstructured.Unstructured{Object: m}
	if m == nil {
		return "document", ""
	}
	kind := u.GetKind()
	if kind == "" {
		kind = "document"
	}
	return kind, describe(u)
}

// mentionsVariable reports whether any key or string value under v holds "${": most objects
// hold none and are passed on without being encoded again.
func mentionsVariable(v any) bool {
	switch t := v.(type) {
	case string:
		return strings.Contains(t, "${")
	case map[string]any:
		for k, e := range t {
			if strings.Contains(k, "${") || mentionsVariable(e) {
				return true
			}
		}
	case []any:
		return slices.ContainsFunc(t, mentionsVariable)
	}
	return false
}

// expand replaces the variables in s and returns the names used with neither a value nor a
// default, sorted.
func expand(s string, vars map[string]string) (string, []string) {
	var b strings.Builder
	undefined := map[string]bool{}
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			break
		}
		if i > 0 && s[i-1] == '$' {
			// $${ is an escaped ${.
			b.WriteString(s[:i-1])
			b.WriteString("${")
			s = s[i+2:]
			continue
		}
		b.WriteString(s[:i])
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			b.WriteString(s[i:])
			break
		}
		ref := s[i+2 : i+end]
		value, ok, isUndefined := lookup(ref, vars)
		if !ok {
			// Not a variable reference: keep it, and look again after its "${".
			b.WriteString("${")
			s = s[i+2:]
			continue
		}
		if isUndefined {
			undefined[name(ref)] = true
		}
		b.WriteString(value)
		s = s[i+end+1:]
	}
	return b.String(), slices.Sorted(maps.Keys(undefined))
}

// lookup resolves one reference (what is between ${ and }): ok is false when it is not a
// variable reference at all; undefined is true when the variable has no value and no default.
func lookup(ref string, vars map[string]string) (value string, ok, undefined bool) {
	n := name(ref)
	if n == "" {
		return "", false, false
	}
	v, set := vars[n]
	switch rest := ref[len(n):]; {
	case rest == "":
		return v, true, !set
	case strings.HasPrefix(rest, ":=") || strings.HasPrefix(rest, ":-"):
		if !set || v == "" {
			return rest[2:], true, false
		}
		return v, true, false
	case strings.HasPrefix(rest, "=") || strings.HasPrefix(rest, "-"):
		if !set {
			return rest[1:], true, false
		}
		return v, true, false
	}
	return "", false, false
}

// name returns the variable name ref starts with, or "".
func name(ref string) string {
	end := 0
	for end < len(ref) {
		c := ref[end]
		if c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || end > 0 && c >= '0' && c <= '9' {
			end++
			continue
		}
		break
	}
	return ref[:end]
}
