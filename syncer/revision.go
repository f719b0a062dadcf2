package syncer

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/syncer/source"
)

// RevisionError refuses a manual sync of a commit that is neither on the app's branch nor
// reachable from a tag: the commit of an unmerged pull request, or any other ref of the remote.
// Retrying does not fix it.
type RevisionError struct {
	// SHA is the commit the sync named.
	SHA string
	// Ref is the ref it was to come from, as the job named it.
	Ref string
	// Reason says why the commit is refused.
	Reason string
}

// Error implements error.
func (e *RevisionError) Error() string {
	return fmt.Sprintf("commit %s refused: %s", short(e.SHA), e.Reason)
}

// checkRevision makes sure a manual sync deploys only what was pushed to the app's branch or
// tagged: the job's commit must be reachable from the current tip of its ref, and that ref must be
// the branch the repository deploys (refs/heads/<branch>, or one matching its glob) or a tag
// (refs/tags/…). Without it, a commit fetched for a pull request's preview, or any remote ref such
// as refs/pull/N/head, could be deployed by naming it. The API refuses what it can tell from the
// request; this check runs in the worker, before anything is applied, so no job skips it. Other
// triggers come from the branch itself (pushes, polls, start-up) and are not checked here.
func (s *Syncer) checkRevision(ctx context.Context, app App, repo Repo, job queue.Job) error {
	if job.Kind != queue.KindDeploy || job.Trigger != queue.TriggerManual {
		return nil
	}
	refuse := func(reason string) error {
		return at(StageRevision, &RevisionError{SHA: job.SHA, Ref: job.Ref, Reason: reason})
	}
	ref, reason := revisionRef(repo.Branch, job.Ref)
	if reason != "" {
		return refuse(reason)
	}
	what := "branch " + strings.TrimPrefix(ref, "refs/heads/")
	if strings.HasPrefix(ref, "refs/tags/") {
		what = "tag " + strings.TrimPrefix(ref, "refs/tags/")
	}
	tip, err := s.fetch.Head(ctx, repo.Source, ref)
	if errors.Is(err, source.ErrRefNotFound) {
		return refuse(fmt.Sprintf("repo %s has no %s", repo.Name, what))
	}
	if err != nil {
		return at(StageFetch, err)
	}
	if err := s.fetch.Fetch(ctx, repo.Source, tip, ref); err != nil {
		return at(StageFetch, err)
	}
	// Fetching the ref brings every commit reachable from it: a commit still missing is not.
	err = s.fetch.Fetch(ctx, repo.Source, job.SHA, ref)
	if errors.Is(err, source.ErrCommitNotFound) {
		return refuse(fmt.Sprintf("it is not reachable from %s (at %s)", what, short(tip)))
	}
	if err != nil {
		return at(StageFetch, err)
	}
	in, err := s.fetch.IsAncestor(ctx, repo.Source, job.SHA, tip)
	if err != nil {
		return at(StageFetch, err)
	}
	if !in {
		return refuse(fmt.Sprintf("it is not reachable from %s (at %s)", what, short(tip)))
	}
	return nil
}

// revisionRef turns the ref of a manual job into the full ref its commit must be reachable from,
// or says why none fits: the job must name the deployed branch (or one matching its glob) or a
// tag. A short name is the branch if it matches, a tag otherwise.
func revisionRef(branch, ref string) (full, reason string) {
	matches := func(b string) bool {
		ok, _ := path.Match(branch, b)
		return ok
	}
	switch {
	case ref == "":
		return "", "the sync names no branch or tag to check it against"
	case strings.HasPrefix(ref, "refs/heads/"):
		if b := strings.TrimPrefix(ref, "refs/heads/"); !matches(b) {
			return "", fmt.Sprintf("branch %s is not the branch the app deploys (%s)", b, branch)
		}
		return ref, ""
	case strings.HasPrefix(ref, "refs/tags/"):
		return ref, ""
	case strings.HasPrefix(ref, "refs/"):
		return "", fmt.Sprintf("%s is neither the app's branch (%s) nor a tag", ref, branch)
	case matches(ref):
		return "refs/heads/" + ref, ""
	}
	return "refs/tags/" + ref, ""
}
