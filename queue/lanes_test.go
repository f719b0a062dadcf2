package queue

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// laneOfApp puts apps a* in lane A and b* in lane B; other apps are in no lane.
func laneOfApp(app string) string {
	switch {
	case strings.HasPrefix(app, "a"):
		return "A"
	case strings.HasPrefix(app, "b"):
		return "B"
	}
	return ""
}

// laneRun records what a lane test's handler saw.
type laneRun struct {
	mu      sync.Mutex
	running map[string]int // by lane, now
	most    map[string]int // by lane, the most at once
	order   map[string][]string
	deliv   map[string]int // by job id
	done    map[string]chan struct{}
}

func newLaneRun(jobs []Job) *laneRun {
	r := &laneRun{running: map[string]int{}, most: map[string]int{}, order: map[string][]string{}, deliv: map[string]int{}, done: map[string]chan struct{}{}}
	for _, j := range jobs {
		r.done[j.ID] = make(chan struct{})
	}
	return r
}

// handler blocks lane A's jobs until release is closed (or the job is cancelled).
func (r *laneRun) handler(release <-chan struct{}) Handler {
	return func(ctx context.Context, j Job, d Delivery) error {
		lane := laneOfApp(j.App)
		r.mu.Lock()
		r.running[lane]++
		r.most[lane] = max(r.most[lane], r.running[lane])
		r.deliv[j.ID] = d.Attempt
		r.mu.Unlock()
		defer func() {
			r.mu.Lock()
			r.running[lane]--
			r.mu.Unlock()
		}()
		if lane == "A" {
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		r.mu.Lock()
		r.order[j.App] = append(r.order[j.App], j.SHA)
		r.mu.Unlock()
		close(r.done[j.ID])
		return nil
	}
}

// streamDrained checks that every job ended: acknowledged after its handler returned, it is
// gone from the stream a moment later.
func streamDrained(t *testing.T, q *Queue) {
	t.Helper()
	var n uint64
	var err error
	for range 200 {
		if n, err = q.Pending(t.Context()); err == nil && n == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("%d jobs left on the stream (%v), want none", n, err)
}

func waitJobs(t *testing.T, r *laneRun, jobs []Job, within time.Duration, what string) {
	t.Helper()
	deadline := time.After(within)
	for _, j := range jobs {
		select {
		case <-r.done[j.ID]:
		case <-deadline:
			t.Fatalf("%s: job %s of app %s did not run", what, j.SHA, j.App)
		}
	}
}

// TestLaneHoldsABoundedShareOfWorkers: with three workers and two lanes, lane A's jobs, stuck in
// the handler as behind a slow cluster, hold at most their lane's limit of the workers while lane
// B's jobs (and a job of no lane) run on the one left. Once A's jobs go on, its waiting jobs run,
// the two jobs of app a1 in the order they were stored, each delivered once: waiting for a lane
// slot spends no delivery.
func TestLaneHoldsABoundedShareOfWorkers(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit func(string) int
		want  int
	}{
		{"default limit", nil, DefaultLaneLimit(3)},
		{"limit of lane A", func(lane string) int {
			if lane == "A" {
				return 1
			}
			return 0
		}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, nc, q := startQueue(t, t.TempDir())
			t.Cleanup(func() { nc.Close(); e.Shutdown() })
			opts := quietOptions()
			opts.Workers = 3
			opts.Lane, opts.LaneLimit = laneOfApp, tc.limit
			var a, others []Job
			for i := range 4 {
				a = append(a, testJob(fmt.Sprintf("a%d", i+1), "sha1", fmt.Sprintf("d-a%d", i)))
			}
			a = append(a, testJob("a1", "sha2", "d-a1-2"))
			for i := range 2 {
				others = append(others, testJob(fmt.Sprintf("b%d", i+1), "sha1", fmt.Sprintf("d-b%d", i)))
			}
			others = append(others, testJob("c1", "sha1", "d-c1"))
			r := newLaneRun(append(a, others...))
			release := make(chan struct{})
			consumeInBackground(t, q, nil, r.handler(release), opts)
			// A's jobs are stored first: the workers meet them before B's.
			if _, err := q.Enqueue(t.Context(), a); err != nil {
				t.Fatal(err)
			}
			if _, err := q.Enqueue(t.Context(), others); err != nil {
				t.Fatal(err)
			}
			waitJobs(t, r, others, 30*time.Second, "lane A stuck")
			r.mu.Lock()
			stuck, mostA := r.running["A"], r.most["A"]
			r.mu.Unlock()
			if mostA > tc.want || stuck != tc.want {
				t.Errorf("lane A ran %d jobs at once, %d while B's ran; want at most and exactly %d", mostA, stuck, tc.want)
			}
			close(release)
			waitJobs(t, r, a, 30*time.Second, "lane A released")
			r.mu.Lock()
			defer r.mu.Unlock()
			if r.most["A"] > tc.want {
				t.Errorf("lane A ran %d jobs at once, want at most %d", r.most["A"], tc.want)
			}
			if diff := cmp.Diff([]string{"sha1", "sha2"}, r.order["a1"]); diff != "" {
				t.Errorf("order of a1's jobs (-want +got):\n%s", diff)
			}
			for _, j := range append(a, others...) {
				if r.deliv[j.ID] != 1 {
					t.Errorf("job %s of %s ran on delivery %d, want 1", j.SHA, j.App, r.deliv[j.ID])
				}
			}
			streamDrained(t, q)
		})
	}
}

// TestLaneWaitingJobsHandedBackAtShutdown: jobs waiting for a slot of their lane go back to the
// stream as soon as their replica shuts down, not an ack wait later, and another replica runs
// every one of them.
func TestLaneWaitingJobsHandedBackAtShutdown(t *testing.T) {
	e, nc, q := startQueue(t, t.TempDir())
	t.Cleanup(func() { nc.Close(); e.Shutdown() })
	opts := quietOptions()
	// Long enough that a job left behind without a word would come back far later than one
	// handed back.
	opts.AckWait = 40 * time.Second
	opts.Grace = time.Second
	opts.Workers = 2 // lane A may hold one
	opts.Lane = laneOfApp
	var jobs []Job
	for i := range 3 {
		jobs = append(jobs, testJob(fmt.Sprintf("a%d", i+1), "sha1", fmt.Sprintf("d-a%d", i)))
	}
	r := newLaneRun(jobs)
	never := make(chan struct{})
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- q.Consume(ctx, nil, r.handler(never), opts) }()
	if _, err := q.Enqueue(t.Context(), jobs); err != nil {
		t.Fatal(err)
	}
	// Wait until the replica has every job: one running, two waiting for lane A.
	pendingIs := func(want int) bool {
		for range 200 {
			cons, err := q.js.Consumer(t.Context(), StreamName, deployConsumer)
			if err == nil {
				info, err := cons.Info(t.Context())
				if err == nil && info.NumAckPending == want && info.NumPending == 0 {
					return true
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		return false
	}
	if !pendingIs(3) {
		t.Fatal("the replica did not take all three jobs")
	}
	r.mu.Lock()
	if r.running["A"] != 1 {
		t.Errorf("%d jobs of lane A running with two workers, want 1", r.running["A"])
	}
	r.mu.Unlock()
	stop()
	// The second replica starts while the first stops, to take the jobs handed back.
	release := make(chan struct{})
	close(release)
	r2 := newLaneRun(jobs)
	consumeInBackground(t, q, nil, r2.handler(release), opts)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("consume: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Consume did not return after shutdown")
	}
	// Handed back at shutdown, the jobs run at once on the other replica, long before lapsed
	// leases (an ack wait after the last heartbeat) would bring them back.
	waitJobs(t, r2, jobs, opts.AckWait/2, "after the first replica shut down")
	streamDrained(t, q)
}

// TestLaneWaitingOverflowLosesNoJob: beyond the jobs one process keeps waiting for a lane (two
// here), the rest go back to the stream for a while; once the lane frees, every job runs, once,
// app a1's three in the order they were stored, and the lane never holds more than its slot.
func TestLaneWaitingOverflowLosesNoJob(t *testing.T) {
	e, nc, q := startQueue(t, t.TempDir())
	t.Cleanup(func() { nc.Close(); e.Shutdown() })
	opts := quietOptions()
	opts.Workers = 2 // lane A may hold one
	opts.Lane = laneOfApp
	opts.maxLaneWaiting = 2
	opts.overflowDelay = 200 * time.Millisecond
	var a []Job
	for i := range 3 {
		a = append(a, testJob("a1", fmt.Sprintf("sha%d", i+1), fmt.Sprintf("d-a1-%d", i)))
	}
	for i := range 5 {
		a = append(a, testJob(fmt.Sprintf("a%d", i+2), "sha1", fmt.Sprintf("d-a%d", i+2)))
	}
	b := []Job{testJob("b1", "sha1", "d-b1")}
	r := newLaneRun(append(a, b...))
	release := make(chan struct{})
	consumeInBackground(t, q, nil, r.handler(release), opts)
	if _, err := q.Enqueue(t.Context(), append(a, b...)); err != nil {
		t.Fatal(err)
	}
	waitJobs(t, r, b, 30*time.Second, "lane A stuck")
	close(release)
	waitJobs(t, r, a, 60*time.Second, "lane A released")
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.most["A"] != 1 {
		t.Errorf("lane A ran %d jobs at once, want 1", r.most["A"])
	}
	if diff := cmp.Diff([]string{"sha1", "sha2", "sha3"}, r.order["a1"]); diff != "" {
		t.Errorf("order of a1's jobs (-want +got):\n%s", diff)
	}
	again := 0
	for _, j := range a {
		if r.deliv[j.ID] > 1 {
			again++
		}
		if n := len(r.order[j.App]); j.App != "a1" && n != 1 {
			t.Errorf("app %s ran %d times, want once", j.App, n)
		}
	}
	if again == 0 {
		t.Error("no job went back to the stream beyond the waiting bound; the test did not reach the overflow")
	}
	streamDrained(t, q)
}
