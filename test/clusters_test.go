package test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ferrygitops/ferry/syncer/apply"
	"github.com/ferrygitops/ferry/test/cluster"
	"github.com/ferrygitops/ferry/test/forgefake"
	"github.com/ferrygitops/ferry/test/gitserver"
)

// clustersConfig deploys to ferry's own cluster (the shared control plane) and to a second
// one, edge: db on the default cluster; web, a matrix app, on both, with its own greeting on
// edge, and depending on db from either cluster; cache on edge only.
const clustersConfig = `externalURL: http://ferry.e2e.invalid
repos:
  - name: multi
    url: %s
    provider: github
    branch: main
    webhookSecret: {env: HOOK_SECRET}
    token: {env: FORGE_TOKEN}
    apiURL: %s
    interval: 1h
clusters:
  - {name: edge, kubeconfig: {file: %s}}
apps:
  - {name: db, repo: multi, path: apps/db, prune: true, timeout: 60s}
  - name: web
    repo: multi
    path: apps/web
    prune: true
    timeout: 60s
    dependsOn: [db]
    substitute: {greeting: hello}
    targets:
      - {cluster: default}
      - {cluster: edge, substitute: {greeting: hello from the edge}}
  - {name: cache, repo: multi, path: apps/cache, cluster: edge, prune: true, timeout: 60s}
apiTokens: [{env: API_TOKEN}]
`

// clusterFiles are the three apps' manifests at version v.
func clusterFiles(v string) map[string]string {
	cm := func(ns, name, data string) string {
		return fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n  namespace: %s\ndata:\n%s", ns, name, ns, data)
	}
	return map[string]string{
		"apps/db/db.yaml":       cm("e2e-mc-db", "db", "  version: \""+v+"\"\n"),
		"apps/web/web.yaml":     cm("e2e-mc-web", "web", "  version: \""+v+"\"\n  greeting: ${greeting}\n"),
		"apps/cache/cache.yaml": cm("e2e-mc-cache", "cache", "  version: \""+v+"\"\n"),
	}
}

// waitFinalWithin is waitFinal with a longer bound, for a sync that spends its retries on a
// cluster that does not answer.
func waitFinalWithin(t *testing.T, forge *forgefake.Forge, sha, context string, within time.Duration) []forgefake.Status {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var out []forgefake.Status
		for _, s := range forge.Statuses(sha) {
			if s.Context == context {
				out = append(out, s)
			}
		}
		if n := len(out); n > 0 && out[n-1].State != "pending" {
			return waitFinal(t, forge, sha, context)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no final status %s on %s after %s; statuses: %+v", context, sha[:7], within, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// clusterData is a ConfigMap's data in a cluster, nil when it does not exist.
func clusterData(t *testing.T, cs kubernetes.Interface, ns, name string) map[string]string {
	t.Helper()
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("get %s/%s: %v", ns, name, err)
	}
	return cm.Data
}

// clusterList is GET /api/v1/clusters, by name.
func clusterList(t *testing.T, f *ferry) map[string]map[string]any {
	t.Helper()
	var v struct {
		Clusters []map[string]any `json:"clusters"`
	}
	if code := f.getJSON(t, "/api/v1/clusters", &v); code != http.StatusOK {
		t.Fatalf("GET /api/v1/clusters: %d", code)
	}
	out := map[string]map[string]any{}
	for _, c := range v.Clusters {
		out[c["name"].(string)] = c
	}
	return out
}

// waitReachable waits until ferry's probe says cluster edge is reachable (or not).
func waitReachable(t *testing.T, f *ferry, name string, want bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		c := clusterList(t, f)[name]
		if c != nil && c["reachable"] == want && c["checkedAt"] != nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster %s: reachable is not %v after 90s: %+v", name, want, c)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// startControlPlane runs a second local control plane, besides the shared one, until the test
// ends, and returns it with a client of its apiserver.
func startControlPlane(t *testing.T) (*cluster.Cluster, kubernetes.Interface) {
	t.Helper()
	c, err := cluster.Start(waitCtx(t, 3*time.Minute), t.TempDir(), cluster.Options{BinDir: os.Getenv(cluster.BinDirEnv), Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
	})
	return c, kubernetes.NewForConfigOrDie(c.Config)
}

func TestSeveralClusters(t *testing.T) {
	edge, remote := startControlPlane(t)
	own := kube(t)

	git := gitserver.New(t)
	repo := git.CreateRepo(t, "acme/multi")
	first := repo.Commit(t, "main", "first", clusterFiles("1"))
	forge := forgefake.New(t, forgeToken)
	f := startFerry(t, fmt.Sprintf(clustersConfig, repo.CloneURL(), forge.URL(), edge.Kubeconfig), ferryEnv, "")

	// Start-up: every app on its cluster; web-edge waits for db, on the other cluster.
	for _, app := range []string{"db", "web-default", "web-edge", "cache"} {
		if st := waitFinal(t, forge, first, "ferry/"+app); st[len(st)-1].State != "success" {
			t.Fatalf("start-up sync of %s: %+v", app, st[len(st)-1])
		}
	}
	if d := clusterData(t, own, "e2e-mc-web", "web"); d["greeting"] != "hello" {
		t.Errorf("web in ferry's own cluster: %v", d)
	}
	if d := clusterData(t, remote, "e2e-mc-web", "web"); d["greeting"] != "hello from the edge" {
		t.Errorf("web on edge: %v", d)
	}
	if d := clusterData(t, remote, "e2e-mc-cache", "cache"); d["version"] != "1" {
		t.Errorf("cache on edge: %v", d)
	}
	for what, d := range map[string]map[string]string{
		"cache in ferry's own cluster": clusterData(t, own, "e2e-mc-cache", "cache"),
		"db on edge":                   clusterData(t, remote, "e2e-mc-db", "db"),
	} {
		if d != nil {
			t.Errorf("%s: %v, want none", what, d)
		}
	}
	// Each cluster keeps the inventories of its own apps.
	for cl, apps := range map[kubernetes.Interface][2][]string{own: {{"db", "web-default"}, {"web-edge", "cache"}}, remote: {{"web-edge", "cache"}, {"db", "web-default"}}} {
		for i, list := range apps {
			for _, app := range list {
				if has := clusterData(t, cl, apply.DefaultInventoryNamespace, apply.InventoryPrefix+app) != nil; has != (i == 0) {
					t.Errorf("inventory of %s in the wrong cluster (present: %v)", app, has)
				}
			}
		}
	}
	if dep, web := f.history(t, "db"), f.history(t, "web-edge"); len(dep) == 0 || len(web) == 0 || web[0].StartedAt == nil || dep[0].FinishedAt == nil || web[0].StartedAt.Before(*dep[0].FinishedAt) {
		t.Errorf("web-edge did not wait for db across clusters: db %+v, web-edge %+v", dep, web)
	}
	// The deploy's Event is on the app's inventory in the app's own cluster.
	if !eventually(t, func() bool { return len(inventoryEvents(t, remote, "web-edge")) > 0 }) {
		t.Errorf("no Event on web-edge's inventory in edge")
	}
	if evs := inventoryEvents(t, own, "web-edge"); len(evs) > 0 {
		t.Errorf("web-edge's Events recorded in ferry's own cluster: %v", evs)
	}
	var app struct{ Cluster string }
	if f.getJSON(t, "/api/v1/apps/web-edge", &app); app.Cluster != "edge" {
		t.Errorf("GET /api/v1/apps/web-edge names cluster %q", app.Cluster)
	}
	up := waitReachable(t, f, "edge", true)
	if up["version"] == "" || up["apps"] != float64(2) || !strings.HasPrefix(up["server"].(string), "127.0.0.1:") {
		t.Errorf("edge: %+v", up)
	}

	// edge's apiserver stops: its apps fail naming it, the default cluster's apps go on, and
	// ferry stays ready.
	if err := edge.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	down := waitReachable(t, f, "edge", false)
	if msg, _ := down["lastError"].(string); !strings.Contains(msg, "connection refused") {
		t.Errorf("edge's last error: %+v", down)
	}
	second := repo.Commit(t, "main", "second", clusterFiles("2"))
	if code, body := f.send(t, "multi", githubPush(t, hookSecret, "d-mc-2", first, second, "apps/web/web.yaml", "apps/cache/cache.yaml")); code != http.StatusAccepted {
		t.Fatalf("push: %d %s", code, body)
	}
	if st := waitFinal(t, forge, second, "ferry/web-default"); st[len(st)-1].State != "success" {
		t.Fatalf("web-default while edge is down: %+v", st[len(st)-1])
	}
	if d := clusterData(t, own, "e2e-mc-web", "web"); d["version"] != "2" {
		t.Errorf("web in ferry's own cluster while edge is down: %v", d)
	}
	if resp, err := http.Get(f.URL + "/readyz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz while a remote cluster is down: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	for _, app := range []string{"cache", "web-edge"} {
		st := waitFinalWithin(t, forge, second, "ferry/"+app, 5*time.Minute)
		last := st[len(st)-1]
		if last.State != "failure" || !strings.Contains(last.Description, "cluster edge unreachable") {
			t.Errorf("%s while edge is down: %+v, want a failure naming the cluster", app, last)
		}
		t.Logf("%s while edge is down: %s %q", app, last.State, last.Description)
		if st[0].State != "pending" {
			t.Errorf("%s: first status %+v", app, st[0])
		}
	}
	resp, err := http.Get(f.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), `ferry_cluster_up{cluster="edge"} 0`) || !strings.Contains(string(metrics), `ferry_cluster_up{cluster="default"} 1`) {
		t.Errorf("metrics do not say edge is down:\n%s", grepLines(string(metrics), "ferry_cluster_"))
	}
	page, err := http.Get(f.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(page.Body)
	page.Body.Close()
	if !strings.Contains(string(body), `<tr data-cluster="edge">`) || !strings.Contains(string(body), "unreachable</span>") {
		t.Errorf("the app list does not show edge down:\n%s", body)
	}

	// edge comes back: the next push applies there again.
	if err := edge.StartAPIServer(waitCtx(t, 3*time.Minute)); err != nil {
		t.Fatal(err)
	}
	waitReachable(t, f, "edge", true)
	third := repo.Commit(t, "main", "third", clusterFiles("3"))
	if code, body := f.send(t, "multi", githubPush(t, hookSecret, "d-mc-3", second, third, "apps/web/web.yaml", "apps/cache/cache.yaml")); code != http.StatusAccepted {
		t.Fatalf("push: %d %s", code, body)
	}
	for _, app := range []string{"cache", "web-edge", "web-default"} {
		if st := waitFinal(t, forge, third, "ferry/"+app); st[len(st)-1].State != "success" {
			t.Errorf("%s after edge came back: %+v", app, st[len(st)-1])
		}
	}
	if d := clusterData(t, remote, "e2e-mc-cache", "cache"); d["version"] != "3" {
		t.Errorf("cache on edge after it came back: %v", d)
	}
	if d := clusterData(t, remote, "e2e-mc-web", "web"); d["version"] != "3" || d["greeting"] != "hello from the edge" {
		t.Errorf("web on edge after it came back: %v", d)
	}
	assertAllFinal(t, forge)
}

// inventoryEvents are the reasons of the Events on app's inventory in a cluster.
func inventoryEvents(t *testing.T, cs kubernetes.Interface, app string) []string {
	t.Helper()
	evs, err := cs.CoreV1().Events(apply.DefaultInventoryNamespace).List(t.Context(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + apply.InventoryPrefix + app})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs.Items {
		out = append(out, e.Reason)
	}
	return out
}

// eventually polls cond for up to 30 s.
func eventually(t *testing.T, cond func() bool) bool {
	t.Helper()
	for range 150 {
		if cond() {
			return true
		}
		time.Sleep(200 * time.Millisecond)
	}
	return false
}

// grepLines keeps the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
