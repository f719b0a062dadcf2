package syncer

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"sync"
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

const (
	// DefaultPollInterval is how often a repository's branch head is looked at when its
	// configuration sets no interval.
	DefaultPollInterval = 5 * time.Minute
	// DefaultHeadsPerHost bounds how many ref listings (ls-remote) the poller runs at once
	// against one Git host, at start-up and when polls of many repositories fall together.
	DefaultHeadsPerHost = 4
	// fullPollEvery makes every so many polls of an unchanged branch head check each app
	// again (its queued job and last deploy), so that a job lost for good is queued again; the
	// polls between cost one ref listing and no read per app.
	fullPollEvery = 6
)

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
	// HeadsPerHost bounds the ref listings run at once against one Git host (the host of the
	// repository URL); 0 is DefaultHeadsPerHost.
	HeadsPerHost int
	Logger       *slog.Logger
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
	// apps is each repository's apps; hosts holds a slot per ref listing running against a host.
	apps  map[string][]App
	hosts map[string]chan struct{}

	mu sync.Mutex
	// current is, per repository, the head at which every app was last found queued or
	// deployed, and how many polls have found it unchanged since.
	current map[string]polled
}

type polled struct {
	head  string
	polls int
}

// NewPoller returns a poller over the syncer's repositories and apps.
func (s *Syncer) NewPoller(resolve HeadResolver, q Enqueuer, opts PollOptions) *Poller {
	if opts.Logger == nil {
		opts.Logger = s.opts.Logger
	}
	if opts.BootID == "" {
		opts.BootID = queue.NewID()
	}
	if opts.HeadsPerHost <= 0 {
		opts.HeadsPerHost = DefaultHeadsPerHost
	}
	p := &Poller{s: s, resolve: resolve, q: q, opts: opts, apps: map[string][]App{}, hosts: map[string]chan struct{}{}, current: map[string]polled{}}
	for _, a := range s.apps {
		p.apps[a.Repo] = append(p.apps[a.Repo], a)
	}
	for _, apps := range p.apps {
		slices.SortFunc(apps, func(a, b App) int { return strings.Compare(a.Name, b.Name) })
	}
	for _, r := range s.repos {
		if h := gitHost(r.Source.URL); p.hosts[h] == nil {
			p.hosts[h] = make(chan struct{}, opts.HeadsPerHost)
		}
	}
	return p
}

// gitHost is the host a repository URL names (https://host/…, ssh://host/…, user@host:path),
// which the poller bounds ref listings per; the URL itself when it names none.
func gitHost(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.Host != "" {
		return u.Hostname()
	}
	if at := strings.LastIndexByte(raw, '@'); at >= 0 {
		raw = raw[at+1:]
	}
	if i := strings.IndexByte(raw, ':'); i >= 0 {
		return raw[:i]
	}
	return raw
}

// head lists repo's branch head, waiting for a slot of its host (HeadsPerHost).
func (p *Poller) head(ctx context.Context, r Repo) (string, error) {
	slots := p.hosts[gitHost(r.Source.URL)]
	select {
	case slots <- struct{}{}:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	defer func() { <-slots }()
	return p.resolve.Head(ctx, r.Source, r.Branch)
}

// Run recovers every app once, then polls until ctx is cancelled. Start-up ref listings wait
// for their host's slots (HeadsPerHost); the first poll of each repository falls at a random
// point of its interval, so that thousands of apps over many repositories are polled spread
// over the interval rather than all at once.
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
	// The first poll at a random point of the interval spreads repositories over it.
	wait := time.Duration(rand.Int64N(int64(interval))) + 1
	for {
		if !sleep(ctx, wait) {
			return
		}
		if err := p.Poll(ctx, repo); err != nil {
			log.Warn("poll failed", "err", err)
		}
		// Up to 10% jitter so that replicas and repositories do not poll in lockstep.
		wait = interval + time.Duration(rand.Int64N(int64(interval)/10+1))
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
// queued, and a self-heal sync of the apps that ask for one. A head unchanged since every app
// was found queued or deployed at it (none suspended) costs the ref listing alone, except every
// fullPollEvery polls, which check each app again.
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
	for _, app := range p.apps[repo] {
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
	head, err := p.head(ctx, r)
	if err != nil {
		return fmt.Errorf("head of %s: %w", r.Branch, err)
	}
	if trigger == queue.TriggerPoll && p.unchanged(repo, head) {
		return nil
	}
	var jobs []queue.Job
	suspended := false
	for _, app := range p.apps[repo] {
		if !want(app, head) {
			continue
		}
		if p.skipSuspended(ctx, app) {
			suspended = true
			continue
		}
		delivery := string(trigger) + "-" + head
		if trigger == queue.TriggerStartup {
			delivery = "startup-" + p.opts.BootID
		}
		jobs = append(jobs, p.job(app, head, trigger, delivery))
	}
	if len(jobs) > 0 {
		p.opts.Logger.Info("queueing syncs", "repo", repo, "trigger", trigger, "sha", short(head), "apps", len(jobs))
		if _, err = p.q.Enqueue(ctx, jobs); err != nil {
			return err
		}
	}
	// A suspended app left behind keeps the repository's polls checking each app, so that the
	// first poll after its resumption queues it.
	p.mu.Lock()
	if suspended {
		delete(p.current, repo)
	} else {
		p.current[repo] = polled{head: head}
	}
	p.mu.Unlock()
	return nil
}

// unchanged counts a poll that found repo's head where every app was last found queued or
// deployed, and tells whether the apps need not be looked at again (all but every
// fullPollEvery-th such poll).
func (p *Poller) unchanged(repo, head string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.current[repo]
	if !ok || c.head != head {
		return false
	}
	c.polls++
	p.current[repo] = c
	return c.polls%fullPollEvery != 0
}

func (p *Poller) job(app App, sha string, trigger queue.Trigger, delivery string) queue.Job {
	return queue.Job{ID: queue.NewID(), Kind: queue.KindDeploy, Trigger: trigger, Repo: app.Repo, App: app.Name,
		Ref: "refs/heads/" + p.s.repos[app.Repo].Branch, SHA: sha, DeliveryID: delivery, EnqueuedAt: p.s.opts.Now().UTC()}
}
