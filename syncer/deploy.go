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
	"github.com/ferrygitops/ferry/syncer/policy"
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
func (r *run) deploy(ctx context.Context) error {
	if done, err := r.suspended(ctx); done || err != nil {
		return err
	}
	if done, err := r.supersede(ctx); done || err != nil {
		return err
	}
	s, app, job := r.s, r.app, r.job
	if wait, err := s.dependencies(ctx, app); err != nil {
		return r.retryOrFail(ctx, at(StageDependencies, err))
	} else if wait != "" {
		if s.opts.Now().Sub(job.EnqueuedAt) > s.opts.DependencyWait || r.d.Last {
			return r.fail(ctx, at(StageDependencies, fmt.Errorf("dependency %s did not finish within %s", wait, s.opts.DependencyWait)))
		}
		r.pending(ctx, "waiting for dependency "+wait)
		return queue.Retry(fmt.Errorf("waiting for dependency %s", wait), min(dependencyPoll*time.Duration(r.d.Attempt), maxDependencyPoll))
	}

	if job.Unfiltered {
		if touched, err := s.pushTouches(ctx, app, r.repo, job); err == nil && !touched {
			return r.succeed(ctx, "no changes under "+app.Path)
		} else if err != nil {
			r.log.Info("cannot tell what the push changed; syncing the app", "err", err)
		}
	}

	if err := r.markRunning(ctx, "syncing "+short(job.SHA)); err != nil || r.rec.State.Terminal() {
		return err
	}
	start := *r.rec.StartedAt
	if err := s.checkRevision(ctx, app, r.repo, job); err != nil {
		return r.retryOrFail(ctx, err)
	}
	l, err := s.load(ctx, app, r.repo, job)
	r.rec.Phases, r.rec.Chart = l.phases, l.chart
	if err != nil {
		return r.fetchFailed(ctx, err)
	}
	objs := l.objs
	s.learnInputs(ctx, r.log, app, job.SHA, l.inputs)

	t, err := s.target(app)
	if err != nil {
		return r.retryOrFail(ctx, at(StageApply, err))
	}
	res, err := t.Sync(ctx, s.applyApp(app), job.SHA, objs)
	if res != nil {
		fillResult(&r.rec, res)
	}
	if err != nil {
		return r.retryOrFail(ctx, at(StageApply, err))
	}
	took := s.opts.Now().Sub(start)
	desc := fmt.Sprintf("applied %d objects in %s", len(objs), roundTook(took))
	if n := r.rec.Counts["pruned"]; n > 0 {
		desc += fmt.Sprintf(", pruned %d", n)
	}
	if quiet(job) && r.rec.Counts["created"]+r.rec.Counts["configured"]+r.rec.Counts["pruned"] == 0 {
		// A start-up or self-heal sync that found the cluster as Git says: the commit already
		// carries its status, and a restart must not post it again.
		return r.succeedQuietly(ctx, "nothing to change")
	}
	return r.succeed(ctx, desc)
}

// applyApp is what the engine needs to know of an app (a zero Timeout is the engine's default).
// Its policy is checked by the engine on the objects as they would be applied, for deploys,
// previews and diffs alike, before anything is written.
func (s *Syncer) applyApp(app App) apply.App {
	return apply.App{Name: app.Name, Namespace: app.Namespace, Prune: app.Prune, Timeout: app.Timeout,
		ServiceAccount: app.ServiceAccount, Admit: policy.Admit(app.Policy)}
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
	inputs, err := render.Inputs(files, app.Path, s.renderOptions(app))
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

// loaded is an app rendered at one commit.
type loaded struct {
	objs []render.Object
	// phases are the milliseconds fetch and render took.
	phases map[string]int64
	// inputs are what the render read (render.Inputs); nil when that cannot be told.
	inputs []string
	// chart is the remote chart rendered, "ref@digest", if any.
	chart string
}

// load fetches the commit (and the app's remote chart) and renders the app's path.
func (s *Syncer) load(ctx context.Context, app App, repo Repo, job queue.Job) (loaded, error) {
	l := loaded{phases: map[string]int64{}}
	t := s.opts.Now()
	if err := s.fetch.Fetch(ctx, repo.Source, job.SHA, refsOf(job)...); err != nil {
		return l, at(StageFetch, err)
	}
	files, err := s.fetch.Files(ctx, repo.Source, job.SHA, app.Path)
	if err != nil {
		return l, at(StageFetch, err)
	}
	p, err := s.prepare(ctx, app, files)
	l.chart = p.chart
	if err != nil {
		return l, err
	}
	l.phases["fetch"] = s.opts.Now().Sub(t).Milliseconds()
	t = s.opts.Now()
	if l.objs, err = render.Render(p.files, app.Path, p.opts); err != nil {
		return l, at(StageRender, err)
	}
	l.inputs, _ = render.Inputs(p.files, app.Path, p.opts) // it refuses only what Render just accepted
	l.phases["render"] = s.opts.Now().Sub(t).Milliseconds()
	return l, nil
}

// refsOf lists the refs through which the job's commit is fetched.
func refsOf(job queue.Job) []string {
	switch {
	case strings.HasPrefix(job.Ref, "refs/"):
		return []string{job.Ref}
	case job.Ref != "":
		// A manual resync may name a branch or a tag by its short name.
		return []string{"refs/heads/" + job.Ref, "refs/tags/" + job.Ref}
	}
	return nil
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

// supersede ends a job that must not be applied: its commit was already applied by another
// sync, a newer commit is queued, or the app already runs a commit that contains it. A push or
// poll never moves an app to a commit that does not descend from the one it runs, unless that
// commit is the branch's head now (a forced push): a replayed old delivery changes nothing.
// Only a manual sync may roll back, on purpose.
func (r *run) supersede(ctx context.Context) (bool, error) {
	if r.job.Trigger == queue.TriggerManual {
		return false, nil
	}
	s, job := r.s, r.job
	st, known, err := s.store.AppState(ctx, r.app.Name)
	if err != nil {
		r.log.Info("app state not read; newest-commit-wins decides from the queue alone", "err", err)
		known = false
	}
	if job.Trigger == queue.TriggerPush && known && st.AppliedSHA == job.SHA && st.SyncID != job.ID {
		// Another sync already applied this very commit (start-up recovery, a poll, or the
		// same hook on another path): the job's own pending status, if any, gets its result.
		return true, r.succeedQuietly(ctx, "already applied by sync "+st.SyncID)
	}
	newer := ""
	if j, ok, err := s.backlog.Newest(ctx, queue.KindDeploy, r.app.Name); err == nil && ok && j.SHA != job.SHA && j.EnqueuedAt.After(job.EnqueuedAt) {
		// A hook queued later may carry an older commit (out-of-order delivery): a queued commit
		// that this one already contains supersedes nothing.
		if behind, err := s.fetchAncestor(ctx, r.repo, j.SHA, job.SHA); err != nil || !behind {
			newer = j.SHA
		}
	}
	if newer == "" && known && st.AppliedSHA != "" && st.AppliedSHA != job.SHA {
		within, desc, err := r.against(ctx, st.AppliedSHA)
		switch {
		case err != nil:
			return true, err
		case within:
			// An out-of-order or replayed delivery: the app already runs a commit containing it.
			newer = st.AppliedSHA
		case desc != "":
			return true, r.skip(ctx, status.Canceled, desc)
		}
	}
	if newer == "" {
		return false, nil
	}
	contained, err := s.fetchAncestor(ctx, r.repo, job.SHA, newer)
	if err != nil {
		r.log.Info("cannot tell whether the newer commit contains this one", "err", err)
	}
	if contained {
		return true, r.skip(ctx, status.Skipped, "included in "+short(newer))
	}
	return true, r.skip(ctx, status.Canceled, "superseded by "+short(newer))
}

// against places the job's commit relative to applied, the commit the app runs: within is true
// when applied contains it; desc, when not empty, says why it must not replace applied (it
// neither descends from applied nor is the head of its branch now). A non-nil error has ended
// the run (a retry, or a failure).
func (r *run) against(ctx context.Context, applied string) (within bool, desc string, err error) {
	if err := r.s.fetch.Fetch(ctx, r.repo.Source, r.job.SHA, refsOf(r.job)...); err != nil {
		return false, "", r.fetchFailed(ctx, at(StageFetch, err))
	}
	if r.s.fetch.Fetch(ctx, r.repo.Source, applied) == nil {
		// A running commit the remote no longer has (history rewritten and collected) contains
		// nothing and is an ancestor of nothing: only the head may replace it.
		if within, err = r.s.fetch.IsAncestor(ctx, r.repo.Source, r.job.SHA, applied); err != nil {
			return false, "", r.retryOrFail(ctx, at(StageFetch, err))
		}
		if within {
			return true, "", nil
		}
		ahead, err := r.s.fetch.IsAncestor(ctx, r.repo.Source, applied, r.job.SHA)
		if err != nil {
			return false, "", r.retryOrFail(ctx, at(StageFetch, err))
		}
		if ahead {
			return false, "", nil
		}
	}
	branch := strings.TrimPrefix(r.job.Ref, "refs/heads/")
	head, err := r.s.fetch.Head(ctx, r.repo.Source, branch)
	if err != nil {
		return false, "", r.retryOrFail(ctx, at(StageFetch, fmt.Errorf("head of %s: %w", branch, err)))
	}
	if head == r.job.SHA {
		return false, "", nil
	}
	return false, fmt.Sprintf("not applied: %s does not descend from the running %s and is not the head of %s", short(r.job.SHA), short(applied), branch), nil
}

// fetchFailed answers a fetch error: a commit the forge announced but the Git host does not
// serve yet is waited for (CommitWait); anything else is retried or failed by its kind.
func (r *run) fetchFailed(ctx context.Context, err error) error {
	if errors.Is(err, source.ErrCommitNotFound) && r.s.opts.Now().Sub(r.job.EnqueuedAt) < r.s.opts.CommitWait && !r.d.Last {
		r.log.Info("commit not served yet, waiting for it", "err", err)
		return r.retry(ctx, err, 2*time.Second)
	}
	return r.retryOrFail(ctx, err)
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

// backoff grows from 1s to 60s with the attempt number.
func backoff(attempt int) time.Duration {
	d := time.Second << min(attempt-1, 6)
	return min(d, time.Minute)
}

// dependencyError ends a dependent's sync: an app it depends on failed at its latest commit.
type dependencyError struct{ dep string }

func (e *dependencyError) Error() string        { return "dependency " + e.dep + " failed" }
func (e *dependencyError) Is(target error) bool { return target == errDependencyFailed }

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
