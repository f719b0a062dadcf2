package syncer

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/syncer/apply"
	"github.com/ferrygitops/ferry/syncer/status"
	"github.com/ferrygitops/ferry/test/cluster"
)

func TestMain(m *testing.M) { os.Exit(cluster.Main(m)) }

// fakeGitHubChecks is the part of GitHub's Checks API a check run reporter uses, keeping every
// run's last state; what the syncer sends is checked in detail by the status package's tests.
type fakeGitHubChecks struct {
	mu      sync.Mutex
	creates int
	updates int
	// runs holds each run's fields as last written, by id.
	runs map[int64]map[string]any
}

func newFakeGitHubChecks(t *testing.T) (*httptest.Server, *fakeGitHubChecks) {
	f := &fakeGitHubChecks{runs: map[int64]map[string]any{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var body map[string]any
		if len(raw) > 0 {
			if err := json.Unmarshal(raw, &body); err != nil {
				t.Errorf("%s %s: %v", r.Method, r.URL.Path, err)
			}
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		p := strings.TrimPrefix(r.URL.Path, "/api/v3/repos/acme/platform/")
		switch {
		case r.Method == http.MethodGet && strings.HasSuffix(p, "/check-runs"):
			var list []map[string]any
			for _, run := range f.runs {
				if run["name"] == r.URL.Query().Get("check_name") && "commits/"+run["head_sha"].(string)+"/check-runs" == p {
					list = append(list, run)
				}
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"total_count": len(list), "check_runs": list})
		case r.Method == http.MethodPost && p == "check-runs":
			f.creates++
			id := int64(len(f.runs) + 1)
			body["id"] = id
			f.runs[id] = body
			w.WriteHeader(http.StatusCreated)
			_ = json.NewEncoder(w).Encode(body)
		case r.Method == http.MethodPatch && strings.HasPrefix(p, "check-runs/"):
			f.updates++
			for id, run := range f.runs {
				if p == "check-runs/"+jsonNumber(id) {
					for k, v := range body {
						run[k] = v
					}
					_ = json.NewEncoder(w).Encode(run)
					return
				}
			}
			w.WriteHeader(http.StatusNotFound)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, f
}

func jsonNumber(id int64) string {
	b, _ := json.Marshal(id)
	return string(b)
}

// run returns the only check run named name, failing the test if there is not exactly one.
func (f *fakeGitHubChecks) run(t *testing.T, name string) map[string]any {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	var found []map[string]any
	for _, r := range f.runs {
		if r["name"] == name {
			found = append(found, r)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d check runs named %s, want 1", len(found), name)
	}
	return found[0]
}

// checksWorld is a syncer on a real apiserver, reporting through check runs to a fake GitHub.
type checksWorld struct {
	s      *Syncer
	fetch  *fakeFetcher
	github *fakeGitHubChecks
	rep    *recorder
}

func newChecksWorld(t *testing.T, app App) *checksWorld {
	t.Helper()
	cl := cluster.Shared(t)
	opts := apply.DefaultOptions()
	opts.PollInterval = 100 * time.Millisecond
	engine, err := apply.New(cl.Config, opts)
	if err != nil {
		t.Fatal(err)
	}
	srv, gh := newFakeGitHubChecks(t)
	checks, err := status.NewChecks(srv.Client(), srv.URL, nil, "acme", "platform")
	if err != nil {
		t.Fatal(err)
	}
	w := &checksWorld{fetch: &fakeFetcher{}, github: gh, rep: &recorder{}}
	sopts := DefaultOptions()
	sopts.ExternalURL = "https://ferry.example.com"
	sopts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	// The recorder sees exactly what the check run reporter is given.
	rep := status.Tee(w.rep, status.Dedup(status.Retry(checks, status.RetryOptions{MaxAttempts: 1})))
	w.s = New([]Repo{{Name: "platform", Branch: "main", Reporter: rep}}, []App{app},
		Parts{Fetch: w.fetch, Apply: engine, Store: newStore(), Backlog: &fakeBacklog{backlog: map[string]uint64{}, newest: map[string]queue.Job{}},
			Metrics: NewMetrics(prometheus.NewRegistry())}, sopts)
	return w
}

func (w *checksWorld) handle(t *testing.T, job queue.Job) error {
	t.Helper()
	ctx, cancel := context2m(t)
	defer cancel()
	return w.s.Handle(ctx, job, queue.Delivery{Attempt: 1, Last: true})
}

func TestFailedDeployCheckRunNamesStageObjectFileAndMessage(t *testing.T) {
	const ns = "t-checks-fail"
	w := newChecksWorld(t, App{Name: "web", Repo: "platform", Path: "apps/web", Namespace: ns})
	w.fetch.repo = map[string]string{
		"apps/web/ns.yaml":       "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + ns + "\n",
		"apps/web/settings.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: fast\n",
		// No selector: the apiserver refuses the Deployment.
		"apps/web/deploy.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers: [{name: web, image: nginx}]\n",
	}
	j := job("web", "c0ffee0000000000000000000000000000000001", time.Now())
	if err := w.handle(t, j); err == nil {
		t.Fatal("the deploy of an invalid Deployment succeeded")
	}
	run := w.github.run(t, "ferry/web")
	if run["status"] != "completed" || run["conclusion"] != "failure" {
		t.Errorf("run %v/%v, want completed/failure", run["status"], run["conclusion"])
	}
	if run["external_id"] != j.ID || run["details_url"] != "https://ferry.example.com/syncs/"+j.ID {
		t.Errorf("external_id %v, details_url %v", run["external_id"], run["details_url"])
	}
	out := run["output"].(map[string]any)
	text := out["text"].(string)
	for _, want := range []string{"- **Stage:** apply", "- **Object:** `Deployment " + ns + "/web`", "- **File:** `apps/web/deploy.yaml`", "spec.selector: Required value"} {
		if !strings.Contains(text, want) {
			t.Errorf("check run text lacks %q:\n%s", want, text)
		}
	}
	if out["title"] != "Failed at apply: Deployment "+ns+"/web" {
		t.Errorf("title %v", out["title"])
	}
	anns, _ := out["annotations"].([]any)
	if len(anns) != 1 {
		t.Fatalf("annotations %v, want one on the Deployment's file", anns)
	}
	a := anns[0].(map[string]any)
	if a["path"] != "apps/web/deploy.yaml" || a["annotation_level"] != "failure" || !strings.Contains(a["message"].(string), "spec.selector: Required value") {
		t.Errorf("annotation %v", a)
	}
	if w.github.creates != 1 {
		t.Errorf("%d check runs created, want 1 (then updated in place)", w.github.creates)
	}
}

func TestPreviewCheckRunCarriesTheDiffWithSecretsMasked(t *testing.T) {
	const ns = "t-checks-preview"
	const oldPassword, newPassword = "old-hunter2-password", "new-correct-horse-battery"
	w := newChecksWorld(t, App{Name: "db", Repo: "platform", Path: "apps/db", Namespace: ns, Prune: true})
	tree := func(password, replicas string) map[string]string {
		return map[string]string{
			"apps/db/ns.yaml":       "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + ns + "\n",
			"apps/db/settings.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  replicas: \"" + replicas + "\"\n",
			"apps/db/secret.yaml":   "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\nstringData:\n  password: " + password + "\n",
		}
	}
	w.fetch.repo = tree(oldPassword, "2")
	if err := w.handle(t, job("db", "c0ffee0000000000000000000000000000000002", time.Now())); err != nil {
		t.Fatalf("deploy: %v", err)
	}

	w.fetch.repo = tree(newPassword, "3")
	w.fetch.repo["apps/db/extra.yaml"] = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\ndata:\n  a: b\n"
	pj := queue.Job{ID: "id-db-preview", Kind: queue.KindPreview, Trigger: queue.TriggerPR, Repo: "platform", App: "db",
		SHA: "c0ffee0000000000000000000000000000000003", Ref: "refs/pull/12/head", PR: 12, EnqueuedAt: time.Now()}
	if err := w.handle(t, pj); err != nil {
		t.Fatalf("preview: %v", err)
	}

	run := w.github.run(t, "ferry/db/preview")
	if run["conclusion"] != "success" {
		t.Errorf("conclusion %v", run["conclusion"])
	}
	text := run["output"].(map[string]any)["text"].(string)
	for _, want := range []string{"**1** to create · **2** to change", "| created | ConfigMap | " + ns + " | extra |",
		"```diff\n~ Secret " + ns + "/creds  (apps/db/secret.yaml)  change", "/data/password", `"***"`,
		"~ ConfigMap " + ns + "/settings  (apps/db/settings.yaml)  change", `~   /data/replicas: "2" → "3"`} {
		if !strings.Contains(text, want) {
			t.Errorf("check run text lacks %q:\n%s", want, text)
		}
	}
	// The Secret's values appear nowhere: not in the check run, not in any status the syncer made.
	var all strings.Builder
	all.WriteString(text)
	w.rep.mu.Lock()
	for _, s := range w.rep.got {
		data, _ := json.Marshal(s)
		all.Write(data)
	}
	w.rep.mu.Unlock()
	for _, secret := range []string{oldPassword, newPassword} {
		for _, form := range []string{secret, base64.StdEncoding.EncodeToString([]byte(secret))} {
			if strings.Contains(all.String(), form) {
				t.Errorf("a Secret value (%q) is in what was reported", form)
			}
		}
	}
	// The preview's statuses carry its merge request, for GitLab's notes.
	w.rep.mu.Lock()
	last := w.rep.got[len(w.rep.got)-1]
	w.rep.mu.Unlock()
	if last.Detail == nil || last.Detail.PR != 12 || last.Detail.Kind != status.KindPreview || last.Detail.Phase != status.PhaseDone {
		t.Errorf("last status detail %+v", last.Detail)
	}
}

// context2m bounds one job on the real apiserver.
func context2m(t *testing.T) (context.Context, context.CancelFunc) {
	return context.WithTimeout(t.Context(), 2*time.Minute)
}
