package main

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ferrygitops/ferry/syncer/policy"
)

// tenancyConfig is a valid config with two teams' apps; top is added at the top level, repo to
// the repository, web and db to the apps.
func tenancyConfig(top, repo, web, db string) []byte {
	indent := func(s, pad string) string {
		if s == "" {
			return ""
		}
		return pad + strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n"+pad) + "\n"
	}
	return []byte(`externalURL: https://ferry.example.com
` + top + `repos:
  - name: team-a
    url: https://github.com/acme/team-a.git
    provider: github
    webhookSecret: {env: HOOK_SECRET}
` + indent(repo, "    ") + `apps:
  - name: web
    repo: team-a
    path: apps/web
    namespace: team-a-web
` + indent(web, "    ") + `  - name: db
    repo: team-a
    path: apps/db
` + indent(db, "    "))
}

var tenancyEnv = env(map[string]string{"HOOK_SECRET": "s3cret"})

func TestTenancyConfig(t *testing.T) {
	cfg, sec, err := ParseConfig(tenancyConfig("defaultServiceAccountName: deployer\nrequireServiceAccount: true\n",
		"policy: {namespaces: [team-a-*], clusterKinds: [Namespace]}",
		"policy: {namespaces: [team-a-web]}",
		"namespace: team-a-db\nserviceAccountName: team-a-ops/db-deployer"), tenancyEnv)
	if err != nil {
		t.Fatal(err)
	}
	apps := syncerApps(cfg, sec)
	web, db := apps[0], apps[1]
	if web.ServiceAccount != "deployer" || db.ServiceAccount != "team-a-ops/db-deployer" {
		t.Errorf("service accounts %q, %q; want the default and the app's own", web.ServiceAccount, db.ServiceAccount)
	}
	repo := policy.Policy{Owner: "repository team-a", Namespaces: []string{"team-a-*"}, ClusterKinds: []string{"Namespace"}}
	if diff := cmp.Diff([]policy.Policy{repo, {Owner: "app web", Namespaces: []string{"team-a-web"}}}, web.Policy); diff != "" {
		t.Errorf("web's policy (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]policy.Policy{repo}, db.Policy); diff != "" {
		t.Errorf("db's policy (-want +got):\n%s", diff)
	}

	cfg, sec, err = ParseConfig(tenancyConfig("", "", "", ""), tenancyEnv)
	if err != nil {
		t.Fatal(err)
	}
	if a := syncerApps(cfg, sec)[0]; a.ServiceAccount != "" || a.Policy != nil {
		t.Errorf("without tenancy settings the app has %q and %v", a.ServiceAccount, a.Policy)
	}
}

func TestTenancyConfigRefused(t *testing.T) {
	for _, tc := range []struct {
		name           string
		top, repo, web string
		db             string
		want           string
	}{
		{"strict without accounts", "requireServiceAccount: true\n", "", "serviceAccountName: deployer", "",
			"app db: requireServiceAccount is set, and the app has no serviceAccountName (nor is there a defaultServiceAccountName)"},
		{"default without the app's namespace", "defaultServiceAccountName: deployer\n", "", "", "",
			`app db: service account "deployer": no namespace (write namespace/name, or give the app a namespace)`},
		{"bad account", "", "", "serviceAccountName: Team_A/x", "", `app web: service account "Team_A/x": invalid namespace`},
		{"bad default", "defaultServiceAccountName: a/b/c\n", "", "", "", `defaultServiceAccountName: service account "a/b/c": invalid name`},
		{"bad glob", "", "policy: {namespaces: ['team-[a']}", "", "", `repo team-a: policy: namespaces: pattern "team-[a"`},
		{"both cluster settings", "", "", "policy: {clusterScoped: true, clusterKinds: [Namespace]}", "",
			"app web: policy: set clusterScoped (every cluster-scoped kind) or clusterKinds (only these), not both"},
		{"readAuth without credentials", "readAuth: true\n", "", "", "", "readAuth needs apiTokens or authProxy"},
		{"unknown policy key", "", "policy: {namespace: [a]}", "", "", `unknown key "namespace"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ParseConfig(tenancyConfig(tc.top, tc.repo, tc.web, tc.db), tenancyEnv)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}
