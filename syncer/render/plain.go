package render

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// renderPlain reads every .yaml, .yml and .json file under dir, recursively, in lexical order.
// Only regular files are read: symlinks are skipped, so nothing outside the tree can be reached.
// Each file is admitted to the budget (aliases bounded, bytes counted) before it is parsed.
func renderPlain(fsys fs.FS, dir string, opts Options, b *budget) ([]Object, error) {
	var objs []Object
	err := fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("render %s: %w", p, err)
		}
		if d.IsDir() || !d.Type().IsRegular() {
			return nil
		}
		ext := strings.ToLower(path.Ext(p))
		if ext != ".yaml" && ext != ".yml" && ext != ".json" {
			return nil
		}
		data, err := readLimited(fsys, p, opts.MaxFileSize)
		if err != nil {
			return err
		}
		if data, err = opts.Variables.substitute(p, data, ext == ".json"); err != nil {
			return err
		}
		if err := b.admit(p, data); err != nil {
			return err
		}
		got, err := decodeFile(p, data, ext == ".json")
		if err != nil {
			return err
		}
		if err := b.produce(p, len(got)); err != nil {
			return err
		}
		objs = append(objs, got...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return objs, nil
}

// readLimited reads a whole file, refusing one larger than limit.
func readLimited(fsys fs.FS, p string, limit int64) ([]byte, error) {
	f, err := fsys.Open(p)
	if err != nil {
		return nil, fmt.Errorf("render %s: %w", p, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("render %s: %w", p, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("render %s: file larger than %d bytes", p, limit)
	}
	return data, nil
}

// decodeFile splits a file into documents and turns each into objects. Document numbers in errors
// count from 1, in file order, empty documents included, so they match what an editor shows.
func decodeFile(file string, data []byte, isJSON bool) ([]Object, error) {
	var docs [][]byte
	if isJSON {
		dec := json.NewDecoder(bytes.NewReader(data))
		for {
			var raw json.RawMessage
			if err := dec.Decode(&raw); err == io.EOF {
				break
			} else if err != nil {
				return nil, fmt.Errorf("%s: document %d: invalid JSON: %w", file, len(docs)+1, err)
			}
			docs = append(docs, raw)
		}
	} else {
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
		for {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return nil, fmt.Errorf("%s: document %d: %w", file, len(docs)+1, err)
			}
			docs = append(docs, doc)
		}
	}
	var objs []Object
	for i, doc := range docs {
		got, err := decodeDocument(file, i+1, doc)
		if err != nil {
			return nil, err
		}
		objs = append(objs, got...)
	}
	return objs, nil
}

// decodeDocument decodes one YAML or JSON document: nothing for an empty one, the items of a List,
// or one object.
func decodeDocument(file string, n int, doc []byte) ([]Object, error) {
	j, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return nil, fmt.Errorf("%s: document %d: invalid YAML: %w", file, n, err)
	}
	j = bytes.TrimSpace(j)
	if len(j) == 0 || bytes.Equal(j, []byte("null")) || bytes.Equal(j, []byte("{}")) {
		return nil, nil
	}
	var v any
	// utiljson keeps integers as int64, which unstructured objects require.
	if err := utiljson.Unmarshal(j, &v); err != nil {
		return nil, fmt.Errorf("%s: document %d: %w", file, n, err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: document %d: not a Kubernetes object (a %T, not a mapping)", file, n, v)
	}
	return objectsFrom(file, n, m)
}

// objectsFrom validates a decoded mapping and expands Lists.
func objectsFrom(file string, n int, m map[string]any) ([]Object, error) {
	u := &unstructured.Unstructured{Object: m}
	if items, isList := m["items"].([]any); isList && strings.HasSuffix(u.GetKind(), "List") {
		var objs []Object
		for i, it := range items {
			im, ok := it.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%s: document %d: item %d of %s: not a Kubernetes object", file, n, i+1, u.GetKind())
			}
			if err := validObject(&unstructured.Unstructured{Object: im}); err != nil {
				return nil, fmt.Errorf("%s: document %d: item %d of %s: %w", file, n, i+1, u.GetKind(), err)
			}
			objs = append(objs, Object{Unstructured: &unstructured.Unstructured{Object: im}, File: file})
		}
		return objs, nil
	}
	if err := validObject(u); err != nil {
		return nil, fmt.Errorf("%s: document %d: %w", file, n, err)
	}
	return []Object{{Unstructured: u, File: file}}, nil
}

// validObject checks the fields every Kubernetes object needs before it can be applied.
func validObject(u *unstructured.Unstructured) error {
	if u.GetKind() == "Kustomization" && strings.HasPrefix(u.GetAPIVersion(), "kustomize.config.k8s.io/") {
		return errors.New("a kustomization file inside a plain manifest directory: point the app at its directory or reference it from a kustomization")
	}
	var missing []string
	if u.GetAPIVersion() == "" {
		missing = append(missing, "apiVersion")
	}
	if u.GetKind() == "" {
		missing = append(missing, "kind")
	}
	if u.GetName() == "" {
		missing = append(missing, "metadata.name")
	}
	if len(missing) > 0 {
		return fmt.Errorf("not a Kubernetes object: missing %s", strings.Join(missing, ", "))
	}
	if _, ok := u.Object["metadata"].(map[string]any); !ok {
		return errors.New("not a Kubernetes object: metadata is not a mapping")
	}
	return nil
}
