// Package syncer does the work behind every job: fetch the exact commit, render the app, apply
// it in stages, prune, wait until healthy, and report on the commit.
package syncer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/syncer/apply"
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
	Timeout   time.Duration
	DependsOn []string
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
	// DefaultTimeout is the health wait of apps that set none.
	DefaultTimeout time.Duration
	Logger         *slog.Logger
	Now            func() time.Time
}

// DefaultOptions are the settings ferry serves with unless configured otherwise.
func DefaultOptions() Options {
	return Options{CommitWait: 30 * time.Second, DependencyWait: 15 * time.Minute, TransientAttempts: 8, DefaultTimeout: 5 * time.Minute, Logger: slog.Default(), Now: time.Now}
}

// Syncer runs jobs. It is the queue's handler and the hooks' notifier.
type Syncer struct {
	repos   map[string]Repo
	apps    map[string]App
	fetch   Fetcher
	apply   Applier
	store   Store
	backlog Backlog
	opts    Options
	metrics *Metrics
	notes   chan []queue.Job

	// learned is each app's inputs outside its path as this process last recorded them.
	learnedMu sync.Mutex
	learned   map[string][]string
}

// New checks that every app names a known repository and dependency.
func New(repos []Repo, apps []App, f Fetcher, a Applier, st Store, bl Backlog, m *Metrics, opts Options) (*Syncer, error) {
	s := &Syncer{repos: map[string]Repo{}, apps: map[string]App{}, fetch: f, apply: a, store: st, backlog: bl, opts: opts, metrics: m, notes: make(chan []queue.Job, notifyBuffer), learned: map[string][]string{}}
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
		if _, ok := s.repos[a.Repo]; !ok {
			return nil, fmt.Errorf("app %s: unknown repo %q", a.Name, a.Repo)
		}
		s.apps[a.Name] = a
	}
	for _, a := range apps {
		for _, d := range a.DependsOn {
			if _, ok := s.apps[d]; !ok {
				return nil, fmt.Errorf("app %s: dependsOn names unknown app %q", a.Name, d)
			}
		}
	}
	return s, nil
}

// SyncURL is the page a sync's status links to.
func (s *Syncer) SyncURL(id string) string {
	return strings.TrimRight(s.opts.ExternalURL, "/") + "/syncs/" + id
}

// Handle runs one job; it is the queue.Handler. It leaves a terminal status on the commit
// whenever it returns anything but a retry.
func (s *Syncer) Handle(ctx context.Context, job queue.Job, d queue.Delivery) error {
	app, ok := s.apps[job.App]
	if !ok {
		return fmt.Errorf("job %s: app %q is not configured any more", job.ID, job.App)
	}
	repo := s.repos[app.Repo]
	rec := s.record(ctx, job)
	rec.Attempts = d.Attempt
	log := s.opts.Logger.With("sync", job.ID, "app", job.App, "sha", short(job.SHA), "attempt", d.Attempt)

	switch job.Kind {
	case queue.KindDeploy:
		return s.deploy(ctx, log, app, repo, job, d, rec)
	case queue.KindPreview:
		return s.preview(ctx, log, app, repo, job, d, rec)
	}
	return fmt.Errorf("job %s: unknown kind %q", job.ID, job.Kind)
}

// record returns the job's stored record, or a fresh one when none was stored yet.
func (s *Syncer) record(ctx context.Context, job queue.Job) queue.Record {
	if r, err := s.store.Get(ctx, job.ID); err == nil {
		return r
	}
	return queuedRecord(job)
}

// queuedRecord is the record of a job that no worker has started yet.
func queuedRecord(job queue.Job) queue.Record {
	return queue.Record{ID: job.ID, App: job.App, Repo: job.Repo, Kind: job.Kind, Trigger: job.Trigger, Ref: job.Ref,
		SHA: job.SHA, PR: job.PR, DeliveryID: job.DeliveryID, State: queue.StateQueued, EnqueuedAt: job.EnqueuedAt}
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
