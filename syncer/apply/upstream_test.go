package apply

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferrygitops/ferry/syncer/render"
	"github.com/ferrygitops/ferry/test/upstream"
)

// Upstream releases whose install manifests the tests apply, as their projects ship them inside
// their Go modules. Each mixes CRDs with custom resources of them, cluster-scoped ones included,
// RBAC, Deployments and admission objects.
const (
	gatewayAPIModule      = "sigs.k8s.io/gateway-api"
	gatewayAPIVersion     = "v1.6.3"
	promOperatorModule    = "github.com/prometheus-operator/prometheus-operator"
	promOperatorVersion   = "v0.85.0"
	snapshotterModule     = "github.com/kubernetes-csi/external-snapshotter/v8"
	snapshotterCRDsModule = "github.com/kubernetes-csi/external-snapshotter/client/v8"
	snapshotterVersion    = "v8.7.0"
)

// upstreamTimeout bounds one test's download, sync (with its health wait) and checks.
const upstreamTimeout = 4 * time.Minute

// upstreamFiles copies into dir the files of module@version matching each glob (relative to the
// module), under the folder the glob maps to: a commit that vendors an upstream install.
func upstreamFiles(t *testing.T, dir, module, version string, globs map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	src, err := upstream.Dir(ctx, module, version)
	if err != nil {
		t.Fatal(err)
	}
	for glob, to := range globs {
		matches, err := filepath.Glob(filepath.Join(src, glob))
		if err != nil || len(matches) == 0 {
			t.Fatalf("%s@%s has no %s (%v)", module, version, glob, err)
		}
		for _, m := range matches {
			b, err := os.ReadFile(m)
			if err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(dir, to, filepath.Base(m))
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// renderDir renders a commit directory as a plain-YAML app, as a sync does.
func renderDir(t *testing.T, dir string) []render.Object {
	t.Helper()
	objs, err := render.Render(os.DirFS(dir), ".", render.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// playKubelet marks every Pod of the namespaces Running and Ready until the returned function is
// called, which reports how many Pods it marked. The test cluster has no kubelet (and no
// scheduler), so without it no Deployment would ever become available and no health wait end.
func playKubelet(t *testing.T, v *env, namespaces ...string) func() int {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	marked := map[string]bool{}
	wg.Go(func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			for _, ns := range namespaces {
				pods, err := v.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
				if err != nil {
					continue
				}
				for i := range pods.Items {
					p := &pods.Items[i]
					if marked[ns+"/"+p.Name] {
						continue
					}
					now := metav1.Now()
					p.Status.Phase = corev1.PodRunning
					p.Status.Conditions = []corev1.PodCondition{
						{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
						{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
						{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
					}
					if _, err := v.kube.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{FieldManager: "test-kubelet"}); err == nil {
						marked[ns+"/"+p.Name] = true
					}
				}
			}
		}
	})
	return func() int {
		cancel()
		wg.Wait()
		return len(marked)
	}
}

// syncUpstream applies objs in one sync, the first and only attempt, playing the kubelet for the
// namespaces, and fails the test unless it succeeds with every object created.
func syncUpstream(t *testing.T, v *env, app App, objs []render.Object, namespaces ...string) *Result {
	t.Helper()
	stop := playKubelet(t, v, namespaces...)
	ctx, cancel := context.WithTimeout(t.Context(), upstreamTimeout)
	defer cancel()
	res, err := v.e.Sync(ctx, app, "r1", objs)
	pods := stop()
	if err != nil {
		t.Fatalf("first sync of %d upstream objects: %v", len(objs), err)
	}
	if res.Created != len(objs) {
		t.Errorf("created %d of %d objects", res.Created, len(objs))
	}
	t.Logf("%s: %d objects, %d pods made ready, apply %s, health %s", app.Name, len(objs), pods,
		res.Durations.Apply, res.Durations.Health)
	return res
}

// assertStaged checks the order a sync applied objects in (Result.Objects lists them stage by
// stage): every CRD before every custom resource, and every custom resource before the admission
// objects. custom tells the custom kinds.
func assertStaged(t *testing.T, res *Result, custom func(ID) bool) {
	t.Helper()
	lastCRD, firstCustom, lastCustom, firstAdmission := -1, len(res.Objects), -1, len(res.Objects)
	for i, o := range res.Objects {
		gk := o.ID.Group + "/" + o.ID.Kind
		switch {
		case gk == crdGK.Group+"/"+crdGK.Kind:
			lastCRD = i
		case custom(o.ID):
			firstCustom, lastCustom = min(firstCustom, i), i
		case o.ID.Group == "admissionregistration.k8s.io":
			firstAdmission = min(firstAdmission, i)
		}
	}
	if lastCustom < 0 || lastCRD < 0 {
		t.Fatalf("the stack has no CRD or no custom resource: %v", res.Objects)
	}
	if lastCRD > firstCustom {
		t.Errorf("a custom resource (%s) was applied in the stage of the CRDs", res.Objects[firstCustom].ID)
	}
	if firstAdmission < lastCustom {
		t.Errorf("an admission object (%s) was applied before custom resources", res.Objects[firstAdmission].ID)
	}
}

func inGroups(groups ...string) func(ID) bool {
	return func(id ID) bool { return slices.Contains(groups, id.Group) }
}

// TestUpstreamGatewayAPI applies the Gateway API's standard install (its CRDs and the validating
// admission policy that guards their upgrades) with a GatewayClass, a Gateway and an HTTPRoute
// from its examples in one commit. GatewayClass is a cluster-scoped kind of a *.k8s.io group that
// a CRD serves: it must wait for its CRD. A preview of the commit before it is applied shows the
// custom resources as created without validation.
func TestUpstreamGatewayAPI(t *testing.T) {
	v := newEnv(t)
	dir := t.TempDir()
	upstreamFiles(t, dir, gatewayAPIModule, gatewayAPIVersion, map[string]string{
		"config/crd/standard/*.yaml":        "crds",
		"examples/standard/basic-http.yaml": "gateways",
	})
	if err := os.WriteFile(filepath.Join(dir, "namespace.yaml"),
		[]byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: t-gateway-api\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	objs := renderDir(t, dir)
	app := App{Name: "gateway-api", Namespace: "t-gateway-api", Prune: true, Timeout: 90 * time.Second}
	custom := inGroups("gateway.networking.k8s.io")

	plan, err := v.e.Plan(t.Context(), app, objs)
	if err != nil {
		t.Fatalf("preview before install: %v", err)
	}
	if plan.Created != len(objs) || plan.Unvalidated != 3 {
		t.Errorf("preview: %d created, %d not validated; want %d and 3", plan.Created, plan.Unvalidated, len(objs))
	}
	for _, en := range plan.Entries {
		if en.Unvalidated != custom(en.ID) {
			t.Errorf("preview entry %s: unvalidated = %v", en.ID, en.Unvalidated)
		}
	}
	if !strings.Contains(plan.Summary(), "3 not validated") {
		t.Errorf("summary %q does not say what was not validated", plan.Summary())
	}
	if !strings.Contains(plan.Text(), "+ GatewayClass example  (gateways/basic-http.yaml)  create (not validated: its CRD is new in this change)\n") {
		t.Errorf("plan text does not flag the GatewayClass:\n%s", plan.Text())
	}

	res := syncUpstream(t, v, app, objs, app.Namespace)
	assertStaged(t, res, custom)
	if gc := v.get(t, "gateway.networking.k8s.io/v1", "gatewayclasses", "", "example"); gc == nil {
		t.Error("GatewayClass example missing")
	}
	if gw := v.get(t, "gateway.networking.k8s.io/v1", "gateways", app.Namespace, "my-gateway"); gw == nil {
		t.Error("Gateway my-gateway missing")
	}

	plan, err = v.e.Plan(t.Context(), app, objs)
	if err != nil {
		t.Fatalf("preview after install: %v", err)
	}
	if plan.Unchanged != len(objs) || plan.Unvalidated != 0 {
		t.Errorf("preview after install: %+v, want all %d unchanged and validated\n%s", plan.Summary(), len(objs), plan.Text())
	}
}

// TestUpstreamPrometheusOperator applies prometheus-operator's bundle (ten large CRDs, RBAC, the
// operator's Deployment and Service), its admission webhook's Deployment, Service,
// PodDisruptionBudget and ServiceMonitor, the validating and mutating webhook configurations of
// its end-to-end tests (failurePolicy Fail, for PrometheusRules) and an example PrometheusRule, in
// one commit. Nothing serves the webhooks: the PrometheusRule is admitted on the first attempt
// only because the webhook configurations go on after it.
func TestUpstreamPrometheusOperator(t *testing.T) {
	v := newEnv(t)
	dir := t.TempDir()
	upstreamFiles(t, dir, promOperatorModule, promOperatorVersion, map[string]string{
		"bundle.yaml":                      "operator",
		"example/admission-webhook/*.yaml": "admission-webhook",
		"test/framework/resources/prometheus-operator-*webhook.yaml": "admission-webhook/configurations",
		"example/user-guides/alerting/prometheus-example-rules.yaml": "rules",
	})
	objs := renderDir(t, dir)
	app := App{Name: "prometheus-operator", Namespace: "default", Prune: true, Timeout: 90 * time.Second}
	res := syncUpstream(t, v, app, objs, "default")
	assertStaged(t, res, inGroups("monitoring.coreos.com"))
	if r := v.get(t, "monitoring.coreos.com/v1", "prometheusrules", "default", "prometheus-example-rules"); r == nil {
		t.Error("PrometheusRule missing")
	}

	// Removing the stack prunes in the reverse order: the webhooks go before the Service they call.
	res, err := v.sync(t, app, "r2")
	if err != nil {
		t.Fatalf("prune the stack: %v", err)
	}
	if res.Pruned != len(objs) {
		t.Errorf("pruned %d of %d objects", res.Pruned, len(objs))
	}
	service, webhook := -1, -1
	for i, o := range res.Objects {
		switch o.ID.String() {
		case "Service default/prometheus-operator-admission-webhook":
			service = i
		case "ValidatingWebhookConfiguration prometheus-operator-rulesvalidation":
			webhook = i
		}
	}
	if webhook < 0 || service < 0 || webhook > service {
		t.Errorf("prune order: webhook configuration at %d, its Service at %d", webhook, service)
	}
}

// TestUpstreamVolumeSnapshots applies the CSI snapshot CRDs, the snapshot controller (RBAC and
// Deployment, in kube-system as shipped) and, from the project's examples, a StorageClass, a
// VolumeSnapshotClass and a VolumeSnapshot in one commit. VolumeSnapshotClass is a cluster-scoped
// kind of snapshot.storage.k8s.io, a group served by CRDs.
func TestUpstreamVolumeSnapshots(t *testing.T) {
	v := newEnv(t)
	dir := t.TempDir()
	upstreamFiles(t, dir, snapshotterCRDsModule, snapshotterVersion, map[string]string{
		"config/crd/*.storage.k8s.io_*.yaml": "crds",
	})
	upstreamFiles(t, dir, snapshotterModule, snapshotterVersion, map[string]string{
		"deploy/kubernetes/snapshot-controller/*-snapshot-controller.yaml": "controller",
		"examples/kubernetes/storageclass.yaml":                            "examples",
		"examples/kubernetes/snapshotclass-v1.yaml":                        "examples",
		"examples/kubernetes/snapshot-v1.yaml":                             "examples",
	})
	if err := os.WriteFile(filepath.Join(dir, "namespace.yaml"),
		[]byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: t-snapshots\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	objs := renderDir(t, dir)
	app := App{Name: "volume-snapshots", Namespace: "t-snapshots", Prune: true, Timeout: 90 * time.Second}
	res := syncUpstream(t, v, app, objs, "kube-system")
	assertStaged(t, res, inGroups("snapshot.storage.k8s.io", "groupsnapshot.storage.k8s.io"))
	if c := v.get(t, "snapshot.storage.k8s.io/v1", "volumesnapshotclasses", "", "csi-hostpath-snapclass-v1"); c == nil {
		t.Error("VolumeSnapshotClass missing")
	}
}
