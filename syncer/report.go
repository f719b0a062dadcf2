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
