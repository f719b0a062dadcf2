package server

import (
	"embed"
	"errors"
	"html/template"
	"net/http"
	"sort"
	"time"

	"github.com/ferrygitops/ferry/queue"
	"github.com/go-chi/chi/v5"
)

//go:embed templates/*.html
var templateFS embed.FS

// stylesheet is the pages' only style, served from ferry itself so that the pages' policy
// (pagePolicy) allows no inline style.
//
//go:embed static/ferry.css
var stylesheet []byte

// serveStylesheet serves /static/ferry.css; browsers may keep it for an hour.
func serveStylesheet(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_, _ = w.Write(stylesheet)
}

var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"short": func(s string) string {
		if len(s) > 7 {
			return s[:7]
		}
		return s
	},
	"when": func(t *time.Time) string {
		if t == nil {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"took": func(r queue.Record) string {
		if r.StartedAt == nil || r.FinishedAt == nil {
			return "—"
		}
		return r.FinishedAt.Sub(*r.StartedAt).Round(10 * time.Millisecond).String()
	},
}).ParseFS(templateFS, "templates/*.html"))

// syncPage is the page commit statuses link to: what ferry did with one commit, and why it
// failed in terms a person can act on.
func (s *Server) syncPage(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	rec, err := s.cfg.Records.Get(r.Context(), id)
	code := http.StatusOK
	if errors.Is(err, queue.ErrNotFound) {
		code = http.StatusNotFound
	} else if err != nil {
		code = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if code != http.StatusOK {
		w.WriteHeader(code)
		_ = pages.ExecuteTemplate(w, "missing.html", map[string]any{"ID": id, "Err": err.Error(), "NotFound": code == http.StatusNotFound,
			"History": queue.HistoryLength, "KeepDays": int(queue.EvictedKeep.Hours() / 24)})
		return
	}
	if !rec.State.Terminal() {
		// A running sync's page refreshes itself until the sync ends.
		w.Header().Set("Refresh", "3")
	}
	phases := make([]phase, 0, len(rec.Phases))
	for k, v := range rec.Phases {
		phases = append(phases, phase{k, time.Duration(v) * time.Millisecond})
	}
	sort.Slice(phases, func(i, j int) bool { return phaseOrder(phases[i].Name) < phaseOrder(phases[j].Name) })
	sus, _ := s.suspension(r.Context(), rec.App) // the page shows what it can read
	_ = pages.ExecuteTemplate(w, "sync.html", map[string]any{"R": rec, "Phases": phases, "App": s.apps[rec.App], "Suspension": sus,
		"History": queue.HistoryLength, "KeepDays": int(queue.EvictedKeep.Hours() / 24)})
}

// fullDiff serves, as plain text, the whole diff of a preview whose record holds it cut.
func (s *Server) fullDiff(w http.ResponseWriter, r *http.Request) {
	diff, err := s.cfg.Records.FullDiff(r.Context(), chi.URLParam(r, "id"))
	switch {
	case errors.Is(err, queue.ErrNotFound):
		http.Error(w, "no whole diff is kept for this sync: its record holds all of it, or was evicted", http.StatusNotFound)
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write(diff)
}

// indexPage lists the apps and their last syncs.
func (s *Server) indexPage(w http.ResponseWriter, r *http.Request) {
	type row struct {
		App       AppInfo
		Last      *queue.Record
		Suspended bool
	}
	suspended, _ := s.suspensions(r.Context()) // the page shows what it can read
	var rows []row
	for _, a := range s.cfg.Apps {
		rw := row{App: a, Suspended: suspended[a.Name].Suspended}
		if hist, err := s.cfg.Records.History(r.Context(), a.Name, 1); err == nil && len(hist) > 0 {
			rw.Last = &hist[0]
		}
		rows = append(rows, rw)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = pages.ExecuteTemplate(w, "index.html", rows)
}

type phase struct {
	Name string
	Took time.Duration
}

func phaseOrder(name string) int {
	for i, n := range []string{"fetch", "render", "apply", "prune", "health"} {
		if n == name {
			return i
		}
	}
	return 99
}
