package policy

import (
	"errors"
	"strings"
	"testing"

	"github.com/ferrygitops/ferry/syncer/apply"
)

func target(group, kind, ns, name string, namespaced bool) apply.Target {
	return apply.Target{ID: apply.ID{Group: group, Kind: kind, Namespace: ns, Name: name}, File: "apps/x/" + strings.ToLower(kind) + ".yaml", Namespaced: namespaced}
}

func TestAdmit(t *testing.T) {
	repo := Policy{Owner: "repository team-a", Namespaces: []string{"team-a-*"}, ClusterKinds: []string{"Namespace", "CustomResourceDefinition.apiextensions.k8s.io"}}
	app := Policy{Owner: "app web", Namespaces: []string{"team-a-web"}}
	deploy := target("apps", "Deployment", "team-a-web", "api", true)
	tests := []struct {
		name   string
		ps     []Policy
		t      apply.Target
		denied string // "": admitted
	}{
		{"no rules admit all", nil, target("rbac.authorization.k8s.io", "ClusterRoleBinding", "", "admin", false), ""},
		{"namespace matches the glob", []Policy{repo}, deploy, ""},
		{"another team's namespace", []Policy{repo}, target("", "ConfigMap", "team-b", "x", true),
			"policy: ConfigMap team-b/x (apps/x/configmap.yaml): namespace team-b is not allowed by repository team-a's policy (namespaces: team-a-*)"},
		{"app narrows its repository", []Policy{repo, app}, target("", "ConfigMap", "team-a-db", "x", true),
			"policy: ConfigMap team-a-db/x (apps/x/configmap.yaml): namespace team-a-db is not allowed by app web's policy (namespaces: team-a-web)"},
		{"app within both", []Policy{repo, app}, deploy, ""},
		{"cluster kind not listed", []Policy{repo}, target("rbac.authorization.k8s.io", "ClusterRoleBinding", "", "admin", false),
			"policy: ClusterRoleBinding admin (apps/x/clusterrolebinding.yaml): cluster-scoped ClusterRoleBinding.rbac.authorization.k8s.io is not allowed by repository team-a's policy (clusterKinds: Namespace, CustomResourceDefinition.apiextensions.k8s.io)"},
		{"cluster kind listed with its group", []Policy{repo}, target("apiextensions.k8s.io", "CustomResourceDefinition", "", "widgets.example.com", false), ""},
		{"a listed kind of another group", []Policy{{Owner: "app x", ClusterKinds: []string{"Thing.example.com"}}}, target("other.io", "Thing", "", "t", false),
			"policy: Thing t (apps/x/thing.yaml): cluster-scoped Thing.other.io is not allowed by app x's policy (clusterKinds: Thing.example.com)"},
		{"no cluster-scoped objects by default", []Policy{{Owner: "app x", Namespaces: []string{"x"}}}, target("", "Namespace", "", "x", false),
			"policy: Namespace x (apps/x/namespace.yaml): cluster-scoped Namespace is not allowed by app x's policy (clusterKinds: none)"},
		{"a Namespace is named within the globs", []Policy{repo}, target("", "Namespace", "", "kube-public", false),
			"policy: Namespace kube-public (apps/x/namespace.yaml): namespace kube-public is not allowed by repository team-a's policy (namespaces: team-a-*)"},
		{"a Namespace within the globs", []Policy{repo}, target("", "Namespace", "", "team-a-web", false), ""},
		{"clusterScoped allows every kind", []Policy{{Owner: "repository ops", ClusterScoped: true}}, target("rbac.authorization.k8s.io", "ClusterRole", "", "x", false), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			admit := Admit(tt.ps)
			if len(tt.ps) == 0 {
				if admit != nil {
					t.Fatal("no rules gave a check")
				}
				return
			}
			err := admit([]apply.Target{tt.t})
			got := ""
			if err != nil {
				got = err.Error()
				var ae *apply.Error
				if !errors.As(err, &ae) || ae.Stage != apply.StagePolicy || ae.File != tt.t.File {
					t.Errorf("error %#v is not a denial naming the file", err)
				}
				if apply.IsTransient(err) {
					t.Error("a denial is transient")
				}
			}
			if got != tt.denied {
				t.Errorf("got  %q\nwant %q", got, tt.denied)
			}
		})
	}
}

func TestAdmitReportsEveryObject(t *testing.T) {
	err := Admit([]Policy{{Owner: "app x", Namespaces: []string{"x"}}})([]apply.Target{
		target("", "ConfigMap", "y", "a", true), target("", "ConfigMap", "x", "b", true), target("", "Secret", "z", "c", true),
	})
	if err == nil || !strings.Contains(err.Error(), "ConfigMap y/a") || !strings.Contains(err.Error(), "Secret z/c") || strings.Contains(err.Error(), "x/b") {
		t.Errorf("error %v, want the two objects outside x", err)
	}
}

func TestValidate(t *testing.T) {
	for _, tt := range []struct {
		p   Policy
		err string
	}{
		{Policy{Namespaces: []string{"team-a-*"}, ClusterKinds: []string{"Namespace"}}, ""},
		{Policy{Namespaces: []string{"team-[a"}}, `namespaces: pattern "team-[a": syntax error in pattern`},
		{Policy{Namespaces: []string{""}}, "namespaces: empty pattern"},
		{Policy{ClusterScoped: true, ClusterKinds: []string{"Namespace"}}, "set clusterScoped (every cluster-scoped kind) or clusterKinds (only these), not both"},
		{Policy{ClusterKinds: []string{"rbac/ClusterRole"}}, `clusterKinds: "rbac/ClusterRole" is not a Kind or Kind.group`},
	} {
		got := ""
		if err := tt.p.Validate(); err != nil {
			got = err.Error()
		}
		if got != tt.err {
			t.Errorf("Validate(%+v) = %q, want %q", tt.p, got, tt.err)
		}
	}
}
