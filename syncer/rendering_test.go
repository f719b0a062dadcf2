package syncer

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/syncer/apply"
	"github.com/ferrygitops/ferry/syncer/render"
	"github.com/ferrygitops/ferry/syncer/source/charts"
	"github.com/ferrygitops/ferry/test/chartrepo"
)

// fakeCluster answers capabilities and variable sources; nil fields answer as an empty cluster.
type fakeCluster struct {
	data  func(kind, namespace, name string) (map[string]string, error)
	reads int
}

func (c *fakeCluster) Capabilities(context.Context) (render.Capabilities, error) {
	return render.Capabilities{KubeVersion: "v1.37.2", APIVersions: []string{"v1", "apps/v1", "policy/v1"}}, nil
}

func (c *fakeCluster) Data(_ context.Context, kind, namespace, name string) (map[string]string, error) {
	c.reads++
	if c.data != nil {
		return c.data(kind, namespace, name)
	}
	return nil, fmt.Errorf("%s %s/%s: %w", kind, namespace, name, apply.ErrNotFound)
}

// chartWorld is a world whose app "hello" renders the chart repository's chart hello with a
// values file from the repository and variables, and whose cluster is c.
func chartWorld(t *testing.T, repo *chartrepo.Server, version string, c *fakeCluster) *world {
	t.Helper()
	app := App{Name: "hello", Repo: "platform", Path: "clusters/prod/hello", Namespace: "shop", Render: Rendering{
		Helm:       render.Helm{ValuesFiles: []string{"values.yaml"}},
		Chart:      &charts.Ref{RepoURL: repo.URL, Chart: "hello", Version: version},
		Vars:       map[string]string{"cluster_env": "prod"},
		VarsFrom:   []VarSource{{Kind: "ConfigMap", Namespace: "ferry-system", Name: "cluster-vars", Optional: true}},
		StrictVars: true,
	}}
	w := newWorld(t, app)
	w.s.charts, w.s.cluster = charts.NewFetcher(t.TempDir(), &http.Client{Timeout: 10 * time.Second}), c
	w.fetch.repo = map[string]string{"clusters/prod/hello/values.yaml": "greeting: hello from ${cluster_env} in ${region:=nowhere}\n"}
	return w
}

func TestRemoteChartSync(t *testing.T) {
	repo := chartrepo.Start(t, chartrepo.Options{})
	archive := repo.AddChart(t, "hello", "0.1.0")
	cluster := &fakeCluster{data: func(kind, ns, name string) (map[string]string, error) {
		return map[string]string{"region": "eu-1", "not-a-name": "ignored"}, nil
	}}
	w := chartWorld(t, repo, "0.1.x", cluster)
	var got []render.Object
	w.applier.sync = func(_ apply.App, _ string, objs []render.Object) (*apply.Result, error) {
		got = objs
		return &apply.Result{Created: len(objs)}, nil
	}
	j := job("hello", "aaa", time.Now())
	if err := w.s.Handle(t.Context(), j, queue.Delivery{Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].GetName() != "hello-hello" || got[0].Object["data"].(map[string]any)["greeting"] != "hello from prod in eu-1" {
		t.Fatalf("rendered %v", got)
	}
	if !strings.HasPrefix(got[0].File, repo.URL) || !strings.HasSuffix(got[0].File, "templates/configmap.yaml") {
		t.Errorf("object file %q", got[0].File)
	}
	rec, _ := w.store.Get(t.Context(), j.ID)
	if want := fmt.Sprintf("@sha256:%x", sha256Sum(archive)); !strings.HasSuffix(rec.Chart, want) || !strings.Contains(rec.Chart, "hello") {
		t.Errorf("record names chart %q, want …%s", rec.Chart, want)
	}
}

func TestRemoteChartFailures(t *testing.T) {
	repo := chartrepo.Start(t, chartrepo.Options{})
	repo.AddChart(t, "hello", "0.1.0")
	var retry *queue.RetryError

	// A chart repository answering 503 is retried, and the next delivery succeeds.
	w := chartWorld(t, repo, "0.1.0", &fakeCluster{})
	repo.FailNext(1, http.StatusServiceUnavailable)
	j := job("hello", "aaa", time.Now())
	if err := w.s.Handle(t.Context(), j, queue.Delivery{Attempt: 1}); !errors.As(err, &retry) {
		t.Fatalf("a 503 from the chart repository: %v, want a retry", err)
	}
	if err := w.s.Handle(t.Context(), j, queue.Delivery{Attempt: 2}); err != nil {
		t.Fatalf("after the 503: %v", err)
	}
	if got := w.rep.states("aaa"); !strings.HasPrefix(got[len(got)-1], "success ") {
		t.Errorf("statuses %q", got)
	}

	// A version that does not exist fails at once, naming the chart and the version.
	w = chartWorld(t, repo, "9.9.9", &fakeCluster{})
	if err := w.s.Handle(t.Context(), job("hello", "bbb", time.Now()), queue.Delivery{Attempt: 1}); err == nil || errors.As(err, &retry) {
		t.Fatalf("a missing version: %v, want a final failure", err)
	}
	if got := w.rep.states("bbb"); !strings.HasPrefix(got[len(got)-1], "failure fetch: ") || !strings.Contains(got[len(got)-1], "9.9.9") {
		t.Errorf("statuses %q", got)
	}

	// Strict variables: a required source missing fails; an unreachable cluster is retried.
	w = chartWorld(t, repo, "0.1.0", &fakeCluster{})
	w.s.apps["hello"] = withVarsFrom(w.s.apps["hello"], VarSource{Kind: "Secret", Namespace: "vault", Name: "creds"})
	if err := w.s.Handle(t.Context(), job("hello", "ccc", time.Now()), queue.Delivery{Attempt: 1}); err == nil || errors.As(err, &retry) {
		t.Fatalf("a missing variable source: %v, want a final failure", err)
	}
	if got := w.rep.states("ccc"); !strings.Contains(got[len(got)-1], "substituteFrom: Secret vault/creds") {
		t.Errorf("statuses %q", got)
	}
	down := &fakeCluster{data: func(string, string, string) (map[string]string, error) {
		return nil, fmt.Errorf("get: %w", syscall.ECONNREFUSED)
	}}
	w = chartWorld(t, repo, "0.1.0", down)
	if err := w.s.Handle(t.Context(), job("hello", "ddd", time.Now()), queue.Delivery{Attempt: 1}); !errors.As(err, &retry) {
		t.Fatalf("an unreachable cluster: %v, want a retry", err)
	}

	// A values file the commit lacks fails naming it.
	w = chartWorld(t, repo, "0.1.0", &fakeCluster{})
	w.fetch.repo = map[string]string{"clusters/prod/hello/other.yaml": "a: b\n"}
	if err := w.s.Handle(t.Context(), job("hello", "eee", time.Now()), queue.Delivery{Attempt: 1}); err == nil || errors.As(err, &retry) {
		t.Fatalf("a missing values file: %v, want a final failure", err)
	}
	if got := w.rep.states("eee"); !strings.HasPrefix(got[len(got)-1], "failure render: ") || !strings.Contains(got[len(got)-1], "clusters/prod/hello/values.yaml") {
		t.Errorf("statuses %q", got)
	}
}

func withVarsFrom(a App, src VarSource) App {
	a.Render.VarsFrom = append(append([]VarSource{}, a.Render.VarsFrom...), src)
	return a
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }
