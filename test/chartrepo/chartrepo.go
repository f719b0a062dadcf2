// Package chartrepo serves a real Helm chart repository on 127.0.0.1 for tests: charts packaged
// by the Helm SDK, an index.yaml built by the SDK from the served directory, optional basic auth,
// per-path request counts, and injected failures.
package chartrepo

import (
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	repo "helm.sh/helm/v4/pkg/repo/v1"
	"sigs.k8s.io/yaml"
)

// testdata holds the small charts tests package; "hello" is the default one.
//
//go:embed testdata
var testdata embed.FS

// Options configure a Server.
type Options struct {
	// Username and Password, when both set, require HTTP basic auth on every request.
	Username, Password string
	// AbsoluteURLs makes the index name each archive by its full URL; by default the URLs are
	// relative to the repository, as `helm repo index` writes them without --url.
	AbsoluteURLs bool
}

// Server is a chart repository served from a directory under the test's temporary directory,
// at URL + "/" (index.yaml and the archives side by side, under a "charts/" sub-path).
type Server struct {
	URL  string // base URL of the repository, without a trailing slash
	dir  string
	opts Options
	srv  *httptest.Server

	mu       sync.Mutex
	index    []byte
	requests map[string]int // by URL path
	// notModified counts index requests answered 304.
	notModified int
	failures    []int // statuses to answer the next requests with, in order
}

// Start serves an empty repository until the end of the test.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s := &Server{dir: t.TempDir(), opts: opts, requests: map[string]int{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL + "/charts"
	t.Cleanup(s.srv.Close)
	s.reindex(t)
	return s
}

// Close stops the server: later requests fail to connect.
func (s *Server) Close() { s.srv.Close() }

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests[r.URL.Path]++
	var fail int
	if len(s.failures) > 0 {
		fail, s.failures = s.failures[0], s.failures[1:]
	}
	index := s.index
	s.mu.Unlock()
	if fail != 0 {
		http.Error(w, "injected failure", fail)
		return
	}
	if s.opts.Username != "" {
		u, p, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(s.opts.Username)) != 1 ||
			subtle.ConstantTimeCompare([]byte(p), []byte(s.opts.Password)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="charts"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
	}
	name, ok := strings.CutPrefix(r.URL.Path, "/charts/")
	if !ok || r.Method != http.MethodGet {
		http.NotFound(w, r)
		return
	}
	if name == "index.yaml" {
		// An ETag, as the common chart repository servers send: a client that still holds this
		// index gets 304 Not Modified.
		etag := fmt.Sprintf(`"%x"`, sha256.Sum256(index))
		w.Header().Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			s.mu.Lock()
			s.notModified++
			s.mu.Unlock()
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "application/x-yaml")
		_, _ = w.Write(index)
		return
	}
	if strings.Contains(name, "/") || !strings.HasSuffix(name, ".tgz") {
		http.NotFound(w, r)
		return
	}
	http.ServeFile(w, r, filepath.Join(s.dir, name))
}

// AddChart packages the testdata chart named chart at version with the Helm SDK, serves it and
// rebuilds the index; it returns the archive.
func (s *Server) AddChart(t testing.TB, chart, version string) []byte {
	t.Helper()
	data := Package(t, chart, version)
	s.AddFile(t, fmt.Sprintf("%s-%s.tgz", chart, version), data)
	return data
}

// AddFile serves data as name (an archive, chart or not) and rebuilds the index, which lists
// only what the SDK recognises as charts.
func (s *Server) AddFile(t testing.TB, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(s.dir, name), data, 0o644); err != nil {
		t.Fatalf("chartrepo: %v", err)
	}
	s.reindex(t)
}

// reindex builds index.yaml from the served directory with the SDK.
func (s *Server) reindex(t testing.TB) {
	t.Helper()
	base := ""
	if s.opts.AbsoluteURLs {
		base = s.URL
	}
	idx, err := repo.IndexDirectory(s.dir, base)
	if err != nil {
		t.Fatalf("chartrepo: index %s: %v", s.dir, err)
	}
	idx.SortEntries()
	s.setIndex(t, idx)
}

// EditIndex changes the served index (a wrong digest, an entry pointing elsewhere) until the
// next chart is added.
func (s *Server) EditIndex(t testing.TB, edit func(*repo.IndexFile)) {
	t.Helper()
	s.mu.Lock()
	raw := s.index
	s.mu.Unlock()
	var idx repo.IndexFile
	if err := yaml.Unmarshal(raw, &idx); err != nil {
		t.Fatalf("chartrepo: %v", err)
	}
	edit(&idx)
	s.setIndex(t, &idx)
}

func (s *Server) setIndex(t testing.TB, idx *repo.IndexFile) {
	t.Helper()
	raw, err := yaml.Marshal(idx)
	if err != nil {
		t.Fatalf("chartrepo: %v", err)
	}
	s.mu.Lock()
	s.index = raw
	s.mu.Unlock()
}

// FailNext answers the next n requests, whatever they ask, with status.
func (s *Server) FailNext(n, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.failures = append(s.failures, status)
	}
}

// NotModified returns how many index requests were answered 304 Not Modified.
func (s *Server) NotModified() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.notModified
}

// Requests returns how many requests asked for name (relative to the repository, e.g.
// "index.yaml" or "hello-0.1.0.tgz").
func (s *Server) Requests(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests["/charts/"+name]
}

// Package packages the testdata chart named chart with its version set to version, with the Helm
// SDK (as `helm package` does), and returns the archive.
func Package(t testing.TB, chart, version string) []byte {
	t.Helper()
	src := t.TempDir()
	root := path.Join("testdata", chart)
	err := fs.WalkDir(testdata, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(src, filepath.FromSlash(strings.TrimPrefix(p, root)))
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		data, err := testdata.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, data, 0o644)
	})
	if err != nil {
		t.Fatalf("chartrepo: copy testdata chart %s: %v", chart, err)
	}
	c, err := loader.LoadDir(src)
	if err != nil {
		t.Fatalf("chartrepo: load chart %s: %v", chart, err)
	}
	c.Metadata.Version = version
	out := t.TempDir()
	file, err := chartutil.Save(c, out)
	if err != nil {
		t.Fatalf("chartrepo: package chart %s: %v", chart, err)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("chartrepo: %v", err)
	}
	return data
}
