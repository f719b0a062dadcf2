package handlers

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/ferrygitops/ferry/queue"
)

// Repo is one configured repository as the hooks handler needs it.
type Repo struct {
	// Name is the {repo} of POST /hooks/{repo}.
	Name string
	// Provider is the forge dialect the hook speaks: github, gitlab or gitea (Forgejo included).
	Provider string
	// Branch is the deployed branch: an exact name or a path.Match glob such as release-*.
	// Pushes and pull requests aimed at other branches are acknowledged and ignored.
	Branch string
	// Secret is the webhook secret: the HMAC key (GitHub, Gitea), the secret token or the
	// whsec_ signing token (GitLab). Empty means no delivery verifies: every hook gets 401.
	Secret []byte
	// Apps are the apps whose manifests live in this repository.
	Apps []App
	// GitHubApp is the id of the GitHub App the repository authenticates as, whose check runs
	// are ferry's; 0 when it uses a token (no check runs, so Re-run requests are not ferry's).
	GitHubApp int64
	// FullName is owner/name on GitHub, for telling which repository an App's delivery is
	// about: the App's one webhook serves every repository it is installed on.
	FullName string
}

// App is one deployable directory of a repository as routing needs it.
type App struct {
	Name string
	// Path is the app's directory in the repository, e.g. apps/api; a change under it is a
	// change to the app. "" or "." is the whole repository.
	Path string
	// Include, when set, narrows which changed files under Path count: a file must match one
	// of these globs (path.Match per segment, "**" for any depth), written from the repository root.
	Include []string
	// Exclude drops changed files that match any of these globs, e.g. apps/api/**/*.md.
	Exclude []string
	// DependsOn names apps, in this repository or another, whose sync must precede this one's.
	// A push that changes one of them also syncs this app, after it.
	DependsOn []string
}

// Enqueuer stores jobs durably and returns those it had not stored before: a job of a
// redelivered hook is a duplicate and is left out. An error means nothing can be promised and
// the hook gets 503.
type Enqueuer interface {
	Enqueue(ctx context.Context, jobs []queue.Job) (stored []queue.Job, err error)
}

// HooksOptions are the optional collaborators of Hooks; zero values get working defaults.
type HooksOptions struct {
	// Logger receives one line per delivery. Default: discard.
	Logger *slog.Logger
	// Now is the clock for signature timestamps and EnqueuedAt. Default: time.Now.
	Now func() time.Time
	// NewID names each job. Default: 128 random bits in hex.
	NewID func() string
}

// providers maps Repo.Provider to its webhook dialect.
var providers = map[string]provider{
	"github": githubProvider{},
	"gitlab": gitlabProvider{},
	"gitea":  giteaProvider{},
}

// Hooks serves POST /hooks/{repo}: it verifies a delivery with the repository's secret before
// reading it, turns it into jobs for the apps it touches, and answers 202 only once the jobs
// are stored, so that a forge retries whatever ferry could not take on.
type Hooks struct {
	repos map[string]hookRepo
	graph *graph
	queue Enqueuer
	log   *slog.Logger
	now   func() time.Time
	newID func() string
	// budget is what unverified bodies hold of MaxUnverifiedBytes.
	budget unverifiedBudget
}

type hookRepo struct {
	Repo
	provider provider
}

// NewHooks serves the repositories and apps of a configuration the config loader validated:
// names unique, providers known, branch and globs valid, dependsOn naming known apps without
// cycles. It trusts that input and checks nothing again.
func NewHooks(repos []Repo, q Enqueuer, opts HooksOptions) *Hooks {
	h := &Hooks{repos: map[string]hookRepo{}, graph: newGraph(repos), queue: q, log: opts.Logger, now: opts.Now, newID: opts.NewID}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.newID == nil {
		h.newID = randomID
	}
	for _, r := range repos {
		h.repos[r.Name] = hookRepo{Repo: r, provider: providers[r.Provider]}
	}
	return h
}

// SetInputs tells routing which paths outside an app's own its last deploy rendered from (see
// queue.Inputs), so that a push changing only such a shared base syncs the app at once. It is
// safe to call while hooks are served; an unknown app is ignored.
func (h *Hooks) SetInputs(in queue.Inputs) {
	n, ok := h.graph.byName[in.App]
	if !ok {
		return
	}
	paths := make([]string, len(in.Paths))
	for i, p := range in.Paths {
		paths[i] = cleanDir(p) // "." becomes "", the whole repository
	}
	h.graph.setInputs(n, paths)
}

// ServeHTTP answers one delivery: 404 unknown repo, 401 unverified (from the headers alone
// when they show it, before the body is read), 413 oversize, 503 with Retry-After when the
// body does not fit in MaxUnverifiedBytes, 400 unreadable, 200 ping or ignored (with the
// reason), 503 when jobs could not be stored and 202 with the stored jobs.
func (h *Hooks) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "repo")
	now := h.now()
	// One line per delivery; its attributes gather as the delivery is read (cheaper than a
	// derived logger per step on the hot path). took is the handler's own time, from the
	// headers read to the line (a 202's line follows its answer), so that a slow answer tells
	// ferry's share of it from the network's and the forge's.
	// Typed attributes (LogAttrs) spare the boxing and key checks of key-value pairs.
	var buf [9]slog.Attr
	attrs := append(buf[:0], slog.String("repo", name))
	log := func(level slog.Level, outcome string, status int, more ...slog.Attr) {
		if h.log.Enabled(r.Context(), level) {
			attrs = append(attrs, slog.String("outcome", outcome), slog.Int("status", status), slog.Duration("took", h.now().Sub(now)))
			h.log.LogAttrs(r.Context(), level, "webhook", append(attrs, more...)...)
		}
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "webhooks are POSTed"})
		return
	}
	repo, ok := h.repos[name]
	if !ok {
		log(slog.LevelInfo, "unknown repo", http.StatusNotFound)
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such repository"})
		return
	}
	attrs = append(attrs, slog.String("provider", repo.Provider))

	// Nothing of the body is read until the headers could verify and the body fits in what
	// unverified deliveries may hold (MaxUnverifiedBytes).
	if err := repo.provider.precheck(r.Header, repo.Secret, now); err != nil {
		// err never holds the secret or the received signature (provider contract).
		log(slog.LevelWarn, "signature refused", http.StatusUnauthorized, slog.Any("err", err))
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": ErrSignature.Error()})
		return
	}
	if r.ContentLength > MaxBodyBytes {
		log(slog.LevelWarn, "body too large", http.StatusRequestEntityTooLarge)
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": fmt.Sprintf("body is larger than %d bytes", MaxBodyBytes)})
		return
	}
	want := int64(unknownLengthStart)
	if r.ContentLength >= 0 {
		want = r.ContentLength
	}
	hold, ok := h.budget.reserve(want)
	if !ok {
		h.busy(w, log)
		return
	}
	body, err := readBody(w, r, MaxBodyBytes, hold)
	if err != nil {
		hold.release()
		var tooBig *http.MaxBytesError
		switch {
		case errors.Is(err, errBusy):
			h.busy(w, log)
		case errors.As(err, &tooBig):
			log(slog.LevelWarn, "body too large", http.StatusRequestEntityTooLarge)
			writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": fmt.Sprintf("body is larger than %d bytes", MaxBodyBytes)})
		default:
			log(slog.LevelWarn, "body unreadable", http.StatusBadRequest, slog.Any("err", err))
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body could not be read"})
		}
		return
	}
	err = repo.provider.verify(r.Header, body, repo.Secret, now)
	hold.release() // verified or about to be dropped: no longer the budget's concern
	if err != nil {
		log(slog.LevelWarn, "signature refused", http.StatusUnauthorized, slog.Any("err", err))
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": ErrSignature.Error()})
		return
	}
	ev, err := repo.provider.parse(r.Header, body)
	if err != nil {
		log(slog.LevelWarn, "payload refused", http.StatusBadRequest, slog.Any("err", err))
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	if ev.DeliveryID == "" {
		ev.DeliveryID = bodyDeliveryID(body)
	}
	attrs = append(attrs, slog.String("event", string(ev.Kind)), slog.String("delivery", ev.DeliveryID))

	jobs, ignored, elsewhere := h.route(repo, ev)
	if len(elsewhere) > 0 {
		// Dependents in other repositories would need their own repository's head, which this
		// delivery does not carry; the line says which apps are left for a resync.
		attrs = append(attrs, slog.Any("dependents_not_synced", nameList(elsewhere)))
	}
	switch {
	case ev.Kind == EventPing:
		log(slog.LevelInfo, "ping", http.StatusOK)
		writeJSON(w, http.StatusOK, map[string]string{"ping": "pong"})
		return
	case ignored != "":
		log(slog.LevelInfo, "ignored", http.StatusOK, slog.String("reason", ignored))
		writeJSON(w, http.StatusOK, map[string]string{"ignored": ignored})
		return
	}

	for _, j := range jobs {
		if err := j.Validate(); err != nil {
			log(slog.LevelError, "invalid job", http.StatusInternalServerError, slog.String("app", j.App), slog.Any("err", err))
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "internal error"})
			return
		}
	}
	fresh, err := h.queue.Enqueue(r.Context(), jobs)
	if err != nil {
		log(slog.LevelError, "enqueue failed", http.StatusServiceUnavailable, slog.Int("jobs", len(jobs)), slog.Any("err", err))
		w.Header().Set("Retry-After", "30")
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "jobs could not be stored; redeliver later"})
		return
	}
	out, apps, duplicates := storedViews(jobs, fresh)
	outcome := "enqueued"
	if duplicates == len(jobs) {
		outcome = "duplicate"
	}
	writeJSON(w, http.StatusAccepted, stored{Jobs: out})
	log(slog.LevelInfo, outcome, http.StatusAccepted, slog.Any("apps", apps), slog.Int("duplicates", duplicates))
}

// busy answers a delivery that does not fit in MaxUnverifiedBytes: 503, to be redelivered.
// The connection is closed rather than drained, so the unread body costs nothing more.
func (h *Hooks) busy(w http.ResponseWriter, log func(slog.Level, string, int, ...slog.Attr)) {
	all, large := h.budget.held()
	log(slog.LevelWarn, "unverified bodies over budget", http.StatusServiceUnavailable,
		slog.Int64("unverified_bytes", all), slog.Int64("unverified_large_bytes", large))
	w.Header().Set("Retry-After", strconv.Itoa(BusyRetryAfter))
	w.Header().Set("Connection", "close")
	writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "too many webhook bodies in flight; redeliver later"})
}

// storedViews describes each job of a delivery for the 202. A job that was stored before, by an
// earlier delivery of the same hook, is marked a duplicate and shows no id: its own id names
// nothing, and the first delivery's answer named the job that exists.
func storedViews(jobs, fresh []queue.Job) (out []jobView, apps nameList, duplicates int) {
	var isFresh map[string]bool
	if len(fresh) < len(jobs) {
		isFresh = make(map[string]bool, len(fresh))
		for _, j := range fresh {
			isFresh[j.ID] = true
		}
	}
	out, apps = make([]jobView, len(jobs)), make(nameList, len(jobs))
	for i, j := range jobs {
		apps[i] = j.App
		out[i] = jobView{ID: j.ID, App: j.App, SHA: j.SHA}
		if isFresh != nil && !isFresh[j.ID] {
			out[i].ID, out[i].Duplicate = "", true
			duplicates++
		}
	}
	return out, apps, duplicates
}

// nameList is a list of app names in a log line: [a b] in text, as fmt would print it but
// without its reflection, and an array in JSON.
type nameList []string

// MarshalText is what the text handler prints.
func (l nameList) MarshalText() ([]byte, error) {
	return []byte("[" + strings.Join(l, " ") + "]"), nil
}

// MarshalJSON keeps the JSON handler's array.
func (l nameList) MarshalJSON() ([]byte, error) { return json.Marshal([]string(l)) }

// stored is the body of a 202: the jobs the delivery made.
type stored struct {
	Jobs []jobView `json:"jobs"`
}

// jobView is a stored job as the forge's delivery log shows it.
type jobView struct {
	ID  string `json:"id,omitempty"`
	App string `json:"app"`
	SHA string `json:"sha"`
	// Duplicate marks a job an earlier delivery of the same hook stored already.
	Duplicate bool `json:"duplicate,omitzero"`
}

// route turns an event into jobs, or into the reason it needs none. It also names the
// dependents of selected apps that live in other repositories and so get no job here.
func (h *Hooks) route(repo hookRepo, ev Event) (jobs []queue.Job, ignored string, elsewhere []string) {
	repo, ignored = h.deliveryRepo(repo, ev.Repository)
	if ignored != "" && ev.Kind != EventPing && ev.Kind != EventIgnored {
		return nil, ignored, nil
	}
	switch ev.Kind {
	case EventPing:
		return nil, "", nil
	case EventIgnored:
		return nil, ev.Ignored, nil
	case EventPush:
		return h.routePush(repo, ev)
	case EventPullRequest:
		jobs, ignored := h.routePullRequest(repo, ev)
		return jobs, ignored, nil
	case EventRerun:
		jobs, ignored := h.routeRerun(repo, ev)
		return jobs, ignored, nil
	default:
		return nil, fmt.Sprintf("event kind %q is not acted on", ev.Kind), nil
	}
}

func (h *Hooks) routePush(repo hookRepo, ev Event) ([]queue.Job, string, []string) {
	branch, isBranch := strings.CutPrefix(ev.Ref, "refs/heads/")
	switch {
	case strings.HasPrefix(ev.Ref, "refs/tags/"):
		return nil, fmt.Sprintf("tag push %s: ferry deploys branches, not tags", ev.Ref), nil
	case !isBranch:
		return nil, fmt.Sprintf("push to %s, which is not a branch", ev.Ref), nil
	case !branchMatches(repo.Branch, branch):
		return nil, fmt.Sprintf("push to branch %s, which does not match %s", branch, repo.Branch), nil
	case ev.Deleted:
		return nil, fmt.Sprintf("branch %s was deleted; nothing to deploy", branch), nil
	}
	before := ev.Before
	if isZeroSHA(before) {
		before = ""
	}
	sel := h.graph.forPush(repo.Name, ev.Changed, ev.Truncated || before == "")
	if len(sel.apps) == 0 {
		return nil, "no app's path changed", nil
	}
	now := h.now().UTC()
	jobs := make([]queue.Job, len(sel.apps))
	for i, n := range sel.apps {
		jobs[i] = queue.Job{
			ID: h.newID(), Kind: queue.KindDeploy, Trigger: queue.TriggerPush,
			Repo: repo.Name, App: n.Name, Ref: ev.Ref, SHA: ev.After, Before: before,
			Unfiltered: ev.Truncated && before != "", DeliveryID: ev.DeliveryID, EnqueuedAt: now,
		}
	}
	return jobs, "", sel.otherRepos
}

func (h *Hooks) routePullRequest(repo hookRepo, ev Event) ([]queue.Job, string) {
	pr := ev.PR
	if pr == nil {
		return nil, "pull request event without a pull request"
	}
	if !branchMatches(repo.Branch, pr.BaseBranch) {
		return nil, fmt.Sprintf("pull request #%d targets branch %s, which does not match %s", pr.Number, pr.BaseBranch, repo.Branch)
	}
	apps := h.graph.ofRepo(repo.Name)
	if len(apps) == 0 {
		return nil, "no app's path changed"
	}
	now := h.now().UTC()
	jobs := make([]queue.Job, len(apps))
	for i, n := range apps {
		jobs[i] = queue.Job{
			ID: h.newID(), Kind: queue.KindPreview, Trigger: queue.TriggerPR,
			Repo: repo.Name, App: n.Name, Ref: pr.HeadRef, SHA: pr.HeadSHA,
			DeliveryID: ev.DeliveryID, PR: pr.Number, BaseSHA: pr.BaseSHA, EnqueuedAt: now,
		}
	}
	return jobs, ""
}

// branchMatches applies Repo.Branch, an exact name or a path.Match glob (validated by NewHooks).
func branchMatches(pattern, branch string) bool {
	ok, _ := path.Match(pattern, branch)
	return ok
}

// bodyDeliveryID stands in for a delivery id the forge did not send. It is derived from the
// signed body so that a redelivery of the same body still de-duplicates on the stream.
func bodyDeliveryID(body []byte) string {
	sum := sha256.Sum256(body)
	return "body-sha256-" + hex.EncodeToString(sum[:16])
}

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+): it crashes the program instead
	return hex.EncodeToString(b[:])
}

// writeJSON answers with v as one line of JSON. The v2 encoder writes what encoding/json's
// Encoder would (sorted map keys, HTML-safe escapes, null for nil, a final newline) at a fraction of its cost
// on the webhook's hot path.
func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["X-Content-Type-Options"] = noSniff
	w.WriteHeader(status)
	b, _ := jsonv2.Marshal(v, jsonv2.Deterministic(true), jsonv2.FormatNilSliceAsNull(true), jsonv2.FormatNilMapAsNull(true),
		jsontext.EscapeForHTML(true), jsontext.EscapeForJS(true))
	_, _ = w.Write(append(b, '\n'))
}

// Header values shared by every response (net/http never modifies them).
var (
	jsonContentType = []string{"application/json; charset=utf-8"}
	noSniff         = []string{"nosniff"}
)
