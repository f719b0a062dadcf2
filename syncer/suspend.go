package syncer

import (
	"context"
	"fmt"
	"time"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/syncer/status"
)

// Suspensions tells which apps are suspended, as every replica sees them.
type Suspensions interface {
	Get(ctx context.Context, app string) (queue.Suspension, error)
	// Watch calls fn with every stored suspension, then with each change, until ctx ends.
	Watch(ctx context.Context, fn func(queue.Suspension)) error
}

var _ Suspensions = (*queue.Suspensions)(nil)

// SuspendedDescription is the commit status of a deploy not applied because its app was
// suspended. It is posted as status.Skipped, which no forge shows as a failure: GitHub and Gitea
// show success (they have no neutral state), GitLab skipped.
const SuspendedDescription = "suspended, not applied"

// suspensionRewatch is the pause before the watch of suspensions is opened again after it broke
// (NATS restarting, say); meanwhile ferry_app_suspended keeps its last values.
const suspensionRewatch = 5 * time.Second

// suspended ends a deploy whose app is suspended when the worker takes it, whatever made it
// (a push, a poll, start-up, self-heal, resume, or a manual sync that was not forced): its
// record says suspended, and a commit that may carry a pending status gets a final one that
// does not read as a failure. It is asked before anything else a deploy does, on every
// delivery, so that a suspension made while the job was queued, or waiting for a dependency,
// holds. done is true when the run ended (or was handed back because the suspension could not
// be read: applying then could break a suspension).
func (r *run) suspended(ctx context.Context) (done bool, err error) {
	if r.job.Force || r.s.suspensions == nil {
		return false, nil
	}
	sus, err := r.s.suspensions.Get(ctx, r.app.Name)
	if err != nil {
		return true, r.suspensionUnknown(ctx, err)
	}
	if !sus.Suspended {
		return false, nil
	}
	r.finish(queue.StateSuspended, status.Skipped, SuspendedDescription)
	r.put(ctx)
	if !quiet(r.job) {
		r.report(ctx, status.Skipped, SuspendedDescription)
	}
	r.s.metrics.finished(r.job, queue.StateSuspended, 0)
	r.log.Info("sync not applied: app suspended", "suspended_by", sus.By, "since", sus.At, "trigger", r.job.Trigger)
	return true, nil
}

// suspensionUnknown answers a suspension that could not be read (ferry's own store, so most
// likely NATS restarting): the job goes back to the queue with backoff, within the budget of
// transient failures, and fails past it.
func (r *run) suspensionUnknown(ctx context.Context, err error) error {
	err = fmt.Errorf("cannot tell whether app %s is suspended: %w", r.app.Name, err)
	if ctx.Err() != nil {
		return r.retryOrFail(ctx, err)
	}
	r.rec.Failures++
	if !r.d.Last && r.rec.Failures < r.s.opts.TransientAttempts {
		delay := backoff(r.rec.Failures)
		r.log.Warn("suspension not read, retrying", "delay", delay, "err", err)
		r.rec.Message = fmt.Sprintf("attempt %d failed, retrying in %s: %v", r.rec.Failures, delay, err)
		return r.retry(ctx, err, delay)
	}
	return r.fail(ctx, at(StageRun, err))
}

// skipSuspended tells the poller to leave app alone: start-up, polls and self-heal queue
// nothing for a suspended app. When the suspension cannot be read the job is queued all the
// same, and the worker, which asks again, decides.
func (p *Poller) skipSuspended(ctx context.Context, app App) bool {
	if p.s.suspensions == nil {
		return false
	}
	sus, err := p.s.suspensions.Get(ctx, app.Name)
	if err != nil {
		p.opts.Logger.Info("suspension not read; queueing, the worker asks again", "app", app.Name, "err", err)
		return false
	}
	if sus.Suspended {
		p.opts.Logger.Debug("app suspended; not queued", "app", app.Name, "suspended_by", sus.By)
	}
	return sus.Suspended
}

// TrackSuspensions keeps ferry_app_suspended current for every configured app, as any replica
// changes it, until ctx ends. Every configured app starts at 0, so that the series exists for
// alerts before any app is ever suspended.
func (s *Syncer) TrackSuspensions(ctx context.Context) {
	if s.suspensions == nil || s.metrics == nil {
		return
	}
	for name := range s.apps {
		s.metrics.setSuspended(name, false)
	}
	for {
		err := s.suspensions.Watch(ctx, func(sus queue.Suspension) {
			if _, ok := s.apps[sus.App]; ok {
				s.metrics.setSuspended(sus.App, sus.Suspended)
			}
		})
		if ctx.Err() != nil {
			return
		}
		s.opts.Logger.Warn("watching suspensions", "err", err, "retry_in", suspensionRewatch)
		if !sleep(ctx, suspensionRewatch) {
			return
		}
	}
}
