package test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/test/forgefake"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Helpers shared by the fault, ordering and scale tests.

// e2eApp is one app of a test config.
type e2eApp struct {
	name, path, ns string
	dependsOn      []string
	// timeout is the app's health wait, e.g. "3m"; empty means 60s.
	timeout  string
	selfHeal bool
}

// appsConfig is a config with one GitHub repository "platform" polled every interval and apps.
func appsConfig(cloneURL, apiURL, interval string, apps ...e2eApp) string {
	return forgeConfig("github", cloneURL, apiURL, interval, apps...)
}

// forgeConfig is a config with one repository "platform" of provider, polled every interval,
// and apps.
func forgeConfig(provider, cloneURL, apiURL, interval string, apps ...e2eApp) string {
	var b strings.Builder
	fmt.Fprintf(&b, `externalURL: http://ferry.e2e.invalid
repos:
  - name: platform
    url: %s
    provider: %s
    branch: main
    webhookSecret: {env: HOOK_SECRET}
    token: {env: FORGE_TOKEN}
    apiURL: %s
    interval: %s
apps:
`, cloneURL, provider, apiURL, interval)
	for _, a := range apps {
		timeout := a.timeout
		if timeout == "" {
			timeout = "60s"
		}
		fmt.Fprintf(&b, "  - name: %s\n    repo: platform\n    path: %s\n    namespace: %s\n    prune: true\n    timeout: %s\n", a.name, a.path, a.ns, timeout)
		if len(a.dependsOn) > 0 {
			fmt.Fprintf(&b, "    dependsOn: [%s]\n", strings.Join(a.dependsOn, ", "))
		}
		if a.selfHeal {
			b.WriteString("    selfHeal: true\n")
		}
	}
	b.WriteString("apiTokens: [{env: API_TOKEN}]\n")
	return b.String()
}

// gatedApp is app "slow" at apps/slow: a ConfigMap holding value and, with gate, a Pod named gate.
// Nothing runs pods here (no scheduler, no kubelet), so the Pod stays Pending and ferry's sync
// waits for its health until the test marks it ready with markPodReady: a sync that lasts as long
// as the test wants, for real.
func gatedApp(value string, gate bool) map[string]string {
	files := map[string]string{
		"apps/slow/config.yaml": fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: slow-settings\ndata:\n  value: %q\n", value),
	}
	if gate {
		files["apps/slow/pod.yaml"] = `apiVersion: v1
kind: Pod
metadata:
  name: gate
spec:
  automountServiceAccountToken: false
  containers:
    - name: app
      image: registry.e2e.invalid/gate:1
`
	}
	return files
}

// ensureNamespace creates ns (if needed) and waits for its default ServiceAccount, without which
// the apiserver's admission refuses Pods.
func ensureNamespace(t *testing.T, cs *kubernetes.Clientset, ns string) {
	t.Helper()
	_, err := cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create namespace %s: %v", ns, err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err := cs.CoreV1().ServiceAccounts(ns).Get(t.Context(), "default", metav1.GetOptions{})
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("namespace %s has no default ServiceAccount after 60s: %v", ns, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitPod waits until the Pod exists: ferry applied it and is waiting for its health.
func waitPod(t *testing.T, cs *kubernetes.Clientset, ns, name string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		_, err := cs.CoreV1().Pods(ns).Get(t.Context(), name, metav1.GetOptions{})
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Pod %s/%s not applied after 90s: %v", ns, name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// markPodReady writes the status a kubelet would write for a running, ready Pod.
func markPodReady(t *testing.T, cs *kubernetes.Clientset, ns, name string) {
	t.Helper()
	for attempt := 0; ; attempt++ {
		pod, err := cs.CoreV1().Pods(ns).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("get Pod %s/%s: %v", ns, name, err)
		}
		now := metav1.Now()
		pod.Status.Phase = corev1.PodRunning
		pod.Status.Conditions = nil
		for _, c := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
			pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{Type: c, Status: corev1.ConditionTrue, LastTransitionTime: now})
		}
		_, err = cs.CoreV1().Pods(ns).UpdateStatus(t.Context(), pod, metav1.UpdateOptions{})
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) || attempt >= 10 {
			t.Fatalf("mark Pod %s/%s ready: %v", ns, name, err)
		}
	}
}

// kill ends the ferry process with SIGKILL, as a crash or an OOM kill would: no shutdown runs.
func (f *ferry) kill(t *testing.T) {
	t.Helper()
	_ = f.cmd.Process.Kill()
	select {
	case err := <-f.done:
		f.done <- err // Stop, at cleanup, then sees a finished process.
	case <-time.After(30 * time.Second):
		t.Fatal("ferry did not exit within 30s of SIGKILL")
	}
}

// waitRecord polls f's API until one of app's sync records satisfies pred, and returns it.
func waitRecord(t *testing.T, f *ferry, app string, within time.Duration, what string, pred func(queue.Record) bool) queue.Record {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var v struct {
			History []queue.Record `json:"history"`
		}
		if code := f.getJSON(t, "/api/v1/apps/"+app, &v); code == http.StatusOK {
			for _, r := range v.History {
				if pred(r) {
					return r
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no sync record of %s %s after %s; history: %s", app, what, within, describeRecords(v.History))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// describeRecords lists records briefly for failure messages.
func describeRecords(recs []queue.Record) string {
	var parts []string
	for _, r := range recs {
		parts = append(parts, fmt.Sprintf("%s %s %s attempt=%d worker=%s %q", r.ID, short7(r.SHA), r.State, r.Attempts, r.Worker, r.Message))
	}
	return "[" + strings.Join(parts, "; ") + "]"
}

func short7(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}

// finalStatus waits for a terminal status of context on sha and returns the latest terminal one
// (a late "queued" notice may still land after it; it is posted again after that).
func finalStatus(t *testing.T, forge *forgefake.Forge, sha, context string) forgefake.Status {
	t.Helper()
	st := waitFinal(t, forge, sha, context)
	for i := len(st) - 1; i > 0; i-- {
		if st[i].State != "pending" && st[i].State != "running" {
			return st[i]
		}
	}
	return st[0]
}

// terminalStates counts the statuses of context on sha that are not pending, by state.
func terminalStates(forge *forgefake.Forge, sha, context string) map[string]int {
	out := map[string]int{}
	for _, s := range forge.Statuses(sha) {
		if s.Context == context && s.State != "pending" && s.State != "running" {
			out[s.State]++
		}
	}
	return out
}

// overlaps reports the first pair of an app's syncs whose run times overlap, judged from the
// records' start and finish times; records that never started (skipped) do not count.
func overlaps(recs []queue.Record) (string, bool) {
	var ran []queue.Record
	for _, r := range recs {
		if r.StartedAt != nil && r.FinishedAt != nil && r.Kind == queue.KindDeploy {
			ran = append(ran, r)
		}
	}
	slices.SortFunc(ran, func(a, b queue.Record) int { return a.StartedAt.Compare(*b.StartedAt) })
	for i := 1; i < len(ran); i++ {
		prev, cur := ran[i-1], ran[i]
		if cur.StartedAt.Before(*prev.FinishedAt) {
			return fmt.Sprintf("sync %s (%s, %s, %s–%s) overlaps sync %s (%s, %s, %s–%s)",
				prev.ID, short7(prev.SHA), prev.Worker, prev.StartedAt.Format(time.StampMilli), prev.FinishedAt.Format(time.StampMilli),
				cur.ID, short7(cur.SHA), cur.Worker, cur.StartedAt.Format(time.StampMilli), cur.FinishedAt.Format(time.StampMilli)), true
		}
	}
	return "", false
}

// readyz returns the status code of f's readiness endpoint, or 0 when it does not answer.
func (f *ferry) readyz() int {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(f.URL + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
