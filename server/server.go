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
	"strings"
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
	// Cluster names the cluster the app deploys to, on servers that deploy to several.
	Cluster string `json:"cluster,omitempty"`
}

// Suspensions is what the API and pages show of suspended apps, as every replica sees them.
type Suspensions interface {
	Get(ctx context.Context, app string) (queue.Suspension, error)
	// List returns the stored suspension of every app that has one, by app.
	List(ctx context.Context) (map[string]queue.Suspension, error)
}

// Config wires the server's parts; main builds it.
type Config struct {
	Hooks http.Handler // POST /hooks/{repo}
	// Auth guards the write API (sync, suspend, resume): it serves the handler behind it only
	// to authenticated requests. Nil refuses every write request with 401.
	Auth    func(http.Handler) http.Handler
	Resync  http.Handler // POST /api/v1/apps/{app}/sync
	Suspend http.Handler // POST /api/v1/apps/{app}/suspend
	Resume  http.Handler // POST /api/v1/apps/{app}/resume
	Diff    http.Handler // POST /api/v1/apps/{app}/diff: a dry-run of a local directory; nil serves none
	// Suspensions shows which apps are suspended; nil shows none.
	Suspensions Suspensions
	Records     Records
	// Watch follows records as they change, for live updates; nil serves none.
	Watch Watcher
	Apps  []AppInfo
	Ready []Check
	// Clusters tells how each target cluster answers (GET /api/v1/clusters, the app list
	// page); nil serves an empty list.
	Clusters func() []ClusterHealth
	// Gatherer serves /metrics; nil serves an empty registry.
	Gatherer prometheus.Gatherer
	Logger   *slog.Logger

	// Steering does what the dashboard's buttons ask (sync, suspend, resume); nil offers none.
	Steering Steering
	// Users checks an API token pasted on the dashboard's sign-in page, and an authenticating
	// proxy's user; nil offers no sign-in.
	Users Users
	// SessionKey signs dashboard sessions and CSRF tokens (SessionKey derives it); empty: no
	// sign-in and no buttons.
	SessionKey []byte
	// ExternalURL is ferry's public address: its origin is accepted on forms, and an https one
	// makes session cookies Secure.
	ExternalURL string
	// ReadAuth makes the read API, its event streams and the pages ask for what the write API
	// and the dashboard's buttons accept: a bearer token, a dashboard session or a trusted
	// proxy's user (Users). Health, readiness, metrics and webhooks stay open.
	ReadAuth bool
	// Now is the clock of sessions and ages; nil is time.Now.
	Now func() time.Time
}

// Server is ferry's HTTP server.
type Server struct {
	cfg    Config
	http   *http.Server
	apps   map[string]AppInfo
	closed chan struct{}
	// streams holds a slot per open event stream (MaxEventStreams).
	streams chan struct{}
	// names is every app's name, sorted; index keeps where each stands (applist.go).
	names []string
	index *appIndex
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
	s.names = appNames(s.apps)
	if f, ok := cfg.Records.(syncFollower); ok {
		s.index = newAppIndex(f, cfg.Logger, s.closed)
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
		r.Group(func(r chi.Router) {
			r.Use(s.requireReader)
			r.Get("/apps", s.listApps)
			r.Get("/apps/{app}", s.getApp)
			r.Get("/syncs/{id}", s.getSync)
			r.Get("/syncs/{id}/events", s.syncEvents)
			r.Get("/events", s.allSyncEvents)
			r.Get("/clusters", s.listClusters)
		})
		r.Group(func(r chi.Router) {
			r.Use(s.requireAuth)
			for path, h := range map[string]http.Handler{"sync": s.cfg.Resync, "suspend": s.cfg.Suspend, "resume": s.cfg.Resume, "diff": s.cfg.Diff} {
				if h != nil {
					r.Method(http.MethodPost, "/apps/{app}/"+path, h)
				}
			}
		})
	})
	r.Get("/static/ferry.css", serveAsset("text/css; charset=utf-8", stylesheet, assets.cssVersion))
	r.Get("/static/ferry.js", serveAsset("text/javascript; charset=utf-8", script, assets.jsVersion))
	r.Group(func(r chi.Router) {
		r.Use(s.requireReaderPage)
		r.Get("/", s.indexPage)
		r.Get("/apps/{app}", s.appPage)
		r.Get("/syncs/{id}", s.syncPage)
		r.Get("/syncs/{id}/diff", s.fullDiff)
	})
	r.Post("/apps/{app}/sync", s.action("sync"))
	r.Post("/apps/{app}/suspend", s.action("suspend"))
	r.Post("/apps/{app}/resume", s.action("resume"))
	r.Get("/login", s.loginPage)
	r.Post("/login", s.login)
	r.Post("/logout", s.logout)
	return r
}

// requireAuth is Config.Auth, or a refusal of everything when there is none.
func (s *Server) requireAuth(next http.Handler) http.Handler {
	if s.cfg.Auth != nil {
		return s.cfg.Auth(next)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusUnauthorized, "no authentication is configured: the write API is closed")
	})
}

// Serve accepts connections on l until Shutdown.
func (s *Server) Serve(l net.Listener) error {
	if s.index != nil {
		s.index.begin()
	}
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
// or a new one), the client's address as proxies report it and the peer's own. It never
// rewrites the request's RemoteAddr: authentication trusts a proxy by that address alone, and
// forwarding headers are anyone's to write. Without debug logging it adds nothing to a request:
// no id, no wrapped writer, no copy of the request.
func (s *Server) logRequests(next http.Handler) http.Handler {
	logged := middleware.RequestID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		start := time.Now()
		next.ServeHTTP(ww, r)
		s.cfg.Logger.Debug("http", "method", r.Method, "path", r.URL.Path, "status", ww.Status(), "took", time.Since(start),
			"req", middleware.GetReqID(r.Context()), "remote", clientAddr(r), "peer", r.RemoteAddr)
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.cfg.Logger.Enabled(r.Context(), slog.LevelDebug) {
			next.ServeHTTP(w, r)
			return
		}
		logged.ServeHTTP(w, r)
	})
}

// clientAddr is, for logs only, the client's address as a proxy reports it (True-Client-IP,
// X-Real-IP, or X-Forwarded-For's first entry, bounded), or else the peer's.
func clientAddr(r *http.Request) string {
	for _, h := range []string{"True-Client-IP", "X-Real-IP", "X-Forwarded-For"} {
		if v := r.Header.Get(h); v != "" {
			first, _, _ := strings.Cut(v, ",")
			if first = strings.TrimSpace(first); len(first) > maxLoggedAddr {
				first = first[:maxLoggedAddr] + "…"
			}
			return first
		}
	}
	return r.RemoteAddr
}

// maxLoggedAddr bounds a forwarded address written to the log (it is anyone's to write).
const maxLoggedAddr = 64

// pagePolicy is the Content-Security-Policy of every response. The pages are rendered on the
// server; they load one stylesheet and one script from ferry, the script opens event streams
// to ferry only, forms post to ferry only, and no other site may frame them. No inline script
// or style runs: a value slipped into a page (a commit message, an apiserver error) can
// therefore run nothing, load nothing and post nowhere else.
const pagePolicy = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// securityHeaders sets the browser-facing protections on every response: the policy above,
// no framing (X-Frame-Options for browsers that predate frame-ancestors), no content-type
// sniffing and no referrer leaking a sync page's address to the links it holds. The referrer
// policy is same-origin rather than no-referrer: under no-referrer browsers send "Origin: null"
// with a form, and the dashboard's forms are admitted by their origin (sameOrigin).
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
	noReferrer = []string{"same-origin"}
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
