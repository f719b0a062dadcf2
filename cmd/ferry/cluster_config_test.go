package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// kubeSecret is the bearer token of the test kubeconfigs: no error may show it.
const kubeSecret = "kube-secret-token-7f3a"

// writeKubeconfig writes a kubeconfig with contexts main (current) and other, whose user is
// user; it returns its path and its content.
func writeKubeconfig(t *testing.T, server string, user *clientcmdapi.AuthInfo) (string, string) {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["main"] = &clientcmdapi.Cluster{Server: server, InsecureSkipTLSVerify: true}
	kc.Clusters["other"] = &clientcmdapi.Cluster{Server: "https://other.example.com:6443", InsecureSkipTLSVerify: true}
	kc.AuthInfos["u"] = user
	kc.Contexts["main"] = &clientcmdapi.Context{Cluster: "main", AuthInfo: "u"}
	kc.Contexts["other"] = &clientcmdapi.Context{Cluster: "other", AuthInfo: "u"}
	kc.CurrentContext = "main"
	p := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, p); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return p, string(b)
}

const clustersConfig = `
externalURL: https://ferry.example.com
repos:
  - {name: platform, url: "https://github.com/acme/platform.git", provider: github, webhookSecret: {env: HOOK_SECRET}}
clusters:
  - {name: staging, kubeconfig: {file: STAGING_FILE}}
  - {name: prod, kubeconfig: {env: PROD_KUBECONFIG}, context: other, maxConcurrentSyncs: 2}
defaultCluster: {maxConcurrentSyncs: 3}
apps:
  - {name: db, repo: platform, path: apps/db}
  - {name: cache, repo: platform, path: apps/cache, cluster: prod}
  - name: api
    repo: platform
    path: apps/api
    namespace: api
    substitute: {replicas: "3", tier: web}
    dependsOn: [db]
    targets:
      - {cluster: staging, substitute: {replicas: "1"}}
      - {cluster: prod, name: api-production, namespace: api-prod}
  - name: worker
    repo: platform
    path: apps/worker
    dependsOn: [api, cache]
    targets: [{cluster: staging}, {cluster: prod}]
`

func clustersEnv(t *testing.T) (string, map[string]string) {
	staging, _ := writeKubeconfig(t, "https://staging.example.com:6443", &clientcmdapi.AuthInfo{Token: kubeSecret})
	_, prod := writeKubeconfig(t, "https://prod.example.com:6443", &clientcmdapi.AuthInfo{Token: kubeSecret})
	doc := strings.ReplaceAll(clustersConfig, "STAGING_FILE", staging)
	return doc, map[string]string{"HOOK_SECRET": "s3cret", "PROD_KUBECONFIG": prod}
}

func TestClustersConfig(t *testing.T) {
	doc, vars := clustersEnv(t)
	cfg, sec, err := ParseConfig([]byte(doc), env(vars))
	if err != nil {
		t.Fatal(err)
	}
	type app struct {
		Name, Cluster, Namespace string
		DependsOn                []string
		Substitute               map[string]string
	}
	var got []app
	for _, a := range cfg.Apps {
		got = append(got, app{a.Name, clusterOf(a), a.Namespace, a.DependsOn, a.Substitute})
	}
	want := []app{
		{"db", "default", "", nil, nil},
		{"cache", "prod", "", nil, nil},
		{"api-staging", "staging", "api", []string{"db"}, map[string]string{"replicas": "1", "tier": "web"}},
		{"api-production", "prod", "api-prod", []string{"db"}, map[string]string{"replicas": "3", "tier": "web"}},
		// A matrix app's dependency on another matrix app is its instance on the same cluster.
		{"worker-staging", "staging", "", []string{"api-staging", "cache"}, nil},
		{"worker-prod", "prod", "", []string{"api-production", "cache"}, nil},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("apps (-want +got):\n%s", diff)
	}
	if h := sec.Clusters["staging"].Host; h != "https://staging.example.com:6443" {
		t.Errorf("staging host %q", h)
	}
	if h := sec.Clusters["prod"].Host; h != "https://other.example.com:6443" {
		t.Errorf("prod host %q: want the context the config names", h)
	}
	if tok := sec.Clusters["prod"].BearerToken; tok != kubeSecret {
		t.Errorf("prod token not read from the kubeconfig in the environment")
	}
	// The instances' settings are their own: the matrix app's substitute is not shared.
	cfg.Apps[2].Substitute["replicas"] = "9"
	if cfg.Apps[3].Substitute["replicas"] != "3" {
		t.Error("instances share their substitute map")
	}
	infos := appInfos(cfg)
	if infos[0].Cluster != "default" || infos[3].Cluster != "prod" {
		t.Errorf("app infos name clusters %q, %q", infos[0].Cluster, infos[3].Cluster)
	}
}

// TestClustersConfigExecPlugin: a kubeconfig whose credentials come from an exec plugin is
// taken when the plugin is installed.
func TestClustersConfigExecPlugin(t *testing.T) {
	kc, _ := writeKubeconfig(t, "https://eks.example.com", &clientcmdapi.AuthInfo{Exec: &clientcmdapi.ExecConfig{
		Command: "sh", Args: []string{"-c", "true"}, APIVersion: "client.authentication.k8s.io/v1", InteractiveMode: clientcmdapi.NeverExecInteractiveMode}})
	doc := `
externalURL: https://ferry.example.com
repos:
  - {name: platform, url: "https://github.com/acme/platform.git", provider: github, webhookSecret: {env: HOOK_SECRET}}
clusters: [{name: eks, kubeconfig: {file: ` + kc + `}}]
apps: [{name: api, repo: platform, path: apps/api, cluster: eks}]
`
	if _, sec, err := ParseConfig([]byte(doc), env(map[string]string{"HOOK_SECRET": "s3cret"})); err != nil || sec.Clusters["eks"] == nil {
		t.Fatalf("kubeconfig with an installed exec plugin: %v", err)
	}
}

func TestClustersConfigRefuses(t *testing.T) {
	base, vars := clustersEnv(t)
	noPlugin, _ := writeKubeconfig(t, "https://eks.example.com", &clientcmdapi.AuthInfo{Exec: &clientcmdapi.ExecConfig{
		Command: "ferry-test-no-such-credential-plugin", APIVersion: "client.authentication.k8s.io/v1"}})
	authProvider, _ := writeKubeconfig(t, "https://gke.example.com", &clientcmdapi.AuthInfo{AuthProvider: &clientcmdapi.AuthProviderConfig{
		Name: "gcp", Config: map[string]string{"access-token": kubeSecret}}})
	garbage := filepath.Join(t.TempDir(), "garbage")
	if err := os.WriteFile(garbage, []byte("apiVersion: v1\nkind: Config\nusers:\n- name: u\n  user: {token: "+kubeSecret+"\n  oops: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	noContext := filepath.Join(t.TempDir(), "nocontext")
	if err := os.WriteFile(noContext, []byte("apiVersion: v1\nkind: Config\nusers: [{name: u, user: {token: "+kubeSecret+"}}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stagingFile := func(p string) string {
		return strings.Replace(base, base[strings.Index(base, "{file: ")+7:strings.Index(base, "}}\n  - {name: prod")], p, 1)
	}
	tests := []struct {
		name string
		doc  string
		vars map[string]string
		want []string
	}{
		{"unknown cluster", strings.Replace(base, "cluster: prod}", "cluster: prd}", 1), vars, []string{"app cache", `cluster "prd" is not configured`, "default, prod, staging"}},
		{"unknown target cluster", strings.Replace(base, "{cluster: staging}, {cluster: prod}", "{cluster: staging}, {cluster: qa}", 1), vars, []string{"app worker-qa", `cluster "qa" is not configured`}},
		{"unreadable kubeconfig", stagingFile("/nonexistent/kubeconfig"), vars, []string{"cluster staging", "kubeconfig file /nonexistent/kubeconfig", "no such file"}},
		{"kubeconfig variable unset", base, map[string]string{"HOOK_SECRET": "s3cret"}, []string{"cluster prod", "PROD_KUBECONFIG", "not set"}},
		{"invalid kubeconfig", stagingFile(garbage), vars, []string{"cluster staging", "kubeconfig file " + garbage, "not a kubeconfig"}},
		{"no current context", stagingFile(noContext), vars, []string{"cluster staging", "no current-context"}},
		{"unknown context", strings.Replace(base, "context: other", "context: elsewhere", 1), vars, []string{"cluster prod", `no context "elsewhere"`, "main, other"}},
		{"exec plugin missing", stagingFile(noPlugin), vars, []string{"cluster staging", "kubeconfig file " + noPlugin, `exec plugin "ferry-test-no-such-credential-plugin"`, "not found in PATH"}},
		{"auth provider", stagingFile(authProvider), vars, []string{"cluster staging", `auth-provider plugin "gcp"`}},
		{"no kubeconfig", strings.Replace(base, "{name: staging, kubeconfig: {file: ", "{name: staging, context: x, kubecfg: {file: ", 1), vars, []string{`unknown key "kubecfg"`}},
		{"kubeconfig missing", strings.Replace(base, "  - {name: prod, kubeconfig: {env: PROD_KUBECONFIG}, context: other, maxConcurrentSyncs: 2}\n", "  - {name: prod}\n", 1), vars, []string{"cluster prod: kubeconfig is required"}},
		{"kubeconfig both", strings.Replace(base, "{env: PROD_KUBECONFIG}", "{env: PROD_KUBECONFIG, file: /etc/hostname}", 1), vars, []string{"cluster prod: kubeconfig names both env and file"}},
		{"cluster named default", strings.Replace(base, "{name: prod,", "{name: default,", 1), vars, []string{"cluster default", "ferry's own cluster"}},
		{"duplicate cluster", strings.Replace(base, "{name: prod,", "{name: staging,", 1), vars, []string{"cluster staging: duplicate cluster name"}},
		{"cluster not a DNS label", strings.Replace(base, "{name: prod,", "{name: Prod_EU,", 1), vars, []string{"cluster Prod_EU", "DNS label"}},
		{"cluster and targets", strings.Replace(base, "    dependsOn: [api, cache]\n", "    dependsOn: [api, cache]\n    cluster: prod\n", 1), vars, []string{"app worker: cluster and targets exclude each other"}},
		{"target twice", strings.Replace(base, "{cluster: staging}, {cluster: prod}", "{cluster: staging}, {cluster: staging, name: w2}", 1), vars, []string{"app worker: targets: cluster staging is listed twice"}},
		{"target without cluster", strings.Replace(base, "{cluster: staging}, {cluster: prod}", "{cluster: staging}, {name: w2}", 1), vars, []string{"app worker: targets[1]: cluster is required"}},
		{"made name taken", strings.Replace(base, "{name: db,", "{name: worker-prod,", 1), vars, []string{"app worker: targets: cluster prod makes app worker-prod, which is already an app's name"}},
		{"made name too long", strings.Replace(base, "name: worker\n", "name: worker-"+strings.Repeat("w", 55)+"\n", 1), vars, []string{"cluster staging makes app", "not a DNS label"}},
		{"matrix dependency on another cluster", strings.Replace(base, "{cluster: staging}, {cluster: prod}", "{cluster: staging}, {cluster: prod}, {cluster: default}", 1), vars,
			[]string{"app worker: dependsOn api: api has no target on cluster default", "api-production, api-staging"}},
		{"plain app on a matrix", strings.Replace(base, "path: apps/cache, cluster: prod}", "path: apps/cache, cluster: prod, dependsOn: [api]}", 1), vars,
			[]string{"app cache: dependsOn api names a matrix app", "api-production, api-staging"}},
		{"matrix app without a name", strings.Replace(base, "  - name: worker\n", "  - name: \"\"\n", 1), vars, []string{"name is required"}},
		{"unknown target key", strings.Replace(base, "{cluster: staging}, {cluster: prod}", "{cluster: staging}, {clustr: prod}", 1), vars, []string{`unknown key "clustr"`}},
		{"negative maxConcurrentSyncs", strings.Replace(base, "maxConcurrentSyncs: 2", "maxConcurrentSyncs: -1", 1), vars, []string{"cluster prod: maxConcurrentSyncs must not be negative"}},
		{"negative default maxConcurrentSyncs", strings.Replace(base, "maxConcurrentSyncs: 3", "maxConcurrentSyncs: -2", 1), vars, []string{"defaultCluster: maxConcurrentSyncs must not be negative"}},
		{"unknown defaultCluster key", strings.Replace(base, "{maxConcurrentSyncs: 3}", "{maxConcurrentSync: 3}", 1), vars, []string{`unknown key "maxConcurrentSync"`}},
		{"matrix app named twice", strings.Replace(base, "  - name: worker\n", "  - {name: api, repo: platform, path: x}\n  - name: worker\n", 1), vars, []string{"app api: duplicate app name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ParseConfig([]byte(tt.doc), env(tt.vars))
			if err == nil {
				t.Fatal("config accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), kubeSecret) {
				t.Errorf("error %q holds a kubeconfig's credentials", err)
			}
		})
	}
}

// TestTargetWiring: the target set holds ferry's own cluster first and each configured one;
// the syncer gets an app's cluster by the name the config gives it, and an unknown name fails.
func TestTargetWiring(t *testing.T) {
	doc, vars := clustersEnv(t)
	cfg, sec, err := ParseConfig([]byte(doc), env(vars))
	if err != nil {
		t.Fatal(err)
	}
	set, err := targetSet(&rest.Config{Host: "https://127.0.0.1:1"}, cfg, sec, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, h := range clusterHealth(set)() {
		names = append(names, h.Name+"@"+h.Server)
	}
	if diff := cmp.Diff([]string{"default@127.0.0.1:1", "staging@staging.example.com:6443", "prod@other.example.com:6443"}, names); diff != "" {
		t.Errorf("clusters (-want +got):\n%s", diff)
	}
	pick := syncerTargets{set}
	for _, a := range syncerApps(cfg, sec) {
		if _, err := pick.Target(a.Cluster); err != nil {
			t.Errorf("app %s: cluster %q: %v", a.Name, a.Cluster, err)
		}
	}
	if _, err := pick.Target("nowhere"); err == nil {
		t.Error("an unknown cluster was given out")
	}
	if got := appClusters(cfg)("worker-prod"); got != "prod" {
		t.Errorf("worker-prod's events go to %q", got)
	}
}

// TestSyncLanes: with several clusters, each app's deploys are in the lane of its cluster, bounded
// by the cluster's maxConcurrentSyncs (defaultCluster's for ferry's own, the queue's default where
// unset), and the worker pool gets them; with ferry's own cluster alone and no bound, no lanes.
func TestSyncLanes(t *testing.T) {
	doc, vars := clustersEnv(t)
	cfg, _, err := ParseConfig([]byte(doc), env(vars))
	if err != nil {
		t.Fatal(err)
	}
	copts := consumeOptions(cfg, serveOptions{}, slog.New(slog.DiscardHandler))
	if copts.Lane == nil || copts.LaneLimit == nil {
		t.Fatal("no lanes with several clusters")
	}
	lanes := map[string]string{}
	for _, a := range []string{"db", "cache", "api-staging", "api-production", "worker-prod", "removed"} {
		lanes[a] = copts.Lane(a)
	}
	want := map[string]string{"db": "default", "cache": "prod", "api-staging": "staging", "api-production": "prod", "worker-prod": "prod", "removed": ""}
	if diff := cmp.Diff(want, lanes); diff != "" {
		t.Errorf("lanes (-want +got):\n%s", diff)
	}
	limits := map[string]int{}
	for _, l := range []string{"default", "staging", "prod"} {
		limits[l] = copts.LaneLimit(l)
	}
	// staging sets none: 0 is the queue's default.
	if diff := cmp.Diff(map[string]int{"default": 3, "staging": 0, "prod": 2}, limits); diff != "" {
		t.Errorf("lane limits (-want +got):\n%s", diff)
	}

	one := `
externalURL: https://ferry.example.com
repos:
  - {name: platform, url: "https://github.com/acme/platform.git", provider: github, webhookSecret: {env: HOOK_SECRET}}
apps: [{name: api, repo: platform, path: apps/api}]
`
	vars = map[string]string{"HOOK_SECRET": "s3cret"}
	cfg, _, err = ParseConfig([]byte(one), env(vars))
	if err != nil {
		t.Fatal(err)
	}
	if copts := consumeOptions(cfg, serveOptions{}, slog.New(slog.DiscardHandler)); copts.Lane != nil || copts.LaneLimit != nil {
		t.Error("lanes with ferry's own cluster alone and no bound: one app's syncs could not use every worker")
	}
	cfg, _, err = ParseConfig([]byte(one+"defaultCluster: {maxConcurrentSyncs: 1}\n"), env(vars))
	if err != nil {
		t.Fatal(err)
	}
	copts = consumeOptions(cfg, serveOptions{}, slog.New(slog.DiscardHandler))
	if copts.Lane == nil || copts.Lane("api") != "default" || copts.LaneLimit("default") != 1 {
		t.Error("defaultCluster's maxConcurrentSyncs is not applied to ferry's own cluster alone")
	}
}
