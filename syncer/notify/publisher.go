package notify

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/ferrygitops/ferry/queue"
)

const (
	// PublishBuffer bounds the events waiting to be stored; past it an event is dropped (logged
	// and counted) rather than making a sync wait.
	PublishBuffer = 1024
	// publishAttempts bounds the tries at storing one event, publishPause apart.
	publishAttempts = 3
	publishPause    = time.Second
	// DrainTimeout bounds how long events still buffered at shutdown may take to be stored.
	DrainTimeout = 10 * time.Second
)

// ErrBacklog is Notify's answer when PublishBuffer events already wait to be stored.
var ErrBacklog = errors.New("notification buffer full: event dropped")

// ErrStopped is Notify's answer once the publisher has stopped.
var ErrStopped = errors.New("notification publisher stopped: event dropped")

// Publishing is where the publisher stores events (*queue.Notifications).
type Publishing interface {
	Publish(ctx context.Context, ev queue.Event) error
}

var _ Publishing = (*queue.Notifications)(nil)

// Publisher takes the syncer's events and stores them in the stream on a goroutine of its own:
// a sync never waits for JetStream, let alone for a target.
type Publisher struct {
	stream  Publishing
	events  chan queue.Event
	stopped atomic.Bool
	log     *slog.Logger
	metrics *Metrics
}

// NewPublisher returns a publisher onto s; Run stores what Notify is given.
func NewPublisher(s Publishing, log *slog.Logger, m *Metrics) *Publisher {
	if log == nil {
		log = slog.Default()
	}
	return &Publisher{stream: s, events: make(chan queue.Event, PublishBuffer), log: log, metrics: m}
}

// Notify queues ev to be stored and returns at once.
func (p *Publisher) Notify(_ context.Context, ev queue.Event) error {
	if p.stopped.Load() {
		p.metrics.publishError()
		return ErrStopped
	}
	select {
	case p.events <- ev:
		return nil
	default:
		p.metrics.publishError()
		return ErrBacklog
	}
}

// Run stores events until ctx is cancelled, then stores those still buffered (within
// DrainTimeout) and returns. Cancel it after the workers stopped, so that it has their last.
func (p *Publisher) Run(ctx context.Context) {
	for {
		select {
		case ev := <-p.events:
			// An event taken is stored even if shutdown begins meanwhile (publish is bounded).
			p.publish(context.WithoutCancel(ctx), ev)
		case <-ctx.Done():
			p.stopped.Store(true)
			drain, cancel := context.WithTimeout(context.WithoutCancel(ctx), DrainTimeout)
			defer cancel()
			for {
				select {
				case ev := <-p.events:
					p.publish(drain, ev)
				default:
					return
				}
			}
		}
	}
}

// publish stores one event, trying publishAttempts times.
func (p *Publisher) publish(ctx context.Context, ev queue.Event) {
	var err error
	for i := range publishAttempts {
		if i > 0 && sleep(ctx, publishPause) != nil {
			break
		}
		if err = p.stream.Publish(ctx, ev); err == nil {
			return
		}
	}
	p.metrics.publishError()
	p.log.Warn("notification event not stored; it is lost", "event", ev.ID(), "app", ev.App, "err", err)
}
