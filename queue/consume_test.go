package queue

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"
)

// legacyConsumerConfig is a per-app consumer as ferry made them before one consumer took every
// app's jobs.
func legacyConsumerConfig(name, filter string, maxPending int) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{Durable: name, FilterSubject: filter, AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: 30 * time.Second, MaxDeliver: DefaultMaxDeliver, MaxAckPending: maxPending}
}

// consumeInBackground runs q.Consume until the test ends and checks it returned cleanly.
func consumeInBackground(t *testing.T, q *Queue, apps []string, h Handler, opts ConsumeOptions) context.CancelFunc {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- q.Consume(ctx, apps, h, opts) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("consume: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Consume did not return within 30s of its context ending")
		}
	})
	return cancel
}

// TestLongJobDeliveredOnce: a job running three times its ack wait, with a second replica idle
// beside it, is delivered once and acknowledged: the heartbeats of the running worker keep
// JetStream from handing it over.
func TestLongJobDeliveredOnce(t *testing.T) {
	e, nc, q := startQueue(t, t.TempDir())
	t.Cleanup(func() { nc.Close(); e.Shutdown() })
	opts := quietOptions()
	run := 3 * opts.AckWait
	var mu sync.Mutex
	var seen []Delivery
	finished := make(chan struct{})
	h := func(ctx context.Context, _ Job, d Delivery) error {
		mu.Lock()
		seen = append(seen, d)
		mu.Unlock()
		select {
		case <-time.After(run):
		case <-ctx.Done():
			return ctx.Err()
		}
		close(finished)
		return nil
	}
	for range 2 {
		consumeInBackground(t, q, []string{"api"}, h, opts)
	}
	if _, err := q.Enqueue(t.Context(), []Job{testJob("api", "abc", "d-long")}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-finished:
	case <-time.After(run + 20*time.Second):
		t.Fatal("the long job never finished")
	}
	// A redelivery, were there one, would come within an ack wait of the last heartbeat.
	time.Sleep(2 * opts.AckWait)
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff([]Delivery{{Attempt: 1}}, seen); diff != "" {
		t.Errorf("deliveries of a job running %s with a %s ack wait (-want +got):\n%s", run, opts.AckWait, diff)
	}
	if n, err := q.Pending(t.Context()); err != nil || n != 0 {
		t.Errorf("%d jobs left on the stream (%v), want the job acknowledged", n, err)
	}
}

// TestDeadWorkerJobTakenOver: a worker takes a job and then loses NATS for good (its connection
// is closed, as when its process is killed). Another replica must get the job within the
// ten seconds of the loss (the default ack wait), as attempt 2, even though the consumer was created by an older
// ferry with a 30 s ack wait; the cut-off worker gives its run up rather than go on beside it.
func TestDeadWorkerJobTakenOver(t *testing.T) {
	e, nc, q := startQueue(t, t.TempDir())
	t.Cleanup(func() { nc.Close(); e.Shutdown() })
	old := q.deployConsumerConfig(quietOptions())
	old.AckWait = 30 * time.Second
	if _, err := q.js.CreateOrUpdateConsumer(t.Context(), StreamName, old); err != nil {
		t.Fatal(err)
	}
	opts := quietOptions()
	opts.AckWait = DefaultConsumeOptions().AckWait

	deadConn, err := e.Connect("worker-a")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(deadConn.Close)
	qa, err := New(t.Context(), deadConn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	startedA, givenUp := make(chan struct{}), make(chan time.Time, 1)
	consumeInBackground(t, qa, []string{"api"}, func(ctx context.Context, _ Job, d Delivery) error {
		close(startedA)
		<-ctx.Done()
		givenUp <- time.Now()
		return ctx.Err()
	}, opts)
	if _, err := q.Enqueue(t.Context(), []Job{testJob("api", "abc", "d-dead")}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-startedA:
	case <-time.After(20 * time.Second):
		t.Fatal("worker a never started the job")
	}
	cons, err := q.js.Consumer(t.Context(), StreamName, deployConsumer)
	if err != nil {
		t.Fatal(err)
	}
	if got := cons.CachedInfo().Config.AckWait; got != opts.AckWait {
		t.Fatalf("consumer made with a 30s ack wait has %s after Consume, want %s", got, opts.AckWait)
	}

	type delivery struct {
		at time.Time
		d  Delivery
	}
	gotB := make(chan delivery, 4)
	consumeInBackground(t, q, []string{"api"}, func(_ context.Context, _ Job, d Delivery) error {
		gotB <- delivery{time.Now(), d}
		return nil
	}, opts)
	// Worker b is up and idle; worker a dies.
	time.Sleep(opts.AckWait / 4)
	died := time.Now()
	deadConn.Close()

	select {
	case at := <-givenUp:
		if took := at.Sub(died); took > opts.AckWait {
			t.Errorf("worker a gave its job up %s after losing NATS, want within the ack wait %s", took, opts.AckWait)
		}
	case <-time.After(3 * opts.AckWait):
		t.Error("worker a never gave up the job it could not keep alive")
	}
	select {
	case got := <-gotB:
		took := got.at.Sub(died)
		t.Logf("worker b got the job %s after worker a died (ack wait %s)", took, opts.AckWait)
		// The promise of issue #11: a dead worker's job is picked up in about ten seconds.
		if bound := 10 * time.Second; took > bound {
			t.Errorf("worker b got the job %s after worker a died, want within %s", took, bound)
		}
		if got.d.Attempt != 2 {
			t.Errorf("worker b ran attempt %d, want 2", got.d.Attempt)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the dead worker's job was not redelivered within 30s")
	}
}

// TestPreviewsRunConcurrentlyBesideDeploys: one replica runs PreviewConcurrency previews at
// once (not one after the other), no more, and a deploy queued while they all run starts at
// once on a slot of its own, even with a single deploy worker.
func TestPreviewsRunConcurrentlyBesideDeploys(t *testing.T) {
	e, nc, q := startQueue(t, t.TempDir())
	t.Cleanup(func() { nc.Close(); e.Shutdown() })
	opts := quietOptions()
	opts.Workers = 1
	opts.PreviewConcurrency = DefaultPreviewConcurrency
	var previews []Job
	for i := range opts.PreviewConcurrency + 2 {
		j := testJob(fmt.Sprintf("app-%d", i%3), fmt.Sprintf("sha%d", i), fmt.Sprintf("pr-%d", i))
		j.Kind, j.Trigger, j.PR = KindPreview, TriggerPR, i+1
		previews = append(previews, j)
	}
	release := make(chan struct{})
	var running, maxRunning, done atomic.Int32
	previewStarted := make(chan struct{}, len(previews))
	deployStarted := make(chan int32, 1)
	consumeInBackground(t, q, []string{"app-0", "app-1", "app-2", "db"}, func(ctx context.Context, j Job, _ Delivery) error {
		if j.Kind == KindDeploy {
			deployStarted <- running.Load()
			return nil
		}
		n := running.Add(1)
		for m := maxRunning.Load(); n > m && !maxRunning.CompareAndSwap(m, n); m = maxRunning.Load() {
		}
		previewStarted <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		running.Add(-1)
		done.Add(1)
		return nil
	}, opts)
	if _, err := q.Enqueue(t.Context(), previews); err != nil {
		t.Fatal(err)
	}
	for i := range opts.PreviewConcurrency {
		select {
		case <-previewStarted:
		case <-time.After(20 * time.Second):
			t.Fatalf("%d previews started, want %d at once", i, opts.PreviewConcurrency)
		}
	}
	if _, err := q.Enqueue(t.Context(), []Job{testJob("db", "abc", "d-deploy")}); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-deployStarted:
		if n != int32(opts.PreviewConcurrency) {
			t.Errorf("the deploy started with %d previews running, want it beside all %d", n, opts.PreviewConcurrency)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("a deploy did not start within 10s while %d previews ran", opts.PreviewConcurrency)
	}
	close(release)
	deadline := time.Now().Add(20 * time.Second)
	for done.Load() < int32(len(previews)) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := done.Load(); got != int32(len(previews)) {
		t.Fatalf("%d of %d previews ran", got, len(previews))
	}
	if m := maxRunning.Load(); m != int32(opts.PreviewConcurrency) {
		t.Errorf("at most %d previews ran at once, want %d", m, opts.PreviewConcurrency)
	}
}

// TestShutdownKeepsRunningJobsAndHandsBackWaitingOnes: when a replica shuts down, the job it
// runs goes on through the grace period, past the ack wait, without being handed to another
// replica, while the later job of the same app it held is handed back at once and runs on the
// other replica once the first has ended, never beside it.
func TestShutdownKeepsRunningJobsAndHandsBackWaitingOnes(t *testing.T) {
	e, nc, q := startQueue(t, t.TempDir())
	t.Cleanup(func() { nc.Close(); e.Shutdown() })
	opts := quietOptions()
	opts.Workers = 2
	opts.Grace = 10 * opts.AckWait
	run := 2 * opts.AckWait

	type delivery struct {
		worker string
		sha    string
		d      Delivery
	}
	seen := make(chan delivery, 10)
	var finished atomic.Bool
	var ranBeside atomic.Bool
	handler := func(worker string) Handler {
		return func(ctx context.Context, j Job, d Delivery) error {
			if j.SHA != "first" {
				ranBeside.Store(!finished.Load())
				seen <- delivery{worker, j.SHA, d}
				return nil
			}
			seen <- delivery{worker, j.SHA, d}
			select {
			case <-time.After(run):
			case <-ctx.Done():
				return ctx.Err()
			}
			finished.Store(true)
			return nil
		}
	}
	ctxA, stopA := context.WithCancel(t.Context())
	doneA := make(chan error, 1)
	go func() { doneA <- q.Consume(ctxA, []string{"long"}, handler("a"), opts) }()
	if _, err := q.Enqueue(t.Context(), []Job{testJob("long", "first", "d-first")}); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-seen:
		if got.sha != "first" {
			t.Fatalf("replica a first ran %s, want the first job", got.sha)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("replica a never started the long job")
	}
	// The second job of the app reaches replica a's free worker, which holds it behind the first.
	if _, err := q.Enqueue(t.Context(), []Job{testJob("long", "second", "d-second")}); err != nil {
		t.Fatal(err)
	}
	cons, err := q.js.Consumer(t.Context(), StreamName, deployConsumer)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err := cons.Info(t.Context())
		if err == nil && info.NumAckPending == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica a never took the second job (%v)", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	consumeInBackground(t, q, []string{"long"}, handler("b"), opts)
	stopA()

	// Handed back at shutdown, the held job is delivered to replica b again at once, long before
	// a lapsed lease would bring it back.
	deadline = time.Now().Add(opts.AckWait / 2)
	for {
		info, err := cons.Info(t.Context())
		if err == nil && info.NumRedelivered == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the held job was not handed back at shutdown (%+v, %v)", info, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case got := <-seen:
		// Attempt 2 or 3: JetStream may offer the handed-back job once more to replica a's last
		// pull while it stops, which hands it back again without running it.
		if got.worker != "b" || got.sha != "second" || got.d.Attempt < 2 {
			t.Fatalf("after replica a began shutting down, %s ran %s attempt %d; want b to run the second job, redelivered", got.worker, got.sha, got.d.Attempt)
		}
		if ranBeside.Load() {
			t.Error("the second job of the app ran while the first still ran")
		}
	case <-time.After(run + 10*time.Second):
		t.Fatal("the held job never ran after the first ended")
	}
	if !finished.Load() {
		t.Error("the long job did not finish during the grace period")
	}
	select {
	case err := <-doneA:
		if err != nil {
			t.Fatalf("consume a: %v", err)
		}
	case <-time.After(opts.Grace):
		t.Fatal("replica a did not stop once its running job was done")
	}
	time.Sleep(opts.AckWait + opts.AckWait/2) // a redelivery would come within an ack wait
	select {
	case got := <-seen:
		t.Errorf("%s ran %s attempt %d after shutdown; each job must run once", got.worker, got.sha, got.d.Attempt)
	default:
	}
	if n, err := q.Pending(t.Context()); err != nil || n != 0 {
		t.Errorf("%d jobs left on the stream (%v), want both acknowledged", n, err)
	}
}
