package syncer

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/syncer/source"
)

// HeadResolver lists a remote branch's head without fetching.
type HeadResolver interface {
	Head(ctx context.Context, repo source.Repo, branch string) (string, error)
}

// Enqueuer stores jobs durably and returns those it had not stored before.
type Enqueuer interface {
	Enqueue(ctx context.Context, jobs []queue.Job) (stored []queue.Job, err error)
}

// DefaultPollInterval is how often a repository's branch head is looked at when its
// configuration sets no interval.
const DefaultPollInterval = 5 * time.Minute

// PollOptions tunes the poller.
type PollOptions struct {
	// Interval per repository name; repositories not named, or named with 0, use
	// DefaultPollInterval.
	Interval map[string]time.Duration
	// SelfHeal names apps whose current commit is re-applied every interval, so that objects
	// changed by hand in the cluster are put back as Git says.
	SelfHeal map[string]bool
	// BootID makes start-up jobs of this process distinct from an earlier start's, which the
	// queue would otherwise take for redeliveries.
	BootID string
	Logger *slog.Logger
}

// Poller makes sure no commit is lost with a lost webhook: it syncs every app at its branch
// head when ferry starts, then looks at each branch head every interval (with jitter) and
// queues a job when it moved. Several replicas polling at once make the same message ids, so
// the queue stores one job.
type Poller struct {
	s       *Syncer
	resolve HeadResolver
	q       Enqueuer
	opts    PollOptions
}

// NewPoller returns a poller over the syncer's repositories and apps.
func (s *Syncer) NewPoller(resolve HeadResolver, q Enqueuer, opts PollOptions) *Poller {
	if opts.Logger == nil {
		opts.Logger = s.opts.Logger
	}
	if opts.BootID == "" {
		opts.BootID = queue.NewID()
	}
	return &Poller{s: s, resolve: resolve, q: q, opts: opts}
}

// Run recovers every app once, then polls until ctx is cancelled.
func (p *Poller) Run(ctx context.Context) {
	for name := range p.s.repos {
		go p.loop(ctx, name)
	}
	<-ctx.Done()
}

func (p *Poller) loop(ctx context.Context, repo string) {
	log := p.opts.Logger.With("repo", repo)
	// Start-up: every app at its head, whatever ferry remembers, because the cluster may be
	// new. Unchanged objects cost nothing thanks to the inventory.
	for attempt := 0; ctx.Err() == nil; attempt++ {
		err := p.Recover(ctx, repo)
		if err == nil {
			break
		}
		log.Warn("start-up sync not queued yet", "err", err)
		if !sleep(ctx, backoff(attempt+1)) {
			return
		}
	}
	interval := p.interval(repo)
	for {
		// Up to 10% jitter so that replicas and repositories do not poll in lockstep.
		wait := interval + time.Duration(rand.Int64N(int64(interval)/10+1))
		if !sleep(ctx, wait) {
			return
		}
		if err := p.Poll(ctx, repo); err != nil {
			log.Warn("poll failed", "err", err)
		}
	}
}

// interval is how often repo is polled.
func (p *Poller) interval(repo string) time.Duration {
	if d, ok := p.opts.Interval[repo]; ok && d > 0 {
		return d
	}
	return DefaultPollInterval
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Recover queues a start-up sync of every app of repo at its branch head.
func (p *Poller) Recover(ctx context.Context, repo string) error {
	return p.queueApps(ctx, repo, queue.TriggerStartup, func(App, string) bool { return true })
}

// Poll queues a sync of every app of repo whose branch head moved past what it last synced or
// queued, and a self-heal sync of the apps that ask for one.
func (p *Poller) Poll(ctx context.Context, repo string) error {
	err := p.queueApps(ctx, repo, queue.TriggerPoll, func(app App, head string) bool {
		if j, ok, err := p.s.backlog.Newest(ctx, queue.KindDeploy, app.Name); err == nil && ok && j.SHA == head {
			return false
		}
		st, ok, err := p.s.store.AppState(ctx, app.Name)
		return err != nil || !ok || st.SHA != head
	})
	if err != nil {
		return err
	}
	interval := p.interval(repo)
	var heal []queue.Job
	for _, app := range p.s.appsOf(repo) {
		if !p.opts.SelfHeal[app.Name] || p.skipSuspended(ctx, app) {
			continue
		}
		st, ok, err := p.s.store.AppState(ctx, app.Name)
		if err != nil || !ok || st.AppliedSHA == "" {
			continue
		}
		heal = append(heal, p.job(app, st.AppliedSHA, queue.TriggerDrift, fmt.Sprintf("drift-%s-%d", st.AppliedSHA, p.s.opts.Now().Unix()/int64(interval.Seconds()+1))))
	}
	if len(heal) > 0 {
		_, err := p.q.Enqueue(ctx, heal)
		return err
	}
	return nil
}

func (p *Poller) queueApps(ctx context.Context, repo string, trigger queue.Trigger, want func(App, string) bool) error {
	r := p.s.repos[repo]
	if strings.ContainsAny(r.Branch, "*?[") {
		// A branch pattern names no single head to follow.
		return nil
	}
	head, err := p.resolve.Head(ctx, r.Source, r.Branch)
	if err != nil {
		return fmt.Errorf("head of %s: %w", r.Branch, err)
	}
	var jobs []queue.Job
	for _, app := range p.s.appsOf(repo) {
		if !want(app, head) || p.skipSuspended(ctx, app) {
			continue
		}
		delivery := string(trigger) + "-" + head
		if trigger == queue.TriggerStartup {
			delivery = "startup-" + p.opts.BootID
		}
		jobs = append(jobs, p.job(app, head, trigger, delivery))
	}
	if len(jobs) == 0 {
		return nil
	}
	p.opts.Logger.Info("queueing syncs", "repo", repo, "trigger", trigger, "sha", short(head), "apps", len(jobs))
	_, err = p.q.Enqueue(ctx, jobs)
	return err
}

func (p *Poller) job(app App, sha string, trigger queue.Trigger, delivery string) queue.Job {
	return queue.Job{ID: queue.NewID(), Kind: queue.KindDeploy, Trigger: trigger, Repo: app.Repo, App: app.Name,
		Ref: "refs/heads/" + p.s.repos[app.Repo].Branch, SHA: sha, DeliveryID: delivery, EnqueuedAt: p.s.opts.Now().UTC()}
}

// appsOf lists a repository's apps.
func (s *Syncer) appsOf(repo string) []App {
	var out []App
	for _, a := range s.apps {
		if a.Repo == repo {
			out = append(out, a)
		}
	}
	return out
}
