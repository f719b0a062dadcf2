package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"

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

func (s *Server) listApps(w http.ResponseWriter, r *http.Request) {
	names := make([]string, 0, len(s.apps))
	for n := range s.apps {
		names = append(names, n)
	}
	sort.Strings(names)
	suspended, err := s.suspensions(r.Context())
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "suspensions unavailable: "+err.Error())
		return
	}
	out := make([]appView, 0, len(names))
	for _, n := range names {
		v := appView{AppInfo: s.apps[n]}
		if sus, ok := suspended[n]; ok {
			v.withSuspension(&sus)
		}
		hist, err := s.cfg.Records.History(r.Context(), n, 1)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, "sync records unavailable: "+err.Error())
			return
		}
		if len(hist) > 0 {
			v.LastSync = &hist[0]
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, map[string]any{"apps": out})
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
