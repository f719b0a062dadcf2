package queue

import (
	"context"
	"fmt"
	"runtime"
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
	if n := runtime.NumGoroutine() - goroutinesBefore; n > 100 {
		t.Errorf("%d goroutines more while consuming for %d idle apps, want a number that does not grow with the apps", n, len(apps))
	}
}
