package ghapp

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// Reasons GitHub's refusals get, per operation, so an operator knows what to check.
var (
	getAppReasons = map[int]string{
		http.StatusUnauthorized: "GitHub refused the App's token: check appID and that privateKey is a current key of that App (and the server's clock)",
		http.StatusNotFound:     "no such App: check appID",
	}
	findInstallationReasons = map[int]string{
		http.StatusUnauthorized: "GitHub refused the App's token: check appID and privateKey",
		http.StatusNotFound:     "the App is not installed on the repository (or cannot see it): install it, or give installationID",
	}
	mintReasons = map[int]string{
		http.StatusUnauthorized: "GitHub refused the App's token: check appID and privateKey",
		http.StatusForbidden:    "the installation is suspended or may not access the repository",
		http.StatusNotFound:     "no such installation of this App: check installationID",
	}
)

// Verify asks GitHub whether the App's id and key are right (GET /app), finds the installation
// when none was configured, and mints the first token. The caller tells a wrong configuration
// (IsPermanent) from GitHub being unreachable, which later requests retry.
func (a *App) Verify(ctx context.Context) error {
	app, _, err := a.apps.Apps.Get(ctx, "")
	if err != nil {
		return a.classify("get the app (GET /app)", err, getAppReasons)
	}
	if app.GetID() != 0 && app.GetID() != a.cfg.AppID {
		return &Error{Repo: a.cfg.Repo, Op: "get the app (GET /app)", permanent: true,
			Reason: fmt.Sprintf("the key belongs to App %d, not appID %d", app.GetID(), a.cfg.AppID)}
	}
	_, err = a.Token(ctx)
	return err
}

// Token returns an installation token valid for at least a while (see RenewBefore), minting
// one when there is none or the last is due for renewal. Git over HTTPS uses it as the password
// of user x-access-token.
func (a *App) Token(ctx context.Context) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.opts.Now()
	if a.token != "" && now.Before(a.renewAt) {
		return a.token, nil
	}
	id, err := a.installation(ctx)
	if err != nil {
		return "", err
	}
	it, _, err := a.apps.Apps.CreateInstallationToken(ctx, id, nil)
	if err != nil {
		return "", a.classify(fmt.Sprintf("mint a token for installation %d", id), err, mintReasons)
	}
	if it.GetToken() == "" {
		return "", &Error{Repo: a.cfg.Repo, Op: fmt.Sprintf("mint a token for installation %d", id), Reason: "GitHub answered without a token"}
	}
	a.remember(it.GetToken())
	a.renewAt = renewal(now, it.GetExpiresAt().Time)
	return a.token, nil
}

// Refused tells the App that GitHub answered 401 to token: it was revoked or expired early, so
// the next Token mints another. A token other than the current one (already replaced) is left.
func (a *App) Refused(token string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if token != "" && token == a.token {
		a.renewAt = time.Time{}
	}
}

// remember makes tok the current token, keeping the one it replaces for Secrets.
func (a *App) remember(tok string) {
	if a.token != "" && a.token != tok {
		a.past = append(a.past, a.token)
		if len(a.past) > rememberedTokens {
			a.past = a.past[len(a.past)-rememberedTokens:]
		}
	}
	a.token = tok
}

// renewal is when a token minted at now that expires at expires is renewed: RenewBefore its
// expiry, or half-way through a lifetime shorter than that. A token without an expiry is
// renewed after an hour less RenewBefore, GitHub's documented lifetime.
func renewal(now, expires time.Time) time.Time {
	if expires.IsZero() {
		expires = now.Add(tokenLifetime)
	}
	life := expires.Sub(now)
	if life <= 2*RenewBefore {
		return now.Add(life / 2)
	}
	return expires.Add(-RenewBefore)
}

// tokenLifetime is how long GitHub documents an installation token to live.
const tokenLifetime = time.Hour

// installation returns the installation id, asking GitHub for the repository's once. a.mu is held.
func (a *App) installation(ctx context.Context) (int64, error) {
	if a.installationID != 0 {
		return a.installationID, nil
	}
	inst, _, err := a.apps.Apps.GetRepositoryInstallation(ctx, a.cfg.Owner, a.cfg.Name)
	if err != nil {
		return 0, a.classify(fmt.Sprintf("find the installation on %s/%s", a.cfg.Owner, a.cfg.Name), err, findInstallationReasons)
	}
	if inst.GetID() <= 0 {
		return 0, &Error{Repo: a.cfg.Repo, Op: fmt.Sprintf("find the installation on %s/%s", a.cfg.Owner, a.cfg.Name), Reason: "GitHub answered without an installation id"}
	}
	a.installationID = inst.GetID()
	return a.installationID, nil
}
