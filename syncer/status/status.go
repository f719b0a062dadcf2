// Package status posts ferry's commit statuses to the forges: GitHub, GitLab and Gitea.
package status

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
	"unicode/utf8"
)

// State is a commit status state in ferry's terms; each forge maps it to its own.
type State string

const (
	Pending State = "pending"
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
	// Detail is the sync's full account for reporters that show more than a line (check runs,
	// merge request notes); nil when there is none. Commit-status reporters ignore it. It is a
	// pointer so that statuses stay cheap to pass; Dedup compares it by content, not identity.
	Detail *Detail
}

// Reporter posts a status for one repository.
type Reporter interface {
	Report(ctx context.Context, s Status) error
}

// DefaultHTTPTimeout bounds one request to a forge when the caller passes no *http.Client: a forge
// that hangs must not hold a worker, and Retry decides whether to try again.
const DefaultHTTPTimeout = 30 * time.Second

// userAgent names ferry to the forges, so their operators can tell its calls apart.
const userAgent = "ferry"

// validate refuses a Status that no forge could take, before any request is made; the error is
// permanent because sending it again cannot make it valid.
func (s Status) validate() error {
	switch {
	case s.SHA == "":
		return permanent(errors.New("status has no commit sha"))
	case s.Context == "":
		return permanent(errors.New("status has no context"))
	}
	switch s.State {
	case Pending, Success, Failure, Canceled, Skipped:
		return nil
	}
	return permanent(fmt.Errorf("unknown status state %q", s.State))
}

// cutDescription fits d into MaxDescription runes, ending a cut one with "…" so readers can tell
// there was more (the full story is behind TargetURL).
func cutDescription(d string) string {
	if utf8.RuneCountInString(d) <= MaxDescription {
		return d
	}
	runes := []rune(d)
	return string(runes[:MaxDescription-1]) + "…"
}

// shortSHA keeps errors and logs readable; 12 hex digits are unambiguous in practice.
func shortSHA(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

// defaultClient gives a forge client a bounded timeout when the caller has no client of its own.
func defaultClient(hc *http.Client) *http.Client {
	if hc != nil {
		return hc
	}
	return &http.Client{Timeout: DefaultHTTPTimeout}
}
