package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// DefaultMaxDeliver is the safety net on deliveries of one job. Jobs are redelivered while they
// wait for their dependencies (every few seconds, for up to a quarter of an hour) as well as after
// transient failures, which the handler bounds itself; the net only catches a handler that never
// decides.
const DefaultMaxDeliver = 600

// Delivery tells a handler where a job stands in its delivery attempts.
type Delivery struct {
	// Attempt counts deliveries of this job, from 1.
	Attempt int
	// Last is true when no further attempt will follow whatever the handler returns: the
	// handler must leave a terminal status behind.
	Last bool
}

// Handler runs one job. Returning nil acknowledges it; an error made with Retry asks for another
// delivery after a delay; any other error ends the job for good.
type Handler func(ctx context.Context, job Job, d Delivery) error

// RetryError asks the queue to deliver the job again after Delay.
type RetryError struct {
	Err   error
	Delay time.Duration
}

func (e *RetryError) Error() string { return e.Err.Error() }
func (e *RetryError) Unwrap() error { return e.Err }

// Retry marks err as transient: the job is delivered again after delay.
func Retry(err error, delay time.Duration) error { return &RetryError{Err: err, Delay: delay} }

// Defaults of ConsumeOptions: the one place ferry's worker settings are chosen.
const (
	// DefaultWorkers is how many deploys one replica runs at once.
	DefaultWorkers = 4
	// DefaultPreviewConcurrency is how many previews run at once across all replicas; each
	// replica can run that many too, on slots of their own.
	DefaultPreviewConcurrency = 4
	// DefaultAckWait is how long a job may go without a heartbeat before JetStream hands it to
	// another worker: the time a job held by a dead process (SIGKILL, OOM kill, lost node) waits
	// before another replica takes it over. Heartbeats go out every quarter of it, so a healthy
	// worker can miss three in a row (a busy machine, a NATS cluster electing a new consumer
	// leader) before its job is handed over.
	DefaultAckWait = 8 * time.Second
	// DefaultGrace is how long running jobs may finish after shutdown began.
	DefaultGrace = 60 * time.Second
	// heartbeatsPerAckWait is how many heartbeats a running job sends per ack wait.
	heartbeatsPerAckWait = 4
)

// ConsumeOptions tunes the worker pool.
type ConsumeOptions struct {
	// Workers bounds how many deploys this process runs at once, across all apps.
	Workers int
	// AckWait is how long a job may go without a sign of life before JetStream redelivers it.
	// While a job waits for a slot and while it runs, this process sends one every
	// AckWait/4, so only a job whose process died (or lost NATS for half of AckWait, after
	// which the process gives the job up) is redelivered, within AckWait of the last sign.
	AckWait time.Duration
	// MaxDeliver bounds the deliveries of one job; the last one is told so.
	MaxDeliver int
	// Grace is how long in-flight jobs may run on after ctx is cancelled before they are
	// cancelled too and handed back to the stream.
	Grace time.Duration
	// PreviewConcurrency is how many previews may run at once across all replicas. They run on
	// slots of their own, apart from Workers: a deploy never waits behind previews.
	PreviewConcurrency int
	// Idle, when set, is called once this process's workers have had no job for IdleDelay
	// after running some: a burst of syncs is over. ferry hands memory back to the OS there.
	Idle      func()
	IdleDelay time.Duration
	Logger    *slog.Logger

	idle *idleWatch // set by Consume
}

// DefaultConsumeOptions are the settings ferry serves with unless configured otherwise.
func DefaultConsumeOptions() ConsumeOptions {
	return ConsumeOptions{Workers: DefaultWorkers, AckWait: DefaultAckWait, MaxDeliver: DefaultMaxDeliver, Grace: DefaultGrace,
		PreviewConcurrency: DefaultPreviewConcurrency, Logger: slog.Default()}
}

// Consume runs jobs for apps until ctx is cancelled, then stops taking new ones and waits for
// the running ones (at most Grace). Each app has one durable deploy consumer that allows one
// unacknowledged job at a time, so an app never has two syncs at once, whichever worker or
// replica holds the job. Previews write nothing and need no such order: one durable consumer
// takes them for every app, PreviewConcurrency at a time, which keeps an idle server with many
// apps at one consumer per app rather than two. Deploys run on Workers slots and previews on
// PreviewConcurrency slots of their own, so previews never hold up a deploy.
func (q *Queue) Consume(ctx context.Context, apps []string, h Handler, opts ConsumeOptions) error {
	if opts.Workers < 1 {
		opts.Workers = 1
	}
	opts.PreviewConcurrency = max(opts.PreviewConcurrency, 1)
	if opts.AckWait <= 0 {
		opts.AckWait = DefaultAckWait
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	// work outlives ctx by Grace so that running syncs can finish during shutdown.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stopGrace := context.AfterFunc(ctx, func() {
		t := time.NewTimer(opts.Grace)
		defer t.Stop()
		select {
		case <-t.C:
			cancelWork()
		case <-work.Done():
		}
	})
	defer stopGrace()

	removed, err := q.tidyConsumers(ctx, apps)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting: a shutdown, not a failure
		}
		return err
	}
	deploySlots := make(chan struct{}, opts.Workers)
	// Every replica may hold all PreviewConcurrency previews the shared consumer lets out, so a
	// preview this process receives always finds a slot at once.
	previewSlots := make(chan struct{}, opts.PreviewConcurrency)
	type source struct {
		cfg   jetstream.ConsumerConfig
		slots chan struct{}
	}
	sources := make([]source, 0, len(apps)+1)
	for _, app := range apps {
		sources = append(sources, source{q.consumerConfig(string(KindDeploy)+"-"+app, Subject(KindDeploy, app),
			fmt.Sprintf("deploy jobs of app %s", app), 1, opts), deploySlots})
	}
	for _, app := range removed {
		// Jobs stored for an app that has since left the configuration still reach the handler,
		// which ends each with a final status; the consumer goes at a start that finds it empty.
		sources = append(sources, source{q.consumerConfig(string(KindDeploy)+"-"+app, Subject(KindDeploy, app),
			fmt.Sprintf("deploy jobs of app %s, no longer configured", app), 1, opts), deploySlots})
	}
	sources = append(sources, source{q.consumerConfig(string(KindPreview), subjectPrefix+"."+string(KindPreview)+".>",
		"preview jobs of every app", opts.PreviewConcurrency, opts), previewSlots})

	opts.idle = newIdleWatch(opts.Idle, opts.IdleDelay)
	// wg counts the pumps and the jobs they started: a pump is counted while it adds a job.
	var wg sync.WaitGroup
	var iters []jetstream.MessagesContext
	stopAll := func() {
		for _, it := range iters {
			it.Stop()
		}
	}
	for _, src := range sources {
		// CreateOrUpdate: a consumer made by an older ferry with another ack wait or bound takes
		// these settings.
		cons, err := q.js.CreateOrUpdateConsumer(ctx, StreamName, src.cfg)
		if err != nil {
			err = fmt.Errorf("create consumer for %s: %w", src.cfg.Description, err)
		}
		var it jetstream.MessagesContext
		if err == nil {
			if it, err = cons.Messages(jetstream.PullMaxMessages(1)); err != nil {
				err = fmt.Errorf("consume %s: %w", src.cfg.Description, err)
			}
		}
		if err != nil {
			stopAll()
			if ctx.Err() != nil {
				// Told to stop while starting (a SIGTERM right after start): a shutdown, not a
				// failure. Jobs the started consumers handed out finish first, as below.
				wg.Wait()
				return nil
			}
			return err
		}
		iters = append(iters, it)
		wg.Go(func() { q.pump(ctx, work, it, src.slots, h, opts, &wg) })
	}
	<-ctx.Done()
	for _, it := range iters {
		it.Drain()
	}
	wg.Wait()
	return nil
}

func (q *Queue) consumerConfig(durable, filter, description string, maxPending int, opts ConsumeOptions) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       durable,
		Description:   description,
		FilterSubject: filter,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       opts.AckWait,
		MaxDeliver:    opts.MaxDeliver,
		MaxAckPending: maxPending,
		Replicas:      q.opts.Replicas,
	}
}

// tidyConsumers deletes the consumers ferry no longer needs: the per-app preview consumers of
// versions before previews shared one (a work-queue stream refuses a consumer whose filter
// overlaps another's, and their jobs are the shared consumer's now), and the deploy consumers of
// apps no longer configured that hold no job. It returns the apps no longer configured whose
// consumers still hold jobs: those jobs must still end, each with a final status.
func (q *Queue) tidyConsumers(ctx context.Context, apps []string) (removed []string, err error) {
	stream, err := q.js.Stream(ctx, StreamName)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", StreamName, err)
	}
	configured := make(map[string]bool, len(apps))
	for _, a := range apps {
		configured[a] = true
	}
	names := stream.ConsumerNames(ctx)
	var stale []string
	for name := range names.Name() {
		if strings.HasPrefix(name, string(KindPreview)+"-") {
			stale = append(stale, name)
		}
		if app, ok := strings.CutPrefix(name, string(KindDeploy)+"-"); ok && !configured[app] {
			removed = append(removed, app)
		}
	}
	if err := names.Err(); err != nil {
		return nil, fmt.Errorf("list consumers: %w", err)
	}
	held := removed[:0]
	for _, app := range removed {
		name := string(KindDeploy) + "-" + app
		c, err := stream.Consumer(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("consumer %s: %w", name, err)
		}
		if info := c.CachedInfo(); info.NumPending+uint64(info.NumAckPending) > 0 {
			held = append(held, app)
			continue
		}
		stale = append(stale, name)
	}
	for _, name := range stale {
		if err := stream.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, fmt.Errorf("delete consumer %s: %w", name, err)
		}
	}
	return held, nil
}

// pump takes one consumer's messages and starts each at once on a goroutine of its own, which
// waits for a slot and runs it. The pump itself never waits for a job: it is always ready for
// the consumer's next message, so no delivered message sits in the client unattended, without
// heartbeats. The consumer's MaxAckPending bounds how many jobs one pump has started.
func (q *Queue) pump(ctx, work context.Context, it jetstream.MessagesContext, slots chan struct{}, h Handler, opts ConsumeOptions, wg *sync.WaitGroup) {
	for {
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil {
				return
			}
			opts.Logger.Warn("queue: next job", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		// The job runs on a goroutine of its own, which also keeps a sync's grown stack away
		// from this long-lived pump.
		wg.Go(func() { q.run(ctx, work, msg, slots, h, opts) })
	}
}

// errLeaseLost ends a job this process could not keep alive: NATS went unreachable long enough
// that JetStream may have handed the job to another worker.
var errLeaseLost = errors.New("no heartbeat reached NATS for half the ack wait: the job may be another worker's now")

// run handles one message: keeps it alive while it waits for a slot and while it runs, then
// acknowledges, retries or terminates it as the handler says.
func (q *Queue) run(ctx, work context.Context, msg jetstream.Msg, slots chan struct{}, h Handler, opts ConsumeOptions) {
	log := opts.Logger.With("subject", msg.Subject())
	var job Job
	if err := json.Unmarshal(msg.Data(), &job); err != nil {
		log.Error("queue: job cannot be decoded, dropping it", "err", err)
		_ = msg.TermWithReason("undecodable job")
		return
	}
	log = log.With("job", job.ID, "app", job.App, "sha", job.SHA)
	d := Delivery{Attempt: 1}
	if md, err := msg.Metadata(); err == nil {
		d.Attempt = int(md.NumDelivered)
	}
	d.Last = opts.MaxDeliver > 0 && d.Attempt >= opts.MaxDeliver
	if ctx.Err() != nil {
		// Shutting down before the job started: hand it straight back to the stream.
		_ = msg.Nak()
		return
	}

	alive, stopAlive := context.WithCancelCause(work)
	defer stopAlive(nil)
	go q.keepAlive(alive, msg, opts.AckWait, stopAlive)

	select {
	case slots <- struct{}{}:
	case <-ctx.Done():
		_ = msg.Nak()
		return
	case <-alive.Done():
		log.Warn("queue: job given up before it started", "err", context.Cause(alive))
		return
	}
	defer func() { <-slots }()
	opts.idle.begin()
	defer opts.idle.end()

	err := h(alive, job, d)
	lost := errors.Is(context.Cause(alive), errLeaseLost)
	stopAlive(nil)
	var retry *RetryError
	switch {
	case lost:
		// Whatever this process says now could undo what another worker does with the job.
		log.Warn("queue: job given up: NATS unreachable", "err", errLeaseLost)
	case err == nil:
		if aerr := msg.DoubleAck(context.WithoutCancel(work)); aerr != nil {
			log.Warn("queue: ack", "err", aerr)
		}
	case work.Err() != nil:
		// Shutdown cut the job short: another worker will run it again.
		log.Info("queue: job interrupted by shutdown, handing it back", "err", err)
		_ = msg.Nak()
	case errors.As(err, &retry) && !d.Last:
		log.Info("queue: job will be retried", "attempt", d.Attempt, "delay", retry.Delay, "err", err)
		_ = msg.NakWithDelay(retry.Delay)
	default:
		log.Warn("queue: job failed for good", "attempt", d.Attempt, "err", err)
		_ = msg.TermWithReason(truncate(err.Error(), 200))
	}
}

// keepAlive tells JetStream that msg's job is in progress every ackWait/4 until ctx ends. When
// no heartbeat could be sent for half of ackWait (the connection is down), JetStream may hand
// the job to another worker a heartbeat later: keepAlive gives the job up first, through lost.
func (q *Queue) keepAlive(ctx context.Context, msg jetstream.Msg, ackWait time.Duration, lost context.CancelCauseFunc) {
	t := time.NewTicker(ackWait / heartbeatsPerAckWait)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if q.nc.IsConnected() && msg.InProgress() == nil {
				last = now
			} else if now.Sub(last) >= ackWait/2 {
				lost(errLeaseLost)
				return
			}
		}
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// idleWatch calls fn once no job has run for delay after the last one ended.
type idleWatch struct {
	fn      func()
	delay   time.Duration
	mu      sync.Mutex
	running int
	timer   *time.Timer
}

func newIdleWatch(fn func(), delay time.Duration) *idleWatch {
	if delay <= 0 {
		delay = 2 * time.Second
	}
	return &idleWatch{fn: fn, delay: delay}
}

func (w *idleWatch) begin() {
	if w == nil || w.fn == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.running++
	if w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
}

func (w *idleWatch) end() {
	if w == nil || w.fn == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.running--
	if w.running > 0 {
		return
	}
	var t *time.Timer
	t = time.AfterFunc(w.delay, func() {
		w.mu.Lock()
		current := w.timer == t && w.running == 0
		if current {
			w.timer = nil
		}
		w.mu.Unlock()
		if current {
			w.fn()
		}
	})
	w.timer = t
}
