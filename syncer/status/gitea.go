package status

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// giteaAPIPath is where Gitea serves its REST API under the instance address.
const giteaAPIPath = "/api/v1"

// giteaStates maps ferry's states onto Gitea's; like GitHub it has no running, canceled or
// skipped, so each goes to what a reader should see on the commit.
var giteaStates = map[State]string{
	Pending:  "pending",
	Success:  "success",
	Skipped:  "success",
	Failure:  "failure",
	Canceled: "failure",
}

// Gitea posts commit statuses to one repository on a Gitea (or Forgejo) instance. It speaks plain
// HTTP: the SDK binds a context per client rather than per call and probes the server version on
// creation, neither of which suits a long-lived reporter.
type Gitea struct {
	hc *http.Client
	// statusesURL is .../api/v1/repos/{owner}/{repo}/statuses/ ; the SHA is appended per call.
	statusesURL string
	token       string
	now         func() time.Time
}

var _ Reporter = (*Gitea)(nil)

// giteaStatus is the body of POST /repos/{owner}/{repo}/statuses/{sha}.
type giteaStatus struct {
	State       string `json:"state"`
	TargetURL   string `json:"target_url"`
	Description string `json:"description"`
	Context     string `json:"context"`
}

// NewGitea returns a Reporter for owner/repo on the instance at apiURL (https://gitea.example.com,
// with or without /api/v1). Gitea is self-hosted, so there is no default address. hc may be nil
// for a client with DefaultHTTPTimeout. The token needs write access to the repository.
func NewGitea(hc *http.Client, apiURL, token, owner, repo string) (*Gitea, error) {
	if token == "" {
		return nil, errors.New("gitea: token is empty")
	}
	if owner == "" || repo == "" || strings.Contains(owner, "/") || strings.Contains(repo, "/") {
		return nil, fmt.Errorf("gitea: invalid repository %q/%q", owner, repo)
	}
	if apiURL == "" {
		return nil, errors.New("gitea: api url is required")
	}
	if err := checkAPIURL(apiURL); err != nil {
		return nil, fmt.Errorf("gitea: %w", err)
	}
	base := strings.TrimSuffix(strings.TrimRight(apiURL, "/"), giteaAPIPath)
	return &Gitea{
		hc:          defaultClient(hc),
		statusesURL: base + giteaAPIPath + "/repos/" + url.PathEscape(owner) + "/" + url.PathEscape(repo) + "/statuses/",
		token:       token,
		now:         time.Now,
	}, nil
}

// Report posts s on its commit. Rate limits come back as *RetryAfterError, other refusals as
// *HTTPError.
func (g *Gitea) Report(ctx context.Context, s Status) error {
	if err := s.validate(); err != nil {
		return fmt.Errorf("gitea: %w", err)
	}
	if err := g.post(ctx, s); err != nil {
		return fmt.Errorf("gitea: post status %s on %s: %w", s.Context, shortSHA(s.SHA), err)
	}
	return nil
}

func (g *Gitea) post(ctx context.Context, s Status) error {
	body, err := json.Marshal(giteaStatus{
		State:       giteaStates[s.State],
		TargetURL:   s.TargetURL,
		Description: cutDescription(s.Description),
		Context:     s.Context,
	})
	if err != nil {
		return fmt.Errorf("encode status: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.statusesURL+url.PathEscape(s.SHA), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Authorization", "token "+g.token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)

	resp, err := g.hc.Do(req)
	if err != nil {
		return err // *url.Error: method, URL (no secret in it) and cause
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	// Gitea answers errors as {"message": "...", "url": "..."}; a proxy may answer anything.
	var apiErr struct {
		Message string `json:"message"`
	}
	msg := string(raw)
	if json.Unmarshal(raw, &apiErr) == nil && apiErr.Message != "" {
		msg = apiErr.Message
	}
	return forgeError("gitea", resp.StatusCode, resp.Header, msg, g.token, g.now())
}
