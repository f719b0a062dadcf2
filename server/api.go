package server

import (
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
	LastSync *queue.Record  `json:"lastSync,omitempty"`
	History  []queue.Record `json:"history,omitempty"`
}

func (s *Server) listApps(w http.ResponseWriter, r *http.Request) {
	names := make([]string, 0, len(s.apps))
	for n := range s.apps {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]appView, 0, len(names))
	for _, n := range names {
		v := appView{AppInfo: s.apps[n]}
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
	v := appView{AppInfo: info, History: hist}
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
