package status

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ferrygitops/ferry/syncer/ghapp"
	"github.com/ferrygitops/ferry/syncer/ghapp/ghapptest"
)

func newTestGitHub(t *testing.T, apiURL string) *GitHub {
	t.Helper()
	g, err := NewGitHub(nil, apiURL, testToken, "acme", "platform")
	if err != nil {
		t.Fatalf("NewGitHub: %v", err)
	}
	return g
}

func TestGitHubReportsEachState(t *testing.T) {
	want := map[State]string{
		Pending: "pending",
		Success: "success", Skipped: "success",
		Failure: "failure", Canceled: "failure",
	}
	for _, st := range allStates {
		t.Run(string(st), func(t *testing.T) {
			srv, f := newFakeForge(t, "Authorization", func(w http.ResponseWriter, _ *http.Request, _ int) {
				answer(w, http.StatusCreated, `{"id":1,"state":"pending","context":"ferry/api"}`)
			})
			g := newTestGitHub(t, srv.URL)
			err := g.Report(t.Context(), Status{
				SHA: testSHA, Context: "ferry/api", State: st,
				Description: "synced 12 objects", TargetURL: "https://ferry.example.com/syncs/42",
			})
			if err != nil {
				t.Fatalf("Report: %v", err)
			}
			wantReqs := []seen{{
				Method: http.MethodPost,
				Path:   "/api/v3/repos/acme/platform/statuses/" + testSHA,
				Auth:   "Bearer " + testToken,
				Body: map[string]any{
					"state":       want[st],
					"context":     "ferry/api",
					"description": "synced 12 objects",
					"target_url":  "https://ferry.example.com/syncs/42",
				},
			}}
			if diff := cmp.Diff(wantReqs, f.requests()); diff != "" {
				t.Errorf("requests (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGitHubBaseURL(t *testing.T) {
	tests := []struct {
		name, apiURL, want string
	}{
		{"github.com by default", "", "https://api.github.com/repos/acme/platform/statuses/" + testSHA},
		{"github.com spelled out", "https://api.github.com/", "https://api.github.com/repos/acme/platform/statuses/" + testSHA},
		{"enterprise host", "https://ghe.example.com", "https://ghe.example.com/api/v3/repos/acme/platform/statuses/" + testSHA},
		{"enterprise with api path", "https://ghe.example.com/api/v3/", "https://ghe.example.com/api/v3/repos/acme/platform/statuses/" + testSHA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var urls []string
			g, err := NewGitHub(capturingClient(http.StatusCreated, &urls), tt.apiURL, testToken, "acme", "platform")
			if err != nil {
				t.Fatalf("NewGitHub: %v", err)
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

func TestGitHubCutsDescription(t *testing.T) {
	srv, f := newFakeForge(t, "Authorization", func(w http.ResponseWriter, _ *http.Request, _ int) {
		answer(w, http.StatusCreated, `{}`)
	})
	g := newTestGitHub(t, srv.URL)
	long := strings.Repeat("é", 200)
	if err := g.Report(t.Context(), Status{SHA: testSHA, Context: "ferry/api", State: Failure, Description: long}); err != nil {
		t.Fatalf("Report: %v", err)
	}
	reqs := f.requests()
	if len(reqs) != 1 {
		t.Fatalf("got %d requests, want 1", len(reqs))
	}
	want := strings.Repeat("é", MaxDescription-1) + "…"
	if diff := cmp.Diff(want, reqs[0].Body["description"]); diff != "" {
		t.Errorf("description (-want +got):\n%s", diff)
	}
}

func TestGitHubClassifiesRefusals(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	secondaryDoc := `"documentation_url":"https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api#about-secondary-rate-limits"`
	tests := []struct {
		name      string
		code      int
		body      string
		headers   []string
		permanent bool
		capped    bool
		wait      time.Duration // > 0: a *RetryAfterError with this wait is expected
	}{
		{
			name:      "status cap",
			code:      http.StatusUnprocessableEntity,
			body:      `{"message":"Validation Failed","errors":[{"resource":"Status","code":"custom","message":"This SHA and context has reached the maximum number of statuses."}]}`,
			permanent: true, capped: true,
		},
		{
			name:      "other validation failure",
			code:      http.StatusUnprocessableEntity,
			body:      `{"message":"Validation Failed","errors":[{"resource":"Status","field":"state","code":"invalid"}]}`,
			permanent: true,
		},
		{
			name:    "primary rate limit",
			code:    http.StatusForbidden,
			body:    `{"message":"API rate limit exceeded"}`,
			headers: []string{"X-RateLimit-Limit", "5000", "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", strconv.FormatInt(now.Add(90*time.Second).Unix(), 10)},
			wait:    90 * time.Second,
		},
		{
			name:    "too many requests with Retry-After",
			code:    http.StatusTooManyRequests,
			body:    `{"message":"slow down"}`,
			headers: []string{"Retry-After", "7"},
			wait:    7 * time.Second,
		},
		{
			name:    "secondary rate limit with Retry-After",
			code:    http.StatusForbidden,
			body:    `{"message":"You have exceeded a secondary rate limit",` + secondaryDoc + `}`,
			headers: []string{"Retry-After", "30"},
			wait:    30 * time.Second,
		},
		{
			name: "secondary rate limit without Retry-After",
			code: http.StatusForbidden,
			body: `{"message":"You have exceeded a secondary rate limit",` + secondaryDoc + `}`,
			wait: secondaryRateLimitWait,
		},
		{
			name:      "forbidden without rate limit",
			code:      http.StatusForbidden,
			body:      `{"message":"Resource not accessible by integration"}`,
			permanent: true,
		},
		{
			name:      "not found",
			code:      http.StatusNotFound,
			body:      `{"message":"Not Found"}`,
			permanent: true,
		},
		{
			name: "server error",
			code: http.StatusBadGateway,
			body: `<html>bad gateway</html>`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, f := newFakeForge(t, "Authorization", func(w http.ResponseWriter, _ *http.Request, _ int) {
				answer(w, tt.code, tt.body, tt.headers...)
			})
			g := newTestGitHub(t, srv.URL)
			g.now = func() time.Time { return now }
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
			if got := errors.Is(err, ErrStatusLimit); got != tt.capped {
				t.Errorf("errors.Is(%v, ErrStatusLimit) = %v, want %v", err, got, tt.capped)
			}
			ra, isRA := errors.AsType[*RetryAfterError](err)
			if isRA != (tt.wait > 0) {
				t.Fatalf("RetryAfterError in %v: %v, want %v", err, isRA, tt.wait > 0)
			}
			if isRA && ra.Wait != tt.wait {
				t.Errorf("Wait = %s, want %s", ra.Wait, tt.wait)
			}
			he, ok := errors.AsType[*HTTPError](err)
			if !ok || he.StatusCode != tt.code || he.Forge != "github" {
				t.Errorf("HTTPError in %v = %+v, want github %d", err, he, tt.code)
			}
		})
	}
}

func TestGitHubNeverEchoesToken(t *testing.T) {
	srv, _ := newFakeForge(t, "Authorization", func(w http.ResponseWriter, r *http.Request, _ int) {
		answer(w, http.StatusUnauthorized, `{"message":"Bad credentials: `+r.Header.Get("Authorization")+`"}`)
	})
	g := newTestGitHub(t, srv.URL)
	err := g.Report(t.Context(), Status{SHA: testSHA, Context: "ferry/api", State: Success})
	if err == nil {
		t.Fatal("Report succeeded, want an error")
	}
	if strings.Contains(err.Error(), testToken) {
		t.Errorf("error holds the token: %v", err)
	}
	if !strings.Contains(err.Error(), "Bad credentials") || !IsPermanent(err) {
		t.Errorf("error = %v, want a permanent error saying Bad credentials", err)
	}
}

func TestNewGitHubRefusesBadConfig(t *testing.T) {
	tests := []struct {
		name, apiURL, token, owner, repo string
	}{
		{"no token", "", "", "acme", "platform"},
		{"no owner", "", testToken, "", "platform"},
		{"owner with slash", "", testToken, "acme/x", "platform"},
		{"relative api url", "ghe.example.com", testToken, "acme", "platform"},
		{"unsupported scheme", "ftp://ghe.example.com", testToken, "acme", "platform"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := NewGitHub(nil, tt.apiURL, tt.token, tt.owner, tt.repo)
			if err == nil {
				t.Fatalf("NewGitHub = %v, want an error", g)
			}
		})
	}
}

func TestReportRefusesInvalidStatus(t *testing.T) {
	srv, f := newFakeForge(t, "Authorization", func(w http.ResponseWriter, _ *http.Request, _ int) {
		answer(w, http.StatusCreated, `{}`)
	})
	g := newTestGitHub(t, srv.URL)
	for _, s := range []Status{
		{Context: "ferry/api", State: Success},
		{SHA: testSHA, State: Success},
		{SHA: testSHA, Context: "ferry/api", State: "done"},
	} {
		err := g.Report(t.Context(), s)
		if err == nil || !IsPermanent(err) {
			t.Errorf("Report(%+v) = %v, want a permanent error", s, err)
		}
	}
	if got := len(f.requests()); got != 0 {
		t.Errorf("got %d requests for invalid statuses, want 0", got)
	}
}

// newTestApp is a GitHub App installation of acme/platform on a fake GitHub that checks its
// JWT and tokens.
func newTestApp(t *testing.T, installation int64) (*ghapp.App, *ghapptest.GitHub) {
	t.Helper()
	key := ghapptest.NewKey(t)
	gh := ghapptest.New(t, 5, key, 6, "acme", "platform", time.Now)
	app, err := ghapp.New(ghapp.Config{Repo: "platform", AppID: 5, InstallationID: installation, PrivateKey: key.PKCS8(t), APIURL: gh.URL(), Owner: "acme", Name: "platform"}, ghapp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return app, gh
}

// TestGitHubAppReports: statuses go out with the installation token, and still do after GitHub
// stopped accepting it (one new token, the request sent again).
func TestGitHubAppReports(t *testing.T) {
	app, gh := newTestApp(t, 6)
	g, err := NewGitHubWithClient(app.Client(DefaultHTTPTimeout), gh.URL(), app.Secrets, "acme", "platform")
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Report(t.Context(), Status{SHA: testSHA, Context: "ferry/api", State: Pending, Description: "syncing"}); err != nil {
		t.Fatalf("Report pending: %v (%v)", err, gh.Refusals())
	}
	gh.Expire()
	if err := g.Report(t.Context(), Status{SHA: testSHA, Context: "ferry/api", State: Skipped, Description: "no changes"}); err != nil {
		t.Fatalf("Report after the token expired: %v (%v)", err, gh.Refusals())
	}
	minted := gh.Minted()
	if len(minted) != 2 {
		t.Fatalf("minted %d tokens, want 2", len(minted))
	}
	want := []ghapptest.Status{
		{SHA: testSHA, State: "pending", Context: "ferry/api", Description: "syncing", Token: minted[0]},
		{SHA: testSHA, State: "success", Context: "ferry/api", Description: "no changes", Token: minted[1]},
	}
	if diff := cmp.Diff(want, gh.Statuses()); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
}

// TestGitHubAppErrors: an installation token echoed back is scrubbed like a static one, and an
// App that cannot authenticate for a reason retrying cannot fix fails permanently.
func TestGitHubAppErrors(t *testing.T) {
	t.Run("token echoed", func(t *testing.T) {
		app, _ := newTestApp(t, 6)
		srv, _ := newFakeForge(t, "Authorization", func(w http.ResponseWriter, r *http.Request, _ int) {
			answer(w, http.StatusUnprocessableEntity, `{"message":"refused `+r.Header.Get("Authorization")+`"}`)
		})
		g, err := NewGitHubWithClient(app.Client(DefaultHTTPTimeout), srv.URL, app.Secrets, "acme", "platform")
		if err != nil {
			t.Fatal(err)
		}
		err = g.Report(t.Context(), Status{SHA: testSHA, Context: "ferry/api", State: Pending})
		tok := app.Secrets()
		if err == nil || len(tok) == 0 {
			t.Fatalf("Report = %v with tokens %d, want a 422", err, len(tok))
		}
		if strings.Contains(err.Error(), tok[0]) || !strings.Contains(err.Error(), "[redacted]") {
			t.Errorf("error does not scrub the installation token: %v", err)
		}
		if !IsPermanent(err) {
			t.Errorf("422 not permanent: %v", err)
		}
	})
	t.Run("wrong installation", func(t *testing.T) {
		app, gh := newTestApp(t, 7)
		g, err := NewGitHubWithClient(app.Client(DefaultHTTPTimeout), gh.URL(), app.Secrets, "acme", "platform")
		if err != nil {
			t.Fatal(err)
		}
		err = g.Report(t.Context(), Status{SHA: testSHA, Context: "ferry/api", State: Pending})
		if err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), "repo platform") {
			t.Errorf("Report = %v, want a permanent error naming repo platform", err)
		}
		if n := len(gh.Statuses()); n != 0 {
			t.Errorf("%d statuses accepted", n)
		}
	})
	t.Run("no client", func(t *testing.T) {
		if _, err := NewGitHubWithClient(nil, "", nil, "acme", "platform"); err == nil {
			t.Error("NewGitHubWithClient accepted no client")
		}
	})
}
