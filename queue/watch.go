package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrWatchStopped is returned when the store ends a watch that its caller did not end: the
// connection to NATS was lost for good. A caller that wants more watches again.
var ErrWatchStopped = errors.New("watch stopped by the store")

// WatchSync calls fn with the sync's current record (if it has one), then with each version any
// replica stores, until fn returns false or ctx ends. The bucket keeps one version per sync, so
// a version replaced before the watch read it is skipped: fn sees the versions in order, and
// always the last one. It returns nil then. An unknown id is
// ErrNotFound only when it could never name a sync; a valid id with no record yet is watched
// until one is stored, so a caller may watch a sync it just queued.
func (s *Records) WatchSync(ctx context.Context, id string, fn func(Record) bool) error {
	if !validID(id) {
		return fmt.Errorf("sync %q: %w", id, ErrNotFound)
	}
	return s.watchRecords(ctx, syncKey(id), false, fn)
}

// WatchSyncs calls fn with every sync record stored from now on, by any replica, until fn
// returns false or ctx ends; records stored before the call are not replayed (History reads
// them). It returns nil then.
func (s *Records) WatchSyncs(ctx context.Context, fn func(Record) bool) error {
	return s.watchRecords(ctx, syncKey("*"), true, fn)
}

// FollowSyncs calls fn with a summary of every stored sync record, then caughtUp once every
// record stored before the call has been delivered, then with a summary of each record any
// replica stores, until ctx ends (nil) or the store ends the watch (ErrWatchStopped). Only the
// summary is decoded, objects and diffs are skipped, so following every app's syncs costs a few
// hundred bytes per app: what an in-memory list of thousands of apps feeds on instead of
// reading each app's history per request. A record replaced before the watch read it is
// skipped; fn sees each sync's last version.
func (s *Records) FollowSyncs(ctx context.Context, caughtUp func(), fn func(SyncSummary)) error {
	return watchCaughtUp(ctx, s.kv, syncKey("*"), nil, caughtUp, func(e jetstream.KeyValueEntry) bool {
		if e.Operation() != jetstream.KeyValuePut {
			return true
		}
		var r SyncSummary
		if json.Unmarshal(e.Value(), &r) == nil && syncKey(r.ID) == e.Key() {
			fn(r)
		}
		return true
	})
}

func (s *Records) watchRecords(ctx context.Context, key string, updatesOnly bool, fn func(Record) bool) error {
	var opts []jetstream.WatchOpt
	if updatesOnly {
		opts = append(opts, jetstream.UpdatesOnly())
	}
	return watchKeys(ctx, s.kv, key, opts, func(e jetstream.KeyValueEntry) bool {
		if e.Operation() != jetstream.KeyValuePut { // a deletion: the record fell off its history
			return true
		}
		var r Record
		if json.Unmarshal(e.Value(), &r) != nil || syncKey(r.ID) != e.Key() {
			return true
		}
		return fn(r)
	})
}

// watchKeys calls fn with each entry of kv matching key, as stored and then as changed, until fn
// returns false or ctx ends (nil), or the store ends the watch (ErrWatchStopped).
func watchKeys(ctx context.Context, kv jetstream.KeyValue, key string, opts []jetstream.WatchOpt, fn func(jetstream.KeyValueEntry) bool) error {
	return watchCaughtUp(ctx, kv, key, opts, nil, fn)
}

// watchCaughtUp is watchKeys that also calls caughtUp, when not nil, once every entry stored
// before the watch began has been delivered.
func watchCaughtUp(ctx context.Context, kv jetstream.KeyValue, key string, opts []jetstream.WatchOpt, caughtUp func(), fn func(jetstream.KeyValueEntry) bool) error {
	w, err := kv.Watch(ctx, key, opts...)
	if err != nil {
		return fmt.Errorf("watch %s: %w", strings.TrimSuffix(key, ".*"), err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return ErrWatchStopped
			}
			if e == nil { // every stored value has been delivered
				if caughtUp != nil {
					caughtUp()
					caughtUp = nil
				}
				continue
			}
			if !fn(e) {
				return nil
			}
		}
	}
}
