package test

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/syncer/render/sops/sopstest"
	"github.com/ferrygitops/ferry/test/chartrepo"
	"github.com/ferrygitops/ferry/test/cluster"
	"github.com/ferrygitops/ferry/test/forgefake"
	"github.com/ferrygitops/ferry/test/gitserver"
	"github.com/ferrygitops/ferry/test/registry"
	"github.com/ferrygitops/ferry/test/upstream"
)

// The real chart of the restore test: metrics-server's, as its Go module ships it.
const (
	restoreChartModule  = "sigs.k8s.io/metrics-server"
	restoreChartVersion = "v0.9.0"
	restoreChartDir     = "charts/metrics-server"
)

// restoreConfig is the whole system of the restore test: cluster variables, encrypted Secrets,
// a real chart with production values, variables read from the cluster, and a remote chart
// from an OCI registry.
const restoreConfig = `externalURL: http://ferry.e2e.invalid
repos:
  - name: platform
    url: %[1]s
    provider: github
    branch: main
    webhookSecret: {env: HOOK_SECRET}
    token: {env: FORGE_TOKEN}
    apiURL: %[2]s
    interval: 1h
    decryption: {age: {env: AGE_KEY}}
apps:
  - name: platform
    repo: platform
    path: platform
    prune: true
  - name: secrets
    repo: platform
    path: apps/secrets
    prune: true
  - name: metrics-server
    repo: platform
    path: charts/metrics-server
    namespace: kube-system
    prune: true
    helm:
      valuesFiles: [/envs/prod/metrics-server.yaml]
    substitute: {cluster_env: prod}
  - name: config
    repo: platform
    path: apps/config
    namespace: shop
    prune: true
    dependsOn: [platform, secrets]
    substitute: {cluster_env: prod}
    substituteFrom: [{kind: ConfigMap, name: cluster-vars}]
    strictSubstitute: true
  - name: hello
    repo: platform
    path: clusters/prod/hello
    namespace: shop
    prune: true
    dependsOn: [secrets]
    helm:
      chart: oci://%[3]s/charts/hello
      version: 0.1.x
      plainHTTP: true
      valuesFiles: [values.yaml]
apiTokens: [{env: API_TOKEN}]
`

// restoreRepo lays out the repository: the real chart copied from its module, and the rest.
func restoreRepo(t *testing.T, cli *sopsbin, key string) map[string]string {
	t.Helper()
	mod, err := upstream.Dir(t.Context(), restoreChartModule, restoreChartVersion)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	root := filepath.Join(mod, restoreChartDir)
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		files[restoreChartDir+"/"+filepath.ToSlash(rel)] = string(data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Production values: no replica (nothing runs pods here), no APIService (nothing would
	// serve it), and a label from a variable.
	files["envs/prod/metrics-server.yaml"] = "replicas: 0\napiService:\n  create: false\npodLabels:\n  env: \"${cluster_env}\"\n"
	files["platform/vars.yaml"] = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cluster-vars\n  namespace: ferry-system\ndata:\n  region: eu-1\n"
	files["apps/secrets/namespace.yaml"] = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n"
	files["apps/secrets/kustomization.yaml"] = `namespace: shop
resources: [namespace.yaml, db.enc.yaml]
secretGenerator:
  - name: api-creds
    envs: [creds.enc.env]
generatorOptions: {disableNameSuffixHash: true}
`
	files["apps/secrets/db.enc.yaml"] = cli.secret(t, "db.yaml", "s3cret-db", key)
	files["apps/secrets/creds.enc.env"] = string(cli.Encrypt(t, "creds.env", []byte("API_KEY=k3y-plain\n"), []string{key}))
	files["apps/config/settings.yaml"] = `apiVersion: v1
kind: ConfigMap
metadata:
  name: settings-${cluster_env}
data:
  env: "${cluster_env}"
  region: "${region}"
  replicas: "${replicas:=2}"
`
	files["clusters/prod/hello/values.yaml"] = "greeting: restored from git\n"
	return files
}

// sopsbin is the real sops CLI, encrypting the repository's Secrets.
type sopsbin struct{ *sopstest.CLI }

// secret is a Secret db holding password, encrypted for recipients as users do it.
func (c *sopsbin) secret(t *testing.T, name, password string, recipients ...string) string {
	t.Helper()
	plain := fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: %s\n", password)
	return string(c.Encrypt(t, name, []byte(plain), recipients, "--encrypted-regex", "^(data|stringData)$"))
}

// TestRestoreFromGit is the promise: a repository holding a real chart with environment values,
// SOPS-encrypted Secrets, substituted variables and a chart from an OCI registry is restored
// onto an empty cluster by starting ferry, every app with a success status, in dependency order.
// Then the encryption is rotated (applied), and a file encrypted for a key ferry does not hold
// fails clearly, without a value or key in any status, record or log.
func TestRestoreFromGit(t *testing.T) {
	ctx := waitCtx(t, 5*time.Minute)
	empty, err := cluster.Start(ctx, t.TempDir(), cluster.Options{ControllerManager: true, BinDir: os.Getenv(cluster.BinDirEnv), Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = empty.Stop() })
	cs, err := kubernetes.NewForConfig(empty.Config)
	if err != nil {
		t.Fatal(err)
	}

	reg := registry.Start(t)
	archive := chartrepo.Package(t, "hello", "0.1.2")
	registry.PushChart(t, reg, "charts/hello", "0.1.2", archive, "", "")
	// The record names the digest of the archive rendered (the chart layer's, for OCI).
	digest := fmt.Sprintf("sha256:%x", sha256.Sum256(archive))

	cli := &sopsbin{sopstest.New(t)}
	owned, rotated, stranger := sopstest.NewIdentity(t), sopstest.NewIdentity(t), sopstest.NewIdentity(t)
	git := gitserver.New(t)
	repo := git.CreateRepo(t, "acme/platform")
	first := repo.Commit(t, "main", "the whole system", restoreRepo(t, cli, owned.Recipient))
	forge := forgefake.New(t, forgeToken)

	env := map[string]string{"AGE_KEY": string(owned.File)}
	for k, v := range ferryEnv {
		env[k] = v
	}
	f := startFerry(t, fmt.Sprintf(restoreConfig, repo.CloneURL(), forge.URL(), reg), env, "", "--kubeconfig", empty.Kubeconfig)

	for _, app := range []string{"platform", "secrets", "metrics-server", "config", "hello"} {
		st := waitFinal(t, forge, first, "ferry/"+app)
		if last := st[len(st)-1]; last.State != "success" {
			t.Fatalf("restore of %s: %+v", app, last)
		}
	}

	secret, err := cs.CoreV1().Secrets("shop").Get(ctx, "db", metav1.GetOptions{})
	if err != nil || string(secret.Data["password"]) != "s3cret-db" {
		t.Fatalf("decrypted Secret: %v %v", secretKeys(secret.Data), err)
	}
	creds, err := cs.CoreV1().Secrets("shop").Get(ctx, "api-creds", metav1.GetOptions{})
	if err != nil || string(creds.Data["API_KEY"]) != "k3y-plain" {
		t.Fatalf("Secret generated from an encrypted .env: %v %v", secretKeys(creds.Data), err)
	}
	settings, err := cs.CoreV1().ConfigMaps("shop").Get(ctx, "settings-prod", metav1.GetOptions{})
	if err != nil || settings.Data["env"] != "prod" || settings.Data["region"] != "eu-1" || settings.Data["replicas"] != "2" {
		t.Fatalf("substituted ConfigMap: %v %v", settings.Data, err)
	}
	dep, err := cs.AppsV1().Deployments("kube-system").Get(ctx, "metrics-server", metav1.GetOptions{})
	if err != nil || dep.Spec.Replicas == nil || *dep.Spec.Replicas != 0 || dep.Spec.Template.Labels["env"] != "prod" {
		t.Fatalf("chart Deployment with production values: %v", err)
	}
	if _, err := cs.RbacV1().ClusterRoles().Get(ctx, "system:metrics-server", metav1.GetOptions{}); err != nil {
		t.Errorf("chart ClusterRole: %v", err)
	}
	hello, err := cs.CoreV1().ConfigMaps("shop").Get(ctx, "hello-hello", metav1.GetOptions{})
	if err != nil || hello.Data["greeting"] != "restored from git" || hello.Data["version"] != "0.1.2" {
		t.Fatalf("remote chart's ConfigMap: %v %v", hello.Data, err)
	}
	hist := f.history(t, "hello")
	if len(hist) == 0 {
		t.Fatal("hello has no history")
	}
	if want := fmt.Sprintf("oci://%s/charts/hello:0.1.2@%s", reg, digest); hist[0].Chart != want {
		t.Errorf("record names chart %q, want %q", hist[0].Chart, want)
	}

	// A pull request changing the remote chart's values and the encrypted Secret gets previews:
	// the rendered change for the chart, the Secret as changed with its values masked.
	repo.Commit(t, "values", "hello: new greeting; db: new password", map[string]string{
		"clusters/prod/hello/values.yaml": "greeting: previewed\n",
		"apps/secrets/db.enc.yaml":        cli.secret(t, "db.yaml", "preview-db", owned.Recipient),
	})
	prHead := repo.Head(t, "values")
	repo.PushRef(t, "refs/pull/9/head", prHead)
	if code, body := f.send(t, "platform", githubPR(t, "d-restore-pr", 9, prHead, first)); code != http.StatusAccepted {
		t.Fatalf("pull_request hook: %d %s", code, body)
	}
	for app, want := range map[string][]string{
		"hello":   {"~ ConfigMap shop/hello-hello", "/data/greeting"},
		"secrets": {"~ Secret shop/db"},
	} {
		st := waitFinal(t, forge, prHead, "ferry/"+app+"/preview")
		last := st[len(st)-1]
		if last.State != "success" || !strings.HasPrefix(last.Description, "1 changed") {
			t.Fatalf("%s preview: %+v", app, last)
		}
		var rec queue.Record
		f.getJSON(t, "/api/v1/syncs/"+last.TargetURL[strings.LastIndex(last.TargetURL, "/")+1:], &rec)
		if !contains(rec.Diff, want...) || strings.Contains(rec.Diff, "preview-db") || strings.Contains(rec.Diff, "s3cret-db") {
			t.Errorf("%s preview diff:\n%s", app, rec.Diff)
		}
	}

	// Rotation: the Secret re-encrypted for the old and a new recipient, with a new value.
	second := repo.Commit(t, "main", "secrets: rotate", map[string]string{"apps/secrets/db.enc.yaml": cli.secret(t, "db.yaml", "rotated-db", owned.Recipient, rotated.Recipient)})
	if code, body := f.send(t, "platform", githubPush(t, hookSecret, "d-restore-2", first, second, "apps/secrets/db.enc.yaml")); code != http.StatusAccepted {
		t.Fatalf("push: %d %s", code, body)
	}
	if st := waitFinal(t, forge, second, "ferry/secrets"); st[len(st)-1].State != "success" {
		t.Fatalf("rotated secret: %+v", st[len(st)-1])
	}
	if secret, err = cs.CoreV1().Secrets("shop").Get(ctx, "db", metav1.GetOptions{}); err != nil || string(secret.Data["password"]) != "rotated-db" {
		t.Fatalf("rotated Secret: %v", err)
	}

	// A file for a key ferry does not hold fails the app, naming the file and its recipient.
	third := repo.Commit(t, "main", "secrets: wrong key", map[string]string{"apps/secrets/db.enc.yaml": cli.secret(t, "db.yaml", "never-applied", stranger.Recipient)})
	if code, body := f.send(t, "platform", githubPush(t, hookSecret, "d-restore-3", second, third, "apps/secrets/db.enc.yaml")); code != http.StatusAccepted {
		t.Fatalf("push: %d %s", code, body)
	}
	last := waitFinal(t, forge, third, "ferry/secrets")
	fail := last[len(last)-1]
	if fail.State != "failure" || !contains(fail.Description, "db.enc.yaml") {
		t.Fatalf("wrong key: %+v", fail)
	}
	failed := f.history(t, "secrets")
	if len(failed) == 0 || failed[0].SHA != third || failed[0].Error == nil || !contains(failed[0].Error.Message, "db.enc.yaml", stranger.Recipient) {
		t.Fatalf("failed record: %+v", failed)
	}
	if secret, err = cs.CoreV1().Secrets("shop").Get(ctx, "db", metav1.GetOptions{}); err != nil || string(secret.Data["password"]) != "rotated-db" {
		t.Fatalf("Secret after the failed sync: %v", err)
	}

	// No plaintext and no key anywhere ferry writes: statuses, records, pages, logs.
	var seen strings.Builder
	for _, sha := range []string{first, prHead, second, third} {
		for _, s := range forge.Statuses(sha) {
			fmt.Fprintf(&seen, "%s %s\n", s.Description, s.TargetURL)
		}
	}
	for _, app := range []string{"secrets", "config", "hello"} {
		var raw json.RawMessage
		f.getJSON(t, "/api/v1/apps/"+app, &raw)
		seen.Write(raw)
	}
	seen.WriteString(f.logs.String())
	for _, secretText := range []string{"s3cret-db", "preview-db", "rotated-db", "never-applied", "k3y-plain", owned.Secret, rotated.Secret} {
		if strings.Contains(seen.String(), secretText) {
			t.Errorf("a secret value or key reached a status, record or log line: %q", secretText[:6]+"…")
		}
	}
	assertAllFinal(t, forge)
}

// secretKeys lists a Secret's keys, never its values, for failure messages.
func secretKeys(data map[string][]byte) []string {
	var keys []string
	for k := range data {
		keys = append(keys, k)
	}
	return keys
}
