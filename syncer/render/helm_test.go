package render

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// clusterCaps are the capabilities of a cluster serving policy/v1 and no ServiceMonitor.
var clusterCaps = Capabilities{KubeVersion: "v1.35.2", APIVersions: []string{"v1", "apps/v1", "batch/v1", "policy/v1"}}

// helmRepo copies testdata/helm (a repository holding the shop chart) into memory, with
// files replaced or added by overrides.
func helmRepo(t *testing.T, overrides map[string]string) fstest.MapFS {
	t.Helper()
	m := fstest.MapFS{}
	err := fs.WalkDir(os.DirFS("testdata/helm"), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(filepath.Join("testdata/helm", p))
		m[p] = &fstest.MapFile{Data: data}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for p, c := range overrides {
		m[p] = &fstest.MapFile{Data: []byte(c)}
	}
	return m
}

// helmOpts renders as the syncer does for an app "web" in namespace "shop".
func helmOpts(h Helm) Options {
	opts := DefaultOptions()
	if h.ReleaseName == "" {
		h.ReleaseName, h.Namespace = "web", "shop"
	}
	if h.Capabilities.KubeVersion == "" && h.Capabilities.APIVersions == nil {
		h.Capabilities = clusterCaps
	}
	opts.Helm = &h
	return opts
}

// find returns the object of that kind and name, failing the test if there is none.
func find(t *testing.T, objs []Object, kind, name string) Object {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s %s in %v", kind, name, summary(objs))
	return Object{}
}

func field(t *testing.T, o Object, path ...string) any {
	t.Helper()
	v, ok, err := unstructured.NestedFieldNoCopy(o.Object, path...)
	if err != nil || !ok {
		t.Fatalf("%s %s: no %v (%v)", o.GetKind(), o.GetName(), path, err)
	}
	return v
}

func TestHelmChart(t *testing.T) {
	objs, err := Render(helmRepo(t, nil), "apps/shop", helmOpts(Helm{}))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"CustomResourceDefinition widgets.shop.example.org@apps/shop/crds/widgets.yaml",
		"Service web-cache@apps/shop/charts/cache/templates/service.yaml",
		"ConfigMap web-settings@apps/shop/templates/configmap.yaml",
		"Deployment web@apps/shop/templates/deployment.yaml",
		"Job web-migrate@apps/shop/templates/hooks.yaml",
		"ConfigMap web-installed@apps/shop/templates/hooks.yaml",
		"PodDisruptionBudget web@apps/shop/templates/pdb.yaml",
	}
	if diff := cmp.Diff(want, summary(objs)); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}
	hooks := map[string]*Hook{}
	for _, o := range objs {
		hooks[o.GetKind()+"/"+o.GetName()] = o.Hook
	}
	wantHooks := map[string]*Hook{
		"CustomResourceDefinition/widgets.shop.example.org": nil,
		"Service/web-cache":       nil,
		"ConfigMap/web-settings":  nil,
		"Deployment/web":          nil,
		"Job/web-migrate":         {Pre: true, Install: true, Upgrade: true, Weight: -5, DeletePolicies: []string{HookSucceeded, HookBeforeCreation}},
		"ConfigMap/web-installed": {Install: true, DeletePolicies: []string{HookBeforeCreation}},
		"PodDisruptionBudget/web": nil,
	}
	if diff := cmp.Diff(wantHooks, hooks); diff != "" {
		t.Errorf("hooks (-want +got):\n%s", diff)
	}
	settings := find(t, objs, "ConfigMap", "web-settings")
	wantData := map[string]any{
		"greeting": "hello", "color": "blue", "namespace": "shop",
		"kubeVersion": "v1.35.2", "kubeMinor": "35", "install": "true", "lookup": "0",
	}
	if diff := cmp.Diff(wantData, field(t, settings, "data")); diff != "" {
		t.Errorf("settings data (-want +got):\n%s", diff)
	}
	if got := settings.GetLabels()["app.kubernetes.io/managed-by"]; got != ReleaseService {
		t.Errorf("managed-by label %q, want %q", got, ReleaseService)
	}
	// The parent's values reach the subchart and win over its own.
	if got := field(t, find(t, objs, "Service", "web-cache"), "spec", "ports"); !cmp.Equal(got, []any{map[string]any{"port": int64(6380)}}) {
		t.Errorf("cache ports %v, want port 6380 from the parent's values", got)
	}
	if got := field(t, find(t, objs, "PodDisruptionBudget", "web"), "apiVersion"); got != "policy/v1" {
		t.Errorf("PDB apiVersion %v on a cluster serving policy/v1", got)
	}
	// Integers stay int64, so objects can be deep-copied and applied.
	find(t, objs, "Deployment", "web").DeepCopy()
}

func TestHelmCapabilities(t *testing.T) {
	repo := helmRepo(t, nil)
	old := Capabilities{KubeVersion: "v1.31.4", APIVersions: []string{"v1", "apps/v1", "batch/v1", "policy/v1beta1", "monitoring.coreos.com/v1", "monitoring.coreos.com/v1/ServiceMonitor"}}
	objs, err := Render(repo, "apps/shop", helmOpts(Helm{Capabilities: old}))
	if err != nil {
		t.Fatal(err)
	}
	if got := find(t, objs, "PodDisruptionBudget", "web").GetAPIVersion(); got != "policy/v1beta1" {
		t.Errorf("PDB apiVersion %q on a cluster without policy/v1", got)
	}
	find(t, objs, "ServiceMonitor", "web")
	if got := field(t, find(t, objs, "ConfigMap", "web-settings"), "data", "kubeVersion"); got != "v1.31.4" {
		t.Errorf("kubeVersion %v", got)
	}
	// Zero capabilities: the SDK's defaults, which serve policy/v1.
	opts := DefaultOptions()
	opts.Helm = &Helm{ReleaseName: "web"}
	objs, err = Render(repo, "apps/shop", opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := find(t, objs, "PodDisruptionBudget", "web").GetAPIVersion(); got != "policy/v1" {
		t.Errorf("PDB apiVersion %q with the SDK's default capabilities", got)
	}
	for _, o := range objs {
		if o.GetKind() == "ServiceMonitor" {
			t.Errorf("ServiceMonitor rendered on a cluster without its API")
		}
	}
}

func TestHelmValuesOrder(t *testing.T) {
	repo := helmRepo(t, nil)
	cases := []struct {
		name  string
		h     Helm
		check func(t *testing.T, objs []Object)
	}{{
		name: "files in order over values.yaml",
		h:    Helm{ValuesFiles: []string{"values-staging.yaml", "/envs/prod/values.yaml"}},
		check: func(t *testing.T, objs []Object) {
			d := find(t, objs, "Deployment", "web")
			if got := field(t, d, "spec", "replicas"); got != int64(5) {
				t.Errorf("replicas %v, want 5 from the last file", got)
			}
			c := field(t, d, "spec", "template", "spec", "containers").([]any)[0].(map[string]any)
			if c["image"] != "example.org/shop:2.2-rc" {
				t.Errorf("image %v: the tag from values-staging.yaml over the chart's repository", c["image"])
			}
			data := field(t, find(t, objs, "ConfigMap", "web-settings"), "data").(map[string]any)
			if data["greeting"] != "hello staging" || data["color"] != "green" {
				t.Errorf("greeting %v, color %v", data["greeting"], data["color"])
			}
		},
	}, {
		name: "reverse order",
		h:    Helm{ValuesFiles: []string{"../../envs/prod/values.yaml", "values-staging.yaml"}},
		check: func(t *testing.T, objs []Object) {
			if got := field(t, find(t, objs, "Deployment", "web"), "spec", "replicas"); got != int64(2) {
				t.Errorf("replicas %v, want 2 from the last file", got)
			}
		},
	}, {
		name: "values last, a subchart disabled",
		h:    Helm{ValuesFiles: []string{"/envs/prod/values.yaml"}, Values: map[string]any{"replicas": 7, "extra": true, "cache": map[string]any{"enabled": false}}},
		check: func(t *testing.T, objs []Object) {
			if got := field(t, find(t, objs, "Deployment", "web"), "spec", "replicas"); got != int64(7) {
				t.Errorf("replicas %v, want 7 from Values", got)
			}
			find(t, objs, "ConfigMap", "web-extra")
			for _, o := range objs {
				if o.GetKind() == "Service" {
					t.Errorf("the disabled cache subchart rendered %s", o.GetName())
				}
			}
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := Render(repo, "apps/shop", helmOpts(tc.h))
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, objs)
		})
	}
}

func TestHelmDefaultsAndSkipCRDs(t *testing.T) {
	repo := helmRepo(t, nil)
	objs, err := Render(repo, "apps/shop/", DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	cm := find(t, objs, "ConfigMap", "shop-settings") // the release is named after the chart
	if got := field(t, cm, "data", "namespace"); got != "" {
		t.Errorf("namespace %q without options", got)
	}
	objs, err = Render(repo, "apps/shop", helmOpts(Helm{SkipCRDs: true}))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.GetKind() == "CustomResourceDefinition" {
			t.Errorf("SkipCRDs rendered %s", o.GetName())
		}
	}
	if len(objs) != 6 {
		t.Errorf("%d objects without CRDs, want 6: %v", len(objs), summary(objs))
	}
}

func TestHelmInputs(t *testing.T) {
	repo := helmRepo(t, nil)
	got, err := Inputs(repo, "apps/shop", helmOpts(Helm{ValuesFiles: []string{"/envs/prod/values.yaml", "values-staging.yaml", "../../envs/prod/values.yaml"}}))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"apps/shop", "apps/shop/values-staging.yaml", "envs/prod/values.yaml"}, got); diff != "" {
		t.Errorf("inputs (-want +got):\n%s", diff)
	}
	// A remote chart, fetched or only named: its directory and values files.
	for _, h := range []Helm{{Archive: []byte("x")}, {Ref: "oci://registry.example.com/charts/shop"}} {
		h.ValuesFiles = []string{"/envs/prod/values.yaml"}
		got, err = Inputs(repo, "apps/remote", helmOpts(h))
		if err != nil || !cmp.Equal(got, []string{"apps/remote", "envs/prod/values.yaml"}) {
			t.Errorf("inputs of a remote chart: %v, %v", got, err)
		}
	}
	if _, err := Inputs(repo, "apps/shop", helmOpts(Helm{ValuesFiles: []string{"../../../etc/passwd"}})); !errors.Is(err, ErrRefused) {
		t.Errorf("a values file outside the repository: %v, want refused", err)
	}
	if !Touched(got, []string{"envs/prod/values.yaml"}) {
		t.Errorf("a change to a values file does not touch the app")
	}
}

func TestHelmErrors(t *testing.T) {
	cases := []struct {
		name  string
		files map[string]string
		h     Helm
		dir   string
		want  []string // substrings of the error
		check func(error) bool
	}{{
		name:  "template parse error",
		files: map[string]string{"apps/shop/templates/broken.yaml": "kind: {{ .Values.x | nosuchfunc }}\n"},
		want:  []string{"apps/shop/templates/broken.yaml", `function "nosuchfunc" not defined`},
	}, {
		name:  "template fails",
		files: map[string]string{"apps/shop/templates/broken.yaml": "{{ fail \"the database URL is required\" }}\n"},
		want:  []string{"apps/shop/templates/broken.yaml", "the database URL is required"},
	}, {
		name:  "subchart template error",
		files: map[string]string{"apps/shop/charts/cache/templates/service.yaml": "{{ required \"cache.password is required\" .Values.password }}\n"},
		want:  []string{"apps/shop/charts/cache/templates/service.yaml", "cache.password is required"},
	}, {
		name: "missing values file",
		h:    Helm{ValuesFiles: []string{"values-staging.yaml", "values-nope.yaml"}},
		want: []string{"apps/shop/values-nope.yaml", "not exist"},
	}, {
		name: "values file not a mapping",
		h:    Helm{ValuesFiles: []string{"list-values.yaml"}},
		want: []string{"apps/shop/list-values.yaml", "not a YAML mapping"},
	}, {
		name:  "values file not YAML",
		files: map[string]string{"envs/prod/values.yaml": "replicas: [1\n"},
		h:     Helm{ValuesFiles: []string{"/envs/prod/values.yaml"}},
		want:  []string{"envs/prod/values.yaml", "invalid YAML"},
	}, {
		name:  "values file outside the repository",
		h:     Helm{ValuesFiles: []string{"../../../secrets.yaml"}},
		want:  []string{"apps/shop", "../../../secrets.yaml"},
		check: func(err error) bool { return errors.Is(err, ErrRefused) },
	}, {
		name:  "bad Chart.yaml",
		files: map[string]string{"apps/shop/Chart.yaml": "apiVersion: v2\nname: [shop\n"},
		want:  []string{"apps/shop/Chart.yaml", "cannot load Chart.yaml"},
	}, {
		name:  "Chart.yaml without version",
		files: map[string]string{"apps/shop/Chart.yaml": "apiVersion: v2\nname: shop\n"},
		want:  []string{"apps/shop/Chart.yaml", "chart.metadata.version is required"},
	}, {
		name:  "subchart's bad Chart.yaml",
		files: map[string]string{"apps/shop/charts/cache/Chart.yaml": "apiVersion: v2\nversion: 1.0.0\n"},
		want:  []string{"apps/shop/charts/cache/Chart.yaml", "name is required"},
	}, {
		name:  "a dependency not vendored",
		files: map[string]string{"apps/shop/Chart.yaml": "apiVersion: v2\nname: shop\nversion: 0.3.0\ndependencies:\n  - name: cache\n    version: 1.x.x\n  - name: postgresql\n    version: 16.x.x\n    repository: oci://registry-1.docker.io/bitnamicharts\n"},
		want:  []string{"apps/shop/Chart.yaml", "postgresql", "not vendored"},
	}, {
		name:  "bad values.yaml",
		files: map[string]string{"apps/shop/values.yaml": "replicas: [1\n"},
		want:  []string{"apps/shop/values.yaml"},
	}, {
		name: "cluster too old for the chart",
		h:    Helm{Capabilities: Capabilities{KubeVersion: "v1.18.3"}},
		want: []string{"apps/shop/Chart.yaml", ">=1.19.0-0", "v1.18.3"},
	}, {
		name: "bad Kubernetes version",
		h:    Helm{Capabilities: Capabilities{KubeVersion: "latest"}},
		want: []string{`"latest"`},
	}, {
		name:  "bad hook weight",
		files: map[string]string{"apps/shop/templates/hooks.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: h\n  annotations:\n    helm.sh/hook: post-upgrade\n    helm.sh/hook-weight: heavy\n"},
		want:  []string{"apps/shop/templates/hooks.yaml", "ConfigMap h", `"heavy"`},
	}, {
		name:  "unknown hook event",
		files: map[string]string{"apps/shop/templates/hooks.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: h\n  annotations:\n    helm.sh/hook: pre-instal\n"},
		want:  []string{"apps/shop/templates/hooks.yaml", "ConfigMap h", `unknown hook event "pre-instal"`},
	}, {
		name:  "unknown hook delete policy",
		files: map[string]string{"apps/shop/templates/hooks.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: h\n  annotations:\n    helm.sh/hook: post-upgrade\n    helm.sh/hook-delete-policy: never\n"},
		want:  []string{"apps/shop/templates/hooks.yaml", `"never"`},
	}, {
		name:  "rendered output not an object",
		files: map[string]string{"apps/shop/templates/broken.yaml": "just: {{ .Values.greeting }}\n"},
		want:  []string{"apps/shop/templates/broken.yaml", "document 1", "missing apiVersion"},
	}, {
		name: "values against the chart's schema",
		files: map[string]string{"apps/shop/values.schema.json": `{"type":"object","properties":{"replicas":{"type":"integer","maximum":3}}}`,
			"envs/prod/values.yaml": "replicas: 5\n"},
		h:    Helm{ValuesFiles: []string{"/envs/prod/values.yaml"}},
		want: []string{"apps/shop/values.schema.json", "/replicas", "maximum"},
	}, {
		name:  "a schema referring to the network",
		files: map[string]string{"apps/shop/values.schema.json": `{"$ref":"http://127.0.0.1:1/schema.json"}`},
		want:  []string{"apps/shop/values.schema.json", "127.0.0.1:1"},
	}, {
		name: "values for a directory without a chart",
		dir:  "envs/prod",
		h:    Helm{ValuesFiles: []string{"values.yaml"}},
		want: []string{"envs/prod", "no Chart.yaml"},
	}, {
		name: "a remote chart that is no archive",
		dir:  "apps/remote",
		h:    Helm{Archive: []byte("<html>not found</html>"), Ref: "oci://registry.example/shop:9.9.9"},
		want: []string{"oci://registry.example/shop:9.9.9", "not a chart archive"},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.dir
			if dir == "" {
				dir = "apps/shop"
			}
			_, err := Render(helmRepo(t, tc.files), dir, helmOpts(tc.h))
			if err == nil {
				t.Fatal("rendered, want an error")
			}
			t.Log(err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if tc.check != nil && !tc.check(err) {
				t.Errorf("error %v (%T) is not of the expected kind", err, err)
			}
		})
	}
}

func TestHelmBounds(t *testing.T) {
	many := "{{- range until 50 }}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: many-{{ . }}\n{{- end }}\n"
	repo := helmRepo(t, map[string]string{"apps/shop/templates/many.yaml": many})
	opts := helmOpts(Helm{})
	if objs, err := Render(repo, "apps/shop", opts); err != nil || len(objs) != 57 {
		t.Fatalf("%d objects, %v; want 57", len(objs), err)
	}
	opts.Limits.Objects = 40
	_, err := Render(repo, "apps/shop", opts)
	var be *BoundError
	if !errors.As(err, &be) || be.Bound != "MaxRenderObjects" || be.File != "apps/shop/templates/many.yaml" {
		t.Errorf("error %v, want MaxRenderObjects in apps/shop/templates/many.yaml", err)
	}
	opts.Limits = Limits{Bytes: 4 << 10}
	if _, err := Render(repo, "apps/shop", opts); !errors.Is(err, ErrBound) {
		t.Errorf("error %v, want a bound on bytes", err)
	}
	// The amplifiers are bounded while the template runs, before any output is counted.
	huge := helmRepo(t, map[string]string{"apps/shop/templates/huge.yaml": "{{ range until 100000000 }}{{ end }}\n"})
	if _, err := Render(huge, "apps/shop", helmOpts(Helm{})); err == nil || !strings.Contains(err.Error(), "MaxTemplateRange") || !strings.Contains(err.Error(), "apps/shop/templates/huge.yaml") {
		t.Errorf("error %v, want MaxTemplateRange in huge.yaml", err)
	}
	// An alias bomb in values.yaml stops before the SDK parses it.
	bomb := "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
	if _, err := Render(helmRepo(t, map[string]string{"apps/shop/values.yaml": bomb}), "apps/shop", helmOpts(Helm{})); !errors.As(err, &be) || be.File != "apps/shop/values.yaml" {
		t.Errorf("error %v, want a bound in apps/shop/values.yaml", err)
	}
}

func TestHelmArchive(t *testing.T) {
	c, err := loader.LoadDir("testdata/helm/apps/shop")
	if err != nil {
		t.Fatal(err)
	}
	tgz, err := chartutil.Save(c, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(tgz)
	if err != nil {
		t.Fatal(err)
	}
	const ref = "oci://registry.example/charts/shop:0.3.0"
	// The app's directory holds nothing but what the values files need.
	repo := helmRepo(t, nil)
	objs, err := Render(repo, "apps/remote", helmOpts(Helm{Archive: data, Ref: ref, ValuesFiles: []string{"/envs/prod/values.yaml"}}))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"CustomResourceDefinition widgets.shop.example.org@" + ref + "/crds/widgets.yaml",
		"Service web-cache@" + ref + "/charts/cache/templates/service.yaml",
		"ConfigMap web-settings@" + ref + "/templates/configmap.yaml",
		"Deployment web@" + ref + "/templates/deployment.yaml",
		"Job web-migrate@" + ref + "/templates/hooks.yaml",
		"ConfigMap web-installed@" + ref + "/templates/hooks.yaml",
		"PodDisruptionBudget web@" + ref + "/templates/pdb.yaml",
	}
	if diff := cmp.Diff(want, summary(objs)); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}
	if got := field(t, find(t, objs, "Deployment", "web"), "spec", "replicas"); got != int64(5) {
		t.Errorf("replicas %v, want 5 from envs/prod/values.yaml", got)
	}
	// A vendored subchart may be an archive too.
	sub, err := loader.LoadDir("testdata/helm/apps/shop/charts/cache")
	if err != nil {
		t.Fatal(err)
	}
	subTgz, err := chartutil.Save(sub, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	subData, err := os.ReadFile(subTgz)
	if err != nil {
		t.Fatal(err)
	}
	withTgz := helmRepo(t, map[string]string{"apps/shop/charts/cache-1.4.0.tgz": string(subData)})
	for p := range withTgz {
		if strings.HasPrefix(p, "apps/shop/charts/cache/") {
			delete(withTgz, p)
		}
	}
	objs, err = Render(withTgz, "apps/shop", helmOpts(Helm{}))
	if err != nil {
		t.Fatal(err)
	}
	if got := find(t, objs, "Service", "web-cache").File; got != "apps/shop/charts/cache-1.4.0.tgz/templates/service.yaml" {
		t.Errorf("subchart archive template file %q", got)
	}
}

func TestHelmSubchartAlias(t *testing.T) {
	repo := helmRepo(t, map[string]string{
		"apps/shop/Chart.yaml": "apiVersion: v2\nname: shop\nversion: 0.3.0\ndependencies:\n" +
			"  - name: cache\n    version: 1.x.x\n" +
			"  - name: cache\n    alias: replica\n    version: 1.x.x\n",
		"apps/shop/charts/cache/templates/service.yaml": "apiVersion: v1\nkind: Service\nmetadata:\n  name: {{ .Release.Name }}-{{ .Chart.Name }}\nspec:\n  ports:\n    - port: {{ .Values.port }}\n",
	})
	objs, err := Render(repo, "apps/shop", helmOpts(Helm{Values: map[string]any{"replica": map[string]any{"port": 7000}}}))
	if err != nil {
		t.Fatal(err)
	}
	for name, port := range map[string]int64{"web-cache": 6380, "web-replica": 7000} {
		svc := find(t, objs, "Service", name)
		if svc.File != "apps/shop/charts/cache/templates/service.yaml" {
			t.Errorf("Service %s from %q, want the vendored subchart's template", name, svc.File)
		}
		if got := field(t, svc, "spec", "ports"); !cmp.Equal(got, []any{map[string]any{"port": port}}) {
			t.Errorf("Service %s ports %v, want %d", name, got, port)
		}
	}
	// A template error in the aliased copy still names the file it was read from.
	repo["apps/shop/charts/cache/templates/service.yaml"] = &fstest.MapFile{Data: []byte("{{ if eq .Chart.Name \"replica\" }}{{ fail \"no replica here\" }}{{ end }}\n")}
	_, err = Render(repo, "apps/shop", helmOpts(Helm{}))
	if err == nil || !strings.HasPrefix(err.Error(), "apps/shop/charts/cache/templates/service.yaml: ") || !strings.Contains(err.Error(), "no replica here") {
		t.Errorf("error %v, want it to name apps/shop/charts/cache/templates/service.yaml", err)
	}
}
