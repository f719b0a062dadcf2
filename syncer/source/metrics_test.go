package source

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferrygitops/ferry/test/gitserver"
)

func TestFetchMetrics(t *testing.T) {
	srv := gitserver.New(t)
	gr := srv.CreateRepo(t, "acme/platform")
	first := gr.Commit(t, "main", "first", map[string]string{"apps/db/db.yaml": "kind: StatefulSet\n"})
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	c, err := New(Options{Dir: t.TempDir(), Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	repo := Repo{Name: "platform", URL: gr.CloneURL()}
	for range 2 { // the second is served by the cache and asks no remote
		if err := c.Fetch(t.Context(), repo, first, "main"); err != nil {
			t.Fatal(err)
		}
	}
	missing := Repo{Name: "gone", URL: srv.URL() + "/acme/gone.git"}
	if err := c.Fetch(t.Context(), missing, first, "main"); err == nil {
		t.Fatal("fetch of a missing repository succeeded")
	}
	for _, tc := range []struct {
		repo, result string
		want         int
	}{{"platform", "success", 1}, {"gone", "error", 1}, {"platform", "error", 0}} {
		if got := histogramCount(t, reg, tc.repo, tc.result); got != tc.want {
			t.Errorf("fetches of %s with %s: %d observed, want %d", tc.repo, tc.result, got, tc.want)
		}
	}
	if n := testutil.CollectAndCount(m.fetch); n != 2 {
		t.Errorf("%d series, want 2", n)
	}
}

func histogramCount(t *testing.T, reg *prometheus.Registry, repo, result string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["repo"] == repo && labels["result"] == result {
				return int(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return 0
}
