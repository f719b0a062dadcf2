package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestRetryDelayWithMaxAckPendingFull: an app's first job waits for its dependencies, handed
// back with a delay again and again, while the app's next job is held behind it and the shared
// consumer's MaxAckPending (2) is full with the two. JetStream still delivers the waiting job's
// retries (a retry due counts before the bound), the next job runs once the first ended, at its
// first attempt (waiting behind it spent none), and another app's job, kept back by the bound,
// runs after.
func TestRetryDelayWithMaxAckPendingFull(t *testing.T) {
	e, nc, q := startQueue(t, t.TempDir())
	t.Cleanup(func() { nc.Close(); e.Shutdown() })
	first, second, other := testJob("a", "sha1", "d-1"), testJob("a", "sha2", "d-2"), testJob("b", "sha1", "d-3")
	if _, err := q.Enqueue(t.Context(), []Job{first, second, other}); err != nil {
		t.Fatal(err)
	}
	opts := quietOptions()
	opts.MaxAckPending = 2
	const waits = 4
	type run struct {
		sha, app string
		d        Delivery
		pending  int
	}
	var mu sync.Mutex
	var runs []run
	done := make(chan struct{})
	consumeInBackground(t, q, []string{"a", "b"}, func(ctx context.Context, j Job, d Delivery) error {
		r := run{sha: j.SHA, app: j.App, d: d}
		if j.ID == first.ID && d.Attempt == waits {
			// Both jobs of a are out: the bound is reached, yet this retry came.
			cons, err := q.js.Consumer(ctx, StreamName, deployConsumer)
			if err != nil {
				return err
			}
			r.pending = cons.CachedInfo().NumAckPending
		}
		mu.Lock()
		runs = append(runs, r)
		n := len(runs)
		mu.Unlock()
		if n == waits+2 {
			close(done)
		}
		if j.ID == first.ID && d.Attempt < waits {
			return Retry(errors.New("waiting for dependency db"), 100*time.Millisecond)
		}
		return nil
	}, opts)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("jobs stalled after %+v", runs)
	}
	mu.Lock()
	defer mu.Unlock()
	var want []run
	for i := 1; i <= waits; i++ {
		want = append(want, run{sha: "sha1", app: "a", d: Delivery{Attempt: i}})
	}
	want[waits-1].pending = 2
	want = append(want, run{sha: "sha2", app: "a", d: Delivery{Attempt: 1}}, run{sha: "sha1", app: "b", d: Delivery{Attempt: 1}})
	// Once a's first job ended, a's next and b's run in either order.
	slices.SortFunc(runs[waits:], func(x, y run) int { return strings.Compare(x.app, y.app) })
	if diff := cmp.Diff(want, runs, cmp.AllowUnexported(run{})); diff != "" {
		t.Errorf("runs (-want +got):\n%s", diff)
	}
}

// TestBurstOfOneAppDoesNotStarveOthers: while a long sync of app x runs, a burst of 30 more
// jobs for x arrives, more than one process holds per app (10 here): the overflow goes back to
// the stream for a while. A job of app y stored after the burst runs while x's sync still runs,
// and once it ends x's jobs all run, once each, in the order they were stored.
func TestBurstOfOneAppDoesNotStarveOthers(t *testing.T) {
	e, nc, q := startQueue(t, t.TempDir())
	t.Cleanup(func() { nc.Close(); e.Shutdown() })
	opts := quietOptions()
	opts.Workers = 2
	opts.maxHeld = 10
	opts.overflowDelay = 200 * time.Millisecond
	const burst = 30
	var jobs []Job
	for i := range burst + 1 {
		jobs = append(jobs, testJob("x", fmt.Sprintf("sha%02d", i), fmt.Sprintf("d-x-%d", i)))
	}
	release, yRan := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var order []string
	var redelivered int
	all := make(chan struct{})
	consumeInBackground(t, q, []string{"x", "y"}, func(ctx context.Context, j Job, d Delivery) error {
		if j.App == "y" {
			close(yRan)
			return nil
		}
		if j.SHA == "sha00" {
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		mu.Lock()
		defer mu.Unlock()
		order = append(order, j.SHA)
		if d.Attempt > 1 {
			redelivered++
		}
		if len(order) == len(jobs) {
			close(all)
		}
		return nil
	}, opts)
	if _, err := q.Enqueue(t.Context(), jobs[:1]); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Enqueue(t.Context(), append(jobs[1:], testJob("y", "abc", "d-y"))); err != nil {
		t.Fatal(err)
	}
	select {
	case <-yRan:
	case <-time.After(20 * time.Second):
		t.Fatal("app y's job did not run while app x's burst waited behind its long sync")
	}
	close(release)
	select {
	case <-all:
	case <-time.After(60 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("%d of %d jobs of x ran: %v", len(order), len(jobs), order)
	}
	mu.Lock()
	defer mu.Unlock()
	var want []string
	for _, j := range jobs {
		want = append(want, j.SHA)
	}
	if diff := cmp.Diff(want, order); diff != "" {
		t.Errorf("order of x's jobs (-want +got):\n%s", diff)
	}
	if redelivered == 0 {
		t.Error("no job of the burst was handed back beyond the hold bound; the test did not reach the overflow")
	}
}
