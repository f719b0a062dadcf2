package render

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const baseDeploy = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
spec:
  replicas: 1
  selector:
    matchLabels: {app: api}
  template:
    metadata:
      labels: {app: api}
    spec:
      containers:
      - name: api
        image: api:1
`

func TestRenderKustomizeOverlay(t *testing.T) {
	fsys := repo(map[string]string{
		"base/kustomization.yaml": "resources:\n- deploy.yaml\n- svc.yaml\n",
		"base/deploy.yaml":        baseDeploy,
		"base/svc.yaml":           "apiVersion: v1\nkind: Service\nmetadata:\n  name: api\nspec:\n  ports:\n  - port: 80\n",
		"common/replicas.yaml":    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\nspec:\n  replicas: 3\n",
		"apps/prod/kustomization.yaml": `namePrefix: prod-
namespace: prod
resources:
- ../../base
patches:
- path: ../../common/replicas.yaml
configMapGenerator:
- name: settings
  literals: [mode=prod]
`,
	})
	objs, err := Render(fsys, "apps/prod", DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range objs {
		got = append(got, o.GetKind()+" "+describe(o.Unstructured)+"@"+o.File)
	}
	cmName := ""
	for _, o := range objs {
		if o.GetKind() == "ConfigMap" {
			cmName = o.GetName()
		}
	}
	want := []string{
		"Deployment prod/prod-api@base/deploy.yaml",
		"Service prod/prod-api@base/svc.yaml",
		"ConfigMap prod/" + cmName + "@apps/prod/kustomization.yaml",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(cmName, "prod-settings-") {
		t.Errorf("generated ConfigMap name %q lacks prefix and hash suffix", cmName)
	}
	for _, o := range objs {
		if _, ok := o.GetAnnotations()[originAnnotation]; ok {
			t.Errorf("%s kept ferry's origin annotation", o.GetName())
		}
		if o.GetKind() == "Deployment" {
			if r := o.Object["spec"].(map[string]any)["replicas"]; r != int64(3) {
				t.Errorf("patched replicas = %#v, want 3", r)
			}
			// The generated ConfigMap's hashed name is not referenced, but the object must copy cleanly.
			_ = o.DeepCopy()
		}
	}
}

func TestRenderKustomizeKeepsUserOriginAnnotation(t *testing.T) {
	fsys := repo(map[string]string{
		"app/kustomization.yaml": "buildMetadata: [originAnnotations]\nresources:\n- cm.yaml\n",
		"app/cm.yaml":            cm("a"),
	})
	objs, err := Render(fsys, "app", DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 || objs[0].File != "app/cm.yaml" {
		t.Fatalf("objects = %v", summary(objs))
	}
	if _, ok := objs[0].GetAnnotations()[originAnnotation]; !ok {
		t.Error("origin annotation requested by the user was removed")
	}
}

func TestRenderKustomizeRefused(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{
			name:  "remote base",
			files: map[string]string{"app/kustomization.yaml": "resources:\n- github.com/acme/base//deploy?ref=v1\n"},
			want:  []string{"app/kustomization.yaml", `resources "github.com/acme/base//deploy?ref=v1"`, "remote"},
		},
		{
			name:  "https resource file",
			files: map[string]string{"app/kustomization.yaml": "resources:\n- https://example.com/x.yaml\n"},
			want:  []string{"app/kustomization.yaml", "https://example.com/x.yaml", "remote"},
		},
		{
			name:  "remote base in a nested base",
			files: map[string]string{"app/kustomization.yaml": "resources:\n- ../base\n", "base/kustomization.yaml": "components:\n- git@github.com:acme/c.git\n"},
			want:  []string{"base/kustomization.yaml", "components", "remote"},
		},
		{
			name:  "missing local base is not fetched",
			files: map[string]string{"app/kustomization.yaml": "resources:\n- ../nothere\n"},
			want:  []string{"app/kustomization.yaml", `resources "../nothere"`, "not found in the repository"},
		},
		{
			name:  "helmCharts",
			files: map[string]string{"app/kustomization.yaml": "helmCharts:\n- name: redis\n  repo: https://charts.example.com\n"},
			want:  []string{"app/kustomization.yaml", `helmCharts "redis"`, "Helm"},
		},
		{
			name: "exec plugin",
			files: map[string]string{
				"app/kustomization.yaml": "transformers:\n- plugin.yaml\n",
				"app/plugin.yaml":        "apiVersion: someteam.example.com/v1\nkind: ChartInflator\nmetadata:\n  name: x\n",
			},
			want: []string{"app/kustomization.yaml", `transformers "plugin.yaml"`, "plugin someteam.example.com/v1/ChartInflator refused"},
		},
		{
			name: "KRM function plugin",
			files: map[string]string{
				"app/kustomization.yaml": "generators:\n- fn.yaml\n",
				"app/fn.yaml":            "apiVersion: builtin\nkind: Anything\nmetadata:\n  name: x\n  annotations:\n    config.kubernetes.io/function: |\n      container:\n        image: evil\n",
			},
			want: []string{"app/kustomization.yaml", `generators "fn.yaml"`, "KRM function"},
		},
		{
			name:  "inline plugin config",
			files: map[string]string{"app/kustomization.yaml": "transformers:\n- |\n  apiVersion: example.com/v1\n  kind: Exec\n  metadata:\n    name: x\n"},
			want:  []string{"app/kustomization.yaml", "transformers", "plugin example.com/v1/Exec refused"},
		},
		{
			name:  "patch outside the repository",
			files: map[string]string{"app/kustomization.yaml": "resources:\n- cm.yaml\npatches:\n- path: ../../../etc/passwd\n", "app/cm.yaml": cm("a")},
			want:  []string{"app/kustomization.yaml", "patches.path", "escapes the repository"},
		},
		{
			name:  "base outside the repository",
			files: map[string]string{"app/kustomization.yaml": "resources:\n- ../../outside\n"},
			want:  []string{"app/kustomization.yaml", "escapes the repository"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Render(repo(tt.files), "app", DefaultOptions())
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrRefused) {
				t.Errorf("error %q is not ErrRefused", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestRenderKustomizeBuiltinTransformerAllowed(t *testing.T) {
	fsys := repo(map[string]string{
		"app/kustomization.yaml": "resources:\n- cm.yaml\ntransformers:\n- prefix.yaml\n",
		"app/cm.yaml":            cm("a"),
		"app/prefix.yaml":        "apiVersion: builtin\nkind: PrefixSuffixTransformer\nmetadata:\n  name: p\nprefix: x-\nfieldSpecs:\n- path: metadata/name\n",
	})
	objs, err := Render(fsys, "app", DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 || objs[0].GetName() != "x-a" {
		t.Fatalf("objects = %v, want ConfigMap x-a", summary(objs))
	}
}

func TestRenderKustomizeDuplicate(t *testing.T) {
	fsys := repo(map[string]string{
		"app/kustomization.yaml": "resources:\n- a.yaml\n- b.yaml\n",
		"app/a.yaml":             cm("same"),
		"app/b.yaml":             cm("same"),
	})
	_, err := Render(fsys, "app", DefaultOptions())
	if err == nil {
		t.Fatal("no error for a duplicate object")
	}
	// kustomize itself detects the duplicate; either way both must be named or the id must be clear.
	if !strings.Contains(err.Error(), "same") {
		t.Errorf("error %q does not name the object", err)
	}
}

// TestInputs lists what an overlay reads: its own directory, the base it builds on elsewhere in
// the repository, patch and generator files, and nothing it does not reference.
func TestInputs(t *testing.T) {
	fsys := repo(map[string]string{
		"base/kustomization.yaml":      "resources:\n- deploy.yaml\n",
		"base/deploy.yaml":             baseDeploy,
		"common/replicas.yaml":         "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\nspec:\n  replicas: 3\n",
		"common/unused.yaml":           "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: unused\n",
		"files/app.properties":         "mode=prod\n",
		"other/kustomization.yaml":     "resources: []\n",
		"apps/plain/cm.yaml":           "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: plain\n",
		"apps/prod/kustomization.yaml": "resources:\n- ../../base\npatches:\n- path: ../../common/replicas.yaml\nconfigMapGenerator:\n- name: settings\n  files: [app=../../files/app.properties]\n",
	})
	got, err := Inputs(fsys, "apps/prod", DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"apps/prod", "base", "base/deploy.yaml", "common/replicas.yaml", "files/app.properties"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("inputs (-want +got):\n%s", diff)
	}
	for _, tt := range []struct {
		changed []string
		want    bool
	}{
		{[]string{"apps/prod/kustomization.yaml"}, true},
		{[]string{"base/deploy.yaml"}, true},
		{[]string{"base/new/file.yaml"}, true}, // a directory stands for all under it
		{[]string{"common/replicas.yaml"}, true},
		{[]string{"/files/app.properties"}, true},
		{[]string{"common/unused.yaml", "other/kustomization.yaml", "apps/production/x.yaml", "basement/x.yaml"}, false},
		{nil, false},
	} {
		if got := Touched(want, tt.changed); got != tt.want {
			t.Errorf("Touched(%q) = %v, want %v", tt.changed, got, tt.want)
		}
	}
	if got, err := Inputs(fsys, "apps/plain/", DefaultOptions()); err != nil || !cmp.Equal(got, []string{"apps/plain"}) {
		t.Errorf("plain directory inputs = %q, %v; want [apps/plain]", got, err)
	}
	if !Touched([]string{"."}, []string{"anything.yaml"}) {
		t.Error("the repository root is not touched by a change anywhere")
	}
	broken := repo(map[string]string{"apps/x/kustomization.yaml": "resources:\n- ../../missing\n"})
	if _, err := Inputs(broken, "apps/x", DefaultOptions()); !errors.Is(err, ErrRefused) {
		t.Errorf("missing base: err = %v, want ErrRefused", err)
	}
}

// openCounter records every file opened through it.
type openCounter struct {
	fs.FS
	opened map[string]int
}

func (o *openCounter) Open(name string) (fs.File, error) {
	f, err := o.FS.Open(name)
	if err == nil {
		if st, serr := f.Stat(); serr == nil && !st.IsDir() {
			o.opened[name]++
		}
	}
	return f, err
}

// TestKustomizeReadsOnlyItsInputs: a kustomization renders from its own directory and what it
// names elsewhere; the rest of the repository (other apps, documentation) is never read, so a
// render costs its app's share of a monorepo.
func TestKustomizeReadsOnlyItsInputs(t *testing.T) {
	files := map[string]string{
		"base/kustomization.yaml":      "resources:\n- deploy.yaml\n",
		"base/deploy.yaml":             baseDeploy,
		"common/replicas.yaml":         "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\nspec:\n  replicas: 3\n",
		"files/app.properties":         "mode=prod\n",
		"apps/prod/kustomization.yaml": "resources:\n- ../../base\npatches:\n- path: ../../common/replicas.yaml\nconfigMapGenerator:\n- name: settings\n  files: [app=../../files/app.properties]\n",
	}
	for i := range 50 {
		files[fmt.Sprintf("apps/other%02d/cm.yaml", i)] = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: other\n"
	}
	files["docs/big.md"] = strings.Repeat("documentation\n", 10000)
	counter := &openCounter{FS: repo(files), opened: map[string]int{}}
	objs, err := Render(counter, "apps/prod", DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 2 {
		t.Fatalf("rendered %d objects, want the Deployment and the ConfigMap", len(objs))
	}
	for name := range counter.opened {
		if strings.HasPrefix(name, "apps/other") || strings.HasPrefix(name, "docs/") {
			t.Errorf("render read %s, which the kustomization does not name", name)
		}
	}
	for _, want := range []string{"base/deploy.yaml", "common/replicas.yaml", "files/app.properties"} {
		if counter.opened[want] == 0 {
			t.Errorf("render did not read %s", want)
		}
	}
}
