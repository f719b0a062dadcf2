package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/ferrygitops/ferry/queue"
	"github.com/go-chi/chi/v5"
)

// MaxSuspendBody bounds the JSON body of a suspend request ({"reason": "..."}).
const MaxSuspendBody = 4 << 10

// Suspensions keeps which apps are suspended, shared by every replica.
type Suspensions interface {
	SuspensionReader
	Suspend(ctx context.Context, app, by, reason string) (queue.Suspension, bool, error)
	Resume(ctx context.Context, app, by string) (queue.Suspension, bool, error)
}

var _ Suspensions = (*queue.Suspensions)(nil)

// Suspender serves POST /api/v1/apps/{app}/suspend and /resume. A suspended app is not synced
// by pushes, polls, self-heal or start-up, and manual syncs of it need force; resuming syncs
// its branch head. Both are idempotent. Like Resync, it serves only requests that Auth.Require
// let through.
type Suspender struct {
	apps    map[string]ResyncApp
	store   Suspensions
	resolve HeadResolver
	queue   Enqueuer
	opts    ResyncOptions
}

// NewSuspender builds the handlers; opts are the resync API's (ids, links, sources, clock).
func NewSuspender(apps []ResyncApp, store Suspensions, resolve HeadResolver, q Enqueuer, opts ResyncOptions) (*Suspender, error) {
	if store == nil || resolve == nil || q == nil {
		return nil, errors.New("suspend needs the suspensions, a head resolver and an enqueuer")
	}
	r, err := NewResync(apps, resolve, q, store, opts) // the same defaults, in one place
	if err != nil {
		return nil, err
	}
	return &Suspender{apps: r.apps, store: store, resolve: resolve, queue: q, opts: r.opts}, nil
}

type suspendRequest struct {
	Reason string `json:"reason"`
}

// app returns the request's caller and app, or answers 401 or 404 and returns false.
func (s *Suspender) app(w http.ResponseWriter, req *http.Request) (Identity, ResyncApp, bool) {
	who, ok := Caller(req.Context())
	if !ok {
		unauthorized(w)
		return who, ResyncApp{}, false
	}
	name := chi.URLParam(req, "app")
	app, ok := s.apps[name]
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no app named %q", truncateName(name))})
		return who, app, false
	}
	return who, app, true
}

// Suspend answers 200 with the app's suspension (the one already in force, unchanged, when the
// app was suspended before), 400 for a bad body or a reason over queue.MaxSuspendReason bytes,
// 413 for a body over MaxSuspendBody, 503 when the suspension cannot be stored.
func (s *Suspender) Suspend(w http.ResponseWriter, req *http.Request) {
	who, app, ok := s.app(w, req)
	if !ok {
		return
	}
	data, err := readBody(w, req, MaxSuspendBody, nil)
	if err != nil {
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": "request body is too large"})
		return
	}
	var body suspendRequest
	if len(strings.TrimSpace(string(data))) > 0 {
		if err := json.Unmarshal(data, &body); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body must be JSON like {\"reason\": \"...\"}"})
			return
		}
	}
	reason := strings.TrimSpace(body.Reason)
	if len(reason) > queue.MaxSuspendReason {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("reason is longer than %d bytes", queue.MaxSuspendReason)})
		return
	}
	sus, changed, err := s.store.Suspend(req.Context(), app.Name, who.Name, reason)
	if err != nil {
		s.opts.Logger.Warn("suspension not stored", "app", app.Name, "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "the suspension could not be stored; try again"})
		return
	}
	if changed {
		s.opts.Logger.Info("app suspended", "app", app.Name, "by", who.Name, "via", who.Via, "reason", reason)
	}
	writeJSON(w, http.StatusOK, sus)
}

// Resume lifts the suspension and queues a sync of the app's branch head, answering 202 with
// the sync's id and page like a manual sync. An app following a branch pattern has no head to
// sync: it is resumed and answered 200 with its suspension. 502 when the head cannot be
// resolved (the app stays as it was), 503 when the suspension or the job cannot be stored.
func (s *Suspender) Resume(w http.ResponseWriter, req *http.Request) {
	who, app, ok := s.app(w, req)
	if !ok {
		return
	}
	glob := strings.ContainsAny(app.Branch, "*?[")
	var head string
	if !glob {
		// The head is resolved before anything changes, so that a Git host that cannot
		// answer leaves the app as it was and the caller can simply try again.
		repo, ok := s.opts.Repos[app.Repo]
		if !ok {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": fmt.Sprintf("repo %s of app %s has no source", app.Repo, app.Name)})
			return
		}
		var err error
		if head, err = s.resolve.Head(req.Context(), repo, "refs/heads/"+app.Branch); err != nil {
			s.opts.Logger.Warn("resume: cannot resolve the branch head", "app", app.Name, "err", err)
			writeJSON(w, http.StatusBadGateway, map[string]string{"error": fmt.Sprintf("cannot resolve branch %s on repo %s; the app is unchanged", app.Branch, app.Repo)})
			return
		}
	}
	sus, changed, err := s.store.Resume(req.Context(), app.Name, who.Name)
	if err != nil {
		s.opts.Logger.Warn("resume not stored", "app", app.Name, "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "the resume could not be stored; try again"})
		return
	}
	if changed {
		s.opts.Logger.Info("app resumed", "app", app.Name, "by", who.Name, "via", who.Via)
	}
	if glob {
		writeJSON(w, http.StatusOK, sus)
		return
	}
	job := queue.Job{ID: s.opts.NewID(), Kind: queue.KindDeploy, Trigger: queue.TriggerResume, Repo: app.Repo, App: app.Name,
		Ref: "refs/heads/" + app.Branch, SHA: head, DeliveryID: "resume-" + s.opts.NewID(), EnqueuedAt: s.opts.Now().UTC()}
	if _, err := s.queue.Enqueue(req.Context(), []queue.Job{job}); err != nil {
		s.opts.Logger.Warn("resume: sync of the head not stored", "app", app.Name, "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "the app is resumed, but the sync of its head could not be stored; the next poll syncs it, or try again"})
		return
	}
	s.opts.Logger.Info("resume: head queued", "app", app.Name, "sha", head, "sync", job.ID, "by", who.Name)
	writeJSON(w, http.StatusAccepted, resyncResponse{ID: job.ID, App: app.Name, SHA: head, URL: s.opts.URL(job.ID)})
}

// refuseSuspended answers 409 when app is suspended (503 when that cannot be told) and says
// whether it did.
func refuseSuspended(ctx context.Context, w http.ResponseWriter, store SuspensionReader, log *slog.Logger, app string) bool {
	sus, err := store.Get(ctx, app)
	if err != nil {
		log.Warn("suspension not read", "app", app, "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "cannot tell whether the app is suspended; try again"})
		return true
	}
	if !sus.Suspended {
		return false
	}
	msg := fmt.Sprintf("app %s is suspended", app)
	if sus.By != "" {
		msg += " by " + sus.By
	}
	if !sus.At.IsZero() {
		msg += " since " + sus.At.UTC().Format(time.RFC3339)
	}
	if sus.Reason != "" {
		msg += ": " + sus.Reason
	}
	msg += `; resume it, or send {"force": true} to sync it anyway`
	writeJSON(w, http.StatusConflict, map[string]any{"error": msg, "suspension": sus})
	return true
}
