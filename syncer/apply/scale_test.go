package apply

import (
	"fmt"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/ferrygitops/ferry/syncer/render"
)

// TestScale applies 1,000 ConfigMaps and compares with a bare parallel server-side apply loop of
// the same size and concurrency: the engine's first apply must cost one PATCH per object and stay
// close to the bare loop; its unchanged re-sync must cost only reads.
func TestScale(t *testing.T) {
	if testing.Short() {
		t.Skip("scale test skipped in -short mode")
	}
	const n = 1000
	v := newEnv(t)
	for _, ns := range []string{"t-scale", "t-scale-bare"} {
		if _, err := v.kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	objs := make([]render.Object, 0, n)
	for i := range n {
		objs = append(objs, configMap(t, "", fmt.Sprintf("cm-%04d", i), "v1"))
	}

	// The bare loop: the same objects, the same concurrency, no engine.
	bareStart := time.Now()
	gvr := schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	work := make(chan *unstructured.Unstructured)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bareErr error
	for range DefaultConcurrency {
		wg.Go(func() {
			for u := range work {
				if _, err := v.dyn.Resource(gvr).Namespace("t-scale-bare").Apply(t.Context(), u.GetName(), u, metav1.ApplyOptions{FieldManager: "bare", Force: true}); err != nil {
					mu.Lock()
					bareErr = err
					mu.Unlock()
				}
			}
		})
	}
	for _, o := range objs {
		u := o.DeepCopy()
		u.SetNamespace("t-scale-bare")
		work <- u
	}
	close(work)
	wg.Wait()
	if bareErr != nil {
		t.Fatal(bareErr)
	}
	bare := time.Since(bareStart)

	app := App{Name: "scale", Namespace: "t-scale", Prune: true}
	v.c.reset()
	start := time.Now()
	res := v.mustSync(t, app, "r1", objs...)
	first := time.Since(start)
	if res.Created != n {
		t.Errorf("created %d, want %d", res.Created, n)
	}
	if got := v.c.count("PATCH", ""); got != n {
		t.Errorf("first apply sent %d PATCH, want %d", got, n)
	}
	firstReqs := len(v.c.snapshot())
	firstApply := res.Durations.Apply

	v.c.reset()
	start = time.Now()
	res = v.mustSync(t, app, "r1", objs...)
	again := time.Since(start)
	if res.Unchanged != n {
		t.Errorf("unchanged %d, want %d", res.Unchanged, n)
	}
	assertOnlyReads(t, v.c, app.Name)
	t.Logf("%d objects: bare SSA loop %s; engine first apply %s (%d requests, apply phase %s); unchanged re-sync %s (%d requests)",
		n, bare.Round(time.Millisecond), first.Round(time.Millisecond), firstReqs, firstApply.Round(time.Millisecond),
		again.Round(time.Millisecond), len(v.c.snapshot()))
	if first > 2*bare+5*time.Second {
		t.Errorf("engine first apply %s is far slower than the bare loop %s", first, bare)
	}
}
