package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// Inputs are the repository paths outside an app's own path that its last rendered commit read:
// the kustomize bases, components and files it builds on elsewhere in the repository. Webhook
// routing counts a push that changes one of them as a change to the app.
type Inputs struct {
	App string `json:"app"`
	// SHA is the commit the paths were read from.
	SHA   string   `json:"sha"`
	Paths []string `json:"paths"`
}

const inputsSuffix = ".inputs"

func inputsKey(app string) string { return "app." + app + inputsSuffix }

// PutInputs records what an app's latest render read outside its path.
func (s *Records) PutInputs(ctx context.Context, in Inputs) error {
	data, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("encode inputs of %s: %w", in.App, err)
	}
	if _, err := s.kv.Put(ctx, inputsKey(in.App), data); err != nil {
		return fmt.Errorf("store inputs of %s: %w", in.App, err)
	}
	return nil
}

// WatchInputs calls fn with every app's recorded inputs, then with each change as any replica
// records it, until ctx ends. An entry that cannot be decoded is skipped, and a deleted one is
// reported as no paths. It returns nil once ctx ends.
func (s *Records) WatchInputs(ctx context.Context, fn func(Inputs)) error {
	err := watchKeys(ctx, s.kv, "app.*"+inputsSuffix, nil, func(e jetstream.KeyValueEntry) bool {
		app := strings.TrimSuffix(strings.TrimPrefix(e.Key(), "app."), inputsSuffix)
		if e.Operation() != jetstream.KeyValuePut {
			fn(Inputs{App: app})
			return true
		}
		var in Inputs
		if json.Unmarshal(e.Value(), &in) == nil && in.App == app {
			fn(in)
		}
		return true
	})
	if errors.Is(err, ErrWatchStopped) {
		return errors.New("watch inputs: the watcher stopped")
	}
	return err
}
