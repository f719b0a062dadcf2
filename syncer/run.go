package syncer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/syncer/apply"
	"github.com/ferrygitops/ferry/syncer/render"
	"github.com/ferrygitops/ferry/syncer/source"
	"github.com/ferrygitops/ferry/syncer/source/charts"
	"github.com/ferrygitops/ferry/syncer/status"
)

// MaxInterrupted is how many deliveries of one job may end without an outcome (the process
// died, was killed or ran out of memory while running it) before the job is failed for good
// instead of being delivered again: a commit that crashes ferry must not crash every restart.
const MaxInterrupted = 3

// run is one delivery of one job: what every step of a sync needs, and the steps that end it.
// Every way out of a run that is not a retry leaves a terminal record and, when a pending
// status may have been posted for the commit, a final status.
type run struct {
	s    *Syncer
	log  *slog.Logger
	app  App
	repo Repo
	job  queue.Job
	d    queue.Delivery
	rec  queue.Record
	// announced is true once a pending status may have been posted for the job's commit and
	// context (by the hook's queued notice, an earlier delivery or this one). Such a run posts a
	// final status however it ends, even when it finds its work already done.
	announced bool
}

// Stage names the step of a sync that failed. It is set where the error is made and decides
// whether the failure may pass by itself (see transient).
type Stage string

// The stages of a sync, as records and statuses name them.
const (
	StageFetch        Stage = "fetch"
	StageRender       Stage = "render"
	StageDependencies Stage = "dependencies"
	StageApply        Stage = "apply"
	StagePlan         Stage = "plan"
	// StageRevision is the check that a manual sync's commit is on the app's branch or a tag.
	StageRevision Stage = "revision"
	// StageRun is the job itself: deliveries that ended the process, a panic.
	StageRun Stage = "run"
)

// stageError says which step of the sync failed.
type stageError struct {
	stage Stage
	err   error
}

func (e *stageError) Error() string { return string(e.stage) + ": " + e.err.Error() }
func (e *stageError) Unwrap() error { return e.err }

// at marks err as made in stage; nil stays nil.
func at(stage Stage, err error) error {
	if err == nil {
		return nil
	}
	return &stageError{stage: stage, err: err}
}

func stageOf(err error) Stage {
	var se *stageError
	if errors.As(err, &se) {
		return se.stage
	}
	return ""
}

// transient asks the part that failed whether its error may pass: the Git host for fetches,
// the apiserver for applies and plans, ferry's own store for the dependency check (an app that
// failed is final, though); a render error, or one no stage claims, never passes by itself.
func transient(err error) bool {
	switch stageOf(err) {
	case StageFetch:
		// The fetch stage fetches the commit and, for a remote chart, the chart: each source
		// classifies its own errors.
		var ce *charts.Error
		if errors.As(err, &ce) {
			return ce.Transient
		}
		return source.IsTransient(err)
	case StageCluster:
		return apply.IsTransient(err)
	case StageDependencies:
		return !errors.Is(err, errDependencyFailed)
	case StageApply, StagePlan:
		return apply.IsTransient(err)
	}
	return false
}

// pending posts a pending status, except for the quiet jobs that post only results.
func (r *run) pending(ctx context.Context, desc string) {
	if quiet(r.job) {
		return
	}
	r.announced = true
	r.report(ctx, status.Pending, desc)
}

// markRunning records that the work starts. A record still running from an earlier delivery
// means that delivery ended the process: counted, and past MaxInterrupted the job is failed
// rather than run again.
func (r *run) markRunning(ctx context.Context, desc string) error {
	if r.rec.State == queue.StateRunning {
		r.rec.Interrupted++
	}
	if r.rec.Interrupted >= MaxInterrupted {
		return r.fail(ctx, at(StageRun, fmt.Errorf("stopped after %d attempts that ended the process", r.rec.Interrupted)))
	}
	start := r.s.opts.Now()
	r.rec.State, r.rec.StartedAt, r.rec.Worker, r.rec.Error = queue.StateRunning, &start, r.s.opts.Worker, nil
	r.put(ctx)
	r.pending(ctx, desc)
	return nil
}

// succeed records and reports a finished sync.
func (r *run) succeed(ctx context.Context, desc string) error {
	r.finish(queue.StateSucceeded, status.Success, desc)
	r.put(ctx)
	r.notify(ctx, queue.StateSucceeded)
	if r.job.Kind == queue.KindDeploy {
		r.putState(ctx, queue.AppState{App: r.job.App, SHA: r.job.SHA, State: queue.StateSucceeded, SyncID: r.job.ID, At: *r.rec.FinishedAt, AppliedSHA: r.job.SHA})
	}
	r.report(ctx, status.Success, desc)
	r.s.metrics.finished(r.job, queue.StateSucceeded, elapsed(r.rec))
	r.log.Info("sync succeeded", "summary", desc)
	return nil
}

// succeedQuietly records a successful sync without posting a status when none is owed: the
// commit already has the one that counts. A run that may have left a pending status behind
// posts its success all the same.
func (r *run) succeedQuietly(ctx context.Context, desc string) error {
	if r.announced {
		return r.succeed(ctx, desc)
	}
	r.finish(queue.StateSucceeded, "", desc)
	r.put(ctx)
	r.notify(ctx, queue.StateSucceeded)
	r.putState(ctx, queue.AppState{App: r.job.App, SHA: r.job.SHA, State: queue.StateSucceeded, SyncID: r.job.ID, At: *r.rec.FinishedAt, AppliedSHA: r.job.SHA})
	r.s.metrics.finished(r.job, queue.StateSucceeded, elapsed(r.rec))
	r.log.Info("sync succeeded", "summary", desc)
	return nil
}

// skip ends a job that was not run (a newer commit won, or this one is stale) with state.
func (r *run) skip(ctx context.Context, state status.State, desc string) error {
	r.finish(queue.StateSkipped, state, desc)
	r.put(ctx)
	r.notify(ctx, queue.StateSkipped)
	if !quiet(r.job) {
		r.report(ctx, state, desc)
	}
	r.s.metrics.finished(r.job, queue.StateSkipped, 0)
	r.log.Info("sync skipped", "reason", desc)
	return nil
}

// fail records and reports a failed sync; the returned error ends the job for good.
func (r *run) fail(ctx context.Context, cause error) error {
	re := describe(cause)
	r.finish(queue.StateFailed, status.Failure, summary(re))
	r.rec.Error = re
	r.put(ctx)
	if r.job.Kind == queue.KindDeploy {
		// One read of the app's state serves the notification and the state kept after it.
		prev, _, err := r.s.store.AppState(context.WithoutCancel(ctx), r.job.App)
		r.notifyAfter(ctx, queue.StateFailed, prev, err)
		r.putState(ctx, queue.AppState{App: r.job.App, SHA: r.job.SHA, State: queue.StateFailed, SyncID: r.job.ID, At: *r.rec.FinishedAt, AppliedSHA: prev.AppliedSHA})
	}
	r.report(ctx, status.Failure, r.rec.Message)
	r.s.metrics.finished(r.job, queue.StateFailed, elapsed(r.rec))
	r.log.Warn("sync failed", "stage", re.Stage, "object", re.Object, "err", cause)
	return cause
}

// retryOrFail retries transient errors within their budget and fails the sync otherwise. A
// run cut short (shutdown, or the queue took the job back) hands it back without counting a failure.
func (r *run) retryOrFail(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		r.rec.Message = "interrupted (shutdown, or this worker lost NATS); handed back to the queue"
		return r.retry(ctx, err, 0)
	}
	r.rec.Failures++
	if transient(err) && !r.d.Last && r.rec.Failures < r.s.opts.TransientAttempts {
		delay := backoff(r.rec.Failures)
		r.log.Warn("sync hit a transient error, retrying", "stage", stageOf(err), "delay", delay, "err", err)
		r.rec.Message = fmt.Sprintf("attempt %d failed, retrying in %s: %v", r.rec.Failures, delay, err)
		return r.retry(ctx, err, delay)
	}
	return r.fail(ctx, err)
}

// retry hands the job back for another delivery after delay. Its record leaves the running
// state, so that the next delivery does not take this one for a crash.
func (r *run) retry(ctx context.Context, err error, delay time.Duration) error {
	if r.rec.State == queue.StateRunning {
		r.rec.State = queue.StateQueued
		r.put(ctx)
	}
	return queue.Retry(err, delay)
}

// finish marks the record terminal; posted is the status state the run posts (empty: none), so
// that a late queued notice can post it again after its pending one.
func (r *run) finish(state queue.State, posted status.State, desc string) {
	now := r.s.opts.Now()
	r.rec.State, r.rec.Message, r.rec.FinishedAt, r.rec.Error, r.rec.Status = state, desc, &now, nil, string(posted)
	r.s.metrics.recorded(r.job, r.rec)
	r.s.event(r.job, r.rec)
}

// put stores the record; a record that cannot be stored is logged and does not stop the sync.
func (r *run) put(ctx context.Context) {
	if err := r.s.store.Put(context.WithoutCancel(ctx), r.rec); err != nil {
		r.log.Warn("sync record not stored", "err", err)
	}
}

func (r *run) putState(ctx context.Context, st queue.AppState) {
	if err := r.s.store.PutAppState(context.WithoutCancel(ctx), st); err != nil {
		r.log.Warn("app state not stored", "err", err)
	}
}

// report posts a commit status for the job, with the record's account of it. A status that
// cannot be posted is logged; it never fails the sync (the reporter retries transient errors
// itself).
func (r *run) report(ctx context.Context, state status.State, desc string) {
	phase := status.PhaseDone
	switch {
	case state == status.Pending && r.rec.State == queue.StateRunning:
		phase = status.PhaseInProgress
	case state == status.Pending:
		phase = status.PhaseQueued
	}
	r.s.report(ctx, r.log, r.repo, r.job, state, desc, r.s.detail(r.job, r.rec, phase))
}

// describe turns an error into the record's user-facing account.
func describe(err error) *queue.RecordError {
	msg := err.Error()
	var se *stageError
	if errors.As(err, &se) {
		msg = se.err.Error()
	}
	re := &queue.RecordError{Stage: string(stageOf(err)), Message: msg}
	var ae *apply.Error
	if errors.As(err, &ae) {
		re.Stage, re.Object, re.File, re.Message = ae.Stage, ae.Object, ae.File, ae.Message
		if re.Stage == "" {
			re.Stage = string(stageOf(err))
		}
	}
	// The file to blame, for check run annotations: repository-relative, as render names it.
	if ce, ok := errors.AsType[*apply.ConflictError](err); ok && re.File == "" {
		re.Object, re.File = ce.Object, ce.File
	}
	if re.File == "" {
		re.File = renderFile(err)
	}
	return re
}

// renderFile is the repository file a render error is about, or "".
func renderFile(err error) string {
	if e, ok := errors.AsType[*render.RefusedError](err); ok {
		return e.File
	}
	if e, ok := errors.AsType[*render.BoundError](err); ok {
		return e.File
	}
	if e, ok := errors.AsType[*render.UndefinedError](err); ok {
		return e.File
	}
	return ""
}

// summary is a failure as one line for a commit status: the object first, then the reason.
func summary(re *queue.RecordError) string {
	if re.Object != "" {
		return re.Object + ": " + re.Message
	}
	// A message that begins with its stage's word (cluster prod unreachable: …) says it already.
	if re.Stage != "" && re.Stage != string(StageApply) && re.Stage != string(StageDependencies) && re.Stage != string(StageRun) && !strings.HasPrefix(re.Message, re.Stage+" ") {
		return re.Stage + ": " + re.Message
	}
	return re.Message
}

func elapsed(rec queue.Record) float64 {
	if rec.StartedAt == nil || rec.FinishedAt == nil {
		return 0
	}
	return rec.FinishedAt.Sub(*rec.StartedAt).Seconds()
}
