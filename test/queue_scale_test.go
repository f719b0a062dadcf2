package test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ferrygitops/ferry/queue"
	"github.com/nats-io/nats.go"
)

const (
	// queueScaleApps are configured; queueScaleBusy of them get two jobs each, and one app a
	// burst of queueScaleBurst, all stored before the workers start.
	queueScaleApps  = 5000
	queueScaleBusy  = 1000
	queueScaleBurst = 20
	// queueScaleWait bounds the wait for every job to end.
	queueScaleWait = 3 * time.Minute
)

// TestQueueThousandsOfAppsOnNATSCluster runs the queue on a three-node NATS cluster (stream
// replicated three times) with 5,000 apps configured: two consumers, each with its own
// connection to another node as two replicas have, take 2,000 jobs over 1,000 apps and a burst
// of 20 for one app. One of them loses its connection for good midway, as a killed replica does.
// Every job must end, each app's jobs must start in the order they were stored (a job cut off
// with its replica runs again before the next), no app may have two jobs running at once, and
// the stream must hold two consumers whatever the number of apps.
func TestQueueThousandsOfAppsOnNATSCluster(t *testing.T) {
	nodes := startNATSCluster(t, 3)
	connect := func(n *natsServer, name string) *nats.Conn {
		nc, err := nats.Connect(n.URL(), nats.Name(name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	ctx := t.Context()
	q, err := queue.New(ctx, connect(nodes[0], "publisher"), queue.Options{Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	apps := make([]string, queueScaleApps)
	for i := range apps {
		apps[i] = fmt.Sprintf("app%d", i+1)
	}
	var jobs []queue.Job
	job := func(app string, i int) queue.Job {
		return queue.Job{ID: queue.NewID(), Kind: queue.KindDeploy, Trigger: queue.TriggerPush, Repo: "platform", App: app,
			Ref: "refs/heads/main", SHA: fmt.Sprintf("sha%03d", i), DeliveryID: fmt.Sprintf("d-%s-%d", app, i), EnqueuedAt: time.Now().UTC()}
	}
	for round := range 2 {
		for i := range queueScaleBusy {
			// Spread over the whole range of apps.
			jobs = append(jobs, job(apps[i*len(apps)/queueScaleBusy], round))
		}
	}
	for i := range queueScaleBurst {
		jobs = append(jobs, job("burst", i))
	}
	if _, err := q.Enqueue(ctx, jobs); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	running := map[string]bool{}
	started := map[string][]string{}
	ended := map[string]bool{}
	overlaps := 0
	all := make(chan struct{})
	cutA := make(chan struct{})
	redelivered := 0
	handler := func(ctx context.Context, j queue.Job, d queue.Delivery) error {
		mu.Lock()
		if d.Attempt > 1 {
			redelivered++
		}
		if running[j.App] {
			overlaps++
		}
		running[j.App] = true
		started[j.App] = append(started[j.App], j.SHA)
		mu.Unlock()
		select {
		case <-time.After(2 * time.Millisecond):
		case <-ctx.Done():
		}
		mu.Lock()
		defer mu.Unlock()
		running[j.App] = false
		if ctx.Err() != nil {
			return ctx.Err()
		}
		ended[j.ID] = true
		if len(ended) == len(jobs)/3 {
			close(cutA)
		}
		if len(ended) == len(jobs) {
			close(all)
		}
		return nil
	}
	opts := queue.DefaultConsumeOptions()
	opts.AckWait = 2 * time.Second
	opts.Grace = 5 * time.Second
	ncA := connect(nodes[1], "replica-a")
	replicas := []*nats.Conn{ncA, connect(nodes[2], "replica-b")}
	var wg sync.WaitGroup
	stop, cancel := context.WithCancel(ctx)
	defer func() { cancel(); wg.Wait() }()
	begin := time.Now()
	for _, nc := range replicas {
		rq, err := queue.New(ctx, nc, queue.Options{Replicas: 3})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			if err := rq.Consume(stop, apps, handler, opts); err != nil {
				t.Errorf("consume: %v", err)
			}
		})
	}
	select {
	case <-cutA:
		ncA.Close()
	case <-time.After(queueScaleWait):
		t.Fatal("a third of the jobs did not end")
	}
	select {
	case <-all:
		mu.Lock()
		t.Logf("%d jobs of %d apps ended %s after two consumers started on a 3-node cluster (one cut off midway; %d runs of redelivered jobs)",
			len(jobs), queueScaleBusy+1, time.Since(begin).Round(time.Millisecond), redelivered)
		mu.Unlock()
	case <-time.After(queueScaleWait):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("%d of %d jobs ended", len(ended), len(jobs))
	}
	mu.Lock()
	defer mu.Unlock()
	if overlaps > 0 {
		t.Errorf("an app had two jobs running at once %d times", overlaps)
	}
	for app, shas := range started {
		// A job cut off with replica a starts again: drop repeats, then the order must be the
		// stored one.
		if got := slices.Compact(slices.Clone(shas)); !slices.IsSorted(got) {
			t.Errorf("jobs of %s started in the order %v, want the stored order", app, shas)
		}
	}
	stream, err := q.JetStream().Stream(ctx, queue.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := stream.Info(ctx)
		if err == nil && info.State.Msgs == 0 {
			if info.State.Consumers != 2 {
				t.Errorf("%d consumers on the stream for %d apps, want 2", info.State.Consumers, len(apps))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("jobs left on the stream after all ended: %+v (%v)", info, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
