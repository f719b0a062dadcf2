package test

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/ferrygitops/ferry/syncer/apply"
	"github.com/ferrygitops/ferry/syncer/render"
	"github.com/ferrygitops/ferry/test/forgefake"
	"github.com/ferrygitops/ferry/test/gitserver"
)

// promtoolEnv names the directory holding promtool and promqlnames (test/promtoolbin/build.sh
// prints it; make test sets it).
const promtoolEnv = "FERRY_PROMTOOL_BIN"

// monitoringDir holds the dashboard and the alert rules.
const monitoringDir = "../deploy/monitoring"

// promtoolRun bounds one run of promtool or promqlnames.
const promtoolRun = time.Minute

// promtoolDir returns $FERRY_PROMTOOL_BIN. Unset, the test fails in CI and is skipped elsewhere.
func promtoolDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv(promtoolEnv)
	if dir == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set: make test sets it from test/promtoolbin/build.sh", promtoolEnv)
		}
		t.Skipf("%s is not set: export %s=$(test/promtoolbin/build.sh) (make test does) to check the alert rules with promtool", promtoolEnv, promtoolEnv)
	}
	if st, err := os.Stat(dir); err == nil && !st.IsDir() {
		dir = filepath.Dir(dir)
	}
	for _, b := range []string{"promtool", "promqlnames"} {
		if st, err := os.Stat(filepath.Join(dir, b)); err != nil || st.Mode().Perm()&0o111 == 0 {
			t.Fatalf("%s=%s holds no executable %s (%v): run test/promtoolbin/build.sh", promtoolEnv, dir, b, err)
		}
	}
	return dir
}

// runTool runs bin in dir with stdin and returns its output, failing t when it fails.
func runTool(t *testing.T, dir, bin string, stdin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), promtoolRun)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir, cmd.Stdin = dir, strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", filepath.Base(bin), strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

func TestAlertRulesLoadAndFire(t *testing.T) {
	dir := promtoolDir(t)
	out := runTool(t, monitoringDir, filepath.Join(dir, "promtool"), "", "check", "rules", "ferry.rules.yaml")
	if !strings.Contains(out, "SUCCESS: 8 rules found") {
		t.Errorf("promtool check rules: %s", out)
	}
	out = runTool(t, monitoringDir, filepath.Join(dir, "promtool"), "", "test", "rules", "testdata/ferry.rules.test.yaml")
	if !strings.Contains(out, "SUCCESS") {
		t.Errorf("promtool test rules: %s", out)
	}
	// Every alert has a unit test that fires it.
	tests, err := os.ReadFile(filepath.Join(monitoringDir, "testdata/ferry.rules.test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range ruleFile(t).rules() {
		if r.Alert != "" && !strings.Contains(string(tests), "alertname: "+r.Alert+"\n        exp_alerts:\n          - ") {
			t.Errorf("alert %s has no unit test in which it fires", r.Alert)
		}
	}
}

type rulesDoc struct {
	Groups []struct {
		Rules []struct {
			Alert string `json:"alert"`
			Expr  string `json:"expr"`
		} `json:"rules"`
	} `json:"groups"`
}

func (d rulesDoc) rules() (out []struct{ Alert, Expr string }) {
	for _, g := range d.Groups {
		for _, r := range g.Rules {
			out = append(out, struct{ Alert, Expr string }{r.Alert, r.Expr})
		}
	}
	return out
}

func ruleFile(t *testing.T) rulesDoc {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(monitoringDir, "ferry.rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var d rulesDoc
	if err := yaml.Unmarshal(data, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// grafanaVars are the Grafana variables the dashboard's queries use, with values that make them
// PromQL for the parser.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")

// labelValues is Grafana's variable query (not PromQL): label_values(metric, label).
var labelValues = regexp.MustCompile(`^label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*), *[a-zA-Z_][a-zA-Z0-9_]*\)$`)

// monitoringQueries returns every PromQL expression of the rules and the dashboard, and the
// metrics the dashboard's variable queries name.
func monitoringQueries(t *testing.T) (exprs, varMetrics []string) {
	t.Helper()
	for _, r := range ruleFile(t).rules() {
		exprs = append(exprs, strings.Join(strings.Fields(r.Expr), " "))
	}
	data, err := os.ReadFile(filepath.Join(monitoringDir, "ferry-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, grafanaVars.Replace(tg.Expr))
		}
	}
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(map[string]any)
		s, _ := q["query"].(string)
		m := labelValues.FindStringSubmatch(s)
		if m == nil {
			t.Fatalf("dashboard variable query %q is not label_values(metric, label)", s)
		}
		varMetrics = append(varMetrics, m[1])
	}
	return exprs, varMetrics
}

// served scrapes f's /metrics and returns the names of the series it serves (a histogram's
// _bucket, _sum and _count included).
func served(t *testing.T, f *ferry) map[string]bool {
	t.Helper()
	resp, err := http.Get(f.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	names := map[string]bool{}
	for name, mf := range mfs {
		if len(mf.GetMetric()) == 0 {
			continue
		}
		names[name] = true
		if mf.GetType().String() == "HISTOGRAM" {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[name+s] = true
			}
		}
	}
	return names
}

// TestMonitoringOfARealFerry runs a ferry through a good push and a bad one, then checks that
// every metric its alert rules and dashboard read is served on /metrics, and that both syncs left
// an Event on the app's inventory.
func TestMonitoringOfARealFerry(t *testing.T) {
	dir := promtoolDir(t)
	const ns = "e2e-monitoring"
	git := gitserver.New(t)
	repo := git.CreateRepo(t, "acme/platform")
	first := repo.Commit(t, "main", "monitored: first", map[string]string{
		"apps/monitored/ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + ns + "\n",
		"apps/monitored/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: \"1\"\n",
	})
	forge := forgefake.New(t, forgeToken)
	// A notification target, so that the notifications' series are served too.
	notified := make(chan struct{}, 8)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
		select {
		case notified <- struct{}{}:
		default:
		}
	}))
	t.Cleanup(receiver.Close)
	env := maps.Clone(ferryEnv)
	env["NOTIFY_URL"], env["NOTIFY_SECRET"] = receiver.URL, "monitoring-e2e-signing-secret"
	config := forgeConfig("github", repo.CloneURL(), forge.URL(), "1h", e2eApp{name: "monitored", path: "apps/monitored", ns: ns}) +
		"notify:\n  - name: ops\n    type: webhook\n    url: {env: NOTIFY_URL}\n    secret: {env: NOTIFY_SECRET}\n    events: [failed]\n"
	f := startFerry(t, config, env, "")
	if st := waitFinal(t, forge, first, "ferry/monitored"); st[len(st)-1].State != "success" {
		t.Fatalf("start-up sync: %+v", st)
	}
	// A commit the apiserver refuses: the app fails.
	bad := repo.Commit(t, "main", "monitored: bad", map[string]string{
		"apps/monitored/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Not_A_Name\ndata:\n  a: \"2\"\n",
	})
	if code, body := f.send(t, "platform", githubPush(t, hookSecret, "d-mon-1", first, bad, "apps/monitored/cm.yaml")); code != http.StatusAccepted {
		t.Fatalf("push: %d %s", code, body)
	}
	if st := waitFinal(t, forge, bad, "ferry/monitored"); st[len(st)-1].State != "failure" {
		t.Fatalf("bad commit: %+v", st)
	}
	select {
	case <-notified:
	case <-time.After(60 * time.Second):
		t.Fatal("the failure was not notified within 60 s")
	}
	if code, _ := f.send(t, "platform", githubPush(t, "not-the-secret", "d-mon-2", first, bad)); code != http.StatusUnauthorized {
		t.Fatalf("badly signed hook answered %d", code)
	}

	have := served(t, f)
	exprs, varMetrics := monitoringQueries(t)
	out := runTool(t, ".", filepath.Join(dir, "promqlnames"), strings.Join(exprs, "\n")+"\n")
	used := append(strings.Fields(out), varMetrics...)
	if len(used) < 10 {
		t.Fatalf("only %d metrics found in the rules and dashboard: %v", len(used), used)
	}
	for _, name := range used {
		switch {
		case have[name]:
		default:
			t.Errorf("%s is read by the rules or dashboard, but ferry does not serve it", name)
		}
	}
	for _, name := range []string{"ferry_app_failing", "ferry_hooks_received_total", "ferry_status_posts_total", "ferry_git_fetch_duration_seconds", "ferry_queue_jobs"} {
		if !slices.ContainsFunc(used, func(u string) bool {
			return u == name || strings.TrimSuffix(strings.TrimSuffix(u, "_bucket"), "_count") == name
		}) {
			t.Errorf("%s is served but neither alerted on nor shown", name)
		}
	}

	// kubectl get events -n ferry-system: a success and a failure on the app's inventory.
	cs := kube(t)
	var reasons []string
	for i := 0; ; i++ {
		evs, err := cs.CoreV1().Events(apply.DefaultInventoryNamespace).List(t.Context(), metav1.ListOptions{
			FieldSelector: "involvedObject.name=" + apply.InventoryPrefix + "monitored"})
		if err != nil {
			t.Fatal(err)
		}
		reasons = reasons[:0]
		for _, e := range evs.Items {
			reasons = append(reasons, e.Type+" "+e.Reason+": "+e.Message)
		}
		slices.Sort(reasons)
		if len(reasons) == 2 || i == 100 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(reasons) != 2 || !strings.HasPrefix(reasons[0], "Normal SyncSucceeded: commit "+first[:7]+": applied 2 objects") ||
		!strings.HasPrefix(reasons[1], "Warning SyncFailed: commit "+bad[:7]+": ConfigMap "+ns+"/Not_A_Name") {
		t.Errorf("events on the inventory: %q", reasons)
	}
}

// TestMonitoringKustomization renders deploy/monitoring as ferry renders a kustomization: the
// dashboard and the rules, each whole in a ConfigMap the Grafana sidecar or Prometheus can use.
func TestMonitoringKustomization(t *testing.T) {
	files := fstest.MapFS{}
	for _, name := range []string{"kustomization.yaml", "ferry-dashboard.json", "ferry.rules.yaml"} {
		data, err := os.ReadFile(filepath.Join(monitoringDir, name))
		if err != nil {
			t.Fatal(err)
		}
		files["deploy/monitoring/"+name] = &fstest.MapFile{Data: data}
	}
	objs, err := render.Render(files, "deploy/monitoring", render.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"ferry-grafana-dashboard": "ferry-dashboard.json", "ferry-prometheus-rules": "ferry.rules.yaml"}
	if len(objs) != len(want) {
		t.Fatalf("%d objects, want %d", len(objs), len(want))
	}
	for _, o := range objs {
		file, ok := want[o.GetName()]
		if !ok || o.GetKind() != "ConfigMap" || o.GetNamespace() != "ferry-system" {
			t.Errorf("unexpected %s %s/%s", o.GetKind(), o.GetNamespace(), o.GetName())
			continue
		}
		data, err := os.ReadFile(filepath.Join(monitoringDir, file))
		if err != nil {
			t.Fatal(err)
		}
		got, _, _ := unstructured.NestedString(o.Object, "data", file)
		if got != string(data) {
			t.Errorf("%s does not hold %s as it is", o.GetName(), file)
		}
		if file == "ferry-dashboard.json" && o.GetLabels()["grafana_dashboard"] != "1" {
			t.Errorf("dashboard labels %v lack the Grafana sidecar's grafana_dashboard=1", o.GetLabels())
		}
	}
}
