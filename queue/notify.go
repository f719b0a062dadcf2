package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	// NotifyStreamName is the JetStream stream holding notifications until every target that
	// wants them has taken them.
	NotifyStreamName = "FERRY_NOTIFY"
	// notifySubjectPrefix is followed by <event>.<app>: a target's consumer filters on the events
	// it wants.
	notifySubjectPrefix = "ferry.notify"
	// notifyConsumerPrefix names each target's durable consumer: notify-<target>.
	notifyConsumerPrefix = "notify-"
	// NotifyMaxAge is how long a notification waits for a target that is down: a target back
	// within a day misses nothing, one down for longer loses the oldest first.
	NotifyMaxAge = 24 * time.Hour
	// NotifyMaxBytes bounds the stream: past it the oldest notifications are dropped, so that a
	// target down for long cannot fill the disk. At NotifyMaxEventBytes each, that is at least
	// 4,096 notifications.
	NotifyMaxBytes = 64 << 20
	// NotifyMaxEventBytes bounds one stored notification; the event's message is cut to
	// MaxEventMessage before it is published, so that a real event never reaches it.
	NotifyMaxEventBytes = 16 << 10
	// MaxEventMessage bounds an event's message (a sync's summary or the apiserver's words), in
	// bytes.
	MaxEventMessage = 2000
	// NotifyDedupWindow is how long an event's id is remembered: a job delivered again after its
	// end was published (the process died before the ack) publishes nothing new.
	NotifyDedupWindow = time.Hour
	// NotifyAckWait is how long a target's notification may stay unanswered before JetStream
	// hands it to another replica: longer than one send (its request timeout plus the wait for
	// the target's rate limit), short enough that a dead replica's notification moves on soon.
	NotifyAckWait = 30 * time.Second
)

// EventKind is what happened to a deploy, as notification targets subscribe to it.
type EventKind string

// The events a deploy sends.
const (
	// EventFailed: a deploy failed.
	EventFailed EventKind = "failed"
	// EventSucceeded: a deploy applied a commit the app did not run yet, and it is healthy.
	EventSucceeded EventKind = "succeeded"
	// EventRecovered: a deploy succeeded after the app's previous deploy failed.
	EventRecovered EventKind = "recovered"
	// EventSuperseded: a commit was not applied because a newer one was (or the app already
	// runs a commit containing it).
	EventSuperseded EventKind = "superseded"
)

// EventKinds lists every event kind, in the order documents name them.
func EventKinds() []EventKind {
	return []EventKind{EventFailed, EventRecovered, EventSucceeded, EventSuperseded}
}

// Event is how a deploy ended, as notification targets are told of it. It carries no secret:
// it is stored in the stream and sent, in some form, to every target that wants it.
type Event struct {
	// SyncID is the sync that ended; with Kind it identifies the event (ID).
	SyncID string    `json:"syncId"`
	Kind   EventKind `json:"kind"`
	App    string    `json:"app"`
	Repo   string    `json:"repo"`
	// RepoURL is the repository's clone URL (config refuses credentials in it) and Provider its
	// forge (github, gitlab, gitea): together they link the commit.
	RepoURL  string `json:"repoUrl,omitempty"`
	Provider string `json:"provider,omitempty"`
	Ref      string `json:"ref,omitempty"`
	SHA      string `json:"sha"`
	// SyncKind is deploy (previews send no notifications); Trigger what queued the sync.
	SyncKind Kind    `json:"syncKind"`
	Trigger  Trigger `json:"trigger,omitempty"`
	// State is the sync's end: succeeded, failed or skipped.
	State State `json:"state"`
	// Message is the sync's summary: what it applied, why it failed or was not applied.
	Message string `json:"message,omitempty"`
	// Stage and Object say where a failure happened.
	Stage  string `json:"stage,omitempty"`
	Object string `json:"object,omitempty"`
	// URL is the sync's page.
	URL string    `json:"url"`
	At  time.Time `json:"at"`
}

// ID identifies the event wherever it goes: the stream's de-duplication, the CloudEvents id and
// the webhook-id a receiver de-duplicates by.
func (e Event) ID() string { return e.SyncID + "." + string(e.Kind) }

// NotifySubject is where events of one kind for one app are published.
func NotifySubject(kind EventKind, app string) string {
	return notifySubjectPrefix + "." + string(kind) + "." + app
}

// NotifyOptions configures the notification stream and its consumers.
type NotifyOptions struct {
	// Replicas is the stream's and consumers' replica count, as the jobs stream's.
	Replicas int
	// AckWait is how long an event handed to a replica may stay unanswered before another
	// replica gets it (NotifyAckWait when zero). It also bounds how long the event a replica
	// was sending when it died, or when NATS restarted, waits.
	AckWait time.Duration
	Logger  *slog.Logger
}

// Notifications publishes events to the FERRY_NOTIFY stream and runs the targets' consumers.
type Notifications struct {
	js   jetstream.JetStream
	opts NotifyOptions
	log  *slog.Logger
}

// NewNotifications creates or updates the notification stream. It uses interest retention: an
// event stays until every target consumer whose filter takes it has acknowledged it (or
// NotifyMaxAge, NotifyMaxBytes drop it), and an event no target wants is not kept at all.
func NewNotifications(ctx context.Context, js jetstream.JetStream, opts NotifyOptions) (*Notifications, error) {
	opts.Replicas = max(opts.Replicas, 1)
	if opts.AckWait <= 0 {
		opts.AckWait = NotifyAckWait
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        NotifyStreamName,
		Description: "ferry notifications, one subject per event and app, one consumer per target",
		Subjects:    []string{notifySubjectPrefix + ".>"},
		Retention:   jetstream.InterestPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    opts.Replicas,
		Duplicates:  NotifyDedupWindow,
		MaxAge:      NotifyMaxAge,
		MaxBytes:    NotifyMaxBytes,
		MaxMsgSize:  NotifyMaxEventBytes,
		Discard:     jetstream.DiscardOld,
	})
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", NotifyStreamName, err)
	}
	return &Notifications{js: js, opts: opts, log: opts.Logger}, nil
}

// Publish stores one event, once: an event published again within NotifyDedupWindow (same
// sync, same kind) is acknowledged as a duplicate and not stored again.
func (n *Notifications) Publish(ctx context.Context, ev Event) error {
	if !ValidName(ev.App) || ev.SyncID == "" || !slices.Contains(EventKinds(), ev.Kind) {
		return fmt.Errorf("publish event %q of app %q: not a valid event", ev.Kind, ev.App)
	}
	ev.Message = cut(ev.Message, MaxEventMessage)
	data, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("publish %s event of %s: %w", ev.Kind, ev.App, err)
	}
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	_, err = n.js.PublishMsg(ctx, &nats.Msg{Subject: NotifySubject(ev.Kind, ev.App), Data: data},
		jetstream.WithMsgID(ev.ID()), jetstream.WithExpectStream(NotifyStreamName))
	if err != nil {
		return fmt.Errorf("publish %s event of %s: %w", ev.Kind, ev.App, err)
	}
	return nil
}

// cut shortens s to at most n bytes, on a rune boundary, marking the cut.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	i := n - len(mark)
	for i > 0 && !utf8Start(s[i]) {
		i--
	}
	return s[:i] + mark
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }

// NotifyTarget is a target's subscription: its name (a DNS label) and the event kinds its
// consumer takes.
type NotifyTarget struct {
	Name  string
	Kinds []EventKind
}

// PrepareTargets makes each target's durable consumer, shared by every replica, and deletes the
// consumers of targets no longer configured (interest retention would keep their events until
// NotifyMaxAge). It runs before any sync may publish: a new target's consumer takes the events
// published from then on, not the stream's past.
func (n *Notifications) PrepareTargets(ctx context.Context, targets []NotifyTarget) error {
	stream, err := n.js.Stream(ctx, NotifyStreamName)
	if err != nil {
		return fmt.Errorf("stream %s: %w", NotifyStreamName, err)
	}
	want := map[string]bool{}
	for _, t := range targets {
		want[notifyConsumerPrefix+t.Name] = true
	}
	names := stream.ConsumerNames(ctx)
	var stale []string
	for name := range names.Name() {
		if strings.HasPrefix(name, notifyConsumerPrefix) && !want[name] {
			stale = append(stale, name)
		}
	}
	if err := names.Err(); err != nil {
		return fmt.Errorf("list consumers of %s: %w", NotifyStreamName, err)
	}
	for _, name := range stale {
		if err := stream.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("delete consumer %s: %w", name, err)
		}
		n.log.Info("notification target no longer configured: its consumer is deleted", "consumer", name)
	}
	for _, t := range targets {
		if _, err := stream.CreateOrUpdateConsumer(ctx, n.consumerConfig(t)); err != nil {
			return fmt.Errorf("create consumer of notification target %s: %w", t.Name, err)
		}
	}
	return nil
}

func (n *Notifications) consumerConfig(t NotifyTarget) jetstream.ConsumerConfig {
	var filters []string
	for _, k := range t.Kinds {
		filters = append(filters, notifySubjectPrefix+"."+string(k)+".*")
	}
	return jetstream.ConsumerConfig{
		Durable:        notifyConsumerPrefix + t.Name,
		Description:    "notifications to target " + t.Name,
		FilterSubjects: filters,
		DeliverPolicy:  jetstream.DeliverNewPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        n.opts.AckWait,
		// Retried until the stream drops the event (NotifyMaxAge): the handler decides.
		MaxDeliver: -1,
		// One event in flight per target, across replicas: a target gets its events in order,
		// and one that is down holds back only its own.
		MaxAckPending: 1,
		Replicas:      n.opts.Replicas,
	}
}

// EventHandler sends one event to a target. Returning nil acknowledges it; an error made with
// Retry asks for another delivery after its delay; any other error drops the event for this
// target. ctx ends at shutdown: a handler cut short by it hands the event back.
type EventHandler func(ctx context.Context, ev Event, d Delivery) error

const (
	// notifyNextPause is the pause after the consumer could not fetch (NATS unreachable).
	notifyNextPause = time.Second
	// notifyFetchWait bounds one pull for a target's next event; an idle target pulls again.
	// Each pull is new, so a replica never relies on a request the server may have dropped.
	notifyFetchWait = 5 * time.Second
)

// ConsumeTarget runs target's consumer until ctx is cancelled, one event at a time. The
// consumer must exist (PrepareTargets). The event being handled when ctx ends is finished
// first (the handler bounds itself), so a shutdown does not send it twice.
func (n *Notifications) ConsumeTarget(ctx context.Context, target string, h EventHandler) error {
	log := n.log.With("target", target)
	cons, err := n.js.Consumer(ctx, NotifyStreamName, notifyConsumerPrefix+target)
	switch {
	case ctx.Err() != nil:
		return nil
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		log.Warn("notifications: the target's consumer was deleted; this replica does not send to it", "err", err)
		return nil
	case err != nil:
		return fmt.Errorf("consumer of notification target %s: %w", target, err)
	}
	for ctx.Err() == nil {
		fctx, cancel := context.WithTimeout(ctx, notifyFetchWait)
		msg, err := cons.Next(jetstream.FetchContext(fctx))
		cancel()
		switch {
		case ctx.Err() != nil:
			if msg != nil {
				_ = msg.Nak()
			}
			return nil
		case err == nil:
			n.handle(ctx, log, msg, h)
		case n.deleted(ctx, target, err):
			// A replica started with a config that no longer names the target (a rolling update).
			log.Warn("notifications: the target's consumer was deleted; this replica stops sending to it", "err", err)
			return nil
		case errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded):
			// Nothing for this target yet.
		default:
			log.Warn("notifications: next event", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(notifyNextPause):
			}
		}
	}
	return nil
}

// deleted tells whether a failed or empty pull happened because target's consumer is gone: the
// pull's own error may say so, or only time out.
func (n *Notifications) deleted(ctx context.Context, target string, err error) bool {
	if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
		return true
	}
	_, cerr := n.js.Consumer(ctx, NotifyStreamName, notifyConsumerPrefix+target)
	return errors.Is(cerr, jetstream.ErrConsumerNotFound)
}

// handle gives one message to the handler and answers JetStream as it says.
func (n *Notifications) handle(ctx context.Context, log *slog.Logger, msg jetstream.Msg, h EventHandler) {
	var ev Event
	if err := json.Unmarshal(msg.Data(), &ev); err != nil {
		log.Error("notifications: event cannot be decoded, dropping it", "err", err)
		_ = msg.TermWithReason("undecodable event")
		return
	}
	d := Delivery{Attempt: 1}
	if md, err := msg.Metadata(); err == nil {
		d.Attempt = int(md.NumDelivered)
	}
	err := h(ctx, ev, d)
	answer := context.WithoutCancel(ctx)
	var retry *RetryError
	switch {
	case err == nil:
		if aerr := msg.DoubleAck(answer); aerr != nil {
			log.Warn("notifications: ack", "event", ev.ID(), "err", aerr)
		}
	case ctx.Err() != nil:
		_ = msg.Nak()
	case errors.As(err, &retry):
		_ = msg.NakWithDelay(retry.Delay)
	default:
		_ = msg.TermWithReason(truncate(err.Error(), 200))
	}
}
