package handlers

import (
	"fmt"
	"strings"

	"github.com/ferrygitops/ferry/queue"
)

// Check run names ferry posts: ferry/<app> for a deploy, ferry/<app>/preview for a pull
// request's dry-run (the same as its commit status contexts).
const (
	checkPrefix        = "ferry/"
	previewCheckSuffix = "/preview"
)

// routeRerun turns a Re-run request into fresh jobs through the same kinds of job a push and a
// pull request make, so the worker's rules hold for them as for any other: newest commit wins
// (a Re-run of a commit older than the one the app runs, or than one queued, ends superseded),
// and a preview never touches the cluster.
//
//   - check_run ferry/<app>: a deploy of <app> at the check's commit, on the repository's branch.
//   - check_run ferry/<app>/preview: a preview of <app> for the pull request the check lists.
//   - check_suite: every app of the repository; deploys when the suite's branch is the deployed
//     branch, previews for its first pull request aimed at it.
//
// Checks of other Apps or tools, of apps ferry does not know and of repositories without a
// GitHub App are acknowledged and ignored, with the reason.
func (h *Hooks) routeRerun(repo hookRepo, ev Event) ([]queue.Job, string) {
	rr := ev.Rerun
	if rr == nil {
		return nil, "re-run event without a check"
	}
	if repo.GitHubApp == 0 {
		return nil, fmt.Sprintf("repo %s reports commit statuses, not check runs: the check is not ferry's", repo.Name)
	}
	if rr.AppID != repo.GitHubApp {
		return nil, fmt.Sprintf("the check belongs to GitHub App %d, not ferry's App %d", rr.AppID, repo.GitHubApp)
	}
	if rr.Check == "" {
		return h.rerunSuite(repo, ev)
	}
	name, ok := strings.CutPrefix(rr.Check, checkPrefix)
	if !ok {
		return nil, fmt.Sprintf("check run %q is not one of ferry's (ferry/<app>)", truncateName(rr.Check))
	}
	app, preview := strings.CutSuffix(name, previewCheckSuffix)
	n, ok := h.graph.byName[app]
	if !ok || n.repo != repo.Name {
		return nil, fmt.Sprintf("check run %q names no app of repo %s", truncateName(rr.Check), repo.Name)
	}
	if preview {
		pr, ignored := rerunPR(repo, rr)
		if ignored != "" {
			return nil, ignored
		}
		return []queue.Job{h.rerunPreview(repo, ev, n, pr)}, ""
	}
	ref, ignored := rerunRef(repo, rr)
	if ignored != "" {
		return nil, ignored
	}
	return []queue.Job{h.rerunDeploy(repo, ev, n, ref)}, ""
}

// rerunRef is the branch ref a deploy Re-run fetches its commit through: the repository's
// branch, or, when that is a glob, the suite's branch if it matches.
func rerunRef(repo hookRepo, rr *Rerun) (string, string) {
	if !strings.ContainsAny(repo.Branch, "*?[") {
		return "refs/heads/" + repo.Branch, ""
	}
	if rr.HeadBranch != "" && branchMatches(repo.Branch, rr.HeadBranch) {
		return "refs/heads/" + rr.HeadBranch, ""
	}
	return "", fmt.Sprintf("the check's branch %q does not match %s, the branches repo %s deploys", truncateName(rr.HeadBranch), repo.Branch, repo.Name)
}

// rerunPR is the pull request a preview Re-run previews: the first the check lists that aims
// at the deployed branch. GitHub lists none for a pull request from a fork.
func rerunPR(repo hookRepo, rr *Rerun) (PullRequest, string) {
	for _, pr := range rr.PRs {
		if branchMatches(repo.Branch, pr.BaseBranch) {
			return pr, ""
		}
	}
	if len(rr.PRs) == 0 {
		return PullRequest{}, "the check lists no pull request (GitHub lists none for a fork's); push to the pull request to preview it again"
	}
	return PullRequest{}, fmt.Sprintf("no pull request of the check targets %s, the branch repo %s deploys", repo.Branch, repo.Name)
}

// rerunSuite re-runs every ferry check of a suite: deploys of every app when the suite is on
// the deployed branch, previews of every app for its pull request otherwise.
func (h *Hooks) rerunSuite(repo hookRepo, ev Event) ([]queue.Job, string) {
	rr := ev.Rerun
	apps := h.graph.ofRepo(repo.Name)
	if len(apps) == 0 {
		return nil, fmt.Sprintf("repo %s has no apps", repo.Name)
	}
	var jobs []queue.Job
	if rr.HeadBranch != "" && branchMatches(repo.Branch, rr.HeadBranch) {
		for _, n := range apps {
			jobs = append(jobs, h.rerunDeploy(repo, ev, n, "refs/heads/"+rr.HeadBranch))
		}
	}
	if pr, ignored := rerunPR(repo, rr); ignored == "" {
		for _, n := range apps {
			jobs = append(jobs, h.rerunPreview(repo, ev, n, pr))
		}
	}
	if len(jobs) == 0 {
		return nil, fmt.Sprintf("the check suite is on branch %q, not %s, and lists no pull request aimed at it", truncateName(rr.HeadBranch), repo.Branch)
	}
	return jobs, ""
}

func (h *Hooks) rerunDeploy(repo hookRepo, ev Event, n *appNode, ref string) queue.Job {
	return queue.Job{
		ID: h.newID(), Kind: queue.KindDeploy, Trigger: queue.TriggerRerun,
		Repo: repo.Name, App: n.Name, Ref: ref, SHA: ev.Rerun.HeadSHA,
		DeliveryID: ev.DeliveryID, EnqueuedAt: h.now().UTC(),
	}
}

func (h *Hooks) rerunPreview(repo hookRepo, ev Event, n *appNode, pr PullRequest) queue.Job {
	return queue.Job{
		ID: h.newID(), Kind: queue.KindPreview, Trigger: queue.TriggerRerun,
		Repo: repo.Name, App: n.Name, Ref: pr.HeadRef, SHA: ev.Rerun.HeadSHA,
		DeliveryID: ev.DeliveryID, PR: pr.Number, BaseSHA: pr.BaseSHA, EnqueuedAt: h.now().UTC(),
	}
}
