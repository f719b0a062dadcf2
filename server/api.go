package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/ferrygitops/ferry/queue"
	"github.com/go-chi/chi/v5"
)

// historyOnAppPage is how many past syncs GET /api/v1/apps/{app} returns.
const historyOnAppPage = 20

// appView is an app with where it stands.
type appView struct {
	AppInfo
	// Suspended is true while pushes, polls, self-heal and start-up do not sync the app.
	Suspended bool `json:"suspended"`
	// Suspension says who suspended (or last resumed) the app, why and when; absent for an app
	// never suspended.
	Suspension *queue.Suspension `json:"suspension,omitempty"`
	LastSync   *queue.Record     `json:"lastSync,omitempty"`
	History    []queue.Record    `json:"history,omitempty"`
}

// suspensions returns every app's stored suspension (none without a store).
func (s *Server) suspensions(ctx context.Context) (map[string]queue.Suspension, error) {
	if s.cfg.Suspensions == nil {
		return nil, nil
	}
	return s.cfg.Suspensions.List(ctx)
}

// suspension returns one app's stored suspension, nil when it has none.
func (s *Server) suspension(ctx context.Context, app string) (*queue.Suspension, error) {
	if s.cfg.Suspensions == nil {
		return nil, nil
	}
	sus, err := s.cfg.Suspensions.Get(ctx, app)
	if err != nil || (!sus.Suspended && sus.At.IsZero()) {
		return nil, err
	}
	return &sus, nil
}

// withSuspension fills v's suspension fields.
func (v *appView) withSuspension(sus *queue.Suspension) {
	if sus != nil {
		v.Suspended, v.Suspension = sus.Suspended, sus
	}
}

// listApps is GET /api/v1/apps: every app with its newest sync, sorted by name, read from the
// in-memory index of app states (no record is read per app). ?state=, ?repo= and ?q= filter as
// on the dashboard; ?limit= pages, and the answer's "continue", when present, is passed as
// ?continue= for the next page. lastSync is the sync's summary; /api/v1/syncs/{id} has the rest.
func (s *Server) listApps(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	page, err := listPageOf(q)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	f := filterOf(q)
	suspended, err := s.suspensions(r.Context())
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "suspensions unavailable: "+err.Error())
		return
	}
	last, err := s.lastSyncs(r.Context())
	if err != nil {
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "sync records unavailable: "+err.Error())
		return
	}
	out := []appView{}
	matched, next := 0, ""
	for _, n := range s.names {
		newest, deploy, err := last(n)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, "sync records unavailable: "+err.Error())
			return
		}
		rw := rowOf(s.apps[n], newest, deploy, suspended)
		if !f.match(rw) {
			continue
		}
		matched++
		if n <= page.after {
			continue
		}
		if page.limit > 0 && len(out) == page.limit {
			next = out[len(out)-1].Name
			continue
		}
		v := appView{AppInfo: s.apps[n], LastSync: newest}
		if sus, ok := suspended[n]; ok {
			v.withSuspension(&sus)
		}
		out = append(out, v)
	}
	body := map[string]any{"apps": out, "total": matched}
	if next != "" {
		body["continue"] = next
	}
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) getApp(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "app")
	info, ok := s.apps[name]
	if !ok {
		writeError(w, http.StatusNotFound, "no app named "+quote(name))
		return
	}
	hist, err := s.cfg.Records.History(r.Context(), name, historyOnAppPage)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "sync records unavailable: "+err.Error())
		return
	}
	sus, err := s.suspension(r.Context(), name)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "suspensions unavailable: "+err.Error())
		return
	}
	v := appView{AppInfo: info, History: hist}
	v.withSuspension(sus)
	if len(hist) > 0 {
		v.LastSync = &hist[0]
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) getSync(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	rec, err := s.cfg.Records.Get(r.Context(), id)
	if errors.Is(err, queue.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no sync with id "+quote(id))
		return
	}
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "sync records unavailable: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// quote bounds and quotes a user-supplied name for an error message.
func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	b, _ := json.Marshal(s)
	return string(b)
}
