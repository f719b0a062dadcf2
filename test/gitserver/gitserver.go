// Package gitserver serves real Git repositories over smart HTTP on 127.0.0.1 for ferry's
// tests and demo: git http-backend behind net/http/cgi, with the git command line making the
// commits, so ferry's fetcher talks to the same protocol a forge speaks.
package gitserver

import (
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// TB is the part of testing.TB the server needs, so a demo program can use it too.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	TempDir() string
	Cleanup(func())
}

// Server serves the bare repositories under its root.
type Server struct {
	root     string
	home     string
	url      string
	srv      *http.Server
	token    atomic.Pointer[string]
	requests atomic.Int64
	mu       sync.Mutex
}

// New starts a server on 127.0.0.1 that stops when t ends.
func New(t TB) *Server {
	t.Helper()
	s := &Server{root: t.TempDir(), home: t.TempDir()}
	backend, err := httpBackend()
	if err != nil {
		t.Fatalf("gitserver: %v", err)
	}
	cgiHandler := &cgi.Handler{
		Path: backend,
		Dir:  s.root,
		Env:  []string{"GIT_PROJECT_ROOT=" + s.root, "GIT_HTTP_EXPORT_ALL=1", "HOME=" + s.home, "GIT_CONFIG_NOSYSTEM=1"},
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		if tok := s.token.Load(); tok != nil {
			_, pass, ok := r.BasicAuth()
			if !ok || subtle.ConstantTimeCompare([]byte(pass), []byte(*tok)) != 1 {
				w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
				http.Error(w, "authentication required", http.StatusUnauthorized)
				return
			}
		}
		// Pushes through HTTP need an authenticated user as far as http-backend is concerned.
		r.Header.Del("Authorization")
		cgiHandler.ServeHTTP(w, r)
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("gitserver: listen: %v", err)
	}
	s.url = "http://" + l.Addr().String()
	s.srv = &http.Server{Handler: handler}
	go func() { _ = s.srv.Serve(l) }()
	t.Cleanup(func() { _ = s.srv.Close() })
	return s
}

func httpBackend() (string, error) {
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		return "", fmt.Errorf("git --exec-path: %w", err)
	}
	p := filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("git http-backend not found: %w", err)
	}
	return p, nil
}

// URL is the server's base URL.
func (s *Server) URL() string { return s.url }

// RequireToken makes every request need HTTP basic auth with tok as the password.
func (s *Server) RequireToken(tok string) { s.token.Store(&tok) }

// Requests counts the HTTP requests served, to tell whether a client used the network.
func (s *Server) Requests() int64 { return s.requests.Load() }

// Repo is one bare repository with a work tree the test commits from.
type Repo struct {
	s    *Server
	name string
	bare string
	work string
	mu   sync.Mutex
}

// CreateRepo makes an empty bare repository name (may contain slashes, e.g. acme/platform).
func (s *Server) CreateRepo(t TB, name string) *Repo {
	t.Helper()
	r := &Repo{s: s, name: name, bare: filepath.Join(s.root, name+".git"), work: filepath.Join(t.TempDir(), "work")}
	if err := os.MkdirAll(filepath.Dir(r.bare), 0o755); err != nil {
		t.Fatalf("gitserver: %v", err)
	}
	r.git(t, "", "init", "--bare", "--initial-branch=main", r.bare)
	r.git(t, r.bare, "config", "http.receivepack", "true")
	r.git(t, r.bare, "config", "uploadpack.allowReachableSHA1InWant", "true")
	r.git(t, "", "init", "--initial-branch=main", r.work)
	r.git(t, r.work, "remote", "add", "origin", r.bare)
	return r
}

// CloneURL is where clients fetch the repository.
func (r *Repo) CloneURL() string { return r.s.url + "/" + r.name + ".git" }

// Commit writes files (path → content) on branch, commits and pushes; it returns the sha.
func (r *Repo) Commit(t TB, branch, message string, files map[string]string) string {
	t.Helper()
	sha := r.CommitLocal(t, branch, message, files)
	r.Push(t, branch)
	return sha
}

// Remove deletes paths on branch, commits and pushes; it returns the sha.
func (r *Repo) Remove(t TB, branch, message string, paths ...string) string {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checkout(t, branch)
	args := append([]string{"rm", "-r", "-q", "--"}, paths...)
	r.git(t, r.work, args...)
	r.git(t, r.work, "commit", "-q", "-m", message)
	sha := r.git(t, r.work, "rev-parse", "HEAD")
	r.git(t, r.work, "push", "-q", "origin", branch)
	return sha
}

// CommitLocal commits on branch without pushing, so the commit exists only once Push is called:
// a hook that arrives before its commit can be fetched.
func (r *Repo) CommitLocal(t TB, branch, message string, files map[string]string) string {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checkout(t, branch)
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p := filepath.Join(r.work, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatalf("gitserver: %v", err)
		}
		if err := os.WriteFile(p, []byte(files[name]), 0o644); err != nil {
			t.Fatalf("gitserver: %v", err)
		}
	}
	r.git(t, r.work, "add", "-A")
	r.git(t, r.work, "commit", "-q", "--allow-empty", "-m", message)
	return r.git(t, r.work, "rev-parse", "HEAD")
}

// Symlink adds a symbolic link at path pointing to target on branch, commits and pushes.
func (r *Repo) Symlink(t TB, branch, path, target string) string {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checkout(t, branch)
	p := filepath.Join(r.work, filepath.FromSlash(path))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatalf("gitserver: %v", err)
	}
	if err := os.Symlink(target, p); err != nil {
		t.Fatalf("gitserver: %v", err)
	}
	r.git(t, r.work, "add", "-A")
	r.git(t, r.work, "commit", "-q", "-m", "link "+path)
	sha := r.git(t, r.work, "rev-parse", "HEAD")
	r.git(t, r.work, "push", "-q", "origin", branch)
	return sha
}

// Push publishes branch's local commits.
func (r *Repo) Push(t TB, branch string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.git(t, r.work, "push", "-q", "origin", branch)
}

// PushRef points ref (e.g. refs/pull/7/head) at sha on the server, as a forge does for
// pull requests.
func (r *Repo) PushRef(t TB, ref, sha string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.git(t, r.work, "push", "-q", "-f", "origin", sha+":"+ref)
}

// Head is branch's sha on the server.
func (r *Repo) Head(t TB, branch string) string {
	t.Helper()
	return r.git(t, r.bare, "rev-parse", "refs/heads/"+branch)
}

// checkout switches the work tree to branch, creating it from the current head if new.
func (r *Repo) checkout(t TB, branch string) {
	t.Helper()
	cur := r.gitAllowFail(r.work, "symbolic-ref", "--short", "HEAD")
	if cur == branch {
		return
	}
	if r.gitAllowFail(r.work, "rev-parse", "--verify", "-q", "refs/heads/"+branch) != "" {
		r.git(t, r.work, "checkout", "-q", branch)
		return
	}
	r.git(t, r.work, "checkout", "-q", "-b", branch)
}

func (r *Repo) env() []string {
	return []string{
		"HOME=" + r.s.home, "GIT_CONFIG_NOSYSTEM=1", "PATH=" + os.Getenv("PATH"),
		"GIT_AUTHOR_NAME=ferry test", "GIT_AUTHOR_EMAIL=test@ferry.invalid",
		"GIT_COMMITTER_NAME=ferry test", "GIT_COMMITTER_EMAIL=test@ferry.invalid",
	}
}

func (r *Repo) git(t TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = r.env()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("gitserver: git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func (r *Repo) gitAllowFail(dir string, args ...string) string {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = r.env()
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
