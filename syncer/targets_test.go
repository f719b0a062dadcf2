package syncer

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrygitops/ferry/queue"
)

// fakeTarget is one cluster of fakeTargets.
type fakeTarget struct {
	*fakeApplier
	*fakeCluster
}

// fakeTargets are clusters by name; down names those that refuse syncs with err.
type fakeTargets struct {
	clusters map[string]fakeTarget
	down     map[string]error
	asked    []string
}

func (f *fakeTargets) Target(name string) (Target, error) {
	f.asked = append(f.asked, name)
	if err := f.down[name]; err != nil {
		return nil, err
	}
	t, ok := f.clusters[name]
	if !ok {
		return nil, fmt.Errorf("cluster %q is not configured", name)
	}
	return t, nil
}

// TestAppsDeployToTheirClusters: each app's sync, and the variables its render reads, go to
// the cluster it names; a cluster that is down fails its app (retried, then a final failure
// naming the cluster) while the other cluster's app syncs.
func TestAppsDeployToTheirClusters(t *testing.T) {
	apps := []App{
		{Name: "web-staging", Repo: "platform", Path: "apps/api", Cluster: "staging"},
		{Name: "web-prod", Repo: "platform", Path: "apps/api", Cluster: "prod",
			Render: Rendering{VarsFrom: []VarSource{{Kind: "ConfigMap", Namespace: "ferry-system", Name: "vars", Optional: true}}}},
	}
	w := newWorld(t, apps...)
	staging := fakeTarget{&fakeApplier{}, &fakeCluster{}}
	prod := fakeTarget{&fakeApplier{}, &fakeCluster{}}
	targets := &fakeTargets{clusters: map[string]fakeTarget{"staging": staging, "prod": prod}, down: map[string]error{}}
	w.s.targets = targets

	for _, app := range []string{"web-staging", "web-prod"} {
		if err := w.s.Handle(t.Context(), job(app, "aaa", time.Now()), queue.Delivery{Attempt: 1}); err != nil {
			t.Fatalf("%s: %v", app, err)
		}
	}
	if got := strings.Join(staging.runs, ","); got != "web-staging@aaa" {
		t.Errorf("staging applied %q", got)
	}
	if got := strings.Join(prod.runs, ","); got != "web-prod@aaa" {
		t.Errorf("prod applied %q", got)
	}
	if len(w.applier.runs) != 0 {
		t.Errorf("Parts.Apply used although Targets is set: %v", w.applier.runs)
	}
	if staging.fakeCluster.reads != 0 || prod.fakeCluster.reads != 1 {
		t.Errorf("variables read %d times from staging and %d from prod: want only from the app's cluster", staging.fakeCluster.reads, prod.fakeCluster.reads)
	}

	targets.down["prod"] = fmt.Errorf("cluster prod unreachable: dial tcp 127.0.0.1:6443: %w", syscall.ECONNREFUSED)
	j := job("web-prod", "bbb", time.Now())
	err := w.s.Handle(t.Context(), j, queue.Delivery{Attempt: 1})
	if _, ok := errors.AsType[*queue.RetryError](err); !ok {
		t.Fatalf("an unreachable cluster was not retried: %v", err)
	}
	if err := w.s.Handle(t.Context(), job("web-staging", "bbb", time.Now()), queue.Delivery{Attempt: 1}); err != nil {
		t.Fatalf("staging while prod is down: %v", err)
	}
	err = w.s.Handle(t.Context(), j, queue.Delivery{Attempt: 8, Last: true})
	if _, ok := errors.AsType[*queue.RetryError](err); ok || err == nil {
		t.Fatalf("last delivery: %v, want a final failure", err)
	}
	got := w.rep.states("bbb")
	var final []string
	for _, s := range got {
		if !strings.HasPrefix(s, "pending") {
			final = append(final, s)
		}
	}
	// prod's app reads its variables first: the cluster stage is where it fails.
	want := []string{"success applied 1 objects", "failure cluster prod unreachable: dial tcp 127.0.0.1:6443: connection refused"}
	if len(final) != 2 || !strings.HasPrefix(final[0], want[0]) || final[1] != want[1] {
		t.Errorf("final statuses %q, want %q", final, want)
	}
	if strings.Join(prod.runs, ",") != "web-prod@aaa" {
		t.Errorf("prod applied while down: %v", prod.runs)
	}
}
