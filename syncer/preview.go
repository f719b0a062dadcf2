package syncer

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/syncer/apply"
	"github.com/ferrygitops/ferry/syncer/status"
)

// preview dry-runs a pull request head against the cluster and posts what merging it would do
// on the head commit. It writes nothing to the cluster, and renders without network or plugins.
func (s *Syncer) preview(ctx context.Context, log *slog.Logger, app App, repo Repo, job queue.Job, d queue.Delivery, rec queue.Record) error {
	start := s.opts.Now()
	rec.State, rec.StartedAt, rec.Worker, rec.Error = queue.StateRunning, &start, s.opts.Worker, nil
	s.put(ctx, log, rec)
	s.report(ctx, log, repo, job, status.Pending, "planning "+short(job.SHA))

	if touched, err := s.touches(ctx, app, repo, job); err == nil && !touched {
		return s.succeed(ctx, log, repo, job, rec, "no changes under "+app.Path)
	} else if err != nil {
		log.Info("cannot tell what the pull request changes; planning the app", "err", err)
	}
	objs, phases, _, err := s.load(ctx, app, repo, job)
	if err != nil {
		return s.retryOrFail(ctx, log, repo, job, d, rec, stageOf(err, "fetch"), err)
	}
	rec.Phases = phases
	timeout := app.Timeout
	plan, err := s.apply.Plan(ctx, apply.App{Name: app.Name, Namespace: app.Namespace, Prune: app.Prune, Timeout: timeout}, objs)
	if err != nil {
		return s.retryOrFail(ctx, log, repo, job, d, rec, "plan", err)
	}
	rec.Counts = map[string]int{"changed": plan.Changed, "created": plan.Created, "unchanged": plan.Unchanged, "pruned": plan.Pruned}
	rec.Objects = rec.Objects[:0]
	for _, en := range plan.Entries {
		rec.Objects = append(rec.Objects, queue.ObjectRecord{Kind: en.ID.Kind, Namespace: en.ID.Namespace, Name: en.ID.Name, Action: string(en.Action)})
	}
	rec.Diff = plan.Text()
	return s.succeed(ctx, log, repo, job, rec, plan.Summary())
}

// touches reports whether the pull request changes a file the app renders from (under its path,
// or a base elsewhere in the repository), comparing its head with the base commit the forge named.
func (s *Syncer) touches(ctx context.Context, app App, repo Repo, job queue.Job) (bool, error) {
	if job.BaseSHA == "" {
		return true, fmt.Errorf("the forge named no base commit")
	}
	changed, err := s.changedSince(ctx, repo, job.BaseSHA, job.SHA, job.Ref)
	if err != nil {
		return true, err
	}
	return s.appTouched(ctx, app, repo, job.SHA, changed)
}
