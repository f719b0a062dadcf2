// Package gitserver serves real Git repositories over smart HTTP on 127.0.0.1 for ferry's
// tests and demo: git http-backend behind net/http/cgi, with the git command line making the
// commits, so ferry's fetcher talks the same protocol a forge speaks instead of a fake of it.
package gitserver

import (
	"crypto/subtle"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// gitTimeout bounds every git command the server runs, so a wedged git fails the test
	// instead of hanging it.
	gitTimeout = time.Minute
	// readHeaderTimeout bounds how long a client may take to send its request headers.
	readHeaderTimeout = 10 * time.Second
)

// TB is the part of testing.TB the server needs. Tests pass their *testing.T; a demo program
// passes its own small implementation, so the server is not tied to the testing package.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	TempDir() string
	Cleanup(func())
}

// Server serves the bare repositories under its root directory. Its methods are safe for
// concurrent use.
type Server struct {
	root     string
	home     string
	gitPath  string
	url      string
	srv      *http.Server
	token    atomic.Pointer[string]
	requests atomic.Int64

	mu       sync.Mutex
	failN    int
	failCode int
}

// New starts a server on a free port of 127.0.0.1. It stops, and its directories go, when t
// is cleaned up.
func New(t TB) *Server {
	t.Helper()
	gitPath, err := exec.LookPath("git")
	if err != nil {
		t.Fatalf("gitserver: %v", err)
	}
	s := &Server{root: t.TempDir(), home: t.TempDir(), gitPath: gitPath}
	backend, err := s.httpBackend()
	if err != nil {
		t.Fatalf("gitserver: %v", err)
	}
	cgiHandler := &cgi.Handler{
		Path: backend,
		Dir:  s.root,
		// http-backend's complaints (a missing repository) reach the client as HTTP statuses
		// already; on the test's output they are only noise.
		Stderr: io.Discard,
		Env: []string{
			"GIT_PROJECT_ROOT=" + s.root, "GIT_HTTP_EXPORT_ALL=1",
			"HOME=" + s.home, "GIT_CONFIG_NOSYSTEM=1",
		},
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("gitserver: listen: %v", err)
	}
	s.url = "http://" + l.Addr().String()
	s.srv = &http.Server{Handler: s.handler(cgiHandler), ReadHeaderTimeout: readHeaderTimeout}
	go func() { _ = s.srv.Serve(l) }()
	// Close, not Shutdown: it drops open connections at once instead of waiting on them.
	t.Cleanup(func() { _ = s.srv.Close() })
	return s
}

// handler counts requests, plays injected failures and checks the token before git sees
// the request.
func (s *Server) handler(backend http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		if code := s.takeFailure(); code != 0 {
			http.Error(w, "injected failure", code)
			return
		}
		if tok := s.token.Load(); tok != nil && !authorized(r, *tok) {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		// The CGI environment would otherwise carry the credentials to git as HTTP_AUTHORIZATION.
		r.Header.Del("Authorization")
		backend.ServeHTTP(w, r)
	})
}

// authorized accepts the token as a basic-auth password (any user name, as forges do) or as a
// bearer token.
func authorized(r *http.Request, tok string) bool {
	got := ""
	if _, pass, ok := r.BasicAuth(); ok {
		got = pass
	} else if b, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		got = b
	}
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(tok)) == 1
}

func (s *Server) takeFailure() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failN == 0 {
		return 0
	}
	s.failN--
	return s.failCode
}

func (s *Server) httpBackend() (string, error) {
	out, err := exec.Command(s.gitPath, "--exec-path").Output()
	if err != nil {
		return "", fmt.Errorf("git --exec-path: %w", err)
	}
	p := filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("git http-backend not found: %w", err)
	}
	return p, nil
}

// URL is the server's base URL, http://127.0.0.1:port.
func (s *Server) URL() string { return s.url }

// RequireToken makes every later request carry tok, as a basic-auth password or a bearer
// token, so tests can check that a client authenticates and what it does when it cannot.
func (s *Server) RequireToken(tok string) { s.token.Store(&tok) }

// Requests counts the HTTP requests served so far (failed and refused ones included), so a
// test can tell whether a client went to the network at all.
func (s *Server) Requests() int64 { return s.requests.Load() }

// FailNext makes the next n requests fail with HTTP status code, to play a forge having a
// bad moment (a 503) and check that clients see it as passing.
func (s *Server) FailNext(n, code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failN, s.failCode = n, code
}

// CreateRepo makes an empty bare repository <root>/<name>.git, served at CloneURL, whose
// default branch is main. name may contain slashes (acme/platform), as forge paths do.
func (s *Server) CreateRepo(t TB, name string) *Repo {
	t.Helper()
	clean := filepath.ToSlash(filepath.Clean(name))
	if name == "" || clean != name || strings.HasPrefix(clean, "../") || filepath.IsAbs(name) {
		t.Fatalf("gitserver: repository name %q must be a clean relative path", name)
	}
	r := &Repo{s: s, name: name, bare: filepath.Join(s.root, filepath.FromSlash(name)+".git"), work: filepath.Join(t.TempDir(), "work")}
	if err := os.MkdirAll(filepath.Dir(r.bare), 0o755); err != nil {
		t.Fatalf("gitserver: %v", err)
	}
	r.git(t, "", "init", "-q", "--bare", "--initial-branch=main", r.bare)
	r.git(t, r.bare, "config", "http.receivepack", "true")
	// Forges serve any commit reachable from a ref when asked for it by sha; so does this one.
	r.git(t, r.bare, "config", "uploadpack.allowReachableSHA1InWant", "true")
	r.git(t, "", "init", "-q", "--initial-branch=main", r.work)
	r.git(t, r.work, "remote", "add", "origin", r.bare)
	return r
}
