package status

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	gitlab "gitlab.com/gitlab-org/api/client-go"
)

// gitLabNoTransitionText is how GitLab refuses a status equal to the one the commit already has
// (posting running twice: "Cannot transition status via :run from :running"). The commit shows
// what ferry wanted, so the post counts as done.
const gitLabNoTransitionText = "Cannot transition status"

// gitLabDefaultURL is used when the config gives no apiURL.
const gitLabDefaultURL = "https://gitlab.com"

// gitLabStates maps ferry's states onto GitLab's, which has all of them (as "failed" for failure).
var gitLabStates = map[State]gitlab.BuildStateValue{
	Pending:  gitlab.Pending,
	Success:  gitlab.Success,
	Failure:  gitlab.Failed,
	Canceled: gitlab.Canceled,
	Skipped:  gitlab.Skipped,
}

// GitLab posts commit statuses to one project on gitlab.com or a self-hosted GitLab.
type GitLab struct {
	client  *gitlab.Client
	project string
	// token is kept only to scrub it from messages GitLab sends back.
	token string
	now   func() time.Time
}

var _ Reporter = (*GitLab)(nil)

// NewGitLab returns a Reporter for project, its full path ("group/sub/proj"). apiURL is empty for
// gitlab.com, or the instance address (/api/v4/ is added unless present). hc may be nil for a
// client with DefaultHTTPTimeout. The token needs the api scope.
//
// The library's own retries are turned off so that Retry is the one place that decides, and logs,
// when to try again; otherwise a 5xx would be retried up to 6×6 times.
func NewGitLab(hc *http.Client, apiURL, token, project string) (*GitLab, error) {
	c, project, err := newGitLabClient("gitlab", hc, apiURL, token, project)
	if err != nil {
		return nil, err
	}
	return &GitLab{client: c, project: project, token: token, now: time.Now}, nil
}

// newGitLabClient checks what a GitLab reporter is given and builds its API client, for
// project ("group/sub/proj") trimmed; errors start with what (gitlab, gitlab notes).
func newGitLabClient(what string, hc *http.Client, apiURL, token, project string) (*gitlab.Client, string, error) {
	if token == "" {
		return nil, "", fmt.Errorf("%s: token is empty", what)
	}
	project = strings.Trim(project, "/")
	if project == "" || !strings.Contains(project, "/") {
		return nil, "", fmt.Errorf("%s: invalid project path %q (want group/name)", what, project)
	}
	if apiURL == "" {
		apiURL = gitLabDefaultURL
	}
	if err := checkAPIURL(apiURL); err != nil {
		return nil, "", fmt.Errorf("%s: %w", what, err)
	}
	c, err := gitlab.NewClient(token,
		gitlab.WithBaseURL(apiURL),
		gitlab.WithHTTPClient(defaultClient(hc)),
		gitlab.WithoutRetries(),
		gitlab.WithUserAgent(userAgent),
		// The URL was checked above; the library must not log through the global logger.
		gitlab.WithURLWarningLogger(slog.New(slog.DiscardHandler)),
	)
	if err != nil {
		return nil, "", fmt.Errorf("%s: create client: %w", what, err)
	}
	return c, project, nil
}

// Report posts s on its commit, with the context as the status name. A refusal because the commit
// already has that state counts as done.
func (g *GitLab) Report(ctx context.Context, s Status) error {
	if err := s.validate(); err != nil {
		return fmt.Errorf("gitlab: %w", err)
	}
	opt := &gitlab.SetCommitStatusOptions{
		State:       gitLabStates[s.State],
		Name:        gitlab.Ptr(s.Context),
		Description: gitlab.Ptr(cutDescription(s.Description)),
	}
	if s.TargetURL != "" {
		opt.TargetURL = gitlab.Ptr(s.TargetURL)
	}
	_, _, err := g.client.Commits.SetCommitStatus(g.project, s.SHA, opt, gitlab.WithContext(ctx))
	if err == nil {
		return nil
	}
	if err = g.classify(err); err == nil {
		return nil
	}
	return fmt.Errorf("gitlab: post status %s on %s: %w", s.Context, shortSHA(s.SHA), err)
}

// classify turns the library's errors into this package's, or nil for "already in that state".
func (g *GitLab) classify(err error) error {
	if er, ok := errors.AsType[*gitlab.ErrorResponse](err); ok && er.Response != nil {
		code := er.Response.StatusCode
		if code == http.StatusBadRequest && strings.Contains(er.Message, gitLabNoTransitionText) {
			return nil
		}
		return forgeError("gitlab", code, er.Response.Header, er.Message, g.token, g.now())
	}
	if errors.Is(err, gitlab.ErrNotFound) {
		// The library drops the body of a 404: the project or the commit is unknown, or the token
		// cannot see it.
		return &HTTPError{Forge: "gitlab", StatusCode: http.StatusNotFound, Message: "project or commit not found"}
	}
	return err
}
