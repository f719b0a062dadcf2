// Command demo shows ferry end to end on this machine: a Git repository served over HTTP, a
// signed push webhook, the commit applied to a Kubernetes cluster and the statuses posted back.
// It uses $KUBECONFIG's cluster when set, otherwise it starts a local control plane (built from
// the Go module proxy the first time). KEEP=1 leaves everything running until Ctrl-C.
package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ferrygitops/ferry/test/cluster"
	"github.com/ferrygitops/ferry/test/gitserver"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

const (
	hookSecret = "demo-hook-secret"
	forgeToken = "demo-forge-token"
	apiToken   = "demo-api-token"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env := &demoEnv{}
	err := run(ctx, env, os.Getenv)
	env.cleanup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func say(format string, args ...any) { fmt.Printf("==> "+format+"\n", args...) }

func run(ctx context.Context, env *demoEnv, getenv func(string) string) error {
	kubeconfig := getenv("KUBECONFIG")
	if kubeconfig != "" {
		say("using the cluster of $KUBECONFIG (%s)", kubeconfig)
	} else {
		say("no $KUBECONFIG: starting a local control plane (etcd + kube-apiserver + kube-controller-manager on 127.0.0.1)")
		say("the first run builds it from the Go module proxy into ~/.cache/ferry (10-20 minutes on 2 cores); later runs take seconds")
		start := time.Now()
		c, err := cluster.Start(ctx, env.TempDir(), cluster.Options{ControllerManager: true, BinDir: getenv(cluster.BinDirEnv),
			Logf: func(f string, a ...any) { fmt.Printf("    "+f+"\n", a...) }})
		if err != nil {
			return fmt.Errorf("local control plane: %w", err)
		}
		env.Cleanup(func() { _ = c.Stop() })
		kubeconfig = c.Kubeconfig
		say("control plane ready in %s (kubeconfig %s)", time.Since(start).Round(time.Second), kubeconfig)
	}

	git := gitserver.New(env)
	repo := git.CreateRepo(env, "acme/platform")
	first := repo.Commit(env, "main", "database and api, first version", manifests("v1", 1))
	say("git repository %s: main at %s", repo.CloneURL(), first[:7])

	forge := newStatusAPI()
	env.Cleanup(forge.close)
	say("fake GitHub status API on %s", forge.url)

	bin, err := ferryBinary()
	if err != nil {
		return err
	}
	f, err := startFerry(ctx, env, bin, kubeconfig, repo.CloneURL(), forge.url)
	if err != nil {
		return err
	}
	say("ferry serving on %s (log: %s)", f.url, f.log)

	say("ferry syncs every app at its branch head on start; waiting for %s", first[:7])
	if err := waitSynced(ctx, f.url, first, "database", "api"); err != nil {
		return err
	}

	second := repo.Commit(env, "main", "api: v2, two replicas of config", manifests("v2", 2))
	say("pushed %s; sending a signed GitHub push webhook", second[:7])
	code, body, err := sendHook(ctx, f.url, first, second)
	if err != nil {
		return err
	}
	say("webhook answered %d %s", code, strings.TrimSpace(body))
	if code != http.StatusAccepted {
		return fmt.Errorf("webhook not accepted: %d", code)
	}
	if err := forge.wait(ctx, second, []string{"ferry/api"}); err != nil {
		return err
	}

	fmt.Println()
	say("commit statuses posted back:")
	for _, sha := range []string{first, second} {
		for _, s := range forge.statuses(sha) {
			fmt.Printf("    %s  %-16s %-8s %-40s %s\n", sha[:7], s.Context, s.State, s.Description, s.TargetURL)
		}
	}
	fmt.Println()
	say("what ferry applied (from its API):")
	var apps struct {
		Apps []struct {
			Name     string `json:"name"`
			LastSync *struct {
				ID      string `json:"id"`
				SHA     string `json:"sha"`
				State   string `json:"state"`
				Message string `json:"message"`
				Objects []struct{ Kind, Namespace, Name, Action string }
			} `json:"lastSync"`
		} `json:"apps"`
	}
	if err := getJSON(ctx, f.url+"/api/v1/apps", &apps); err != nil {
		return err
	}
	for _, a := range apps.Apps {
		if a.LastSync == nil {
			fmt.Printf("    %s: never synced\n", a.Name)
			continue
		}
		ls := a.LastSync
		fmt.Printf("    %s @ %s: %s (%s)  %s/syncs/%s\n", a.Name, ls.SHA[:7], ls.State, ls.Message, f.url, ls.ID)
		for _, o := range ls.Objects {
			fmt.Printf("        %-10s %-12s %-20s %s\n", o.Action, o.Kind, o.Namespace, o.Name)
		}
	}
	fmt.Println()
	say("in the cluster (objects labelled app.kubernetes.io/managed-by=ferry):")
	if err := listManaged(ctx, kubeconfig); err != nil {
		return err
	}
	fmt.Println()
	say("the same from ferry's command line (FERRY_SERVER=%s):", f.url)
	for _, args := range [][]string{{"apps"}, {"sync", "api", "--wait", "--timeout", "2m"}} {
		fmt.Printf("    $ ferry %s\n", strings.Join(args, " "))
		out, err := cli(ctx, bin, f.url, args...)
		fmt.Print(indent(out))
		if err != nil {
			return fmt.Errorf("ferry %s: %w", strings.Join(args, " "), err)
		}
	}
	if getenv("KEEP") == "1" {
		say("KEEP=1: everything stays up; the dashboard at %s (sign in with the API token to use its buttons), hooks at %s/hooks/platform (secret %q), API token %q. Ctrl-C to stop.", f.url, f.url, hookSecret, apiToken)
		<-ctx.Done()
	}
	say("demo done")
	return nil
}

// cli runs ferry's command line against the demo's ferry, with its API token, and returns
// what it printed.
func cli(ctx context.Context, bin, server string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "FERRY_SERVER="+server, "FERRY_TOKEN="+apiToken)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return "    " + strings.Join(lines, "\n    ") + "\n"
}

// manifests are the demo repository's two apps: api depends on database.
func manifests(version string, replicas int) map[string]string {
	return map[string]string{
		"apps/database/namespace.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo-db\n",
		"apps/database/service.yaml": `apiVersion: v1
kind: Service
metadata:
  name: postgres
spec:
  ports: [{port: 5432}]
  selector: {app: postgres}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: postgres-settings
data:
  max_connections: "100"
`,
		"apps/api/namespace.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo-api\n",
		"apps/api/config.yaml": fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata:
  name: api-settings
data:
  version: %q
  database: postgres.demo-db.svc:5432
  workers: "%d"
---
apiVersion: v1
kind: Service
metadata:
  name: api
spec:
  ports: [{port: 80, targetPort: 8080}]
  selector: {app: api}
`, version, replicas*4),
	}
}

const ferryConfig = `externalURL: %s
repos:
  - name: platform
    url: %s
    provider: github
    branch: main
    webhookSecret: {env: DEMO_HOOK_SECRET}
    token: {env: DEMO_FORGE_TOKEN}
    apiURL: %s
apps:
  - name: database
    repo: platform
    path: apps/database
    namespace: demo-db
    prune: true
  - name: api
    repo: platform
    path: apps/api
    namespace: demo-api
    prune: true
    dependsOn: [database]
apiTokens: [{env: DEMO_API_TOKEN}]
`

type ferryProc struct{ url, log string }

func ferryBinary() (string, error) {
	for _, p := range []string{"bin/ferry", "../../bin/ferry"} {
		if abs, err := filepath.Abs(p); err == nil {
			if _, err := os.Stat(abs); err == nil {
				return abs, nil
			}
		}
	}
	return "", errors.New("bin/ferry not found: run `make demo` (it builds ferry first)")
}

func startFerry(ctx context.Context, env *demoEnv, bin, kubeconfig, cloneURL, apiURL string) (*ferryProc, error) {
	dir := env.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	url := "http://" + addr
	cfg := filepath.Join(dir, "ferry.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, ferryConfig, url, cloneURL, apiURL), 0o600); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "ferry.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", "--config", cfg, "--listen", addr, "--data-dir", filepath.Join(dir, "data"), "--kubeconfig", kubeconfig)
	cmd.Env = append(os.Environ(), "DEMO_HOOK_SECRET="+hookSecret, "DEMO_FORGE_TOKEN="+forgeToken, "DEMO_API_TOKEN="+apiToken)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start ferry: %w", err)
	}
	env.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
		}
		logf.Close()
	})
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return &ferryProc{url: url, log: logPath}, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("ferry not ready after 60s; see %s", logPath)
}

// sendHook posts a GitHub push delivery signed with the repository's secret.
func sendHook(ctx context.Context, base, before, after string) (int, string, error) {
	body, _ := json.Marshal(map[string]any{
		"ref": "refs/heads/main", "before": before, "after": after, "created": false, "deleted": false, "forced": false,
		"repository": map[string]any{"full_name": "acme/platform", "name": "platform", "owner": map[string]any{"login": "acme"}},
		"commits":    []any{map[string]any{"id": after, "message": "api: v2", "added": []string{}, "removed": []string{}, "modified": []string{"apps/api/config.yaml"}}},
	})
	mac := hmac.New(sha256.New, []byte(hookSecret))
	mac.Write(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/hooks/platform", bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("demo-%d", time.Now().UnixNano()))
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

// listManaged prints the ConfigMaps and Services ferry manages, as kubectl get would.
func listManaged(ctx context.Context, kubeconfig string) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	sel := metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=ferry"}
	cms, err := cs.CoreV1().ConfigMaps("").List(ctx, sel)
	if err != nil {
		return fmt.Errorf("list configmaps: %w", err)
	}
	for _, cm := range cms.Items {
		fmt.Printf("    configmap/%-22s namespace %-10s app %s\n", cm.Name, cm.Namespace, cm.Labels["ferry.dev/app"])
	}
	svcs, err := cs.CoreV1().Services("").List(ctx, sel)
	if err != nil {
		return fmt.Errorf("list services: %w", err)
	}
	for _, svc := range svcs.Items {
		fmt.Printf("    service/%-24s namespace %-10s app %s\n", svc.Name, svc.Namespace, svc.Labels["ferry.dev/app"])
	}
	return nil
}

// waitSynced waits (at most two minutes) until each app's last sync is a success at sha, read
// from ferry's API: a start-up sync posts a status only when it changes the cluster.
func waitSynced(ctx context.Context, base, sha string, apps ...string) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		done := 0
		for _, app := range apps {
			var v struct {
				LastSync *struct {
					SHA   string `json:"sha"`
					State string `json:"state"`
				} `json:"lastSync"`
			}
			if err := getJSON(ctx, base+"/api/v1/apps/"+app, &v); err == nil && v.LastSync != nil && v.LastSync.SHA == sha {
				if v.LastSync.State == "failed" {
					return fmt.Errorf("app %s failed at %s; see %s/api/v1/apps/%s", app, sha[:7], base, app)
				}
				if v.LastSync.State == "succeeded" {
					done++
				}
			}
		}
		if done == len(apps) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("apps %v not synced at %s after 2 minutes", apps, sha[:7])
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
