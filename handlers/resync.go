package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/syncer/source"
	"github.com/go-chi/chi/v5"
)

// MaxResyncBody bounds the JSON body of a manual resync request.
const MaxResyncBody = 4 << 10

// shaPattern is a full commit id, which a resync may name directly.
var shaPattern = regexp.MustCompile(`^[0-9a-f]{40}([0-9a-f]{24})?$`)

// ResyncApp is an app as the resync API needs it.
type ResyncApp struct {
	Name, Repo string
	// Branch is followed when the request names no revision.
	Branch string
}

// HeadResolver finds what a branch or tag points at on the remote, cheaply.
type HeadResolver interface {
	Head(ctx context.Context, repo source.Repo, ref string) (string, error)
}

// ResyncOptions are the resync API's collaborators.
type ResyncOptions struct {
	Logger *slog.Logger
	NewID  func() string
	// URL is the page of a sync, returned to the caller.
	URL func(id string) string
	// Repos is the Git side of each repository, by name, for resolving heads.
	Repos map[string]source.Repo
	Now   func() time.Time
}

// SuspensionReader tells whether an app is suspended, as every replica sees it.
type SuspensionReader interface {
	Get(ctx context.Context, app string) (queue.Suspension, error)
}

// Resync serves POST /api/v1/apps/{app}/sync: a manual resync of one app at its branch head or
// a given revision, always run (never skipped as already applied). A suspended app is synced
// only when the request says {"force": true}.
//
// It serves only requests that Auth.Require let through (their context names the caller);
// anything else gets 401, so that mounting it without authentication opens nothing.
type Resync struct {
	apps      map[string]ResyncApp
	resolve   HeadResolver
	queue     Enqueuer
	suspended SuspensionReader
	opts      ResyncOptions
}

// NewResync builds the handler.
func NewResync(apps []ResyncApp, resolve HeadResolver, q Enqueuer, suspended SuspensionReader, opts ResyncOptions) (*Resync, error) {
	if q == nil || resolve == nil || suspended == nil {
		return nil, errors.New("resync needs an enqueuer, a head resolver and the suspensions")
	}
	r := &Resync{apps: map[string]ResyncApp{}, resolve: resolve, queue: q, suspended: suspended, opts: opts}
	for _, a := range apps {
		r.apps[a.Name] = a
	}
	if r.opts.Logger == nil {
		r.opts.Logger = slog.New(slog.DiscardHandler)
	}
	if r.opts.NewID == nil {
		r.opts.NewID = randomID
	}
	if r.opts.URL == nil {
		r.opts.URL = func(id string) string { return "/syncs/" + id }
	}
	if r.opts.Now == nil {
		r.opts.Now = time.Now
	}
	return r, nil
}

type resyncRequest struct {
	Revision string `json:"revision"`
	// Force syncs a suspended app (the app stays suspended).
	Force bool `json:"force"`
}

type resyncResponse struct {
	ID  string `json:"id"`
	App string `json:"app"`
	SHA string `json:"sha"`
	URL string `json:"url"`
}

// ServeHTTP answers 401 without a valid token, 404 for an unknown app, 400 for a bad body or
// revision, 409 for a suspended app unless forced, 502 when the revision cannot be resolved on
// the Git host, 503 when the job cannot be stored (or the suspension read), and 202 with the
// sync's id and page otherwise.
func (r *Resync) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	who, ok := Caller(req.Context())
	if !ok {
		unauthorized(w)
		return
	}
	name := chi.URLParam(req, "app")
	app, ok := r.apps[name]
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no app named %q", truncateName(name))})
		return
	}
	var body resyncRequest
	data, err := readBody(w, req, MaxResyncBody, nil)
	if err != nil {
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": "request body is too large"})
		return
	}
	if len(strings.TrimSpace(string(data))) > 0 {
		if err := json.Unmarshal(data, &body); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body must be JSON like {\"revision\": \"<sha or branch>\", \"force\": false}"})
			return
		}
	}
	job, err := r.Start(req.Context(), app.Name, body.Revision, body.Force, who)
	if err != nil {
		writeRequestError(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, resyncResponse{ID: job.ID, App: app.Name, SHA: job.SHA, URL: r.opts.URL(job.ID)})
}

// Start queues a manual resync of app name at revision (empty: its branch head) for who, as
// ServeHTTP does for the API and the dashboard's sync button does for a signed-in person. A
// suspended app is refused unless force. Its errors are *RequestError: 404 unknown app, 400 bad
// revision, 409 suspended, 502 unresolvable on the Git host, 503 not stored or not known.
func (r *Resync) Start(ctx context.Context, name, revision string, force bool, who Identity) (queue.Job, error) {
	app, ok := r.apps[name]
	if !ok {
		return queue.Job{}, &RequestError{Status: http.StatusNotFound, Message: fmt.Sprintf("no app named %q", truncateName(name))}
	}
	if !force {
		if err := checkSuspended(ctx, r.suspended, r.opts.Logger, app.Name); err != nil {
			return queue.Job{}, err
		}
	}
	sha, ref, status, err := r.revision(ctx, app, strings.TrimSpace(revision))
	if err != nil {
		return queue.Job{}, &RequestError{Status: status, Message: err.Error()}
	}
	job := queue.Job{ID: r.opts.NewID(), Kind: queue.KindDeploy, Trigger: queue.TriggerManual, Repo: app.Repo, App: app.Name,
		Ref: ref, SHA: sha, DeliveryID: "api-" + r.opts.NewID(), EnqueuedAt: r.opts.Now().UTC(), Force: force, By: who.Name}
	// The delivery id is new, so the job is never a duplicate.
	if _, err := r.queue.Enqueue(ctx, []queue.Job{job}); err != nil {
		r.opts.Logger.Warn("resync not stored", "app", app.Name, "err", err)
		return queue.Job{}, &RequestError{Status: http.StatusServiceUnavailable, Message: "the job could not be stored; try again"}
	}
	r.opts.Logger.Info("resync queued", "app", app.Name, "sha", sha, "sync", job.ID, "by", who.Name, "via", who.Via, "force", force)
	return job, nil
}

// revision resolves what to sync to a commit and the full ref it must be reachable from: a full
// sha (through the app's branch), the app's branch (the default), or a tag, by short or full name
// (refs/heads/<branch>, refs/tags/<tag>). Anything else, another branch or a ref such as
// refs/pull/N/head, is refused here; the worker checks again, before applying, that the commit is
// reachable from the ref, which a bare sha can only be told by fetching.
func (r *Resync) revision(ctx context.Context, app ResyncApp, rev string) (sha, ref string, status int, err error) {
	glob := strings.ContainsAny(app.Branch, "*?[")
	if shaPattern.MatchString(rev) {
		if glob {
			return "", "", http.StatusBadRequest, fmt.Errorf("app %s follows the branch pattern %q: name a branch or a tag, not a commit", app.Name, app.Branch)
		}
		return rev, "refs/heads/" + app.Branch, 0, nil
	}
	if rev == "" {
		if glob {
			return "", "", http.StatusBadRequest, fmt.Errorf("app %s follows the branch pattern %q: name a revision", app.Name, app.Branch)
		}
		rev = app.Branch
	}
	if len(rev) > 255 || strings.ContainsAny(rev, " ~^:\\*?[") || strings.Contains(rev, "..") {
		return "", "", http.StatusBadRequest, errors.New("revision must be a full commit sha, the app's branch or a tag")
	}
	switch name, isBranch := strings.CutPrefix(rev, "refs/heads/"); {
	case isBranch || (!strings.HasPrefix(rev, "refs/") && branchMatches(app.Branch, rev)):
		if !branchMatches(app.Branch, name) {
			return "", "", http.StatusBadRequest, fmt.Errorf("branch %s is not the branch app %s deploys (%s): name a commit on it or a tag", truncateName(name), app.Name, app.Branch)
		}
		ref = "refs/heads/" + name
	case strings.HasPrefix(rev, "refs/tags/"):
		ref = rev
	case strings.HasPrefix(rev, "refs/"):
		return "", "", http.StatusBadRequest, fmt.Errorf("%s is neither the branch app %s deploys (%s) nor a tag", truncateName(rev), app.Name, app.Branch)
	default:
		ref = "refs/tags/" + rev
	}
	repo, ok := r.opts.Repos[app.Repo]
	if !ok {
		return "", "", http.StatusInternalServerError, fmt.Errorf("repo %s of app %s has no source", app.Repo, app.Name)
	}
	sha, err = r.resolve.Head(ctx, repo, ref)
	if err != nil {
		r.opts.Logger.Warn("resync: cannot resolve revision", "app", app.Name, "ref", ref, "err", err)
		what := "tag " + strings.TrimPrefix(ref, "refs/tags/")
		if strings.HasPrefix(ref, "refs/heads/") {
			what = "branch " + strings.TrimPrefix(ref, "refs/heads/")
		}
		return "", "", http.StatusBadGateway, fmt.Errorf("cannot resolve %s on repo %s", truncateName(what), app.Repo)
	}
	return sha, ref, 0, nil
}

func truncateName(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
