package syncer

import (
	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/syncer/apply"
)

// Events records each finished deploy where people using kubectl look: an Event on the app's
// inventory. Record must not block; it reports whether the event was kept.
type Events interface {
	Record(ev apply.SyncEvent) bool
}

var _ Events = (*apply.EventRecorder)(nil)

// event tells Events of a deploy's terminal record. Previews change nothing in the cluster and
// have no event.
func (s *Syncer) event(job queue.Job, rec queue.Record) {
	if s.events == nil || job.Kind != queue.KindDeploy {
		return
	}
	ev := apply.SyncEvent{App: job.App, Message: "commit " + short(job.SHA) + ": " + rec.Message}
	switch rec.State {
	case queue.StateSucceeded:
		ev.Reason = apply.ReasonSyncSucceeded
	case queue.StateFailed:
		ev.Reason, ev.Warning = apply.ReasonSyncFailed, true
	case queue.StateSkipped:
		ev.Reason = apply.ReasonSyncSkipped
	default:
		return
	}
	s.events.Record(ev)
}
