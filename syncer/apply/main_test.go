package apply

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/ferrygitops/ferry/syncer/render"
	"github.com/ferrygitops/ferry/test/cluster"
)

func TestMain(m *testing.M) { os.Exit(cluster.Main(m)) }

// request is one HTTP request the engine sent.
type request struct {
	method, path, query string
}

// counter records the engine's requests, so tests can assert what a sync cost.
type counter struct {
	mu   sync.Mutex
	reqs []request
}

type countingTransport struct {
	rt http.RoundTripper
	c  *counter
}

func (t countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.c.mu.Lock()
	t.c.reqs = append(t.c.reqs, request{method: r.Method, path: r.URL.Path, query: r.URL.RawQuery})
	t.c.mu.Unlock()
	return t.rt.RoundTrip(r)
}

func (c *counter) reset() {
	c.mu.Lock()
	c.reqs = nil
	c.mu.Unlock()
}

func (c *counter) snapshot() []request {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]request(nil), c.reqs...)
}

// count returns the number of requests with the method whose path ends with suffix ("" = any).
func (c *counter) count(method, suffix string) int {
	n := 0
	for _, r := range c.snapshot() {
		if r.method == method && strings.HasSuffix(r.path, suffix) {
			n++
		}
	}
	return n
}

// env is what a test needs: an engine with a request counter, and clients to look at the cluster.
type env struct {
	e    *Engine
	c    *counter
	cfg  *rest.Config
	dyn  dynamic.Interface
	kube kubernetes.Interface
}

func newEnv(t *testing.T) *env {
	t.Helper()
	cl := cluster.Shared(t)
	c := &counter{}
	cfg := rest.CopyConfig(cl.Config)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return countingTransport{rt: rt, c: c} }
	opts := DefaultOptions()
	opts.PollInterval = 100 * time.Millisecond
	e, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	plain := rest.CopyConfig(cl.Config)
	plain.QPS, plain.Burst = 200, 400
	return &env{
		e: e, c: c, cfg: plain,
		dyn:  dynamic.NewForConfigOrDie(plain),
		kube: kubernetes.NewForConfigOrDie(plain),
	}
}

// obj parses one YAML object declared in file.
func obj(t testing.TB, file, y string) render.Object {
	t.Helper()
	// Through the render package's decoder, so objects are exactly as in production.
	objs, err := render.Render(fstest.MapFS{file: {Data: []byte(y)}}, ".", render.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 {
		t.Fatalf("%s: %d objects", file, len(objs))
	}
	return objs[0]
}

func configMap(t testing.TB, ns, name, value string) render.Object {
	y := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\n"
	if ns != "" {
		y += "  namespace: " + ns + "\n"
	}
	y += "data:\n  value: \"" + value + "\"\n"
	return obj(t, "cm/"+name+".yaml", y)
}

func namespace(t testing.TB, name string) render.Object {
	return obj(t, "ns/"+name+".yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: "+name+"\n")
}

// sync runs one sync with a bounded context.
func (v *env) sync(t *testing.T, app App, rev string, objs ...render.Object) (*Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	return v.e.Sync(ctx, app, rev, objs)
}

// mustSync fails the test unless the sync succeeds.
func (v *env) mustSync(t *testing.T, app App, rev string, objs ...render.Object) *Result {
	t.Helper()
	res, err := v.sync(t, app, rev, objs...)
	if err != nil {
		t.Fatalf("sync %s@%s: %v", app.Name, rev, err)
	}
	return res
}

// get reads a live object, or returns nil if it does not exist.
func (v *env) get(t *testing.T, apiVersion, resource, ns, name string) *unstructured.Unstructured {
	t.Helper()
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		t.Fatal(err)
	}
	u, err := v.dyn.Resource(gv.WithResource(resource)).Namespace(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		t.Fatal(err)
	}
	return u
}

// deployment declares a Deployment with the given replicas.
func deployment(t testing.TB, name string, replicas int) render.Object {
	return obj(t, "deploy/"+name+".yaml", fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %s
spec:
  replicas: %d
  selector:
    matchLabels: {app: %s}
  template:
    metadata:
      labels: {app: %s}
    spec:
      containers:
      - name: main
        image: registry.invalid/%s:1
`, name, replicas, name, name, name))
}

func objsOf(objs ...render.Object) []render.Object { return objs }
