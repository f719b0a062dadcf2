// Package server is ferry's HTTP face: webhook and API routes, the sync pages, health and
// metrics, with the timeouts and limits a server facing the internet needs.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/ferrygitops/ferry/queue"
	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const (
	// ReadHeaderTimeout bounds how long a client may take to send its headers (slowloris).
	ReadHeaderTimeout = 10 * time.Second
	// ReadTimeout bounds reading a whole request, body included; webhook bodies are at most 25 MiB.
	ReadTimeout = 60 * time.Second
	// WriteTimeout bounds writing a response.
	WriteTimeout = 60 * time.Second
	// IdleTimeout closes idle keep-alive connections.
	IdleTimeout = 120 * time.Second
	// readyTimeout bounds each readiness check.
	readyTimeout = 3 * time.Second
)

// Records is what the API and pages read: sync records and history, from the shared store.
type Records interface {
	Get(ctx context.Context, id string) (queue.Record, error)
	History(ctx context.Context, app string, limit int) ([]queue.Record, error)
	// FullDiff is the whole diff of a sync whose record holds it cut (Record.DiffCut).
	FullDiff(ctx context.Context, id string) ([]byte, error)
}

// Check is one readiness probe (NATS reachable, cluster reachable).
type Check struct {
	Name string
	Run  func(ctx context.Context) error
}

// AppInfo is a configured app as the API shows it.
type AppInfo struct {
	Name      string   `json:"name"`
	Repo      string   `json:"repo"`
	Path      string   `json:"path"`
	Namespace string   `json:"namespace,omitempty"`
	Branch    string   `json:"branch"`
	Prune     bool     `json:"prune"`
	DependsOn []string `json:"dependsOn,omitempty"`
}

// Config wires the server's parts; main builds it.
type Config struct {
	Hooks   http.Handler // POST /hooks/{repo}
	Resync  http.Handler // POST /api/v1/apps/{app}/sync
	Diff    http.Handler // POST /api/v1/apps/{app}/diff: a dry-run of a local directory; nil serves none
	Records Records
	// Watch follows records as they change, for live updates; nil serves none.
	Watch Watcher
	Apps  []AppInfo
	Ready []Check
	// Gatherer serves /metrics; nil serves an empty registry.
	Gatherer prometheus.Gatherer
	Logger   *slog.Logger
}

// Server is ferry's HTTP server.
type Server struct {
	cfg    Config
	http   *http.Server
	apps   map[string]AppInfo
	closed chan struct{}
	// streams holds a slot per open event stream (MaxEventStreams).
	streams chan struct{}
}

// New builds the server and its routes.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Gatherer == nil {
		cfg.Gatherer = prometheus.NewRegistry()
	}
	s := &Server{cfg: cfg, apps: map[string]AppInfo{}, closed: make(chan struct{}), streams: make(chan struct{}, MaxEventStreams)}
	for _, a := range cfg.Apps {
		s.apps[a.Name] = a
	}
	s.http = &http.Server{
		Handler:           s.Routes(),
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	return s
}

// Routes is the router, exposed so tests can serve it with httptest.
func (s *Server) Routes() http.Handler {
	r := chi.NewRouter()
	r.Use(s.logRequests, securityHeaders, middleware.Recoverer)
	r.Get("/healthz", s.healthz)
	r.Get("/readyz", s.readyz)
	r.Method(http.MethodGet, "/metrics", promhttp.HandlerFor(s.cfg.Gatherer, promhttp.HandlerOpts{}))
	if s.cfg.Hooks != nil {
		r.Method(http.MethodPost, "/hooks/{repo}", s.cfg.Hooks)
	}
	r.Route("/api/v1", func(r chi.Router) {
		r.Get("/apps", s.listApps)
		r.Get("/apps/{app}", s.getApp)
		r.Get("/syncs/{id}", s.getSync)
		r.Get("/syncs/{id}/events", s.syncEvents)
		r.Get("/events", s.allSyncEvents)
		if s.cfg.Resync != nil {
			r.Method(http.MethodPost, "/apps/{app}/sync", s.cfg.Resync)
		}
		if s.cfg.Diff != nil {
			r.Method(http.MethodPost, "/apps/{app}/diff", s.cfg.Diff)
		}
	})
	r.Get("/static/ferry.css", serveStylesheet)
	r.Get("/", s.indexPage)
	r.Get("/syncs/{id}", s.syncPage)
	r.Get("/syncs/{id}/diff", s.fullDiff)
	return r
}

// Serve accepts connections on l until Shutdown.
func (s *Server) Serve(l net.Listener) error {
	err := s.http.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting connections and waits for in-flight requests, within ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	close(s.closed)
	if err := s.http.Shutdown(ctx); err != nil {
		return fmt.Errorf("http shutdown: %w", err)
	}
	return nil
}

// logRequests writes one debug line per request, with a request id (the client's X-Request-Id
// or a new one) and the client's address as proxies report it. Without debug logging it adds
// nothing to a request: no id, no wrapped writer, no copy of the request.
func (s *Server) logRequests(next http.Handler) http.Handler {
	logged := middleware.RequestID(middleware.RealIP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		start := time.Now()
		next.ServeHTTP(ww, r)
		s.cfg.Logger.Debug("http", "method", r.Method, "path", r.URL.Path, "status", ww.Status(), "took", time.Since(start),
			"req", middleware.GetReqID(r.Context()), "remote", r.RemoteAddr)
	})))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.cfg.Logger.Enabled(r.Context(), slog.LevelDebug) {
			next.ServeHTTP(w, r)
			return
		}
		logged.ServeHTTP(w, r)
	})
}

// pagePolicy is the Content-Security-Policy of every response. The pages are rendered on the
// server with no script, no inline style and no frame: they load one stylesheet from ferry and
// nothing else, and no other site may frame them. A value slipped into a page (a commit
// message, an apiserver error) can therefore run nothing, load nothing and post nowhere.
const pagePolicy = "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// securityHeaders sets the browser-facing protections on every response: the policy above,
// no framing (X-Frame-Options for browsers that predate frame-ancestors), no content-type
// sniffing and no referrer leaking a sync page's address to the links it holds.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Security-Policy"] = cspValue
		h["X-Frame-Options"] = frameDeny
		h["X-Content-Type-Options"] = noSniff
		h["Referrer-Policy"] = noReferrer
		next.ServeHTTP(w, r)
	})
}

// Header values of securityHeaders, shared by every response (net/http never modifies them).
var (
	cspValue   = []string{pagePolicy}
	frameDeny  = []string{"DENY"}
	noSniff    = []string{"nosniff"}
	noReferrer = []string{"no-referrer"}
)

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz fails while shutting down and while NATS or the cluster is unreachable, so a load
// balancer sends hooks to a replica that can store them.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	select {
	case <-s.closed:
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "shutting down"})
		return
	default:
	}
	result := map[string]string{}
	code := http.StatusOK
	for _, c := range s.cfg.Ready {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		err := c.Run(ctx)
		cancel()
		if err != nil {
			result[c.Name] = err.Error()
			code = http.StatusServiceUnavailable
			continue
		}
		result[c.Name] = "ok"
	}
	writeJSON(w, code, result)
}
