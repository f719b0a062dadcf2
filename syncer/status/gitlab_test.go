package status

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func newTestGitLab(t *testing.T, apiURL, project string) *GitLab {
	t.Helper()
	g, err := NewGitLab(nil, apiURL, testToken, project)
	if err != nil {
		t.Fatalf("NewGitLab: %v", err)
	}
	return g
}

func TestGitLabReportsEachState(t *testing.T) {
	want := map[State]string{
		Pending: "pending", Success: "success",
		Failure: "failed", Canceled: "canceled", Skipped: "skipped",
	}
	for _, st := range allStates {
		t.Run(string(st), func(t *testing.T) {
			srv, f := newFakeForge(t, "PRIVATE-TOKEN", func(w http.ResponseWriter, _ *http.Request, _ int) {
				answer(w, http.StatusCreated, `{"id":93,"sha":"`+testSHA+`","status":"`+want[st]+`","name":"ferry/api"}`)
			})
			g := newTestGitLab(t, srv.URL, "g/sub/proj")
			err := g.Report(t.Context(), Status{
				SHA: testSHA, Context: "ferry/api/preview", State: st,
				Description: "dry run: 3 changes", TargetURL: "https://ferry.example.com/syncs/7",
			})
			if err != nil {
				t.Fatalf("Report: %v", err)
			}
			wantReqs := []seen{{
				Method: http.MethodPost,
				Path:   "/api/v4/projects/g%2Fsub%2Fproj/statuses/" + testSHA,
				Auth:   testToken,
				Body: map[string]any{
					"state":       want[st],
					"name":        "ferry/api/preview",
					"description": "dry run: 3 changes",
					"target_url":  "https://ferry.example.com/syncs/7",
				},
			}}
			if diff := cmp.Diff(wantReqs, f.requests()); diff != "" {
				t.Errorf("requests (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGitLabBaseURL(t *testing.T) {
	const path = "projects/acme%2Fplatform/statuses/" + testSHA
	tests := []struct {
		name, apiURL, want string
	}{
		{"gitlab.com by default", "", "https://gitlab.com/api/v4/" + path},
		{"self-hosted", "https://git.example.com", "https://git.example.com/api/v4/" + path},
		{"self-hosted under a path", "https://example.com/gitlab/", "https://example.com/gitlab/api/v4/" + path},
		{"self-hosted with api path", "https://git.example.com/api/v4/", "https://git.example.com/api/v4/" + path},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var urls []string
			g, err := NewGitLab(capturingClient(http.StatusCreated, &urls), tt.apiURL, testToken, "acme/platform")
			if err != nil {
				t.Fatalf("NewGitLab: %v", err)
			}
			if err := g.Report(t.Context(), Status{SHA: testSHA, Context: "ferry/api", State: Pending}); err != nil {
				t.Fatalf("Report: %v", err)
			}
			if diff := cmp.Diff([]string{tt.want}, urls); diff != "" {
				t.Errorf("URLs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGitLabCutsDescription(t *testing.T) {
	srv, f := newFakeForge(t, "PRIVATE-TOKEN", func(w http.ResponseWriter, _ *http.Request, _ int) {
		answer(w, http.StatusCreated, `{}`)
	})
	g := newTestGitLab(t, srv.URL, "acme/platform")
	if err := g.Report(t.Context(), Status{SHA: testSHA, Context: "ferry/api", State: Failure, Description: strings.Repeat("x", 300)}); err != nil {
		t.Fatalf("Report: %v", err)
	}
	reqs := f.requests()
	if len(reqs) != 1 {
		t.Fatalf("got %d requests, want 1", len(reqs))
	}
	if diff := cmp.Diff(strings.Repeat("x", MaxDescription-1)+"…", reqs[0].Body["description"]); diff != "" {
		t.Errorf("description (-want +got):\n%s", diff)
	}
}

func TestGitLabSameStateCountsAsDone(t *testing.T) {
	srv, f := newFakeForge(t, "PRIVATE-TOKEN", func(w http.ResponseWriter, _ *http.Request, _ int) {
		answer(w, http.StatusBadRequest, `{"message":"Cannot transition status via :enqueue from :pending (Reason(s): Status cannot transition via \"enqueue\".)"}`)
	})
	g := newTestGitLab(t, srv.URL, "acme/platform")
	if err := g.Report(t.Context(), Status{SHA: testSHA, Context: "ferry/api", State: Pending}); err != nil {
		t.Errorf("Report = %v, want nil", err)
	}
	if got := len(f.requests()); got != 1 {
		t.Errorf("got %d requests, want 1", got)
	}
}

func TestGitLabClassifiesRefusals(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	tests := []struct {
		name      string
		code      int
		body      string
		headers   []string
		permanent bool
		wait      time.Duration
	}{
		{
			name: "too many requests with Retry-After", code: http.StatusTooManyRequests,
			body: `{"message":"Retry later"}`, headers: []string{"Retry-After", "12"}, wait: 12 * time.Second,
		},
		{
			name: "too many requests with RateLimit reset", code: http.StatusTooManyRequests,
			body:    `{"message":"Retry later"}`,
			headers: []string{"RateLimit-Remaining", "0", "RateLimit-Reset", strconv.FormatInt(now.Add(40*time.Second).Unix(), 10)},
			wait:    40 * time.Second,
		},
		{name: "other bad request", code: http.StatusBadRequest, body: `{"message":{"state":["is invalid"]}}`, permanent: true},
		{name: "not found", code: http.StatusNotFound, body: `{"message":"404 Project Not Found"}`, permanent: true},
		{name: "forbidden", code: http.StatusForbidden, body: `{"message":"403 Forbidden"}`, permanent: true},
		{name: "server error", code: http.StatusInternalServerError, body: `{"message":"500 Internal Server Error"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, f := newFakeForge(t, "PRIVATE-TOKEN", func(w http.ResponseWriter, _ *http.Request, _ int) {
				answer(w, tt.code, tt.body, tt.headers...)
			})
			g := newTestGitLab(t, srv.URL, "acme/platform")
			g.now = func() time.Time { return now }
			err := g.Report(t.Context(), Status{SHA: testSHA, Context: "ferry/api", State: Success})
			if err == nil {
				t.Fatal("Report succeeded, want an error")
			}
			// The library's own retries are off: Retry is the one place that retries.
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
			if !ok || he.StatusCode != tt.code || he.Forge != "gitlab" {
				t.Errorf("HTTPError in %v = %+v, want gitlab %d", err, he, tt.code)
			}
		})
	}
}

func TestGitLabNeverEchoesToken(t *testing.T) {
	srv, _ := newFakeForge(t, "PRIVATE-TOKEN", func(w http.ResponseWriter, r *http.Request, _ int) {
		answer(w, http.StatusUnauthorized, `{"message":"401 Unauthorized: `+r.Header.Get("PRIVATE-TOKEN")+`"}`)
	})
	g := newTestGitLab(t, srv.URL, "acme/platform")
	err := g.Report(t.Context(), Status{SHA: testSHA, Context: "ferry/api", State: Success})
	if err == nil {
		t.Fatal("Report succeeded, want an error")
	}
	if strings.Contains(err.Error(), testToken) {
		t.Errorf("error holds the token: %v", err)
	}
	if !strings.Contains(err.Error(), "401 Unauthorized") {
		t.Errorf("error = %v, want it to say 401 Unauthorized", err)
	}
}

func TestNewGitLabRefusesBadConfig(t *testing.T) {
	tests := []struct {
		name, apiURL, token, project string
	}{
		{"no token", "", "", "acme/platform"},
		{"no project", "", testToken, ""},
		{"project without group", "", testToken, "platform"},
		{"relative api url", "git.example.com", testToken, "acme/platform"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := NewGitLab(nil, tt.apiURL, tt.token, tt.project)
			if err == nil {
				t.Fatalf("NewGitLab = %v, want an error", g)
			}
		})
	}
}
