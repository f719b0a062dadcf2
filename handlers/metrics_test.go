package handlers

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferrygitops/ferry/queue"
)

func TestHookMetrics(t *testing.T) {
	hh := newHarness(t, testRepos("github", githubSecret))
	reg := prometheus.NewRegistry()
	m := NewHookMetrics(reg)
	r := chi.NewRouter()
	r.Method(http.MethodPost, "/hooks/{repo}", m.Wrap(hh.hooks))
	hh.srv = r

	push := readTestdata(t, "github/push.json")
	for _, tc := range []struct {
		repo string
		h    http.Header
		want int
	}{
		{"platform", githubHeaders("push", "d-1", githubSecret, push), http.StatusAccepted},
		{"platform", githubHeaders("push", "d-2", []byte("wrong"), push), http.StatusUnauthorized},
		{"platform", githubHeaders("push", "d-3", []byte("wrong"), push), http.StatusUnauthorized},
		{"no-such-repo-d41d8cd98f", githubHeaders("push", "d-4", githubSecret, push), http.StatusNotFound},
		{"attacker-chosen", githubHeaders("push", "d-5", githubSecret, push), http.StatusNotFound},
	} {
		if rec := hh.post(t, tc.repo, tc.h, push); rec.Code != tc.want {
			t.Fatalf("%s: answered %d, want %d: %s", tc.repo, rec.Code, tc.want, rec.Body)
		}
	}
	hh.queue.enqueue = func(context.Context, []queue.Job) ([]queue.Job, error) { return nil, errors.New("jetstream down") }
	if rec := hh.post(t, "platform", githubHeaders("push", "d-6", githubSecret, push), push); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("queue down: answered %d", rec.Code)
	}

	for _, c := range []struct {
		repo, provider, code string
		want                 float64
	}{
		{"platform", "github", "202", 1},
		{"platform", "github", "401", 2},
		{"platform", "github", "503", 1},
		// Unknown repositories share one series, whatever name the URL carried.
		{"unknown", "unknown", "404", 2},
	} {
		if got := testutil.ToFloat64(m.received.WithLabelValues(c.repo, c.provider, c.code)); got != c.want {
			t.Errorf("ferry_hooks_received_total{repo=%q,provider=%q,code=%q} = %v, want %v", c.repo, c.provider, c.code, got, c.want)
		}
	}
	if n := testutil.CollectAndCount(m.received); n != 4 {
		t.Errorf("%d series, want 4", n)
	}
}
