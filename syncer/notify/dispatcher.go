package notify

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/ferrygitops/ferry/queue"
)

// Retry bounds: a target that fails is tried again after DefaultRetryMin, doubling up to
// DefaultRetryMax, for as long as the stream keeps the event (queue.NotifyMaxAge): a target down
// for an hour is tried about 20 times and gets every event once it is back.
const (
	DefaultRetryMin = 2 * time.Second
	DefaultRetryMax = 5 * time.Minute
)

// Rate limits per target type, per replica. Slack takes about one message per second per
// incoming webhook; Teams Workflows throttle bursts too. A generic webhook is a server of the
// user's own.
const (
	SlackRate   = rate.Limit(1)
	TeamsRate   = rate.Limit(1)
	WebhookRate = rate.Limit(10)
)

// Stream is the queue side the dispatcher consumes: one durable consumer per target
// (*queue.Notifications).
type Stream interface {
	PrepareTargets(ctx context.Context, targets []queue.NotifyTarget) error
	ConsumeTarget(ctx context.Context, target string, h queue.EventHandler) error
}

var _ Stream = (*queue.Notifications)(nil)

// Options tunes the dispatcher.
type Options struct {
	// Source is the CloudEvents source of generic webhook events: ferry's external URL.
	Source    string
	UserAgent string
	// Client sends the requests; nil is one bounded by RequestTimeout that follows no redirect.
	Client *http.Client
	// RetryMin and RetryMax bound the backoff between attempts at one event.
	RetryMin, RetryMax time.Duration
	// Rates are the requests per second allowed per target type (burst 1).
	Rates map[Type]rate.Limit
	// Now is the clock of signatures, rate limits and Retry-After dates; Sleep waits for a rate
	// limit (it returns ctx's error when ctx ends first).
	Now     func() time.Time
	Sleep   func(ctx context.Context, d time.Duration) error
	Logger  *slog.Logger
	Metrics *Metrics
}

// DefaultOptions are the settings ferry serves with.
func DefaultOptions() Options {
	return Options{Source: "ferry", UserAgent: "ferry", RetryMin: DefaultRetryMin, RetryMax: DefaultRetryMax,
		Rates: map[Type]rate.Limit{Slack: SlackRate, Teams: TeamsRate, Webhook: WebhookRate},
		Now:   time.Now, Sleep: sleep, Logger: slog.Default()}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Dispatcher sends the stream's events to the targets. Each target has its own consumer, shared
// by every replica, with one event in flight: a target gets its events in order, once each
// (a replica dying mid-send may make it twice; the event id lets receivers tell), and a target
// that is down holds back only its own.
type Dispatcher struct {
	stream  Stream
	targets []*target
	opts    Options
}

// target is a Target with its format and its rate limit.
type target struct {
	Target
	format  format
	limiter *rate.Limiter
}

// NewDispatcher prepares every target's consumer (and drops those of removed targets). It must
// return before syncs start publishing, so that a new target misses none of their events.
func NewDispatcher(ctx context.Context, s Stream, targets []Target, opts Options) (*Dispatcher, error) {
	def := DefaultOptions()
	if opts.Client == nil {
		opts.Client = newClient()
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = def.RetryMin
	}
	if opts.RetryMax < opts.RetryMin {
		opts.RetryMax = max(def.RetryMax, opts.RetryMin)
	}
	if opts.Rates == nil {
		opts.Rates = def.Rates
	}
	if opts.Now == nil {
		opts.Now = def.Now
	}
	if opts.Sleep == nil {
		opts.Sleep = def.Sleep
	}
	if opts.Logger == nil {
		opts.Logger = def.Logger
	}
	if opts.UserAgent == "" {
		opts.UserAgent = def.UserAgent
	}
	d := &Dispatcher{stream: s, opts: opts}
	var subs []queue.NotifyTarget
	for _, t := range targets {
		lim := rate.Inf
		if r, ok := opts.Rates[t.Type]; ok {
			lim = r
		}
		d.targets = append(d.targets, &target{Target: t, format: newFormat(t, opts.Source), limiter: rate.NewLimiter(lim, 1)})
		subs = append(subs, queue.NotifyTarget{Name: t.Name, Kinds: t.Kinds()})
	}
	if err := s.PrepareTargets(ctx, subs); err != nil {
		return nil, err
	}
	return d, nil
}

// Run sends events until ctx is cancelled; each target's event in flight then finishes first.
func (d *Dispatcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, len(d.targets))
	for i, t := range d.targets {
		wg.Go(func() { errs[i] = d.stream.ConsumeTarget(ctx, t.Name, d.handler(t)) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// handler sends one event to t: events t does not want are acknowledged unsent; a refusal that
// cannot pass drops the event for t; anything else is retried after Retry-After or the backoff.
func (d *Dispatcher) handler(t *target) queue.EventHandler {
	log := d.opts.Logger.With("target", t.Name, "type", t.Type)
	return func(ctx context.Context, ev queue.Event, del queue.Delivery) error {
		if !t.Wants(ev) {
			return nil
		}
		log := log.With("event", ev.ID(), "app", ev.App, "kind", ev.Kind, "attempt", del.Attempt)
		if err := d.wait(ctx, t); err != nil {
			return err
		}
		err := d.send(context.WithoutCancel(ctx), t, ev)
		var se *SendError
		switch {
		case err == nil:
			d.opts.Metrics.count(t.Name, resultSent)
			log.Info("notification sent")
			return nil
		case errors.As(err, &se) && se.Permanent:
			d.opts.Metrics.count(t.Name, resultRejected)
			log.Warn("notification refused by its target; dropped", "status", se.Status, "err", err)
			return err
		}
		delay := d.backoff(del.Attempt)
		if se != nil && se.RetryAfter > 0 {
			delay = se.RetryAfter
		}
		d.opts.Metrics.count(t.Name, resultRetried)
		log.Warn("notification not delivered; retrying", "delay", delay, "err", err)
		return queue.Retry(err, delay)
	}
}

// wait takes one request from t's rate limit, sleeping until it allows one.
func (d *Dispatcher) wait(ctx context.Context, t *target) error {
	now := d.opts.Now()
	r := t.limiter.ReserveN(now, 1)
	delay := r.DelayFrom(now)
	if delay <= 0 {
		return nil
	}
	if err := d.opts.Sleep(ctx, delay); err != nil {
		r.CancelAt(d.opts.Now())
		return err
	}
	return nil
}

// backoff is the pause before attempt+1 at one event: RetryMin doubling up to RetryMax.
func (d *Dispatcher) backoff(attempt int) time.Duration {
	return Backoff(attempt, d.opts.RetryMin, d.opts.RetryMax)
}

// Backoff is the pause after the attempt-th failed delivery: lo doubling up to hi.
func Backoff(attempt int, lo, hi time.Duration) time.Duration {
	delay := lo
	for i := 1; i < attempt && delay < hi; i++ {
		delay *= 2
	}
	return min(delay, hi)
}
