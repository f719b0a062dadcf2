package target

import (
	"context"
	"sync"

	"github.com/ferrygitops/ferry/syncer/apply"
)

// EventRecorder records each finished deploy as an Event on the app's inventory in the app's
// own cluster, one apply.EventRecorder per cluster: a cluster that is down drops its own events
// and holds up no other's.
type EventRecorder struct {
	byCluster map[string]*apply.EventRecorder
	clusterOf func(app string) string
	def       string
}

// NewEventRecorder records events as worker (the replica's name) in every cluster; clusterOf
// names an app's cluster ("" or an unknown name: the default).
func (s *Set) NewEventRecorder(worker string, clusterOf func(app string) string) *EventRecorder {
	r := &EventRecorder{byCluster: map[string]*apply.EventRecorder{}, clusterOf: clusterOf, def: s.names[0]}
	for n, c := range s.clusters {
		r.byCluster[n] = c.engine.NewEventRecorder(worker)
	}
	return r
}

// Record queues ev for its app's cluster and reports whether it was queued.
func (r *EventRecorder) Record(ev apply.SyncEvent) bool {
	rec := r.byCluster[r.clusterOf(ev.App)]
	if rec == nil {
		rec = r.byCluster[r.def]
	}
	return rec.Record(ev)
}

// Run sends every cluster's events until ctx ends.
func (r *EventRecorder) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, rec := range r.byCluster {
		wg.Go(func() { rec.Run(ctx) })
	}
	wg.Wait()
}
