package apply

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestStageOf(t *testing.T) {
	builtin := newBuiltinKinds()
	gk := func(group, kind string) schema.GroupKind { return schema.GroupKind{Group: group, Kind: kind} }
	tests := []struct {
		gk          schema.GroupKind
		namespaced  bool
		definedHere bool
		want        int
	}{
		{crdGK, false, false, stageCluster},
		{gk("", "Namespace"), false, false, stageCluster},
		{gk("rbac.authorization.k8s.io", "ClusterRole"), false, false, stageCluster},
		{gk("storage.k8s.io", "StorageClass"), false, false, stageCluster},
		{gk("storage.k8s.io", "CSIDriver"), false, false, stageCluster},
		{gk("networking.k8s.io", "IngressClass"), false, false, stageCluster},
		{gk("node.k8s.io", "RuntimeClass"), false, false, stageCluster},
		{gk("scheduling.k8s.io", "PriorityClass"), false, false, stageCluster},
		{gk("", "PersistentVolume"), false, false, stageCluster},
		// Custom cluster-scoped kinds of groups named like built-in ones: served by CRDs, so they
		// wait for them, whether their CRD is in the commit or already in the cluster.
		{gk("gateway.networking.k8s.io", "GatewayClass"), false, true, stageRest},
		{gk("gateway.networking.k8s.io", "GatewayClass"), false, false, stageRest},
		{gk("snapshot.storage.k8s.io", "VolumeSnapshotClass"), false, true, stageRest},
		{gk("groupsnapshot.storage.k8s.io", "VolumeGroupSnapshotClass"), false, false, stageRest},
		{gk("cluster.x-k8s.io", "ClusterClass"), false, true, stageRest},
		{gk("policy.networking.k8s.io", "AdminNetworkPolicy"), false, false, stageRest},
		{gk("example.com", "ClusterWidget"), false, false, stageRest},
		// Served by an aggregated API server, not by kube-apiserver itself.
		{gk("metrics.k8s.io", "NodeMetrics"), false, false, stageRest},
		{gk("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"), false, false, stageAdmission},
		{gk("admissionregistration.k8s.io", "MutatingWebhookConfiguration"), false, false, stageAdmission},
		{gk("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"), false, false, stageAdmission},
		{gk("apiregistration.k8s.io", "APIService"), false, false, stageAdmission},
		{gk("apps", "Deployment"), true, false, stageRest},
		{gk("", "ConfigMap"), true, false, stageRest},
		{gk("gateway.networking.k8s.io", "Gateway"), true, true, stageRest},
	}
	for _, tt := range tests {
		if got := builtin.stageOf(tt.gk, tt.namespaced, tt.definedHere); got != tt.want {
			t.Errorf("stageOf(%v, namespaced=%v, definedHere=%v) = %d, want %d", tt.gk, tt.namespaced, tt.definedHere, got, tt.want)
		}
	}
}

// TestPlanTextUnvalidated: a custom resource whose CRD is new cannot be dry-run, and the plan says
// so in its one-line summary and next to the object.
func TestPlanTextUnvalidated(t *testing.T) {
	p := &Plan{Created: 2, Unvalidated: 1, Entries: []PlanEntry{
		{ID: ID{Group: crdGK.Group, Kind: crdGK.Kind, Name: "widgets.example.com"}, File: "crds.yaml", Action: PlanCreate},
		{ID: ID{Group: "example.com", Kind: "Widget", Namespace: "db", Name: "w"}, File: "w.yaml", Action: PlanCreate, Unvalidated: true},
	}}
	if got, want := p.Summary(), "0 changed, 2 created, 0 pruned; 1 not validated (new CRDs)"; got != want {
		t.Errorf("Summary() = %q, want %q", got, want)
	}
	want := "+ CustomResourceDefinition widgets.example.com  (crds.yaml)  create\n" +
		"+ Widget db/w  (w.yaml)  create (not validated: its CRD is new in this change)\n"
	if got := p.Text(); got != want {
		t.Errorf("Text() = %q, want %q", got, want)
	}
	p.Unvalidated, p.Entries[1].Unvalidated = 0, false
	if strings.Contains(p.Summary()+p.Text(), "not validated") {
		t.Errorf("a fully validated plan reads %q / %q", p.Summary(), p.Text())
	}
}
