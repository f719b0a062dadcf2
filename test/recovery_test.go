package test

import (
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/ferrygitops/ferry/test/forgefake"
	"github.com/ferrygitops/ferry/test/gitserver"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// configWith is config() with the repo's poll interval and the app's health timeout set.
func configWith(cloneURL, apiURL, ns, interval, timeout string) string {
	return appsConfig(cloneURL, apiURL, interval, e2eApp{name: "web", path: "apps/web", ns: ns, timeout: timeout})
}

func TestPollingFindsUnannouncedCommit(t *testing.T) {
	ns := "e2e-poll"
	git := gitserver.New(t)
	repo := git.CreateRepo(t, "acme/platform")
	first := repo.Commit(t, "main", "web: first", webApp(ns, "one"))
	forge := forgefake.New(t, forgeToken)
	startFerry(t, configWith(repo.CloneURL(), forge.URL(), ns, "2s", "60s"), ferryEnv, "")
	waitFinal(t, forge, first, "ferry/web")

	// No hook is ever sent for this commit: the poller must find it.
	second := repo.Commit(t, "main", "web: second", webApp(ns, "two"))
	st := waitFinal(t, forge, second, "ferry/web")
	if last := st[len(st)-1]; last.State != "success" {
		t.Fatalf("polled commit: %+v", last)
	}
	cm, err := kube(t).CoreV1().ConfigMaps(ns).Get(t.Context(), "web-settings", metav1.GetOptions{})
	if err != nil || cm.Data["greeting"] != "two" {
		t.Fatalf("ConfigMap after the polled commit: %v %v", cm.Data, err)
	}
	assertAllFinal(t, forge)
}

func TestHookBeforeCommit(t *testing.T) {
	ns := "e2e-early-hook"
	git := gitserver.New(t)
	repo := git.CreateRepo(t, "acme/platform")
	first := repo.Commit(t, "main", "web: first", webApp(ns, "one"))
	forge := forgefake.New(t, forgeToken)
	f := startFerry(t, config("github", repo.CloneURL(), forge.URL(), ns), ferryEnv, "")
	waitFinal(t, forge, first, "ferry/web")

	// The forge announces a commit its Git service serves only five seconds later.
	second := repo.CommitLocal(t, "main", "web: second", webApp(ns, "two"))
	if code, body := f.send(t, "platform", githubPush(t, hookSecret, "d-early", first, second, "apps/web/config.yaml")); code != http.StatusAccepted {
		t.Fatalf("push hook: %d %s", code, body)
	}
	time.Sleep(5 * time.Second)
	repo.Push(t, "main")
	st := waitFinal(t, forge, second, "ferry/web")
	if last := st[len(st)-1]; last.State != "success" {
		t.Fatalf("late commit: %+v", last)
	}
	assertAllFinal(t, forge)
}

func TestOutOfOrderDelivery(t *testing.T) {
	ns := "e2e-order"
	git := gitserver.New(t)
	repo := git.CreateRepo(t, "acme/platform")
	first := repo.Commit(t, "main", "web: first", webApp(ns, "one"))
	forge := forgefake.New(t, forgeToken)
	f := startFerry(t, config("github", repo.CloneURL(), forge.URL(), ns), ferryEnv, "")
	waitFinal(t, forge, first, "ferry/web")

	second := repo.Commit(t, "main", "web: second", webApp(ns, "two"))
	third := repo.Commit(t, "main", "web: third", webApp(ns, "three"))
	// The newer commit's hook arrives first, the older one's after it was applied.
	if code, body := f.send(t, "platform", githubPush(t, hookSecret, "d-third", second, third, "apps/web/config.yaml")); code != http.StatusAccepted {
		t.Fatalf("hook of the newer commit: %d %s", code, body)
	}
	if st := waitFinal(t, forge, third, "ferry/web"); st[len(st)-1].State != "success" {
		t.Fatalf("newer commit: %+v", st[len(st)-1])
	}
	if code, body := f.send(t, "platform", githubPush(t, hookSecret, "d-second", first, second, "apps/web/config.yaml")); code != http.StatusAccepted {
		t.Fatalf("hook of the older commit: %d %s", code, body)
	}
	st := waitFinal(t, forge, second, "ferry/web")
	last := st[len(st)-1]
	if last.State != "success" || last.Description != "included in "+third[:7] {
		t.Fatalf("older commit: %+v, want success \"included in %s\"", last, third[:7])
	}
	cm, err := kube(t).CoreV1().ConfigMaps(ns).Get(t.Context(), "web-settings", metav1.GetOptions{})
	if err != nil || cm.Data["greeting"] != "three" {
		t.Fatalf("the older commit was applied over the newer: %v %v", cm.Data, err)
	}
	assertAllFinal(t, forge)
}

// slowApp is webApp plus a Deployment that is healthy only once the test marks its pods ready.
func slowApp(ns string) map[string]string {
	files := webApp(ns, "slow")
	files["apps/web/deploy.yaml"] = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: slow
spec:
  replicas: 1
  selector: {matchLabels: {app: slow}}
  template:
    metadata: {labels: {app: slow}}
    spec:
      containers: [{name: app, image: "nginx:1.27"}]
`
	return files
}

func TestKilledMidSyncIsFinishedAfterRestart(t *testing.T) {
	ns := "e2e-crash"
	cs := kube(t)
	git := gitserver.New(t)
	repo := git.CreateRepo(t, "acme/platform")
	first := repo.Commit(t, "main", "web: first", webApp(ns, "one"))
	forge := forgefake.New(t, forgeToken)
	cfg := configWith(repo.CloneURL(), forge.URL(), ns, "1h", "5m")
	dataDir := t.TempDir()
	f := startFerry(t, cfg, ferryEnv, dataDir)
	waitFinal(t, forge, first, "ferry/web")

	second := repo.Commit(t, "main", "web: a Deployment", slowApp(ns))
	if code, body := f.send(t, "platform", githubPush(t, hookSecret, "d-crash", first, second, "apps/web/deploy.yaml")); code != http.StatusAccepted {
		t.Fatalf("push hook: %d %s", code, body)
	}
	// Wait until the sync is in its health wait: the Deployment exists, the commit is pending.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := cs.AppsV1().Deployments(ns).Get(t.Context(), "slow", metav1.GetOptions{}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the sync never applied the Deployment")
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, s := range forge.Statuses(second) {
		if s.State != "pending" {
			t.Fatalf("the sync ended before it was killed: %+v", s)
		}
	}
	if err := f.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-f.done
	f.done <- nil

	// A new process on the same store takes the job over; the test plays the kubelet.
	startFerry(t, cfg, ferryEnv, dataDir)
	stop := make(chan struct{})
	defer close(stop)
	go markPodsReady(t, ns, "app=slow", stop)
	st := waitFinal(t, forge, second, "ferry/web")
	if last := st[len(st)-1]; last.State != "success" {
		t.Fatalf("after the crash: %+v", last)
	}
	// The restart's start-up sync and the redelivered job may both report the commit; every
	// final status says the same.
	for _, s := range forge.Statuses(second) {
		if s.State != "pending" && s.State != "success" {
			t.Errorf("final status %s %q on the commit, want only success", s.State, s.Description)
		}
	}
	assertAllFinal(t, forge)
}

// markPodsReady plays the kubelet for pods matching selector until stop is closed: the apiserver
// runs no kubelet, so without it no Deployment ever becomes Available.
func markPodsReady(t *testing.T, ns, selector string, stop <-chan struct{}) {
	cs := kube(t)
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		pods, err := cs.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			continue
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			if p.Status.Phase == corev1.PodRunning {
				continue
			}
			now := metav1.Now()
			p.Status.Phase = corev1.PodRunning
			p.Status.Conditions = []corev1.PodCondition{
				{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
				{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
				{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			}
			_, _ = cs.CoreV1().Pods(ns).UpdateStatus(t.Context(), p, metav1.UpdateOptions{FieldManager: "e2e-kubelet"})
		}
	}
}
