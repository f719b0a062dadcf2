package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
	"github.com/google/go-cmp/cmp"

	"github.com/ferrygitops/ferry/syncer"
	"github.com/ferrygitops/ferry/syncer/render"
	"github.com/ferrygitops/ferry/syncer/render/sops"
	"github.com/ferrygitops/ferry/syncer/source/charts"
)

const renderingConfig = `
externalURL: https://ferry.example.com
inventoryNamespace: ops
repos:
  - name: platform
    url: https://github.com/acme/platform.git
    provider: github
    webhookSecret: {env: HOOK_SECRET}
    decryption: {age: {file: AGE_FILE}}
apps:
  - name: ingress
    repo: platform
    path: clusters/prod/ingress
    namespace: ingress
    helm:
      chart: oci://registry.example.com/charts/ingress-nginx
      version: 4.11.x
      username: robot
      password: {env: REGISTRY_PASSWORD}
      valuesFiles: [values.yaml, /envs/prod/ingress.yaml]
      values: {controller: {replicaCount: 3}}
      includeCRDs: false
    substitute: {cluster_env: prod}
    substituteFrom:
      - {kind: ConfigMap, name: cluster-vars}
      - {kind: Secret, name: cluster-secrets, namespace: vault, optional: true}
    strictSubstitute: true
  - name: api
    repo: platform
    path: apps/api
    decryption: {age: [{env: API_AGE_KEY}]}
    helm: {releaseName: api-prod}
`

func ageIdentity(t *testing.T) string {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return "# created: for a test\n# public key: " + id.Recipient().String() + "\n" + id.String() + "\n"
}

func TestParseRenderingConfig(t *testing.T) {
	ageFile := filepath.Join(t.TempDir(), "keys.txt")
	if err := os.WriteFile(ageFile, []byte(ageIdentity(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	doc := strings.ReplaceAll(renderingConfig, "AGE_FILE", ageFile)
	cfg, sec, err := ParseConfig([]byte(doc), env(map[string]string{"HOOK_SECRET": "s3cret", "REGISTRY_PASSWORD": "pw\n", "API_AGE_KEY": ageIdentity(t)}))
	if err != nil {
		t.Fatal(err)
	}
	if sec.Keys["ingress"] == nil || sec.Keys["api"] == nil || sec.Keys["ingress"] == sec.Keys["api"] {
		t.Errorf("keys: the repository's for ingress, the app's own for api: %v", sec.Keys)
	}
	apps := syncerApps(cfg, sec)
	want := syncer.Rendering{
		Helm: render.Helm{ValuesFiles: []string{"values.yaml", "/envs/prod/ingress.yaml"},
			Values: map[string]any{"controller": map[string]any{"replicaCount": float64(3)}}, SkipCRDs: true},
		Chart:     &charts.Ref{Chart: "oci://registry.example.com/charts/ingress-nginx", Version: "4.11.x"},
		ChartAuth: &charts.Credentials{Username: "robot", Password: "pw"},
		Keys:      sec.Keys["ingress"],
		Vars:      map[string]string{"cluster_env": "prod"},
		VarsFrom: []syncer.VarSource{{Kind: "ConfigMap", Namespace: "ops", Name: "cluster-vars"},
			{Kind: "Secret", Namespace: "vault", Name: "cluster-secrets", Optional: true}},
		StrictVars: true,
	}
	if diff := cmp.Diff(want, apps[0].Render, cmp.Comparer(func(a, b *sops.Keys) bool { return a == b })); diff != "" {
		t.Errorf("ingress rendering (-want +got):\n%s", diff)
	}
	if r := apps[1].Render; r.Helm.ReleaseName != "api-prod" || r.Chart != nil || r.Keys != sec.Keys["api"] {
		t.Errorf("api rendering = %+v", r)
	}
}

func TestParseRenderingConfigRefuses(t *testing.T) {
	ageFile := filepath.Join(t.TempDir(), "keys.txt")
	if err := os.WriteFile(ageFile, []byte(ageIdentity(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(t.TempDir(), "garbage.txt")
	if err := os.WriteFile(garbage, []byte("AGE-SECRET-KEY-1NOTAKEYATALL-hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := strings.ReplaceAll(renderingConfig, "AGE_FILE", ageFile)
	goodEnv := map[string]string{"HOOK_SECRET": "s3cret", "REGISTRY_PASSWORD": "pw", "API_AGE_KEY": ageIdentity(t)}
	for _, tt := range []struct {
		name string
		doc  string
		want []string
	}{
		{"oci with repoURL", strings.Replace(base, "version: 4.11.x", "version: 4.11.x\n      repoURL: https://charts.example.com", 1), []string{"app ingress", "oci:// chart takes no repoURL"}},
		{"name without repoURL", strings.Replace(base, "oci://registry.example.com/charts/ingress-nginx", "ingress-nginx", 1), []string{"app ingress", "needs repoURL"}},
		{"bad repoURL", strings.Replace(base, "version: 4.11.x", "version: 4.11.x\n      repoURL: ftp://x", 1), []string{"app ingress"}},
		{"oci without name", strings.Replace(base, "oci://registry.example.com/charts/ingress-nginx", "oci://registry.example.com", 1), []string{"app ingress", "oci://registry/path/name"}},
		{"version without chart", strings.Replace(base, "helm: {releaseName: api-prod}", "helm: {version: 1.0.0}", 1), []string{"app api", "need chart"}},
		{"username without password", strings.Replace(base, "      password: {env: REGISTRY_PASSWORD}\n", "", 1), []string{"app ingress", "username and password go together"}},
		{"bad release name", strings.Replace(base, "releaseName: api-prod", "releaseName: API_prod", 1), []string{"app api", "helm.releaseName"}},
		{"empty values file", strings.Replace(base, "valuesFiles: [values.yaml,", "valuesFiles: [\"\",", 1), []string{"app ingress", "helm.valuesFiles"}},
		{"unknown helm key", strings.Replace(base, "includeCRDs: false", "includeCRD: false", 1), []string{`unknown key "includeCRD"`}},
		{"bad variable name", strings.Replace(base, "{cluster_env: prod}", "{cluster-env: prod}", 1), []string{"app ingress", `"cluster-env" is not a variable name`}},
		{"bad source kind", strings.Replace(base, "{kind: ConfigMap, name: cluster-vars}", "{kind: Deployment, name: cluster-vars}", 1), []string{"substituteFrom[0]", "ConfigMap or Secret"}},
		{"source without name", strings.Replace(base, "{kind: ConfigMap, name: cluster-vars}", "{kind: ConfigMap}", 1), []string{"substituteFrom[0]", "name"}},
		{"missing registry password", strings.Replace(base, "REGISTRY_PASSWORD}", "NO_SUCH_VAR}", 1), []string{"app ingress: helm.password", "NO_SUCH_VAR"}},
		{"missing age file", strings.Replace(base, ageFile, "/nonexistent/keys.txt", 1), []string{"repo platform: decryption.age[0]", "/nonexistent/keys.txt"}},
		{"no age identities", strings.Replace(base, "{age: [{env: API_AGE_KEY}]}", "{age: []}", 1), []string{"app api: decryption.age", "at least one"}},
		{"not an age key", strings.Replace(base, ageFile, garbage, 1), []string{"repo platform: decryption.age"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ParseConfig([]byte(tt.doc), env(goodEnv))
			if err == nil {
				t.Fatal("config accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "AGE-SECRET-KEY") {
				t.Errorf("error %q holds key material", err)
			}
		})
	}
}
