package syncer

import (
	"context"
	"errors"
	"log/slog"
	"strings"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/syncer/status"
)

// notifyBuffer bounds the stored-job notices waiting for their pending status; when it is full
// the notice is dropped, and the worker posts the pending status when it starts the job.
const notifyBuffer = 1024

// report posts a commit status, with the sync's account (detail) for the reporters that show it.
// A status that cannot be posted is logged; it never fails the sync (the reporter retries
// transient errors itself).
func (s *Syncer) report(ctx context.Context, log *slog.Logger, repo Repo, job queue.Job, state status.State, desc string, detail *status.Detail) {
	if repo.Reporter == nil {
		return
	}
	st := status.Status{SHA: job.SHA, Context: statusContext(job), State: state, Description: desc, TargetURL: s.SyncURL(job.ID), Detail: detail}
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
	s.report(ctx, log, repo, job, status.Pending, "queued", s.detail(job, queuedRecord(job), status.PhaseQueued))
	if now, err := s.store.Get(ctx, job.ID); err == nil && now.State.Terminal() && now.Status != "" {
		s.report(ctx, log, repo, job, status.State(now.Status), now.Message, s.detail(job, now, status.PhaseDone))
	}
}

// detail is a sync's account for check runs and merge request notes, from its record: counts,
// the objects it touched, a preview's diff per object, and what failed. Only a sync that is done
// has more than its identity and links.
func (s *Syncer) detail(job queue.Job, rec queue.Record, phase status.Phase) *status.Detail {
	d := &status.Detail{App: job.App, Kind: status.KindDeploy, Phase: phase, SyncID: job.ID, SyncURL: s.SyncURL(job.ID)}
	if job.Kind == queue.KindPreview {
		d.Kind, d.PR = status.KindPreview, job.PR
	}
	if phase != status.PhaseDone {
		return d
	}
	c := rec.Counts
	d.Counts = status.Counts{Created: c["created"], Changed: c["changed"] + c["configured"], Unchanged: c["unchanged"], Pruned: c["pruned"]}
	for _, o := range rec.Objects {
		if a := objectAction(o.Action); a != "" {
			d.Objects = append(d.Objects, status.Object{Action: a, Kind: o.Kind, Namespace: o.Namespace, Name: o.Name})
		}
	}
	d.ObjectsCut = rec.ObjectsCut
	if job.Kind == queue.KindPreview {
		var cut bool
		d.Diff, cut = objectDiffs(rec.Diff)
		d.DiffCut = rec.DiffCut || cut
		if rec.DiffCut {
			d.FullDiffURL = d.SyncURL + "/diff"
		}
	}
	if e := rec.Error; e != nil {
		d.Failure = &status.FailureDetail{Stage: e.Stage, Object: e.Object, File: e.File, Message: e.Message}
	}
	return d
}

// objectAction names a record's action (a deploy's apply.Action, or a preview's apply.PlanAction)
// as reports do; unchanged objects are only counted, so they get "".
func objectAction(a string) string {
	switch a {
	case "created", "create":
		return "created"
	case "configured", "change":
		return "changed"
	case "pruned", "prune":
		return "pruned"
	case "unchanged":
		return ""
	}
	return a
}

// MaxDetailDiff bounds the diff a status carries: its readers show far less (a check run takes
// 64 KiB) and link the sync page for the rest, and every post of it is digested by Dedup.
const MaxDetailDiff = 1 << 20

// objectDiffs splits a preview's diff (apply.Plan.Text: a header line per object, its field
// changes indented under it) into one entry per object, within MaxDetailDiff bytes (cut reports
// whether it had to stop short). Unchanged objects are left out, and so is the note that ends a
// diff cut to fit its record (Record.DiffCut says so).
func objectDiffs(text string) (out []status.ObjectDiff, cut bool) {
	keep := false
	size := 0
	for line := range strings.Lines(text) {
		if size += len(line); size > MaxDetailDiff {
			return out, true
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case strings.TrimSpace(line) == "":
		case strings.HasPrefix(line, " "):
			if keep && len(out) > 0 {
				out[len(out)-1].Lines = append(out[len(out)-1].Lines, strings.TrimLeft(line, " "))
			}
		case strings.HasPrefix(line, "= "), strings.HasPrefix(line, "…"):
			keep = false
		default:
			out = append(out, status.ObjectDiff{Header: line})
			keep = true
		}
	}
	return out, false
}
