// Package status posts ferry's commit statuses to the forges: GitHub, GitLab and Gitea.
package status

import "context"

// State is a commit status state in ferry's terms; each forge maps it to its own.
type State string

const (
	Pending State = "pending"
	Running State = "running"
	Success State = "success"
	Failure State = "failure"
	// Canceled is a commit that was not synced because a newer one was (GitLab: canceled;
	// GitHub and Gitea have no such state and get failure).
	Canceled State = "canceled"
	// Skipped is a commit whose changes were contained in a newer one that was synced (GitLab:
	// skipped; GitHub and Gitea get success).
	Skipped State = "skipped"
)

// MaxDescription is the longest description GitHub accepts; longer ones are cut to fit.
const MaxDescription = 140

// Status is one commit status as ferry posts it.
type Status struct {
	SHA string
	// Context is ferry/<app> or ferry/<app>/preview.
	Context     string
	State       State
	Description string
	TargetURL   string
}

// Reporter posts a status for one repository.
type Reporter interface {
	Report(ctx context.Context, s Status) error
}
