package syncer

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/queue/queuetest"
	"github.com/ferrygitops/ferry/syncer/apply"
	"github.com/ferrygitops/ferry/syncer/notify"
	"github.com/ferrygitops/ferry/syncer/render"
)

// TestFailureThenRecoveryNotifiesWithoutTheSyncWaiting runs a failing deploy and then a
// succeeding one of the same app, with a real stream and dispatcher and a webhook receiver that
// holds every request until released: both syncs end while the receiver still holds the
// first, and the receiver then gets failed, then recovered.
func TestFailureThenRecoveryNotifiesWithoutTheSyncWaiting(t *testing.T) {
	js := queuetest.Start(t).JetStream()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	n, err := queue.NewNotifications(t.Context(), js, queue.NotifyOptions{Logger: log})
	if err != nil {
		t.Fatal(err)
	}

	release := make(chan struct{})
	var mu sync.Mutex
	var got []map[string]any
	arrived := make(chan struct{}, 10)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ce struct {
			Type string         `json:"type"`
			Data map[string]any `json:"data"`
		}
		_ = json.NewDecoder(r.Body).Decode(&ce)
		ce.Data["type"] = ce.Type
		mu.Lock()
		got = append(got, ce.Data)
		mu.Unlock()
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(recv.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})

	reg := prometheus.NewRegistry()
	m := notify.NewMetrics(reg)
	o := notify.DefaultOptions()
	o.Logger, o.Metrics, o.Source = log, m, "https://ferry.example.com"
	key := []byte("syncer-test-signing-key-32-bytes")
	d, err := notify.NewDispatcher(t.Context(), n, []notify.Target{{Name: "hook", Type: notify.Webhook, URL: recv.URL, Key: key,
		Events: []queue.EventKind{queue.EventFailed, queue.EventSucceeded}}}, o)
	if err != nil {
		t.Fatal(err)
	}
	pub := notify.NewPublisher(n, log, m)
	ctx := t.Context()
	go pub.Run(ctx)
	go func() { _ = d.Run(ctx) }()

	w := newWorld(t)
	w.s.notify = pub
	w.applier.sync = func(_ apply.App, rev string, objs []render.Object) (*apply.Result, error) {
		if rev == "bad" {
			return nil, errors.New("Deployment api/web: admission webhook denied the request")
		}
		return &apply.Result{Created: len(objs)}, nil
	}
	now := time.Now()
	if err := w.s.Handle(ctx, job("api", "bad", now), queue.Delivery{Attempt: 1}); err == nil {
		t.Fatal("the bad commit's sync did not fail")
	}
	select {
	case <-arrived:
	case <-time.After(20 * time.Second):
		t.Fatal("the failure was not sent")
	}
	// The receiver holds the failure's request: the next sync must not wait for it.
	done := make(chan error, 1)
	go func() { done <- w.s.Handle(ctx, job("api", "good", now.Add(time.Second)), queue.Delivery{Attempt: 1}) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the sync waited for the notification receiver")
	}
	close(release)
	select {
	case <-arrived:
	case <-time.After(20 * time.Second):
		t.Fatal("the recovery was not sent")
	}
	mu.Lock()
	defer mu.Unlock()
	var seen [][3]any
	for _, d := range got {
		seen = append(seen, [3]any{d["type"], d["sha"], d["app"]})
	}
	want := [][3]any{{"dev.ferry.sync.failed", "bad", "api"}, {"dev.ferry.sync.recovered", "good", "api"}}
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("notifications (-want +got):\n%s", diff)
	}
	if got[0]["message"] != "Deployment api/web: admission webhook denied the request" || got[0]["url"] != "https://ferry.example.com/syncs/id-api-bad" {
		t.Errorf("failure's data %v", got[0])
	}
	// The commit statuses are the syncs' own, whatever the notifications do.
	if diff := cmp.Diff([]string{"pending syncing good"}, w.rep.states("good")[:1]); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
}

// TestEventKinds: which deploy ends are news.
func TestEventKinds(t *testing.T) {
	push := func(sha string) queue.Job { return queue.Job{SHA: sha, Trigger: queue.TriggerPush} }
	failedAt := func(sha string) queue.AppState {
		return queue.AppState{SHA: sha, State: queue.StateFailed, AppliedSHA: "old"}
	}
	okAt := func(sha string) queue.AppState {
		return queue.AppState{SHA: sha, State: queue.StateSucceeded, AppliedSHA: sha}
	}
	for _, c := range []struct {
		name  string
		prev  queue.AppState
		job   queue.Job
		state queue.State
		want  queue.EventKind
	}{
		{"first deploy succeeds", queue.AppState{}, push("a"), queue.StateSucceeded, queue.EventSucceeded},
		{"first deploy fails", queue.AppState{}, push("a"), queue.StateFailed, queue.EventFailed},
		{"new commit succeeds", okAt("a"), push("b"), queue.StateSucceeded, queue.EventSucceeded},
		{"same commit succeeds again", okAt("a"), push("a"), queue.StateSucceeded, ""},
		{"success after a failure", failedAt("a"), push("b"), queue.StateSucceeded, queue.EventRecovered},
		{"same commit succeeds after failing", failedAt("a"), queue.Job{SHA: "a", Trigger: queue.TriggerStartup}, queue.StateSucceeded, queue.EventRecovered},
		{"self-heal after a failure", failedAt("b"), queue.Job{SHA: "old", Trigger: queue.TriggerDrift}, queue.StateSucceeded, ""},
		{"same commit fails again", failedAt("a"), push("a"), queue.StateFailed, ""},
		{"next commit fails too", failedAt("a"), push("b"), queue.StateFailed, queue.EventFailed},
		{"superseded", okAt("a"), push("b"), queue.StateSkipped, queue.EventSuperseded},
		{"start-up re-sync not run", okAt("a"), queue.Job{SHA: "a", Trigger: queue.TriggerStartup}, queue.StateSkipped, ""},
	} {
		got, ok := eventKind(c.prev, c.job, c.state)
		if got != c.want || ok != (c.want != "") {
			t.Errorf("%s: %q, %v; want %q", c.name, got, ok, c.want)
		}
	}
}
