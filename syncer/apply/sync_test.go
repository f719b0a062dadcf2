package apply

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferrygitops/ferry/syncer/render"
)

// assertOnlyReads fails if the engine sent any write, or any GET of a single object other than
// the inventory: an unchanged sync must cost only the inventory read and bulk LISTs.
func assertOnlyReads(t *testing.T, c *counter, app string) {
	t.Helper()
	for _, r := range c.snapshot() {
		switch {
		case r.method != "GET":
			t.Errorf("unchanged sync sent %s %s", r.method, r.path)
		case strings.HasSuffix(r.path, "/configmaps/"+inventoryName(app)):
			// the one inventory read
		case r.path == "/api" || r.path == "/apis":
			// discovery, refreshed once after CRDs were applied (aggregated: two requests)
		case !strings.Contains(r.query, "labelSelector="):
			t.Errorf("unchanged sync sent a GET that is not a LIST by label: %s?%s", r.path, r.query)
		}
	}
}

func TestSyncCreateThenUnchanged(t *testing.T) {
	v := newEnv(t)
	app := App{Name: "create", Namespace: "t-create", Prune: true}
	objs := []render.Object{namespace(t, "t-create")}
	for i := range 5 {
		objs = append(objs, configMap(t, "", fmt.Sprintf("cm-%d", i), "v1"))
	}
	objs = append(objs, obj(t, "svc.yaml", "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports:\n  - port: 80\n"))

	v.c.reset()
	res := v.mustSync(t, app, "rev1", objs...)
	if res.Created != 7 || res.Configured != 0 || res.Unchanged != 0 {
		t.Errorf("first sync: created/configured/unchanged = %d/%d/%d, want 7/0/0", res.Created, res.Configured, res.Unchanged)
	}
	if got := v.c.count("PATCH", ""); got != 7 {
		t.Errorf("first sync sent %d PATCH, want one per object (7)", got)
	}
	cm := v.get(t, "v1", "configmaps", "t-create", "cm-0")
	if cm == nil {
		t.Fatal("cm-0 not created in the app namespace")
	}
	if diff := cmp.Diff(map[string]string{LabelManagedBy: ManagedByValue, LabelApp: "create"}, cm.GetLabels()); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	ns := v.get(t, "v1", "namespaces", "", "t-create")
	if ns == nil || ns.GetLabels()[LabelApp] != "create" {
		t.Errorf("namespace not created with ferry's label: %v", ns)
	}

	v.c.reset()
	res = v.mustSync(t, app, "rev1", objs...)
	if res.Unchanged != 7 || res.Created+res.Configured+res.Pruned != 0 {
		t.Errorf("re-sync: %+v, want 7 unchanged", res)
	}
	assertOnlyReads(t, v.c, app.Name)
	t.Logf("unchanged re-sync of 7 objects: %d requests", len(v.c.snapshot()))

	// A new revision with the same objects writes only the inventory's revision.
	v.c.reset()
	v.mustSync(t, app, "rev2", objs...)
	if got := v.c.count("PATCH", ""); got != 0 {
		t.Errorf("new revision with unchanged objects sent %d PATCH", got)
	}
	if got := v.c.count("PUT", "/configmaps/"+inventoryName(app.Name)); got != 1 {
		t.Errorf("inventory written %d times for a new revision, want 1", got)
	}
}

func TestSyncChangeAndDrift(t *testing.T) {
	v := newEnv(t)
	app := App{Name: "drift", Namespace: "t-drift", Prune: true}
	objs := []render.Object{namespace(t, "t-drift"), configMap(t, "", "a", "1"), configMap(t, "", "b", "1"), configMap(t, "", "c", "1")}
	v.mustSync(t, app, "r1", objs...)

	// A change in Git re-applies only that object.
	objs[2] = configMap(t, "", "b", "2")
	v.c.reset()
	res := v.mustSync(t, app, "r2", objs...)
	if got := v.c.count("PATCH", ""); got != 1 || v.c.count("PATCH", "/configmaps/b") != 1 {
		t.Errorf("change of b sent %d PATCH (%v), want exactly one for b", got, v.c.snapshot())
	}
	if res.Configured != 1 || res.Unchanged != 3 {
		t.Errorf("result %+v, want 1 configured, 3 unchanged", res)
	}
	if got := v.get(t, "v1", "configmaps", "t-drift", "b").Object["data"]; !cmp.Equal(got, map[string]any{"value": "2"}) {
		t.Errorf("b data = %v", got)
	}

	// A hand edit (drift) is detected from the bulk LIST and repaired.
	cm, err := v.kube.CoreV1().ConfigMaps("t-drift").Get(t.Context(), "c", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["value"] = "hand-edited"
	if _, err := v.kube.CoreV1().ConfigMaps("t-drift").Update(t.Context(), cm, metav1.UpdateOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	v.c.reset()
	v.mustSync(t, app, "r2", objs...)
	if got := v.c.count("PATCH", ""); got != 1 || v.c.count("PATCH", "/configmaps/c") != 1 {
		t.Errorf("drift repair sent %d PATCH, want exactly one for c", got)
	}
	if got := v.get(t, "v1", "configmaps", "t-drift", "c").Object["data"]; !cmp.Equal(got, map[string]any{"value": "1"}) {
		t.Errorf("drift not repaired: c data = %v", got)
	}

	// Removing ferry's label by hand is drift too: ferry recognises its object by UID and repairs it.
	cm, err = v.kube.CoreV1().ConfigMaps("t-drift").Get(t.Context(), "a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	delete(cm.Labels, LabelApp)
	if _, err := v.kube.CoreV1().ConfigMaps("t-drift").Update(t.Context(), cm, metav1.UpdateOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	v.mustSync(t, app, "r2", objs...)
	if got := v.get(t, "v1", "configmaps", "t-drift", "a").GetLabels()[LabelApp]; got != "drift" {
		t.Errorf("label not restored: %q", got)
	}

	// And after repairs, nothing more to do.
	v.c.reset()
	v.mustSync(t, app, "r2", objs...)
	assertOnlyReads(t, v.c, app.Name)
}

func TestSyncDeploymentDrift(t *testing.T) {
	v := newEnv(t)
	app := App{Name: "deploydrift", Namespace: "t-deploydrift", Prune: true, Timeout: time.Second}
	objs := []render.Object{namespace(t, "t-deploydrift"), deployment(t, "web", 0)}
	v.mustSync(t, app, "r1", objs...)
	// The controller manager writes the Deployment's status; that is not drift.
	time.Sleep(500 * time.Millisecond)
	v.c.reset()
	v.mustSync(t, app, "r1", objs...)
	if got := v.c.count("PATCH", ""); got != 0 {
		t.Errorf("status writes by the controller caused %d PATCH", got)
	}
	// Scaling by hand bumps the generation: ferry scales back.
	d, err := v.kube.AppsV1().Deployments("t-deploydrift").Get(t.Context(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	three := int32(3)
	d.Spec.Replicas = &three
	if _, err := v.kube.AppsV1().Deployments("t-deploydrift").Update(t.Context(), d, metav1.UpdateOptions{FieldManager: "kubectl-scale"}); err != nil {
		t.Fatal(err)
	}
	v.c.reset()
	v.mustSync(t, app, "r1", objs...)
	if got := v.c.count("PATCH", "/deployments/web"); got != 1 {
		t.Errorf("scaled Deployment re-applied %d times, want 1", got)
	}
	d, err = v.kube.AppsV1().Deployments("t-deploydrift").Get(t.Context(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *d.Spec.Replicas != 0 {
		t.Errorf("replicas = %d after repair, want 0", *d.Spec.Replicas)
	}
}

func TestSyncPrune(t *testing.T) {
	v := newEnv(t)
	app := App{Name: "prune", Namespace: "t-prune-a", Prune: true}
	v.mustSync(t, app, "r1", namespace(t, "t-prune-a"), namespace(t, "t-prune-b"),
		configMap(t, "", "keep", "1"), configMap(t, "", "drop", "1"), configMap(t, "", "move", "1"))

	// drop leaves Git; move changes namespace.
	res := v.mustSync(t, app, "r2", namespace(t, "t-prune-a"), namespace(t, "t-prune-b"),
		configMap(t, "", "keep", "1"), configMap(t, "t-prune-b", "move", "1"))
	if v.get(t, "v1", "configmaps", "t-prune-a", "drop") != nil {
		t.Error("drop not pruned")
	}
	if v.get(t, "v1", "configmaps", "t-prune-a", "move") != nil {
		t.Error("move not pruned from its old namespace")
	}
	if v.get(t, "v1", "configmaps", "t-prune-b", "move") == nil {
		t.Error("move not created in its new namespace")
	}
	if res.Pruned != 2 || res.Created != 1 {
		t.Errorf("result %+v, want 2 pruned, 1 created", res)
	}

	// An object in the inventory that someone else took over (label changed) is not deleted.
	cm, err := v.kube.CoreV1().ConfigMaps("t-prune-a").Get(t.Context(), "keep", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Labels[LabelApp] = "someone-else"
	if _, err := v.kube.CoreV1().ConfigMaps("t-prune-a").Update(t.Context(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	res = v.mustSync(t, app, "r3", namespace(t, "t-prune-a"), namespace(t, "t-prune-b"), configMap(t, "t-prune-b", "move", "1"))
	if v.get(t, "v1", "configmaps", "t-prune-a", "keep") == nil {
		t.Error("an object relabelled for another owner was pruned")
	}
	if res.Pruned != 0 {
		t.Errorf("pruned %d, want 0", res.Pruned)
	}

	// Prune off: an object leaving Git is left in place.
	noPrune := app
	noPrune.Prune = false
	v.mustSync(t, noPrune, "r4", namespace(t, "t-prune-a"), namespace(t, "t-prune-b"))
	if v.get(t, "v1", "configmaps", "t-prune-b", "move") == nil {
		t.Error("object deleted although prune is off")
	}
}

func TestSyncPruneNamespace(t *testing.T) {
	v := newEnv(t)
	app := App{Name: "prunens", Namespace: "t-prunens", Prune: true}
	v.mustSync(t, app, "r1", namespace(t, "t-prunens"), configMap(t, "", "x", "1"))
	v.mustSync(t, app, "r2")
	if v.get(t, "v1", "configmaps", "t-prunens", "x") != nil {
		t.Error("namespaced object not pruned")
	}
	ns := v.get(t, "v1", "namespaces", "", "t-prunens")
	if ns != nil && ns.GetDeletionTimestamp() == nil {
		t.Error("namespace not pruned")
	}
	// The inventory is empty: a third sync does nothing at all but read.
	v.c.reset()
	v.mustSync(t, app, "r2")
	assertOnlyReads(t, v.c, app.Name)
}

func TestSyncLeavesUnmanagedObjectsAlone(t *testing.T) {
	v := newEnv(t)
	app := App{Name: "unmanaged", Namespace: "t-unmanaged", Prune: true}
	v.mustSync(t, app, "r1", namespace(t, "t-unmanaged"))
	theirs := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "theirs", Namespace: "t-unmanaged"}, Data: map[string]string{"owner": "them"}}
	if _, err := v.kube.CoreV1().ConfigMaps("t-unmanaged").Create(t.Context(), theirs, metav1.CreateOptions{FieldManager: "someone"}); err != nil {
		t.Fatal(err)
	}
	v.c.reset()
	_, err := v.sync(t, app, "r2", namespace(t, "t-unmanaged"), configMap(t, "", "ours", "1"), configMap(t, "", "theirs", "ferry"))
	var ce *ConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a ConflictError", err)
	}
	if ce.Owner != "" || ce.App != "unmanaged" || !strings.Contains(err.Error(), "ConfigMap t-unmanaged/theirs") || !strings.Contains(err.Error(), "not managed by ferry") {
		t.Errorf("conflict = %+v (%v)", ce, err)
	}
	if IsTransient(err) {
		t.Error("a conflict with an unmanaged object is classified transient")
	}
	if n := v.c.count("PATCH", "/configmaps/theirs"); n != 0 {
		t.Errorf("the unmanaged object was patched %d times", n)
	}
	if v.get(t, "v1", "configmaps", "t-unmanaged", "ours") == nil {
		t.Error("the rest of the app was not applied")
	}
	got, err := v.kube.CoreV1().ConfigMaps("t-unmanaged").Get(t.Context(), "theirs", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Data["owner"] != "them" || len(got.Labels) != 0 {
		t.Errorf("unmanaged object modified: %v %v", got.Labels, got.Data)
	}
	// Pruning never touches it either, even with an empty desired set.
	v.mustSync(t, app, "r3", namespace(t, "t-unmanaged"))
	if _, err := v.kube.CoreV1().ConfigMaps("t-unmanaged").Get(t.Context(), "theirs", metav1.GetOptions{}); err != nil {
		t.Errorf("unmanaged object gone: %v", err)
	}
}

func TestSyncTwoAppsClaimOneObject(t *testing.T) {
	v := newEnv(t)
	a := App{Name: "claim-a", Namespace: "t-claim", Prune: true}
	b := App{Name: "claim-b", Namespace: "t-claim", Prune: true}
	v.mustSync(t, a, "r1", namespace(t, "t-claim"), configMap(t, "", "shared", "a"))
	_, err := v.sync(t, b, "r1", configMap(t, "", "shared", "b"))
	var ce *ConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a ConflictError", err)
	}
	if ce.App != "claim-b" || ce.Owner != "claim-a" || !strings.Contains(err.Error(), "managed by app claim-a, not by app claim-b") {
		t.Errorf("conflict = %+v (%v)", ce, err)
	}
	if !IsTransient(err) {
		t.Error("a conflict between two ferry apps should be transient (the other app may be releasing it)")
	}
	if got := v.get(t, "v1", "configmaps", "t-claim", "shared").Object["data"]; !cmp.Equal(got, map[string]any{"value": "a"}) {
		t.Errorf("object changed by the losing app: %v", got)
	}
	// The move completes once a releases it.
	v.mustSync(t, a, "r2", namespace(t, "t-claim"))
	v.mustSync(t, b, "r2", configMap(t, "", "shared", "b"))
	if got := v.get(t, "v1", "configmaps", "t-claim", "shared").GetLabels()[LabelApp]; got != "claim-b" {
		t.Errorf("owner after move = %q", got)
	}
}

func TestSyncInvalidObject(t *testing.T) {
	v := newEnv(t)
	app := App{Name: "invalid", Namespace: "t-invalid", Prune: true}
	bad := obj(t, "apps/invalid/svc.yaml", "apiVersion: v1\nkind: Service\nmetadata:\n  name: bad\nspec:\n  ports:\n  - port: 99999\n")
	res, err := v.sync(t, app, "r1", namespace(t, "t-invalid"), configMap(t, "", "fine", "1"), bad)
	var ae *Error
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v, want *Error", err)
	}
	if ae.Stage != StageApply || ae.Object != "Service t-invalid/bad" || ae.File != "apps/invalid/svc.yaml" || !strings.Contains(ae.Message, "99999") {
		t.Errorf("error = %+v", ae)
	}
	want := "apply: Service t-invalid/bad (apps/invalid/svc.yaml): "
	if !strings.HasPrefix(err.Error(), want) {
		t.Errorf("message %q does not start with %q", err, want)
	}
	if IsTransient(err) {
		t.Error("an invalid object is classified transient")
	}
	// The valid object in the same stage was applied and recorded: fixing the bad one later
	// does not re-apply it.
	if res.Created != 2 {
		t.Errorf("result %+v, want the Namespace and the valid ConfigMap created", res)
	}
	v.c.reset()
	v.mustSync(t, app, "r2", namespace(t, "t-invalid"), configMap(t, "", "fine", "1"))
	if got := v.c.count("PATCH", ""); got != 0 {
		t.Errorf("sync after the fix sent %d PATCH, want 0", got)
	}
}

// TestSyncWronglyTypedFieldIsPermanent: a field of the wrong type (a number where the schema
// wants a string) is refused by server-side apply with a 500 "failed to create typed patch
// object"; the object is invalid, so the sync fails at once instead of retrying it for minutes.
func TestSyncWronglyTypedFieldIsPermanent(t *testing.T) {
	v := newEnv(t)
	app := App{Name: "typed", Namespace: "t-typed"}
	bad := obj(t, "apps/typed/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: typed\ndata:\n  replicas: 3\n")
	_, err := v.sync(t, app, "r1", namespace(t, "t-typed"), bad)
	var ae *Error
	if !errors.As(err, &ae) || ae.Object != "ConfigMap t-typed/typed" || ae.File != "apps/typed/cm.yaml" {
		t.Fatalf("err = %v, want the object and file named", err)
	}
	if !strings.Contains(ae.Message, "expected string") {
		t.Errorf("message %q lacks the apiserver's words", ae.Message)
	}
	if IsTransient(err) {
		t.Errorf("a wrongly typed field is classified transient: %v", err)
	}
}

func TestSyncUnknownKind(t *testing.T) {
	v := newEnv(t)
	app := App{Name: "unknownkind", Namespace: "t-unknownkind"}
	_, err := v.sync(t, app, "r1", obj(t, "x.yaml", "apiVersion: nothere.example.com/v1\nkind: Gadget\nmetadata:\n  name: g\n"))
	var ae *Error
	if !errors.As(err, &ae) || ae.File != "x.yaml" || !strings.Contains(ae.Message, "no kind Gadget") {
		t.Fatalf("err = %v, want an *Error about the unknown kind", err)
	}
	if IsTransient(err) {
		t.Error("unknown kind classified transient")
	}
}
