package handlers

import (
	"bytes"
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

// BenchmarkGitHubPushParse is the payload pass of the webhook hot path.
func BenchmarkGitHubPushParse(b *testing.B) {
	body := readTestdata(b, "github/push.json")
	h := githubHeaders("push", "d-1", githubSecret, body)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := (githubProvider{}).parse(h, body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHooksGitHubPush is one signed push through Hooks.ServeHTTP onto an embedded
// JetStream, clients in parallel: verify, parse, route, durable enqueue, answer.
func BenchmarkHooksGitHubPush(b *testing.B) {
	body := readTestdata(b, "github/push.json")
	q := benchQueue(b)
	log := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	repos := []Repo{{Name: "platform", Provider: "github", Branch: "main", Secret: githubSecret,
		Apps: []App{{Name: "database", Path: "apps/database"}}}}
	hooks := NewHooks(repos, q, HooksOptions{Logger: log, NewID: queue.NewID})
	r := chi.NewRouter()
	r.Method(http.MethodPost, "/hooks/{repo}", hooks)
	sig := signGitHub(githubSecret, body)
	var n atomic.Int64
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, "/hooks/platform", bytes.NewReader(body))
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

// benchQueue is a queue on an embedded JetStream of the benchmark's own, stopped at its end.
func benchQueue(b *testing.B) *queue.Queue {
	b.Helper()
	e, err := queue.StartEmbedded(queue.EmbeddedOptions{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(e.Shutdown)
	nc, err := e.Connect("bench")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	q, err := queue.New(b.Context(), nc, queue.Options{})
	if err != nil {
		b.Fatal(err)
	}
	return q
}
