package apply

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/ferrygitops/ferry/syncer/render"
)

// hookOf marks o as a hook.
func hookOf(o render.Object, h render.Hook) render.Object {
	o.Hook = &h
	return o
}

// hookJob declares a Job hook; env varies its content without changing what it does.
func hookJob(t testing.TB, name, env string, h render.Hook) render.Object {
	return hookOf(obj(t, "templates/"+name+".yaml", fmt.Sprintf(`apiVersion: batch/v1
kind: Job
metadata:
  name: %s
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: registry.invalid/%s:1
        env:
        - {name: RUN, value: "%s"}
`, name, name, env)), h)
}

// hookMap declares a ConfigMap hook, which succeeds as soon as it is applied.
func hookMap(t testing.TB, name string, h render.Hook) render.Object {
	return hookOf(obj(t, "templates/"+name+".yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: "+name+"\ndata:\n  k: v\n"), h)
}

// hooksRun lists the hooks a Result reports, in order, as "Kind name: outcome".
func hooksRun(res *Result) []string {
	var out []string
	for _, o := range res.Objects {
		if o.Action == ActionHook {
			out = append(out, o.ID.Kind+" "+o.ID.Name+": "+o.Outcome)
		}
	}
	return out
}

// fakeKubelet plays the kubelet for Job hooks in one namespace (the shared cluster has none): it
// ends every pod the Job controller creates, Succeeded, or Failed for the Jobs named in fail, so
// the real Job controller marks the Job Complete or Failed. Before ending a Job's first pod it
// calls observe with the Job's name, so a test can look at the cluster while the hook runs.
type fakeKubelet struct {
	mu   sync.Mutex
	runs []string // Job names, in the order their pods were ended
}

func startKubelet(t *testing.T, v *env, ns string, fail map[string]bool, observe func(job string)) *fakeKubelet {
	t.Helper()
	k := &fakeKubelet{}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		ended := map[string]bool{}
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			pods, err := v.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "batch.kubernetes.io/job-name"})
			if err != nil {
				continue
			}
			for i := range pods.Items {
				p := &pods.Items[i]
				if ended[string(p.UID)] || p.DeletionTimestamp != nil {
					continue
				}
				job := p.Labels["batch.kubernetes.io/job-name"]
				if observe != nil {
					observe(job)
				}
				now := metav1.Now()
				p.Status.Phase = corev1.PodSucceeded
				exit := int32(0)
				if fail[job] {
					p.Status.Phase, exit = corev1.PodFailed, 3
				}
				p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "main", Image: p.Spec.Containers[0].Image,
					State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: exit, StartedAt: now, FinishedAt: now}}}}
				if _, err := v.kube.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{FieldManager: "test-kubelet"}); err != nil {
					continue
				}
				ended[string(p.UID)] = true
				k.mu.Lock()
				k.runs = append(k.runs, job)
				k.mu.Unlock()
			}
		}
	}()
	return k
}

func (k *fakeKubelet) ran() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.runs...)
}

// TestHooksInstallUpgrade: an install runs the install hooks, pre before the app's Deployment
// exists and post once it is healthy; an unchanged re-sync runs none; a change in Git, or in a
// hook alone, runs the upgrade hooks, re-creating the kept ones (before-hook-creation); a
// hook-succeeded hook is deleted after it succeeded.
func TestHooksInstallUpgrade(t *testing.T) {
	v := newEnv(t)
	ns := "t-hooks"
	app := App{Name: "hooks", Namespace: ns, Prune: true, Timeout: 90 * time.Second}
	var mu sync.Mutex
	deployAt := map[string]bool{} // job → whether the Deployment existed when it ran
	k := startKubelet(t, v, ns, nil, func(job string) {
		d, err := v.kube.AppsV1().Deployments(ns).Get(t.Context(), "web", metav1.GetOptions{})
		mu.Lock()
		defer mu.Unlock()
		deployAt[job] = err == nil && d != nil
	})
	objs := func(cfg, migrateEnv string) []render.Object {
		return objsOf(namespace(t, ns), configMap(t, "", "cfg", cfg), deployment(t, "web", 0),
			hookJob(t, "migrate", migrateEnv, render.Hook{Pre: true, Install: true, Upgrade: true}),
			hookJob(t, "announce", "1", render.Hook{Install: true, Upgrade: true, DeletePolicies: []string{render.HookSucceeded}}),
			hookMap(t, "seed", render.Hook{Pre: true, Install: true, Weight: -5}))
	}

	res := v.mustSync(t, app, "r1", objs("1", "1")...)
	want := []string{"ConfigMap seed: pre-install hook succeeded", "Job migrate: pre-install hook succeeded", "Job announce: post-install hook succeeded"}
	if diff := cmp.Diff(want, hooksRun(res)); diff != "" {
		t.Errorf("install hooks (-want +got):\n%s", diff)
	}
	if res.Hooks != 3 || res.Created != 3 {
		t.Errorf("install result: %d hooks, %d created; want 3 and 3", res.Hooks, res.Created)
	}
	mu.Lock()
	if diff := cmp.Diff(map[string]bool{"migrate": false, "announce": true}, deployAt); diff != "" {
		t.Errorf("Deployment existed when the hook ran (-want +got):\n%s", diff)
	}
	mu.Unlock()
	migrate := v.get(t, "batch/v1", "jobs", ns, "migrate")
	if migrate == nil {
		t.Fatal("the migrate hook (before-hook-creation) is not kept after it ran")
	}
	if done, failure, _ := hookVerdict(migrate); !done || failure != "" {
		t.Errorf("migrate is not Complete: %v", migrate.Object["status"])
	}
	if migrate.GetLabels()[LabelApp] != app.Name {
		t.Errorf("hook labels: %v", migrate.GetLabels())
	}
	if a := v.get(t, "batch/v1", "jobs", ns, "announce"); a != nil {
		t.Error("the announce hook (hook-succeeded) was not deleted after it succeeded")
	}
	seed := v.get(t, "v1", "configmaps", ns, "seed")
	if seed == nil {
		t.Fatal("seed hook not created")
	}

	// Unchanged re-syncs, at the same revision and at a new one, run no hook and write nothing.
	for _, rev := range []string{"r1", "r2"} {
		v.c.reset()
		res = v.mustSync(t, app, rev, objs("1", "1")...)
		if res.Hooks != 0 || len(hooksRun(res)) != 0 {
			t.Errorf("unchanged re-sync at %s ran hooks: %v", rev, hooksRun(res))
		}
		if n := v.c.count("PATCH", "") + v.c.count("DELETE", "") + v.c.count("POST", ""); n != 0 {
			t.Errorf("unchanged re-sync at %s sent %d writes", rev, n)
		}
	}
	if got := v.get(t, "batch/v1", "jobs", ns, "migrate"); got == nil || got.GetUID() != migrate.GetUID() {
		t.Error("an unchanged re-sync replaced the migrate Job")
	}

	// A change in Git runs the upgrade hooks: migrate is deleted and created again.
	res = v.mustSync(t, app, "r3", objs("2", "1")...)
	want = []string{"Job migrate: pre-upgrade hook succeeded", "Job announce: post-upgrade hook succeeded"}
	if diff := cmp.Diff(want, hooksRun(res)); diff != "" {
		t.Errorf("upgrade hooks (-want +got):\n%s", diff)
	}
	again := v.get(t, "batch/v1", "jobs", ns, "migrate")
	if again == nil {
		t.Error("migrate not kept after the upgrade")
	} else if again.GetUID() == migrate.GetUID() {
		t.Errorf("migrate not re-created by before-hook-creation (same uid %s)", migrate.GetUID())
	}
	if s := v.get(t, "v1", "configmaps", ns, "seed"); s == nil || s.GetUID() != seed.GetUID() {
		t.Error("an install-only hook ran on upgrade")
	}

	// A hook's own change is enough to run the upgrade hooks.
	res = v.mustSync(t, app, "r4", objs("2", "2")...)
	if diff := cmp.Diff(want, hooksRun(res)); diff != "" {
		t.Errorf("upgrade hooks after a hook change (-want +got):\n%s", diff)
	}
	if res.Configured+res.Created != 0 {
		t.Errorf("a hook change applied app objects: %+v", res)
	}
	if got := k.ran(); len(got) != 6 {
		t.Errorf("Job pods run: %v, want 6 (two Jobs, three times)", got)
	}
	res = v.mustSync(t, app, "r4", objs("2", "2")...)
	if res.Hooks != 0 {
		t.Errorf("re-sync after the hook change ran hooks: %v", hooksRun(res))
	}
}

// TestHooksOrderAndConflict: hooks of a phase run by weight, then kind and name; a hook whose name
// an object outside the app holds is a conflict, and the object is not touched.
func TestHooksOrderAndConflict(t *testing.T) {
	v := newEnv(t)
	ns := "t-hookorder"
	app := App{Name: "hookorder", Namespace: ns, Prune: true}
	pre := func(w int) render.Hook { return render.Hook{Pre: true, Install: true, Upgrade: true, Weight: w} }
	objs := objsOf(namespace(t, ns), configMap(t, "", "cfg", "1"),
		hookMap(t, "c", pre(5)), hookMap(t, "b", pre(0)), hookMap(t, "a", pre(0)), hookMap(t, "z", pre(-3)),
		hookOf(obj(t, "templates/sa.yaml", "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: a\n"), pre(0)),
		hookMap(t, "post", render.Hook{Install: true, Upgrade: true, Weight: -10}))
	res := v.mustSync(t, app, "r1", objs...)
	want := []string{"ConfigMap z: pre-install hook succeeded", "ConfigMap a: pre-install hook succeeded",
		"ConfigMap b: pre-install hook succeeded", "ServiceAccount a: pre-install hook succeeded",
		"ConfigMap c: pre-install hook succeeded", "ConfigMap post: post-install hook succeeded"}
	if diff := cmp.Diff(want, hooksRun(res)); diff != "" {
		t.Errorf("hook order (-want +got):\n%s", diff)
	}

	// Someone else's ConfigMap holds the name of a new hook.
	if _, err := v.kube.CoreV1().ConfigMaps(ns).Create(t.Context(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "theirs"},
		Data: map[string]string{"k": "mine"}}, metav1.CreateOptions{FieldManager: "someone"}); err != nil {
		t.Fatal(err)
	}
	objs = append(objs, hookMap(t, "theirs", pre(1)))
	objs[1] = configMap(t, "", "cfg", "2")
	res, err := v.sync(t, app, "r2", objs...)
	var ae *Error
	var ce *ConflictError
	if !errors.As(err, &ae) || ae.Stage != StageHooks || ae.Object != "ConfigMap "+ns+"/theirs" || ae.File != "templates/theirs.yaml" || !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a hooks-stage conflict naming ConfigMap %s/theirs", err, ns)
	}
	if IsTransient(err) {
		t.Error("a conflict with an object ferry does not manage is transient")
	}
	if cm := v.get(t, "v1", "configmaps", ns, "theirs"); cm == nil || cm.Object["data"].(map[string]any)["k"] != "mine" || cm.GetLabels()[LabelApp] != "" {
		t.Errorf("someone else's ConfigMap was written: %v", cm)
	}
	if cm := v.get(t, "v1", "configmaps", ns, "cfg"); cm.Object["data"].(map[string]any)["value"] != "1" {
		t.Error("the app's objects were applied after a pre hook failed")
	}
	if got := hooksRun(res); len(got) == 0 || got[len(got)-1] != "ConfigMap theirs: pre-upgrade hook failed" {
		t.Errorf("result hooks: %v", got)
	}
}

// TestHookFailureStopsSync: a pre hook whose Job fails stops the sync before the app's other
// objects are applied, with an error naming the stage, the Job, its file and the Job's
// condition; hook-failed deletes it. The next sync runs it again.
func TestHookFailureStopsSync(t *testing.T) {
	v := newEnv(t)
	ns := "t-hookfail"
	app := App{Name: "hookfail", Namespace: ns, Prune: true, Timeout: 90 * time.Second}
	k := startKubelet(t, v, ns, map[string]bool{"bad": true, "late": true}, nil)
	objs := objsOf(namespace(t, ns), configMap(t, "", "cfg", "1"), deployment(t, "web", 0),
		hookJob(t, "bad", "1", render.Hook{Pre: true, Install: true, Upgrade: true, DeletePolicies: []string{render.HookFailed}}))
	res, err := v.sync(t, app, "r1", objs...)
	var ae *Error
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v, want *Error", err)
	}
	if ae.Stage != StageHooks || ae.Object != "Job "+ns+"/bad" || ae.File != "templates/bad.yaml" {
		t.Errorf("error = %+v", ae)
	}
	if !strings.HasPrefix(err.Error(), "hooks: Job "+ns+"/bad (templates/bad.yaml): pre-install hook failed: BackoffLimitExceeded") {
		t.Errorf("message = %q", err)
	}
	if IsTransient(err) {
		t.Error("a failed hook is transient")
	}
	if diff := cmp.Diff([]string{"Job bad: pre-install hook failed"}, hooksRun(res)); diff != "" {
		t.Errorf("result hooks (-want +got):\n%s", diff)
	}
	if v.get(t, "apps/v1", "deployments", ns, "web") != nil || v.get(t, "v1", "configmaps", ns, "cfg") != nil {
		t.Error("the app's objects were applied although its pre hook failed")
	}
	if v.get(t, "v1", "namespaces", "", ns) == nil {
		t.Error("the first stage (the namespace the hook lives in) was not applied")
	}
	if v.get(t, "batch/v1", "jobs", ns, "bad") != nil {
		t.Error("a failed hook-failed hook was not deleted")
	}
	// Retrying runs the hook again (it has not succeeded yet), still as an install.
	_, err = v.sync(t, app, "r1", objs...)
	if err == nil || !strings.Contains(err.Error(), "pre-install hook failed") {
		t.Errorf("retry: err = %v, want the pre-install hook to fail again", err)
	}
	if got := k.ran(); len(got) != 2 {
		t.Errorf("bad ran %d times, want 2 (%v)", len(got), got)
	}

	// Without the failing pre hook, a failing post hook fails the sync after the apply, and is
	// kept (no hook-failed policy) for whoever looks into it.
	objs = objsOf(namespace(t, ns), configMap(t, "", "cfg", "1"), deployment(t, "web", 0),
		hookJob(t, "late", "1", render.Hook{Install: true, Upgrade: true}))
	res, err = v.sync(t, app, "r2", objs...)
	if err == nil || !strings.HasPrefix(err.Error(), "hooks: Job "+ns+"/late (templates/late.yaml): post-install hook failed: BackoffLimitExceeded") {
		t.Errorf("post hook failure: err = %v", err)
	}
	if v.get(t, "apps/v1", "deployments", ns, "web") == nil || v.get(t, "v1", "configmaps", ns, "cfg") == nil {
		t.Error("the app's objects were not applied before its post hook")
	}
	if v.get(t, "batch/v1", "jobs", ns, "late") == nil {
		t.Error("a failed hook without hook-failed policy was deleted")
	}
	if diff := cmp.Diff([]string{"Job late: post-install hook failed"}, hooksRun(res)); diff != "" {
		t.Errorf("result hooks (-want +got):\n%s", diff)
	}
}

// TestHooksPlan: a preview lists the hooks a sync would run, dry-run only, and lists none for an
// unchanged commit.
func TestHooksPlan(t *testing.T) {
	v := newEnv(t)
	ns := "t-hookplan"
	app := App{Name: "hookplan", Namespace: ns, Prune: true}
	if _, err := v.kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.kube.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	objs := func(cfg string) []render.Object {
		return objsOf(configMap(t, "", "cfg", cfg),
			hookJob(t, "migrate", "1", render.Hook{Pre: true, Install: true, Upgrade: true}),
			hookMap(t, "welcome", render.Hook{Install: true}))
	}
	p, err := v.e.Plan(t.Context(), app, objs("1"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, en := range p.Entries {
		got = append(got, fmt.Sprintf("%s %s %s", en.Action, en.ID, en.Hook))
	}
	want := []string{"create ConfigMap " + ns + "/cfg ", "hook Job " + ns + "/migrate pre-install", "hook ConfigMap " + ns + "/welcome post-install"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("install plan (-want +got):\n%s", diff)
	}
	if p.Hooks != 2 || p.Created != 1 || !strings.Contains(p.Summary(), "2 hooks would run") {
		t.Errorf("plan: %d hooks, %d created, summary %q", p.Hooks, p.Created, p.Summary())
	}
	if !strings.Contains(p.Text(), "* Job "+ns+"/migrate  (templates/migrate.yaml)  hook (pre-install, dry-run only)") {
		t.Errorf("plan text:\n%s", p.Text())
	}
	if v.get(t, "batch/v1", "jobs", ns, "migrate") != nil || v.get(t, "v1", "configmaps", ns, "welcome") != nil {
		t.Error("a preview created a hook")
	}

	// A hook the apiserver would refuse fails the preview, naming it.
	bad := hookOf(obj(t, "templates/broken.yaml", "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: broken\nspec:\n  template:\n    spec:\n      containers: []\n"),
		render.Hook{Pre: true, Install: true})
	if _, err := v.e.Plan(t.Context(), app, append(objs("1"), bad)); err == nil || !strings.Contains(err.Error(), "Job "+ns+"/broken (templates/broken.yaml)") {
		t.Errorf("plan of an invalid hook: err = %v", err)
	}

	// Once installed (the fake kubelet ends the migrate Job's pod), an unchanged commit plans no
	// hook, and a changed one the upgrade hooks.
	done := make(chan error, 1)
	go func() { _, err := v.e.Sync(t.Context(), app, "r1", objs("1")); done <- err }()
	startKubelet(t, v, ns, nil, nil)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("sync did not return")
	}
	p, err = v.e.Plan(t.Context(), app, objs("1"))
	if err != nil || p.Hooks != 0 {
		t.Errorf("unchanged plan: %v hooks, err %v", p, err)
	}
	p, err = v.e.Plan(t.Context(), app, objs("2"))
	if err != nil || p.Hooks != 1 || p.Entries[len(p.Entries)-1].Hook != "pre-upgrade" {
		t.Errorf("plan of a change: %+v, err %v; want the pre-upgrade hook listed", p, err)
	}
}

func TestHookVerdict(t *testing.T) {
	job := func(status string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON([]byte(`{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"j"},"status":` + status + `}`)); err != nil {
			t.Fatal(err)
		}
		return u
	}
	pod := func(status string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON([]byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"status":` + status + `}`)); err != nil {
			t.Fatal(err)
		}
		return u
	}
	for _, tc := range []struct {
		name             string
		u                *unstructured.Unstructured
		done             bool
		failure, pending string
	}{
		{"job running", job(`{"active":1}`), false, "", "Job has not completed (1 active, 0 failed pods)"},
		{"job complete", job(`{"conditions":[{"type":"SuccessCriteriaMet","status":"True"},{"type":"Complete","status":"True"}]}`), true, "", ""},
		{"job failed", job(`{"failed":1,"conditions":[{"type":"Failed","status":"True","reason":"BackoffLimitExceeded","message":"Job has reached the specified backoff limit"}]}`),
			false, "BackoffLimitExceeded: Job has reached the specified backoff limit", ""},
		{"job failing", job(`{"conditions":[{"type":"Failed","status":"False"}]}`), false, "", "Job has not completed (0 active, 0 failed pods)"},
		{"pod succeeded", pod(`{"phase":"Succeeded"}`), true, "", ""},
		{"pod failed", pod(`{"phase":"Failed","reason":"Evicted","message":"low on memory"}`), false, "Evicted: low on memory", ""},
		{"pod pending", pod(`{}`), false, "", "Pod has not succeeded (phase Pending)"},
		{"configmap", configMap(t, "ns", "c", "1").Unstructured, true, "", ""},
	} {
		done, failure, pending := hookVerdict(tc.u)
		if done != tc.done || failure != tc.failure || pending != tc.pending {
			t.Errorf("%s: got (%v, %q, %q), want (%v, %q, %q)", tc.name, done, failure, pending, tc.done, tc.failure, tc.pending)
		}
	}
}

// TestHookErrorsClassified: a hook that ran out of the app's timeout is not retried by itself; an
// apiserver in trouble while a hook runs is transient, as elsewhere.
func TestHookErrorsClassified(t *testing.T) {
	for _, tc := range []struct {
		err       error
		transient bool
	}{
		{&Error{Stage: StageHooks, Object: "Job a/b", Message: "did not complete within 1s", Err: context.DeadlineExceeded}, false},
		{&Error{Stage: StageHooks, Object: "Job a/b", Message: "pre-install hook failed: BackoffLimitExceeded"}, false},
		{objectError(StageHooks, "Job a/b", "t.yaml", apierrors.NewServiceUnavailable("etcd down")), true},
		{objectError(StageHooks, "Job a/b", "t.yaml", apierrors.NewInvalid(schema.GroupKind{Group: "batch", Kind: "Job"}, "b", nil)), false},
	} {
		if got := IsTransient(tc.err); got != tc.transient {
			t.Errorf("IsTransient(%v) = %v, want %v", tc.err, got, tc.transient)
		}
	}
}
