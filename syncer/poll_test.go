package syncer

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/syncer/source"
)

// fixedHead is a HeadResolver whose branch head a test sets.
type fixedHead string

func (h fixedHead) Head(context.Context, source.Repo, string) (string, error) { return string(h), nil }

// jobSink is an Enqueuer that stores every job as new and keeps them.
type jobSink struct {
	mu   sync.Mutex
	jobs []queue.Job
}

func (q *jobSink) Enqueue(_ context.Context, jobs []queue.Job) ([]queue.Job, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.jobs = append(q.jobs, jobs...)
	return jobs, nil
}

// TestPollUsesInjectedClock: the jobs a poll queues (a moved head, a self-heal) carry the
// syncer's clock in EnqueuedAt and in the self-heal's delivery id, not the wall clock, so
// that tests and replicas agree on what "now" was.
func TestPollUsesInjectedClock(t *testing.T) {
	w := newWorld(t)
	now := time.Date(2001, 2, 3, 4, 5, 6, 0, time.FixedZone("CET", 3600))
	w.s.opts.Now = func() time.Time { return now }
	if err := w.store.PutAppState(t.Context(), queue.AppState{App: "api", SHA: "old", AppliedSHA: "old"}); err != nil {
		t.Fatal(err)
	}
	sink := &jobSink{}
	interval := time.Minute
	p := w.s.NewPoller(fixedHead("new"), sink, PollOptions{
		Interval: map[string]time.Duration{"platform": interval},
		SelfHeal: map[string]bool{"api": true},
		Logger:   w.s.opts.Logger,
	})
	if err := p.Poll(t.Context(), "platform"); err != nil {
		t.Fatal(err)
	}
	type view struct {
		Trigger    queue.Trigger
		SHA        string
		DeliveryID string
		EnqueuedAt time.Time
	}
	var got []view
	for _, j := range sink.jobs {
		got = append(got, view{j.Trigger, j.SHA, j.DeliveryID, j.EnqueuedAt})
	}
	want := []view{
		{queue.TriggerPoll, "new", "poll-new", now.UTC()},
		{queue.TriggerDrift, "old", fmt.Sprintf("drift-old-%d", now.Unix()/61), now.UTC()},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("polled jobs (-want +got):\n%s", diff)
	}
}

// TestPollDefaultInterval: a repository configured without an interval is polled every
// DefaultPollInterval, the one place that default is written.
func TestPollDefaultInterval(t *testing.T) {
	w := newWorld(t)
	p := w.s.NewPoller(fixedHead("new"), &jobSink{}, PollOptions{Interval: map[string]time.Duration{"platform": 0}})
	if got := p.interval("platform"); got != DefaultPollInterval {
		t.Errorf("interval = %s, want %s", got, DefaultPollInterval)
	}
	p = w.s.NewPoller(fixedHead("new"), &jobSink{}, PollOptions{Interval: map[string]time.Duration{"platform": time.Second}})
	if got := p.interval("platform"); got != time.Second {
		t.Errorf("interval = %s, want the configured 1s", got)
	}
}
