package apply

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
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

// deploymentList is a LIST response as the apiserver sends it: items without apiVersion and kind,
// managed fields, and a continue token.
const deploymentList = `{"kind":"DeploymentList","apiVersion":"apps/v1","metadata":{"resourceVersion":"812","continue":"eyJ2IjoibWV0YS5rOHMuaW8vdjEifQ"},
"items":[
 {"metadata":{"name":"web","namespace":"shop","uid":"5d0e","resourceVersion":"801","generation":3,"labels":{"ferry.dev/app":"shop"},
   "managedFields":[{"manager":"ferry","operation":"Apply","apiVersion":"apps/v1","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:replicas":{}}}}]},
  "spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"nginx:1.27"}]}},
   "strategy":{"type":"RollingUpdate","rollingUpdate":{"maxUnavailable":"25%","maxSurge":"25%"}},"progressDeadlineSeconds":600},
  "status":{"observedGeneration":3,"replicas":2,"updatedReplicas":2,"readyReplicas":2,"availableReplicas":2,
   "conditions":[{"type":"Available","status":"True","reason":"MinimumReplicasAvailable"},{"type":"Progressing","status":"True","reason":"NewReplicaSetAvailable"}]}},
 {"metadata":{"name":"api","namespace":"shop","generation":5,"labels":{"ferry.dev/app":"shop"}},
  "spec":{"replicas":3,"selector":{"matchLabels":{"app":"api"}},"template":{"metadata":{"labels":{"app":"api"}},"spec":{"containers":[{"name":"api","image":"api:2","resources":{"limits":{"cpu":0.5}}}]}}},
  "status":{"observedGeneration":4,"replicas":3,"updatedReplicas":1,"readyReplicas":3,"availableReplicas":3}},
 {"metadata":{"name":"old","namespace":"shop","generation":1,"deletionTimestamp":"2026-11-23T10:00:00Z","labels":{"ferry.dev/app":"shop"}},
  "spec":{"replicas":1},"status":{"observedGeneration":1,"replicas":1,"readyReplicas":1,"availableReplicas":1,"updatedReplicas":1}}
]}`

// TestDecodeLeanList checks that the lean decoding health polls with gives kstatus the same
// verdicts as decoding the whole list into unstructured objects, with integers kept as int64.
func TestDecodeLeanList(t *testing.T) {
	got, cont, err := decodeLeanList([]byte(deploymentList), "apps/v1", "Deployment")
	if err != nil {
		t.Fatal(err)
	}
	if cont != "eyJ2IjoibWV0YS5rOHMuaW8vdjEifQ" {
		t.Errorf("continue token %q", cont)
	}
	var full unstructured.UnstructuredList
	if err := full.UnmarshalJSON([]byte(deploymentList)); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(full.Items) {
		t.Fatalf("decoded %d items, want %d", len(got), len(full.Items))
	}
	want := []status.Status{status.CurrentStatus, status.InProgressStatus, status.TerminatingStatus}
	for i, u := range got {
		f := &full.Items[i]
		if u.GetName() != f.GetName() || u.GetNamespace() != f.GetNamespace() || u.GetKind() != "Deployment" || u.GetAPIVersion() != "apps/v1" {
			t.Errorf("item %d is %s %s/%s (%s), want Deployment %s/%s (apps/v1)", i, u.GetKind(), u.GetNamespace(), u.GetName(), u.GetAPIVersion(), f.GetNamespace(), f.GetName())
		}
		lean, err := status.Compute(u)
		if err != nil {
			t.Fatalf("kstatus on lean %s: %v", u.GetName(), err)
		}
		whole, err := status.Compute(f)
		if err != nil {
			t.Fatalf("kstatus on whole %s: %v", f.GetName(), err)
		}
		if lean.Status != whole.Status || lean.Message != whole.Message {
			t.Errorf("%s: lean decode gives %s (%q), whole decode %s (%q)", u.GetName(), lean.Status, lean.Message, whole.Status, whole.Message)
		}
		if lean.Status != want[i] {
			t.Errorf("%s: status %s, want %s", u.GetName(), lean.Status, want[i])
		}
	}
	if r, ok := got[0].Object["spec"].(map[string]any)["replicas"].(int64); !ok || r != 2 {
		t.Errorf("spec.replicas decoded as %#v, want int64 2", got[0].Object["spec"].(map[string]any)["replicas"])
	}
	cpu := got[1].Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)["resources"].(map[string]any)["limits"].(map[string]any)["cpu"]
	if cpu != 0.5 {
		t.Errorf("a fractional number decoded as %#v, want float64 0.5", cpu)
	}
	if _, _, err := decodeLeanList([]byte(`{"items":[{"metadata":{"name":1}}]}`), "apps/v1", "Deployment"); err == nil {
		t.Error("a malformed list decoded without error")
	}
}

// TestDecodeLeanCRDWithoutSpec checks that a CRD is read without its spec (its OpenAPI schema,
// megabytes for large operators) and that kstatus still reads its establishment from the status.
func TestDecodeLeanCRDWithoutSpec(t *testing.T) {
	const crdJSON = `{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition",
"metadata":{"name":"widgets.example.com","uid":"7f1c","resourceVersion":"90","generation":1,
  "managedFields":[{"manager":"ferry","operation":"Apply","fieldsV1":{"f:spec":{"f:versions":{}}}}]},
"spec":{"group":"example.com","scope":"Namespaced","names":{"kind":"Widget","plural":"widgets"},
  "versions":[{"name":"v1","served":true,"storage":true,"schema":{"openAPIV3Schema":{"type":"object","properties":{"spec":{"type":"object","maxProperties":3}}}}}]},
"status":{"acceptedNames":{"kind":"Widget","plural":"widgets"},"storedVersions":["v1"],
  "conditions":[{"type":"NamesAccepted","status":"True","reason":"NoConflicts"},{"type":"Established","status":"True","reason":"InitialNamesAccepted"}]}}`
	u, err := decodeLeanObject([]byte(crdJSON))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := u.Object["spec"]; ok {
		t.Error("the CRD's spec was decoded")
	}
	if u.GetName() != "widgets.example.com" || u.GetUID() != "7f1c" || u.GetGeneration() != 1 || u.GetResourceVersion() != "90" {
		t.Errorf("metadata read as %v", u.Object["metadata"])
	}
	r, err := status.Compute(u)
	if err != nil || r.Status != status.CurrentStatus {
		t.Errorf("kstatus on the lean CRD: %v, %v; want Current", r, err)
	}
	// The same bytes as another kind keep their spec: only specless kinds drop it.
	other := strings.Replace(crdJSON, `"kind":"CustomResourceDefinition"`, `"kind":"Widget"`, 1)
	u, err = decodeLeanObject([]byte(other))
	if err != nil {
		t.Fatal(err)
	}
	if g, _, _ := unstructured.NestedString(u.Object, "spec", "group"); g != "example.com" {
		t.Errorf("spec of a kind that is not specless: %v", u.Object["spec"])
	}
	mp, _, _ := unstructured.NestedSlice(u.Object, "spec", "versions")
	if n, _, _ := unstructured.NestedInt64(mp[0].(map[string]any), "schema", "openAPIV3Schema", "properties", "spec", "maxProperties"); n != 3 {
		t.Errorf("an integer in a decoded spec: %#v, want int64 3", mp[0])
	}
}
