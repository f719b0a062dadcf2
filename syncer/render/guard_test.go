package render

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// laughs is a "billion laughs" document of a few hundred bytes: levels of nine aliases each, so it
// expands to 9^levels scalars, held in a ConfigMap's data.
func laughs(levels int) string {
	return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: lol\n" + laughsBody(levels)
}

// laughsBody is the part of laughs that makes it a bomb: top-level fields x and bomb.
func laughsBody(levels int) string {
	var b strings.Builder
	b.WriteString("x:\n  l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	for i := 1; i <= levels; i++ {
		p := fmt.Sprintf("*l%d", i-1)
		fmt.Fprintf(&b, "  l%d: &l%d [%s]\n", i, i, strings.Repeat(p+", ", 8)+p)
	}
	fmt.Fprintf(&b, "data:\n  k: v\nbomb: *l%d\n", levels)
	return b.String()
}

// bigAnchor is one anchor of size bytes aliased n times.
func bigAnchor(size, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n  a: &big %q\n", strings.Repeat("x", size))
	for i := range n {
		fmt.Fprintf(&b, "  a%d: *big\n", i)
	}
	return b.String()
}

// wantBound fails unless err is a BoundError for bound naming file.
func wantBound(t *testing.T, err error, bound, file string) {
	t.Helper()
	var be *BoundError
	if !errors.As(err, &be) || !errors.Is(err, ErrBound) {
		t.Fatalf("error %v, want a %s BoundError", err, bound)
	}
	if be.Bound != bound || be.File != file {
		t.Fatalf("bound %s on %s, want %s on %s", be.Bound, be.File, bound, file)
	}
	if !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), bound) {
		t.Fatalf("message %q does not name %s and %s", err, file, bound)
	}
}

func TestAliasBombPlain(t *testing.T) {
	for name, tc := range map[string]struct {
		content, bound string
	}{
		"nested aliases": {laughs(9), "MaxAliasNodes"},
		"large anchor":   {bigAnchor(512<<10, 600), "MaxAliasBytes"},
	} {
		t.Run(name, func(t *testing.T) {
			fsys := repo(map[string]string{"apps/a/ok.yaml": cm("ok"), "apps/a/bomb.yaml": tc.content})
			_, err := Render(fsys, "apps/a", DefaultOptions())
			wantBound(t, err, tc.bound, "apps/a/bomb.yaml")
		})
	}
}

func TestAliasBombKustomize(t *testing.T) {
	kust := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
	cases := map[string]struct {
		files       map[string]string
		bound, file string
	}{
		"resource in a base": {
			files: map[string]string{
				"apps/a/kustomization.yaml":    kust + "resources: [../../base]\n",
				"base/kustomization.yaml":      kust + "resources: [bomb.yaml]\n",
				"base/bomb.yaml":               laughs(7),
				"apps/a/unrelated/other.yaml":  cm("x"),
				"apps/a/unrelated/other2.yaml": cm("y"),
			},
			bound: "MaxAliasNodes", file: "base/bomb.yaml",
		},
		"patch": {
			files: map[string]string{
				"apps/a/kustomization.yaml": kust + "resources: [cm.yaml]\npatches:\n- path: patch.yaml\n",
				"apps/a/cm.yaml":            cm("lol"),
				"apps/a/patch.yaml":         laughs(7),
			},
			bound: "MaxAliasNodes", file: "apps/a/patch.yaml",
		},
		"the kustomization": {
			files: map[string]string{
				"apps/a/kustomization.yaml": kust + "resources: [cm.yaml]\n" + laughsBody(7),
				"apps/a/cm.yaml":            cm("a"),
			},
			bound: "MaxAliasNodes", file: "apps/a/kustomization.yaml",
		},
		"generator input": {
			files: map[string]string{
				"apps/a/kustomization.yaml": kust + "configMapGenerator:\n- name: g\n  files: [big.yaml]\n",
				"apps/a/big.yaml":           bigAnchor(256<<10, 8),
			},
			bound: "MaxAliasBytes", file: "apps/a/big.yaml",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Render(repo(tc.files), "apps/a", DefaultOptions())
			wantBound(t, err, tc.bound, tc.file)
		})
	}
}

func TestAliasesWithinBoundsRender(t *testing.T) {
	dep := `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: a
        image: x
        env: &env [{name: A, value: "1"}, {name: B, value: "2"}]
        resources: &res {limits: {cpu: "1"}}
      - name: b
        image: y
        env: *env
        resources: *res
`
	for _, files := range []map[string]string{
		{"apps/a/dep.yaml": dep},
		{"apps/a/dep.yaml": dep, "apps/a/kustomization.yaml": "resources: [dep.yaml]\n"},
	} {
		objs, err := Render(repo(files), "apps/a", DefaultOptions())
		if err != nil {
			t.Fatal(err)
		}
		if len(objs) != 1 {
			t.Fatalf("objects %v", summary(objs))
		}
		c, _, _ := unstructured.NestedSlice(objs[0].Object, "spec", "template", "spec", "containers")
		if len(c) != 2 {
			t.Fatalf("containers %v", c)
		}
		env, _, _ := unstructured.NestedSlice(c[1].(map[string]any), "env")
		if len(env) != 2 {
			t.Errorf("the second container's env, an alias, expands to %v", env)
		}
	}
}

func TestAliasLoopRefused(t *testing.T) {
	_, err := aliasCost("loop.yaml", []byte("a: &a [1, *a]\n"))
	if !errors.Is(err, errAliasLoop) || !strings.Contains(err.Error(), "loop.yaml") {
		t.Fatalf("error %v, want the alias loop in loop.yaml", err)
	}
}

func TestRenderReadBound(t *testing.T) {
	// One 4 MiB file at 20 paths: 80 MiB read, past MaxRenderBytes however few distinct blobs.
	big := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: NAME\ndata:\n  k: " + strings.Repeat("x", 4<<20) + "\n"
	files := map[string]string{}
	for i := range 20 {
		files[fmt.Sprintf("apps/a/f%02d.yaml", i)] = strings.Replace(big, "NAME", fmt.Sprintf("c%d", i), 1)
	}
	_, err := Render(repo(files), "apps/a", DefaultOptions())
	// The first file past the bound is the one after as many whole files as fit.
	wantBound(t, err, "MaxRenderBytes", fmt.Sprintf("apps/a/f%02d.yaml", MaxRenderBytes/len(files["apps/a/f00.yaml"])))

	// The same files through a kustomization.
	files["apps/a/kustomization.yaml"] = "resources:\n"
	for i := range 20 {
		files["apps/a/kustomization.yaml"] += fmt.Sprintf("- f%02d.yaml\n", i)
	}
	_, err = Render(repo(files), "apps/a", DefaultOptions())
	if !errors.Is(err, ErrBound) || !strings.Contains(err.Error(), "MaxRenderBytes") {
		t.Fatalf("kustomize: error %v, want MaxRenderBytes", err)
	}
}

func TestRenderObjectBound(t *testing.T) {
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: List\nitems:\n")
	for i := range MaxRenderObjects + 1 {
		fmt.Fprintf(&b, "- {apiVersion: v1, kind: ConfigMap, metadata: {name: c%d}}\n", i)
	}
	_, err := Render(repo(map[string]string{"apps/a/list.yaml": b.String()}), "apps/a", DefaultOptions())
	wantBound(t, err, "MaxRenderObjects", "apps/a/list.yaml")
}

func TestKustomizeReadsCountEachTime(t *testing.T) {
	// A base reached through eight overlays is read eight times by kustomize: each read is
	// charged, so overlays cannot multiply a base past MaxRenderBytes for free.
	kust := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
	payload := strings.Repeat("z", 64<<10)
	files := map[string]string{
		"base/kustomization.yaml": kust + "resources: [cm.yaml]\n",
		"base/cm.yaml":            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  k: " + payload + "\n",
	}
	top := kust + "resources:\n"
	for i := range 8 {
		files[fmt.Sprintf("o%d/kustomization.yaml", i)] = kust + fmt.Sprintf("namePrefix: o%d-\nresources: [../base]\n", i)
		top += fmt.Sprintf("- ../o%d\n", i)
	}
	files["app/kustomization.yaml"] = top
	b := newBudget(Limits{})
	objs, err := renderKustomization(repo(files), "app", "app/kustomization.yaml", DefaultOptions(), b)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 8 {
		t.Fatalf("%d objects, want 8", len(objs))
	}
	// Copied once, read by kustomize eight times, produced eight times.
	if min := int64(17 * len(payload)); b.read < min {
		t.Errorf("charged %d bytes, want at least %d: every read of the base counts", b.read, min)
	}
}

func TestDenseYAMLBound(t *testing.T) {
	// One MiB of "1," is half a million nodes: parsers hold hundreds of bytes for each.
	dense := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: d\nx: [" + strings.Repeat("1,", 512<<10) + "1]\n"
	for _, files := range []map[string]string{
		{"apps/a/d.yaml": dense},
		{"apps/a/d.yaml": dense, "apps/a/kustomization.yaml": "resources: [d.yaml]\n"},
	} {
		_, err := Render(repo(files), "apps/a", DefaultOptions())
		wantBound(t, err, "MaxRenderNodes", "apps/a/d.yaml")
	}
	// The estimate stays near the real count: cm has 13 nodes (the mapping, keys, values).
	if n := nodeMarks([]byte(cm("a"))); n < 6 || n > 2*13 {
		t.Errorf("a ConfigMap of 13 nodes counts %d marks", n)
	}
}

// TestRaisedLimits: a server that raises a render's limits for larger stacks renders what the
// defaults refuse, and the refusal then names the raised limit; aliases stay bounded whatever the
// limits.
func TestRaisedLimits(t *testing.T) {
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: List\nitems:\n")
	for i := range MaxRenderObjects + 1 {
		fmt.Fprintf(&b, "- {apiVersion: v1, kind: ConfigMap, metadata: {name: c%d}}\n", i)
	}
	files := repo(map[string]string{"apps/a/list.yaml": b.String()})
	opts := DefaultOptions()
	opts.Limits = Limits{Objects: 2 * MaxRenderObjects, Nodes: 4 * MaxRenderNodes}
	objs, err := Render(files, "apps/a", opts)
	if err != nil || len(objs) != MaxRenderObjects+1 {
		t.Fatalf("raised limits: %d objects, %v", len(objs), err)
	}
	opts.Limits.Objects = MaxRenderObjects / 2
	_, err = Render(files, "apps/a", opts)
	var be *BoundError
	if !errors.As(err, &be) || be.Bound != "MaxRenderObjects" || be.Limit != MaxRenderObjects/2 {
		t.Fatalf("lowered object limit: %v", err)
	}
	bomb := "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
	opts.Limits = Limits{Bytes: 1 << 30, Nodes: 1 << 30, Objects: 1 << 20}
	_, err = Render(repo(map[string]string{"apps/a/bomb.yaml": bomb}), "apps/a", opts)
	if !errors.As(err, &be) || be.Bound != "MaxAliasNodes" {
		t.Fatalf("an alias bomb under raised limits: %v, want MaxAliasNodes", err)
	}
}
