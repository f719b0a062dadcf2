package queue

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

// scaleApps is how many apps the scale tests configure: the size of issue #14's report, five
// times the wall one consumer per app ran into.
const scaleApps = 5000

func appNames(n int) []string {
	apps := make([]string, n)
	for i := range apps {
		apps[i] = fmt.Sprintf("a%d", i+1)
	}
	return apps
}

// TestConsumeFiveThousandApps: Consume starts with 5,000 apps configured (one consumer per app
// hit the server's consumer limit near 1,000), makes a fixed number of consumers whatever the
// number of apps, and runs a job of the first and of the last app.
func TestConsumeFiveThousandApps(t *testing.T) {
	e, nc, q := startQueue(t, t.TempDir())
	t.Cleanup(func() { nc.Close(); e.Shutdown() })
	apps := appNames(scaleApps)
	goroutinesBefore := runtime.NumGoroutine()
	ran := make(chan string, 2)
	start := time.Now()
	consumeInBackground(t, q, apps, func(_ context.Context, j Job, _ Delivery) error {
		ran <- j.App
		return nil
	}, quietOptions())
	if _, err := q.Enqueue(t.Context(), []Job{testJob(apps[0], "abc", "d-first"), testJob(apps[len(apps)-1], "abc", "d-last")}); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for range 2 {
		select {
		case app := <-ran:
			got[app] = true
		case <-time.After(60 * time.Second):
			t.Fatalf("jobs ran for %v only; want %s and %s", got, apps[0], apps[len(apps)-1])
		}
	}
	t.Logf("first jobs of %d apps ran %s after Consume began", len(apps), time.Since(start))
	if !got[apps[0]] || !got[apps[len(apps)-1]] {
		t.Errorf("jobs ran for %v, want %s and %s", got, apps[0], apps[len(apps)-1])
	}
	stream, err := q.js.Stream(t.Context(), StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if n := stream.CachedInfo().State.Consumers; n > 2 {
		t.Errorf("%d consumers for %d apps, want at most 2 (one for deploys, one for previews)", n, len(apps))
	}
	// Idle with 5,000 apps, the workers hold a bounded number of goroutines, none per app.
	time.Sleep(time.Second)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	n := runtime.NumGoroutine() - goroutinesBefore
	t.Logf("idle with %d apps: %d goroutines more than before Consume, heap %d KiB (embedded server included), %d consumers",
		len(apps), n, ms.HeapAlloc>>10, stream.CachedInfo().State.Consumers)
	if n > 100 {
		t.Errorf("%d goroutines more while consuming for %d idle apps, want a number that does not grow with the apps", n, len(apps))
	}
}

// TestBurstOfThousandAppsDrains: a push touching 1,000 of 5,000 apps stores a job for each; two
// replicas with the default workers run every one of them once, never two of one app at once.
func TestBurstOfThousandAppsDrains(t *testing.T) {
	e, nc, q := startQueue(t, t.TempDir())
	t.Cleanup(func() { nc.Close(); e.Shutdown() })
	apps := appNames(scaleApps)
	var jobs []Job
	for i := range 1000 {
		jobs = append(jobs, testJob(apps[i*5], "abc", "d-push"))
	}
	var mu sync.Mutex
	ran := map[string]int{}
	running := map[string]bool{}
	overlaps := 0
	all := make(chan struct{})
	h := func(_ context.Context, j Job, _ Delivery) error {
		mu.Lock()
		if running[j.App] {
			overlaps++
		}
		running[j.App] = true
		mu.Unlock()
		time.Sleep(time.Millisecond) // a sync that finds nothing to change
		mu.Lock()
		defer mu.Unlock()
		running[j.App] = false
		ran[j.App]++
		if len(ran) == len(jobs) {
			close(all)
		}
		return nil
	}
	start := time.Now()
	for range 2 {
		consumeInBackground(t, q, apps, h, quietOptions())
	}
	if _, err := q.Enqueue(t.Context(), jobs); err != nil {
		t.Fatal(err)
	}
	select {
	case <-all:
		t.Logf("%d jobs of as many apps drained %s after two replicas started", len(jobs), time.Since(start).Round(time.Millisecond))
	case <-time.After(2 * time.Minute):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("%d of %d apps ran their job", len(ran), len(jobs))
	}
	time.Sleep(500 * time.Millisecond) // a second run of a job would come now
	mu.Lock()
	defer mu.Unlock()
	for app, n := range ran {
		if n != 1 {
			t.Errorf("the job of %s ran %d times, want once", app, n)
		}
	}
	if overlaps > 0 {
		t.Errorf("an app ran two jobs at once %d times", overlaps)
	}
}

// TestDeployBoundTakesTheStreamsCap: a NATS setup that caps MaxAckPending below ferry's bound
// (here the stream's consumer limits) does not stop the workers: the deploy consumer takes the
// cap, and jobs run.
func TestDeployBoundTakesTheStreamsCap(t *testing.T) {
	e, nc, q := startQueue(t, t.TempDir())
	t.Cleanup(func() { nc.Close(); e.Shutdown() })
	stream, err := q.js.Stream(t.Context(), StreamName)
	if err != nil {
		t.Fatal(err)
	}
	cfg := stream.CachedInfo().Config
	cfg.ConsumerLimits.MaxAckPending = 500
	if _, err := q.js.UpdateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	ran := make(chan struct{}, 1)
	consumeInBackground(t, q, []string{"api"}, func(context.Context, Job, Delivery) error {
		ran <- struct{}{}
		return nil
	}, quietOptions())
	if _, err := q.Enqueue(t.Context(), []Job{testJob("api", "abc", "d-capped")}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ran:
	case <-time.After(20 * time.Second):
		t.Fatal("no job ran under a capped MaxAckPending")
	}
	cons, err := q.js.Consumer(t.Context(), StreamName, deployConsumer)
	if err != nil {
		t.Fatal(err)
	}
	if got := cons.CachedInfo().Config.MaxAckPending; got != 500 {
		t.Errorf("deploy consumer's MaxAckPending is %d, want the stream's cap 500", got)
	}
}
