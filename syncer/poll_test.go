package syncer

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/syncer/source"
	"github.com/ferrygitops/ferry/test/gitserver"
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

// countedHeads is a HeadResolver that counts the ref listings running at once per host and
// per repository, holding each until released.
type countedHeads struct {
	mu       sync.Mutex
	inflight map[string]int
	max      map[string]int
	calls    map[string]int
	release  chan struct{}
}

func (c *countedHeads) Head(ctx context.Context, r source.Repo, _ string) (string, error) {
	host := gitHost(r.URL)
	c.mu.Lock()
	c.inflight[host]++
	c.max[host] = max(c.max[host], c.inflight[host])
	c.calls[r.Name]++
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.inflight[host]--
		c.mu.Unlock()
	}()
	select {
	case <-c.release:
		return "head1", nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func (c *countedHeads) snapshot() (inflight map[string]int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.inflight)
}

// TestStartupHeadsBoundedPerHost: at start-up with 50 repositories (40 on one Git host, 10
// on another) and 5,000 apps, at most HeadsPerHost ref listings run at once against each host,
// each repository is listed once (not once per app), and every app gets its start-up job.
// Polls of an unchanged head then list refs and read nothing per app, except every
// fullPollEvery-th poll, which checks each app again.
func TestStartupHeadsBoundedPerHost(t *testing.T) {
	const repos, perRepo, bound = 50, 100, 3
	var apps []App
	var rs []Repo
	for r := range repos {
		host := "git-a.example"
		if r >= 40 {
			host = "git-b.example:8443"
		}
		name := fmt.Sprintf("repo%02d", r)
		rs = append(rs, Repo{Name: name, Branch: "main", Source: source.Repo{Name: name, URL: "https://" + host + "/acme/" + name + ".git"}})
		for a := range perRepo {
			apps = append(apps, App{Name: fmt.Sprintf("%s-app%03d", name, a), Repo: name, Path: fmt.Sprintf("apps/%d", a)})
		}
	}
	w := newWorld(t)
	opts := DefaultOptions()
	opts.Logger = w.s.opts.Logger
	s := New(rs, apps, Parts{Fetch: w.fetch, Apply: w.applier, Store: w.store, Backlog: w.backlog, Metrics: NewMetrics(prometheus.NewRegistry())}, opts)
	heads := &countedHeads{inflight: map[string]int{}, max: map[string]int{}, calls: map[string]int{}, release: make(chan struct{})}
	sink := &jobSink{}
	interval := map[string]time.Duration{}
	for _, r := range rs {
		interval[r.Name] = 24 * time.Hour // no poll during the test
	}
	p := s.NewPoller(heads, sink, PollOptions{HeadsPerHost: bound, Interval: interval, Logger: opts.Logger})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	// Both hosts fill their slots while every listing is held.
	filled := false
	for range 500 {
		in := heads.snapshot()
		if in["git-a.example"] == bound && in["git-b.example"] == bound {
			filled = true
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !filled {
		t.Fatalf("listings in flight %v, want %d per host", heads.snapshot(), bound)
	}
	close(heads.release)
	for range 1000 {
		sink.mu.Lock()
		n := len(sink.jobs)
		sink.mu.Unlock()
		if n == repos*perRepo {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	heads.mu.Lock()
	if heads.max["git-a.example"] != bound || heads.max["git-b.example"] != bound {
		t.Errorf("most listings at once per host %v, want %d", heads.max, bound)
	}
	for _, r := range rs {
		if heads.calls[r.Name] != 1 {
			t.Errorf("%s listed %d times at start-up, want once", r.Name, heads.calls[r.Name])
		}
	}
	heads.mu.Unlock()
	sink.mu.Lock()
	queued := map[string]bool{}
	for _, j := range sink.jobs {
		if j.Trigger != queue.TriggerStartup || j.SHA != "head1" {
			t.Errorf("start-up job %+v", j)
		}
		queued[j.App] = true
	}
	sink.jobs = nil
	sink.mu.Unlock()
	if len(queued) != repos*perRepo {
		t.Fatalf("%d apps got a start-up job, want %d", len(queued), repos*perRepo)
	}

	// The store knows no deploy and the queue no job, so a check of each app would queue
	// them all: only the fullPollEvery-th poll of the unchanged head does.
	for i := 1; i <= fullPollEvery; i++ {
		if err := p.Poll(t.Context(), "repo00"); err != nil {
			t.Fatal(err)
		}
		sink.mu.Lock()
		n := len(sink.jobs)
		sink.jobs = nil
		sink.mu.Unlock()
		want := 0
		if i == fullPollEvery {
			want = perRepo
		}
		if n != want {
			t.Errorf("poll %d of an unchanged head queued %d jobs, want %d", i, n, want)
		}
	}
}

func TestGitHost(t *testing.T) {
	for in, want := range map[string]string{
		"https://github.com/acme/platform.git":       "github.com",
		"http://127.0.0.1:8080/r.git":                "127.0.0.1",
		"ssh://git@gitlab.example:2222/acme/app.git": "gitlab.example",
		"git@github.com:acme/platform.git":           "github.com",
	} {
		if got := gitHost(in); got != want {
			t.Errorf("gitHost(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestRecoverListsEachRepositoryOnceOverHTTP: against a real git server, start-up recovery of
// 3 repositories of 200 apps each asks the server for refs once per repository (one ref
// listing, not one per app), queues every app at its repository's head, and an unchanged head's
// poll asks once more and queues nothing.
func TestRecoverListsEachRepositoryOnceOverHTTP(t *testing.T) {
	srv := gitserver.New(t)
	const perRepo = 200
	var rs []Repo
	var apps []App
	heads := map[string]string{}
	for r := range 3 {
		name := fmt.Sprintf("repo%d", r)
		files := map[string]string{}
		for a := range perRepo {
			app := fmt.Sprintf("%s-app%03d", name, a)
			files["apps/"+app+"/cm.yaml"] = "kind: ConfigMap\n"
			apps = append(apps, App{Name: app, Repo: name, Path: "apps/" + app})
		}
		gr := srv.CreateRepo(t, "acme/"+name)
		heads[name] = gr.Commit(t, "main", "apps", files)
		rs = append(rs, Repo{Name: name, Branch: "main", Source: source.Repo{Name: name, URL: gr.CloneURL()}})
	}
	cache, err := source.New(source.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	w := newWorld(t)
	s := New(rs, apps, Parts{Fetch: w.fetch, Apply: w.applier, Store: w.store, Backlog: w.backlog, Metrics: NewMetrics(prometheus.NewRegistry())}, w.s.opts)
	sink := &jobSink{}
	p := s.NewPoller(cache, sink, PollOptions{Logger: w.s.opts.Logger})
	before := srv.Requests()
	for _, r := range rs {
		if err := p.Recover(t.Context(), r.Name); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.Requests() - before; n != int64(len(rs)) {
		t.Errorf("start-up of %d repositories made %d requests to the git server, want one each", len(rs), n)
	}
	if len(sink.jobs) != len(apps) {
		t.Fatalf("%d start-up jobs, want %d", len(sink.jobs), len(apps))
	}
	for _, j := range sink.jobs {
		if j.SHA != heads[j.Repo] {
			t.Errorf("job of %s at %s, want its repository's head %s", j.App, j.SHA, heads[j.Repo])
		}
	}
	sink.jobs = nil
	before = srv.Requests()
	if err := p.Poll(t.Context(), "repo0"); err != nil {
		t.Fatal(err)
	}
	if n := srv.Requests() - before; n != 1 || len(sink.jobs) != 0 {
		t.Errorf("a poll of an unchanged head made %d requests and queued %d jobs, want 1 and 0", n, len(sink.jobs))
	}
}
