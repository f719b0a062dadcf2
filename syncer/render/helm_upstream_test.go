package render

import (
	"os"
	"strings"
	"testing"

	"github.com/ferrygitops/ferry/test/upstream"
	"github.com/google/go-cmp/cmp"
)

// upstreamCharts are real public charts that Go projects ship inside their module, so the Go
// module proxy serves them: rendered offline with their default values, as an app named "rel"
// in namespace "ns".
var upstreamCharts = []struct {
	module, version, dir string
	// values are the app's values, if any.
	values map[string]any
	// kinds counts the objects rendered by kind.
	kinds map[string]int
	// names are objects (kind/name) that must be among them.
	names []string
	// hooks are the hooks (kind/name) and what they ask for.
	hooks map[string]Hook
}{{
	module: "sigs.k8s.io/metrics-server", version: "v0.9.0", dir: "charts/metrics-server",
	kinds: map[string]int{"APIService": 1, "ClusterRole": 2, "ClusterRoleBinding": 2, "Deployment": 1, "RoleBinding": 1, "Service": 1, "ServiceAccount": 1},
	names: []string{"APIService/v1beta1.metrics.k8s.io", "Deployment/rel-metrics-server", "Service/rel-metrics-server"},
	hooks: map[string]Hook{},
}, {
	// Vendored subcharts (charts/grafana, enabled here, and charts/crds, disabled with the
	// kyverno-api dependency that the repository does not vendor), and post-upgrade hooks.
	module: "github.com/kyverno/kyverno", version: "v1.19.1", dir: "charts/kyverno",
	values: map[string]any{"crds": map[string]any{"install": false}, "grafana": map[string]any{"enabled": true}},
	kinds:  map[string]int{"ClusterRole": 17, "ClusterRoleBinding": 8, "ConfigMap": 3, "Deployment": 4, "Job": 1, "Role": 4, "RoleBinding": 4, "Service": 6, "ServiceAccount": 5},
	names:  []string{"Deployment/kyverno-admission-controller", "Deployment/kyverno-reports-controller"},
	hooks: map[string]Hook{
		"ClusterRole/rel-kyverno:migrate-resources":        {Upgrade: true, Weight: 100, DeletePolicies: []string{HookBeforeCreation, HookSucceeded, HookFailed}},
		"ClusterRoleBinding/rel-kyverno:migrate-resources": {Upgrade: true, Weight: 100, DeletePolicies: []string{HookBeforeCreation, HookSucceeded, HookFailed}},
		"ServiceAccount/rel-kyverno-migrate-resources":     {Upgrade: true, Weight: 100, DeletePolicies: []string{HookBeforeCreation, HookSucceeded}},
		"Job/rel-kyverno-migrate-resources":                {Upgrade: true, Weight: 200, DeletePolicies: []string{HookBeforeCreation}},
	},
}, {
	// Pre-install/pre-upgrade and post-install hooks with weights and delete policies.
	module: "github.com/open-policy-agent/gatekeeper/v3", version: "v3.23.1", dir: "charts/gatekeeper",
	kinds: map[string]int{"ClusterRole": 3, "ClusterRoleBinding": 3, "CustomResourceDefinition": 17, "Deployment": 2, "Job": 2, "MutatingWebhookConfiguration": 1, "PodDisruptionBudget": 1, "ResourceQuota": 1, "Role": 1, "RoleBinding": 1, "Secret": 1, "Service": 1, "ServiceAccount": 3, "ValidatingWebhookConfiguration": 1},
	names: []string{"Deployment/gatekeeper-audit", "Deployment/gatekeeper-controller-manager"},
	hooks: map[string]Hook{
		"Job/gatekeeper-update-namespace-label":                {Install: true, Weight: -5, DeletePolicies: []string{HookSucceeded, HookBeforeCreation}},
		"ServiceAccount/gatekeeper-update-namespace-label":     {Install: true, Weight: -5, DeletePolicies: []string{HookSucceeded, HookBeforeCreation}},
		"ClusterRole/gatekeeper-update-namespace-label":        {Install: true, Weight: -5, DeletePolicies: []string{HookSucceeded, HookBeforeCreation}},
		"ClusterRoleBinding/gatekeeper-update-namespace-label": {Install: true, Weight: -5, DeletePolicies: []string{HookSucceeded, HookBeforeCreation}},
		"ClusterRole/gatekeeper-admin-upgrade-crds":            {Pre: true, Install: true, Upgrade: true, Weight: 1, DeletePolicies: []string{HookSucceeded, HookBeforeCreation}},
		"ClusterRoleBinding/gatekeeper-admin-upgrade-crds":     {Pre: true, Install: true, Upgrade: true, Weight: 1, DeletePolicies: []string{HookSucceeded, HookBeforeCreation}},
		"ServiceAccount/gatekeeper-admin-upgrade-crds":         {Pre: true, Install: true, Upgrade: true, Weight: 1, DeletePolicies: []string{HookSucceeded, HookBeforeCreation}},
		"Job/gatekeeper-update-crds-hook":                      {Pre: true, Install: true, Upgrade: true, Weight: 1, DeletePolicies: []string{HookSucceeded, HookBeforeCreation}},
	},
}, {
	module: "sigs.k8s.io/kueue", version: "v0.17.0", dir: "charts/kueue",
	kinds: map[string]int{"APIService": 2, "ClusterRole": 47, "ClusterRoleBinding": 2, "ConfigMap": 1, "CustomResourceDefinition": 11, "Deployment": 1, "MutatingWebhookConfiguration": 1, "Role": 3, "RoleBinding": 4, "Secret": 1, "Service": 3, "ServiceAccount": 1, "ValidatingWebhookConfiguration": 1},
	names: []string{"CustomResourceDefinition/clusterqueues.kueue.x-k8s.io", "CustomResourceDefinition/workloads.kueue.x-k8s.io"},
	hooks: map[string]Hook{},
}}

func TestHelmUpstreamCharts(t *testing.T) {
	for _, c := range upstreamCharts {
		t.Run(c.module, func(t *testing.T) {
			d, err := upstream.Dir(t.Context(), c.module, c.version)
			if err != nil {
				t.Fatal(err)
			}
			opts := DefaultOptions()
			opts.Helm = &Helm{ReleaseName: "rel", Namespace: "ns", Capabilities: clusterCaps, Values: c.values}
			objs, err := Render(os.DirFS(d), c.dir, opts)
			if err != nil {
				t.Fatal(err)
			}
			kinds := map[string]int{}
			names := map[string]bool{}
			hooks := map[string]Hook{}
			for _, o := range objs {
				kinds[o.GetKind()]++
				names[o.GetKind()+"/"+o.GetName()] = true
				if o.Hook != nil {
					hooks[o.GetKind()+"/"+o.GetName()] = *o.Hook
				}
				if !strings.HasPrefix(o.File, c.dir+"/") {
					t.Errorf("%s %s from %q, not under %s", o.GetKind(), o.GetName(), o.File, c.dir)
				}
			}
			if diff := cmp.Diff(c.kinds, kinds); diff != "" {
				t.Errorf("objects by kind (-want +got):\n%s", diff)
			}
			for _, n := range c.names {
				if !names[n] {
					t.Errorf("no %s", n)
				}
			}
			if diff := cmp.Diff(c.hooks, hooks); diff != "" {
				t.Errorf("hooks (-want +got):\n%s", diff)
			}
		})
	}
}

// TestHelmUpstreamNotVendored renders kyverno's chart as its repository holds it, with its
// defaults: it declares kyverno-api, which is fetched only when the chart is packaged, so the
// render fails naming it, as helm install does.
func TestHelmUpstreamNotVendored(t *testing.T) {
	d, err := upstream.Dir(t.Context(), "github.com/kyverno/kyverno", "v1.19.1")
	if err != nil {
		t.Fatal(err)
	}
	opts := DefaultOptions()
	opts.Helm = &Helm{ReleaseName: "rel", Namespace: "ns", Capabilities: clusterCaps}
	_, err = Render(os.DirFS(d), "charts/kyverno", opts)
	if err == nil || !strings.Contains(err.Error(), "charts/kyverno/Chart.yaml: dependencies kyverno-api are not vendored") {
		t.Errorf("error %v, want kyverno-api named as not vendored", err)
	}
}
