package server

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/ferrygitops/ferry/queue"
	"github.com/go-chi/chi/v5"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static/ferry.css
var stylesheet []byte

//go:embed static/ferry.js
var script []byte

// staticAssets are the pages' only style and script, served from ferry itself so that the
// pages' policy (pagePolicy) allows no inline style or script and nothing from elsewhere. Pages
// link them with a version, the start of their content's digest, so browsers may keep them
// for a long time and still get a new one with a new ferry.
type staticAssets struct {
	cssVersion, jsVersion string
}

var assets = staticAssets{cssVersion: digest(stylesheet), jsVersion: digest(script)}

func digest(b []byte) string {
	d := sha256.Sum256(b)
	return hex.EncodeToString(d[:6])
}

const (
	// assetMaxAge is how long a browser keeps an asset fetched with its current version.
	assetMaxAge = 365 * 24 * time.Hour
	// unversionedMaxAge is how long a browser keeps an asset fetched without a version or with
	// an old one (a page still open across an upgrade).
	unversionedMaxAge = 5 * time.Minute
)

func serveAsset(contentType string, body []byte, version string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		if r.URL.Query().Get("v") == version {
			w.Header().Set("Cache-Control", fmt.Sprintf("public, max-age=%d, immutable", int(assetMaxAge.Seconds())))
		} else {
			w.Header().Set("Cache-Control", fmt.Sprintf("public, max-age=%d", int(unversionedMaxAge.Seconds())))
		}
		w.Header().Set("ETag", `"`+version+`"`)
		if r.Header.Get("If-None-Match") == `"`+version+`"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		_, _ = w.Write(body)
	}
}

// diffLine is one line of a preview's diff, with its kind for styling; the sign that starts it
// stays in the text, so the kind does not rest on colour alone.
type diffLine struct {
	Kind, Text string
}

func diffLines(diff string) []diffLine {
	lines := strings.Split(strings.TrimSuffix(diff, "\n"), "\n")
	out := make([]diffLine, 0, len(lines))
	for _, l := range lines {
		kind := "same"
		switch t := strings.TrimLeft(l, " "); {
		case strings.HasPrefix(t, "+ "):
			kind = "add"
		case strings.HasPrefix(t, "- "):
			kind = "del"
		case strings.HasPrefix(t, "~ "):
			kind = "change"
		case strings.HasPrefix(t, "* "):
			kind = "hook"
		}
		out = append(out, diffLine{kind, l})
	}
	return out
}

// age says how long ago t was, roughly, as people read it on a dashboard.
func age(now time.Time, t *time.Time) string {
	if t == nil || t.IsZero() {
		return "—"
	}
	d := now.Sub(*t)
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

// lastTime is when a sync last changed: finished, started or queued.
func lastTime(r *queue.Record) *time.Time {
	switch {
	case r == nil:
		return nil
	case r.FinishedAt != nil:
		return r.FinishedAt
	case r.StartedAt != nil:
		return r.StartedAt
	}
	return &r.EnqueuedAt
}

// stateIcon is a sign beside each state's word, so that a state is told by shape and word, not
// colour alone.
func stateIcon(state string) string {
	switch queue.State(state) {
	case queue.StateSucceeded:
		return "✓"
	case queue.StateFailed:
		return "✗"
	case queue.StateRunning:
		return "▶"
	case queue.StateQueued:
		return "…"
	case queue.StateSkipped:
		return "–"
	}
	return "○"
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
	"iso": func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	},
	"took": func(r queue.Record) string {
		if r.StartedAt == nil || r.FinishedAt == nil {
			return "—"
		}
		return r.FinishedAt.Sub(*r.StartedAt).Round(10 * time.Millisecond).String()
	},
	"age":       age,
	"lastTime":  lastTime,
	"icon":      stateIcon,
	"diffLines": diffLines,
	"phases":    phasesOf,
}).ParseFS(templateFS, "templates/*.html"))

// syncPage is the page commit statuses link to: what ferry did with one commit, and why it
// failed in terms a person can act on. While the sync runs, the page's script follows it live
// (GET /api/v1/syncs/{id}/events); without script, a reload shows where it stands.
func (s *Server) syncPage(w http.ResponseWriter, r *http.Request) {
	sess, _ := s.sessionOf(r)
	id := chi.URLParam(r, "id")
	rec, err := s.cfg.Records.Get(r.Context(), id)
	code := http.StatusOK
	if errors.Is(err, queue.ErrNotFound) {
		code = http.StatusNotFound
	} else if err != nil {
		code = http.StatusServiceUnavailable
	}
	if code != http.StatusOK {
		s.render(w, r, code, "missing.html", map[string]any{"Title": "not found", "What": "sync", "ID": id, "Err": err.Error(),
			"NotFound": code == http.StatusNotFound, "History": queue.HistoryLength, "KeepDays": int(queue.EvictedKeep.Hours() / 24)}, sess)
		return
	}
	sus, _ := s.suspension(r.Context(), rec.App) // the page shows what it can read
	s.render(w, r, http.StatusOK, "sync.html", map[string]any{"Title": fmt.Sprintf("%s @ %s", rec.App, shortSHA(rec.SHA)),
		"R": rec, "App": s.apps[rec.App], "Live": !rec.State.Terminal() && s.cfg.Watch != nil, "Suspension": sus,
		"History": queue.HistoryLength, "KeepDays": int(queue.EvictedKeep.Hours() / 24)}, sess)
}

func shortSHA(s string) string {
	if len(s) > 7 {
		return s[:7]
	}
	return s
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

type phase struct {
	Name string
	Took time.Duration
}

// phasesOf lists a record's phases in the order a sync runs them.
func phasesOf(r queue.Record) []phase {
	phases := make([]phase, 0, len(r.Phases))
	for k, v := range r.Phases {
		phases = append(phases, phase{k, time.Duration(v) * time.Millisecond})
	}
	sort.Slice(phases, func(i, j int) bool {
		if phaseOrder(phases[i].Name) != phaseOrder(phases[j].Name) {
			return phaseOrder(phases[i].Name) < phaseOrder(phases[j].Name)
		}
		return phases[i].Name < phases[j].Name
	})
	return phases
}

func phaseOrder(name string) int {
	for i, n := range []string{"fetch", "render", "apply", "prune", "health"} {
		if n == name {
			return i
		}
	}
	return 99
}
