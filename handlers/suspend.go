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
	sus, err := s.SuspendApp(req.Context(), app.Name, who, body.Reason)
	if err != nil {
		writeRequestError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, sus)
}

// SuspendApp suspends app name for who, with reason (trimmed): the API's Suspend and the
// dashboard's button. Its errors are *RequestError: 404 unknown app, 400 a reason over
// queue.MaxSuspendReason bytes, 503 not stored.
func (s *Suspender) SuspendApp(ctx context.Context, name string, who Identity, reason string) (queue.Suspension, error) {
	app, ok := s.apps[name]
	if !ok {
		return queue.Suspension{}, &RequestError{Status: http.StatusNotFound, Message: fmt.Sprintf("no app named %q", truncateName(name))}
	}
	reason = strings.TrimSpace(reason)
	if len(reason) > queue.MaxSuspendReason {
		return queue.Suspension{}, &RequestError{Status: http.StatusBadRequest, Message: fmt.Sprintf("reason is longer than %d bytes", queue.MaxSuspendReason)}
	}
	sus, changed, err := s.store.Suspend(ctx, app.Name, who.Name, reason)
	if err != nil {
		s.opts.Logger.Warn("suspension not stored", "app", app.Name, "err", err)
		return queue.Suspension{}, &RequestError{Status: http.StatusServiceUnavailable, Message: "the suspension could not be stored; try again"}
	}
	if changed {
		s.opts.Logger.Info("app suspended", "app", app.Name, "by", who.Name, "via", who.Via, "reason", reason)
	}
	return sus, nil
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
	sus, job, err := s.ResumeApp(req.Context(), app.Name, who)
	if err != nil {
		writeRequestError(w, err)
		return
	}
	if job == nil {
		writeJSON(w, http.StatusOK, sus)
		return
	}
	writeJSON(w, http.StatusAccepted, resyncResponse{ID: job.ID, App: app.Name, SHA: job.SHA, URL: s.opts.URL(job.ID)})
}

// ResumeApp lifts app name's suspension for who and queues a sync of its branch head, which it
// returns; an app following a branch pattern has no head to sync (job is nil). The head is
// resolved before anything changes, so that a Git host that cannot answer leaves the app as it
// was and the caller can simply try again. Its errors are *RequestError: 404 unknown app, 502
// head not resolved (the app is unchanged), 503 not stored.
func (s *Suspender) ResumeApp(ctx context.Context, name string, who Identity) (queue.Suspension, *queue.Job, error) {
	app, ok := s.apps[name]
	if !ok {
		return queue.Suspension{}, nil, &RequestError{Status: http.StatusNotFound, Message: fmt.Sprintf("no app named %q", truncateName(name))}
	}
	glob := strings.ContainsAny(app.Branch, "*?[")
	var head string
	if !glob {
		repo, ok := s.opts.Repos[app.Repo]
		if !ok {
			return queue.Suspension{}, nil, &RequestError{Status: http.StatusInternalServerError, Message: fmt.Sprintf("repo %s of app %s has no source", app.Repo, app.Name)}
		}
		var err error
		if head, err = s.resolve.Head(ctx, repo, "refs/heads/"+app.Branch); err != nil {
			s.opts.Logger.Warn("resume: cannot resolve the branch head", "app", app.Name, "err", err)
			return queue.Suspension{}, nil, &RequestError{Status: http.StatusBadGateway, Message: fmt.Sprintf("cannot resolve branch %s on repo %s; the app is unchanged", app.Branch, app.Repo)}
		}
	}
	sus, changed, err := s.store.Resume(ctx, app.Name, who.Name)
	if err != nil {
		s.opts.Logger.Warn("resume not stored", "app", app.Name, "err", err)
		return queue.Suspension{}, nil, &RequestError{Status: http.StatusServiceUnavailable, Message: "the resume could not be stored; try again"}
	}
	if changed {
		s.opts.Logger.Info("app resumed", "app", app.Name, "by", who.Name, "via", who.Via)
	}
	if glob {
		return sus, nil, nil
	}
	job := queue.Job{ID: s.opts.NewID(), Kind: queue.KindDeploy, Trigger: queue.TriggerResume, Repo: app.Repo, App: app.Name,
		Ref: "refs/heads/" + app.Branch, SHA: head, DeliveryID: "resume-" + s.opts.NewID(), EnqueuedAt: s.opts.Now().UTC(), By: who.Name}
	if _, err := s.queue.Enqueue(ctx, []queue.Job{job}); err != nil {
		s.opts.Logger.Warn("resume: sync of the head not stored", "app", app.Name, "err", err)
		return sus, nil, &RequestError{Status: http.StatusServiceUnavailable, Message: "the app is resumed, but the sync of its head could not be stored; the next poll syncs it, or try again"}
	}
	s.opts.Logger.Info("resume: head queued", "app", app.Name, "sha", head, "sync", job.ID, "by", who.Name)
	return sus, &job, nil
}

// RequestError is a write request refused or failed, with the HTTP status that classifies it and
// the words a person can act on; a 409 for a suspended app carries the suspension.
type RequestError struct {
	Status     int
	Message    string
	Suspension *queue.Suspension
}

func (e *RequestError) Error() string { return e.Message }

// writeRequestError answers err: a *RequestError with its status, anything else as 500.
func writeRequestError(w http.ResponseWriter, err error) {
	re, ok := errors.AsType[*RequestError](err)
	if !ok {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	body := map[string]any{"error": re.Message}
	if re.Suspension != nil {
		body["suspension"] = re.Suspension
	}
	writeJSON(w, re.Status, body)
}

// checkSuspended refuses (409) a sync of app when it is suspended, and says so (503) when that
// cannot be told.
func checkSuspended(ctx context.Context, store SuspensionReader, log *slog.Logger, app string) error {
	sus, err := store.Get(ctx, app)
	if err != nil {
		log.Warn("suspension not read", "app", app, "err", err)
		return &RequestError{Status: http.StatusServiceUnavailable, Message: "cannot tell whether the app is suspended; try again"}
	}
	if !sus.Suspended {
		return nil
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
	return &RequestError{Status: http.StatusConflict, Message: msg, Suspension: &sus}
}
