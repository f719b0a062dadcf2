package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

const (
	// RecordBucket is the JetStream key-value bucket holding sync records and per-app history.
	RecordBucket = "ferry_syncs"
	// HistoryLength is how many syncs per app are kept; older records are deleted.
	HistoryLength = 50
	// casAttempts bounds compare-and-set retries when replicas update an app's history at once.
	casAttempts = 20
)

// State is where a sync stands.
type State string

const (
	StateQueued    State = "queued"
	StateRunning   State = "running"
	StateSucceeded State = "succeeded"
	StateFailed    State = "failed"
	// StateSkipped is a job that was not run because a newer commit of the app was synced.
	StateSkipped State = "skipped"
)

// Terminal reports whether a sync in this state is over.
func (s State) Terminal() bool {
	return s == StateSucceeded || s == StateFailed || s == StateSkipped || s == StateSuspended
}

// ObjectRecord is one object a sync applied, pruned or found unchanged.
type ObjectRecord struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	Action    string `json:"action"`
}

// Record is the stored account of one sync, shown by the API and the sync page.
type Record struct {
	ID         string  `json:"id"`
	App        string  `json:"app"`
	Repo       string  `json:"repo"`
	Kind       Kind    `json:"kind"`
	Trigger    Trigger `json:"trigger"`
	Ref        string  `json:"ref,omitempty"`
	SHA        string  `json:"sha"`
	PR         int     `json:"pr,omitempty"`
	DeliveryID string  `json:"deliveryId,omitempty"`
	// By names who asked for the sync (Job.By), for manual syncs and resumes.
	By       string `json:"by,omitempty"`
	State    State  `json:"state"`
	Message  string `json:"message,omitempty"`
	Attempts int    `json:"attempts,omitempty"`
	// Failures counts the transient failures so far; the job fails for good past a bound.
	Failures int `json:"failures,omitempty"`
	// Interrupted counts the deliveries that ended without an outcome: the process running the
	// job died, was killed or ran out of memory. The job fails for good past a bound.
	Interrupted int        `json:"interrupted,omitempty"`
	EnqueuedAt  time.Time  `json:"enqueuedAt"`
	StartedAt   *time.Time `json:"startedAt,omitempty"`
	FinishedAt  *time.Time `json:"finishedAt,omitempty"`
	// Chart is the remote chart the app rendered, as "reference@sha256:digest".
	Chart string `json:"chart,omitempty"`
	// Phases holds how long each step took (fetch, render, apply, prune, health), in ms.
	Phases  map[string]int64 `json:"phases,omitempty"`
	Counts  map[string]int   `json:"counts,omitempty"`
	Objects []ObjectRecord   `json:"objects,omitempty"`
	// Error is what failed, for a user to act on: stage, object, file and the apiserver's words.
	Error *RecordError `json:"error,omitempty"`
	// Diff is a preview's rendered difference against the cluster, cut to fit MaxRecordBytes.
	Diff string `json:"diff,omitempty"`
	// DiffCut is true when Diff was cut; the whole diff is then read with Records.FullDiff.
	DiffCut bool `json:"diffCut,omitempty"`
	// ObjectsCut counts the objects left out of Objects to fit MaxRecordBytes (Counts has all).
	ObjectsCut int `json:"objectsCut,omitempty"`
	// Evicted is true for the short account of a sync whose record fell off its app's history:
	// what it did and how it ended, without its objects and diff.
	Evicted bool `json:"evicted,omitempty"`
	// Worker names the process that ran the sync.
	Worker string `json:"worker,omitempty"`
	// Status is the terminal commit status state posted for the sync, so that it can be posted
	// again when an earlier pending status lands late.
	Status string `json:"status,omitempty"`
}

// SyncSummary is a sync as the all-syncs event stream tells of it: where it stands, without its
// objects and diff (the record has those). The server sends it and ferry's client reads it.
type SyncSummary struct {
	ID         string         `json:"id"`
	App        string         `json:"app"`
	Kind       Kind           `json:"kind"`
	Trigger    Trigger        `json:"trigger"`
	SHA        string         `json:"sha"`
	PR         int            `json:"pr,omitempty"`
	State      State          `json:"state"`
	Message    string         `json:"message,omitempty"`
	Counts     map[string]int `json:"counts,omitempty"`
	EnqueuedAt time.Time      `json:"enqueuedAt"`
	StartedAt  *time.Time     `json:"startedAt,omitempty"`
	FinishedAt *time.Time     `json:"finishedAt,omitempty"`
}

// Summary is r as the all-syncs event stream sends it.
func (r Record) Summary() SyncSummary {
	return SyncSummary{ID: r.ID, App: r.App, Kind: r.Kind, Trigger: r.Trigger, SHA: r.SHA, PR: r.PR, State: r.State,
		Message: r.Message, Counts: r.Counts, EnqueuedAt: r.EnqueuedAt, StartedAt: r.StartedAt, FinishedAt: r.FinishedAt}
}

// RecordError is the failure of a sync in terms a user can act on.
type RecordError struct {
	Stage   string `json:"stage,omitempty"`
	Object  string `json:"object,omitempty"`
	File    string `json:"file,omitempty"`
	Message string `json:"message"`
}

// ErrNotFound is returned for an unknown sync id or app.
var ErrNotFound = errors.New("not found")

// Records stores sync records in a JetStream key-value bucket, shared by every replica.
type Records struct {
	kv jetstream.KeyValue
	// diffs keeps the whole diff of a preview whose record had to cut it.
	diffs jetstream.ObjectStore
	// evicted keeps a short account of records that fell off their app's history.
	evicted jetstream.KeyValue
}

// NewRecords creates or opens the record bucket.
func NewRecords(ctx context.Context, js jetstream.JetStream, replicas int) (*Records, error) {
	if replicas < 1 {
		replicas = 1
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      RecordBucket,
		Description: "ferry sync records and per-app history",
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		History:     1,
	})
	if err != nil {
		return nil, fmt.Errorf("create bucket %s: %w", RecordBucket, err)
	}
	if replicas > 1 {
		// Direct gets may be answered by a follower that has not yet seen the last write; the
		// newest-commit-wins rule and the dependency gate need to read what was acknowledged,
		// so reads go through the stream leader.
		if kv, err = leaderReads(ctx, js); err != nil {
			return nil, err
		}
	}
	r := &Records{kv: kv}
	if err := r.openKeep(ctx, js, replicas); err != nil {
		return nil, err
	}
	return r, nil
}

// leaderReads turns direct gets off on the record bucket's stream and opens the bucket again, so
// that the client reads through the leader.
func leaderReads(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	stream := "KV_" + RecordBucket
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", RecordBucket, err)
	}
	cfg := s.CachedInfo().Config
	if cfg.AllowDirect {
		cfg.AllowDirect = false
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			return nil, fmt.Errorf("bucket %s: read through the leader: %w", RecordBucket, err)
		}
	}
	kv, err := js.KeyValue(ctx, RecordBucket)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", RecordBucket, err)
	}
	return kv, nil
}

func syncKey(id string) string     { return "sync." + id }
func historyKey(app string) string { return "app." + app + ".history" }

// Put stores r, replacing any earlier version of the same sync. A new sync id is added to its
// app's history, and records falling off the history are deleted.
func (s *Records) Put(ctx context.Context, r Record) error {
	data, err := s.encode(ctx, r)
	if err != nil {
		return err
	}
	if _, err := s.kv.Put(ctx, syncKey(r.ID), data); err != nil {
		return fmt.Errorf("store sync record %s: %w", r.ID, err)
	}
	return s.remember(ctx, r.App, r.ID)
}

// ErrExists is returned by Create for a sync that already has a record.
var ErrExists = errors.New("record exists")

// Create stores r only if its sync has no record yet, so that a late "queued" notice never
// overwrites what a worker already wrote.
func (s *Records) Create(ctx context.Context, r Record) error {
	data, err := s.encode(ctx, r)
	if err != nil {
		return err
	}
	if _, err := s.kv.Create(ctx, syncKey(r.ID), data); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("sync %s: %w", r.ID, ErrExists)
		}
		return fmt.Errorf("store sync record %s: %w", r.ID, err)
	}
	return s.remember(ctx, r.App, r.ID)
}

func (s *Records) remember(ctx context.Context, app, id string) error {
	for range casAttempts {
		ids, rev, err := s.history(ctx, app)
		if err != nil {
			return err
		}
		if slices.Contains(ids, id) {
			return nil
		}
		ids = append([]string{id}, ids...)
		var dropped []string
		if len(ids) > HistoryLength {
			ids, dropped = ids[:HistoryLength], ids[HistoryLength:]
		}
		data, _ := json.Marshal(ids)
		if rev == 0 {
			_, err = s.kv.Create(ctx, historyKey(app), data)
		} else {
			_, err = s.kv.Update(ctx, historyKey(app), data, rev)
		}
		// Another replica changed the history first (Create: the key exists; Update: its
		// revision moved on): read it again.
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return fmt.Errorf("store history of %s: %w", app, err)
		}
		for _, d := range dropped {
			s.evict(ctx, d)
		}
		return nil
	}
	return fmt.Errorf("store history of %s: too many concurrent updates", app)
}

func (s *Records) history(ctx context.Context, app string) ([]string, uint64, error) {
	e, err := s.kv.Get(ctx, historyKey(app))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read history of %s: %w", app, err)
	}
	var ids []string
	if err := json.Unmarshal(e.Value(), &ids); err != nil {
		return nil, 0, fmt.Errorf("decode history of %s: %w", app, err)
	}
	return ids, e.Revision(), nil
}

// Get returns one sync record.
func (s *Records) Get(ctx context.Context, id string) (Record, error) {
	var r Record
	if !validID(id) {
		return r, fmt.Errorf("sync %q: %w", id, ErrNotFound)
	}
	e, err := s.kv.Get(ctx, syncKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return s.evictedRecord(ctx, id)
	}
	if err != nil {
		return r, fmt.Errorf("read sync %s: %w", id, err)
	}
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return r, fmt.Errorf("decode sync %s: %w", id, err)
	}
	return r, nil
}

// History returns an app's most recent syncs, newest first, at most limit of them.
func (s *Records) History(ctx context.Context, app string, limit int) ([]Record, error) {
	ids, _, err := s.history(ctx, app)
	if err != nil {
		return nil, err
	}
	if limit > 0 && len(ids) > limit {
		ids = ids[:limit]
	}
	out := make([]Record, 0, len(ids))
	for _, id := range ids {
		r, err := s.Get(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// validID accepts the ids ferry makes, so a request cannot address other keys of the bucket.
func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
