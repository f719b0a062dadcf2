package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// statusAPI stands in for GitHub's commit status API (POST /repos/{owner}/{repo}/statuses/{sha},
// under /api/v3 as for GitHub Enterprise) and keeps what ferry posts.
type statusAPI struct {
	url string
	srv *http.Server
	mu  sync.Mutex
	got map[string][]status
}

type status struct {
	State       string `json:"state"`
	Context     string `json:"context"`
	Description string `json:"description"`
	TargetURL   string `json:"target_url"`
}

func newStatusAPI() *statusAPI {
	s := &statusAPI{got: map[string][]status{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	s.url = "http://" + l.Addr().String()
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serve), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.srv.Serve(l) }()
	return s
}

func (s *statusAPI) close() { _ = s.srv.Close() }

func (s *statusAPI) serve(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/api/v3"), "/")
	if r.Method != http.MethodPost || len(parts) != 6 || parts[1] != "repos" || parts[4] != "statuses" {
		http.NotFound(w, r)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+forgeToken {
		http.Error(w, `{"message":"Bad credentials"}`, http.StatusUnauthorized)
		return
	}
	var st status
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&st); err != nil {
		http.Error(w, `{"message":"Problems parsing JSON"}`, http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.got[parts[5]] = append(s.got[parts[5]], st)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(map[string]any{"state": st.State, "context": st.Context, "description": st.Description, "target_url": st.TargetURL})
}

func (s *statusAPI) statuses(sha string) []status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]status(nil), s.got[sha]...)
}

// wait blocks until every context has a final status on sha (at most two minutes).
func (s *statusAPI) wait(ctx context.Context, sha string, contexts []string) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		final := map[string]string{}
		for _, st := range s.statuses(sha) {
			if st.State != "pending" {
				final[st.Context] = st.State
			}
		}
		done := true
		for _, c := range contexts {
			if final[c] == "" {
				done = false
			}
		}
		if done {
			for _, c := range contexts {
				if final[c] != "success" {
					return fmt.Errorf("%s on %s ended %s", c, sha[:7], final[c])
				}
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no final status for %v on %s after 2 minutes", contexts, sha[:7])
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
