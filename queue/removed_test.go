package queue

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestJobsOfRemovedAppsStillEnd: deploy jobs stored for an app that then left the
// configuration still reach the handler (which ends each with a final status), and the app's
// consumer is deleted by a later start that finds it empty.
func TestJobsOfRemovedAppsStillEnd(t *testing.T) {
	e, nc, q := startQueue(t, t.TempDir())
	t.Cleanup(func() { nc.Close(); e.Shutdown() })
	// A first start with apps a and b creates their consumers; b's job is stored after it stops.
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(ctx, []string{"a", "b"}, func(context.Context, Job, Delivery) error { return nil }, quietOptions())
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := q.js.Consumer(t.Context(), StreamName, "deploy-b"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("consumer deploy-b not created")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	stale := testJob("b", "sha1", "d-b-1")
	if _, err := q.Enqueue(t.Context(), []Job{stale}); err != nil {
		t.Fatal(err)
	}

	// b leaves the configuration: its job is still handed to the handler.
	got := make(chan Job, 1)
	ctx, cancel = context.WithTimeout(t.Context(), 20*time.Second)
	go func() {
		done <- q.Consume(ctx, []string{"a"}, func(_ context.Context, j Job, _ Delivery) error {
			got <- j
			return nil
		}, quietOptions())
	}()
	select {
	case j := <-got:
		if j.ID != stale.ID {
			t.Errorf("handled %s, want the removed app's job %s", j.ID, stale.ID)
		}
	case <-ctx.Done():
		t.Fatal("the removed app's job never reached the handler")
	}
	time.Sleep(200 * time.Millisecond) // let the ack land
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// A later start finds the consumer empty and deletes it.
	ctx, cancel = context.WithCancel(t.Context())
	go func() {
		done <- q.Consume(ctx, []string{"a"}, func(context.Context, Job, Delivery) error { return nil }, quietOptions())
	}()
	deadline = time.Now().Add(10 * time.Second)
	for {
		_, err := q.js.Consumer(t.Context(), StreamName, "deploy-b")
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer deploy-b still there: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := q.js.Consumer(t.Context(), StreamName, "deploy-a"); err != nil {
		t.Errorf("consumer deploy-a: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
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
