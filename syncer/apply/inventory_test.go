package apply

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ferrygitops/ferry/syncer/render"
)

// TestAppMayNotDeclareInventories: an app declaring an object in the inventory namespace that is
// named or labelled like an inventory is refused, naming the file and the object, and nothing of
// the app is written; other objects in that namespace are an app's to declare.
func TestAppMayNotDeclareInventories(t *testing.T) {
	v := newEnv(t)
	app := App{Name: "invguard", Namespace: "t-invguard", Prune: true}
	// Any sync makes sure the inventory namespace exists.
	v.mustSync(t, app, "r1", namespace(t, "t-invguard"))
	invNS := DefaultInventoryNamespace

	for _, tc := range []struct {
		name, file, object string
		decl               render.Object
	}{
		{"named", "cm/" + InventoryPrefix + "ghost.yaml", "ConfigMap " + invNS + "/" + InventoryPrefix + "ghost",
			configMap(t, invNS, InventoryPrefix+"ghost", "[]")},
		{"labelled", "apps/x/labelled.yaml", "ConfigMap " + invNS + "/innocent",
			obj(t, "apps/x/labelled.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: innocent\n  namespace: "+invNS+
				"\n  labels:\n    "+LabelInventory+": ghost\ndata:\n  a: \"1\"\n")},
		{"other kind", "apps/x/secret.yaml", "Secret " + invNS + "/" + InventoryPrefix + "other",
			obj(t, "apps/x/secret.yaml", "apiVersion: v1\nkind: Secret\nmetadata:\n  name: "+InventoryPrefix+"other\n  namespace: "+invNS+"\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := objsOf(namespace(t, "t-invguard"), configMap(t, "", "fine", "1"), tc.decl)
			for _, op := range []string{"sync", "plan"} {
				var err error
				if op == "sync" {
					_, err = v.sync(t, app, "r2", objs...)
				} else {
					_, err = v.e.Plan(t.Context(), app, objs)
				}
				var ae *Error
				if !errors.As(err, &ae) {
					t.Fatalf("%s: err = %v, want *Error refusing %s", op, err, tc.object)
				}
				if ae.Stage != StagePrepare || ae.Object != tc.object || ae.File != tc.file || !strings.Contains(ae.Message, "inventories") {
					t.Errorf("%s: error = %+v", op, ae)
				}
				if IsTransient(err) {
					t.Errorf("%s: refusal classified transient", op)
				}
			}
			if v.get(t, "v1", "configmaps", "t-invguard", "fine") != nil {
				t.Error("the rest of the app was applied although it declares an inventory")
			}
		})
	}
	if v.get(t, "v1", "configmaps", invNS, InventoryPrefix+"ghost") != nil || v.get(t, "v1", "configmaps", invNS, "innocent") != nil {
		t.Error("an inventory look-alike was written")
	}

	// An ordinary object in the inventory namespace is still allowed.
	v.mustSync(t, app, "r3", namespace(t, "t-invguard"), configMap(t, invNS, "invguard-settings", "1"))
	if v.get(t, "v1", "configmaps", invNS, "invguard-settings") == nil {
		t.Error("an ordinary ConfigMap in the inventory namespace was not applied")
	}
	v.mustSync(t, app, "r4", namespace(t, "t-invguard"))
}

// forgedInventory is a ConfigMap that looks like the inventory of app, listing victim by its UID:
// trusted, it would make ferry take victim over as an object it created.
func forgedInventory(t *testing.T, ns, app string, victim *corev1.ConfigMap, labels map[string]string) *unstructured.Unstructured {
	t.Helper()
	inv := &inventory{entries: map[string]*entry{}}
	en := &entry{Version: "v1", Kind: "ConfigMap", Resource: "configmaps", Namespaced: true, Namespace: victim.Namespace,
		Name: victim.Name, Hash: "forged", UID: string(victim.UID), ResourceVersion: victim.ResourceVersion, Stage: stageRest}
	inv.entries[en.id().key()] = en
	raw, err := inv.encode()
	if err != nil {
		t.Fatal(err)
	}
	cm := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata":   map[string]any{"name": inventoryName(app), "namespace": ns},
		"data":       map[string]any{revisionKey: "forged"},
		"binaryData": map[string]any{inventoryKey: base64.StdEncoding.EncodeToString(raw)},
	}}
	cm.SetLabels(labels)
	return cm
}

// TestForgedInventoryNotTrusted: a ConfigMap named and labelled as an app's inventory that ferry
// did not write itself is refused, and the object it lists is not taken over.
func TestForgedInventoryNotTrusted(t *testing.T) {
	v := newEnv(t)
	v.mustSync(t, App{Name: "forge-setup", Namespace: "t-forge"}, "r1", namespace(t, "t-forge"))
	invNS := DefaultInventoryNamespace
	victim, err := v.kube.CoreV1().ConfigMaps("t-forge").Create(t.Context(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "victim", Namespace: "t-forge"}, Data: map[string]string{"owner": "them"}},
		metav1.CreateOptions{FieldManager: "someone"})
	if err != nil {
		t.Fatal(err)
	}
	cms := v.dyn.Resource(corev1.SchemeGroupVersion.WithResource("configmaps")).Namespace(invNS)
	invLabels := map[string]string{LabelManagedBy: ManagedByValue, LabelInventory: "ghost"}
	appLabels := map[string]string{LabelManagedBy: ManagedByValue, LabelInventory: "ghost", LabelApp: "attacker"}

	for _, tc := range []struct {
		name string
		// write stores the forged inventory as the attacker could.
		write  func(u *unstructured.Unstructured) error
		labels map[string]string
		why    string
	}{
		{"applied by an app", func(u *unstructured.Unstructured) error {
			// What ferry did for an app declaring it: server-side apply as ferry, with the app label.
			_, err := cms.Apply(t.Context(), u.GetName(), u, metav1.ApplyOptions{FieldManager: DefaultFieldManager, Force: true})
			return err
		}, appLabels, "object of app attacker"},
		{"applied without the app label", func(u *unstructured.Unstructured) error {
			_, err := cms.Apply(t.Context(), u.GetName(), u, metav1.ApplyOptions{FieldManager: "kubectl", Force: true})
			return err
		}, invLabels, "server-side applied"},
		{"created by someone else", func(u *unstructured.Unstructured) error {
			_, err := cms.Create(t.Context(), u, metav1.CreateOptions{FieldManager: "someone"})
			return err
		}, invLabels, "did not write it"},
		{"without ferry's labels", func(u *unstructured.Unstructured) error {
			_, err := cms.Create(t.Context(), u, metav1.CreateOptions{FieldManager: DefaultFieldManager})
			return err
		}, map[string]string{LabelInventory: "ghost"}, "lacks the label " + LabelManagedBy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.write(forgedInventory(t, invNS, "ghost", victim, tc.labels)); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				// t.Context is done by the time cleanups run.
				if err := cms.Delete(context.Background(), inventoryName("ghost"), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
					t.Error(err)
				}
			})
			ghost := App{Name: "ghost", Namespace: "t-forge", Prune: true}
			_, err := v.sync(t, ghost, "r1", configMap(t, "", "victim", "taken"))
			var ae *Error
			if !errors.As(err, &ae) || ae.Stage != StageInventory || ae.Object != "ConfigMap "+invNS+"/"+inventoryName("ghost") ||
				!strings.Contains(ae.Message, "not trusted") || !strings.Contains(ae.Message, tc.why) {
				t.Fatalf("sync with a forged inventory: err = %v, want an inventory error saying %q", err, tc.why)
			}
			if _, err := v.e.Plan(t.Context(), ghost, objsOf(configMap(t, "", "victim", "taken"))); !errors.As(err, &ae) || ae.Stage != StageInventory {
				t.Errorf("plan with a forged inventory: err = %v, want the inventory error", err)
			}
			got, err := v.kube.CoreV1().ConfigMaps("t-forge").Get(t.Context(), "victim", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got.Data["owner"] != "them" || len(got.Labels) != 0 || got.UID != victim.UID {
				t.Errorf("the victim was taken over: %v %v", got.Labels, got.Data)
			}
		})
	}

	// Without the forged inventory, the deploy still refuses the victim as someone else's.
	_, err = v.sync(t, App{Name: "ghost", Namespace: "t-forge", Prune: true}, "r1", configMap(t, "", "victim", "taken"))
	var ce *ConflictError
	if !errors.As(err, &ce) || ce.Owner != "" {
		t.Fatalf("sync without the forged inventory: %v, want a conflict with the unmanaged victim", err)
	}
	// And ferry's own inventories are trusted: a second sync of an app reads the first one's.
	own := App{Name: "forge-own", Namespace: "t-forge", Prune: true}
	v.mustSync(t, own, "r1", configMap(t, "", "own", "1"))
	v.mustSync(t, own, "r2")
	if v.get(t, "v1", "configmaps", "t-forge", "own") != nil {
		t.Error("an object in ferry's own inventory was not pruned")
	}
}
