package status

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/go-github/v92/github"
)

// gitHubStatusCapText is how GitHub words its 422 for a SHA and context that already hold the
// maximum number of statuses.
const gitHubStatusCapText = "maximum number of statuses"

// gitHubStates maps ferry's states onto the three GitHub knows; GitHub has no "running",
// "canceled" or "skipped", so each goes to the state a reader should see on the commit.
var gitHubStates = map[State]string{
	Pending:  "pending",
	Success:  "success",
	Skipped:  "success",
	Failure:  "failure",
	Canceled: "failure",
}

// GitHub posts commit statuses to one repository on github.com or GitHub Enterprise Server.
type GitHub struct {
	client *github.Client
	owner  string
	repo   string
	// token is kept only to scrub it from messages GitHub sends back.
	token string
	now   func() time.Time
}

var _ Reporter = (*GitHub)(nil)

// NewGitHub returns a Reporter for owner/repo. apiURL is empty for github.com, or the Enterprise
// Server address (https://ghe.example.com, with or without /api/v3/). hc may be nil for a client
// with DefaultHTTPTimeout; it is copied, never modified. The token needs the repo:status scope (or
// the "Commit statuses: write" permission).
//
// go-github's own rate limit bookkeeping is turned off: it would refuse requests locally on a
// clock the tests cannot control, while Retry already waits as long as GitHub asks.
func NewGitHub(hc *http.Client, apiURL, token, owner, repo string) (*GitHub, error) {
	if token == "" {
		return nil, errors.New("github: token is empty")
	}
	if owner == "" || repo == "" || strings.Contains(owner, "/") || strings.Contains(repo, "/") {
		return nil, fmt.Errorf("github: invalid repository %q/%q", owner, repo)
	}
	opts := []github.ClientOptionsFunc{
		github.WithHTTPClient(defaultClient(hc)),
		github.WithAuthToken(token),
		github.WithUserAgent(userAgent),
		github.WithDisableRateLimitCheck(),
	}
	if apiURL != "" {
		if err := checkAPIURL(apiURL); err != nil {
			return nil, fmt.Errorf("github: %w", err)
		}
		opts = append(opts, github.WithEnterpriseURLs(apiURL, apiURL))
	}
	c, err := github.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("github: create client: %w", err)
	}
	return &GitHub{client: c, owner: owner, repo: repo, token: token, now: time.Now}, nil
}

// Report posts s on its commit. Rate limits come back as *RetryAfterError, the status cap as an
// error wrapping ErrStatusLimit, other refusals as *HTTPError.
func (g *GitHub) Report(ctx context.Context, s Status) error {
	if err := s.validate(); err != nil {
		return fmt.Errorf("github: %w", err)
	}
	rs := github.RepoStatus{
		State:       github.Ptr(gitHubStates[s.State]),
		Context:     github.Ptr(s.Context),
		Description: github.Ptr(cutDescription(s.Description)),
	}
	if s.TargetURL != "" {
		rs.TargetURL = github.Ptr(s.TargetURL)
	}
	_, _, err := g.client.Repositories.CreateStatus(ctx, g.owner, g.repo, s.SHA, rs)
	if err != nil {
		return fmt.Errorf("github: post status %s on %s: %w", s.Context, shortSHA(s.SHA), g.classify(err))
	}
	return nil
}

// classify turns go-github's errors into this package's: the library's values hold the whole
// response, so only what is needed is copied out.
func (g *GitHub) classify(err error) error {
	if rle, ok := errors.AsType[*github.RateLimitError](err); ok && rle.Response != nil {
		he := &HTTPError{Forge: "github", StatusCode: rle.Response.StatusCode, Message: cleanMessage(rle.Message, g.token)}
		return &RetryAfterError{Wait: max(rle.Rate.Reset.Sub(g.now()), 0), Err: he}
	}
	if are, ok := errors.AsType[*github.AbuseRateLimitError](err); ok && are.Response != nil {
		he := &HTTPError{Forge: "github", StatusCode: are.Response.StatusCode, Message: cleanMessage(are.Message, g.token)}
		wait := secondaryRateLimitWait
		if are.RetryAfter != nil {
			wait = max(*are.RetryAfter, 0)
		}
		return &RetryAfterError{Wait: wait, Err: he}
	}
	if er, ok := errors.AsType[*github.ErrorResponse](err); ok && er.Response != nil {
		msg := er.Message
		for _, e := range er.Errors {
			if e.Message != "" {
				msg += "; " + e.Message
			}
		}
		code := er.Response.StatusCode
		if code == http.StatusUnprocessableEntity && strings.Contains(msg, gitHubStatusCapText) {
			return &HTTPError{Forge: "github", StatusCode: code, Message: cleanMessage(msg, g.token), Err: ErrStatusLimit}
		}
		return forgeError("github", code, er.Response.Header, msg, g.token, g.now())
	}
	// Network errors and context cancellation: go-github already strips secrets from URLs.
	return err
}

// checkAPIURL refuses an API address that is not an absolute http(s) URL early, at startup,
// rather than on the first status. The URL is not repeated, as it may hold user info.
func checkAPIURL(apiURL string) error {
	u, err := url.Parse(apiURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return errors.New("api url must be an absolute http or https url")
	}
	return nil
}
