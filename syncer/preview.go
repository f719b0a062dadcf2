package syncer

import (
	"context"
	"log/slog"
	"strconv"

	"github.com/ferrygitops/ferry/queue"
)

// preview dry-runs a pull request head. Until the engine can plan, a preview job renders the
// app so that broken manifests are caught, and says so honestly on the status.
func (s *Syncer) preview(ctx context.Context, log *slog.Logger, app App, repo Repo, job queue.Job, d queue.Delivery, rec queue.Record) error {
	start := s.opts.Now()
	rec.State, rec.StartedAt, rec.Worker = queue.StateRunning, &start, s.opts.Worker
	s.put(ctx, log, rec)
	objs, phases, err := s.load(ctx, app, repo, job)
	if err != nil {
		return s.retryOrFail(ctx, log, repo, job, d, rec, stageOf(err, "fetch"), err)
	}
	rec.Phases = phases
	return s.succeed(ctx, log, repo, job, rec, renderedSummary(len(objs)))
}

func renderedSummary(n int) string {
	if n == 1 {
		return "rendered 1 object"
	}
	return "rendered " + strconv.Itoa(n) + " objects"
}
