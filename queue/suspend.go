package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// SuspendBucket is the key-value bucket holding which apps are suspended, shared by every
// replica and kept on disk like the jobs and records.
const SuspendBucket = "ferry_suspend"

// MaxSuspendReason bounds the reason given with a suspension, in bytes; a longer one is refused
// by the API and cut here, so that a suspension always fits a small message.
const MaxSuspendReason = 1024

// StateSuspended is a deploy job that was not run because its app was suspended when a worker
// took it. Its commit gets a status saying so, which does not read as a failure.
const StateSuspended State = "suspended"

// TriggerResume is the sync of an app's branch head that resuming the app queues.
const TriggerResume Trigger = "resume"

// Suspension says whether an app is suspended, who changed that last, why and when.
type Suspension struct {
	App       string `json:"app"`
	Suspended bool   `json:"suspended"`
	// By names who suspended or resumed the app: an API token's name or a proxy's user.
	By     string    `json:"by,omitempty"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at,omitzero"`
}

// Suspensions stores each app's suspension in a JetStream key-value bucket. Reads go through
// the stream's leader, so that a worker on any replica sees a suspension as soon as the API
// call that made it has answered.
type Suspensions struct {
	kv  jetstream.KeyValue
	now func() time.Time
}

// NewSuspensions creates or opens the suspension bucket with replicas copies; now is the clock
// of the suspensions' times (time.Now when nil).
func NewSuspensions(ctx context.Context, js jetstream.JetStream, replicas int, now func() time.Time) (*Suspensions, error) {
	if replicas < 1 {
		replicas = 1
	}
	if now == nil {
		now = time.Now
	}
	if _, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      SuspendBucket,
		Description: "ferry: suspended apps",
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		History:     1,
	}); err != nil {
		return nil, fmt.Errorf("create bucket %s: %w", SuspendBucket, err)
	}
	// A follower answering a direct get may not have seen a suspension made a moment ago on
	// another replica: reads go through the leader, even with one replica (it costs nothing).
	s, err := js.Stream(ctx, "KV_"+SuspendBucket)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", SuspendBucket, err)
	}
	if cfg := s.CachedInfo().Config; cfg.AllowDirect {
		cfg.AllowDirect = false
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			return nil, fmt.Errorf("bucket %s: read through the leader: %w", SuspendBucket, err)
		}
	}
	kv, err := js.KeyValue(ctx, SuspendBucket)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", SuspendBucket, err)
	}
	return &Suspensions{kv: kv, now: now}, nil
}

const suspendPrefix = "app."

func suspendKey(app string) string { return suspendPrefix + app }

// ErrInvalidApp is returned for an app name no configured app could have; such a name never
// reaches the bucket's keys.
var ErrInvalidApp = errors.New("invalid app name")

// Get returns app's suspension; an app never suspended is returned as not suspended.
func (s *Suspensions) Get(ctx context.Context, app string) (Suspension, error) {
	sus, _, err := s.get(ctx, app)
	return sus, err
}

// get returns the suspension and its revision (0 when the app has none stored).
func (s *Suspensions) get(ctx context.Context, app string) (Suspension, uint64, error) {
	if !ValidName(app) {
		return Suspension{}, 0, fmt.Errorf("app %q: %w", cutUTF8(app, 64), ErrInvalidApp)
	}
	e, err := s.kv.Get(ctx, suspendKey(app))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Suspension{App: app}, 0, nil
	}
	if err != nil {
		return Suspension{}, 0, fmt.Errorf("read suspension of %s: %w", app, err)
	}
	var sus Suspension
	if err := json.Unmarshal(e.Value(), &sus); err != nil {
		return Suspension{}, 0, fmt.Errorf("decode suspension of %s: %w", app, err)
	}
	sus.App = app
	return sus, e.Revision(), nil
}

// Suspend suspends app on behalf of by, for reason (cut to MaxSuspendReason). It is
// idempotent: an app already suspended keeps its suspension as it was (who, why and since
// when), and changed is false.
func (s *Suspensions) Suspend(ctx context.Context, app, by, reason string) (sus Suspension, changed bool, err error) {
	return s.set(ctx, app, Suspension{App: app, Suspended: true, By: by, Reason: cutUTF8(reason, MaxSuspendReason)})
}

// Resume lifts app's suspension on behalf of by. It is idempotent: an app that is not
// suspended is left as it is, and changed is false.
func (s *Suspensions) Resume(ctx context.Context, app, by string) (sus Suspension, changed bool, err error) {
	return s.set(ctx, app, Suspension{App: app, Suspended: false, By: by})
}

// set moves app to want.Suspended unless it is there already, with a compare-and-set so that
// two replicas changing it at once each see the other's write.
func (s *Suspensions) set(ctx context.Context, app string, want Suspension) (Suspension, bool, error) {
	for range casAttempts {
		cur, rev, err := s.get(ctx, app)
		if err != nil {
			return Suspension{}, false, err
		}
		if cur.Suspended == want.Suspended {
			return cur, false, nil
		}
		want.At = s.now().UTC()
		data, err := json.Marshal(want)
		if err != nil {
			return Suspension{}, false, fmt.Errorf("encode suspension of %s: %w", app, err)
		}
		if rev == 0 {
			_, err = s.kv.Create(ctx, suspendKey(app), data)
		} else {
			_, err = s.kv.Update(ctx, suspendKey(app), data, rev)
		}
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue // another replica changed it first: look again
		}
		if err != nil {
			return Suspension{}, false, fmt.Errorf("store suspension of %s: %w", app, err)
		}
		return want, true, nil
	}
	return Suspension{}, false, fmt.Errorf("store suspension of %s: too many concurrent updates", app)
}

// List returns the stored suspension of every app that has one (suspended or resumed since),
// by app name.
func (s *Suspensions) List(ctx context.Context) (map[string]Suspension, error) {
	out := map[string]Suspension{}
	err := s.watch(ctx, false, func(sus Suspension) { out[sus.App] = sus })
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Watch calls fn with every app's stored suspension, then with each change as any replica makes
// it, until ctx ends; it returns nil then. An entry that cannot be decoded is skipped.
func (s *Suspensions) Watch(ctx context.Context, fn func(Suspension)) error {
	return s.watch(ctx, true, fn)
}

// watch reads the bucket's entries into fn; with follow it goes on with the changes, otherwise
// it returns once the stored ones are read.
func (s *Suspensions) watch(ctx context.Context, follow bool, fn func(Suspension)) error {
	w, err := s.kv.Watch(ctx, suspendPrefix+"*")
	if err != nil {
		return fmt.Errorf("watch suspensions: %w", err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			if follow {
				return nil
			}
			return fmt.Errorf("list suspensions: %w", ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				if follow && ctx.Err() != nil {
					return nil
				}
				return errors.New("watch suspensions: the watcher stopped")
			}
			if e == nil { // every stored entry has been delivered
				if !follow {
					return nil
				}
				continue
			}
			app := strings.TrimPrefix(e.Key(), suspendPrefix)
			if e.Operation() != jetstream.KeyValuePut {
				fn(Suspension{App: app})
				continue
			}
			var sus Suspension
			if json.Unmarshal(e.Value(), &sus) != nil {
				continue
			}
			sus.App = app
			fn(sus)
		}
	}
}
