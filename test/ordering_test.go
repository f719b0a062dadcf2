package test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/test/forgefake"
	"github.com/ferrygitops/ferry/test/gitserver"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestOutOfOrderWhileQueued delivers a newer commit's hook, then an older commit's, and the
// newer one several times over, all while an earlier sync of the app still runs, so that both
// jobs wait in the queue together: the newest commit must win whatever order the hooks came in,
// the older commit must be reported as included in it, and the duplicates must make no job.
func TestOutOfOrderWhileQueued(t *testing.T) {
	ns := "e2e-order-queued"
	cs := kube(t)
	ensureNamespace(t, cs, ns)
	git := gitserver.New(t)
	repo := git.CreateRepo(t, "acme/platform")
	first := repo.Commit(t, "main", "slow: first", gatedApp("one", false))
	forge := forgefake.New(t, forgeToken)
	f := startFerry(t, appsConfig(repo.CloneURL(), forge.URL(), "1h", e2eApp{name: "slow", path: "apps/slow", ns: ns, timeout: "3m"}), ferryEnv, "")
	if last := finalStatus(t, forge, first, "ferry/slow"); last.State != "success" {
		t.Fatalf("start-up sync: %+v", last)
	}

	// The app is busy: its sync of the second commit waits for the Pod.
	second := repo.Commit(t, "main", "slow: add the gated pod", gatedApp("two", true))
	if code, body := f.send(t, "platform", githubPush(t, hookSecret, "d-oq-2", first, second, "apps/slow/pod.yaml")); code != http.StatusAccepted {
		t.Fatalf("push hook: %d %s", code, body)
	}
	waitRecord(t, f, "slow", 90*time.Second, "running "+short7(second), func(r queue.Record) bool {
		return r.SHA == second && r.State == queue.StateRunning
	})

	third := repo.Commit(t, "main", "slow: three", gatedApp("three", true))
	fourth := repo.Commit(t, "main", "slow: four", gatedApp("four", true))
	newer := githubPush(t, hookSecret, "d-oq-4", third, fourth, "apps/slow/config.yaml")
	if code, body := f.send(t, "platform", newer); code != http.StatusAccepted {
		t.Fatalf("hook of the newest commit: %d %s", code, body)
	}
	if code, body := f.send(t, "platform", githubPush(t, hookSecret, "d-oq-3", second, third, "apps/slow/config.yaml")); code != http.StatusAccepted {
		t.Fatalf("late hook of the older commit: %d %s", code, body)
	}
	// The forge redelivers the newest hook, several times at once.
	var wg sync.WaitGroup
	codes := make([]int, 4)
	for i := range codes {
		wg.Go(func() { codes[i], _ = f.send(t, "platform", newer) })
	}
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusAccepted {
			t.Errorf("redelivery %d: %d, want 202", i+1, c)
		}
	}
	markPodReady(t, cs, ns, "gate")

	if last := finalStatus(t, forge, second, "ferry/slow"); last.State != "success" || !strings.HasPrefix(last.Description, "applied ") {
		t.Errorf("second commit: %+v, want applied", last)
	}
	if last := finalStatus(t, forge, fourth, "ferry/slow"); last.State != "success" || !strings.HasPrefix(last.Description, "applied ") {
		t.Errorf("newest commit: %+v, want applied", last)
	}
	if last := finalStatus(t, forge, third, "ferry/slow"); last.State != "success" || last.Description != "included in "+short7(fourth) {
		t.Errorf("older commit whose hook came late: %+v, want success \"included in %s\"", last, short7(fourth))
	}
	time.Sleep(2 * time.Second) // a sync made by a duplicate, were there one, would have run by now
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "slow-settings", metav1.GetOptions{})
	if err != nil || cm.Data["value"] != "four" {
		t.Errorf("ConfigMap %v %v, want the newest commit's value four", cm.Data, err)
	}
	perSHA := map[string]int{}
	recs := f.history(t, "slow")
	for _, r := range recs {
		perSHA[r.SHA]++
	}
	for _, sha := range []string{second, third, fourth} {
		if perSHA[sha] != 1 {
			t.Errorf("%d sync records for %s, want 1: %s", perSHA[sha], short7(sha), describeRecords(recs))
		}
	}
	if got := terminalStates(forge, fourth, "ferry/slow"); got["success"] != 1 || len(got) != 1 {
		t.Errorf("terminal statuses on the newest commit %v, want one success", got)
	}
	assertAllFinal(t, forge)
}
