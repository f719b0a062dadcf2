package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// statusToken is the token ferry sends to the fake GitHub; it guards nothing outside this run.
const statusToken = "bench-forge-token"

// seenStatus is one commit status the fake GitHub received, with when it arrived.
type seenStatus struct {
	SHA, Context, State, Description string
	At                               time.Time
}

// statusFake answers GitHub's create-status call (POST …/repos/{owner}/{repo}/statuses/{sha},
// under /api/v3 as Enterprise) and records every status with its arrival time.
type statusFake struct {
	URL string
	srv *http.Server

	mu       sync.Mutex
	statuses []seenStatus
	changed  chan struct{}
}

func startStatusFake() (*statusFake, error) {
	f := &statusFake{changed: make(chan struct{})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("status fake: %w", err)
	}
	f.URL = "http://" + l.Addr().String() + "/"
	f.srv = &http.Server{Handler: http.HandlerFunc(f.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = f.srv.Serve(l) }()
	return f, nil
}

func (f *statusFake) close() { _ = f.srv.Close() }

func (f *statusFake) serve(w http.ResponseWriter, r *http.Request) {
	at := time.Now()
	repoPath, sha, ok := strings.Cut(r.URL.Path, "/statuses/")
	if r.Method != http.MethodPost || !ok || !strings.Contains(repoPath, "/repos/") {
		http.Error(w, `{"message":"Not Found"}`, http.StatusNotFound)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+statusToken {
		http.Error(w, `{"message":"Bad credentials"}`, http.StatusUnauthorized)
		return
	}
	var in struct{ State, Context, Description string }
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&in); err != nil {
		http.Error(w, `{"message":"Problems parsing JSON"}`, http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.statuses = append(f.statuses, seenStatus{SHA: sha, Context: in.Context, State: in.State, Description: in.Description, At: at})
	close(f.changed)
	f.changed = make(chan struct{})
	n := len(f.statuses)
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(map[string]any{"id": n, "state": in.State, "context": in.Context, "created_at": at.UTC().Format(time.RFC3339)})
}

// waitFinal waits until every context in want has a final (success or failure) status on sha
// received after since, and returns those statuses; a failure is an error.
func (f *statusFake) waitFinal(ctx context.Context, since time.Time, sha string, want []string) (map[string]seenStatus, error) {
	for {
		f.mu.Lock()
		got := map[string]seenStatus{}
		for _, s := range f.statuses {
			if s.SHA == sha && !s.At.Before(since) && (s.State == "success" || s.State == "failure" || s.State == "error") {
				got[s.Context] = s
			}
		}
		ch := f.changed
		f.mu.Unlock()
		done := true
		for _, c := range want {
			s, ok := got[c]
			if !ok {
				done = false
				continue
			}
			if s.State != "success" {
				return got, fmt.Errorf("%s on %.7s ended %s: %s", c, sha, s.State, s.Description)
			}
		}
		if done {
			return got, nil
		}
		select {
		case <-ctx.Done():
			return got, fmt.Errorf("%d of %d final statuses on %.7s: %w", len(got), len(want), sha, ctx.Err())
		case <-ch:
		}
	}
}

// benchTB is the small testing.TB the git server helper accepts: Fatalf panics with a value
// runE2E recovers into an error, and cleanups run when the measure ends.
type benchTB struct {
	dir      string
	mu       sync.Mutex
	n        int
	cleanups []func()
}

// tbFailure is what benchTB.Fatalf panics with.
type tbFailure struct{ msg string }

func (t *benchTB) Helper() {}

func (t *benchTB) Fatalf(format string, args ...any) { panic(tbFailure{fmt.Sprintf(format, args...)}) }

func (t *benchTB) TempDir() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n++
	d := filepath.Join(t.dir, fmt.Sprintf("tmp-%03d", t.n))
	if err := os.MkdirAll(d, 0o755); err != nil {
		panic(tbFailure{err.Error()})
	}
	return d
}

func (t *benchTB) Cleanup(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, f)
}

// finish runs the cleanups, last registered first.
func (t *benchTB) finish() {
	t.mu.Lock()
	cs := t.cleanups
	t.cleanups = nil
	t.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
}

// guard turns a benchTB failure inside fn into an error.
func guard(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(tbFailure)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("git server: %s", f.msg)
		}
	}()
	return fn()
}

// harness is what the parts that run the ferry binary share: the push payload, the fake status
// API and the test helpers' stand-in.
type harness struct {
	payload []byte
	forge   *statusFake
	tb      *benchTB
}

// newHarness checks the ferry binary, reads the push payload and starts the status fake, with
// scratch files under p.Work/dir; close releases them.
func newHarness(p *params, dir string) (*harness, error) {
	if _, err := os.Stat(p.FerryBin); err != nil {
		return nil, fmt.Errorf("ferry binary (make build): %w", err)
	}
	payload, err := os.ReadFile(p.P1.Payload)
	if err != nil {
		return nil, fmt.Errorf("push payload: %w", err)
	}
	forge, err := startStatusFake()
	if err != nil {
		return nil, err
	}
	return &harness{payload: payload, forge: forge, tb: &benchTB{dir: filepath.Join(p.Work, dir)}}, nil
}

func (h *harness) close() {
	h.tb.finish()
	h.forge.close()
}
