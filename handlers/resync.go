package handlers

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
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

// Resync serves POST /api/v1/apps/{app}/sync: a manual resync of one app at its branch head or
// a given revision, always run (never skipped as already applied).
type Resync struct {
	apps    map[string]ResyncApp
	tokens  [][sha256.Size]byte // digests of the API tokens, never the tokens
	resolve HeadResolver
	queue   Enqueuer
	opts    ResyncOptions
}

// NewResync builds the handler. With no API token configured every request is refused: an
// empty token list never means "open".
func NewResync(apps []ResyncApp, tokens [][]byte, resolve HeadResolver, q Enqueuer, opts ResyncOptions) (*Resync, error) {
	if q == nil || resolve == nil {
		return nil, errors.New("resync needs an enqueuer and a head resolver")
	}
	r := &Resync{apps: map[string]ResyncApp{}, resolve: resolve, queue: q, opts: opts}
	for _, t := range tokens {
		if len(t) > 0 {
			r.tokens = append(r.tokens, sha256.Sum256(t))
		}
	}
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

// authorized compares the bearer token with every configured one in constant time, lengths
// included: it compares fixed-length digests of both sides (the configured ones computed once),
// so the time a refusal takes says nothing about a token's length or content.
func (r *Resync) authorized(req *http.Request) bool {
	h := req.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	return ok && r.TokenValid(tok)
}

// TokenValid reports whether tok is one of the configured API tokens, compared as the bearer
// token is (fixed-length digests, constant time); the dashboard's sign-in uses it too.
func (r *Resync) TokenValid(tok string) bool {
	if tok == "" {
		return false
	}
	got := sha256.Sum256([]byte(tok))
	match := 0
	for _, want := range r.tokens {
		match |= subtle.ConstantTimeCompare(got[:], want[:])
	}
	return match == 1
}

type resyncRequest struct {
	Revision string `json:"revision"`
}

type resyncResponse struct {
	ID  string `json:"id"`
	App string `json:"app"`
	SHA string `json:"sha"`
	URL string `json:"url"`
}

// ServeHTTP answers 401 without a valid token, 404 for an unknown app, 400 for a bad body or
// revision, 502 when the revision cannot be resolved on the Git host, 503 when the job
// cannot be stored, and 202 with the sync's id and page otherwise.
func (r *Resync) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if !r.authorized(req) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="ferry"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "a valid bearer token is required"})
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
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body must be JSON like {\"revision\": \"<sha or branch>\"}"})
			return
		}
	}
	job, status, err := r.Start(req.Context(), app.Name, body.Revision)
	if err != nil {
		writeJSON(w, status, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusAccepted, resyncResponse{ID: job.ID, App: app.Name, SHA: job.SHA, URL: r.opts.URL(job.ID)})
}

// Start queues a manual resync of app at revision (empty: its branch head), as ServeHTTP does
// and the dashboard's sync button: it returns the stored job, or an error a user can read with
// the HTTP status that classifies it (404 unknown app, 400 bad revision, 502 unresolvable,
// 503 not stored).
func (r *Resync) Start(ctx context.Context, name, revision string) (queue.Job, int, error) {
	app, ok := r.apps[name]
	if !ok {
		return queue.Job{}, http.StatusNotFound, fmt.Errorf("no app named %q", truncateName(name))
	}
	sha, ref, status, err := r.revision(ctx, app, strings.TrimSpace(revision))
	if err != nil {
		return queue.Job{}, status, err
	}
	job := queue.Job{ID: r.opts.NewID(), Kind: queue.KindDeploy, Trigger: queue.TriggerManual, Repo: app.Repo, App: app.Name,
		Ref: ref, SHA: sha, DeliveryID: "api-" + r.opts.NewID(), EnqueuedAt: r.opts.Now().UTC()}
	// The delivery id is new, so the job is never a duplicate.
	if _, err := r.queue.Enqueue(ctx, []queue.Job{job}); err != nil {
		r.opts.Logger.Warn("resync not stored", "app", app.Name, "err", err)
		return queue.Job{}, http.StatusServiceUnavailable, errors.New("the job could not be stored; try again")
	}
	r.opts.Logger.Info("resync queued", "app", app.Name, "sha", sha, "sync", job.ID)
	return job, 0, nil
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
