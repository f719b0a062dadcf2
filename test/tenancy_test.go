package test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/test/forgefake"
	"github.com/ferrygitops/ferry/test/gitserver"
)

// teamNamespaces makes namespaces own and other, and in own the service account "deployer",
// which a Role lets manage ConfigMaps and Services there and nothing else.
func teamNamespaces(t *testing.T, cs *kubernetes.Clientset, own, other string) {
	t.Helper()
	ctx := t.Context()
	for _, ns := range []string{own, other} {
		ensureNamespace(t, cs, ns)
	}
	if _, err := cs.CoreV1().ServiceAccounts(own).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "deployer"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "deployer"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"configmaps", "services"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
	}}
	if _, err := cs.RbacV1().Roles(own).Create(ctx, role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "deployer"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "deployer"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "deployer", Namespace: own}}}
	if _, err := cs.RbacV1().RoleBindings(own).Create(ctx, rb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// tenancyConfig is a config of repository "platform" whose policy keeps its apps in ns and
// allows no cluster-scoped object; app tenant-web runs as deployer, app ghost as an account that does
// not exist. readAuth closes the read API and the pages.
func tenancyConfig(cloneURL, apiURL, ns string) string {
	return `externalURL: http://ferry.e2e.invalid
requireServiceAccount: true
readAuth: true
repos:
  - name: platform
    url: ` + cloneURL + `
    provider: github
    branch: main
    webhookSecret: {env: HOOK_SECRET}
    token: {env: FORGE_TOKEN}
    apiURL: ` + apiURL + `
    interval: 1h
    policy: {namespaces: [` + ns + `]}
apps:
  - name: tenant-web
    repo: platform
    path: apps/web
    namespace: ` + ns + `
    prune: true
    timeout: 60s
    serviceAccountName: deployer
  - name: ghost
    repo: platform
    path: apps/ghost
    namespace: ` + ns + `
    serviceAccountName: nobody
apiTokens: [{env: API_TOKEN}]
`
}

// getAuthed GETs path from f with the API token (or without any when token is ""), decoding a
// JSON answer into v.
func (f *ferry) getAuthed(t *testing.T, path, token string, v any) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, f.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil {
		_ = json.NewDecoder(resp.Body).Decode(v)
	}
	return resp.StatusCode
}

var noFollow = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// syncRecord reads the record a status links to.
func (f *ferry) syncRecord(t *testing.T, st forgefake.Status) queue.Record {
	t.Helper()
	id := st.TargetURL[strings.LastIndex(st.TargetURL, "/")+1:]
	var rec queue.Record
	if code := f.getAuthed(t, "/api/v1/syncs/"+id, apiToken, &rec); code != http.StatusOK {
		t.Fatalf("GET sync %s: %d", id, code)
	}
	return rec
}

// TestTenancy: an app applied as its service account, bounded by its repository's policy. A
// push declaring a ClusterRoleBinding fails naming it, its file and the rule, and nothing is
// written; one declaring an object its account may not write fails with RBAC's words, once
// (not retried); a pull request writing into another namespace gets the denial as its preview
// status. An app whose account does not exist fails saying so. The read API and the pages ask
// for the token.
func TestTenancy(t *testing.T) {
	ns, other := "e2e-ten-a", "e2e-ten-b"
	cs := kube(t)
	teamNamespaces(t, cs, ns, other)
	git := gitserver.New(t)
	repo := git.CreateRepo(t, "acme/platform")
	cm := func(name, value string) string {
		return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\ndata:\n  value: \"" + value + "\"\n"
	}
	first := repo.Commit(t, "main", "web and ghost", map[string]string{
		"apps/web/settings.yaml":   cm("web-settings", "1"),
		"apps/ghost/settings.yaml": cm("ghost-settings", "1"),
	})
	forge := forgefake.New(t, forgeToken)
	f := startFerry(t, tenancyConfig(repo.CloneURL(), forge.URL(), ns), ferryEnv, "")

	if st := finalStatus(t, forge, first, "ferry/tenant-web"); st.State != "success" {
		t.Fatalf("start-up sync of web: %+v", st)
	}
	if _, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "web-settings", metav1.GetOptions{}); err != nil {
		t.Fatalf("web-settings not applied as the service account: %v", err)
	}
	if st := finalStatus(t, forge, first, "ferry/ghost"); st.State != "failure" || st.Description != "service account "+ns+"/nobody does not exist" {
		t.Errorf("start-up sync of ghost: %+v, want failure \"service account %s/nobody does not exist\"", st, ns)
	}

	// readAuth: the read API answers 401 without the token, 200 with it; pages send to sign-in.
	if code := f.getAuthed(t, "/api/v1/apps", "", nil); code != http.StatusUnauthorized {
		t.Errorf("GET /api/v1/apps without a token: %d, want 401", code)
	}
	if code := f.getAuthed(t, "/api/v1/apps", apiToken, nil); code != http.StatusOK {
		t.Errorf("GET /api/v1/apps with the token: %d, want 200", code)
	}
	if code := f.getAuthed(t, "/apps/tenant-web", "", nil); code != http.StatusSeeOther {
		t.Errorf("GET /apps/tenant-web without a session: %d, want 303 to the sign-in page", code)
	}
	for _, p := range []string{"/healthz", "/metrics"} {
		if code := f.getAuthed(t, p, "", nil); code != http.StatusOK {
			t.Errorf("GET %s without a token: %d, want 200", p, code)
		}
	}

	// A ClusterRoleBinding: refused by the policy before anything is written.
	crb := `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: e2e-ten-admin
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{kind: ServiceAccount, name: deployer, namespace: ` + ns + `}]
`
	second := repo.Commit(t, "main", "web: admin", map[string]string{"apps/web/settings.yaml": cm("web-settings", "2"), "apps/web/admin.yaml": crb})
	if code, body := f.send(t, "platform", githubPush(t, hookSecret, "d-ten-2", first, second, "apps/web/admin.yaml")); code != http.StatusAccepted {
		t.Fatalf("push hook: %d %s", code, body)
	}
	st := finalStatus(t, forge, second, "ferry/tenant-web")
	if st.State != "failure" || !strings.HasPrefix(st.Description, "ClusterRoleBinding e2e-ten-admin: cluster-scoped ClusterRoleBinding") {
		t.Errorf("status of the push with a ClusterRoleBinding: %+v", st)
	}
	rec := f.syncRecord(t, st)
	want := queue.RecordError{Stage: "policy", Object: "ClusterRoleBinding e2e-ten-admin", File: "apps/web/admin.yaml",
		Message: "cluster-scoped ClusterRoleBinding.rbac.authorization.k8s.io is not allowed by repository platform's policy (clusterKinds: none)"}
	if rec.Error == nil || *rec.Error != want || rec.Attempts != 1 {
		t.Errorf("record of the refused push: error %+v attempts %d, want %+v once", rec.Error, rec.Attempts, want)
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Get(t.Context(), "e2e-ten-admin", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the ClusterRoleBinding was created: %v", err)
	}
	if got, _ := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "web-settings", metav1.GetOptions{}); got == nil || got.Data["value"] != "1" {
		t.Errorf("a refused commit was partly applied: %v", got)
	}

	// A Secret: the policy allows it, the service account's RBAC does not.
	secret := "apiVersion: v1\nkind: Secret\nmetadata:\n  name: web-secret\nstringData:\n  k: v\n"
	third := repo.Commit(t, "main", "web: secret", map[string]string{"apps/web/secret.yaml": secret})
	third = repo.Remove(t, "main", "web: no admin", "apps/web/admin.yaml")
	if code, body := f.send(t, "platform", githubPush(t, hookSecret, "d-ten-3", second, third, "apps/web/secret.yaml")); code != http.StatusAccepted {
		t.Fatalf("push hook: %d %s", code, body)
	}
	st = finalStatus(t, forge, third, "ferry/tenant-web")
	if st.State != "failure" || !strings.HasPrefix(st.Description, "Secret "+ns+"/web-secret: ") {
		t.Errorf("status of the push with a forbidden Secret: %+v", st)
	}
	rec = f.syncRecord(t, st)
	if rec.Error == nil || rec.Error.File != "apps/web/secret.yaml" || rec.Attempts != 1 ||
		!strings.Contains(rec.Error.Message, `User "system:serviceaccount:`+ns+`:deployer" cannot patch resource "secrets"`) {
		t.Errorf("record of the forbidden push: error %+v attempts %d", rec.Error, rec.Attempts)
	}

	// A pull request writing into another team's namespace: the preview shows the denial.
	head := repo.Commit(t, "feature", "web: intrude", map[string]string{
		"apps/web/intruder.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: intruder\n  namespace: " + other + "\ndata:\n  v: \"1\"\n",
	})
	repo.PushRef(t, "refs/pull/9/head", head)
	if code, body := f.send(t, "platform", githubPR(t, "d-ten-pr-9", 9, head, third)); code != http.StatusAccepted {
		t.Fatalf("pull_request hook: %d %s", code, body)
	}
	st = finalStatus(t, forge, head, "ferry/tenant-web/preview")
	wantDesc := "ConfigMap " + other + "/intruder: namespace " + other + " is not allowed by repository platform's policy (namespaces: " + ns + ")"
	if st.State != "failure" || st.Description != wantDesc {
		t.Errorf("preview status %+v, want failure %q", st, wantDesc)
	}
	if rec := f.syncRecord(t, st); rec.Error == nil || rec.Error.File != "apps/web/intruder.yaml" || rec.Error.Stage != "policy" {
		t.Errorf("preview record: %+v", rec.Error)
	}
	if _, err := cs.CoreV1().ConfigMaps(other).Get(t.Context(), "intruder", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the preview wrote into %s: %v", other, err)
	}
	assertAllFinal(t, forge)
}

// TestTenancyStrictRefusesAtStart: with requireServiceAccount, a config whose app names no
// service account (and no default) stops ferry at start and fails ferry check, naming the app.
func TestTenancyStrictRefusesAtStart(t *testing.T) {
	dir := t.TempDir()
	cfg := strings.Replace(tenancyConfig("https://git.e2e.invalid/acme/platform.git", "https://api.e2e.invalid", "e2e-ten-strict"),
		"    serviceAccountName: deployer\n", "", 1)
	path := filepath.Join(dir, "ferry.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	const want = "app tenant-web: requireServiceAccount is set, and the app has no serviceAccountName (nor is there a defaultServiceAccountName)"
	for _, args := range [][]string{
		{"check", "--config", path},
		{"serve", "--config", path, "--listen", freeAddr(t), "--data-dir", filepath.Join(dir, "data"), "--kubeconfig", filepath.Join(dir, "none")},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		cmd := exec.CommandContext(ctx, ferryBin, args...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
		for k, v := range ferryEnv {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		out, err := cmd.CombinedOutput()
		timedOut := ctx.Err() != nil
		cancel()
		if err == nil || timedOut || !strings.Contains(string(out), want) {
			t.Errorf("ferry %s: %v\n%s\nwant a refusal saying %q", args[0], err, out, want)
		}
	}
}
