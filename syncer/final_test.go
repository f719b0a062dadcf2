package syncer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/syncer/apply"
	"github.com/ferrygitops/ferry/syncer/render"
	"github.com/ferrygitops/ferry/syncer/status"
	"github.com/google/go-cmp/cmp"
)

// lastIsFinal fails the test unless the last status posted for sha is final.
func lastIsFinal(t *testing.T, w *world, sha string) {
	t.Helper()
	got := w.rep.states(sha)
	if len(got) == 0 {
		return
	}
	if last := got[len(got)-1]; strings.HasPrefix(last, "pending") {
		t.Fatalf("statuses on %s end pending: %q", sha, got)
	}
}

// TestAlreadyAppliedCommitGetsItsFinalStatus: a push job whose commit another sync (here the
// start-up sync) already applied ends with a final status whenever a pending one may have been
// posted for it, in every order the hook's notice, the worker and a crash can take.
func TestAlreadyAppliedCommitGetsItsFinalStatus(t *testing.T) {
	startup := func(w *world) {
		t.Helper()
		j := job("api", "aaa", time.Now())
		j.Trigger, j.ID = queue.TriggerStartup, "startup"
		if err := w.s.Handle(t.Context(), j, queue.Delivery{Attempt: 1}); err != nil {
			t.Fatal(err)
		}
	}
	push := job("api", "aaa", time.Now())
	for _, tt := range []struct {
		name  string
		steps func(w *world)
		want  []string
	}{
		{"notice, start-up sync, push job", func(w *world) {
			w.s.notifyQueued(t.Context(), push)
			startup(w)
			if err := w.s.Handle(t.Context(), push, queue.Delivery{Attempt: 1}); err != nil {
				t.Fatal(err)
			}
		}, []string{"pending queued", "success already applied by sync startup"}},
		{"start-up sync, notice, push job", func(w *world) {
			startup(w)
			w.s.notifyQueued(t.Context(), push)
			if err := w.s.Handle(t.Context(), push, queue.Delivery{Attempt: 1}); err != nil {
				t.Fatal(err)
			}
		}, []string{"pending queued", "success already applied by sync startup"}},
		{"start-up sync, push job, late notice", func(w *world) {
			startup(w)
			if err := w.s.Handle(t.Context(), push, queue.Delivery{Attempt: 1}); err != nil {
				t.Fatal(err)
			}
			// The worker claimed the job's record first: the notice posts nothing.
			w.s.notifyQueued(t.Context(), push)
		}, nil},
		{"push job dies mid-sync, start-up sync, redelivery", func(w *world) {
			w.s.notifyQueued(t.Context(), push)
			rec := queuedRecord(push)
			rec.State, rec.Attempts = queue.StateRunning, 1
			_ = w.store.Put(t.Context(), rec)
			_ = w.rep.Report(t.Context(), status.Status{SHA: push.SHA, Context: statusContext(push), State: status.Pending, Description: "syncing aaa"})
			startup(w)
			if err := w.s.Handle(t.Context(), push, queue.Delivery{Attempt: 2}); err != nil {
				t.Fatal(err)
			}
		}, []string{"pending queued", "pending syncing aaa", "success already applied by sync startup"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			w.applier.sync = func(apply.App, string, []render.Object) (*apply.Result, error) {
				return &apply.Result{Unchanged: 1}, nil
			}
			tt.steps(w)
			if diff := cmp.Diff(tt.want, w.rep.states("aaa")); diff != "" {
				t.Errorf("statuses (-want +got):\n%s", diff)
			}
			rec, _ := w.store.Get(t.Context(), push.ID)
			if !rec.State.Terminal() {
				t.Errorf("push job's record %s, want terminal", rec.State)
			}
		})
	}
}

// TestInterruptedDeliveriesEndTheJob: a job whose deliveries keep ending the process (the
// record is still running when the next delivery comes) fails for good at the bound, with a
// status and record saying so, instead of being delivered into a crash loop.
func TestInterruptedDeliveriesEndTheJob(t *testing.T) {
	w := newWorld(t)
	j := job("api", "aaa", time.Now())
	crashed := func(attempt int) {
		rec, err := w.store.Get(t.Context(), j.ID)
		if err != nil {
			rec = queuedRecord(j)
		}
		rec.State, rec.Attempts = queue.StateRunning, attempt
		_ = w.store.Put(t.Context(), rec)
	}
	// Deliveries 1 and 2 died mid-run; the third finds the record running and runs.
	crashed(2)
	rec, _ := w.store.Get(t.Context(), j.ID)
	rec.Interrupted = MaxInterrupted - 2
	_ = w.store.Put(t.Context(), rec)
	if err := w.s.Handle(t.Context(), j, queue.Delivery{Attempt: 3}); err != nil {
		t.Fatalf("a job interrupted %d times: %v, want it run", MaxInterrupted-1, err)
	}
	if len(w.applier.runs) != 1 {
		t.Fatalf("runs %v", w.applier.runs)
	}

	j2 := job("api", "bbb", time.Now())
	rec2 := queuedRecord(j2)
	rec2.State, rec2.Attempts, rec2.Interrupted = queue.StateRunning, 3, MaxInterrupted-1
	_ = w.store.Put(t.Context(), rec2)
	err := w.s.Handle(t.Context(), j2, queue.Delivery{Attempt: 4})
	var retry *queue.RetryError
	if err == nil || errors.As(err, &retry) {
		t.Fatalf("a job interrupted %d times: %v, want a final failure", MaxInterrupted, err)
	}
	want := []string{"failure stopped after 3 attempts that ended the process"}
	if diff := cmp.Diff(want, w.rep.states("bbb")); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	got, _ := w.store.Get(t.Context(), j2.ID)
	if got.State != queue.StateFailed || got.Interrupted != MaxInterrupted || got.Error == nil || got.Error.Stage != string(StageRun) {
		t.Errorf("record %+v", got)
	}
	if len(w.applier.runs) != 1 {
		t.Errorf("the crashing job was run again: %v", w.applier.runs)
	}
}

// TestRetriesAreNotTakenForCrashes: a delivery that ends in a retry (a transient error, a
// shutdown) leaves its record queued, so the next delivery does not count it as interrupted.
func TestRetriesAreNotTakenForCrashes(t *testing.T) {
	w := newWorld(t)
	ctx, cancel := context.WithCancel(t.Context())
	w.applier.sync = func(apply.App, string, []render.Object) (*apply.Result, error) {
		cancel() // shutdown past its grace cuts the apply short
		return nil, &apply.Error{Stage: apply.StageApply, Object: "ConfigMap api/x", Message: "context canceled", Err: context.Canceled}
	}
	j := job("api", "aaa", time.Now())
	for attempt := 1; attempt <= MaxInterrupted+1; attempt++ {
		err := w.s.Handle(ctx, j, queue.Delivery{Attempt: attempt})
		var retry *queue.RetryError
		if !errors.As(err, &retry) {
			t.Fatalf("delivery %d cut short by shutdown: %v, want it handed back", attempt, err)
		}
		ctx, cancel = context.WithCancel(t.Context())
	}
	cancel()
	rec, _ := w.store.Get(t.Context(), j.ID)
	if rec.State != queue.StateQueued || rec.Interrupted != 0 || rec.Failures != 0 {
		t.Errorf("record after shutdowns: state %s, interrupted %d, failures %d", rec.State, rec.Interrupted, rec.Failures)
	}
	for _, s := range w.rep.states("aaa") {
		if strings.HasPrefix(s, "failure") {
			t.Errorf("a shutdown posted %q", s)
		}
	}
}

// TestPanicFailsTheSync: a panic while running a job fails that sync with a final status
// instead of ending the process.
func TestPanicFailsTheSync(t *testing.T) {
	w := newWorld(t)
	w.applier.sync = func(apply.App, string, []render.Object) (*apply.Result, error) { panic("boom") }
	j := job("api", "aaa", time.Now())
	w.s.notifyQueued(t.Context(), j)
	err := w.s.Handle(t.Context(), j, queue.Delivery{Attempt: 1})
	var retry *queue.RetryError
	if err == nil || errors.As(err, &retry) {
		t.Fatalf("panic: %v, want a final failure", err)
	}
	got := w.rep.states("aaa")
	if last := got[len(got)-1]; last != "failure internal error: boom" {
		t.Errorf("statuses %q", got)
	}
}

// TestStaleCommitIsNotApplied: a push (or poll) never moves an app to a commit that neither
// descends from the one it runs nor is its branch's head now, as a replayed delivery of a
// rewritten history would; a forced push, whose commit is the head, is applied.
func TestStaleCommitIsNotApplied(t *testing.T) {
	w := newWorld(t)
	w.store.states["api"] = queue.AppState{App: "api", SHA: "running", State: queue.StateSucceeded, AppliedSHA: "running"}
	w.fetch.ancestor = func(a, b string) bool { return false } // "replayed" and "running" have diverged
	w.fetch.head = "running"
	replay := job("api", "replayed", time.Now())
	if err := w.s.Handle(t.Context(), replay, queue.Delivery{Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	want := []string{"canceled not applied: replaye does not descend from the running running and is not the head of main"}
	if diff := cmp.Diff(want, w.rep.states("replayed")); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	if len(w.applier.runs) != 0 {
		t.Fatalf("a stale commit was applied: %v", w.applier.runs)
	}
	// The same commit as the branch's head: a forced push, applied.
	w.fetch.head = "replayed"
	forced := replay
	forced.ID = "forced"
	if err := w.s.Handle(t.Context(), forced, queue.Delivery{Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"api@replayed"}, w.applier.runs); diff != "" {
		t.Errorf("runs (-want +got):\n%s", diff)
	}
	// The remote cannot be asked: retried, not applied and not skipped.
	w.fetch.headErr = fmt.Errorf("ls-remote: %w", syscall.ECONNREFUSED)
	other := job("api", "other", time.Now())
	w.store.states["api"] = queue.AppState{App: "api", SHA: "replayed", State: queue.StateSucceeded, AppliedSHA: "replayed"}
	var retry *queue.RetryError
	if err := w.s.Handle(t.Context(), other, queue.Delivery{Attempt: 1}); !errors.As(err, &retry) {
		t.Fatalf("head unknown: %v, want a retry", err)
	}
	lastIsFinal(t, w, "replayed")
}

// TestDependencyCheckErrorsAreRetried: the dependency gate reads ferry's own store; a NATS
// hiccup there is retried, not taken for a failed dependency.
func TestDependencyCheckErrorsAreRetried(t *testing.T) {
	apps := []App{{Name: "db", Repo: "platform", Path: "apps/db"}, {Name: "api", Repo: "platform", Path: "apps/api", DependsOn: []string{"db"}}}
	w := newWorld(t, apps...)
	w.backlog.err = errors.New("nats: timeout")
	err := w.s.Handle(t.Context(), job("api", "aaa", time.Now()), queue.Delivery{Attempt: 1})
	var retry *queue.RetryError
	if !errors.As(err, &retry) {
		t.Fatalf("a store error in the dependency check: %v, want a retry", err)
	}
	for _, s := range w.rep.states("aaa") {
		if strings.HasPrefix(s, "failure") {
			t.Errorf("posted %q", s)
		}
	}
}

// TestRemovedAppGetsAFinalStatus: a job whose app left the configuration while it was queued
// ends with a final status on its commit, not with the pending one its hook posted.
func TestRemovedAppGetsAFinalStatus(t *testing.T) {
	w := newWorld(t)
	j := job("gone", "aaa", time.Now())
	w.s.notifyQueued(t.Context(), j)
	if err := w.s.Handle(t.Context(), j, queue.Delivery{Attempt: 1}); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	want := []string{"pending queued", "canceled not applied: app gone is not configured any more"}
	if diff := cmp.Diff(want, w.rep.states("aaa")); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	if rec, _ := w.store.Get(t.Context(), j.ID); rec.State != queue.StateSkipped {
		t.Errorf("record %+v", rec)
	}
	if len(w.applier.runs) != 0 {
		t.Errorf("applied %v", w.applier.runs)
	}
}
