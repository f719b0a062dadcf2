package handlers

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/ferrygitops/ferry/queue"
)

// scaleRepos is 5,000 apps over 50 repositories: "mono" holds 1,000 apps (one directory each,
// apps/a0000 …), the 49 others share the remaining 4,000.
func scaleRepos(total, repos, mono int) []Repo {
	out := []Repo{{Name: "mono", Provider: "github", Branch: "main", Secret: githubSecret}}
	for i := range mono {
		out[0].Apps = append(out[0].Apps, App{Name: fmt.Sprintf("m%04d", i), Path: fmt.Sprintf("apps/m%04d", i)})
	}
	for r := 1; r < repos; r++ {
		out = append(out, Repo{Name: fmt.Sprintf("repo%02d", r), Provider: "github", Branch: "main", Secret: githubSecret})
	}
	for i := range total - mono {
		r := 1 + i%(repos-1)
		out[r].Apps = append(out[r].Apps, App{Name: fmt.Sprintf("a%04d", i), Path: fmt.Sprintf("apps/a%04d", i)})
	}
	return out
}

// scalePush is a GitHub push to main whose one commit modifies one file in each of the first n
// app directories of mono.
func scalePush(tb testing.TB, n int) []byte {
	tb.Helper()
	modified := make([]string, n)
	for i := range n {
		modified[i] = fmt.Sprintf("apps/m%04d/deployment.yaml", i)
	}
	body, err := json.Marshal(map[string]any{
		"ref": "refs/heads/main", "before": "3c4e9f2a1b0d8e7f6a5b4c3d2e1f0a9b8c7d6e5f", "after": "9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c",
		"repository": map[string]any{"full_name": "acme/mono"},
		"commits":    []map[string]any{{"id": "9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c", "added": []string{}, "removed": []string{}, "modified": modified}},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return body
}

// BenchmarkHooksScale is a signed push to a configuration of 5,000 apps over 50 repositories,
// touching one app or 1,000 apps of one repository, through Hooks.ServeHTTP onto an embedded
// JetStream: verify, parse, route, durable enqueue of every job, answer.
func BenchmarkHooksScale(b *testing.B) {
	for _, touched := range []int{1, 1000} {
		b.Run("apps=5000/touched="+strconv.Itoa(touched), func(b *testing.B) {
			body := scalePush(b, touched)
			q := benchQueue(b)
			log := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
			hooks := NewHooks(scaleRepos(5000, 50, 1000), q, HooksOptions{Logger: log, NewID: queue.NewID})
			r := chi.NewRouter()
			r.Method(http.MethodPost, "/hooks/{repo}", hooks)
			sig := signGitHub(githubSecret, body)
			var n atomic.Int64
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, "/hooks/mono", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-GitHub-Event", "push")
				req.Header.Set("X-GitHub-Delivery", "bench-"+strconv.FormatInt(n.Add(1), 10))
				req.Header.Set("X-Hub-Signature-256", sig)
				w := httptest.NewRecorder()
				r.ServeHTTP(w, req)
				if w.Code != http.StatusAccepted {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
		})
	}
}

// BenchmarkRouteScale is routing alone (no queue) of the same pushes.
func BenchmarkRouteScale(b *testing.B) {
	g := newGraph(scaleRepos(5000, 50, 1000))
	for _, touched := range []int{1, 1000} {
		changed := make([]string, touched)
		for i := range touched {
			changed[i] = fmt.Sprintf("apps/m%04d/deployment.yaml", i)
		}
		b.Run("touched="+strconv.Itoa(touched), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if s := g.forPush("mono", changed, false); len(s.apps) != touched {
					b.Fatalf("%d apps routed, want %d", len(s.apps), touched)
				}
			}
		})
	}
}
