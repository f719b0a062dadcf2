package syncer

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/syncer/apply"
	"github.com/ferrygitops/ferry/syncer/render"
)

type fakeEvents struct {
	mu  sync.Mutex
	got []apply.SyncEvent
}

func (f *fakeEvents) Record(ev apply.SyncEvent) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, ev)
	return true
}

func TestFinishedDeploysRecordEventsAndMetrics(t *testing.T) {
	w := newWorld(t)
	ev := &fakeEvents{}
	reg := prometheus.NewRegistry()
	w.s.events, w.s.metrics = ev, NewMetrics(reg)
	finished := time.Unix(1_800_000_000, 0)
	w.s.opts.Now = func() time.Time { return finished }

	if err := w.s.Handle(t.Context(), job("api", "aaa", finished), queue.Delivery{Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	w.applier.sync = func(apply.App, string, []render.Object) (*apply.Result, error) {
		return &apply.Result{Configured: 2, Unchanged: 3}, &apply.Error{Stage: apply.StageHealth, Object: "Gadget g", Message: "health check failed is true: status.phase == 'Broken'", Err: errors.New("failed")}
	}
	if err := w.s.Handle(t.Context(), job("api", "bbb", finished), queue.Delivery{Attempt: 1, Last: true}); err == nil {
		t.Fatal("failing sync ended without an error")
	}
	preview := job("api", "ccc", finished)
	preview.Kind, preview.ID = queue.KindPreview, "preview"
	_ = w.s.Handle(t.Context(), preview, queue.Delivery{Attempt: 1})

	if len(ev.got) != 2 {
		t.Fatalf("events %+v, want one per finished deploy and none for the preview", ev.got)
	}
	if e := ev.got[0]; e.App != "api" || e.Reason != apply.ReasonSyncSucceeded || e.Warning || !strings.HasPrefix(e.Message, "commit aaa: applied 1 objects") {
		t.Errorf("success event %+v", e)
	}
	if e := ev.got[1]; e.Reason != apply.ReasonSyncFailed || !e.Warning || e.Message != "commit bbb: Gadget g: health check failed is true: status.phase == 'Broken'" {
		t.Errorf("failure event %+v", e)
	}
	for action, want := range map[string]float64{"created": 1, "configured": 2, "unchanged": 3, "pruned": 0} {
		if got := testutil.ToFloat64(w.s.metrics.objects.WithLabelValues("api", action)); got != want {
			t.Errorf("ferry_objects_applied_total{action=%q} = %v, want %v", action, got, want)
		}
	}
	if got := testutil.ToFloat64(w.s.metrics.failing.WithLabelValues("api")); got != 1 {
		t.Errorf("ferry_app_failing = %v after a failed deploy, want 1", got)
	}
	if got := testutil.ToFloat64(w.s.metrics.lastSuccess.WithLabelValues("api")); got != 1_800_000_000 {
		t.Errorf("ferry_app_last_success_timestamp_seconds = %v, want the first deploy's end", got)
	}
}
