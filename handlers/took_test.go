package handlers

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
)

// TestHooksLogTook: a delivery's line carries the handler's own time, read from the injected
// clock when the delivery arrives and when its line is written.
func TestHooksLogTook(t *testing.T) {
	body := readTestdata(t, "github/push.json")
	var logs bytes.Buffer
	tick := testNow
	h := NewHooks(testRepos("github", githubSecret), &fakeQueue{}, HooksOptions{
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		// Each reading of the clock is 7 ms after the one before.
		Now: func() time.Time { tick = tick.Add(7 * time.Millisecond); return tick },
	})
	r := chi.NewRouter()
	r.Post("/hooks/{repo}", h.ServeHTTP)
	for _, tt := range []struct {
		name   string
		header http.Header
		status int
	}{
		{"stored", githubHeaders("push", "d1", githubSecret, body), http.StatusAccepted},
		{"refused", githubHeaders("push", "d2", []byte("not the secret"), body), http.StatusUnauthorized},
	} {
		logs.Reset()
		req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/hooks/platform", bytes.NewReader(body))
		req.Header = tt.header
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, req)
		if rec.Code != tt.status {
			t.Fatalf("%s: status %d, want %d: %s", tt.name, rec.Code, tt.status, rec.Body)
		}
		// At least two readings apart (arrival, line); more if routing read the clock between.
		line := logs.String()
		i := strings.Index(line, " took=")
		if i < 0 {
			t.Fatalf("%s: line %q has no took", tt.name, line)
		}
		took, err := time.ParseDuration(strings.Fields(line[i+len(" took="):])[0])
		if err != nil || took < 7*time.Millisecond || took%(7*time.Millisecond) != 0 {
			t.Errorf("%s: took %v (%v), want a multiple of the clock's 7ms step", tt.name, took, err)
		}
	}
}
