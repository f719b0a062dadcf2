package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
)

func startQueue(t *testing.T, dir string) (*Embedded, *nats.Conn, *Queue) {
	t.Helper()
	e, err := StartEmbedded(EmbeddedOptions{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := e.Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	q, err := New(t.Context(), nc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return e, nc, q
}

func testJob(app, sha, delivery string) Job {
	return Job{ID: NewID(), Kind: KindDeploy, Trigger: TriggerPush, Repo: "platform", App: app, SHA: sha, Ref: "refs/heads/main", DeliveryID: delivery, EnqueuedAt: time.Now().UTC().Truncate(time.Millisecond)}
}

func quietOptions() ConsumeOptions {
	o := DefaultConsumeOptions()
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	o.AckWait = 2 * time.Second
	o.Grace = 5 * time.Second
	return o
}

func TestEnqueueDedupesDeliveries(t *testing.T) {
	e, nc, q := startQueue(t, t.TempDir())
	t.Cleanup(func() { nc.Close(); e.Shutdown() })

	first := []Job{testJob("api", "aaa", "d-1"), testJob("db", "aaa", "d-1")}
	stored, err := q.Enqueue(t.Context(), first)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 2 {
		t.Fatalf("stored %d jobs, want 2", len(stored))
	}
	// The forge redelivers the same hook: new job ids, same delivery id.
	again := []Job{testJob("api", "aaa", "d-1"), testJob("db", "aaa", "d-1")}
	stored, err = q.Enqueue(t.Context(), again)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 0 {
		t.Fatalf("redelivery stored %d jobs, want 0", len(stored))
	}
	n, err := q.Pending(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("stream holds %d jobs, want 2", n)
	}
}

// TestEnqueueReportsOnlyNewJobs mixes new and redelivered jobs in one call, duplicates first,
// in the middle and last: stored lists exactly the new ones, in order, and the caller's slice
// is left as it was.
func TestEnqueueReportsOnlyNewJobs(t *testing.T) {
	e, nc, q := startQueue(t, t.TempDir())
	t.Cleanup(func() { nc.Close(); e.Shutdown() })
	if _, err := q.Enqueue(t.Context(), []Job{testJob("a", "1", "d-1"), testJob("c", "1", "d-1"), testJob("e", "1", "d-1")}); err != nil {
		t.Fatal(err)
	}
	jobs := []Job{testJob("a", "1", "d-1"), testJob("b", "1", "d-1"), testJob("c", "1", "d-1"), testJob("d", "1", "d-1"), testJob("e", "1", "d-1")}
	before := append([]Job(nil), jobs...)
	stored, err := q.Enqueue(t.Context(), jobs)
	if err != nil {
		t.Fatal(err)
	}
	var apps []string
	for _, j := range stored {
		apps = append(apps, j.App)
	}
	if diff := cmp.Diff([]string{"b", "d"}, apps); diff != "" {
		t.Errorf("stored apps (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(before, jobs); diff != "" {
		t.Errorf("Enqueue changed its argument (-before +after):\n%s", diff)
	}
}

func TestValidName(t *testing.T) {
	for name, want := range map[string]bool{
		"api": true, "a": true, "0": true, "web-2": true, "a-b-c": true, strings.Repeat("a", 63): true,
		"": false, "-api": false, "api-": false, "Api": false, "api.v2": false, "api_v2": false, "a*": false,
		"a>": false, "a b": false, "é": false, strings.Repeat("a", 64): false,
	} {
		if got := ValidName(name); got != want {
			t.Errorf("ValidName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestEnqueueRejectsInvalidJobs(t *testing.T) {
	e, nc, q := startQueue(t, t.TempDir())
	t.Cleanup(func() { nc.Close(); e.Shutdown() })
	bad := testJob("api", "", "d")
	if _, err := q.Enqueue(t.Context(), []Job{bad}); err == nil {
		t.Fatal("a job without a sha was stored")
	}
	bad = testJob("API.*", "abc", "d")
	if _, err := q.Enqueue(t.Context(), []Job{bad}); err == nil {
		t.Fatal("a job with an app name that is no subject token was stored")
	}
}

func TestJobsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	e, nc, q := startQueue(t, dir)
	want := testJob("api", "abc123", "d-restart")
	if _, err := q.Enqueue(t.Context(), []Job{want}); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	e.Shutdown()

	e, nc, q = startQueue(t, dir)
	t.Cleanup(func() { nc.Close(); e.Shutdown() })
	got := make(chan Job, 1)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	go func() {
		_ = q.Consume(ctx, []string{"api"}, func(_ context.Context, j Job, _ Delivery) error {
			got <- j
			return nil
		}, quietOptions())
	}()
	select {
	case j := <-got:
		if diff := cmp.Diff(want, j); diff != "" {
			t.Fatalf("job after restart (-want +got):\n%s", diff)
		}
	case <-ctx.Done():
		t.Fatal("the job stored before the restart was not delivered after it")
	}
}

func TestConsumeRetriesThenTerminates(t *testing.T) {
	e, nc, q := startQueue(t, t.TempDir())
	t.Cleanup(func() { nc.Close(); e.Shutdown() })
	if _, err := q.Enqueue(t.Context(), []Job{testJob("flaky", "abc", "d-flaky")}); err != nil {
		t.Fatal(err)
	}
	opts := quietOptions()
	opts.MaxDeliver = 3
	var mu sync.Mutex
	var seen []Delivery
	done := make(chan struct{})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	go func() {
		_ = q.Consume(ctx, []string{"flaky"}, func(_ context.Context, _ Job, d Delivery) error {
			mu.Lock()
			seen = append(seen, d)
			mu.Unlock()
			if d.Last {
				close(done)
			}
			return Retry(errors.New("apiserver unreachable"), 50*time.Millisecond)
		}, opts)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("the last delivery never came")
	}
	// No fourth delivery may follow the last one.
	time.Sleep(500 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	want := []Delivery{{Attempt: 1}, {Attempt: 2}, {Attempt: 3, Last: true}}
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Fatalf("deliveries (-want +got):\n%s", diff)
	}
}

func TestOneSyncPerAppAtATime(t *testing.T) {
	e, nc, q := startQueue(t, t.TempDir())
	t.Cleanup(func() { nc.Close(); e.Shutdown() })
	apps := []string{"a", "b"}
	var jobs []Job
	for i := range 6 {
		for _, app := range apps {
			jobs = append(jobs, testJob(app, fmt.Sprintf("sha%d", i), fmt.Sprintf("d-%d", i)))
		}
	}
	if _, err := q.Enqueue(t.Context(), jobs); err != nil {
		t.Fatal(err)
	}
	var running sync.Map
	var overlap, maxParallel, now, total atomic.Int32
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	opts := quietOptions()
	opts.Workers = 4
	handler := func(_ context.Context, j Job, _ Delivery) error {
		if _, busy := running.LoadOrStore(j.App, true); busy {
			overlap.Add(1)
		}
		n := now.Add(1)
		for {
			m := maxParallel.Load()
			if n <= m || maxParallel.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(30 * time.Millisecond)
		now.Add(-1)
		running.Delete(j.App)
		if total.Add(1) == int32(len(jobs)) {
			cancel()
		}
		return nil
	}
	// Two consumers on the same stream stand for two replicas.
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { _ = q.Consume(ctx, apps, handler, opts) })
	}
	wg.Wait()
	if got := total.Load(); got != int32(len(jobs)) {
		t.Fatalf("ran %d jobs, want %d", got, len(jobs))
	}
	if overlap.Load() != 0 {
		t.Fatalf("an app had two syncs at once %d times", overlap.Load())
	}
	if maxParallel.Load() < 2 {
		t.Fatalf("different apps never ran in parallel (max %d)", maxParallel.Load())
	}
}

func TestPreviewsShareOneBoundedConsumer(t *testing.T) {
	e, nc, q := startQueue(t, t.TempDir())
	t.Cleanup(func() { nc.Close(); e.Shutdown() })
	// A per-app preview consumer as ferry used to create them, holding a job: the shared
	// consumer must replace it (a work-queue stream refuses overlapping filters) and run the job.
	legacy := legacyConsumerConfig("preview-a", Subject(KindPreview, "a"), 2)
	if _, err := q.js.CreateOrUpdateConsumer(t.Context(), StreamName, legacy); err != nil {
		t.Fatal(err)
	}
	apps := []string{"a", "b", "c"}
	var jobs []Job
	for i := range 4 {
		for _, app := range apps {
			j := testJob(app, fmt.Sprintf("sha%d", i), fmt.Sprintf("pr-%s-%d", app, i))
			j.Kind, j.Trigger, j.PR = KindPreview, TriggerPR, i+1
			jobs = append(jobs, j)
		}
	}
	if _, err := q.Enqueue(t.Context(), jobs); err != nil {
		t.Fatal(err)
	}
	var now, maxParallel, total atomic.Int32
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	opts := quietOptions()
	opts.Workers = 4
	opts.PreviewConcurrency = 3
	handler := func(_ context.Context, j Job, _ Delivery) error {
		if j.Kind != KindPreview {
			t.Errorf("job %s has kind %s", j.ID, j.Kind)
		}
		n := now.Add(1)
		for {
			m := maxParallel.Load()
			if n <= m || maxParallel.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
		now.Add(-1)
		if total.Add(1) == int32(len(jobs)) {
			cancel()
		}
		return nil
	}
	// Two replicas with 3 preview slots each: 6 slots, but previews are bounded across both.
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if err := q.Consume(ctx, apps, handler, opts); err != nil {
				t.Errorf("consume: %v", err)
			}
		})
	}
	wg.Wait()
	if got := total.Load(); got != int32(len(jobs)) {
		t.Fatalf("ran %d previews, want %d", got, len(jobs))
	}
	if m := maxParallel.Load(); m < 2 || m > 3 {
		t.Fatalf("at most %d previews ran at once, want 2 or 3 (PreviewConcurrency 3)", m)
	}
	stream, err := q.js.Stream(t.Context(), StreamName)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	lister := stream.ConsumerNames(t.Context())
	for n := range lister.Name() {
		if strings.HasPrefix(n, "preview") {
			names = append(names, n)
		}
	}
	if diff := cmp.Diff([]string{"preview"}, names); diff != "" {
		t.Fatalf("preview consumers (-want +got):\n%s", diff)
	}
}

func TestIdleCalledOnceAfterABurst(t *testing.T) {
	e, nc, q := startQueue(t, t.TempDir())
	t.Cleanup(func() { nc.Close(); e.Shutdown() })
	var jobs []Job
	for i := range 6 {
		jobs = append(jobs, testJob(fmt.Sprintf("app-%d", i%3), fmt.Sprintf("sha%d", i), fmt.Sprintf("d-%d", i)))
	}
	var running, done, idleCalls, idleWhileRunning atomic.Int32
	idle := make(chan struct{}, 10)
	opts := quietOptions()
	opts.Workers = 2
	opts.IdleDelay = 300 * time.Millisecond
	opts.Idle = func() {
		if running.Load() != 0 {
			idleWhileRunning.Add(1)
		}
		idleCalls.Add(1)
		idle <- struct{}{}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	consumed := make(chan error, 1)
	go func() {
		consumed <- q.Consume(ctx, []string{"app-0", "app-1", "app-2"}, func(context.Context, Job, Delivery) error {
			running.Add(1)
			defer running.Add(-1)
			// Shorter than IdleDelay: the gaps between jobs of the burst are not idleness.
			time.Sleep(50 * time.Millisecond)
			done.Add(1)
			return nil
		}, opts)
	}()
	if _, err := q.Enqueue(t.Context(), jobs); err != nil {
		t.Fatal(err)
	}
	select {
	case <-idle:
	case <-ctx.Done():
		t.Fatal("Idle was never called after the burst")
	}
	if got := done.Load(); got != int32(len(jobs)) {
		t.Fatalf("Idle called after %d of %d jobs", got, len(jobs))
	}
	// Nothing more runs: no second call.
	time.Sleep(3 * opts.IdleDelay)
	if got := idleCalls.Load(); got != 1 {
		t.Fatalf("Idle called %d times after one burst, want 1", got)
	}
	// A second burst ends with a second call.
	if _, err := q.Enqueue(t.Context(), []Job{testJob("app-1", "sha-next", "d-next")}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-idle:
	case <-ctx.Done():
		t.Fatal("Idle was not called after the second burst")
	}
	if idleWhileRunning.Load() != 0 {
		t.Fatalf("Idle called %d times while a job ran", idleWhileRunning.Load())
	}
	cancel()
	if err := <-consumed; err != nil {
		t.Fatal(err)
	}
}

// TestJobWireFormat: jobs are encoded with the v2 encoder and decoded with encoding/json; both
// must agree on every field, and the encoding must equal encoding/json's.
func TestJobWireFormat(t *testing.T) {
	full := Job{ID: NewID(), Kind: KindPreview, Trigger: TriggerPR, Repo: "platform", App: "api", Ref: "refs/pull/7/head",
		SHA: "aaa", Before: "bbb", Unfiltered: true, DeliveryID: "d-1", PR: 7, BaseSHA: "ccc",
		EnqueuedAt: time.Date(2026, 11, 23, 10, 0, 0, 123456789, time.UTC)}
	for _, j := range []Job{full, testJob("api", "aaa", "")} {
		data, err := jsonv2.Marshal(j)
		if err != nil {
			t.Fatal(err)
		}
		var back Job
		if err := json.Unmarshal(data, &back); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(j, back); diff != "" {
			t.Errorf("round trip (-sent +read):\n%s", diff)
		}
		v1, err := json.Marshal(j)
		if err != nil {
			t.Fatal(err)
		}
		var a, b map[string]any
		if err := json.Unmarshal(data, &a); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(v1, &b); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(b, a); diff != "" {
			t.Errorf("v2 encoding differs from encoding/json's (-v1 +v2):\n%s", diff)
		}
	}
}

func TestRecordsHistory(t *testing.T) {
	e, nc, q := startQueue(t, t.TempDir())
	t.Cleanup(func() { nc.Close(); e.Shutdown() })
	recs, err := NewRecords(t.Context(), q.JetStream(), 1)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range HistoryLength + 3 {
		r := Record{ID: NewID(), App: "api", Repo: "platform", Kind: KindDeploy, SHA: fmt.Sprint(i), State: StateQueued}
		ids = append(ids, r.ID)
		if err := recs.Put(t.Context(), r); err != nil {
			t.Fatal(err)
		}
		r.State = StateSucceeded
		if err := recs.Put(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	hist, err := recs.History(t.Context(), "api", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != HistoryLength {
		t.Fatalf("history has %d records, want %d", len(hist), HistoryLength)
	}
	if hist[0].ID != ids[len(ids)-1] || hist[0].State != StateSucceeded {
		t.Fatalf("newest record is %s %s, want %s succeeded", hist[0].ID, hist[0].State, ids[len(ids)-1])
	}
	// The oldest record was dropped; a short account of it stays.
	if r, err := recs.Get(t.Context(), ids[0]); err != nil || !r.Evicted || r.State != StateSucceeded || r.SHA != "0" {
		t.Fatalf("the oldest record should have left its account, got %+v, %v", r, err)
	}
	if _, err := recs.Get(t.Context(), "app.api.history"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a key that is no sync id must not be readable, got %v", err)
	}
}

func TestNewIDSortsByTime(t *testing.T) {
	a := NewID()
	time.Sleep(2 * time.Millisecond)
	b := NewID()
	if !(a < b) || len(a) != 26 || !validID(a) {
		t.Fatalf("ids %q, %q: want 26 valid characters sorting by time", a, b)
	}
}

// TestWatchInputs delivers what was recorded before the watch started, then later changes from
// any writer, and a removed entry as no paths.
func TestWatchInputs(t *testing.T) {
	e, nc, q := startQueue(t, t.TempDir())
	t.Cleanup(func() { nc.Close(); e.Shutdown() })
	recs, err := NewRecords(t.Context(), q.JetStream(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := recs.PutInputs(t.Context(), Inputs{App: "api", SHA: "a1", Paths: []string{"base"}}); err != nil {
		t.Fatal(err)
	}
	got := make(chan Inputs, 10)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- recs.WatchInputs(ctx, func(in Inputs) { got <- in }) }()
	next := func() Inputs {
		t.Helper()
		select {
		case in := <-got:
			return in
		case <-time.After(10 * time.Second):
			t.Fatal("no inputs delivered within 10s")
			return Inputs{}
		}
	}
	if diff := cmp.Diff(Inputs{App: "api", SHA: "a1", Paths: []string{"base"}}, next()); diff != "" {
		t.Errorf("stored inputs (-want +got):\n%s", diff)
	}
	// Other keys of the bucket (states, records) are not inputs.
	if err := recs.PutAppState(t.Context(), AppState{App: "api", SHA: "a1", State: StateSucceeded}); err != nil {
		t.Fatal(err)
	}
	if err := recs.PutInputs(t.Context(), Inputs{App: "web", SHA: "b2", Paths: []string{"common/web.yaml", "base"}}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Inputs{App: "web", SHA: "b2", Paths: []string{"common/web.yaml", "base"}}, next()); diff != "" {
		t.Errorf("later inputs (-want +got):\n%s", diff)
	}
	if err := recs.kv.Delete(t.Context(), inputsKey("api")); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Inputs{App: "api"}, next()); diff != "" {
		t.Errorf("deleted inputs (-want +got):\n%s", diff)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("WatchInputs after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WatchInputs did not return after its context ended")
	}
}
