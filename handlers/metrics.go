package handlers

import (
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// unknownRepo labels deliveries to a repository ferry does not serve: the {repo} of such a URL
// is chosen by whoever sends it and must not become a label value.
const unknownRepo = "unknown"

// HookMetrics counts webhook deliveries by repository, provider and the HTTP status ferry
// answered. Repositories and providers come from the configuration, and the handler answers a
// handful of statuses, so the series are bounded.
type HookMetrics struct {
	received *prometheus.CounterVec
}

// NewHookMetrics registers ferry_hooks_received_total on reg.
func NewHookMetrics(reg prometheus.Registerer) *HookMetrics {
	m := &HookMetrics{received: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_hooks_received_total",
		Help: "Webhook deliveries by repository, provider and HTTP status code answered (202 stored, 200 ignored, 4xx refused, 503 not stored).",
	}, []string{"repo", "provider", "code"})}
	reg.MustRegister(m.received)
	return m
}

// Wrap returns h counting each delivery it answers. It must be mounted on a route with a {repo}
// parameter, as h is.
func (m *HookMetrics) Wrap(h *Hooks) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		repo, provider := unknownRepo, unknownRepo
		if hr, ok := h.repos[chi.URLParam(r, "repo")]; ok {
			repo, provider = hr.Name, hr.Provider
		}
		m.received.WithLabelValues(repo, provider, strconv.Itoa(sw.code())).Inc()
	})
}

// statusWriter remembers the status code written through it.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (read deadlines, flushing).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}
