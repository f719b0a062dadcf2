// Package forgefake is a fake of the commit status APIs of GitHub, GitLab and Gitea, for
// ferry's end-to-end tests: the forges cannot run here, so this server answers as their
// documentation says they do and records every status ferry posts, in order.
//
// One server serves all three under their documented paths, so URL() works as the apiURL of a
// repository of any provider:
//
//	GitHub:  POST /repos/{owner}/{repo}/statuses/{sha}           (also under /api/v3, as Enterprise)
//	GitLab:  POST /api/v4/projects/{id}/statuses/{sha}           (id: the URL-escaped project path)
//	Gitea:   POST /api/v1/repos/{owner}/{repo}/statuses/{sha}
package forgefake

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Provider names, as in ferry's configuration and in Status.Provider.
const (
	GitHub = "github"
	GitLab = "gitlab"
	Gitea  = "gitea"
)

// maxBody bounds a status request body; real ones are a few hundred bytes. Larger ones get 413.
const maxBody = 1 << 20

// Status is one commit status as a forge accepted it, in the forge's own vocabulary: State is
// what was sent (GitLab's "failed", GitHub's "failure"), Context is GitLab's name.
type Status struct {
	// Provider is GitHub, GitLab or Gitea: which API the status came through.
	Provider string
	// Repo is owner/repo, or GitLab's project path (unescaped) or numeric id.
	Repo string
	// SHA is the commit the status is on, as in the URL.
	SHA string
	// Context tells statuses on one commit apart (GitHub/Gitea context, GitLab name).
	Context string
	// State is the status state as sent.
	State string
	// Description is the human-readable text next to the status.
	Description string
	// TargetURL is the link the status points to.
	TargetURL string
}

// Forge is the fake server. Its methods are safe for concurrent use.
type Forge struct {
	t     testing.TB
	token string
	srv   *httptest.Server

	mu         sync.Mutex
	statuses   []Status
	requests   int           // status posts received, accepted or not
	failNext   int           // how many of the next status posts get failCode
	failCode   int           // the injected answer
	unexpected []string      // requests no route matched, for error messages
	changed    chan struct{} // closed and replaced whenever anything is recorded
	nextID     int64
}

// New starts a fake forge on 127.0.0.1 that accepts token (and no other) and stops it when the
// test ends. An empty token fails the test: an empty secret never means "no check".
func New(t testing.TB, token string) *Forge {
	t.Helper()
	if token == "" {
		t.Fatal("forgefake: token must not be empty")
	}
	f := &Forge{t: t, token: token, changed: make(chan struct{})}
	mux := http.NewServeMux()
	for _, prefix := range []string{"", "/api/v3"} {
		mux.HandleFunc("POST "+prefix+"/repos/{owner}/{repo}/statuses/{sha}", f.statusHandler(gitHubAPI{}))
	}
	mux.HandleFunc("POST /api/v4/projects/{id}/statuses/{sha}", f.statusHandler(gitLabAPI{f: f}))
	mux.HandleFunc("POST /api/v1/repos/{owner}/{repo}/statuses/{sha}", f.statusHandler(giteaAPI{}))
	mux.HandleFunc("GET /api/v1/version", func(w http.ResponseWriter, _ *http.Request) {
		// Gitea's SDK asks for the server version before its first call.
		writeJSON(w, http.StatusOK, map[string]string{"version": giteaVersion})
	})
	mux.HandleFunc("/", f.notFound)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

// URL is the server's base address (http://127.0.0.1:port, no trailing slash): the apiURL of a
// repository on any of the three providers.
func (f *Forge) URL() string { return f.srv.URL }

// Statuses returns the statuses accepted for sha, in the order they arrived.
func (f *Forge) Statuses(sha string) []Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Status
	for _, s := range f.statuses {
		if s.SHA == sha {
			out = append(out, s)
		}
	}
	return out
}

// All returns every status accepted, of any commit, in the order they arrived.
func (f *Forge) All() []Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Status(nil), f.statuses...)
}

// Requests counts the status posts received so far, including those refused (wrong token,
// injected failure, invalid): what a test of retries compares with len(Statuses).
func (f *Forge) Requests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests
}

// FailNext makes the next n status posts, of any provider, fail with HTTP code (and a JSON
// message) without being recorded, as a forge having an outage or rate limiting would.
func (f *Forge) FailNext(n, code int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failNext, f.failCode = n, code
}

// WaitFor waits until a status for sha and context satisfying pred (nil: any) has been
// accepted, and returns the first such status in arrival order. When ctx ends first, the error
// lists what did arrive for sha, which is usually enough to see what went wrong.
func (f *Forge) WaitFor(ctx context.Context, sha, context string, pred func(Status) bool) (Status, error) {
	for {
		f.mu.Lock()
		for _, s := range f.statuses {
			if s.SHA == sha && s.Context == context && (pred == nil || pred(s)) {
				f.mu.Unlock()
				return s, nil
			}
		}
		changed := f.changed
		f.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return Status{}, fmt.Errorf("forgefake: wait for status %s on %s: %w; %s", context, sha, ctx.Err(), f.summary(sha))
		}
	}
}

// summary describes what was received for sha, for WaitFor's error.
func (f *Forge) summary(sha string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "%d status posts received", f.requests)
	for _, s := range f.statuses {
		if s.SHA == sha {
			fmt.Fprintf(&b, "; %s %s=%s %q", s.Provider, s.Context, s.State, s.Description)
		}
	}
	if len(f.unexpected) > 0 {
		fmt.Fprintf(&b, "; unexpected requests: %s", strings.Join(f.unexpected, ", "))
	}
	return b.String()
}

// providerAPI is one forge's flavour of the status endpoint.
type providerAPI interface {
	// name is the provider, as in Status.Provider.
	name() string
	// authorized reports whether the request carries the token in one of the forge's ways.
	authorized(r *http.Request, token string) bool
	// unauthorized writes the forge's answer to a missing or wrong token.
	unauthorized(w http.ResponseWriter)
	// repo names the repository or project from the path values.
	repo(r *http.Request) string
	// parse reads the status from the request; an error is answered with code.
	parse(r *http.Request, s *Status) (code int, err error)
	// accept validates s against what was recorded before (under the Forge's lock) and, if the
	// forge would take it, writes the forge's 201 answer and returns true; else writes the error.
	accept(w http.ResponseWriter, s Status, id int64, seen []Status) bool
}

// statusHandler wraps a provider's status endpoint with what every provider shares: counting,
// injected failures, the token check, the body limit and recording.
func (f *Forge) statusHandler(api providerAPI) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.requests++
		inject := f.failNext > 0
		code := f.failCode
		if inject {
			f.failNext--
		}
		f.mu.Unlock()
		defer f.notify()
		if inject {
			writeJSON(w, code, map[string]string{"message": fmt.Sprintf("injected failure (%d %s)", code, http.StatusText(code))})
			return
		}
		if !api.authorized(r, f.token) {
			api.unauthorized(w)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		s := Status{Provider: api.name(), Repo: api.repo(r), SHA: r.PathValue("sha")}
		if code, err := api.parse(r, &s); err != nil {
			writeJSON(w, code, map[string]string{"message": err.Error()})
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		f.nextID++
		if api.accept(w, s, f.nextID, f.statuses) {
			f.statuses = append(f.statuses, s)
		}
	}
}

// notify wakes every WaitFor.
func (f *Forge) notify() {
	f.mu.Lock()
	defer f.mu.Unlock()
	close(f.changed)
	f.changed = make(chan struct{})
}

// notFound answers requests no route matched and remembers them: a wrong path is a bug in
// ferry's client that a test should be able to see.
func (f *Forge) notFound(w http.ResponseWriter, r *http.Request) {
	line := r.Method + " " + r.URL.EscapedPath()
	f.mu.Lock()
	f.unexpected = append(f.unexpected, line)
	f.mu.Unlock()
	f.t.Logf("forgefake: unexpected request %s", line)
	f.notify()
	writeJSON(w, http.StatusNotFound, map[string]string{"message": "Not Found"})
}

// tokenEqual compares a presented token with the expected one in constant time.
func tokenEqual(got, want string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// schemeToken returns the credential of an Authorization header using one of schemes
// (case-insensitive), or "".
func schemeToken(r *http.Request, schemes ...string) string {
	scheme, cred, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok {
		return ""
	}
	for _, s := range schemes {
		if strings.EqualFold(scheme, s) {
			return strings.TrimSpace(cred)
		}
	}
	return ""
}

// statusFields are the request fields the three APIs share, by their JSON names. GitLab also
// takes name (instead of context) and ref.
type statusFields struct {
	State       string `json:"state"`
	TargetURL   string `json:"target_url"`
	Description string `json:"description"`
	Context     string `json:"context"`
	Name        string `json:"name"`
	Ref         string `json:"ref"`
}

// decodeJSON reads a JSON request body into dst. A too large body yields 413.
func decodeJSON(r *http.Request, dst any) (int, error) {
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return http.StatusRequestEntityTooLarge, fmt.Errorf("request body over %d bytes", maxBody)
		}
		return http.StatusBadRequest, fmt.Errorf("read body: %w", err)
	}
	if len(strings.TrimSpace(string(raw))) == 0 {
		return 0, nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return http.StatusBadRequest, fmt.Errorf("problems parsing json: %w", err)
	}
	return 0, nil
}

// writeJSON writes v as a JSON answer with code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// timestamp is the time format the forges use in their answers.
func timestamp() string { return time.Now().UTC().Format(time.RFC3339) }
