package queue

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"
)

// TestJobsOfRemovedAppsStillEnd: deploy jobs stored for an app that is no longer configured
// still reach the handler, which ends each with a final status.
func TestJobsOfRemovedAppsStillEnd(t *testing.T) {
	e, nc, q := startQueue(t, t.TempDir())
	t.Cleanup(func() { nc.Close(); e.Shutdown() })
	stale := testJob("b", "sha1", "d-b-1")
	if _, err := q.Enqueue(t.Context(), []Job{stale}); err != nil {
		t.Fatal(err)
	}
	got := make(chan Job, 1)
	consumeInBackground(t, q, []string{"a"}, func(_ context.Context, j Job, _ Delivery) error {
		got <- j
		return nil
	}, quietOptions())
	select {
	case j := <-got:
		if j.ID != stale.ID {
			t.Errorf("handled %s, want the removed app's job %s", j.ID, stale.ID)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the removed app's job never reached the handler")
	}
}

// TestLegacyConsumersReplaced: a stream left by a version with one consumer per app, holding
// jobs (one of them delivered to a worker that died before acknowledging it), is taken over at
// start: the per-app consumers are deleted, every stored job reaches the handler once, each
// app's in the order they were stored and one at a time, an app no longer configured included,
// and only the shared consumers remain.
func TestLegacyConsumersReplaced(t *testing.T) {
	e, nc, q := startQueue(t, t.TempDir())
	t.Cleanup(func() { nc.Close(); e.Shutdown() })
	const apps, perApp = 40, 3
	names := appNames(apps)
	var jobs []Job
	for _, app := range names {
		cfg := legacyConsumerConfig("deploy-"+app, Subject(KindDeploy, app), 1)
		if _, err := q.js.CreateOrUpdateConsumer(t.Context(), StreamName, cfg); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := q.js.CreateOrUpdateConsumer(t.Context(), StreamName, legacyConsumerConfig("preview-a1", Subject(KindPreview, "a1"), 2)); err != nil {
		t.Fatal(err)
	}
	for i := range perApp {
		for _, app := range names {
			jobs = append(jobs, testJob(app, fmt.Sprintf("sha%d", i), fmt.Sprintf("d-%s-%d", app, i)))
		}
	}
	preview := testJob("a1", "head", "pr-1")
	preview.Kind, preview.Trigger, preview.PR = KindPreview, TriggerPR, 1
	if _, err := q.Enqueue(t.Context(), append(jobs, preview)); err != nil {
		t.Fatal(err)
	}
	// An old worker took a1's first job and died without a word.
	old, err := q.js.Consumer(t.Context(), StreamName, "deploy-a1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Next(jetstream.FetchMaxWait(5 * time.Second)); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	order := map[string][]string{}
	running := map[string]bool{}
	var overlaps int
	all := make(chan struct{})
	total := 0
	h := func(_ context.Context, j Job, _ Delivery) error {
		mu.Lock()
		if running[j.App+string(j.Kind)] {
			overlaps++
		}
		running[j.App+string(j.Kind)] = true
		mu.Unlock()
		time.Sleep(5 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		running[j.App+string(j.Kind)] = false
		order[string(j.Kind)+"/"+j.App] = append(order[string(j.Kind)+"/"+j.App], j.SHA)
		if total++; total == len(jobs)+1 {
			close(all)
		}
		return nil
	}
	// a40 is no longer configured; its jobs still end. Two replicas take the stream over.
	for range 2 {
		consumeInBackground(t, q, names[:apps-1], h, quietOptions())
	}
	select {
	case <-all:
	case <-time.After(60 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("%d of %d jobs ran after the upgrade", total, len(jobs)+1)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, app := range names {
		if diff := cmp.Diff([]string{"sha0", "sha1", "sha2"}, order["deploy/"+app]); diff != "" {
			t.Errorf("deploys of %s (-want +got):\n%s", app, diff)
		}
	}
	if diff := cmp.Diff([]string{"head"}, order["preview/a1"]); diff != "" {
		t.Errorf("previews of a1 (-want +got):\n%s", diff)
	}
	if overlaps != 0 {
		t.Errorf("an app ran two jobs at once %d times", overlaps)
	}
	stream, err := q.js.Stream(t.Context(), StreamName)
	if err != nil {
		t.Fatal(err)
	}
	var consumers []string
	lister := stream.ConsumerNames(t.Context())
	for n := range lister.Name() {
		consumers = append(consumers, n)
	}
	slices.Sort(consumers)
	if diff := cmp.Diff([]string{deployConsumer, previewConsumer}, consumers); diff != "" {
		t.Errorf("consumers after the upgrade (-want +got):\n%s", diff)
	}
	// An old replica started after the upgrade cannot make its per-app consumer back: it stops
	// rather than run jobs beside the new ones.
	if _, err := q.js.CreateOrUpdateConsumer(t.Context(), StreamName, legacyConsumerConfig("deploy-a1", Subject(KindDeploy, "a1"), 1)); err == nil {
		t.Error("a per-app consumer of an older version was created beside the shared one")
	} else {
		t.Logf("an older version's consumer is refused: %v", err)
	}
}

// A Consume told to stop while it is still creating its consumers (a SIGTERM right after start)
// returns nil: a shutdown is not a failure of the workers.
func TestConsumeStoppedWhileStarting(t *testing.T) {
	e, nc, q := startQueue(t, t.TempDir())
	t.Cleanup(func() { nc.Close(); e.Shutdown() })
	apps := make([]string, 50)
	for i := range apps {
		apps[i] = fmt.Sprintf("app%d", i)
	}
	for _, after := range []time.Duration{0, time.Millisecond, 5 * time.Millisecond, 20 * time.Millisecond} {
		ctx, cancel := context.WithCancel(t.Context())
		if after == 0 {
			cancel()
		} else {
			time.AfterFunc(after, cancel)
		}
		if err := q.Consume(ctx, apps, func(context.Context, Job, Delivery) error { return nil }, quietOptions()); err != nil {
			t.Errorf("stopped %s after start: %v, want nil", after, err)
		}
		cancel()
	}
}
