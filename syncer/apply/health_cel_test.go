package apply

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/ferrygitops/ferry/syncer/render"
	"github.com/ferrygitops/ferry/test/cluster"
)

func TestCompileHealthChecksRefusesBadRules(t *testing.T) {
	for _, tc := range []struct {
		name  string
		check HealthCheck
		want  []string
	}{
		{"syntax", HealthCheck{APIVersion: "example.com/v1", Kind: "Foo", Current: "status.phase =="},
			[]string{"example.com/v1 Foo", `current expression "status.phase =="`}},
		{"unknown variable", HealthCheck{APIVersion: "example.com/v1", Kind: "Foo", Current: "true", Failed: "state.phase == 'x'"},
			[]string{"example.com/v1 Foo", `failed expression "state.phase == 'x'"`, "undeclared reference"}},
		{"not a bool", HealthCheck{APIVersion: "example.com/*", Kind: "Foo", Current: "'ready'"},
			[]string{"example.com/* Foo", "yields string, not a bool"}},
		{"no current", HealthCheck{APIVersion: "example.com/v1", Kind: "Foo", Failed: "true"}, []string{"current is required"}},
		{"no kind", HealthCheck{APIVersion: "example.com/v1", Current: "true"}, []string{"kind is required"}},
		{"bad apiVersion", HealthCheck{APIVersion: "example.com/v1/x", Kind: "Foo", Current: "true"}, []string{"must be group/version or group/*"}},
		{"wildcard without group", HealthCheck{APIVersion: "*", Kind: "Foo", Current: "true"}, []string{"needs a group"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := CompileHealthChecks([]HealthCheck{tc.check})
			if err == nil {
				t.Fatal("compiled")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
	_, err := CompileHealthChecks([]HealthCheck{
		{APIVersion: "example.com/v1", Kind: "Foo", Current: "true"},
		{APIVersion: "example.com/v1", Kind: "Foo", Current: "false"},
	})
	if err == nil || !strings.Contains(err.Error(), "given twice") {
		t.Errorf("a repeated rule: %v", err)
	}
}

func fooObject(gen int64, status map[string]any) *unstructured.Unstructured {
	o := map[string]any{"apiVersion": "example.com/v1", "kind": "Foo", "metadata": map[string]any{"name": "a", "generation": gen}}
	if status != nil {
		o["status"] = status
	}
	return &unstructured.Unstructured{Object: o}
}

func TestHealthRuleVerdicts(t *testing.T) {
	hc, err := CompileHealthChecks([]HealthCheck{{
		APIVersion: "example.com/v1", Kind: "Foo",
		Failed:     "status.phase == 'Broken' || status.phase == 'Ready' && self.status.?broken.orValue(false)",
		Current:    "status.phase == 'Ready'",
		InProgress: "has(status.phase) && status.phase == 'Pending'",
	}})
	if err != nil {
		t.Fatal(err)
	}
	r := hc.find("example.com/v1", "Foo")
	if r == nil || hc.find("example.com/v2", "Foo") != nil || hc.find("example.com/v1", "Bar") != nil {
		t.Fatal("rule matching by apiVersion and kind is wrong")
	}
	for _, tc := range []struct {
		name string
		obj  *unstructured.Unstructured
		want status.Status
		err  string
	}{
		{"ready", fooObject(1, map[string]any{"phase": "Ready"}), status.CurrentStatus, ""},
		// Failed is asked first: an object both Ready and broken has failed.
		{"failed before current", fooObject(1, map[string]any{"phase": "Ready", "broken": true}), status.FailedStatus, ""},
		{"broken", fooObject(1, map[string]any{"phase": "Broken"}), status.FailedStatus, ""},
		{"pending", fooObject(1, map[string]any{"phase": "Pending"}), status.InProgressStatus, ""},
		{"none true", fooObject(1, map[string]any{"phase": "Unheard"}), status.InProgressStatus, ""},
		{"older generation", fooObject(2, map[string]any{"phase": "Ready", "observedGeneration": int64(1)}), status.InProgressStatus, ""},
		{"being deleted", func() *unstructured.Unstructured {
			o := fooObject(1, map[string]any{"phase": "Ready"})
			o.SetDeletionTimestamp(&metav1.Time{Time: time.Unix(1_800_000_000, 0)})
			return o
		}(), status.InProgressStatus, ""},
		{"no status", fooObject(1, nil), status.UnknownStatus, `health check failed of example.com/v1 Foo: expression "status.phase == 'Broken'`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, msg, err := r.evaluate(tc.obj)
			if tc.err != "" {
				var he *HealthExprError
				if !errors.As(err, &he) || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "no such key") {
					t.Fatalf("error %v, want a HealthExprError saying %q and the cause", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %s (%s), %v; want %s", got, msg, err, tc.want)
			}
		})
	}
}

func TestHealthRuleCostLimit(t *testing.T) {
	hc, err := CompileHealthChecks([]HealthCheck{{APIVersion: "example.com/v1", Kind: "Foo",
		Current: "status.items.all(a, status.items.all(b, status.items.all(c, a + b + c >= 0)))"}})
	if err != nil {
		t.Fatal(err)
	}
	items := make([]any, 300)
	for i := range items {
		items[i] = int64(i)
	}
	_, _, err = hc.find("example.com/v1", "Foo").evaluate(fooObject(1, map[string]any{"items": items}))
	// The cost limit stops it within milliseconds; on a machine slow enough (the race detector),
	// the time limit may come first. Either is a bounded, named failure.
	if err == nil || !strings.Contains(err.Error(), "cost limit exceeded") && !strings.Contains(err.Error(), "took longer than") {
		t.Fatalf("an expression of 27 million steps: %v", err)
	}
}

func TestBuiltinHealthChecks(t *testing.T) {
	cert := func(ready, issuingReason string) *unstructured.Unstructured {
		conds := []any{map[string]any{"type": "Ready", "status": ready, "reason": "Issuing"}}
		if issuingReason != "" {
			conds = append(conds, map[string]any{"type": "Issuing", "status": "False", "reason": issuingReason})
		}
		return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
			"metadata": map[string]any{"name": "web", "generation": int64(1)}, "status": map[string]any{"conditions": conds}}}
	}
	// kstatus itself calls a Certificate that cert-manager has not looked at yet Current: the
	// reason for the rule.
	fresh := cert("False", "")
	unstructured.RemoveNestedField(fresh.Object, "status")
	if r, err := status.Compute(fresh); err != nil || r.Status != status.CurrentStatus {
		t.Fatalf("kstatus on a new Certificate: %v, %v (the built-in rule may no longer be needed)", r, err)
	}
	hc, err := CompileHealthChecks(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		obj  *unstructured.Unstructured
		want status.Status
	}{
		{fresh, status.InProgressStatus},
		{cert("False", ""), status.InProgressStatus},
		{cert("True", ""), status.CurrentStatus},
		{cert("False", "Failed"), status.FailedStatus},
	} {
		got, msg, err := hc.find(tc.obj.GetAPIVersion(), tc.obj.GetKind()).evaluate(tc.obj)
		if err != nil || got != tc.want {
			t.Errorf("%v: got %s (%s), %v; want %s", tc.obj.Object["status"], got, msg, err, tc.want)
		}
	}
	// Configuration overrides a built-in rule of the same group and kind, in any version.
	hc, err = CompileHealthChecks([]HealthCheck{{APIVersion: "cert-manager.io/v1", Kind: "Certificate", Current: "true"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, _, _ := hc.find("cert-manager.io/v1", "Certificate").evaluate(cert("False", "")); got != status.CurrentStatus {
		t.Errorf("configured rule did not override the built-in: %s", got)
	}
	if hc.find("cert-manager.io/v1", "ClusterIssuer") == nil {
		t.Error("built-ins of other kinds are kept")
	}
}

// statusCRD declares a cluster-scoped CRD with a status subresource, so that only a status
// update (as a controller makes) changes the status.
func statusCRD(t testing.TB, group, kind string) render.Object {
	plural := lower(kind) + "s"
	return obj(t, "crds/"+plural+".yaml", fmt.Sprintf(`apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: %s.%s
spec:
  group: %s
  scope: Cluster
  names: {kind: %s, plural: %s, singular: %s, listKind: %sList}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
`, plural, group, group, kind, plural, lower(kind), kind))
}

// healthEngine is an engine of the shared cluster with rules.
func healthEngine(t *testing.T, rules ...HealthCheck) *Engine {
	t.Helper()
	hc, err := CompileHealthChecks(rules)
	if err != nil {
		t.Fatal(err)
	}
	opts := DefaultOptions()
	opts.PollInterval, opts.HealthChecks = 100*time.Millisecond, hc
	e, err := New(cluster.Shared(t).Config, opts)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// setPhase writes status.phase through the status subresource once the object exists; it gives up
// after a bounded number of tries.
func setPhase(t *testing.T, v *env, gvr schema.GroupVersionResource, name, phase string, before func()) {
	t.Helper()
	for i := 0; ; i++ {
		u, err := v.dyn.Resource(gvr).Get(t.Context(), name, metav1.GetOptions{})
		if err == nil {
			if before != nil {
				before()
			}
			if err = unstructured.SetNestedField(u.Object, phase, "status", "phase"); err == nil {
				if _, err = v.dyn.Resource(gvr).UpdateStatus(t.Context(), u, metav1.UpdateOptions{}); err == nil {
					return
				}
			}
		}
		if i == 300 {
			t.Fatalf("set status of %s: %v", name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestCustomHealthOnCluster(t *testing.T) {
	v := newEnv(t)
	const group = "health.ferry.test"
	gvr := schema.GroupVersionResource{Group: group, Version: "v1", Resource: "gadgets"}
	e := healthEngine(t, HealthCheck{APIVersion: group + "/v1", Kind: "Gadget",
		Current: "status.?phase.orValue('') == 'Ready'", Failed: "status.?phase.orValue('') == 'Broken'"})
	app := App{Name: "cel-health", Timeout: time.Minute}
	run := func(name string) chan error {
		done := make(chan error, 1)
		go func() {
			_, err := e.Sync(t.Context(), app, "r-"+name, []render.Object{statusCRD(t, group, "Gadget"), cr(t, group, "Gadget", "", name, "x")})
			done <- err
		}()
		return done
	}

	t.Run("current once the status says so", func(t *testing.T) {
		done := run("ready")
		setPhase(t, v, gvr, "ready", "Ready", func() {
			// kstatus would call the status-less object Current at once; the rule must not.
			select {
			case err := <-done:
				t.Fatalf("sync ended before the status said Ready: %v", err)
			default:
			}
		})
		if err := <-done; err != nil {
			t.Fatalf("sync after status Ready: %v", err)
		}
	})
	t.Run("failed expression fails the sync", func(t *testing.T) {
		done := run("broken")
		setPhase(t, v, gvr, "broken", "Broken", nil)
		err := <-done
		var ae *Error
		if !errors.As(err, &ae) || ae.Stage != StageHealth || ae.Object != "Gadget broken" ||
			!strings.Contains(ae.Message, "health check failed is true: status.?phase.orValue('') == 'Broken'") {
			t.Fatalf("sync of a broken object: %v", err)
		}
		if IsTransient(err) {
			t.Error("a failed health check is retried: it should end the sync")
		}
	})
	t.Run("expression error fails the sync naming it", func(t *testing.T) {
		e := healthEngine(t, HealthCheck{APIVersion: group + "/*", Kind: "Gadget", Current: "status.phase == 'Ready'"})
		_, err := e.Sync(t.Context(), app, "r-err", []render.Object{statusCRD(t, group, "Gadget"), cr(t, group, "Gadget", "", "nostatus", "x")})
		var he *HealthExprError
		var ae *Error
		if !errors.As(err, &ae) || ae.Stage != StageHealth || !errors.As(err, &he) ||
			!strings.Contains(err.Error(), `expression "status.phase == 'Ready'"`) || !strings.Contains(err.Error(), "no such key: phase") {
			t.Fatalf("sync with an expression that cannot be evaluated: %v", err)
		}
		if IsTransient(err) {
			t.Error("an expression error is retried: it should end the sync")
		}
	})
}
