package apply

import (
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestSyncHealthReady: the shared cluster runs the controller manager but no kubelet, so the test
// plays the kubelet: it marks the Deployment's pods Ready, and the real ReplicaSet and Deployment
// controllers then write the Deployment's status (observedGeneration, ready/available/updated
// replicas, Available=True) that kstatus needs.
func TestSyncHealthReady(t *testing.T) {
	v := newEnv(t)
	app := App{Name: "healthy", Namespace: "t-healthy", Prune: true, Timeout: 90 * time.Second}
	type outcome struct {
		res *Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := v.e.Sync(t.Context(), app, "r1", objsOf(namespace(t, "t-healthy"), deployment(t, "web", 2)))
		done <- outcome{res, err}
	}()
	deadline := time.After(2 * time.Minute)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	marked := map[string]bool{}
	for {
		select {
		case o := <-done:
			if o.err != nil {
				t.Fatalf("sync: %v", o.err)
			}
			if len(marked) < 2 {
				t.Errorf("sync succeeded after only %d pods were made ready", len(marked))
			}
			if o.res.Durations.Health <= 0 {
				t.Error("no time spent waiting for health")
			}
			d, err := v.kube.AppsV1().Deployments("t-healthy").Get(t.Context(), "web", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if d.Status.AvailableReplicas != 2 {
				t.Errorf("sync returned with %d available replicas", d.Status.AvailableReplicas)
			}
			return
		case <-deadline:
			t.Fatal("sync did not return")
		case <-tick.C:
		}
		pods, err := v.kube.CoreV1().Pods("t-healthy").List(t.Context(), metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			t.Fatal(err)
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			if marked[p.Name] {
				continue
			}
			now := metav1.Now()
			p.Status.Phase = corev1.PodRunning
			p.Status.Conditions = []corev1.PodCondition{
				{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
				{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
				{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			}
			if _, err := v.kube.CoreV1().Pods("t-healthy").UpdateStatus(t.Context(), p, metav1.UpdateOptions{FieldManager: "test-kubelet"}); err != nil {
				t.Logf("mark pod %s ready: %v", p.Name, err)
				continue
			}
			marked[p.Name] = true
		}
	}
}

func TestSyncHealthTimeout(t *testing.T) {
	v := newEnv(t)
	app := App{Name: "unhealthy", Namespace: "t-unhealthy", Prune: true, Timeout: 2 * time.Second}
	start := time.Now()
	_, err := v.sync(t, app, "r1", namespace(t, "t-unhealthy"), configMap(t, "", "cfg", "1"), deployment(t, "stuck", 1))
	var ae *Error
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v, want *Error", err)
	}
	if ae.Stage != StageHealth || ae.Object != "Deployment t-unhealthy/stuck" || ae.File != "deploy/stuck.yaml" {
		t.Errorf("error = %+v", ae)
	}
	if !strings.HasPrefix(err.Error(), "health: Deployment t-unhealthy/stuck (deploy/stuck.yaml): not ready after 2s: InProgress") {
		t.Errorf("message = %q", err)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("timeout of 2s took %s", el)
	}
	// The objects were applied and recorded even though they are not healthy.
	v.c.reset()
	_, _ = v.sync(t, app, "r1", namespace(t, "t-unhealthy"), configMap(t, "", "cfg", "1"), deployment(t, "stuck", 1))
	if got := v.c.count("PATCH", ""); got != 0 {
		t.Errorf("re-sync of an unhealthy app re-applied %d objects", got)
	}
}
