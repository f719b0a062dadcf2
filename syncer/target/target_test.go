package target

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/ferrygitops/ferry/syncer/apply"
	"github.com/ferrygitops/ferry/syncer/render"
	"github.com/ferrygitops/ferry/test/cluster"
)

func TestMain(m *testing.M) { os.Exit(cluster.Main(m)) }

// deadHost is an https address on 127.0.0.1 where nothing listens: connections are refused.
func deadHost(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "https://" + addr
}

func objects(t *testing.T, files map[string]string) []render.Object {
	t.Helper()
	fsys := fstest.MapFS{}
	for n, y := range files {
		fsys[n] = &fstest.MapFile{Data: []byte(y)}
	}
	objs, err := render.Render(fsys, ".", render.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// fixedClock is the health records' clock.
func fixedClock() time.Time { return time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC) }

// TestUnreachableClusterFailsOnlyItsApps: with ferry's own cluster up and another one down,
// syncs to the first apply; syncs to the second fail at once, transient, naming the cluster;
// the probe records both, and after it the cluster that is down refuses syncs before they
// start.
func TestUnreachableClusterFailsOnlyItsApps(t *testing.T) {
	cl := cluster.Shared(t)
	reg := prometheus.NewRegistry()
	opts := DefaultOptions()
	opts.Now, opts.Metrics = fixedClock, NewMetrics(reg)
	set, err := New([]Config{{Name: "prod-eu", Rest: &rest.Config{Host: deadHost(t), TLSClientConfig: rest.TLSClientConfig{Insecure: true}}},
		{Name: DefaultCluster, Rest: cl.Config}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := set.Default().Name(); got != DefaultCluster {
		t.Fatalf("default cluster is %q", got)
	}
	objs := objects(t, map[string]string{
		"ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: t-target\n",
		"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: t-target\ndata:\n  v: \"1\"\n",
	})
	app := apply.App{Name: "target-app", Prune: true}

	own, err := set.Get("")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := own.Sync(t.Context(), app, "r1", objs); err != nil {
		t.Fatalf("sync to the default cluster: %v", err)
	}
	kube := kubernetes.NewForConfigOrDie(cl.Config)
	if _, err := kube.CoreV1().ConfigMaps("t-target").Get(t.Context(), "settings", metav1.GetOptions{}); err != nil {
		t.Fatalf("object not in the default cluster: %v", err)
	}

	// Not probed yet: the sync is tried, and fails as the cluster's.
	down, err := set.Get("prod-eu")
	if err != nil {
		t.Fatalf("a cluster not probed yet is refused: %v", err)
	}
	_, err = down.Sync(t.Context(), app, "r1", objs)
	assertUnreachable(t, err, "prod-eu")
	t.Logf("a sync to a cluster that is down: %v", err)
	if _, err := down.Capabilities(t.Context()); !isUnreachable(err, "prod-eu") {
		t.Errorf("capabilities of a cluster that is down: %v", err)
	}
	if _, err := down.Data(t.Context(), "ConfigMap", "x", "y"); !isUnreachable(err, "prod-eu") {
		t.Errorf("variables from a cluster that is down: %v", err)
	}
	if _, err := down.Plan(t.Context(), app, objs); !isUnreachable(err, "prod-eu") {
		t.Errorf("plan against a cluster that is down: %v", err)
	}

	set.ProbeAll(t.Context())
	h := set.Health()
	if len(h) != 2 || h[0].Name != DefaultCluster || h[1].Name != "prod-eu" {
		t.Fatalf("health %+v: want the default cluster first", h)
	}
	if !h[0].Reachable || !h[0].Default || h[0].Version == "" || h[0].LastError != "" || !h[0].CheckedAt.Equal(fixedClock()) {
		t.Errorf("default cluster: %+v", h[0])
	}
	if h[1].Reachable || h[1].LastError == "" || h[1].Server == "" || h[1].Since != fixedClock() {
		t.Errorf("cluster that is down: %+v", h[1])
	}
	if up := testutil.ToFloat64(opts.Metrics.up.WithLabelValues("prod-eu")); up != 0 {
		t.Errorf("ferry_cluster_up{prod-eu} = %v", up)
	}
	if up := testutil.ToFloat64(opts.Metrics.up.WithLabelValues(DefaultCluster)); up != 1 {
		t.Errorf("ferry_cluster_up{default} = %v", up)
	}
	// Probed down, the cluster refuses syncs before they begin, with the probe's error.
	_, err = set.Get("prod-eu")
	assertUnreachable(t, err, "prod-eu")
	if _, err := set.Get(DefaultCluster); err != nil {
		t.Errorf("the default cluster is refused: %v", err)
	}
	if _, err := set.Get("nowhere"); err == nil || !strings.Contains(err.Error(), `cluster "nowhere" is not configured`) {
		t.Errorf("unknown cluster: %v", err)
	}
}

func isUnreachable(err error, name string) bool {
	ue, ok := errors.AsType[*UnreachableError](err)
	return ok && ue.Cluster == name && apply.IsTransient(err) && strings.HasPrefix(err.Error(), "cluster "+name+" unreachable: ")
}

func assertUnreachable(t *testing.T, err error, name string) {
	t.Helper()
	if !isUnreachable(err, name) {
		t.Fatalf("error %v: want a transient *UnreachableError naming cluster %s", err, name)
	}
	if _, ok := errors.AsType[*apply.Error](err); ok {
		t.Errorf("error %v: the object error hides the cluster's name from the status", err)
	}
}

// TestProbeSlowAndRefusingClusters: a cluster that never answers is marked unreachable after
// the probe's timeout while the others are probed; one that answers 401 is reachable, its
// error kept.
func TestProbeSlowAndRefusingClusters(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}`))
	}))
	t.Cleanup(refusing.Close)
	opts := DefaultOptions()
	opts.ProbeTimeout, opts.Now = 200*time.Millisecond, fixedClock
	set, err := New([]Config{{Name: DefaultCluster, Rest: cluster.Shared(t).Config}, {Name: "slow", Rest: &rest.Config{Host: slow.URL}},
		{Name: "refusing", Rest: &rest.Config{Host: refusing.URL}}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	set.ProbeAll(ctx)
	got := map[string]Health{}
	for _, h := range set.Health() {
		got[h.Name] = h
	}
	if h := got[DefaultCluster]; !h.Reachable {
		t.Errorf("default: %+v", h)
	}
	if h := got["slow"]; h.Reachable || !strings.Contains(h.LastError, "deadline") {
		t.Errorf("slow: %+v, want unreachable after the probe's timeout", h)
	}
	if h := got["refusing"]; !h.Reachable || !strings.Contains(h.LastError, "provide credentials") {
		t.Errorf("refusing: %+v, want reachable with the apiserver's refusal", h)
	}
	if _, err := set.Get("refusing"); err != nil {
		t.Errorf("a cluster that answers is refused: %v", err)
	}
	if _, err := set.Get("slow"); !isUnreachable(err, "slow") {
		t.Errorf("slow cluster: %v", err)
	}
}

func TestNewRefuses(t *testing.T) {
	good := &rest.Config{Host: "https://127.0.0.1:1"}
	for name, cs := range map[string][]Config{
		"none":      nil,
		"twice":     {{Name: "a", Rest: good}, {Name: "a", Rest: good}},
		"no config": {{Name: "a"}},
	} {
		if _, err := New(cs, DefaultOptions()); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
