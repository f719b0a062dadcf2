package status

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func newTestGitea(t *testing.T, apiURL string) *Gitea {
	t.Helper()
	g, err := NewGitea(nil, apiURL, testToken, "acme", "platform")
	if err != nil {
		t.Fatalf("NewGitea: %v", err)
	}
	return g
}

func TestGiteaReportsEachState(t *testing.T) {
	want := map[State]string{
		Pending: "pending",
		Success: "success", Skipped: "success",
		Failure: "failure", Canceled: "failure",
	}
	for _, st := range allStates {
		t.Run(string(st), func(t *testing.T) {
			srv, f := newFakeForge(t, "Authorization", func(w http.ResponseWriter, _ *http.Request, _ int) {
				answer(w, http.StatusCreated, `{"id":5,"status":"`+want[st]+`","context":"ferry/api"}`)
			})
			g := newTestGitea(t, srv.URL)
			err := g.Report(t.Context(), Status{
				SHA: testSHA, Context: "ferry/api", State: st,
				Description: "synced", TargetURL: "https://ferry.example.com/syncs/9",
			})
			if err != nil {
				t.Fatalf("Report: %v", err)
			}
			wantReqs := []seen{{
				Method: http.MethodPost,
				Path:   "/api/v1/repos/acme/platform/statuses/" + testSHA,
				Auth:   "token " + testToken,
				Body: map[string]any{
					"state":       want[st],
					"context":     "ferry/api",
					"description": "synced",
					"target_url":  "https://ferry.example.com/syncs/9",
				},
			}}
			if diff := cmp.Diff(wantReqs, f.requests()); diff != "" {
				t.Errorf("requests (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGiteaBaseURL(t *testing.T) {
	const path = "/api/v1/repos/acme/platform/statuses/" + testSHA
	tests := []struct {
		name, apiURL, want string
	}{
		{"instance", "https://gitea.example.com", "https://gitea.example.com" + path},
		{"trailing slash", "https://gitea.example.com/", "https://gitea.example.com" + path},
		{"with api path", "https://gitea.example.com/api/v1/", "https://gitea.example.com" + path},
		{"under a path", "https://example.com/git", "https://example.com/git" + path},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var urls []string
			g, err := NewGitea(capturingClient(http.StatusCreated, &urls), tt.apiURL, testToken, "acme", "platform")
			if err != nil {
				t.Fatalf("NewGitea: %v", err)
			}
			if err := g.Report(t.Context(), Status{SHA: testSHA, Context: "ferry/api", State: Success}); err != nil {
				t.Fatalf("Report: %v", err)
			}
			if diff := cmp.Diff([]string{tt.want}, urls); diff != "" {
				t.Errorf("URLs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGiteaCutsDescription(t *testing.T) {
	srv, f := newFakeForge(t, "Authorization", func(w http.ResponseWriter, _ *http.Request, _ int) {
		answer(w, http.StatusCreated, `{}`)
	})
	g := newTestGitea(t, srv.URL)
	if err := g.Report(t.Context(), Status{SHA: testSHA, Context: "ferry/api", State: Failure, Description: strings.Repeat("日本", 100)}); err != nil {
		t.Fatalf("Report: %v", err)
	}
	reqs := f.requests()
	if len(reqs) != 1 {
		t.Fatalf("got %d requests, want 1", len(reqs))
	}
	want := string([]rune(strings.Repeat("日本", 100))[:MaxDescription-1]) + "…"
	if diff := cmp.Diff(want, reqs[0].Body["description"]); diff != "" {
		t.Errorf("description (-want +got):\n%s", diff)
	}
}

func TestGiteaClassifiesRefusals(t *testing.T) {
	tests := []struct {
		name      string
		code      int
		body      string
		headers   []string
		permanent bool
		wait      time.Duration
		message   string
	}{
		{name: "not found", code: http.StatusNotFound, body: `{"message":"repository does not exist","url":"https://gitea.example.com/api/swagger"}`, permanent: true, message: "repository does not exist"},
		{name: "too many requests", code: http.StatusTooManyRequests, body: `{"message":"rate limited"}`, headers: []string{"Retry-After", "3"}, wait: 3 * time.Second, message: "rate limited"},
		{name: "proxy error page", code: http.StatusServiceUnavailable, body: "<html>\n<h1>upstream down</h1>\n</html>", message: "<html> <h1>upstream down</h1> </html>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, f := newFakeForge(t, "Authorization", func(w http.ResponseWriter, _ *http.Request, _ int) {
				answer(w, tt.code, tt.body, tt.headers...)
			})
			g := newTestGitea(t, srv.URL)
			err := g.Report(t.Context(), Status{SHA: testSHA, Context: "ferry/api", State: Success})
			if err == nil {
				t.Fatal("Report succeeded, want an error")
			}
			if got := len(f.requests()); got != 1 {
				t.Errorf("got %d requests, want 1", got)
			}
			if got := IsPermanent(err); got != tt.permanent {
				t.Errorf("IsPermanent(%v) = %v, want %v", err, got, tt.permanent)
			}
			ra, isRA := errors.AsType[*RetryAfterError](err)
			if isRA != (tt.wait > 0) {
				t.Fatalf("RetryAfterError in %v: %v, want %v", err, isRA, tt.wait > 0)
			}
			if isRA && ra.Wait != tt.wait {
				t.Errorf("Wait = %s, want %s", ra.Wait, tt.wait)
			}
			he, ok := errors.AsType[*HTTPError](err)
			if !ok {
				t.Fatalf("no HTTPError in %v", err)
			}
			if diff := cmp.Diff(&HTTPError{Forge: "gitea", StatusCode: tt.code, Message: tt.message}, he); diff != "" {
				t.Errorf("HTTPError (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGiteaNeverEchoesToken(t *testing.T) {
	srv, _ := newFakeForge(t, "Authorization", func(w http.ResponseWriter, r *http.Request, _ int) {
		answer(w, http.StatusUnauthorized, `{"message":"invalid credentials `+r.Header.Get("Authorization")+`"}`)
	})
	g := newTestGitea(t, srv.URL)
	err := g.Report(t.Context(), Status{SHA: testSHA, Context: "ferry/api", State: Success})
	if err == nil {
		t.Fatal("Report succeeded, want an error")
	}
	if strings.Contains(err.Error(), testToken) {
		t.Errorf("error holds the token: %v", err)
	}
	if !strings.Contains(err.Error(), "invalid credentials token [redacted]") {
		t.Errorf("error = %v, want the forge's message with the token redacted", err)
	}
}

func TestNewGiteaRefusesBadConfig(t *testing.T) {
	tests := []struct {
		name, apiURL, token, owner, repo string
	}{
		{"no api url", "", testToken, "acme", "platform"},
		{"no token", "https://gitea.example.com", "", "acme", "platform"},
		{"no repo", "https://gitea.example.com", testToken, "acme", ""},
		{"relative api url", "gitea.example.com", testToken, "acme", "platform"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := NewGitea(nil, tt.apiURL, tt.token, tt.owner, tt.repo)
			if err == nil {
				t.Fatalf("NewGitea = %v, want an error", g)
			}
		})
	}
}
