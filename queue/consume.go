package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// DefaultMaxDeliver bounds the deliveries of one job that reach the handler. Jobs are delivered
// again while they wait for their dependencies (every few seconds, for up to a quarter of an hour)
// and after transient failures, which the handler bounds itself; the bound only catches a handler
// that never decides. A deploy job waiting behind an earlier job of its app is held by the worker
// that got it, which costs no delivery; only one held beyond MaxHeldPerApp is handed back, once
// every heldOverflowDelay.
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
	// DefaultDeployMaxAckPending bounds the deploy jobs handed out and not yet ended, across all
	// replicas: the running ones, those held behind an earlier job of their app and those
	// waiting out a retry delay (a job waiting for its dependencies, a transient failure). Jobs
	// are fetched only when a worker is free, so the running ones are Workers per replica; the
	// bound is there for the others. A job beyond it is not handed out until one ends, so it is
	// far above any backlog one app should build up (a burst of pushes to one app behind a long
	// sync), while JetStream keeps an entry of tens of bytes per pending job.
	DefaultDeployMaxAckPending = 10000
	// heartbeatsPerAckWait is how many heartbeats a running job sends per ack wait.
	heartbeatsPerAckWait = 4
)

// ConsumeOptions tunes the worker pool.
type ConsumeOptions struct {
	// Workers bounds how many deploys this process runs at once, across all apps.
	Workers int
	// AckWait is how long a job may go without a sign of life before JetStream redelivers it.
	// While a job is held and while it runs, this process sends one every AckWait/4, so only a
	// job whose process died (or lost NATS for half of AckWait, after which the process gives
	// the job up) is redelivered, within AckWait of the last sign.
	AckWait time.Duration
	// MaxDeliver bounds the deliveries of one job; the last one is told so.
	MaxDeliver int
	// MaxAckPending bounds the deploy jobs handed out and not ended across all replicas
	// (DefaultDeployMaxAckPending).
	MaxAckPending int
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
	// Lane, when set, puts each app's deploys in a lane (ferry: the app's cluster; "" for none),
	// and LaneLimit bounds how many of this replica's Workers the deploys of one lane may hold
	// at once (0 or less, or no LaneLimit: DefaultLaneLimit; more than Workers is Workers). The
	// bound is per replica, like Workers. A deploy whose lane is full waits for a slot of its
	// lane in memory, on no worker, without spending a delivery (see lanes.go). Without Lane, any
	// app's deploys may take every worker.
	Lane      func(app string) string
	LaneLimit func(lane string) int

	idle *idleWatch // set by Consume
	// maxHeld and overflowDelay are MaxHeldPerApp and heldOverflowDelay unless a test sets them.
	maxHeld       int
	overflowDelay time.Duration
	// maxLaneWaiting is MaxWaitingPerLane unless a test sets it.
	maxLaneWaiting int
}

// DefaultConsumeOptions are the settings ferry serves with unless configured otherwise.
func DefaultConsumeOptions() ConsumeOptions {
	return ConsumeOptions{Workers: DefaultWorkers, AckWait: DefaultAckWait, MaxDeliver: DefaultMaxDeliver, Grace: DefaultGrace,
		MaxAckPending: DefaultDeployMaxAckPending, PreviewConcurrency: DefaultPreviewConcurrency, Logger: slog.Default()}
}

// Consumer names: one durable consumer takes the deploy jobs of every app and one the preview
// jobs, whatever the number of apps.
const (
	deployConsumer  = string(KindDeploy)
	previewConsumer = string(KindPreview)
)

// Consume runs jobs until ctx is cancelled, then stops taking new ones and waits for the running
// ones (at most Grace).
//
// Deploys of one app must run one at a time, in the order they were stored, whichever worker or
// replica holds them. Older versions gave every app a durable consumer that let one job out at a
// time, which JetStream's consumer limit stopped near 1,000 apps. Now one durable consumer takes
// the deploy jobs of every app, configured or not (a job stored for an app since removed still
// reaches h, which ends it with a final status), and the order comes from the stream itself: in a
// work-queue stream a job is deleted once it ends, so the oldest job stored on an app's subject
// is the one running or next. A worker runs a job only when it is that oldest one; a later job
// waits, held by the process that got it (see dispatcher), until the jobs before it have ended.
// Workers fetch a job only when they are free, so jobs spread over the replicas that have room.
//
// Previews write nothing and need no such order: one durable consumer takes them for every app,
// PreviewConcurrency at a time, on slots of their own, so previews never hold up a deploy.
//
// apps names the configured apps. Nothing per app is created from it any more; it is logged at
// start, and kept so that callers need not change.
func (q *Queue) Consume(ctx context.Context, apps []string, h Handler, opts ConsumeOptions) error {
	if opts.Workers < 1 {
		opts.Workers = 1
	}
	opts.PreviewConcurrency = max(opts.PreviewConcurrency, 1)
	if opts.AckWait <= 0 {
		opts.AckWait = DefaultAckWait
	}
	if opts.MaxAckPending <= 0 {
		opts.MaxAckPending = DefaultDeployMaxAckPending
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.maxHeld <= 0 {
		opts.maxHeld = MaxHeldPerApp
	}
	if opts.overflowDelay <= 0 {
		opts.overflowDelay = heldOverflowDelay
	}
	if opts.maxLaneWaiting <= 0 {
		opts.maxLaneWaiting = MaxWaitingPerLane
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

	stream, deploys, previews, err := q.startConsumers(ctx, opts)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting: a shutdown, not a failure
		}
		return err
	}
	it, err := previews.Messages(jetstream.PullMaxMessages(1))
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("consume preview jobs: %w", err)
	}
	opts.Logger.Info("queue: consuming jobs", "apps", len(apps), "workers", opts.Workers)
	opts.idle = newIdleWatch(opts.Idle, opts.IdleDelay)
	// Every replica may hold all PreviewConcurrency previews the shared consumer lets out, so a
	// preview this process receives always finds a slot at once.
	previewSlots := make(chan struct{}, opts.PreviewConcurrency)
	// wg counts the pumps, the deploy workers and the jobs they started.
	var wg sync.WaitGroup
	wg.Go(func() { q.pump(ctx, work, it, previewSlots, h, opts, &wg) })
	d := newDispatcher(q, stream, deploys, h, opts)
	d.start(ctx, work, &wg)
	<-ctx.Done()
	it.Drain()
	wg.Wait()
	return nil
}

// pump takes the preview consumer's messages and starts each at once on a goroutine of its own,
// which waits for a slot and runs it. The pump itself never waits for a job: it is always ready
// for the consumer's next message, so no delivered message sits in the client unattended,
// without heartbeats. The consumer's MaxAckPending bounds how many jobs one pump has started.
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
		wg.Go(func() {
			j, ok := decode(msg, opts)
			if !ok {
				return
			}
			q.runWithSlot(ctx, work, j, slots, h, opts)
		})
	}
}

// errLeaseLost ends a job this process could not keep alive: NATS went unreachable long enough
// that JetStream may have handed the job to another worker.
var errLeaseLost = errors.New("no heartbeat reached NATS for half the ack wait: the job may be another worker's now")

// delivered is one delivery of a job to this process.
type delivered struct {
	msg jetstream.Msg
	job Job
	// seq is the job's sequence on the stream, which orders the jobs of one app.
	seq uint64
	d   Delivery
	log *slog.Logger
	// lane is the job's lane once it asked for a slot there; slot is set while it holds one,
	// and waited once it was handed one after waiting (see lanes.go). Guarded by the
	// dispatcher's mu while the job waits or is ready.
	lane   string
	slot   bool
	waited bool
}

// decode reads a delivered message; a message that is no job is terminated.
func decode(msg jetstream.Msg, opts ConsumeOptions) (*delivered, bool) {
	log := opts.Logger.With("subject", msg.Subject())
	var job Job
	if err := json.Unmarshal(msg.Data(), &job); err != nil {
		log.Error("queue: job cannot be decoded, dropping it", "err", err)
		_ = msg.TermWithReason("undecodable job")
		return nil, false
	}
	j := &delivered{msg: msg, job: job, d: Delivery{Attempt: 1}, log: log.With("job", job.ID, "app", job.App, "sha", job.SHA)}
	if md, err := msg.Metadata(); err == nil {
		j.d.Attempt = int(md.NumDelivered)
		j.seq = md.Sequence.Stream
	}
	j.d.Last = opts.MaxDeliver > 0 && j.d.Attempt >= opts.MaxDeliver
	return j, true
}

// runWithSlot keeps a job alive while it waits for a slot, then runs it.
func (q *Queue) runWithSlot(ctx, work context.Context, j *delivered, slots chan struct{}, h Handler, opts ConsumeOptions) {
	if ctx.Err() != nil {
		// Shutting down before the job started: hand it straight back to the stream.
		_ = j.msg.Nak()
		return
	}
	alive, stopAlive := context.WithCancelCause(work)
	defer stopAlive(nil)
	go q.keepAlive(alive, j.msg, opts.AckWait, stopAlive)
	select {
	case slots <- struct{}{}:
	case <-ctx.Done():
		_ = j.msg.Nak()
		return
	case <-alive.Done():
		j.log.Warn("queue: job given up before it started", "err", context.Cause(alive))
		return
	}
	defer func() { <-slots }()
	q.runAlive(alive, work, stopAlive, j, h, opts)
}

// run keeps a job alive while it runs, then acknowledges, retries or terminates it as the
// handler says. ended is true when JetStream confirmed the job is done (acknowledged or
// terminated): it is no longer stored, or is about to be removed.
func (q *Queue) run(ctx, work context.Context, j *delivered, h Handler, opts ConsumeOptions) (ended bool) {
	if ctx.Err() != nil {
		_ = j.msg.Nak()
		return false
	}
	alive, stopAlive := context.WithCancelCause(work)
	defer stopAlive(nil)
	go q.keepAlive(alive, j.msg, opts.AckWait, stopAlive)
	return q.runAlive(alive, work, stopAlive, j, h, opts)
}

func (q *Queue) runAlive(alive, work context.Context, stopAlive context.CancelCauseFunc, j *delivered, h Handler, opts ConsumeOptions) (ended bool) {
	opts.idle.begin()
	defer opts.idle.end()
	msg, d, log := j.msg, j.d, j.log

	err := h(alive, j.job, d)
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
			return false
		}
		return true
	case work.Err() != nil:
		// Shutdown cut the job short: another worker will run it again.
		log.Info("queue: job interrupted by shutdown, handing it back", "err", err)
		_ = msg.Nak()
	case errors.As(err, &retry) && !d.Last:
		log.Info("queue: job will be retried", "attempt", d.Attempt, "delay", retry.Delay, "err", err)
		_ = msg.NakWithDelay(retry.Delay)
	default:
		log.Warn("queue: job failed for good", "attempt", d.Attempt, "err", err)
		// Term waits for JetStream's answer like DoubleAck, so that the next job of the app,
		// which runs once this one is gone from the stream, finds it gone.
		if terr := q.termSync(context.WithoutCancel(work), msg, truncate(err.Error(), 200)); terr != nil {
			log.Warn("queue: terminate", "err", terr)
			return false
		}
		return true
	}
	return false
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

// termSync terminates msg and waits for JetStream's answer (jetstream.Msg's Term does not wait).
func (q *Queue) termSync(ctx context.Context, msg jetstream.Msg, reason string) error {
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	if _, err := q.nc.RequestWithContext(ctx, msg.Reply(), []byte("+TERM "+reason)); err != nil {
		return fmt.Errorf("terminate job: %w", err)
	}
	return nil
}
