package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// AppState is where an app stands after its last finished deploy, shared by every replica: the
// dependency gate and the newest-commit-wins rule read it.
type AppState struct {
	App string `json:"app"`
	// SHA is the commit of the last finished deploy; State says how it ended.
	SHA    string    `json:"sha"`
	State  State     `json:"state"`
	SyncID string    `json:"syncId"`
	At     time.Time `json:"at"`
	// AppliedSHA is the last commit that was applied and healthy.
	AppliedSHA string `json:"appliedSha,omitempty"`
}

func stateKey(app string) string { return "app." + app + ".state" }

// AppState returns an app's state; ok is false for an app that never finished a deploy.
func (s *Records) AppState(ctx context.Context, app string) (st AppState, ok bool, err error) {
	e, err := s.kv.Get(ctx, stateKey(app))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return st, false, nil
	}
	if err != nil {
		return st, false, fmt.Errorf("read state of %s: %w", app, err)
	}
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return st, false, fmt.Errorf("decode state of %s: %w", app, err)
	}
	return st, true, nil
}

// PutAppState records how an app's latest deploy ended.
func (s *Records) PutAppState(ctx context.Context, st AppState) error {
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode state of %s: %w", st.App, err)
	}
	if _, err := s.kv.Put(ctx, stateKey(st.App), data); err != nil {
		return fmt.Errorf("store state of %s: %w", st.App, err)
	}
	return nil
}

// Backlog counts the jobs of one kind for an app that are stored and not yet done (queued or
// running), across all replicas.
func (q *Queue) Backlog(ctx context.Context, kind Kind, app string) (uint64, error) {
	s, err := q.js.Stream(ctx, StreamName)
	if err != nil {
		return 0, fmt.Errorf("stream info: %w", err)
	}
	subj := Subject(kind, app)
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		return 0, fmt.Errorf("stream info for %s: %w", subj, err)
	}
	return info.State.Subjects[subj], nil
}

// Newest returns the most recently stored job of one kind for an app, if any is still stored.
func (q *Queue) Newest(ctx context.Context, kind Kind, app string) (Job, bool, error) {
	s, err := q.js.Stream(ctx, StreamName)
	if err != nil {
		return Job{}, false, fmt.Errorf("stream info: %w", err)
	}
	m, err := s.GetLastMsgForSubject(ctx, Subject(kind, app))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Job{}, false, nil
	}
	if err != nil {
		return Job{}, false, fmt.Errorf("newest job of %s: %w", app, err)
	}
	var j Job
	if err := json.Unmarshal(m.Data, &j); err != nil {
		return Job{}, false, fmt.Errorf("decode newest job of %s: %w", app, err)
	}
	return j, true, nil
}
