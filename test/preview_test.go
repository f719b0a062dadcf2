package test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/test/forgefake"
	"github.com/ferrygitops/ferry/test/gitserver"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// githubPR is a signed GitHub pull_request delivery for PR number at head over base.
func githubPR(t *testing.T, delivery string, number int, head, base string) hook {
	body := payload(t, "github/pull_request.json", func(m map[string]any) {
		m["action"], m["number"] = "synchronize", number
		pr := m["pull_request"].(map[string]any)
		pr["number"] = number
		pr["head"].(map[string]any)["sha"] = head
		b := pr["base"].(map[string]any)
		b["ref"], b["sha"] = "main", base
	})
	mac := hmac.New(sha256.New, []byte(hookSecret))
	mac.Write(body)
	return hook{body: body, headers: map[string]string{
		"X-GitHub-Event":      "pull_request",
		"X-GitHub-Delivery":   delivery,
		"X-Hub-Signature-256": "sha256=" + hex.EncodeToString(mac.Sum(nil)),
	}}
}

func previewApp(ns string, replicas int, extra bool) map[string]string {
	files := map[string]string{
		"apps/web/ns.yaml": fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n", ns),
		"apps/web/deploy.yaml": fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: %d
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "nginx:1.27"}]
`, replicas),
		"apps/web/keep.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: keep\ndata:\n  a: \"1\"\n",
	}
	if extra {
		files["apps/web/extra.yaml"] = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\ndata:\n  b: \"2\"\n"
	}
	return files
}

func TestPullRequestPreview(t *testing.T) {
	ns := "e2e-preview"
	cs := kube(t)
	git := gitserver.New(t)
	repo := git.CreateRepo(t, "acme/platform")
	base := repo.Commit(t, "main", "web: base", previewApp(ns, 0, true))
	forge := forgefake.New(t, forgeToken)
	f := startFerry(t, config("github", repo.CloneURL(), forge.URL(), ns), ferryEnv, "")
	if st := waitFinal(t, forge, base, "ferry/web"); st[len(st)-1].State != "success" {
		t.Fatalf("base sync: %+v", st[len(st)-1])
	}

	// The pull request scales the Deployment and deletes a ConfigMap.
	repo.Commit(t, "feature", "web: scale, drop extra", previewApp(ns, 3, false))
	head := repo.Remove(t, "feature", "web: drop extra", "apps/web/extra.yaml")
	repo.PushRef(t, "refs/pull/7/head", head)
	if code, body := f.send(t, "platform", githubPR(t, "d-pr-7", 7, head, base)); code != http.StatusAccepted {
		t.Fatalf("pull_request hook: %d %s", code, body)
	}
	st := waitFinal(t, forge, head, "ferry/web/preview")
	last := st[len(st)-1]
	if last.State != "success" || last.Description != "1 changed, 0 created, 1 pruned" {
		t.Fatalf("preview status %+v, want success \"1 changed, 0 created, 1 pruned\"", last)
	}
	id := last.TargetURL[strings.LastIndex(last.TargetURL, "/")+1:]
	var rec queue.Record
	if code := f.getJSON(t, "/api/v1/syncs/"+id, &rec); code != http.StatusOK {
		t.Fatalf("preview record: %d", code)
	}
	if !contains(rec.Diff, "~ Deployment "+ns+"/web", "/spec/replicas: 0 → 3", "- ConfigMap "+ns+"/extra", "= ConfigMap "+ns+"/keep") {
		t.Errorf("preview diff does not say what the merge does:\n%s", rec.Diff)
	}
	resp, err := http.Get(f.URL + "/syncs/" + id)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("preview page: %d", resp.StatusCode)
	}
	// Nothing was written: the Deployment keeps its replicas and the ConfigMap is still there.
	dep, err := cs.AppsV1().Deployments(ns).Get(t.Context(), "web", metav1.GetOptions{})
	if err != nil || *dep.Spec.Replicas != 0 {
		t.Errorf("the preview changed the Deployment: %v %v", err, dep.Spec.Replicas)
	}
	if _, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "extra", metav1.GetOptions{}); err != nil {
		t.Errorf("the preview pruned a ConfigMap: %v", err)
	}
	if got := forge.Statuses(head); len(got) > 0 {
		for _, s := range got {
			if s.Context == "ferry/web" {
				t.Errorf("a pull request head got a deploy status: %+v", s)
			}
		}
	}

	// A pull request with an object the apiserver rejects fails, naming it.
	bad := previewApp(ns, 1, true)
	bad["apps/web/deploy.yaml"] = strings.Replace(bad["apps/web/deploy.yaml"], "replicas: 1", "replicas: -4", 1)
	badHead := repo.Commit(t, "broken", "web: negative replicas", bad)
	repo.PushRef(t, "refs/pull/8/head", badHead)
	if code, body := f.send(t, "platform", githubPR(t, "d-pr-8", 8, badHead, base)); code != http.StatusAccepted {
		t.Fatalf("pull_request hook: %d %s", code, body)
	}
	st = waitFinal(t, forge, badHead, "ferry/web/preview")
	if last := st[len(st)-1]; last.State != "failure" || !contains(last.Description, "Deployment", "web", "replicas") {
		t.Fatalf("invalid pull request: %+v, want failure naming the Deployment", last)
	}
	if dep, err := cs.AppsV1().Deployments(ns).Get(t.Context(), "web", metav1.GetOptions{}); err != nil || *dep.Spec.Replicas != 0 {
		t.Errorf("the failed preview changed the Deployment")
	}
	assertAllFinal(t, forge)
}
