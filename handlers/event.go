// Package handlers turns forge webhooks and API calls into queue jobs: verify, parse, route.
package handlers

import (
	"errors"
	"net/http"
	"time"
)

// EventKind is what a webhook delivery asks of ferry.
type EventKind string

const (
	// EventPing is the forge checking that the hook is reachable and correctly signed.
	EventPing EventKind = "ping"
	// EventPush moves a ref: a branch deploy when it is the repository's branch.
	EventPush EventKind = "push"
	// EventPullRequest is a pull/merge request whose head has new commits: a preview.
	EventPullRequest EventKind = "pull_request"
	// EventRerun is someone pressing Re-run on one of ferry's check runs, or on its check suite.
	EventRerun EventKind = "rerun"
	// EventIgnored is a delivery ferry acknowledges and does nothing with (Event.Ignored says why).
	EventIgnored EventKind = "ignored"
)

// Event is a webhook delivery reduced to what ferry acts on, the same for every forge.
type Event struct {
	Kind EventKind
	// DeliveryID is the forge's id of this delivery; redeliveries carry the same one.
	DeliveryID string
	// Ignored says why an EventIgnored delivery needs no work, for the response body.
	Ignored string
	// Repository is owner/name of the repository the delivery is about, as GitHub names it;
	// routing checks it where one webhook serves several repositories (a GitHub App's).
	Repository string

	// Push: the full ref (refs/heads/main), the heads before and after, whether the ref was deleted.
	Ref     string
	Before  string
	After   string
	Deleted bool
	// Changed is every path added, modified or removed by the pushed commits.
	Changed []string
	// Truncated is true when Changed may miss paths: the forge capped its commit list, listed
	// no commits for a moved ref, or the push was forced (commits dropped from the branch are
	// not listed). Routing then treats every app of the repository as changed.
	Truncated bool

	// PR is set for EventPullRequest.
	PR *PullRequest

	// Rerun is set for EventRerun.
	Rerun *Rerun
}

// Rerun is a request, from GitHub's Re-run button, to run again the check runs a GitHub App
// posted on a commit: one (check_run rerequested) or all of a suite (check_suite rerequested).
type Rerun struct {
	// AppID is the App that owns the check run or suite; only ferry's own are acted on.
	AppID int64
	// Check is the check run's name, ferry/<app> or ferry/<app>/preview; empty for a suite.
	Check string
	// HeadSHA is the commit the check ran on.
	HeadSHA string
	// HeadBranch is the branch the check suite was created for, when GitHub knows it.
	HeadBranch string
	// PRs are the pull requests whose head is HeadSHA, as GitHub lists them (never a fork's).
	PRs []PullRequest
}

// PullRequest is a pull/merge request whose head ferry previews.
type PullRequest struct {
	Number int
	Action string
	// HeadSHA is the commit the preview status is posted on.
	HeadSHA string
	// HeadRef is the ref the head can be fetched from in the base repository, forks included:
	// refs/pull/N/head (GitHub, Gitea) or refs/merge-requests/N/head (GitLab).
	HeadRef string
	// BaseBranch is the branch the request would merge into, without refs/heads/.
	BaseBranch string
	BaseSHA    string
}

// ErrSignature means the delivery is not signed with the repository's secret: 401.
var ErrSignature = errors.New("webhook signature does not match")

// ErrPayload means the body could not be understood: 400.
var ErrPayload = errors.New("webhook payload is malformed")

// provider is one forge's webhook dialect. Every provider verifies on the raw body before
// anything is parsed; an empty secret never verifies.
type provider interface {
	// verify checks the delivery's signature or token. It returns an error wrapping
	// ErrSignature and never mentions the secret or the received signature's value.
	verify(h http.Header, body []byte, secret []byte, now time.Time) error
	// precheck refuses, before the body is read, a delivery whose headers alone show it cannot
	// verify: no or malformed signature, a wrong plain token, a stale signing timestamp. Its
	// errors are verify's. A delivery it lets through must still pass verify.
	precheck(h http.Header, secret []byte, now time.Time) error
	// parse reads a verified delivery. It returns an error wrapping ErrPayload for bodies it
	// cannot read and an EventIgnored event for kinds ferry does not act on.
	parse(h http.Header, body []byte) (Event, error)
}
