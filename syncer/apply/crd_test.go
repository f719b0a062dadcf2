package apply

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/client-go/rest"

	"github.com/ferrygitops/ferry/syncer/render"
	"github.com/ferrygitops/ferry/test/cluster"
)

// crd declares a CRD for kind in group, namespaced or cluster-scoped.
func crd(t testing.TB, group, kind string, namespaced bool) render.Object {
	plural := lower(kind) + "s"
	scope := "Cluster"
	if namespaced {
		scope = "Namespaced"
	}
	return obj(t, "crds/"+plural+".yaml", fmt.Sprintf(`apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: %s.%s
spec:
  group: %s
  scope: %s
  names: {kind: %s, plural: %s, singular: %s, listKind: %sList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
`, plural, group, group, scope, kind, plural, lower(kind), kind))
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// cr declares a custom resource; ns "" leaves the namespace to the app.
func cr(t testing.TB, group, kind, ns, name, value string) render.Object {
	y := fmt.Sprintf("apiVersion: %s/v1\nkind: %s\nmetadata:\n  name: %s\n", group, kind, name)
	if ns != "" {
		y += "  namespace: " + ns + "\n"
	}
	return obj(t, "crs/"+name+".yaml", y+"spec:\n  value: \""+value+"\"\n")
}

func TestSyncCRDAndCustomResources(t *testing.T) {
	v := newEnv(t)
	app := App{Name: "crds", Namespace: "t-crds", Prune: true}
	objs := []render.Object{
		namespace(t, "t-crds"),
		crd(t, "crdtest.ferry.dev", "Widget", true),
		crd(t, "crdtest.ferry.dev", "Gizmo", false),
		cr(t, "crdtest.ferry.dev", "Widget", "", "w1", "1"),
		cr(t, "crdtest.ferry.dev", "Gizmo", "", "g1", "1"),
	}
	res := v.mustSync(t, app, "r1", objs...)
	if res.Created != 5 {
		t.Errorf("result %+v, want 5 created", res)
	}
	if w := v.get(t, "crdtest.ferry.dev/v1", "widgets", "t-crds", "w1"); w == nil {
		t.Error("namespaced custom resource not created in the app namespace")
	}
	if g := v.get(t, "crdtest.ferry.dev/v1", "gizmos", "", "g1"); g == nil || g.GetNamespace() != "" {
		t.Errorf("cluster-scoped custom resource: %v", g)
	}
	v.c.reset()
	v.mustSync(t, app, "r1", objs...)
	assertOnlyReads(t, v.c, app.Name)

	// Removing the CRDs and their resources prunes resources first, then CRDs.
	res = v.mustSync(t, app, "r2", namespace(t, "t-crds"))
	if res.Pruned != 4 {
		t.Errorf("result %+v, want 4 pruned", res)
	}
	var order []string
	for _, o := range res.Objects {
		if o.Action == ActionPruned {
			order = append(order, o.ID.Kind)
		}
	}
	if len(order) == 4 && (order[0] == "CustomResourceDefinition" || order[1] == "CustomResourceDefinition") {
		t.Errorf("prune order %v: CRDs before their resources", order)
	}
}

func TestSyncKustomizeOverlay(t *testing.T) {
	v := newEnv(t)
	fsys := fstest.MapFS{
		"base/kustomization.yaml": {Data: []byte("resources:\n- cm.yaml\n- svc.yaml\n")},
		"base/cm.yaml":            {Data: []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  mode: dev\n")},
		"base/svc.yaml":           {Data: []byte("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports:\n  - port: 80\n")},
		"apps/prod/kustomization.yaml": {Data: []byte(`namePrefix: prod-
resources:
- ns.yaml
- ../../base
patches:
- patch: |
    apiVersion: v1
    kind: ConfigMap
    metadata:
      name: cfg
    data:
      mode: prod
configMapGenerator:
- name: extra
  literals: [a=b]
`)},
		"apps/prod/ns.yaml": {Data: []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: t-kustomize\n")},
	}
	objs, err := render.Render(fsys, "apps/prod", render.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	app := App{Name: "kustomize", Namespace: "t-kustomize", Prune: true}
	res := v.mustSync(t, app, "r1", objs...)
	if res.Created != 4 {
		t.Errorf("result %+v, want 4 created", res)
	}
	cm := v.get(t, "v1", "configmaps", "t-kustomize", "prod-cfg")
	if cm == nil || cm.Object["data"].(map[string]any)["mode"] != "prod" {
		t.Errorf("patched ConfigMap: %v", cm)
	}
	if v.get(t, "v1", "services", "t-kustomize", "prod-web") == nil {
		t.Error("prefixed Service missing")
	}
	for _, o := range res.Objects {
		if o.ID.Name == "prod-web" && o.File != "base/svc.yaml" {
			t.Errorf("Service file = %q, want base/svc.yaml", o.File)
		}
	}
}

// crdCollectionReads counts the requests that read the app's CRDs: watches, and LISTs by the
// app's label (the lookup of unknown names, by name or without a selector, is not counted).
func crdCollectionReads(c *counter) (watches, lists int) {
	for _, r := range c.snapshot() {
		if r.method != "GET" || !strings.HasSuffix(r.path, "/customresourcedefinitions") {
			continue
		}
		switch {
		case strings.Contains(r.query, "watch=true"):
			watches++
		case strings.Contains(r.query, "labelSelector="):
			lists++
		}
	}
	return watches, lists
}

// TestCRDEstablishmentWatched checks how a sync waits for the CRDs it creates: with one watch of
// the app's CRDs, told of their establishment as it happens, and no poll of the collection, whose
// LISTs return every CRD's whole schema (megabytes for real operators) and, at the default poll
// interval, come up to 2 s late. The health wait does not read them again either: the only LIST
// is the ownership check's metadata-only one.
func TestCRDEstablishmentWatched(t *testing.T) {
	v := newEnv(t)
	v.e.opts.PollInterval = DefaultPollInterval
	app := App{Name: "crdwatch", Namespace: "t-crdwatch", Prune: true}
	objs := []render.Object{
		namespace(t, "t-crdwatch"),
		crd(t, "watchtest.ferry.dev", "Sprocket", true),
		crd(t, "watchtest.ferry.dev", "Cog", false),
		crd(t, "watchtest.ferry.dev", "Flange", false),
		crd(t, "watchtest.ferry.dev", "Axle", true),
		cr(t, "watchtest.ferry.dev", "Sprocket", "", "s1", "1"),
	}
	v.c.reset()
	t0 := time.Now()
	res := v.mustSync(t, app, "r1", objs...)
	took := time.Since(t0)
	if res.Created != 6 {
		t.Errorf("result %+v, want 6 created", res)
	}
	watches, lists := crdCollectionReads(v.c)
	if watches != 1 || lists != 1 {
		t.Errorf("first sync read the CRD collection with %d watches and %d LISTs, want 1 and 1 (the ownership LIST)", watches, lists)
	}
	t.Logf("first sync with CRDs took %s (apply %s, health %s)", took, res.Durations.Apply, res.Durations.Health)

	// A changed CRD that is already established says so in its apply response: nothing to wait for.
	changed := objs[1].DeepCopy()
	changed.SetLabels(map[string]string{"tier": "gears"})
	objs[1] = render.Object{Unstructured: changed, File: objs[1].File}
	v.c.reset()
	res = v.mustSync(t, app, "r2", objs...)
	if res.Configured != 1 {
		t.Errorf("result %+v, want 1 configured", res)
	}
	if watches, _ := crdCollectionReads(v.c); watches != 0 {
		t.Errorf("re-applying an established CRD watched the collection %d times, want 0", watches)
	}
}

// holdCRDWait is a transport that holds the engine's wait for CRD establishment (a watch, or a
// LIST by label without a page size: the ownership LIST has one) until a PATCH of the object named
// by release is sent, or until holdFor passes.
type holdCRDWait struct {
	rt       http.RoundTripper
	release  string
	sent     chan struct{}
	once     sync.Once
	timedOut atomic.Bool
}

const holdFor = 5 * time.Second

func (h *holdCRDWait) RoundTrip(r *http.Request) (*http.Response, error) {
	switch {
	case r.Method == http.MethodPatch && strings.HasSuffix(r.URL.Path, h.release):
		h.once.Do(func() { close(h.sent) })
	case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/customresourcedefinitions") &&
		r.URL.Query().Has("labelSelector") && !r.URL.Query().Has("limit"):
		select {
		case <-h.sent:
		case <-time.After(holdFor):
			h.timedOut.Store(true)
		case <-r.Context().Done():
		}
	}
	return h.rt.RoundTrip(r)
}

// TestCRDEstablishmentOverlaps checks that objects which do not need new CRDs' kinds (here a
// ConfigMap, as an operator bundle's Deployment and RBAC) are applied while the apiserver
// establishes the CRDs, not after: the transport holds the wait for establishment until the
// ConfigMap is sent. An engine that waits first would only send it once the hold times out.
func TestCRDEstablishmentOverlaps(t *testing.T) {
	h := &holdCRDWait{release: "/configmaps/overlap-cfg", sent: make(chan struct{})}
	cfg := rest.CopyConfig(cluster.Shared(t).Config)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { h.rt = rt; return h }
	e, err := New(cfg, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	app := App{Name: "crdoverlap", Namespace: "t-crdoverlap", Prune: true}
	objs := []render.Object{
		namespace(t, "t-crdoverlap"),
		crd(t, "overlaptest.ferry.dev", "Bolt", true),
		crd(t, "overlaptest.ferry.dev", "Nut", false),
		configMap(t, "", "overlap-cfg", "1"),
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	res, err := e.Sync(ctx, app, "r1", objs)
	if err != nil {
		t.Fatal(err)
	}
	if res.Created != 4 {
		t.Errorf("result %+v, want 4 created", res)
	}
	if h.timedOut.Load() {
		t.Errorf("the ConfigMap was not sent within %s of the wait for the CRDs starting: the engine waited for establishment before applying objects that do not need it", holdFor)
	}

	// A custom resource of a new CRD still waits for it: the same hold now times out, and the
	// custom resource is applied only after the CRD is established.
	h2 := &holdCRDWait{release: "/configmaps/never", sent: make(chan struct{})}
	cfg2 := rest.CopyConfig(cluster.Shared(t).Config)
	cfg2.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { h2.rt = rt; return h2 }
	e2, err := New(cfg2, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	objs = append(objs, crd(t, "overlaptest.ferry.dev", "Washer", true), cr(t, "overlaptest.ferry.dev", "Washer", "", "w1", "1"))
	if _, err := e2.Sync(ctx, app, "r2", objs); err != nil {
		t.Fatal(err)
	}
	if !h2.timedOut.Load() {
		t.Error("the wait for a CRD that a custom resource of the same sync needs was not held: it was not waited for before the custom resource")
	}
}

// TestSyncLeavesRenderedObjectsAlone checks that preparing objects (namespace, labels, dropping
// status and server-set metadata) changes copies, not the caller's rendered objects, though
// prepare copies only what it changes.
func TestSyncLeavesRenderedObjectsAlone(t *testing.T) {
	v := newEnv(t)
	app := App{Name: "pristine", Namespace: "t-pristine", Prune: true}
	cm := obj(t, "cm.yaml", `apiVersion: v1
kind: ConfigMap
metadata:
  name: pristine
  resourceVersion: "12"
  labels: {team: a}
data:
  k: v
status:
  phase: ignored
`)
	objs := []render.Object{namespace(t, "t-pristine"), crd(t, "pristine.ferry.dev", "Pebble", true), cm}
	want := make([]map[string]any, len(objs))
	for i, o := range objs {
		want[i] = o.DeepCopy().Object
	}
	v.mustSync(t, app, "r1", objs...)
	for i, o := range objs {
		if !equality.Semantic.DeepEqual(o.Object, want[i]) {
			t.Errorf("%s %s was changed by the sync:\n got %v\nwant %v", o.GetKind(), o.GetName(), o.Object, want[i])
		}
	}
}
