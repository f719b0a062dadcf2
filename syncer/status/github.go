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
	// secrets returns the tokens requests may have carried, kept only to scrub them from
	// messages GitHub (or a proxy) sends back.
	secrets func() []string
	now     func() time.Time
}

var _ Reporter = (*GitHub)(nil)

// NewGitHub returns a Reporter for owner/repo that authenticates with a token. apiURL is empty
// for github.com, or the Enterprise Server address (https://ghe.example.com, with or without
// /api/v3/). hc may be nil for a client with DefaultHTTPTimeout; it is copied, never modified.
// The token needs the repo:status scope (or the "Commit statuses: write" permission).
//
// go-github's own rate limit bookkeeping is turned off: it would refuse requests locally on a
// clock the tests cannot control, while Retry already waits as long as GitHub asks.
func NewGitHub(hc *http.Client, apiURL, token, owner, repo string) (*GitHub, error) {
	if token == "" {
		return nil, errors.New("github: token is empty")
	}
	return newGitHub(defaultClient(hc), apiURL, owner, repo, func() []string { return []string{token} }, github.WithAuthToken(token))
}

// NewGitHubWithClient returns a Reporter for owner/repo whose requests hc authenticates itself:
// a GitHub App installation's client (ghapp.App.Client), whose token changes every hour.
// secrets returns the tokens hc may have sent, to scrub from messages; nil when there are none
// to scrub. hc must bound its requests (its Timeout); it is used as it is.
func NewGitHubWithClient(hc *http.Client, apiURL string, secrets func() []string, owner, repo string) (*GitHub, error) {
	if hc == nil {
		return nil, errors.New("github: an authenticated http client is required")
	}
	if secrets == nil {
		secrets = func() []string { return nil }
	}
	return newGitHub(hc, apiURL, owner, repo, secrets)
}

func newGitHub(hc *http.Client, apiURL, owner, repo string, secrets func() []string, auth ...github.ClientOptionsFunc) (*GitHub, error) {
	if owner == "" || repo == "" || strings.Contains(owner, "/") || strings.Contains(repo, "/") {
		return nil, fmt.Errorf("github: invalid repository %q/%q", owner, repo)
	}
	opts := append([]github.ClientOptionsFunc{
		github.WithHTTPClient(hc),
		github.WithUserAgent(userAgent),
		github.WithDisableRateLimitCheck(),
	}, auth...)
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
	return &GitHub{client: c, owner: owner, repo: repo, secrets: secrets, now: time.Now}, nil
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

// clean scrubs every token requests may have carried from msg, and cuts it.
func (g *GitHub) clean(msg string) string {
	for _, s := range g.secrets() {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "[redacted]")
		}
	}
	return cleanMessage(msg, "")
}

// classify turns go-github's errors into this package's: the library's values hold the whole
// response, so only what is needed is copied out.
func (g *GitHub) classify(err error) error {
	if rle, ok := errors.AsType[*github.RateLimitError](err); ok && rle.Response != nil {
		he := &HTTPError{Forge: "github", StatusCode: rle.Response.StatusCode, Message: g.clean(rle.Message)}
		return &RetryAfterError{Wait: max(rle.Rate.Reset.Sub(g.now()), 0), Err: he}
	}
	if are, ok := errors.AsType[*github.AbuseRateLimitError](err); ok && are.Response != nil {
		he := &HTTPError{Forge: "github", StatusCode: are.Response.StatusCode, Message: g.clean(are.Message)}
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
			return &HTTPError{Forge: "github", StatusCode: code, Message: g.clean(msg), Err: ErrStatusLimit}
		}
		return forgeError("github", code, er.Response.Header, g.clean(msg), "", g.now())
	}
	if ae, ok := errors.AsType[interface {
		error
		Transient() bool
	}](err); ok && !ae.Transient() {
		// The client could not authenticate and says retrying cannot help (a wrong GitHub App
		// configuration); its error names what to check and holds no secret.
		return permanent(err)
	}
	// Network errors, context cancellation, and a client that could not authenticate (an App
	// token not minted: its error says so and holds no secret). go-github strips secrets from URLs.
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
