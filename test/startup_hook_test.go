package test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/ferrygitops/ferry/test/forgefake"
	"github.com/ferrygitops/ferry/test/gitserver"
)

// gatedCommit is app "slow" at apps/slow with a Pod named gate-<n>: a sync of it waits for that
// Pod's health until the test marks it ready, so the test decides when the sync ends.
func gatedCommit(n int) map[string]string {
	return map[string]string{
		"apps/slow/config.yaml": fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: slow-settings\ndata:\n  value: \"%d\"\n", n),
		"apps/slow/pod.yaml": fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: gate-%d
spec:
  automountServiceAccountToken: false
  containers:
    - name: app
      image: registry.e2e.invalid/gate:1
`, n),
	}
}

// TestHookForHeadDuringStartupSync: ferry starts and syncs the branch head, and the push hook of
// that same head arrives before, while or after the start-up sync runs. Whatever the order, the
// hook's job, which posted pending, ends with a final status on the commit. Each order is played
// twice, on a fresh process over the same data directory, with the start-up sync held in its
// health wait by a Pod only the test makes ready.
func TestHookForHeadDuringStartupSync(t *testing.T) {
	ns := "e2e-startup-hook"
	cs := kube(t)
	ensureNamespace(t, cs, ns)
	git := gitserver.New(t)
	repo := git.CreateRepo(t, "acme/platform")
	forge := forgefake.New(t, forgeToken)
	cfg := appsConfig(repo.CloneURL(), forge.URL(), "1h", e2eApp{name: "slow", path: "apps/slow", ns: ns, timeout: "3m"})
	dataDir := t.TempDir()

	prev := repo.Commit(t, "main", "slow: 0", gatedCommit(0))
	orders := []string{"while the start-up sync waits", "before the start-up sync runs", "after the start-up sync ended"}
	n := 0
	for range 2 {
		for _, order := range orders {
			n++
			head := repo.Commit(t, "main", fmt.Sprintf("slow: %d", n), gatedCommit(n))
			pod := fmt.Sprintf("gate-%d", n)
			f := startFerry(t, cfg, ferryEnv, dataDir)
			hook := func() {
				t.Helper()
				if code, body := f.send(t, "platform", githubPush(t, hookSecret, fmt.Sprintf("d-startup-%d", n), prev, head, "apps/slow/pod.yaml")); code != http.StatusAccepted {
					t.Fatalf("%s: push hook: %d %s", order, code, body)
				}
			}
			switch order {
			case orders[0]:
				waitPod(t, cs, ns, pod)
				hook()
				markPodReady(t, cs, ns, pod)
			case orders[1]:
				hook()
				waitPod(t, cs, ns, pod)
				markPodReady(t, cs, ns, pod)
			case orders[2]:
				waitPod(t, cs, ns, pod)
				markPodReady(t, cs, ns, pod)
				if last := finalStatus(t, forge, head, "ferry/slow"); last.State != "success" {
					t.Fatalf("%s: start-up sync: %+v", order, last)
				}
				hook()
			}
			assertAllFinal(t, forge)
			if last := finalStatus(t, forge, head, "ferry/slow"); last.State != "success" {
				t.Fatalf("%s: the head's last status %+v, want success", order, last)
			}
			f.Stop(t)
			prev = head
		}
	}
}
