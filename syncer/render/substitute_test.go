package render

import (
	"errors"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestExpand(t *testing.T) {
	vars := map[string]string{"env": "prod", "empty": "", "n": "3"}
	for _, tc := range []struct {
		in, want  string
		undefined []string
	}{
		{"name: api-${env}", "name: api-prod", nil},
		{"${env}${env}", "prodprod", nil},
		{"${missing}", "", []string{"missing"}},
		{"${missing:=eu-1} ${missing:-x}", "eu-1 x", nil},
		{"${empty:=def} ${empty=def} ${empty-def}", "def  ", nil},
		{"${env:=def} ${env=def}", "prod prod", nil},
		{"$${env} stays", "${env} stays", nil},
		{"echo $HOME ${1} ${x#y} ${", "echo $HOME ${1} ${x#y} ${", nil},
		{"${a.b} ${env}", "${a.b} prod", nil},
		{"replicas: ${n}", "replicas: 3", nil},
		{"${b} ${a} ${b}", "  ", []string{"a", "b"}},
		{"unterminated ${env", "unterminated ${env", nil},
	} {
		got, undefined := expand(tc.in, vars)
		if got != tc.want || !cmp.Equal(undefined, tc.undefined) {
			t.Errorf("expand(%q) = %q, %v; want %q, %v", tc.in, got, undefined, tc.want, tc.undefined)
		}
	}
	for _, tc := range []struct {
		name string
		ok   bool
	}{{"cluster_env", true}, {"_x1", true}, {"A", true}, {"", false}, {"1a", false}, {"a-b", false}, {"a.b", false}} {
		if got := ValidVariableName(tc.name); got != tc.ok {
			t.Errorf("ValidVariableName(%q) = %v", tc.name, got)
		}
	}
}

const substDeploy = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: api-${cluster_env}
  namespace: web
  # ${in_a_comment} is not a variable anyone must define
spec:
  replicas: ${replicas:=2}
  template:
    spec:
      containers:
      - name: api
        image: "registry/api:${tag}"
        env:
        - {name: PORT, value: "${port}"}
        - {name: REGION, value: '${region}'}
`

const substScript = `apiVersion: v1
kind: ConfigMap
metadata:
  name: script
  namespace: web
  annotations: {ferry.dev/substitute: disabled}
data: {run.sh: "echo ${HOME} ${region}"}
`

func renderVars(t *testing.T, files map[string]string, vars *Variables) ([]Object, error) {
	t.Helper()
	fsys := fstest.MapFS{}
	for p, data := range files {
		fsys[p] = &fstest.MapFile{Data: []byte(data)}
	}
	opts := DefaultOptions()
	opts.Variables = vars
	return Render(fsys, "apps/api", opts)
}

func container(t *testing.T, o Object) map[string]any {
	t.Helper()
	cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
	if len(cs) != 1 {
		t.Fatalf("containers = %v", cs)
	}
	return cs[0].(map[string]any)
}

func TestSubstitutePlainAndKustomize(t *testing.T) {
	vars := &Variables{Values: map[string]string{"cluster_env": "prod", "tag": "v1.2.3", "region": "eu-1", "port": "8080"}, Strict: true}
	plain := map[string]string{"apps/api/deploy.yaml": substDeploy, "apps/api/script.yaml": substScript}
	kust := map[string]string{
		"apps/api/kustomization.yaml":  "resources: [../base]\n",
		"apps/base/kustomization.yaml": "resources: [deploy.yaml, script.yaml]\n",
		"apps/base/deploy.yaml":        substDeploy, "apps/base/script.yaml": substScript,
	}
	for name, files := range map[string]map[string]string{"plain": plain, "kustomize": kust} {
		t.Run(name, func(t *testing.T) {
			objs, err := renderVars(t, files, vars)
			if err != nil {
				t.Fatal(err)
			}
			byKind := map[string]Object{}
			for _, o := range objs {
				byKind[o.GetKind()] = o
			}
			d := byKind["Deployment"]
			if !strings.HasSuffix(d.GetName(), "api-prod") || !strings.HasSuffix(d.File, "deploy.yaml") {
				t.Errorf("deployment %s from %s", d.GetName(), d.File)
			}
			if r, ok, _ := unstructured.NestedInt64(d.Object, "spec", "replicas"); !ok || r != 2 {
				t.Errorf("replicas = %#v, want the number 2", d.Object["spec"].(map[string]any)["replicas"])
			}
			c := container(t, d)
			env := c["env"].([]any)
			// A quoted reference stays a string, as the repository wrote it.
			if c["image"] != "registry/api:v1.2.3" || env[0].(map[string]any)["value"] != "8080" || env[1].(map[string]any)["value"] != "eu-1" {
				t.Errorf("container = %#v", c)
			}
			for _, o := range objs {
				if o.GetKind() != "ConfigMap" {
					continue
				}
				data, _, _ := unstructured.NestedStringMap(o.Object, "data")
				switch {
				case strings.HasSuffix(o.GetName(), "script") && data["run.sh"] != "echo ${HOME} ${region}":
					t.Errorf("opted-out ConfigMap changed: %q", data)
				case strings.Contains(o.GetName(), "gen-") && (data["run.sh"] != "echo ${HOME}\n" || data["REGION"] != "eu-1"):
					// The kustomization is substituted; the script a generator reads is not.
					t.Errorf("generated ConfigMap: %q", data)
				}
			}
		})
	}

	// Strict: the undefined variables are named with the object and file, never a value.
	_, err := renderVars(t, plain, &Variables{Values: map[string]string{"cluster_env": "prod", "port": "1"}, Strict: true})
	var ue *UndefinedError
	if !errors.As(err, &ue) || !errors.Is(err, ErrUndefinedVariable) || !cmp.Equal(ue.Vars, []string{"region", "tag"}) {
		t.Fatalf("strict error = %v", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "apps/api/deploy.yaml") || !strings.Contains(msg, "web/api-${cluster_env}") || strings.Contains(msg, "prod") {
		t.Errorf("message %q should name the file and object and hold no value", msg)
	}
	// Not strict: undefined variables are empty.
	objs, err := renderVars(t, plain, &Variables{Values: map[string]string{"cluster_env": "prod"}})
	if err != nil {
		t.Fatal(err)
	}
	if c := container(t, objs[0]); c["image"] != "registry/api:" {
		t.Errorf("image = %v", c["image"])
	}
	// Without variables nothing is substituted.
	objs, err = renderVars(t, plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	if objs[0].GetName() != "api-${cluster_env}" {
		t.Errorf("name = %s", objs[0].GetName())
	}

	// A value that breaks the YAML, and one that makes two objects the same, fail clearly.
	broken := map[string]string{"apps/api/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata:\n  k: ${v}\n"}
	_, err = renderVars(t, broken, &Variables{Values: map[string]string{"v": "a\nb: [", "secret": "hunter2"}})
	if err == nil || !strings.Contains(err.Error(), "apps/api/cm.yaml") || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("broken YAML: %v", err)
	}
	dup := map[string]string{
		"apps/api/a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: '${n}'}\n",
		"apps/api/b.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: same}\n",
	}
	_, err = renderVars(t, dup, &Variables{Values: map[string]string{"n": "same"}})
	if err == nil || !strings.Contains(err.Error(), "duplicate object") {
		t.Errorf("duplicate after substitution: %v", err)
	}
}

func FuzzExpand(f *testing.F) {
	for _, s := range []string{"${a}", "$${a}", "${a:=b}", "${", "${}", "$${", "${a-}", "x${a}y${b:-z}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, _ := expand(s, map[string]string{"a": "A"})
		if !strings.Contains(s, "$") && got != s {
			t.Fatalf("text without $ changed: %q → %q", s, got)
		}
	})
}

func TestSubstituteChart(t *testing.T) {
	files := map[string]string{
		"apps/api/Chart.yaml":  "apiVersion: v2\nname: api\nversion: 0.1.0\n",
		"apps/api/values.yaml": "replicas: 1\n",
		"apps/api/templates/deploy.yaml": `apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-${cluster_env}
spec:
  replicas: {{ .Values.replicas }}
  template:
    spec:
      containers:
      - name: api
        image: "registry/api:${tag:=latest}"
        env: [{name: PORT, value: "${port}"}]
`,
	}
	fsys := fstest.MapFS{}
	for p, data := range files {
		fsys[p] = &fstest.MapFile{Data: []byte(data)}
	}
	opts := DefaultOptions()
	opts.Helm = &Helm{ReleaseName: "api", Namespace: "web"}
	opts.Variables = &Variables{Values: map[string]string{"cluster_env": "prod", "port": "8080"}, Strict: true}
	objs, err := Render(fsys, "apps/api", opts)
	if err != nil {
		t.Fatal(err)
	}
	c := container(t, objs[0])
	if objs[0].GetName() != "api-prod" || c["image"] != "registry/api:latest" || c["env"].([]any)[0].(map[string]any)["value"] != "8080" {
		t.Errorf("chart output after substitution: %s %#v", objs[0].GetName(), c)
	}
	opts.Variables.Values = map[string]string{}
	if _, err := Render(fsys, "apps/api", opts); !errors.Is(err, ErrUndefinedVariable) || !strings.Contains(err.Error(), "apps/api/templates/deploy.yaml") {
		t.Errorf("strict chart: %v", err)
	}
}
