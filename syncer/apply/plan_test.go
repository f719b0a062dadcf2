package apply

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferrygitops/ferry/syncer/render"
)

// planAnswer is everything a plan tells whoever opened the pull request.
type planAnswer struct {
	Summary, Text, Err          string
	Created, Changed, Unchanged int
}

func (v *env) planAnswer(t *testing.T, app App, objs ...render.Object) planAnswer {
	t.Helper()
	p, err := v.e.Plan(t.Context(), app, objs)
	if err != nil {
		return planAnswer{Err: err.Error()}
	}
	return planAnswer{Summary: p.Summary(), Text: p.Text(), Created: p.Created, Changed: p.Changed, Unchanged: p.Unchanged}
}

// TestPlanIsNoExistenceOracle: a preview answers exactly the same for an object outside the app
// whether it is absent, exists unmanaged, or belongs to another app, for valid objects and for
// ones that are only valid merged into an existing object; the deploy still refuses to take it
// over, and the app's own objects are still compared field by field.
func TestPlanIsNoExistenceOracle(t *testing.T) {
	v := newEnv(t)
	app := App{Name: "oracle", Namespace: "t-oracle", Prune: true}
	v.mustSync(t, app, "r1", namespace(t, "t-oracle"), configMap(t, "", "own", "1"))
	other := "t-oracle-victims"
	if _, err := v.kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: other}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.kube.CoreV1().Namespaces().Delete(context.Background(), other, metav1.DeleteOptions{}) })

	secret := obj(t, "apps/oracle/probe.yaml", fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata:\n  name: some-secret\n  namespace: %s\nstringData:\n  k: guess\n", other))
	// Without a selector and template, a Deployment is only valid merged into an existing one.
	partial := obj(t, "apps/oracle/partial.yaml", fmt.Sprintf("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: probe\n  namespace: %s\nspec:\n  replicas: 2\n", other))
	objs := objsOf(namespace(t, "t-oracle"), configMap(t, "", "own", "2"), secret)

	absent := v.planAnswer(t, app, objs...)
	if absent.Err != "" || absent.Created != 1 || absent.Changed != 1 {
		t.Fatalf("plan with an absent Secret: %+v, want 1 created, 1 changed", absent)
	}
	absentPartial := v.planAnswer(t, app, append(objs[:2:2], partial)...)
	if absentPartial.Err == "" {
		t.Fatalf("a Deployment without selector planned as new: %+v, want the apiserver's refusal", absentPartial)
	}

	// The same names now exist, made by someone else.
	if _, err := v.kube.CoreV1().Secrets(other).Create(t.Context(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "some-secret", Namespace: other},
		StringData: map[string]string{"k": "real"}}, metav1.CreateOptions{FieldManager: "someone"}); err != nil {
		t.Fatal(err)
	}
	two := int32(1)
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: other}, Spec: appsv1.DeploymentSpec{
		Replicas: &two,
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "probe"}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "probe"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.invalid/probe:1"}}}}}}
	if _, err := v.kube.AppsV1().Deployments(other).Create(t.Context(), dep, metav1.CreateOptions{FieldManager: "someone"}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(absent, v.planAnswer(t, app, objs...)); diff != "" {
		t.Errorf("an unmanaged Secret changes the plan (-absent +exists):\n%s", diff)
	}
	if diff := cmp.Diff(absentPartial, v.planAnswer(t, app, append(objs[:2:2], partial)...)); diff != "" {
		t.Errorf("an unmanaged Deployment changes the plan (-absent +exists):\n%s", diff)
	}

	// Owned by another ferry app: still the same answer.
	s, err := v.kube.CoreV1().Secrets(other).Get(t.Context(), "some-secret", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Labels = map[string]string{LabelManagedBy: ManagedByValue, LabelApp: "oracle-other"}
	if _, err := v.kube.CoreV1().Secrets(other).Update(t.Context(), s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(absent, v.planAnswer(t, app, objs...)); diff != "" {
		t.Errorf("another app's Secret changes the plan (-absent +exists):\n%s", diff)
	}

	// The deploy still refuses to write what the app does not own.
	_, err = v.sync(t, app, "r2", objs...)
	var ce *ConflictError
	if !errors.As(err, &ce) || ce.Object != "Secret "+other+"/some-secret" {
		t.Fatalf("deploy of a Secret owned by another app: %v, want a ConflictError", err)
	}
	got, err := v.kube.CoreV1().Secrets(other).Get(t.Context(), "some-secret", metav1.GetOptions{})
	if err != nil || string(got.Data["k"]) != "real" {
		t.Errorf("the Secret was written: %v %v", err, got.Data)
	}

	// The app's own objects are still compared with the cluster.
	p, err := v.e.Plan(t.Context(), app, objsOf(namespace(t, "t-oracle"), configMap(t, "", "own", "3")))
	if err != nil {
		t.Fatal(err)
	}
	want := "~ ConfigMap t-oracle/own  (cm/own.yaml)  change\n    ~ /data/value: \"2\" → \"3\"\n= Namespace t-oracle  (ns/t-oracle.yaml)  unchanged\n"
	if diff := cmp.Diff(want, p.Text()); diff != "" {
		t.Errorf("plan of the app's own objects (-want +got):\n%s", diff)
	}
}
