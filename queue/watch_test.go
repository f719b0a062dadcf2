package queue

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestWatchSyncFollowsOneRecordToItsEnd: a watch of a sync that has no record yet sees the
// queued, running and succeeded versions in order, and nothing of another sync.
func TestWatchSyncFollowsOneRecordToItsEnd(t *testing.T) {
	recs := newTestRecords(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	id, other := NewID(), NewID()
	seen := make(chan State, 8)
	done := make(chan error, 1)
	go func() {
		done <- recs.WatchSync(ctx, id, func(r Record) bool {
			if r.ID != id {
				t.Errorf("watch of %s got record %s", id, r.ID)
			}
			seen <- r.State
			return !r.State.Terminal()
		})
	}()
	time.Sleep(100 * time.Millisecond) // the watch starts before the first version, or replays it
	for _, st := range []State{StateQueued, StateRunning, StateSucceeded} {
		if err := recs.Put(ctx, Record{ID: other, App: "db", State: st}); err != nil {
			t.Fatal(err)
		}
		if err := recs.Put(ctx, Record{ID: id, App: "api", State: st}); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("WatchSync: %v", err)
	}
	close(seen)
	var got []State
	for st := range seen {
		got = append(got, st)
	}
	// The bucket keeps one version per key, so a version replaced before the watch read it is
	// never seen: the watch sees an ordered subset of the versions, ending with the terminal one.
	order := map[State]int{StateQueued: 0, StateRunning: 1, StateSucceeded: 2}
	if len(got) == 0 || got[len(got)-1] != StateSucceeded {
		t.Fatalf("states seen = %v, want them to end with %s", got, StateSucceeded)
	}
	for i := 1; i < len(got); i++ {
		if order[got[i]] <= order[got[i-1]] {
			t.Fatalf("states seen = %v, out of order or repeated", got)
		}
	}
}

// TestWatchSyncsSeesOnlyNewRecords: the all-syncs watch does not replay what was stored
// before it began, sees every later record, and a bad id cannot address other keys.
func TestWatchSyncsSeesOnlyNewRecords(t *testing.T) {
	recs := newTestRecords(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	old := NewID()
	if err := recs.Put(ctx, Record{ID: old, App: "api", State: StateSucceeded}); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	got := make(chan Record, 8)
	go func() {
		close(started)
		_ = recs.WatchSyncs(ctx, func(r Record) bool { got <- r; return true })
	}()
	<-started
	time.Sleep(200 * time.Millisecond)
	fresh := NewID()
	if err := recs.Put(ctx, Record{ID: fresh, App: "db", State: StateQueued}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if r.ID != fresh {
			t.Fatalf("first record watched = %s, want the new %s (the old %s must not be replayed)", r.ID, fresh, old)
		}
	case <-ctx.Done():
		t.Fatal("the new record was never watched")
	}
	if err := recs.WatchSync(ctx, "sync.*", func(Record) bool { return true }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("WatchSync of a wildcard = %v, want ErrNotFound", err)
	}
}

// TestFollowSyncsReplaysThenFollows: every stored record is delivered as a summary before
// caughtUp, without its objects, and a record stored afterwards is delivered after it.
func TestFollowSyncsReplaysThenFollows(t *testing.T) {
	recs := newTestRecords(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	const stored = 300
	for i := range stored {
		r := Record{ID: NewID(), App: "app" + string(rune('a'+i%26)), Kind: KindDeploy, SHA: "abc", State: StateSucceeded,
			Objects: []ObjectRecord{{Kind: "ConfigMap", Name: "x", Action: "created"}}}
		if err := recs.Put(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	type event struct {
		caughtUp bool
		sum      SyncSummary
	}
	events := make(chan event, stored+8)
	done := make(chan error, 1)
	go func() {
		done <- recs.FollowSyncs(ctx, func() { events <- event{caughtUp: true} }, func(s SyncSummary) { events <- event{sum: s} })
	}()
	replayed := 0
	for e := range events {
		if e.caughtUp {
			break
		}
		if e.sum.App == "" || e.sum.State != StateSucceeded {
			t.Errorf("replayed summary %+v lacks its app or state", e.sum)
		}
		replayed++
	}
	if replayed != stored {
		t.Errorf("%d records replayed before caught up, want %d", replayed, stored)
	}
	late := Record{ID: NewID(), App: "late", Kind: KindDeploy, SHA: "def", State: StateRunning}
	if err := recs.Put(ctx, late); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-events:
		if e.caughtUp || e.sum.ID != late.ID || e.sum.State != StateRunning {
			t.Errorf("after catching up got %+v, want the late record %s running", e, late.ID)
		}
	case <-ctx.Done():
		t.Fatal("the record stored after catching up was not delivered")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("FollowSyncs after its context ended: %v", err)
	}
}
