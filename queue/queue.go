package queue

import (
	"context"
	"fmt"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	// StreamName is the JetStream stream holding every queued job.
	StreamName = "FERRY_JOBS"
	// subjectPrefix is followed by <kind>.<app>; one subject per app and kind orders an app's
	// jobs: the oldest stored on an app's deploy subject is the one that may run (see Consume).
	subjectPrefix = "ferry.jobs"
	// DedupWindow is how long a delivery id is remembered: a forge redelivering a hook within
	// it does not make a second job.
	DedupWindow = 24 * time.Hour
	// MaxJobAge bounds how long an unconsumed job is kept; far longer than any outage ferry
	// should ride out, short enough that a forgotten app's jobs do not pile up forever.
	MaxJobAge = 7 * 24 * time.Hour
	// publishTimeout bounds how long a hook waits for JetStream's ack before it gets 503.
	publishTimeout = 5 * time.Second
)

// ValidName reports whether name can name an app on the queue: a DNS label (lowercase letters,
// digits and inner '-', at most 63), so that a name is at once a NATS subject token, a durable
// consumer name, a label value and part of an object name. It runs on every enqueued job, hence
// no regular expression.
func ValidName(name string) bool {
	if name == "" || len(name) > 63 || name[0] == '-' || name[len(name)-1] == '-' {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// Options configures the stream.
type Options struct {
	// Replicas is the stream's and record bucket's replica count: 1 embedded, 3 on a cluster.
	Replicas int
}

// Queue publishes jobs to the FERRY_JOBS stream and owns its consumers.
type Queue struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	opts Options
}

// New creates or updates the stream and returns a queue on it.
func New(ctx context.Context, nc *nats.Conn, opts Options) (*Queue, error) {
	if opts.Replicas < 1 {
		opts.Replicas = 1
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        StreamName,
		Description: "ferry sync jobs, one subject per kind and app",
		Subjects:    []string{subjectPrefix + ".>"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    opts.Replicas,
		Duplicates:  DedupWindow,
		MaxAge:      MaxJobAge,
		Discard:     jetstream.DiscardOld,
	})
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", StreamName, err)
	}
	return &Queue{nc: nc, js: js, opts: opts}, nil
}

// JetStream exposes the JetStream context for the record store on the same connection.
func (q *Queue) JetStream() jetstream.JetStream { return q.js }

// Subject is where jobs of one kind for one app are published.
func Subject(kind Kind, app string) string { return subjectPrefix + "." + string(kind) + "." + app }

// Enqueue stores jobs durably. It returns only after JetStream acknowledged every one of them;
// a job whose delivery was stored before is acknowledged as a duplicate and not stored again.
// An error means some jobs may not be stored: the caller must not promise anything (503).
func (q *Queue) Enqueue(ctx context.Context, jobs []Job) (stored []Job, err error) {
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	futures := make([]jetstream.PubAckFuture, len(jobs))
	for i, j := range jobs {
		if err := j.Validate(); err != nil {
			return nil, fmt.Errorf("enqueue %s: %w", j.App, err)
		}
		if !ValidName(j.App) {
			return nil, fmt.Errorf("enqueue: app name %q is not a valid queue name", j.App)
		}
		// The v2 encoder: jobs are encoded on the webhook's hot path. Consumers read them with
		// either; the fields encode the same.
		data, err := jsonv2.Marshal(j)
		if err != nil {
			return nil, fmt.Errorf("enqueue %s: %w", j.App, err)
		}
		f, err := q.js.PublishMsgAsync(&nats.Msg{Subject: Subject(j.Kind, j.App), Data: data},
			jetstream.WithMsgID(j.MsgID()), jetstream.WithExpectStream(StreamName))
		if err != nil {
			return nil, fmt.Errorf("enqueue %s: %w", j.App, err)
		}
		futures[i] = f
	}
	// Without duplicates, which is nearly always, stored is jobs itself; the first duplicate
	// makes it a copy of the jobs before it, and later ones are added as they are stored.
	stored, copied := jobs, false
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			switch {
			case ack.Duplicate && !copied:
				stored, copied = append([]Job(nil), jobs[:i]...), true
			case !ack.Duplicate && copied:
				stored = append(stored, jobs[i])
			}
		case err := <-f.Err():
			return nil, fmt.Errorf("enqueue %s: %w", jobs[i].App, err)
		case <-ctx.Done():
			return nil, fmt.Errorf("enqueue %s: no ack from jetstream: %w", jobs[i].App, ctx.Err())
		}
	}
	return stored, nil
}

// Ping checks that JetStream answers, for readiness.
func (q *Queue) Ping(ctx context.Context) error {
	if q.nc.Status() != nats.CONNECTED {
		return fmt.Errorf("nats is %s", q.nc.Status())
	}
	if _, err := q.js.Stream(ctx, StreamName); err != nil {
		return fmt.Errorf("jetstream stream %s: %w", StreamName, err)
	}
	return nil
}

// Pending reports how many jobs are stored and not yet done, for metrics and the API.
func (q *Queue) Pending(ctx context.Context) (uint64, error) {
	s, err := q.js.Stream(ctx, StreamName)
	if err != nil {
		return 0, fmt.Errorf("stream info: %w", err)
	}
	return s.CachedInfo().State.Msgs, nil
}
