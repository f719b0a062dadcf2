package syncer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/syncer/apply"
	"github.com/ferrygitops/ferry/syncer/render"
	"github.com/ferrygitops/ferry/syncer/source"
	"github.com/ferrygitops/ferry/syncer/status"
)

// A job waiting for its dependencies is looked at again after dependencyPoll times its attempt,
// at most maxDependencyPoll.
const (
	dependencyPoll    = time.Second
	maxDependencyPoll = 10 * time.Second
)

// deploy applies one app at one commit and reports on it.
func (s *Syncer) deploy(ctx context.Context, log *slog.Logger, app App, repo Repo, job queue.Job, d queue.Delivery, rec queue.Record) error {
	if done, err := s.supersede(ctx, log, app, repo, job, rec); done || err != nil {
		return err
	}
	if wait, err := s.dependencies(ctx, app); err != nil {
		if errors.Is(err, errDependencyFailed) {
			return s.fail(ctx, log, repo, job, rec, &queue.RecordError{Stage: "dependencies", Message: err.Error()}, err)
		}
		return s.retryOrFail(ctx, log, repo, job, d, rec, "dependencies", err)
	} else if wait != "" {
		if s.opts.Now().Sub(job.EnqueuedAt) > s.opts.DependencyWait || d.Last {
			err := fmt.Errorf("dependency %s did not finish within %s", wait, s.opts.DependencyWait)
			return s.fail(ctx, log, repo, job, rec, &queue.RecordError{Stage: "dependencies", Message: err.Error()}, err)
		}
		if !quiet(job) {
			s.report(ctx, log, repo, job, status.Pending, "waiting for dependency "+wait)
		}
		return queue.Retry(fmt.Errorf("waiting for dependency %s", wait), min(dependencyPoll*time.Duration(d.Attempt), maxDependencyPoll))
	}

	if job.Unfiltered {
		if touched, err := s.pushTouches(ctx, app, repo, job); err == nil && !touched {
			return s.succeed(ctx, log, repo, job, rec, "no changes under "+app.Path)
		} else if err != nil {
			log.Info("cannot tell what the push changed; syncing the app", "err", err)
		}
	}

	start := s.opts.Now()
	rec.State = queue.StateRunning
	rec.StartedAt = &start
	rec.Worker = s.opts.Worker
	rec.Error = nil
	s.put(ctx, log, rec)
	if !quiet(job) {
		s.report(ctx, log, repo, job, status.Pending, "syncing "+short(job.SHA))
	}

	if err := s.checkRevision(ctx, app, repo, job); err != nil {
		return s.retryOrFail(ctx, log, repo, job, d, rec, stageOf(err, stageRevision), err)
	}
	objs, phases, inputs, err := s.load(ctx, app, repo, job)
	if err != nil {
		if errors.Is(err, source.ErrCommitNotFound) && s.opts.Now().Sub(job.EnqueuedAt) < s.opts.CommitWait && !d.Last {
			log.Info("commit not served yet, waiting for it", "err", err)
			return queue.Retry(err, 2*time.Second)
		}
		return s.retryOrFail(ctx, log, repo, job, d, rec, stageOf(err, "fetch"), err)
	}
	rec.Phases = phases
	s.learnInputs(ctx, log, app, job.SHA, inputs)

	timeout := app.Timeout
	if timeout <= 0 {
		timeout = s.opts.DefaultTimeout
	}
	res, err := s.apply.Sync(ctx, apply.App{Name: app.Name, Namespace: app.Namespace, Prune: app.Prune, Timeout: timeout}, job.SHA, objs)
	if res != nil {
		fillResult(&rec, res)
	}
	if err != nil {
		return s.retryOrFail(ctx, log, repo, job, d, rec, "apply", err)
	}
	took := s.opts.Now().Sub(start)
	desc := fmt.Sprintf("applied %d objects in %s", len(objs), roundTook(took))
	if n := rec.Counts["pruned"]; n > 0 {
		desc += fmt.Sprintf(", pruned %d", n)
	}
	if quiet(job) && rec.Counts["created"]+rec.Counts["configured"]+rec.Counts["pruned"] == 0 {
		// A start-up or self-heal sync that found the cluster as Git says: the commit already
		// carries its status, and a restart must not post it again.
		return s.succeedQuietly(ctx, log, job, rec, "nothing to change")
	}
	return s.succeed(ctx, log, repo, job, rec, desc)
}

// quiet jobs re-sync a commit that already has its status (start-up recovery, self-heal): they
// post a status only when they change the cluster or fail.
func quiet(job queue.Job) bool {
	return job.Trigger == queue.TriggerStartup || job.Trigger == queue.TriggerDrift
}

// pushTouches diffs a push whose forge payload did not list every changed path: the app is
// touched when a file under its path, or under the path of an app it depends on (in the same
// repository, transitively), changed.
func (s *Syncer) pushTouches(ctx context.Context, app App, repo Repo, job queue.Job) (bool, error) {
	changed, err := s.changedSince(ctx, repo, job.Before, job.SHA, job.Ref)
	if err != nil {
		return true, err
	}
	seen := map[string]bool{}
	var walk func(a App) bool
	walk = func(a App) bool {
		if seen[a.Name] {
			return false
		}
		seen[a.Name] = true
		if a.Repo == app.Repo {
			if touched, _ := s.appTouched(ctx, a, repo, job.SHA, changed); touched {
				return true
			}
		}
		for _, d := range a.DependsOn {
			if walk(s.apps[d]) {
				return true
			}
		}
		return false
	}
	return walk(app), nil
}

// appTouched reports whether the changed paths reach what app renders from at sha: its path,
// or a base, component or file elsewhere in the repository that its kustomization reads. When
// that cannot be told (the tree or the kustomization is broken), the app counts as touched, so
// that its sync or preview reports the problem.
func (s *Syncer) appTouched(ctx context.Context, app App, repo Repo, sha string, changed []string) (bool, error) {
	if underAny(path.Clean(app.Path), changed) {
		return true, nil
	}
	files, err := s.fetch.Files(ctx, repo.Source, sha, app.Path)
	if err != nil {
		return true, err
	}
	inputs, err := render.Inputs(files, app.Path)
	if err != nil {
		return true, err
	}
	return render.Touched(inputs, changed), nil
}

// changedSince fetches both commits (to through ref, from through the repository's branches) and
// lists the paths that differ between them.
func (s *Syncer) changedSince(ctx context.Context, repo Repo, from, to, ref string) ([]string, error) {
	if err := s.fetch.Fetch(ctx, repo.Source, to, ref); err != nil {
		return nil, err
	}
	if err := s.fetch.Fetch(ctx, repo.Source, from); err != nil {
		return nil, err
	}
	return s.fetch.Changed(ctx, repo.Source, from, to)
}

func underAny(dir string, paths []string) bool {
	dir = strings.Trim(dir, "/")
	for _, p := range paths {
		if dir == "." || dir == "" || p == dir || strings.HasPrefix(p, dir+"/") {
			return true
		}
	}
	return false
}

// load fetches the commit and renders the app's path. inputs are what the render read
// (render.Inputs); they are nil when that cannot be told.
func (s *Syncer) load(ctx context.Context, app App, repo Repo, job queue.Job) (objs []render.Object, phases map[string]int64, inputs []string, err error) {
	phases = map[string]int64{}
	t := s.opts.Now()
	var refs []string
	switch {
	case strings.HasPrefix(job.Ref, "refs/"):
		refs = []string{job.Ref}
	case job.Ref != "":
		// A manual resync may name a branch or a tag by its short name.
		refs = []string{"refs/heads/" + job.Ref, "refs/tags/" + job.Ref}
	}
	if err := s.fetch.Fetch(ctx, repo.Source, job.SHA, refs...); err != nil {
		return nil, phases, nil, &stageError{stage: "fetch", err: err}
	}
	files, err := s.fetch.Files(ctx, repo.Source, job.SHA, app.Path)
	if err != nil {
		return nil, phases, nil, &stageError{stage: "fetch", err: err}
	}
	phases["fetch"] = s.opts.Now().Sub(t).Milliseconds()
	t = s.opts.Now()
	objs, err = render.Render(files, app.Path, render.Options{})
	if err != nil {
		return nil, phases, nil, &stageError{stage: "render", err: err}
	}
	inputs, _ = render.Inputs(files, app.Path) // it refuses only what Render just accepted
	phases["render"] = s.opts.Now().Sub(t).Milliseconds()
	return objs, phases, inputs, nil
}

// learnInputs records, for webhook routing on every replica, the paths outside the app's own
// that its render of sha read (kustomize bases and files elsewhere in the repository), so that a
// push changing only a shared base syncs the apps built on it at once. It writes only when they
// differ from what this process last recorded; a failure to record costs only that routing,
// which the next poll makes up for.
func (s *Syncer) learnInputs(ctx context.Context, log *slog.Logger, app App, sha string, inputs []string) {
	if inputs == nil {
		return
	}
	dir := strings.Trim(path.Clean(app.Path), "/")
	outside := []string{}
	for _, in := range inputs {
		if !underAny(dir, []string{in}) {
			outside = append(outside, in)
		}
	}
	s.learnedMu.Lock()
	known, ok := s.learned[app.Name]
	s.learnedMu.Unlock()
	if ok && slices.Equal(known, outside) {
		return
	}
	if err := s.store.PutInputs(ctx, queue.Inputs{App: app.Name, SHA: sha, Paths: outside}); err != nil {
		log.Warn("inputs not recorded", "err", err)
		return
	}
	s.learnedMu.Lock()
	s.learned[app.Name] = outside
	s.learnedMu.Unlock()
}

// dependencies returns the name of an app this one must still wait for, or errDependencyFailed
// when one of them ended in failure at its latest commit.
func (s *Syncer) dependencies(ctx context.Context, app App) (string, error) {
	for _, dep := range app.DependsOn {
		n, err := s.backlog.Backlog(ctx, queue.KindDeploy, dep)
		if err != nil {
			return "", err
		}
		if n > 0 {
			return dep, nil
		}
		st, ok, err := s.store.AppState(ctx, dep)
		if err != nil {
			return "", err
		}
		if !ok {
			// Never synced and nothing queued: it must be synced first (recovery enqueues it).
			return dep, nil
		}
		if st.State == queue.StateFailed {
			return "", &dependencyError{dep: dep}
		}
	}
	return "", nil
}

// supersede skips a job when the app already went past its commit or a newer one is queued.
func (s *Syncer) supersede(ctx context.Context, log *slog.Logger, app App, repo Repo, job queue.Job, rec queue.Record) (bool, error) {
	if job.Trigger == queue.TriggerManual {
		return false, nil
	}
	if job.Trigger == queue.TriggerPush {
		// Another sync already applied this very commit (say, start-up recovery while this job
		// waited for redelivery after a crash): the commit has its final status from that sync.
		if st, ok, err := s.store.AppState(ctx, app.Name); err == nil && ok && st.AppliedSHA == job.SHA && st.SyncID != job.ID {
			return true, s.succeedQuietly(ctx, log, job, rec, "already applied by sync "+st.SyncID)
		}
	}
	newer := ""
	if j, ok, err := s.backlog.Newest(ctx, queue.KindDeploy, app.Name); err == nil && ok && j.SHA != job.SHA && j.EnqueuedAt.After(job.EnqueuedAt) {
		// A hook queued later may carry an older commit (out-of-order delivery): a queued commit
		// that this one already contains supersedes nothing.
		if behind, err := s.fetchAncestor(ctx, repo, j.SHA, job.SHA); err != nil || !behind {
			newer = j.SHA
		}
	}
	if newer == "" {
		if st, ok, err := s.store.AppState(ctx, app.Name); err == nil && ok && st.AppliedSHA != "" && st.AppliedSHA != job.SHA {
			// An out-of-order delivery: the app already runs a commit that contains this one.
			if in, err := s.fetchAncestor(ctx, repo, job.SHA, st.AppliedSHA); err == nil && in {
				newer = st.AppliedSHA
			}
		}
	}
	if newer == "" {
		return false, nil
	}
	contained, err := s.fetchAncestor(ctx, repo, job.SHA, newer)
	if err != nil {
		log.Info("cannot tell whether the newer commit contains this one", "err", err)
	}
	state, desc := status.Canceled, "superseded by "+short(newer)
	if contained {
		state, desc = status.Skipped, "included in "+short(newer)
	}
	now := s.opts.Now()
	rec.State, rec.Message, rec.FinishedAt, rec.Status = queue.StateSkipped, desc, &now, string(state)
	s.put(ctx, log, rec)
	if !quiet(job) {
		s.report(ctx, log, repo, job, state, desc)
	}
	s.metrics.finished(job, queue.StateSkipped, 0)
	log.Info("sync skipped", "reason", desc)
	return true, nil
}

func (s *Syncer) fetchAncestor(ctx context.Context, repo Repo, a, b string) (bool, error) {
	if err := s.fetch.Fetch(ctx, repo.Source, b); err != nil {
		return false, err
	}
	if err := s.fetch.Fetch(ctx, repo.Source, a); err != nil {
		return false, err
	}
	return s.fetch.IsAncestor(ctx, repo.Source, a, b)
}

// retryOrFail retries transient errors within their budget and fails the sync otherwise.
func (s *Syncer) retryOrFail(ctx context.Context, log *slog.Logger, repo Repo, job queue.Job, d queue.Delivery, rec queue.Record, stage string, err error) error {
	rec.Failures++
	if transient(err) && !d.Last && rec.Failures < s.opts.TransientAttempts {
		delay := backoff(rec.Failures)
		log.Warn("sync hit a transient error, retrying", "stage", stage, "delay", delay, "err", err)
		rec.Message = fmt.Sprintf("attempt %d failed, retrying in %s: %v", rec.Failures, delay, err)
		s.put(ctx, log, rec)
		return queue.Retry(err, delay)
	}
	return s.fail(ctx, log, repo, job, rec, describe(stage, err), err)
}

// transient asks the part that failed whether its error may pass: the Git host for fetches,
// the apiserver for applies; a render error never passes by itself.
func transient(err error) bool {
	switch stageOf(err, "apply") {
	case "fetch":
		return source.IsTransient(err)
	case "render":
		return false
	case "dependencies":
		return true
	}
	return apply.IsTransient(err)
}

// backoff grows from 1s to 60s with the attempt number.
func backoff(attempt int) time.Duration {
	d := time.Second << min(attempt-1, 6)
	return min(d, time.Minute)
}

// describe turns an error into the record's user-facing account.
func describe(stage string, err error) *queue.RecordError {
	msg := err.Error()
	var se *stageError
	if errors.As(err, &se) {
		msg = se.err.Error()
	}
	re := &queue.RecordError{Stage: stage, Message: msg}
	var ae *apply.Error
	if errors.As(err, &ae) {
		re.Stage, re.Object, re.File, re.Message = ae.Stage, ae.Object, ae.File, ae.Message
		if re.Stage == "" {
			re.Stage = stage
		}
	}
	return re
}

// dependencyError ends a dependent's sync: an app it depends on failed at its latest commit.
type dependencyError struct{ dep string }

func (e *dependencyError) Error() string        { return "dependency " + e.dep + " failed" }
func (e *dependencyError) Is(target error) bool { return target == errDependencyFailed }

// stageError says which step of the sync failed.
type stageError struct {
	stage string
	err   error
}

func (e *stageError) Error() string { return e.stage + ": " + e.err.Error() }
func (e *stageError) Unwrap() error { return e.err }

func stageOf(err error, def string) string {
	var se *stageError
	if errors.As(err, &se) {
		return se.stage
	}
	return def
}

func fillResult(rec *queue.Record, res *apply.Result) {
	rec.Counts = map[string]int{"created": res.Created, "configured": res.Configured, "unchanged": res.Unchanged, "pruned": res.Pruned}
	rec.Objects = rec.Objects[:0]
	for _, o := range res.Objects {
		rec.Objects = append(rec.Objects, queue.ObjectRecord{Kind: o.ID.Kind, Namespace: o.ID.Namespace, Name: o.ID.Name, Action: string(o.Action)})
	}
	if rec.Phases == nil {
		rec.Phases = map[string]int64{}
	}
	rec.Phases["apply"] = res.Durations.Apply.Milliseconds()
	rec.Phases["prune"] = res.Durations.Prune.Milliseconds()
	rec.Phases["health"] = res.Durations.Health.Milliseconds()
}

// roundTook keeps a duration short for a status line: 340ms, 1.4s, 2m3s.
func roundTook(d time.Duration) time.Duration {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond)
	case d < time.Minute:
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Second)
}
