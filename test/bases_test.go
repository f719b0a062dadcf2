package test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferrygitops/ferry/test/forgefake"
	"github.com/ferrygitops/ferry/test/gitserver"
)

// TestPushToSharedBase: web is a kustomize overlay of a base outside its path. A push that
// changes only the base lists no file under apps/web, yet once web's first deploy showed what it
// renders from, the hook syncs web at once (the poll interval is an hour), and a push that
// changes an unrelated file still queues nothing.
func TestPushToSharedBase(t *testing.T) {
	ns := "e2e-bases"
	cs := kube(t)
	git := gitserver.New(t)
	repo := git.CreateRepo(t, "acme/platform")
	settings := func(greeting string) string {
		return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared-settings\ndata:\n  greeting: " + greeting + "\n"
	}
	first := repo.Commit(t, "main", "web on a shared base", map[string]string{
		"base/kustomization.yaml":     "resources:\n- settings.yaml\n",
		"base/settings.yaml":          settings("hello"),
		"apps/web/kustomization.yaml": "resources:\n- namespace.yaml\n- ../../base\n",
		"apps/web/namespace.yaml":     "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + ns + "\n",
		"docs/README.md":              "platform\n",
	})
	forge := forgefake.New(t, forgeToken)
	f := startFerry(t, config("github", repo.CloneURL(), forge.URL(), ns), ferryEnv, "")
	if st := waitFinal(t, forge, first, "ferry/web"); st[len(st)-1].State != "success" {
		t.Fatalf("start-up sync: %+v", st[len(st)-1])
	}

	second := repo.Commit(t, "main", "base: bonjour", map[string]string{"base/settings.yaml": settings("bonjour")})
	// The recorded inputs reach the hook handler through a watch: give it a moment.
	var code int
	var body string
	for range 50 {
		if code, body = f.send(t, "platform", githubPush(t, hookSecret, "d-base-"+second[:7], first, second, "base/settings.yaml")); code == http.StatusAccepted {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code != http.StatusAccepted || !strings.Contains(body, `"app":"web"`) {
		t.Fatalf("push to the base: %d %s; want 202 with a job for web", code, body)
	}
	if st := waitFinal(t, forge, second, "ferry/web"); st[len(st)-1].State != "success" {
		t.Fatalf("sync of the base change: %+v", st[len(st)-1])
	}
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "shared-settings", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cm.Data["greeting"] != "bonjour" {
		t.Errorf("greeting %q, want bonjour", cm.Data["greeting"])
	}

	third := repo.Commit(t, "main", "docs", map[string]string{"docs/README.md": "platform, documented\n"})
	if code, body := f.send(t, "platform", githubPush(t, hookSecret, "d-docs", second, third, "docs/README.md")); code != http.StatusOK || !strings.Contains(body, "ignored") {
		t.Errorf("push to docs: %d %s; want 200 ignored", code, body)
	}
	assertAllFinal(t, forge)
}
