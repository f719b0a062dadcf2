package render

import (
	"errors"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
)

// repo builds an in-memory commit tree from path → content.
func repo(files map[string]string) fstest.MapFS {
	m := fstest.MapFS{}
	for p, c := range files {
		m[p] = &fstest.MapFile{Data: []byte(c)}
	}
	return m
}

// summary lists "kind ns/name@file" for each object, in order.
func summary(objs []Object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetKind()+" "+describe(o.Unstructured)+"@"+o.File)
	}
	return out
}

func cm(name string) string {
	return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\ndata:\n  k: v\n"
}

func TestRenderPlain(t *testing.T) {
	fsys := repo(map[string]string{
		"apps/a/b.yaml":           cm("b"),
		"apps/a/a.yml":            cm("a1") + "---\n# only a comment\n---\n" + cm("a2") + "---\n",
		"apps/a/nested/deep.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\n  namespace: x\nspec:\n  replicas: 2\n",
		"apps/a/c.json":           `{"apiVersion":"v1","kind":"Service","metadata":{"name":"svc"},"spec":{"ports":[{"port":80}]}}`,
		"apps/a/list.yaml":        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n  metadata:\n    name: s1\n- apiVersion: v1\n  kind: Secret\n  metadata:\n    name: s2\n",
		"apps/a/README.md":        "not yaml",
		"apps/other/x.yaml":       cm("elsewhere"),
	})
	objs, err := Render(fsys, "apps/a", DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"ConfigMap a1@apps/a/a.yml",
		"ConfigMap a2@apps/a/a.yml",
		"ConfigMap b@apps/a/b.yaml",
		"Service svc@apps/a/c.json",
		"Secret s1@apps/a/list.yaml",
		"Secret s2@apps/a/list.yaml",
		"Deployment x/d@apps/a/nested/deep.yaml",
	}
	if diff := cmp.Diff(want, summary(objs)); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}
	// Integers must stay int64 so the object can be deep-copied and applied.
	for _, o := range objs {
		if o.GetKind() == "Deployment" {
			if r, ok := o.Object["spec"].(map[string]any)["replicas"].(int64); !ok || r != 2 {
				t.Errorf("replicas = %#v, want int64 2", o.Object["spec"])
			}
			_ = o.DeepCopy()
		}
	}
	// Rendering twice gives the same order.
	again, err := Render(fsys, "./apps/a/", DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(summary(objs), summary(again)); diff != "" {
		t.Errorf("not deterministic (-first +second):\n%s", diff)
	}
}

func TestRenderErrors(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string
		dir     string
		refused bool
		want    []string // substrings of the error
	}{
		{
			name:  "not an object names file and document",
			files: map[string]string{"app/ok.yaml": cm("a"), "app/bad.yaml": cm("b") + "---\nfoo: bar\n"},
			dir:   "app",
			want:  []string{"app/bad.yaml", "document 2", "missing apiVersion, kind, metadata.name"},
		},
		{
			name:  "scalar document",
			files: map[string]string{"app/bad.yaml": "just a string\n"},
			dir:   "app",
			want:  []string{"app/bad.yaml", "document 1", "not a Kubernetes object"},
		},
		{
			name:  "list item not an object",
			files: map[string]string{"app/l.yaml": "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n"},
			dir:   "app",
			want:  []string{"app/l.yaml", "item 1 of List", "metadata.name"},
		},
		{
			name:  "duplicate names both files",
			files: map[string]string{"app/a.yaml": cm("same"), "app/sub/b.yaml": cm("same")},
			dir:   "app",
			want:  []string{"duplicate object ConfigMap same", "app/a.yaml", "app/sub/b.yaml"},
		},
		{
			name:    "dir escaping the repository",
			files:   map[string]string{"app/a.yaml": cm("a")},
			dir:     "app/../../etc",
			refused: true,
			want:    []string{"escapes the repository"},
		},
		{
			name:  "invalid json",
			files: map[string]string{"app/a.json": `{"apiVersion": `},
			dir:   "app",
			want:  []string{"app/a.json", "document 1", "invalid JSON"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Render(repo(tt.files), tt.dir, DefaultOptions())
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if got := errors.Is(err, ErrRefused); got != tt.refused {
				t.Errorf("errors.Is(err, ErrRefused) = %v, want %v", got, tt.refused)
			}
		})
	}
}

func TestRenderFileSizeLimit(t *testing.T) {
	_, err := Render(repo(map[string]string{"app/a.yaml": cm(strings.Repeat("a", 50))}), "app", Options{MaxFileSize: 20})
	if err == nil || !strings.Contains(err.Error(), "larger than 20 bytes") {
		t.Fatalf("err = %v, want size limit error", err)
	}
}
