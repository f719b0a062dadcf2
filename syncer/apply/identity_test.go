package apply

import (
	"context"
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/ferrygitops/ferry/syncer/render"
)

// tenant makes namespaces a and b, and in a the service account "deployer" allowed (by a Role)
// to do anything with Deployments and ConfigMaps there, and nothing anywhere else.
func tenant(t *testing.T, v *env, a, b string) {
	t.Helper()
	ctx := t.Context()
	for _, ns := range []string{a, b} {
		_, err := v.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	if _, err := v.kube.CoreV1().ServiceAccounts(a).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "deployer"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "deployer"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"*"}},
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"*"}},
		},
	}
	if _, err := v.kube.RbacV1().Roles(a).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "deployer"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "deployer"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "deployer", Namespace: a}},
	}
	if _, err := v.kube.RbacV1().RoleBindings(a).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func inNamespace(t testing.TB, o render.Object, ns string) render.Object {
	o.SetNamespace(ns)
	return o
}

// An app with a service account applies, reads health and records its inventory where its
// Role allows; an object in a namespace the Role does not cover fails with the apiserver's RBAC
// refusal and the file, permanently, while the allowed objects are applied and recorded.
func TestServiceAccountApplyWithinItsRole(t *testing.T) {
	v := newEnv(t)
	tenant(t, v, "t-sa-a", "t-sa-b")
	app := App{Name: "sa-apply", Namespace: "t-sa-a", ServiceAccount: "deployer", Prune: true}

	res := v.mustSync(t, app, "r1", configMap(t, "", "settings", "1"), deployment(t, "web", 0))
	if res.Created != 2 {
		t.Fatalf("created %d objects, want 2: %+v", res.Created, res.Objects)
	}
	if v.get(t, "apps/v1", "deployments", "t-sa-a", "web") == nil {
		t.Fatal("Deployment t-sa-a/web was not applied")
	}
	// The service account cannot touch ferry-system: the inventory was written by the engine.
	inv, err := v.kube.CoreV1().ConfigMaps(DefaultInventoryNamespace).Get(t.Context(), inventoryName(app.Name), metav1.GetOptions{})
	if err != nil {
		t.Fatalf("inventory: %v", err)
	}
	if len(inv.BinaryData[inventoryKey]) == 0 {
		t.Errorf("inventory %s holds nothing", inv.Name)
	}
	if again := v.mustSync(t, app, "r1", configMap(t, "", "settings", "1"), deployment(t, "web", 0)); again.Unchanged != 2 {
		t.Errorf("re-sync after the inventory was written: %+v, want 2 unchanged", again)
	}

	other := obj(t, "team-b/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: intruder\n  namespace: t-sa-b\ndata:\n  value: \"1\"\n")
	_, err = v.sync(t, app, "r2", configMap(t, "", "settings", "2"), deployment(t, "web", 0), other)
	if err == nil {
		t.Fatal("sync of an object outside the Role succeeded")
	}
	for _, want := range []string{`User "system:serviceaccount:t-sa-a:deployer" cannot`, `"configmaps"`, `"t-sa-b"`, "ConfigMap t-sa-b/intruder", "(team-b/cm.yaml)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if IsTransient(err) {
		t.Errorf("a forbidden object is transient: %v", err)
	}
	if v.get(t, "v1", "configmaps", "t-sa-b", "intruder") != nil {
		t.Error("ConfigMap t-sa-b/intruder exists")
	}
	if got := v.get(t, "v1", "configmaps", "t-sa-a", "settings"); got == nil || got.Object["data"].(map[string]any)["value"] != "2" {
		t.Errorf("ConfigMap t-sa-a/settings was not updated beside the refused object: %v", got)
	}

	// A preview dry-runs as the service account too.
	_, err = v.e.Plan(t.Context(), app, objsOf(configMap(t, "", "settings", "3"), other))
	if err == nil || !strings.Contains(err.Error(), "system:serviceaccount:t-sa-a:deployer") || !strings.Contains(err.Error(), "team-b/cm.yaml") {
		t.Errorf("plan of an object outside the Role: %v", err)
	}
}

// Pruning runs as the service account: what it may delete is deleted, what it may not stays,
// in the inventory too, and the sync fails with the refusal.
func TestServiceAccountPrune(t *testing.T) {
	v := newEnv(t)
	tenant(t, v, "t-sap-a", "t-sap-b")
	own := App{Name: "sa-prune", Namespace: "t-sap-a", Prune: true}
	outside := inNamespace(t, configMap(t, "", "outside", "1"), "t-sap-b")
	v.mustSync(t, own, "r1", configMap(t, "", "keep", "1"), configMap(t, "", "gone", "1"), outside)

	app := own
	app.ServiceAccount = "t-sap-a/deployer"
	res, err := v.sync(t, app, "r2", configMap(t, "", "keep", "1"))
	if err == nil {
		t.Fatal("prune of an object outside the Role succeeded")
	}
	if !strings.Contains(err.Error(), "prune: ConfigMap t-sap-b/outside") || !strings.Contains(err.Error(), `User "system:serviceaccount:t-sap-a:deployer" cannot delete`) {
		t.Errorf("prune error %q", err)
	}
	if res == nil || res.Pruned != 1 {
		t.Errorf("pruned %+v, want ConfigMap t-sap-a/gone", res)
	}
	if v.get(t, "v1", "configmaps", "t-sap-a", "gone") != nil {
		t.Error("ConfigMap t-sap-a/gone was not pruned")
	}
	if v.get(t, "v1", "configmaps", "t-sap-b", "outside") == nil {
		t.Error("ConfigMap t-sap-b/outside was deleted by an account not allowed to")
	}
	// Still in the inventory: the engine's own identity prunes it once the app may.
	if _, err := v.sync(t, own, "r3", configMap(t, "", "keep", "1")); err != nil {
		t.Fatalf("prune with the engine's identity: %v", err)
	}
	if v.get(t, "v1", "configmaps", "t-sap-b", "outside") != nil {
		t.Error("ConfigMap t-sap-b/outside was forgotten by the inventory")
	}
}

// A service account that does not exist fails the sync and the plan before anything is
// written, permanently, saying so.
func TestServiceAccountMissing(t *testing.T) {
	v := newEnv(t)
	tenant(t, v, "t-sam-a", "t-sam-b")
	app := App{Name: "sa-missing", Namespace: "t-sam-a", ServiceAccount: "nobody"}
	_, err := v.sync(t, app, "r1", configMap(t, "", "settings", "1"))
	var sae *ServiceAccountError
	if !errors.As(err, &sae) || err.Error() != "service account t-sam-a/nobody does not exist" {
		t.Fatalf("sync error %v, want service account t-sam-a/nobody does not exist", err)
	}
	if IsTransient(err) {
		t.Error("a missing service account is transient")
	}
	if v.get(t, "v1", "configmaps", "t-sam-a", "settings") != nil {
		t.Error("ConfigMap written for an app whose service account does not exist")
	}
	if _, err := v.e.Plan(t.Context(), app, objsOf(configMap(t, "", "settings", "1"))); !errors.As(err, &sae) {
		t.Errorf("plan error %v, want a *ServiceAccountError", err)
	}
}

// Admit sees every object with its namespace defaulted and its scope, and a refusal stops the
// sync before anything is written.
func TestAdmit(t *testing.T) {
	v := newEnv(t)
	var seen []Target
	app := App{Name: "admit", Namespace: "t-admit", Admit: func(ts []Target) error {
		seen = ts
		for _, tg := range ts {
			if !tg.Namespaced {
				return Denied(tg, "cluster-scoped objects are not allowed")
			}
		}
		return nil
	}}
	_, err := v.sync(t, app, "r1", namespace(t, "t-admit"), configMap(t, "", "cfg", "1"))
	if err == nil || err.Error() != "policy: Namespace t-admit (ns/t-admit.yaml): cluster-scoped objects are not allowed" {
		t.Fatalf("sync error %v", err)
	}
	if IsTransient(err) {
		t.Error("a denial is transient")
	}
	want := []Target{
		{ID: ID{Kind: "ConfigMap", Namespace: "t-admit", Name: "cfg"}, File: "cm/cfg.yaml", Namespaced: true},
		{ID: ID{Kind: "Namespace", Name: "t-admit"}, File: "ns/t-admit.yaml"},
	}
	if len(seen) != 2 || seen[0] != want[0] || seen[1] != want[1] {
		t.Errorf("admit saw %+v, want %+v", seen, want)
	}
	if v.get(t, "v1", "namespaces", "", "t-admit") != nil {
		t.Error("Namespace t-admit created despite the denial")
	}
}

// ferryRules are the rules of the ClusterRole that deploy/rbac.yaml gives ferry.
func ferryRules(t *testing.T) []rbacv1.PolicyRule {
	t.Helper()
	raw, err := os.ReadFile("../../deploy/rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for doc := range strings.SplitSeq(string(raw), "\n---\n") {
		var cr rbacv1.ClusterRole
		if err := yaml.Unmarshal([]byte(doc), &cr); err != nil {
			t.Fatal(err)
		}
		if cr.Kind == "ClusterRole" {
			return cr.Rules
		}
	}
	t.Fatal("deploy/rbac.yaml holds no ClusterRole")
	return nil
}

// asFerry returns an engine that authenticates as a service account bound to rules, as ferry
// does in a cluster, rather than as the test's administrator.
func asFerry(t *testing.T, v *env, ns string, rules []rbacv1.PolicyRule) *Engine {
	t.Helper()
	ctx := t.Context()
	if _, err := v.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.kube.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "ferry"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.kube.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: ns}, Rules: rules}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: ns},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "ferry", Namespace: ns}},
	}
	if _, err := v.kube.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := v.kube.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "ferry", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &rest.Config{Host: v.cfg.Host, BearerToken: tr.Status.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: v.cfg.CAData, CAFile: v.cfg.CAFile}}
	e, err := New(cfg, Options{PollInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// The ClusterRole that deploy/rbac.yaml gives ferry lets it impersonate the apps' service
// accounts; without its impersonate rule, the apiserver refuses.
func TestShippedRBACImpersonates(t *testing.T) {
	v := newEnv(t)
	tenant(t, v, "t-rbac-a", "t-rbac-b")
	app := App{Name: "rbac-shipped", Namespace: "t-rbac-a", ServiceAccount: "deployer", Prune: true}
	rules := ferryRules(t)

	var without []rbacv1.PolicyRule
	for _, r := range rules {
		if !slices.Contains(r.Verbs, "impersonate") {
			without = append(without, r)
		}
	}
	if len(without) == len(rules) {
		t.Fatal("deploy/rbac.yaml grants no impersonate verb")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	_, err := asFerry(t, v, "t-rbac-noimp", without).Sync(ctx, app, "r1", objsOf(configMap(t, "", "settings", "1")))
	// Older apiservers say `cannot impersonate resource "serviceaccounts"`; those with constrained
	// impersonation name the verb they would also accept, `cannot impersonate-on:serviceaccount:patch`.
	if err == nil || !strings.Contains(err.Error(), `User "system:serviceaccount:t-rbac-noimp:ferry" cannot impersonate`) {
		t.Fatalf("sync without the impersonate rule: %v", err)
	}

	e := asFerry(t, v, "t-rbac-sys", rules)
	if _, err := e.Sync(ctx, app, "r1", objsOf(configMap(t, "", "settings", "1"))); err != nil {
		t.Fatalf("sync with deploy/rbac.yaml's rules: %v", err)
	}
	_, err = e.Sync(ctx, app, "r2", objsOf(configMap(t, "", "settings", "1"), inNamespace(t, configMap(t, "", "x", "1"), "t-rbac-b")))
	if err == nil || !strings.Contains(err.Error(), `User "system:serviceaccount:t-rbac-a:deployer" cannot patch resource "configmaps"`) {
		t.Fatalf("the impersonated account's rights do not apply: %v", err)
	}
}

// The apiserver gives an impersonated service account its groups, so rights granted to
// system:serviceaccounts:<namespace> (as RBAC allows for a whole team) apply to the app too.
func TestServiceAccountGroups(t *testing.T) {
	v := newEnv(t)
	ctx := t.Context()
	const ns = "t-sag-a"
	if _, err := v.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.kube.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "member"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "team"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"*"}},
	}}
	if _, err := v.kube.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "team"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "team"},
		Subjects: []rbacv1.Subject{{Kind: "Group", APIGroup: "rbac.authorization.k8s.io", Name: "system:serviceaccounts:" + ns}}}
	if _, err := v.kube.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	v.mustSync(t, App{Name: "sa-groups", Namespace: ns, ServiceAccount: "member"}, "r1", configMap(t, "", "settings", "1"))
	if v.get(t, "v1", "configmaps", ns, "settings") == nil {
		t.Error("ConfigMap not applied through the account's group")
	}
}

// The impersonating client sets are bounded: past MaxIdentities the least recently used goes.
func TestIdentitiesBounded(t *testing.T) {
	ids := newIdentities(&rest.Config{Host: "https://127.0.0.1:1"})
	user := func(i int) string { return ServiceAccountUser("ns", "sa-"+strconv.Itoa(i)) }
	for i := range MaxIdentities {
		if _, err := ids.get(user(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ids.get(user(0)); err != nil { // used again: now the most recent
		t.Fatal(err)
	}
	if _, err := ids.get(user(MaxIdentities)); err != nil {
		t.Fatal(err)
	}
	if len(ids.sets) != MaxIdentities {
		t.Fatalf("%d client sets kept, want %d", len(ids.sets), MaxIdentities)
	}
	if _, ok := ids.sets[user(1)]; ok {
		t.Error("the least recently used set was kept")
	}
	if _, ok := ids.sets[user(0)]; !ok {
		t.Error("a set used again was dropped")
	}
}
