package forgefake_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ferrygitops/ferry/test/forgefake"
)

const (
	token = "fake-forge-token-123"
	sha   = "0123456789abcdef0123456789abcdef01234567"
)

// post sends one request to the fake and returns the status code and decoded JSON answer.
func post(t *testing.T, f *forgefake.Forge, path, contentType, body string, headers ...string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, f.URL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("answer to POST %s is not a JSON object: %v: %s", path, err, raw)
	}
	return resp.StatusCode, out
}

const statusJSON = `{"state":"%s","target_url":"https://ferry.example.com/syncs/42","description":"applying","context":"ferry/api"}`

func TestRecordsEachProvider(t *testing.T) {
	want := func(provider, repo, state, context string) forgefake.Status {
		return forgefake.Status{
			Provider: provider, Repo: repo, SHA: sha, Context: context, State: state,
			Description: "applying", TargetURL: "https://ferry.example.com/syncs/42",
		}
	}
	tests := []struct {
		name        string
		path        string
		contentType string
		body        string
		headers     []string
		stateKey    string // where the answer carries the state
		want        forgefake.Status
	}{
		{
			name: "github, bearer", path: "/repos/acme/platform/statuses/" + sha,
			contentType: "application/json", body: strings.Replace(statusJSON, "%s", "pending", 1),
			headers: []string{"Authorization", "Bearer " + token}, stateKey: "state",
			want: want(forgefake.GitHub, "acme/platform", "pending", "ferry/api"),
		},
		{
			name: "github enterprise, token scheme", path: "/api/v3/repos/acme/platform/statuses/" + sha,
			contentType: "application/json", body: strings.Replace(statusJSON, "%s", "success", 1),
			headers: []string{"Authorization", "token " + token}, stateKey: "state",
			want: want(forgefake.GitHub, "acme/platform", "success", "ferry/api"),
		},
		{
			name: "gitlab, json with name", path: "/api/v4/projects/group%2Fsub%2Fproj/statuses/" + sha,
			contentType: "application/json",
			body:        `{"state":"running","name":"ferry/api","target_url":"https://ferry.example.com/syncs/42","description":"applying"}`,
			headers:     []string{"PRIVATE-TOKEN", token}, stateKey: "status",
			want: want(forgefake.GitLab, "group/sub/proj", "running", "ferry/api"),
		},
		{
			name: "gitlab, query parameters with context",
			path: "/api/v4/projects/42/statuses/" + sha + "?" + url.Values{
				"state": {"failed"}, "context": {"ferry/api"}, "description": {"applying"},
				"target_url": {"https://ferry.example.com/syncs/42"},
			}.Encode(),
			headers: []string{"Authorization", "Bearer " + token}, stateKey: "status",
			want: want(forgefake.GitLab, "42", "failed", "ferry/api"),
		},
		{
			name: "gitea", path: "/api/v1/repos/acme/platform/statuses/" + sha,
			contentType: "application/json", body: strings.Replace(statusJSON, "%s", "failure", 1),
			headers: []string{"Authorization", "token " + token}, stateKey: "status",
			want: want(forgefake.Gitea, "acme/platform", "failure", "ferry/api"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := forgefake.New(t, token)
			code, answer := post(t, f, tt.path, tt.contentType, tt.body, tt.headers...)
			if code != http.StatusCreated {
				t.Fatalf("status code = %d (%v), want 201", code, answer)
			}
			if answer[tt.stateKey] != tt.want.State {
				t.Errorf("answer %s = %v, want %q", tt.stateKey, answer[tt.stateKey], tt.want.State)
			}
			if diff := cmp.Diff([]forgefake.Status{tt.want}, f.Statuses(sha)); diff != "" {
				t.Errorf("Statuses (-want +got):\n%s", diff)
			}
			if got := f.Statuses("ffff"); len(got) != 0 {
				t.Errorf("Statuses of another sha = %v, want none", got)
			}
		})
	}
}

func TestWrongTokenIsUnauthorized(t *testing.T) {
	body := strings.Replace(statusJSON, "%s", "pending", 1)
	tests := []struct {
		name, path string
		headers    []string
	}{
		{"github, wrong token", "/repos/acme/platform/statuses/" + sha, []string{"Authorization", "Bearer nope"}},
		{"github, no token", "/repos/acme/platform/statuses/" + sha, nil},
		{"github, unknown scheme", "/repos/acme/platform/statuses/" + sha, []string{"Authorization", "Basic " + token}},
		{"gitlab, wrong private token", "/api/v4/projects/g%2Fp/statuses/" + sha, []string{"PRIVATE-TOKEN", "nope"}},
		{"gitlab, wrong private token beats a right bearer", "/api/v4/projects/g%2Fp/statuses/" + sha,
			[]string{"PRIVATE-TOKEN", "nope", "Authorization", "Bearer " + token}},
		{"gitlab, github style header", "/api/v4/projects/g%2Fp/statuses/" + sha, []string{"Authorization", "token " + token}},
		{"gitea, wrong token", "/api/v1/repos/acme/platform/statuses/" + sha, []string{"Authorization", "token nope"}},
		{"gitea, token prefix only", "/api/v1/repos/acme/platform/statuses/" + sha, []string{"Authorization", "token " + token[:5]}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := forgefake.New(t, token)
			code, answer := post(t, f, tt.path, "application/json", body, tt.headers...)
			if code != http.StatusUnauthorized {
				t.Errorf("status code = %d (%v), want 401", code, answer)
			}
			if strings.Contains(toJSON(t, answer), token) {
				t.Errorf("answer %v echoes the token", answer)
			}
			if got := f.Statuses(sha); len(got) != 0 {
				t.Errorf("recorded %v from an unauthorized request", got)
			}
			if got := f.Requests(); got != 1 {
				t.Errorf("Requests() = %d, want 1", got)
			}
		})
	}
}

func TestGitLabTransitions(t *testing.T) {
	type step struct {
		name, state string
		code        int
		message     string // expected message of a 400
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"running twice", []step{
			{"ferry/api", "running", 201, ""},
			{"ferry/api", "running", 400, "Cannot transition status via :run from :running"},
		}},
		{"pending twice", []step{
			{"ferry/api", "pending", 201, ""},
			{"ferry/api", "pending", 400, "Cannot transition status via :enqueue from :pending"},
		}},
		{"back to pending while running", []step{
			{"ferry/api", "running", 201, ""},
			{"ferry/api", "pending", 400, "Cannot transition status via :enqueue from :running"},
		}},
		{"a full sync", []step{
			{"ferry/api", "pending", 201, ""},
			{"ferry/api", "running", 201, ""},
			{"ferry/api", "success", 201, ""},
		}},
		{"finished statuses start a new job", []step{
			{"ferry/api", "success", 201, ""},
			{"ferry/api", "success", 201, ""},
			{"ferry/api", "failed", 201, ""},
			{"ferry/api", "pending", 201, ""},
		}},
		{"names are separate", []step{
			{"ferry/api", "running", 201, ""},
			{"ferry/db", "running", 201, ""},
			{"ferry/api", "success", 201, ""},
		}},
		{"invalid state", []step{
			{"ferry/api", "failure", 400, ""},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := forgefake.New(t, token)
			accepted := 0
			for i, s := range tt.steps {
				body := `{"state":"` + s.state + `","name":"` + s.name + `"}`
				code, answer := post(t, f, "/api/v4/projects/group%2Fproj/statuses/"+sha, "application/json", body, "PRIVATE-TOKEN", token)
				if code != s.code {
					t.Fatalf("step %d (%s %s): status code = %d (%v), want %d", i, s.name, s.state, code, answer, s.code)
				}
				if s.message != "" && answer["message"] != s.message {
					t.Errorf("step %d: message = %v, want %q", i, answer["message"], s.message)
				}
				if code == http.StatusCreated {
					accepted++
				}
			}
			if got := len(f.Statuses(sha)); got != accepted {
				t.Errorf("recorded %d statuses, want the %d accepted", got, accepted)
			}
		})
	}
}

func TestGitHubStatusCap(t *testing.T) {
	f := forgefake.New(t, token)
	body := strings.Replace(statusJSON, "%s", "pending", 1)
	path := "/repos/acme/platform/statuses/" + sha
	for i := range 1000 {
		if code, answer := post(t, f, path, "application/json", body, "Authorization", "Bearer "+token); code != http.StatusCreated {
			t.Fatalf("status %d: code %d (%v), want 201", i, code, answer)
		}
	}
	code, answer := post(t, f, path, "application/json", body, "Authorization", "Bearer "+token)
	if code != http.StatusUnprocessableEntity || !strings.Contains(toJSON(t, answer), "maximum number of statuses") {
		t.Errorf("status 1001: code %d (%v), want 422 about the maximum number of statuses", code, answer)
	}
	// Another context on the same commit is not capped.
	other := strings.Replace(body, "ferry/api", "ferry/db", 1)
	if code, answer := post(t, f, path, "application/json", other, "Authorization", "Bearer "+token); code != http.StatusCreated {
		t.Errorf("other context: code %d (%v), want 201", code, answer)
	}
}

func TestFailNext(t *testing.T) {
	f := forgefake.New(t, token)
	f.FailNext(2, http.StatusServiceUnavailable)
	body := strings.Replace(statusJSON, "%s", "pending", 1)
	path := "/api/v1/repos/acme/platform/statuses/" + sha
	var codes []int
	for range 3 {
		code, _ := post(t, f, path, "application/json", body, "Authorization", "token "+token)
		codes = append(codes, code)
	}
	if diff := cmp.Diff([]int{503, 503, 201}, codes); diff != "" {
		t.Errorf("codes (-want +got):\n%s", diff)
	}
	if got := len(f.Statuses(sha)); got != 1 {
		t.Errorf("recorded %d statuses, want 1", got)
	}
	if got := f.Requests(); got != 3 {
		t.Errorf("Requests() = %d, want 3", got)
	}
}

func TestWaitFor(t *testing.T) {
	f := forgefake.New(t, token)
	path := "/repos/acme/platform/statuses/" + sha
	var wg sync.WaitGroup
	wg.Go(func() {
		for _, state := range []string{"pending", "success"} {
			time.Sleep(50 * time.Millisecond)
			post(t, f, path, "application/json", strings.Replace(statusJSON, "%s", state, 1), "Authorization", "Bearer "+token)
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	got, err := f.WaitFor(ctx, sha, "ferry/api", func(s forgefake.Status) bool { return s.State == "success" })
	if err != nil {
		t.Fatalf("WaitFor: %v", err)
	}
	if got.State != "success" {
		t.Errorf("WaitFor returned %+v, want the success", got)
	}
	wg.Wait()
	if first, err := f.WaitFor(ctx, sha, "ferry/api", nil); err != nil || first.State != "pending" {
		t.Errorf("WaitFor(nil pred) = %+v, %v; want the first status, pending", first, err)
	}

	short, cancel2 := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel2()
	_, err = f.WaitFor(short, sha, "ferry/api", func(s forgefake.Status) bool { return s.State == "failure" })
	if err == nil {
		t.Fatal("WaitFor for a status that never comes returned no error")
	}
	if msg := err.Error(); !strings.Contains(msg, "ferry/api=pending") || !strings.Contains(msg, "deadline exceeded") {
		t.Errorf("WaitFor error %q should say what arrived and why it stopped", msg)
	}
}

func TestUnknownPathIsNotFound(t *testing.T) {
	f := forgefake.New(t, token)
	code, _ := post(t, f, "/repos/acme/platform/status/"+sha, "application/json", "{}", "Authorization", "Bearer "+token)
	if code != http.StatusNotFound {
		t.Errorf("status code = %d, want 404", code)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := f.WaitFor(ctx, sha, "ferry/api", nil); err == nil || !strings.Contains(err.Error(), "/repos/acme/platform/status/") {
		t.Errorf("WaitFor error %v should name the unexpected request", err)
	}
}

func toJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
