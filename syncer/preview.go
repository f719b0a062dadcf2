package syncer

import (
	"context"
	"fmt"

	"github.com/ferrygitops/ferry/queue"
)

// preview dry-runs a pull request head against the cluster and posts what merging it would do
// on the head commit. It writes nothing to the cluster, and renders without network or plugins.
func (r *run) preview(ctx context.Context) error {
	s, app, job := r.s, r.app, r.job
	if err := r.markRunning(ctx, "planning "+short(job.SHA)); err != nil || r.rec.State.Terminal() {
		return err
	}
	if touched, err := s.touches(ctx, app, r.repo, job); err == nil && !touched {
		return r.succeed(ctx, "no changes under "+app.Path)
	} else if err != nil {
		r.log.Info("cannot tell what the pull request changes; planning the app", "err", err)
	}
	l, err := s.load(ctx, app, r.repo, job)
	r.rec.Phases, r.rec.Chart = l.phases, l.chart
	if err != nil {
		return r.fetchFailed(ctx, err)
	}
	t, err := s.target(app)
	if err != nil {
		return r.retryOrFail(ctx, at(StagePlan, err))
	}
	plan, err := t.Plan(ctx, s.applyApp(app), l.objs)
	if err != nil {
		return r.retryOrFail(ctx, at(StagePlan, err))
	}
	r.rec.Counts, r.rec.Objects = planAccount(plan)
	r.rec.Diff = plan.Text()
	return r.succeed(ctx, plan.Summary())
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
