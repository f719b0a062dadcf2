package syncer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/queue/queuetest"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
)

// realSuspensions is the shared suspension store on an embedded NATS server of the test's own.
func realSuspensions(t *testing.T) *queue.Suspensions {
	t.Helper()
	return queuetest.Suspensions(t, nil)
}

// suspendWorld is a world whose syncer reads suspensions from a real store.
func suspendWorld(t *testing.T, apps ...App) (*world, *queue.Suspensions) {
	t.Helper()
	sus := realSuspensions(t)
	w := newWorld(t, apps...)
	w.s.suspensions = sus
	return w, sus
}

// TestQueuedJobOfSuspendedAppEnds: a push queued (its pending status posted) before its app was
// suspended ends, when a worker takes it, as suspended: not applied, a final status that does
// not read as a failure, a terminal record, and the app's state untouched. A manual sync that
// is not forced ends the same way; a forced one and a preview run.
func TestQueuedJobOfSuspendedAppEnds(t *testing.T) {
	w, sus := suspendWorld(t)
	ctx := t.Context()
	before := queue.AppState{App: "api", SHA: "old", State: queue.StateSucceeded, AppliedSHA: "old"}
	w.store.states["api"] = before

	push := job("api", "new", time.Now())
	w.s.notifyQueued(ctx, push) // the hook's "queued" pending status
	if _, _, err := sus.Suspend(ctx, "api", "alice", "incident"); err != nil {
		t.Fatal(err)
	}
	if err := w.s.Handle(ctx, push, queue.Delivery{Attempt: 1}); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	if diff := cmp.Diff([]string{"pending queued", "skipped " + SuspendedDescription}, w.rep.states("new")); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	rec, _ := w.store.Get(ctx, push.ID)
	if rec.State != queue.StateSuspended || !rec.State.Terminal() || rec.Message != SuspendedDescription || rec.Status != "skipped" {
		t.Errorf("record %+v", rec)
	}
	if len(w.applier.runs) != 0 {
		t.Errorf("a suspended app was applied: %v", w.applier.runs)
	}
	if st := w.store.states["api"]; st != before {
		t.Errorf("app state moved to %+v", st)
	}

	// A manual sync queued without force ends the same way.
	manual := job("api", "fix", time.Now())
	manual.ID, manual.Trigger = "manual-1", queue.TriggerManual
	if err := w.s.Handle(ctx, manual, queue.Delivery{Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	if got := w.rep.states("fix"); len(got) != 1 || got[0] != "skipped "+SuspendedDescription {
		t.Errorf("unforced manual sync: %q", got)
	}
	// A forced one is applied.
	manual.ID, manual.Force = "manual-2", true
	if err := w.s.Handle(ctx, manual, queue.Delivery{Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(w.applier.runs, []string{"api@fix"}) {
		t.Errorf("forced manual sync: applied %v", w.applier.runs)
	}
	// A preview changes nothing and still runs.
	pr := job("api", "pr1", time.Now())
	pr.ID, pr.Kind, pr.Trigger, pr.Ref, pr.PR = "preview-1", queue.KindPreview, queue.TriggerPR, "refs/pull/7/head", 7
	if err := w.s.Handle(ctx, pr, queue.Delivery{Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	if got := w.rep.states("pr1"); len(got) == 0 || !strings.HasPrefix(got[len(got)-1], "success ") {
		t.Errorf("preview of a suspended app: %q", got)
	}
	// Start-up and self-heal jobs queued before the suspension end without a status (they
	// post only what changes the cluster).
	for _, trig := range []queue.Trigger{queue.TriggerStartup, queue.TriggerDrift} {
		j := job("api", "quiet-"+string(trig), time.Now())
		j.Trigger = trig
		if err := w.s.Handle(ctx, j, queue.Delivery{Attempt: 1}); err != nil {
			t.Fatal(err)
		}
		if got := w.rep.states(j.SHA); len(got) != 0 {
			t.Errorf("%s job of a suspended app posted %q", trig, got)
		}
		if rec, _ := w.store.Get(ctx, j.ID); rec.State != queue.StateSuspended {
			t.Errorf("%s job: record %+v", trig, rec)
		}
	}

	// Resumed, the next push is applied.
	if _, _, err := sus.Resume(ctx, "api", "bob"); err != nil {
		t.Fatal(err)
	}
	if err := w.s.Handle(ctx, job("api", "next", time.Now()), queue.Delivery{Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	if got := w.rep.states("next"); len(got) != 2 || !strings.HasPrefix(got[1], "success applied") {
		t.Errorf("after resume: %q", got)
	}
}

// TestSuspendedWhileWaitingForDependency: a job waiting for its dependency asks again on its
// next delivery, so a suspension made meanwhile holds, and the pending status it posted gets
// its final one.
func TestSuspendedWhileWaitingForDependency(t *testing.T) {
	apps := []App{{Name: "db", Repo: "platform", Path: "apps/db"}, {Name: "api", Repo: "platform", Path: "apps/api", DependsOn: []string{"db"}}}
	w, sus := suspendWorld(t, apps...)
	w.backlog.backlog["db"] = 1
	j := job("api", "aaa", time.Now())
	var retry *queue.RetryError
	if err := w.s.Handle(t.Context(), j, queue.Delivery{Attempt: 1}); !errors.As(err, &retry) {
		t.Fatalf("first delivery: %v, want a retry while db is busy", err)
	}
	if _, _, err := sus.Suspend(t.Context(), "api", "alice", ""); err != nil {
		t.Fatal(err)
	}
	if err := w.s.Handle(t.Context(), j, queue.Delivery{Attempt: 2}); err != nil {
		t.Fatal(err)
	}
	want := []string{"pending waiting for dependency db", "skipped " + SuspendedDescription}
	if diff := cmp.Diff(want, w.rep.states("aaa")); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
}

// failingSuspensions cannot be read, as when NATS is restarting.
type failingSuspensions struct{}

func (failingSuspensions) Get(context.Context, string) (queue.Suspension, error) {
	return queue.Suspension{}, errors.New("nats: timeout")
}

func (failingSuspensions) Watch(context.Context, func(queue.Suspension)) error {
	return errors.New("nats: timeout")
}

// TestUnknownSuspensionIsNotApplied: when the suspension cannot be read the job goes back to
// the queue rather than risk applying a suspended app, and its last delivery fails it with a
// final status.
func TestUnknownSuspensionIsNotApplied(t *testing.T) {
	w := newWorld(t)
	w.s.suspensions = failingSuspensions{}
	j := job("api", "aaa", time.Now())
	w.s.notifyQueued(t.Context(), j)
	var retry *queue.RetryError
	if err := w.s.Handle(t.Context(), j, queue.Delivery{Attempt: 1}); !errors.As(err, &retry) {
		t.Fatalf("first delivery: %v, want a retry", err)
	}
	if err := w.s.Handle(t.Context(), j, queue.Delivery{Attempt: 2, Last: true}); err == nil || errors.As(err, &retry) {
		t.Fatalf("last delivery: %v, want a final failure", err)
	}
	got := w.rep.states("aaa")
	if last := got[len(got)-1]; !strings.HasPrefix(last, "failure cannot tell whether app api is suspended") {
		t.Errorf("statuses %q", got)
	}
	if len(w.applier.runs) != 0 {
		t.Errorf("applied while the suspension was unknown: %v", w.applier.runs)
	}
}

// TestPollerLeavesSuspendedAppsAlone: start-up, a poll that finds the head moved and self-heal
// queue nothing for a suspended app, and go on queueing the others.
func TestPollerLeavesSuspendedAppsAlone(t *testing.T) {
	apps := []App{{Name: "api", Repo: "platform", Path: "apps/api"}, {Name: "db", Repo: "platform", Path: "apps/db"}}
	w, sus := suspendWorld(t, apps...)
	for _, a := range []string{"api", "db"} {
		w.store.states[a] = queue.AppState{App: a, SHA: "old", State: queue.StateSucceeded, AppliedSHA: "old"}
	}
	if _, _, err := sus.Suspend(t.Context(), "api", "alice", ""); err != nil {
		t.Fatal(err)
	}
	sink := &jobSink{}
	p := w.s.NewPoller(fixedHead("new"), sink, PollOptions{SelfHeal: map[string]bool{"api": true, "db": true}})
	if err := p.Recover(t.Context(), "platform"); err != nil {
		t.Fatal(err)
	}
	if err := p.Poll(t.Context(), "platform"); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, j := range sink.jobs {
		got = append(got, fmt.Sprintf("%s %s@%s", j.Trigger, j.App, j.SHA))
	}
	want := []string{"startup db@new", "poll db@new", "drift db@old"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("queued (-want +got):\n%s", diff)
	}
	// Resumed, the next poll queues it again.
	if _, _, err := sus.Resume(t.Context(), "api", "bob"); err != nil {
		t.Fatal(err)
	}
	sink.jobs = nil
	if err := p.Poll(t.Context(), "platform"); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, j := range sink.jobs {
		if j.App == "api" && j.Trigger == queue.TriggerPoll {
			n++
		}
	}
	if n != 1 {
		t.Errorf("after resume the poll queued %d jobs of api, want 1: %+v", n, sink.jobs)
	}
}

// TestSuspendedGauge: ferry_app_suspended follows the shared store: 0 for every configured app
// at first, 1 while suspended (by any replica), 0 again once resumed.
func TestSuspendedGauge(t *testing.T) {
	apps := []App{{Name: "api", Repo: "platform", Path: "apps/api"}, {Name: "db", Repo: "platform", Path: "apps/db"}}
	w, sus := suspendWorld(t, apps...)
	reg := prometheus.NewRegistry()
	w.s.metrics = NewMetrics(reg)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { w.s.TrackSuspensions(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	gauge := func(app string) float64 { return gaugeValue(t, reg, "ferry_app_suspended", app) }
	waitGauge := func(app string, want float64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for gauge(app) != want {
			if time.Now().After(deadline) {
				t.Fatalf("ferry_app_suspended{app=%q} = %v, want %v", app, gauge(app), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if _, _, err := sus.Suspend(t.Context(), "api", "alice", ""); err != nil {
		t.Fatal(err)
	}
	waitGauge("api", 1)
	if got := gauge("db"); got != 0 {
		t.Errorf("db: %v, want 0", got)
	}
	if n := len(series(t, reg, "ferry_app_suspended")); n != 2 {
		t.Errorf("%d ferry_app_suspended series, want one per configured app (2)", n)
	}
	if _, _, err := sus.Resume(t.Context(), "api", "bob"); err != nil {
		t.Fatal(err)
	}
	waitGauge("api", 0)
}

// series returns the value of each series of the metric name, by its app label.
func series(t *testing.T, reg *prometheus.Registry, name string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "app" {
					out[l.GetValue()] = m.GetGauge().GetValue()
				}
			}
		}
	}
	return out
}

// gaugeValue is the value of name{app}, -1 when there is no such series.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name, app string) float64 {
	t.Helper()
	if v, ok := series(t, reg, name)[app]; ok {
		return v
	}
	return -1
}
