package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/ferrygitops/ferry/handlers"
	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/server"
	"github.com/ferrygitops/ferry/syncer"
	"github.com/ferrygitops/ferry/syncer/notify"
	"github.com/ferrygitops/ferry/syncer/source"
	"github.com/ferrygitops/ferry/syncer/source/charts"
	"github.com/ferrygitops/ferry/syncer/status"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

const (
	// shutdownHTTP bounds how long in-flight requests may take once SIGTERM arrived.
	shutdownHTTP = 10 * time.Second
	// idleRelease is how long the workers must have had no job before memory is handed back.
	idleRelease = 5 * time.Second
	// chartTimeout bounds each request to a chart repository or registry.
	chartTimeout = 2 * time.Minute
)

// serve runs ferry until ctx is cancelled, then shuts down in order: stop accepting hooks, stop
// taking jobs, let running syncs finish, store their notifications, finish the notifications
// being sent, close NATS.
func serve(ctx context.Context, o serveOptions, getenv func(string) string, stderr io.Writer) error {
	log, err := newLogger(o, stderr)
	if err != nil {
		return err
	}
	cfg, sec, err := LoadConfig(o.Config, getenv)
	if err != nil {
		return err
	}
	if err := verifyGitHubApps(ctx, sec.Apps, log.With("part", "github-app")); err != nil {
		return err
	}
	nc, closeNATS, err := connectNATS(o, log)
	if err != nil {
		return err
	}
	defer closeNATS()
	setupCtx, cancelSetup := context.WithTimeout(ctx, 60*time.Second)
	defer cancelSetup()
	q, err := queue.New(setupCtx, nc, queue.Options{Replicas: o.NATSReplicas})
	if err != nil {
		return err
	}
	records, err := queue.NewRecords(setupCtx, q.JetStream(), o.NATSReplicas)
	if err != nil {
		return err
	}
	suspensions, err := queue.NewSuspensions(setupCtx, q.JetStream(), o.NATSReplicas, nil)
	if err != nil {
		return err
	}

	kube, err := kubeConfig(o.Kubeconfig)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	targets, err := targetSet(kube, cfg, sec, log, reg)
	if err != nil {
		return err
	}
	cache, err := source.New(source.Options{Dir: filepath.Join(o.DataDir, "git"), MaxFetchBytes: int64(cfg.MaxFetchMiB) << 20, Logger: log.With("part", "git"),
		Metrics: source.NewMetrics(reg)})
	if err != nil {
		return err
	}

	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		queue.NewCollector(q, time.Now, log.With("part", "queue")))
	repos := syncerRepos(cfg, sec, log, status.NewMetrics(reg, time.Now))
	sopts := syncer.DefaultOptions()
	sopts.ExternalURL, sopts.Worker, sopts.Logger = cfg.ExternalURL, o.Worker, log.With("part", "syncer")
	sopts.Render.Limits = cfg.RenderLimits.render()
	notices, err := queue.NewNotifications(setupCtx, q.JetStream(), queue.NotifyOptions{Replicas: o.NATSReplicas, Logger: log.With("part", "notify")})
	if err != nil {
		return err
	}
	nmetrics := notify.NewMetrics(reg)
	// The targets' consumers exist before any sync may publish, so that none misses an event.
	dispatcher, err := notify.NewDispatcher(setupCtx, notices, sec.Notify, notifyOptions(cfg, log, nmetrics))
	if err != nil {
		return err
	}
	publisher := notify.NewPublisher(notices, log.With("part", "notify"), nmetrics)
	chartCache := charts.NewFetcher(filepath.Join(o.DataDir, "charts"), &http.Client{Timeout: chartTimeout})
	events := targets.NewEventRecorder(o.Worker, appClusters(cfg))
	s := syncer.New(repos, syncerApps(cfg, sec), syncer.Parts{Fetch: cache, Targets: syncerTargets{targets}, Charts: chartCache,
		Store: records, Backlog: q, Metrics: syncer.NewMetrics(reg), Suspensions: suspensions, Notify: notifier(sec, publisher), Events: events}, sopts)
	enq := &enqueuer{q: q, notify: s}
	hooks := handlers.NewHooks(hookRepos(cfg, sec), enq, handlers.HooksOptions{Logger: log.With("part", "hooks"), NewID: queue.NewID})
	apiOpts := handlers.ResyncOptions{Logger: log.With("part", "api"), NewID: queue.NewID, URL: s.SyncURL, Repos: sourceRepos(repos)}
	resync, err := handlers.NewResync(resyncApps(cfg), cache, enq, suspensions, apiOpts)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	suspender, err := handlers.NewSuspender(resyncApps(cfg), suspensions, cache, enq, apiOpts)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	diff, err := handlers.NewDiff(resync, s, log.With("part", "api"))
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	disco, err := discovery.NewDiscoveryClientForConfig(kube)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	auth := apiAuth(cfg, sec)
	srv := server.New(server.Config{
		Hooks: handlers.NewHookMetrics(reg).Wrap(hooks), Auth: auth.Require, Resync: resync, Diff: diff, Suspend: http.HandlerFunc(suspender.Suspend), Resume: http.HandlerFunc(suspender.Resume),
		Suspensions: suspensions, Records: records, Watch: records, Apps: appInfos(cfg), Clusters: clusterHealth(targets), Gatherer: reg, Logger: log.With("part", "http"),
		Steering: steering{resync: resync, suspender: suspender}, Users: auth, SessionKey: server.SessionKey(sec.APITokens...), ExternalURL: cfg.ExternalURL, ReadAuth: cfg.ReadAuth,
		// Only ferry's own cluster makes ferry unready: another cluster down fails its own apps'
		// syncs, and shows on /api/v1/clusters, the app list and ferry_cluster_up.
		Ready: []server.Check{
			{Name: "nats", Run: q.Ping},
			{Name: "kubernetes", Run: func(ctx context.Context) error {
				return disco.RESTClient().Get().AbsPath("/readyz").Do(ctx).Error()
			}},
		},
	})
	l, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	copts := consumeOptions(cfg, o, log)
	log.Info("ferry serving", "version", buildVersion(), "listen", l.Addr().String(), "repos", len(cfg.Repos), "apps", len(cfg.Apps), "workers", copts.Workers, "nats", natsMode(o))

	var wg sync.WaitGroup
	// Events outlive the workers, so that syncs finishing during shutdown still record theirs.
	eventsCtx, stopEvents := context.WithCancel(context.WithoutCancel(ctx))
	defer stopEvents()
	wg.Go(func() { events.Run(eventsCtx) })
	errc := make(chan error, 2)
	wg.Go(func() {
		if err := srv.Serve(l); err != nil {
			errc <- fmt.Errorf("http: %w", err)
		}
	})
	work, stopWork := context.WithCancel(ctx)
	defer stopWork()
	wg.Go(func() { s.RunNotifier(work) })
	wg.Go(func() { watchInputs(work, records, hooks, log.With("part", "hooks")) })
	wg.Go(func() { s.TrackSuspensions(work) })
	wg.Go(func() { targets.Run(work) })
	// Syncs come in bursts (a push to a monorepo, start-up recovery) with long quiet spells
	// between them; once a burst is over, the heap it left behind goes back to the OS rather
	// than waiting for the runtime's next forced collection.
	copts.Idle, copts.IdleDelay = debug.FreeOSMemory, idleRelease
	var consumeDone sync.WaitGroup
	consumeDone.Go(func() {
		if err := q.Consume(work, appNames(cfg), s.Handle, copts); err != nil {
			errc <- fmt.Errorf("workers: %w", err)
		}
	})

	// Notifications outlive the workers: the publisher stores the events of the last syncs, and
	// this replica's dispatcher goes on sending until then.
	pubCtx, stopPub := context.WithCancel(context.WithoutCancel(ctx))
	defer stopPub()
	dispCtx, stopDisp := context.WithCancel(context.WithoutCancel(ctx))
	defer stopDisp()
	var pubDone, dispDone sync.WaitGroup
	pubDone.Go(func() { publisher.Run(pubCtx) })
	dispDone.Go(func() {
		if err := dispatcher.Run(dispCtx); err != nil {
			log.Error("notifications stopped; events wait in the stream", "err", err)
		}
	})

	poller := s.NewPoller(cache, enq, syncer.PollOptions{Interval: pollIntervals(cfg), SelfHeal: selfHeal(cfg), Logger: log.With("part", "poll")})
	wg.Go(func() { poller.Run(work) })

	select {
	case <-ctx.Done():
		log.Info("shutting down: no new hooks, finishing running syncs")
	case err = <-errc:
		log.Error("stopping", "err", err)
	}
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownHTTP)
	defer cancel()
	if herr := srv.Shutdown(hctx); herr != nil {
		log.Warn("http shutdown", "err", herr)
	}
	stopWork()
	consumeDone.Wait()
	stopPub()
	pubDone.Wait()
	stopDisp()
	dispDone.Wait()
	stopEvents()
	wg.Wait()
	log.Info("ferry stopped")
	return err
}

// consumeOptions are the worker pool's settings: the queue's defaults, with the worker count
// of the config and then of --workers when they set one, and a lane per cluster (syncLanes).
func consumeOptions(cfg *Config, o serveOptions, log *slog.Logger) queue.ConsumeOptions {
	copts := queue.DefaultConsumeOptions()
	if cfg.Workers > 0 {
		copts.Workers = cfg.Workers
	}
	if o.Workers > 0 {
		copts.Workers = o.Workers
	}
	copts.Lane, copts.LaneLimit = syncLanes(cfg)
	copts.Logger = log.With("part", "queue")
	return copts
}

// inputsRewatch is the pause before the watch of recorded inputs is opened again after it broke
// (NATS restarting, say); meanwhile routing keeps what it knew.
const inputsRewatch = 5 * time.Second

// watchInputs keeps webhook routing told of what each app's last deploy rendered from outside
// its path, as any replica records it, until ctx ends.
func watchInputs(ctx context.Context, records *queue.Records, hooks *handlers.Hooks, log *slog.Logger) {
	for {
		err := records.WatchInputs(ctx, hooks.SetInputs)
		if ctx.Err() != nil {
			return
		}
		log.Warn("watching recorded inputs", "err", err, "retry_in", inputsRewatch)
		select {
		case <-ctx.Done():
			return
		case <-time.After(inputsRewatch):
		}
	}
}

// enqueuer stores jobs and tells the syncer of those that are new, so that a redelivered hook
// makes neither a second job nor a second pending status.
type enqueuer struct {
	q      *queue.Queue
	notify interface{ Stored([]queue.Job) }
}

func (e *enqueuer) Enqueue(ctx context.Context, jobs []queue.Job) ([]queue.Job, error) {
	stored, err := e.q.Enqueue(ctx, jobs)
	if err != nil {
		return nil, err
	}
	if len(stored) > 0 {
		e.notify.Stored(stored)
	}
	return stored, nil
}

func connectNATS(o serveOptions, log *slog.Logger) (*nats.Conn, func(), error) {
	if o.NATSURL != "" {
		nc, err := queue.Dial(o.NATSURL, "ferry-"+o.Worker, log.With("part", "nats"))
		if err != nil {
			return nil, nil, err
		}
		return nc, func() { _ = nc.Drain() }, nil
	}
	emb, err := queue.StartEmbedded(queue.EmbeddedOptions{DataDir: filepath.Join(o.DataDir, "nats"), Logger: log.With("part", "nats")})
	if err != nil {
		return nil, nil, err
	}
	nc, err := emb.Connect("ferry-" + o.Worker)
	if err != nil {
		emb.Shutdown()
		return nil, nil, err
	}
	return nc, func() { nc.Close(); emb.Shutdown() }, nil
}

func natsMode(o serveOptions) string {
	if o.NATSURL == "" {
		return "embedded"
	}
	return "external"
}

func kubeConfig(kubeconfig string) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes config: %w", err)
	}
	// No client-side rate limit is set here: the apply engine sets one sized for applying
	// thousands of objects, and the apiserver's own priority and fairness protects it.
	cfg.UserAgent = "ferry/" + buildVersion()
	return cfg, nil
}

func newLogger(o serveOptions, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.LogLevel)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", o.LogLevel, err)
	}
	hopts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(o.LogFormat) {
	case "json":
		return slog.New(slog.NewJSONHandler(w, hopts)), nil
	case "text", "":
		return slog.New(slog.NewTextHandler(w, hopts)), nil
	}
	return nil, errors.New("log format must be text or json")
}

// reporter is repository r's commit-status client as syncs use it: each request counted and
// timed, retried and deduplicated;
// nil when r has no token, so that no statuses are posted.
func reporter(r RepoConf, sec *Secrets, log *slog.Logger, m *status.Metrics) status.Reporter {
	rep := sec.Forges[r.Name]
	if rep == nil {
		log.Warn("no token for repo: commit statuses will not be posted", "repo", r.Name)
		return nil
	}
	ropts := status.DefaultRetryOptions()
	ropts.Logger = log.With("repo", r.Name)
	return status.Dedup(status.Retry(m.Measure(rep, r.Name), ropts))
}

// steering does what the dashboard's buttons ask, through the write API's own logic: a sync as
// handlers.Resync.Start, suspend and resume as handlers.Suspender's. The person signed in is the
// caller, as the API's token or proxy user is.
type steering struct {
	resync    *handlers.Resync
	suspender *handlers.Suspender
}

var _ server.Steering = steering{}

func (st steering) Sync(ctx context.Context, app, revision string, force bool, by string) (string, error) {
	job, err := st.resync.Start(ctx, app, revision, force, dashboardCaller(by))
	if err != nil {
		return "", steeringError(err)
	}
	return job.ID, nil
}

func (st steering) Suspend(ctx context.Context, app, by, reason string) error {
	_, err := st.suspender.SuspendApp(ctx, app, dashboardCaller(by), reason)
	return steeringError(err)
}

func (st steering) Resume(ctx context.Context, app, by string) (string, error) {
	_, job, err := st.suspender.ResumeApp(ctx, app, dashboardCaller(by))
	if err != nil || job == nil {
		return "", steeringError(err)
	}
	return job.ID, nil
}

func dashboardCaller(by string) handlers.Identity {
	return handlers.Identity{Name: by, Via: handlers.ViaDashboard}
}

// steeringError classifies the write API's refusals as the dashboard shows them.
func steeringError(err error) error {
	re, ok := errors.AsType[*handlers.RequestError](err)
	if !ok {
		return err
	}
	switch re.Status {
	case http.StatusNotFound:
		return fmt.Errorf("%w: %w", server.ErrUnknownApp, err)
	case http.StatusConflict:
		return fmt.Errorf("%w: %w", server.ErrSuspended, err)
	case http.StatusBadRequest, http.StatusBadGateway:
		return fmt.Errorf("%w: %w", server.ErrRefused, err)
	}
	return err
}
