// Package syncer does the work behind every job: fetch the exact commit, render the app, apply
// it in stages, prune, wait until healthy, and report on the commit.
package syncer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/syncer/apply"
	"github.com/ferrygitops/ferry/syncer/policy"
	"github.com/ferrygitops/ferry/syncer/render"
	"github.com/ferrygitops/ferry/syncer/source"
	"github.com/ferrygitops/ferry/syncer/status"
)

// Repo is a configured Git repository as the syncer needs it.
type Repo struct {
	Name   string
	Source source.Repo
	// Branch is the branch (or glob) deploys follow.
	Branch string
	// Reporter posts commit statuses on this repository's forge.
	Reporter status.Reporter
}

// App is a configured app: a path in a repository applied to the cluster.
type App struct {
	Name      string
	Repo      string
	Path      string
	Namespace string
	Prune     bool
	// Timeout bounds the wait for the app's objects to become healthy; 0 is apply.DefaultTimeout.
	Timeout   time.Duration
	DependsOn []string
	// Render is how the app renders beyond its path: chart, keys, variables.
	Render Rendering
	// ServiceAccount, when set, is who the app's objects are applied, pruned, read and
	// previewed as (impersonated): a name in Namespace, or "namespace/name".
	ServiceAccount string
	// Policy bounds what the app's objects may be: its repository's rules, then its own; every
	// layer must allow each object.
	Policy []policy.Policy
	// Cluster names the cluster the app deploys to, as Parts.Targets knows it; "" is the default.
	Cluster string
}

// Fetcher is the Git side: the commit cache the syncer reads from.
type Fetcher interface {
	Fetch(ctx context.Context, repo source.Repo, sha string, refs ...string) error
	Files(ctx context.Context, repo source.Repo, sha, dir string) (fs.FS, error)
	IsAncestor(ctx context.Context, repo source.Repo, a, b string) (bool, error)
	Changed(ctx context.Context, repo source.Repo, from, to string) ([]string, error)
	// Head resolves a ref (a full one, or a branch or tag name) on the remote without fetching:
	// the tip a manual sync's commit must be reachable from.
	Head(ctx context.Context, repo source.Repo, ref string) (string, error)
}

// Applier is the cluster side: it makes the cluster hold exactly one app's rendered objects.
type Applier interface {
	Sync(ctx context.Context, app apply.App, revision string, objs []render.Object) (*apply.Result, error)
	Plan(ctx context.Context, app apply.App, objs []render.Object) (*apply.Plan, error)
}

// Target is one cluster as a sync uses it: what a render reads of it, and the applier that
// makes it hold an app's objects.
type Target interface {
	Applier
	Cluster
}

// Targets picks the cluster an app deploys to by its name ("" is the default). An error says
// the cluster cannot be used now (not answering): it classifies with apply.IsTransient and
// names the cluster.
type Targets interface {
	Target(cluster string) (Target, error)
}

// Store keeps sync records and app states where every replica sees them.
type Store interface {
	Put(ctx context.Context, r queue.Record) error
	Create(ctx context.Context, r queue.Record) error
	Get(ctx context.Context, id string) (queue.Record, error)
	AppState(ctx context.Context, app string) (queue.AppState, bool, error)
	PutAppState(ctx context.Context, st queue.AppState) error
	// PutInputs records what an app's render read outside its path, for webhook routing.
	PutInputs(ctx context.Context, in queue.Inputs) error
}

// Backlog tells what is still queued, for the dependency gate and newest-commit-wins.
type Backlog interface {
	Backlog(ctx context.Context, kind queue.Kind, app string) (uint64, error)
	Newest(ctx context.Context, kind queue.Kind, app string) (queue.Job, bool, error)
}

// Notifier is told how each deploy ended, for chat and webhook notifications. It must return
// at once (it queues the event): a sync never waits for a notification, and an error is only
// logged.
type Notifier interface {
	Notify(ctx context.Context, ev queue.Event) error
}

// Options tunes the syncer.
type Options struct {
	// ExternalURL is where people reach ferry: status links point to <ExternalURL>/syncs/<id>.
	ExternalURL string
	// Worker names this process on sync records.
	Worker string
	// CommitWait is how long a commit that the forge announced but the Git host does not serve
	// yet is waited for before the sync fails.
	CommitWait time.Duration
	// DependencyWait bounds how long an app waits for the apps it depends on.
	DependencyWait time.Duration
	// TransientAttempts bounds deliveries of a job failing with transient errors.
	TransientAttempts int
	// Render is how apps are rendered: the limits on what one render may read and produce.
	Render render.Options
	Logger *slog.Logger
	// Now is the clock of sync records, commit waits and poll jobs.
	Now func() time.Time
}

// DefaultOptions are the settings ferry serves with unless configured otherwise.
func DefaultOptions() Options {
	return Options{CommitWait: 30 * time.Second, DependencyWait: 15 * time.Minute, TransientAttempts: 8, Render: render.DefaultOptions(), Logger: slog.Default(), Now: time.Now}
}

// Parts are what a syncer works with: Git, the cluster, the store and queue, remote charts.
type Parts struct {
	Fetch Fetcher
	// Apply and Cluster are the one cluster of every app, unless Targets is set.
	Apply   Applier
	Cluster Cluster
	// Targets, when set, picks each app's cluster by App.Cluster instead.
	Targets Targets
	Charts  Charts
	Store   Store
	Backlog Backlog
	Metrics *Metrics
	// Suspensions says which apps are suspended; nil: none ever is.
	Suspensions Suspensions
	// Notify is told how deploys end; nil sends no notifications.
	Notify Notifier
	// Events, when set, is told of every finished deploy.
	Events Events
}

// Syncer runs jobs. It is the queue's handler, and it is told of every stored job (Stored).
type Syncer struct {
	repos   map[string]Repo
	apps    map[string]App
	fetch   Fetcher
	apply   Applier
	cluster Cluster
	targets Targets
	charts  Charts
	store   Store
	backlog Backlog
	opts    Options
	metrics *Metrics
	events  Events
	notes   chan []queue.Job
	// suspensions is nil when apps cannot be suspended (tests).
	suspensions Suspensions
	notify      Notifier

	// learned is each app's inputs outside its path as this process last recorded them.
	learnedMu sync.Mutex
	learned   map[string][]string
}

// New returns a syncer of a configuration the config loader validated: every app names a
// known repository and known dependencies. It trusts that input and checks nothing again.
func New(repos []Repo, apps []App, p Parts, opts Options) *Syncer {
	s := &Syncer{repos: map[string]Repo{}, apps: map[string]App{}, fetch: p.Fetch, apply: p.Apply, cluster: p.Cluster, targets: p.Targets, charts: p.Charts,
		store: p.Store, backlog: p.Backlog, opts: opts, metrics: p.Metrics, notes: make(chan []queue.Job, notifyBuffer), learned: map[string][]string{},
		suspensions: p.Suspensions, notify: p.Notify, events: p.Events}
	if s.opts.Logger == nil {
		s.opts.Logger = slog.Default()
	}
	if s.opts.Now == nil {
		s.opts.Now = time.Now
	}
	for _, r := range repos {
		s.repos[r.Name] = r
	}
	for _, a := range apps {
		s.apps[a.Name] = a
	}
	return s
}

// oneTarget is Parts.Apply and Parts.Cluster as the Target of every app.
type oneTarget struct {
	Applier
	Cluster
}

// target is the cluster app deploys to.
func (s *Syncer) target(app App) (Target, error) {
	if s.targets == nil {
		return oneTarget{s.apply, s.cluster}, nil
	}
	return s.targets.Target(app.Cluster)
}

// SyncURL is the page a sync's status links to.
func (s *Syncer) SyncURL(id string) string {
	return strings.TrimRight(s.opts.ExternalURL, "/") + "/syncs/" + id
}

// Handle runs one job; it is the queue.Handler. It leaves a terminal record, and a final status
// wherever a pending one may have been posted, whenever it returns anything but a retry.
func (s *Syncer) Handle(ctx context.Context, job queue.Job, d queue.Delivery) (err error) {
	app, configured := s.apps[job.App]
	if !configured {
		// The app left ferry.yaml while its job was queued: the job ends, and its commit gets a
		// final status if its repository is still there to post it.
		app = App{Name: job.App, Repo: job.Repo}
	}
	r := &run{s: s, app: app, repo: s.repos[app.Repo], job: job, d: d,
		log: s.opts.Logger.With("sync", job.ID, "app", job.App, "sha", short(job.SHA), "attempt", d.Attempt)}
	var existed bool
	r.rec, existed = s.claim(ctx, job)
	// Nobody posts pending for quiet jobs; any other job whose record existed before this
	// delivery may have a pending status on its commit (the hook's notice, an earlier delivery).
	r.announced = existed && !quiet(job)
	r.rec.Attempts = d.Attempt
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("sync panicked", "panic", p, "stack", string(debug.Stack()))
			err = r.fail(ctx, at(StageRun, fmt.Errorf("internal error: %v", p)))
		}
	}()

	if !configured {
		return r.skip(ctx, status.Canceled, fmt.Sprintf("not applied: app %s is not configured any more", job.App))
	}
	switch job.Kind {
	case queue.KindDeploy:
		return r.deploy(ctx)
	case queue.KindPreview:
		return r.preview(ctx)
	}
	return fmt.Errorf("job %s: unknown kind %q", job.ID, job.Kind)
}

// claim returns the job's record and whether it existed before this call. A job without one
// gets its queued record now, created only if absent: a hook's queued notice that comes later
// then finds it and posts no pending status of its own.
func (s *Syncer) claim(ctx context.Context, job queue.Job) (queue.Record, bool) {
	if r, err := s.store.Get(ctx, job.ID); err == nil {
		return r, true
	}
	rec := queuedRecord(job)
	switch err := s.store.Create(ctx, rec); {
	case err == nil:
		return rec, false
	case errors.Is(err, queue.ErrExists):
		if r, err := s.store.Get(ctx, job.ID); err == nil {
			return r, true
		}
	}
	// The store could not tell: a pending status may be out there.
	return rec, true
}

// queuedRecord is the record of a job that no worker has started yet.
func queuedRecord(job queue.Job) queue.Record {
	return queue.Record{ID: job.ID, App: job.App, Repo: job.Repo, Kind: job.Kind, Trigger: job.Trigger, Ref: job.Ref,
		SHA: job.SHA, PR: job.PR, DeliveryID: job.DeliveryID, By: job.By, State: queue.StateQueued, EnqueuedAt: job.EnqueuedAt}
}

func statusContext(job queue.Job) string {
	if job.Kind == queue.KindPreview {
		return "ferry/" + job.App + "/preview"
	}
	return "ferry/" + job.App
}

func short(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}

// errDependencyFailed ends a dependent's sync when an app it depends on failed.
var errDependencyFailed = errors.New("dependency failed")

// notify tells the notifier how a deploy ends as state, before the app's state is updated.
// Previews send nothing (their commit status is on the pull request).
func (r *run) notify(ctx context.Context, state queue.State) {
	if !r.notifies() {
		return
	}
	prev, _, err := r.s.store.AppState(context.WithoutCancel(ctx), r.job.App)
	r.notifyAfter(ctx, state, prev, err)
}

// notifies says whether the job's end is told to the notifier: a deploy of a configured app.
func (r *run) notifies() bool {
	if r.s.notify == nil || r.job.Kind != queue.KindDeploy {
		return false
	}
	_, configured := r.s.apps[r.job.App]
	return configured
}

// notifyAfter tells the notifier how the job ended, given the app's state before it as read
// (readErr: it could not be).
func (r *run) notifyAfter(ctx context.Context, state queue.State, prev queue.AppState, readErr error) {
	if !r.notifies() {
		return
	}
	if readErr != nil {
		r.log.Info("app state not read; the notification takes the app as new", "err", readErr)
	}
	kind, ok := eventKind(prev, r.job, state)
	if !ok {
		return
	}
	ev := queue.Event{SyncID: r.job.ID, Kind: kind, App: r.job.App, Repo: r.job.Repo, RepoURL: r.repo.Source.URL,
		Provider: r.repo.Source.Provider, Ref: r.job.Ref, SHA: r.job.SHA, SyncKind: r.job.Kind, Trigger: r.job.Trigger,
		State: state, Message: r.rec.Message, URL: r.s.SyncURL(r.job.ID), At: r.s.opts.Now().UTC()}
	if r.rec.FinishedAt != nil {
		ev.At = r.rec.FinishedAt.UTC()
	}
	if r.rec.Error != nil {
		ev.Stage, ev.Object = r.rec.Error.Stage, r.rec.Error.Object
	}
	if err := r.s.notify.Notify(ctx, ev); err != nil {
		r.log.Warn("notification not queued", "event", kind, "err", err)
	}
}

// eventKind is the event a deploy of job ending as state sends, given the app's state before it;
// ok is false when it is no news: a commit that failed last time failing again, a commit that
// already succeeded succeeding again (start-up, "already applied", a manual re-sync), a
// self-heal repair (which never recovers the commit that failed), or a start-up or self-heal
// re-sync that was not run (like its status, that is not worth a message).
func eventKind(prev queue.AppState, job queue.Job, state queue.State) (queue.EventKind, bool) {
	switch state {
	case queue.StateSkipped:
		if quiet(job) {
			return "", false
		}
		return queue.EventSuperseded, true
	case queue.StateFailed:
		if prev.State == queue.StateFailed && prev.SHA == job.SHA {
			return "", false
		}
		return queue.EventFailed, true
	case queue.StateSucceeded:
		switch {
		case job.Trigger == queue.TriggerDrift:
			return "", false
		case prev.State == queue.StateFailed:
			return queue.EventRecovered, true
		case prev.State == queue.StateSucceeded && prev.SHA == job.SHA:
			return "", false
		}
		return queue.EventSucceeded, true
	}
	return "", false
}
