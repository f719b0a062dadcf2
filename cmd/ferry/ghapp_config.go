package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/ferrygitops/ferry/syncer/ghapp"
	"github.com/ferrygitops/ferry/syncer/status"
)

// GitHubAppConf authenticates a GitHub repository as a GitHub App installation instead of with
// a token: organisations that refuse personal tokens install an App, whose installation tokens
// (valid an hour) ferry mints and renews itself. They clone, post statuses and check runs.
type GitHubAppConf struct {
	// AppID is the App's id, on its settings page.
	AppID int64 `json:"appID"`
	// InstallationID is the App's installation on the repository's owner; when unset, ferry
	// asks GitHub for the repository's installation.
	InstallationID int64 `json:"installationID,omitempty"`
	// PrivateKey is one of the App's private keys, PEM (PKCS#1 as GitHub downloads it, or PKCS#8).
	PrivateKey *SecretRef `json:"privateKey"`
	// CommitStatuses posts commit statuses instead of check runs, for branch protection rules
	// or tools that read statuses; check runs (with the sync's whole account) are the default.
	CommitStatuses bool `json:"commitStatuses,omitempty"`
}

// ghappVerifyTimeout bounds the start-up check of every repository's App: GitHub briefly
// unreachable must not hold the server's start for long (the check is then left to the first
// sync), a wrong key or app id is known within it.
const ghappVerifyTimeout = 20 * time.Second

// validateAuth checks how repository r authenticates: a token or a GitHub App, not both, and an
// App only on GitHub.
func (r RepoConf) validateAuth(bad func(string, ...any), where string) {
	g := r.GitHubApp
	if g == nil {
		return
	}
	if r.Token != nil {
		bad("%s: give either token or githubApp, not both", where)
	}
	if r.Provider != "github" {
		bad("%s: githubApp is for provider github, not %q", where, r.Provider)
	}
	if g.AppID <= 0 {
		bad("%s: githubApp.appID is required (a positive number, on the App's settings page)", where)
	}
	if g.InstallationID < 0 {
		bad("%s: githubApp.installationID must not be negative (leave it out to find it from the repository)", where)
	}
	if g.PrivateKey == nil {
		bad("%s: githubApp.privateKey is required (env or file)", where)
	}
}

// addGitHubApp resolves repository r's App key, builds its App (the key is parsed here, so a bad
// one stops `ferry check` too) and the check runs (or commit statuses) reporter that authenticates
// with it.
func (s *Secrets) addGitHubApp(hc *http.Client, r RepoConf, getenv func(string) string) error {
	key, err := r.GitHubApp.PrivateKey.resolve(getenv)
	if err != nil {
		return fmt.Errorf("repo %s: githubApp.privateKey: %w", r.Name, err)
	}
	owner, name, err := status.ParseRepoURL(r.URL)
	if err != nil {
		return fmt.Errorf("repo %s: url: %w", r.Name, err)
	}
	app, err := ghapp.New(ghapp.Config{
		Repo: r.Name, AppID: r.GitHubApp.AppID, InstallationID: r.GitHubApp.InstallationID,
		PrivateKey: key, APIURL: r.APIURL, Owner: owner, Name: name,
	}, ghapp.Options{Timeout: hc.Timeout})
	if err != nil {
		return err // names the repository and never the key
	}
	forge, err := forgeReporter(r, hc, "", app)
	if err != nil {
		return fmt.Errorf("repo %s: %w", r.Name, err)
	}
	if s.Apps == nil {
		s.Apps = map[string]*ghapp.App{}
	}
	s.Apps[r.Name], s.Forges[r.Name] = app, forge
	return nil
}

// verifyGitHubApps asks GitHub, for every repository with an App, whether its app id, key and
// installation are right, all at once and within ghappVerifyTimeout. A wrong one is an error
// naming the repository: the server must not start and fail every sync. GitHub unreachable or
// failing (network, 5xx, rate limit) only logs a warning: the tokens are minted when the first
// sync needs one, and that sync retries as for any fetch that fails for a while.
func verifyGitHubApps(ctx context.Context, apps map[string]*ghapp.App, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, ghappVerifyTimeout)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for name, app := range apps {
		wg.Go(func() {
			err := app.Verify(ctx)
			switch {
			case err == nil:
				log.Info("github app verified", "repo", name, "app_id", app.AppID())
			case ghapp.IsPermanent(err):
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			default:
				log.Warn("github app not verified at start: GitHub did not answer; tokens will be minted when needed", "repo", name, "err", err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}
