package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ferrygitops/ferry/queue"
	"github.com/go-chi/chi/v5"
)

// Steering is what the dashboard's buttons ask of ferry. Errors that wrap ErrUnknownApp,
// ErrSuspended, ErrRefused or ErrUnavailable are shown to the person as they are; any other is
// shown as a failure to try again.
type Steering interface {
	// Sync queues a manual sync of app at revision (empty: its branch head) and returns the
	// sync's id; force syncs a suspended app.
	Sync(ctx context.Context, app, revision string, force bool, by string) (id string, err error)
	// Suspend stops every sync of app but a forced one until Resume.
	Suspend(ctx context.Context, app, by, reason string) error
	// Resume lifts a suspension and syncs the branch head, returning that sync's id.
	Resume(ctx context.Context, app, by string) (id string, err error)
}

// Errors a Steering classifies its refusals by.
var (
	// ErrUnknownApp is an app ferry does not have.
	ErrUnknownApp = errors.New("no such app")
	// ErrSuspended is a sync of a suspended app that was not forced.
	ErrSuspended = errors.New("the app is suspended")
	// ErrRefused is a request that cannot be done as asked (a revision not on the app's branch).
	ErrRefused = errors.New("refused")
	// ErrUnavailable is an action this ferry does not offer.
	ErrUnavailable = errors.New("not available in this build")
)

const (
	// maxRevision bounds the revision a sync form may name.
	maxRevision = 255
	// recordWait bounds how long a button's answer waits for the new sync's record to be
	// written before it leads to the sync's page.
	recordWait = 10 * time.Second
	// maxReason bounds a suspension's reason.
	maxReason = 500
	// rowHistory is how many of an app's last syncs the app list reads to find its last deploy.
	rowHistory = 10
	// maxFilterText bounds the app list's text filter.
	maxFilterText = 100
)

// appRow is one app on the list, with where it stands.
type appRow struct {
	App       AppInfo
	Last      *queue.Record
	Suspended *queue.Suspension
	// State is the last sync's state, or "never".
	State string
}

// filter is the app list's selection, from the query string (?state=&repo=&q=), so that a
// filtered list works without script and can be bookmarked.
type filter struct {
	State, Repo, Text string
}

func filterOf(q url.Values) filter {
	f := filter{State: q.Get("state"), Repo: q.Get("repo"), Text: strings.TrimSpace(q.Get("q"))}
	if len(f.Text) > maxFilterText {
		f.Text = f.Text[:maxFilterText]
	}
	return f
}

// match tells whether a row passes the filter: its state (or "suspended"), its repo, and text
// found in its name, path or namespace, ignoring case.
func (f filter) match(r appRow) bool {
	if f.State != "" {
		if f.State == "suspended" {
			if r.Suspended == nil {
				return false
			}
		} else if r.State != f.State {
			return false
		}
	}
	if f.Repo != "" && r.App.Repo != f.Repo {
		return false
	}
	if f.Text != "" {
		t := strings.ToLower(f.Text)
		if !strings.Contains(strings.ToLower(r.App.Name), t) && !strings.Contains(strings.ToLower(r.App.Path), t) &&
			!strings.Contains(strings.ToLower(r.App.Namespace), t) {
			return false
		}
	}
	return true
}

// filterStates are the states the list can be filtered by, in the order offered.
var filterStates = []string{"failed", "running", "queued", "succeeded", "skipped", "never", "suspended"}

// rowOf is one app's row: it stands where its last deploy left it; a pull request's preview
// does not change that, unless the app has had nothing but previews.
func rowOf(app AppInfo, newest, deploy *queue.Record, suspended map[string]queue.Suspension) appRow {
	rw := appRow{App: app, State: "never", Last: deploy}
	if rw.Last == nil {
		rw.Last = newest
	}
	if rw.Last != nil {
		rw.State = string(rw.Last.State)
	}
	if sus, ok := suspended[app.Name]; ok && sus.Suspended {
		rw.Suspended = &sus
	}
	return rw
}

// rows is every app's row, sorted by name, from the in-memory index of app states.
func (s *Server) rows(ctx context.Context) ([]appRow, error) {
	suspended, _ := s.suspensions(ctx) // the list shows what it can read
	last, err := s.lastSyncs(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]appRow, 0, len(s.names))
	for _, n := range s.names {
		newest, deploy, err := last(n)
		if err != nil {
			return nil, err
		}
		out = append(out, rowOf(s.apps[n], newest, deploy, suspended))
	}
	return out, nil
}

// indexPage is the dashboard: the apps with their state, last commit and age, filtered by the
// query string and shown DashboardPageSize at a time (?page=), and the dependency graph.
func (s *Server) indexPage(w http.ResponseWriter, r *http.Request) {
	sess, _ := s.sessionOf(r)
	all, err := s.rows(r.Context())
	if err != nil {
		s.render(w, r, http.StatusServiceUnavailable, "index.html", map[string]any{"Title": "apps", "Err": "sync records unavailable: " + err.Error()}, sess)
		return
	}
	q := r.URL.Query()
	f := filterOf(q)
	var matched []appRow
	repos := map[string]bool{}
	counts := map[string]int{}
	for _, rw := range all {
		repos[rw.App.Repo] = true
		counts[rw.State]++
		if rw.Suspended != nil {
			counts["suspended"]++
		}
		if f.match(rw) {
			matched = append(matched, rw)
		}
	}
	repoNames := make([]string, 0, len(repos))
	for n := range repos {
		repoNames = append(repoNames, n)
	}
	sort.Strings(repoNames)
	pages := max(1, (len(matched)+DashboardPageSize-1)/DashboardPageSize)
	page := min(dashboardPage(q), pages)
	shown := matched[(page-1)*DashboardPageSize : min(page*DashboardPageSize, len(matched))]
	state := map[string]string{}
	for _, rw := range all {
		state[rw.App.Name] = rw.State
	}
	g := layoutGraph(s.cfg.Apps, func(app string) string { return state[app] })
	clusters := s.clusters()
	if len(clusters) < 2 {
		clusters = nil // one cluster: no column, no section
	}
	s.render(w, r, http.StatusOK, "index.html", map[string]any{
		"Title": "apps", "Rows": shown, "Total": len(all), "Matched": len(matched), "Filter": f, "States": filterStates, "Repos": repoNames,
		"Counts": counts, "Graph": g, "Apps": s.cfg.Apps, "Now": s.now(), "Clusters": clusters,
		"Page": page, "Pages": pages, "First": (page-1)*DashboardPageSize + 1, "LastShown": (page-1)*DashboardPageSize + len(shown), "PrevURL": pageURL(q, page-1, pages), "NextURL": pageURL(q, page+1, pages),
	}, sess)
}

// pageURL is the list at another page with the same filters; "" when there is no such page.
func pageURL(q url.Values, page, pages int) string {
	if page < 1 || page > pages {
		return ""
	}
	v := url.Values{}
	for _, k := range []string{"state", "repo", "q"} {
		if q.Get(k) != "" {
			v.Set(k, q.Get(k))
		}
	}
	if page > 1 {
		v.Set("page", strconv.Itoa(page))
	}
	if len(v) == 0 {
		return "/"
	}
	return "/?" + v.Encode()
}

// appPage is one app: where it stands, its buttons, its history and its last sync's objects.
func (s *Server) appPage(w http.ResponseWriter, r *http.Request) {
	sess, _ := s.sessionOf(r)
	name := chi.URLParam(r, "app")
	info, ok := s.apps[name]
	if !ok {
		s.render(w, r, http.StatusNotFound, "missing.html", map[string]any{"Title": "not found", "What": "app", "ID": name}, sess)
		return
	}
	hist, err := s.cfg.Records.History(r.Context(), name, historyOnAppPage)
	if err != nil {
		s.render(w, r, http.StatusServiceUnavailable, "missing.html", map[string]any{"Title": "unavailable", "What": "app", "ID": name,
			"Err": "sync records unavailable: " + err.Error()}, sess)
		return
	}
	sus, _ := s.suspension(r.Context(), name) // the page shows what it can read
	if sus != nil && !sus.Suspended {
		sus = nil
	}
	var dependents []string
	for _, a := range s.cfg.Apps {
		for _, d := range a.DependsOn {
			if d == name {
				dependents = append(dependents, a.Name)
			}
		}
	}
	data := map[string]any{"Title": name, "App": info, "History": hist, "Suspended": sus, "Dependents": dependents,
		"Now": s.now(), "Notice": r.URL.Query().Get("done"), "CanSteer": s.cfg.Steering != nil, "HistoryLimit": historyOnAppPage}
	if len(hist) > 0 {
		data["Last"] = hist[0]
	}
	s.render(w, r, http.StatusOK, "app.html", data, sess)
}

// action serves the POST of a button: sync, suspend or resume. It answers 303 to the new sync's
// page (sync, resume) or back to the app (suspend), and otherwise shows the app page with why.
func (s *Server) action(verb string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess, err := s.checkPost(w, r)
		if err != nil {
			s.refuse(w, r, err)
			return
		}
		name := chi.URLParam(r, "app")
		if _, ok := s.apps[name]; !ok {
			s.render(w, r, http.StatusNotFound, "missing.html", map[string]any{"Title": "not found", "What": "app", "ID": name}, sess)
			return
		}
		if s.cfg.Steering == nil {
			s.actionFailed(w, r, sess, name, ErrUnavailable)
			return
		}
		var id string
		switch verb {
		case "sync":
			rev := strings.TrimSpace(r.PostForm.Get("revision"))
			if len(rev) > maxRevision {
				s.actionFailed(w, r, sess, name, fmt.Errorf("%w: the revision is too long", ErrRefused))
				return
			}
			id, err = s.cfg.Steering.Sync(r.Context(), name, rev, r.PostForm.Get("force") == "on", sess.User)
		case "suspend":
			reason := strings.TrimSpace(r.PostForm.Get("reason"))
			if len(reason) > maxReason {
				reason = reason[:maxReason]
			}
			err = s.cfg.Steering.Suspend(r.Context(), name, sess.User, reason)
		case "resume":
			id, err = s.cfg.Steering.Resume(r.Context(), name, sess.User)
		}
		if err != nil {
			s.actionFailed(w, r, sess, name, err)
			return
		}
		s.cfg.Logger.Info("dashboard action", "action", verb, "app", name, "user", sess.User, "sync", id)
		if id != "" {
			s.awaitRecord(r.Context(), id)
			http.Redirect(w, r, "/syncs/"+url.PathEscape(id), http.StatusSeeOther)
			return
		}
		http.Redirect(w, r, "/apps/"+url.PathEscape(name)+"?done="+verb, http.StatusSeeOther)
	}
}

// awaitRecord waits, up to recordWait, until the sync just queued has its record (the syncer
// writes it as it takes note of the stored job), so that the page the button leads to shows it.
func (s *Server) awaitRecord(ctx context.Context, id string) {
	if s.cfg.Watch == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, recordWait)
	defer cancel()
	_ = s.cfg.Watch.WatchSync(ctx, id, func(queue.Record) bool { return false })
}

// actionFailed shows why a button did nothing, with the status that classifies it.
func (s *Server) actionFailed(w http.ResponseWriter, r *http.Request, sess *session, app string, err error) {
	code, msg := http.StatusServiceUnavailable, "ferry could not do this just now; try again."
	switch {
	case errors.Is(err, ErrUnknownApp):
		code, msg = http.StatusNotFound, "ferry has no app named "+quote(app)+"."
	case errors.Is(err, ErrSuspended):
		code, msg = http.StatusConflict, "The app is suspended: resume it, or tick “sync even though suspended”."
	case errors.Is(err, ErrUnavailable):
		code, msg = http.StatusNotImplemented, "This action is not available in this build of ferry."
	case errors.Is(err, ErrRefused):
		code, msg = http.StatusBadRequest, err.Error()
	}
	if code == http.StatusServiceUnavailable {
		s.cfg.Logger.Warn("dashboard action failed", "app", app, "err", err)
	}
	s.render(w, r, code, "refused.html", map[string]any{"Title": "not done", "Problem": msg, "App": app}, sess)
}

// refuse answers a state-changing request that checkPost turned away.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusForbidden
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		code = http.StatusRequestEntityTooLarge
	}
	sess, _ := s.sessionOf(r)
	s.render(w, r, code, "refused.html", map[string]any{"Title": "refused", "Problem": err.Error(), "SignIn": sess == nil}, sess)
}

// render writes a page with what every page needs: the signed-in user, the CSRF token of the
// forms, the versioned addresses of the stylesheet and script, and the current path to come back
// to after signing in.
func (s *Server) render(w http.ResponseWriter, r *http.Request, code int, name string, data map[string]any, sess *session) {
	if data == nil {
		data = map[string]any{}
	}
	data["Session"] = sess
	data["CSRF"] = s.csrfToken(sess)
	data["CSS"] = "/static/ferry.css?v=" + assets.cssVersion
	data["JS"] = "/static/ferry.js?v=" + assets.jsVersion
	data["Here"] = r.URL.RequestURI()
	data["SignInOn"] = len(s.cfg.SessionKey) > 0 && s.cfg.Users != nil
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// Pages show who is signed in and carry their CSRF token: no shared cache may keep them.
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	if err := pages.ExecuteTemplate(w, name, data); err != nil {
		s.cfg.Logger.Warn("page render", "page", name, "err", err)
	}
}

func (s *Server) now() time.Time {
	if s.cfg.Now != nil {
		return s.cfg.Now()
	}
	return time.Now()
}
