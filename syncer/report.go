package syncer

import (
	"context"
	"errors"
	"log/slog"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/syncer/status"
)

// notifyBuffer bounds the stored-job notices waiting for their pending status; when it is full
// the notice is dropped, and the worker posts the pending status when it starts the job.
const notifyBuffer = 1024

// succeed records and reports a finished sync.
func (s *Syncer) succeed(ctx context.Context, log *slog.Logger, repo Repo, job queue.Job, rec queue.Record, desc string) error {
	now := s.opts.Now()
	rec.State, rec.Message, rec.FinishedAt, rec.Error, rec.Status = queue.StateSucceeded, desc, &now, nil, string(status.Success)
	s.put(ctx, log, rec)
	if job.Kind == queue.KindDeploy {
		s.putState(ctx, log, queue.AppState{App: job.App, SHA: job.SHA, State: queue.StateSucceeded, SyncID: job.ID, At: now, AppliedSHA: job.SHA})
	}
	s.report(ctx, log, repo, job, status.Success, desc)
	s.metrics.finished(job, queue.StateSucceeded, elapsed(rec))
	log.Info("sync succeeded", "summary", desc)
	return nil
}

// succeedQuietly records a successful sync without posting a status: the commit already has
// the one that counts.
func (s *Syncer) succeedQuietly(ctx context.Context, log *slog.Logger, job queue.Job, rec queue.Record, desc string) error {
	now := s.opts.Now()
	rec.State, rec.Message, rec.FinishedAt, rec.Error = queue.StateSucceeded, desc, &now, nil
	s.put(ctx, log, rec)
	s.putState(ctx, log, queue.AppState{App: job.App, SHA: job.SHA, State: queue.StateSucceeded, SyncID: job.ID, At: now, AppliedSHA: job.SHA})
	s.metrics.finished(job, queue.StateSucceeded, elapsed(rec))
	log.Info("sync succeeded", "summary", desc)
	return nil
}

// fail records and reports a failed sync; the returned error ends the job for good.
func (s *Syncer) fail(ctx context.Context, log *slog.Logger, repo Repo, job queue.Job, rec queue.Record, re *queue.RecordError, cause error) error {
	now := s.opts.Now()
	rec.State, rec.FinishedAt, rec.Error, rec.Status = queue.StateFailed, &now, re, string(status.Failure)
	rec.Message = summary(re)
	s.put(ctx, log, rec)
	if job.Kind == queue.KindDeploy {
		prev, _, _ := s.store.AppState(ctx, job.App)
		s.putState(ctx, log, queue.AppState{App: job.App, SHA: job.SHA, State: queue.StateFailed, SyncID: job.ID, At: now, AppliedSHA: prev.AppliedSHA})
	}
	s.report(ctx, log, repo, job, status.Failure, rec.Message)
	s.metrics.finished(job, queue.StateFailed, elapsed(rec))
	log.Warn("sync failed", "stage", re.Stage, "object", re.Object, "err", cause)
	return cause
}

// summary is a failure as one line for a commit status: the object first, then the reason.
func summary(re *queue.RecordError) string {
	if re.Object != "" {
		return re.Object + ": " + re.Message
	}
	if re.Stage != "" && re.Stage != "apply" && re.Stage != "dependencies" {
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

// put stores the record; a record that cannot be stored is logged and does not stop the sync.
func (s *Syncer) put(ctx context.Context, log *slog.Logger, rec queue.Record) {
	if err := s.store.Put(context.WithoutCancel(ctx), rec); err != nil {
		log.Warn("sync record not stored", "err", err)
	}
}

func (s *Syncer) putState(ctx context.Context, log *slog.Logger, st queue.AppState) {
	if err := s.store.PutAppState(context.WithoutCancel(ctx), st); err != nil {
		log.Warn("app state not stored", "err", err)
	}
}

// report posts a commit status. A status that cannot be posted is logged; it never fails the
// sync (the reporter retries transient errors itself).
func (s *Syncer) report(ctx context.Context, log *slog.Logger, repo Repo, job queue.Job, state status.State, desc string) {
	if repo.Reporter == nil {
		return
	}
	st := status.Status{SHA: job.SHA, Context: statusContext(job), State: state, Description: desc, TargetURL: s.SyncURL(job.ID)}
	if err := repo.Reporter.Report(context.WithoutCancel(ctx), st); err != nil {
		log.Warn("commit status not posted", "state", state, "err", err)
		s.metrics.statusErrors.Inc()
	}
}

// Stored is told of jobs the hooks or the API just stored: it records them as queued and posts
// their pending statuses in the background, so the hook's answer does not wait for the forge.
func (s *Syncer) Stored(jobs []queue.Job) {
	select {
	case s.notes <- jobs:
	default:
		s.opts.Logger.Warn("pending statuses are behind; the workers will post them", "jobs", len(jobs))
	}
}

// RunNotifier posts the pending statuses of stored jobs until ctx is cancelled.
func (s *Syncer) RunNotifier(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case jobs := <-s.notes:
			for _, job := range jobs {
				s.notifyQueued(ctx, job)
			}
		}
	}
}

// notifyQueued records a stored job as queued and posts its pending status, unless a worker
// got to it first. The worker may finish while the pending status is on its way: the record is
// read again afterwards, and a terminal status is posted once more so that it is the last one.
func (s *Syncer) notifyQueued(ctx context.Context, job queue.Job) {
	repo, ok := s.repos[job.Repo]
	if !ok {
		return
	}
	log := s.opts.Logger.With("sync", job.ID, "app", job.App)
	if err := s.store.Create(ctx, queuedRecord(job)); err != nil {
		if !errors.Is(err, queue.ErrExists) {
			log.Warn("queued record not stored", "err", err)
		}
		return
	}
	if quiet(job) {
		return
	}
	s.report(ctx, log, repo, job, status.Pending, "queued")
	if now, err := s.store.Get(ctx, job.ID); err == nil && now.State.Terminal() && now.Status != "" {
		s.report(ctx, log, repo, job, status.State(now.Status), now.Message)
	}
}
