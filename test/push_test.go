package test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/test/cluster"
	"github.com/ferrygitops/ferry/test/forgefake"
	"github.com/ferrygitops/ferry/test/gitserver"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

const (
	hookSecret = "e2e-hook-secret"
	forgeToken = "e2e-forge-token"
	apiToken   = "e2e-api-token"
)

// webApp is a small app: its namespace, a ConfigMap and a Service.
func webApp(ns, greeting string) map[string]string {
	return map[string]string{
		"apps/web/namespace.yaml": fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n", ns),
		"apps/web/config.yaml": fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata:
  name: web-settings
data:
  greeting: %q
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  ports:
    - port: 80
      targetPort: 8080
  selector:
    app: web
`, greeting),
	}
}

func config(provider, cloneURL, apiURL, ns string) string {
	return forgeConfig(provider, cloneURL, apiURL, "1h", e2eApp{name: "web", path: "apps/web", ns: ns})
}

var ferryEnv = map[string]string{"HOOK_SECRET": hookSecret, "FORGE_TOKEN": forgeToken, "API_TOKEN": apiToken}

func kube(t *testing.T) *kubernetes.Clientset {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cluster.Shared(t).Config)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// waitFinal waits until the last status of context on sha is terminal and stays the last one
// for a moment (a pending status that lands after the final one must be followed by the final
// one again: no commit is left pending), then returns every status of that context.
func waitFinal(t *testing.T, forge *forgefake.Forge, sha, context string) []forgefake.Status {
	t.Helper()
	const settle = 500 * time.Millisecond
	deadline := time.Now().Add(90 * time.Second)
	var out []forgefake.Status
	var stableSince time.Time
	seen := -1
	for {
		out = out[:0]
		for _, s := range forge.Statuses(sha) {
			if s.Context == context {
				out = append(out, s)
			}
		}
		final := len(out) > 0 && out[len(out)-1].State != "pending" && out[len(out)-1].State != "running"
		if len(out) != seen {
			seen, stableSince = len(out), time.Now()
		}
		if final && time.Since(stableSince) >= settle {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("no lasting final status %s on %s after 90s; statuses: %+v", context, sha[:7], out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestGitHubPushEndToEnd(t *testing.T) {
	ns := "e2e-github"
	cs := kube(t)
	git := gitserver.New(t)
	repo := git.CreateRepo(t, "acme/platform")
	first := repo.Commit(t, "main", "web: first", webApp(ns, "hello"))
	forge := forgefake.New(t, forgeToken)
	f := startFerry(t, config("github", repo.CloneURL(), forge.URL(), ns), ferryEnv, "")

	// Start-up recovery applies the branch head without any hook.
	st := waitFinal(t, forge, first, "ferry/web")
	if last := st[len(st)-1]; last.State != "success" {
		t.Fatalf("start-up sync: %+v", last)
	}

	// A push: pending, then success, the objects in the cluster, a link to the sync page.
	second := repo.Commit(t, "main", "web: second", webApp(ns, "bonjour"))
	code, body := f.send(t, "platform", githubPush(t, hookSecret, "d-gh-2", first, second, "apps/web/config.yaml"))
	if code != http.StatusAccepted {
		t.Fatalf("push hook: %d %s", code, body)
	}
	st = waitFinal(t, forge, second, "ferry/web")
	if st[0].State != "pending" {
		t.Errorf("first status on the pushed commit is %q, want pending", st[0].State)
	}
	last := st[len(st)-1]
	if last.State != "success" || !strings.HasPrefix(last.Description, "applied 3 objects in ") {
		t.Fatalf("final status %+v, want success \"applied 3 objects in …\"", last)
	}
	if !strings.HasPrefix(last.TargetURL, "http://ferry.e2e.invalid/syncs/") {
		t.Errorf("target_url %q does not point at the sync page", last.TargetURL)
	}
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "web-settings", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cm.Data["greeting"] != "bonjour" || cm.Labels["app.kubernetes.io/managed-by"] != "ferry" || cm.Labels["ferry.dev/app"] != "web" {
		t.Errorf("ConfigMap data %v labels %v", cm.Data, cm.Labels)
	}
	id := last.TargetURL[strings.LastIndex(last.TargetURL, "/")+1:]
	var rec queue.Record
	if code := f.getJSON(t, "/api/v1/syncs/"+id, &rec); code != http.StatusOK || rec.State != queue.StateSucceeded || rec.SHA != second || rec.Trigger != queue.TriggerPush {
		t.Errorf("sync record %d %+v", code, rec)
	}
	resp, err := http.Get(f.URL + "/syncs/" + id)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("sync page: %d", resp.StatusCode)
	}

	// A broken manifest ends in failure, with the object and the apiserver's reason.
	broken := webApp(ns, "bonjour")
	broken["apps/web/deploy.yaml"] = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: broken
spec:
  replicas: -1
  selector: {matchLabels: {app: broken}}
  template:
    metadata: {labels: {app: broken}}
    spec:
      containers: [{name: app, image: nginx}]
`
	third := repo.Commit(t, "main", "web: broken", broken)
	if code, body := f.send(t, "platform", githubPush(t, hookSecret, "d-gh-3", second, third, "apps/web/deploy.yaml")); code != http.StatusAccepted {
		t.Fatalf("push hook: %d %s", code, body)
	}
	st = waitFinal(t, forge, third, "ferry/web")
	last = st[len(st)-1]
	if last.State != "failure" || !contains(last.Description, "Deployment", "broken") || !strings.Contains(strings.ToLower(last.Description), "replicas") {
		t.Fatalf("broken manifest status %+v, want failure naming the Deployment and its replicas", last)
	}
	if len(last.Description) > 140 {
		t.Errorf("description is %d characters", len(last.Description))
	}

	// The same delivery sent twice makes one sync.
	fourth := repo.Remove(t, "main", "web: drop the broken deployment", "apps/web/deploy.yaml")
	dup := githubPush(t, hookSecret, "d-gh-4", third, fourth, "apps/web/deploy.yaml")
	for i := range 2 {
		if code, body := f.send(t, "platform", dup); code != http.StatusAccepted {
			t.Fatalf("delivery %d: %d %s", i+1, code, body)
		}
	}
	st = waitFinal(t, forge, fourth, "ferry/web")
	if last := st[len(st)-1]; last.State != "success" {
		t.Fatalf("after removing the broken object: %+v", last)
	}
	time.Sleep(2 * time.Second) // a second sync, were there one, would have started by now
	n := 0
	for _, r := range f.history(t, "web") {
		if r.SHA == fourth {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the delivery sent twice made %d syncs, want 1", n)
	}
	successes := 0
	for _, s := range forge.Statuses(fourth) {
		if s.State == "success" {
			successes++
		}
	}
	if successes != 1 {
		t.Errorf("%d success statuses on the commit, want 1", successes)
	}
	if _, err := cs.AppsV1().Deployments(ns).Get(t.Context(), "broken", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the Deployment that left Git is still there or unreadable: %v", err)
	}
	assertAllFinal(t, forge)
}

func TestGitLabPushEndToEnd(t *testing.T) {
	ns := "e2e-gitlab"
	cs := kube(t)
	git := gitserver.New(t)
	repo := git.CreateRepo(t, "acme/infra/platform")
	first := repo.Commit(t, "main", "web: first", webApp(ns, "hallo"))
	forge := forgefake.New(t, forgeToken)
	f := startFerry(t, config("gitlab", repo.CloneURL(), forge.URL(), ns), ferryEnv, "")
	if st := waitFinal(t, forge, first, "ferry/web"); st[len(st)-1].State != "success" {
		t.Fatalf("start-up sync: %+v", st)
	}
	second := repo.Commit(t, "main", "web: second", webApp(ns, "servus"))
	if code, body := f.send(t, "platform", gitlabPush(t, "wrong-token", "d-gl-bad", first, second, "apps/web/config.yaml")); code != http.StatusUnauthorized || strings.Contains(body, hookSecret) {
		t.Fatalf("wrong token: %d %s", code, body)
	}
	if code, body := f.send(t, "platform", gitlabPush(t, hookSecret, "d-gl-2", first, second, "apps/web/config.yaml")); code != http.StatusAccepted {
		t.Fatalf("push hook: %d %s", code, body)
	}
	st := waitFinal(t, forge, second, "ferry/web")
	if st[0].State != "pending" || st[len(st)-1].State != "success" || st[0].Repo != "acme/infra/platform" {
		t.Fatalf("statuses %+v, want pending then success on acme/infra/platform", st)
	}
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "web-settings", metav1.GetOptions{})
	if err != nil || cm.Data["greeting"] != "servus" {
		t.Fatalf("ConfigMap %v %v", cm.Data, err)
	}
	assertAllFinal(t, forge)
}

func TestManualResync(t *testing.T) {
	ns := "e2e-resync"
	cs := kube(t)
	git := gitserver.New(t)
	repo := git.CreateRepo(t, "acme/platform")
	first := repo.Commit(t, "main", "web: first", webApp(ns, "hi"))
	forge := forgefake.New(t, forgeToken)
	f := startFerry(t, config("github", repo.CloneURL(), forge.URL(), ns), ferryEnv, "")
	waitFinal(t, forge, first, "ferry/web")

	// Someone deletes an object by hand; a manual resync puts it back.
	if err := cs.CoreV1().ConfigMaps(ns).Delete(t.Context(), "web-settings", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	post := func(token, body string) (int, string) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, f.URL+"/api/v1/apps/web/sync", strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b := new(strings.Builder)
		_, _ = fmt.Fprint(b, resp.Status)
		var v map[string]any
		_ = jsonDecode(resp, &v)
		return resp.StatusCode, fmt.Sprint(v)
	}
	if code, _ := post("", ""); code != http.StatusUnauthorized {
		t.Errorf("no token: %d, want 401", code)
	}
	if code, _ := post("not-the-token", ""); code != http.StatusUnauthorized {
		t.Errorf("wrong token: %d, want 401", code)
	}
	code, body := post(apiToken, "")
	if code != http.StatusAccepted || !contains(body, "id:", "app:web", "url:http://ferry.e2e.invalid/syncs/") {
		t.Fatalf("resync: %d %s", code, body)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		cm, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "web-settings", metav1.GetOptions{})
		if err == nil && cm.Data["greeting"] == "hi" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the resync did not restore the ConfigMap: %v", err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	var _ corev1.ConfigMap
	assertAllFinal(t, forge)
}
