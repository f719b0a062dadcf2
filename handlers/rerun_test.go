package handlers

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ferrygitops/ferry/queue"
)

// ferryApp is the id of the GitHub App the fixtures' check runs belong to.
const ferryApp = 918273

// rerunRepos: platform and tools authenticate as ferry's App; legacy uses a token.
func rerunRepos() []Repo {
	return []Repo{
		{Name: "platform", Provider: "github", Branch: "main", Secret: githubSecret, Apps: testApps(), GitHubApp: ferryApp, FullName: "acme/platform"},
		{Name: "tools", Provider: "github", Branch: "main", Secret: githubSecret, GitHubApp: ferryApp, FullName: "acme/tools", Apps: []App{
			{Name: "runners", Path: "runners"},
		}},
		{Name: "legacy", Provider: "github", Branch: "main", Secret: githubSecret, FullName: "acme/platform", Apps: []App{
			{Name: "old", Path: "old"},
		}},
		{Name: "releases", Provider: "github", Branch: "release-*", Secret: githubSecret, GitHubApp: ferryApp, FullName: "acme/releases", Apps: []App{
			{Name: "edge", Path: "edge"},
		}},
	}
}

func rerunJob(id int, kind queue.Kind, repo, app, ref, sha string, pr int, base string) queue.Job {
	return queue.Job{
		ID: fmt.Sprintf("job-%d", id), Kind: kind, Trigger: queue.TriggerRerun, Repo: repo, App: app, Ref: ref, SHA: sha,
		DeliveryID: rerunDelivery, PR: pr, BaseSHA: base, EnqueuedAt: testNow,
	}
}

const (
	rerunDelivery = "4f9e2b10-d1c3-11f0-8a6e-1d2c3b4a5f60"
	deploySHA     = "5b1e0c9d7a3f42e8b6d1c0a9f8e7d6c5b4a39281"
	prHeadSHA     = "c0ffee1234567890abcdef1234567890abcdef12"
	prBaseSHA     = "9e2d5a8c4b7f61e0d3c2b1a09f8e7d6c5b4a3928"
)

// TestRerun: GitHub's Re-run button, as check_run and check_suite deliveries signed like any
// other, makes fresh deploy and preview jobs of ferry's own checks, and nothing else.
func TestRerun(t *testing.T) {
	run := readTestdata(t, "github/check_run_rerequested.json")
	preview := readTestdata(t, "github/check_run_rerequested_preview.json")
	suite := readTestdata(t, "github/check_suite_rerequested.json")
	edit := func(raw []byte, key string, f func(c map[string]any)) []byte {
		return patchJSON(t, raw, func(m map[string]any) { f(m[key].(map[string]any)) })
	}
	named := func(name string) []byte { return edit(run, "check_run", func(c map[string]any) { c["name"] = name }) }
	action := func(raw []byte, a string) []byte {
		return patchJSON(t, raw, func(m map[string]any) { m["action"] = a })
	}
	inRepo := func(raw []byte, full string) []byte {
		return patchJSON(t, raw, func(m map[string]any) { m["repository"].(map[string]any)["full_name"] = full })
	}
	var prs []any
	_ = patchJSON(t, preview, func(m map[string]any) { prs = m["check_run"].(map[string]any)["pull_requests"].([]any) })
	prSuite := edit(suite, "check_suite", func(c map[string]any) {
		c["head_branch"], c["head_sha"], c["pull_requests"] = "feature/replicas", prHeadSHA, prs
	})

	deploys := func(repo, ref, sha string, apps ...string) []queue.Job {
		var out []queue.Job
		for i, a := range apps {
			out = append(out, rerunJob(i+1, queue.KindDeploy, repo, a, ref, sha, 0, ""))
		}
		return out
	}
	previews := func(apps ...string) []queue.Job {
		var out []queue.Job
		for i, a := range apps {
			out = append(out, rerunJob(i+1, queue.KindPreview, "platform", a, "refs/pull/42/head", prHeadSHA, 42, prBaseSHA))
		}
		return out
	}
	tests := []struct {
		name   string
		repo   string
		event  string
		body   []byte
		status int
		reason string // substring of the ignored reason
		jobs   []queue.Job
	}{
		{name: "deploy check", event: "check_run", body: run, status: http.StatusAccepted,
			jobs: deploys("platform", "refs/heads/main", deploySHA, "api")},
		{name: "preview check", event: "check_run", body: preview, status: http.StatusAccepted,
			jobs: previews("api")},
		{name: "suite on the deployed branch", event: "check_suite", body: suite, status: http.StatusAccepted,
			jobs: deploys("platform", "refs/heads/main", deploySHA, "database", "api", "web", "worker")},
		{name: "suite of a pull request", event: "check_suite", body: prSuite, status: http.StatusAccepted,
			jobs: previews("database", "api", "web", "worker")},
		{name: "app's webhook about another repository of the same App", event: "check_run",
			body:   inRepo(named("ferry/runners"), "acme/tools"),
			status: http.StatusAccepted, jobs: deploys("tools", "refs/heads/main", deploySHA, "runners")},
		{name: "branch glob takes the suite's branch", repo: "releases", event: "check_run",
			body: inRepo(edit(named("ferry/edge"), "check_run", func(c map[string]any) {
				c["check_suite"].(map[string]any)["head_branch"] = "release-7"
			}), "acme/releases"),
			status: http.StatusAccepted, jobs: deploys("releases", "refs/heads/release-7", deploySHA, "edge")},

		{name: "another app's check", event: "check_run", status: http.StatusOK, reason: "belongs to GitHub App 31337",
			body: edit(run, "check_run", func(c map[string]any) { c["app"].(map[string]any)["id"] = 31337 })},
		{name: "another tool's check", event: "check_run", body: named("ci/build"), status: http.StatusOK, reason: "not one of ferry's"},
		{name: "unknown app", event: "check_run", body: named("ferry/payments"), status: http.StatusOK, reason: "names no app of repo platform"},
		{name: "app of another repository", event: "check_run", body: named("ferry/runners"), status: http.StatusOK, reason: "names no app of repo platform"},
		{name: "created", event: "check_run", body: action(run, "created"), status: http.StatusOK, reason: `action "created" is not a Re-run request`},
		{name: "completed", event: "check_run", body: action(run, "completed"), status: http.StatusOK, reason: `action "completed"`},
		{name: "requested action", event: "check_run", body: action(run, "requested_action"), status: http.StatusOK, reason: `action "requested_action"`},
		{name: "suite requested", event: "check_suite", body: action(suite, "requested"), status: http.StatusOK, reason: `action "requested"`},
		{name: "repository with a token", repo: "legacy", event: "check_run", body: named("ferry/old"), status: http.StatusOK, reason: "reports commit statuses, not check runs"},
		{name: "repository ferry does not know", event: "check_run", body: inRepo(run, "acme/unknown"), status: http.StatusOK, reason: "about acme/unknown, which is neither repo platform"},
		{name: "preview of a fork's pull request", event: "check_run", status: http.StatusOK, reason: "lists no pull request",
			body: edit(preview, "check_run", func(c map[string]any) { c["pull_requests"] = []any{} })},
		{name: "preview aimed at another branch", event: "check_run", status: http.StatusOK, reason: "no pull request of the check targets main",
			body: edit(preview, "check_run", func(c map[string]any) {
				c["pull_requests"].([]any)[0].(map[string]any)["base"].(map[string]any)["ref"] = "develop"
			})},
		{name: "branch glob, suite on another branch", repo: "releases", event: "check_run", status: http.StatusOK, reason: `branch "main" does not match release-*`,
			body: inRepo(named("ferry/edge"), "acme/releases")},
		{name: "suite on another branch without pull requests", event: "check_suite", status: http.StatusOK, reason: "not main",
			body: edit(suite, "check_suite", func(c map[string]any) { c["head_branch"] = "develop" })},

		{name: "abbreviated head sha", event: "check_run", status: http.StatusBadRequest,
			body: edit(run, "check_run", func(c map[string]any) { c["head_sha"] = "5b1e0c9" })},
		{name: "suite without its check_suite", event: "check_suite", body: []byte(`{"action":"rerequested"}`), status: http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hh := newHarness(t, rerunRepos())
			repo := tt.repo
			if repo == "" {
				repo = "platform"
			}
			rec := hh.post(t, repo, githubHeaders(tt.event, rerunDelivery, githubSecret, tt.body), tt.body)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			if tt.reason != "" {
				var answer map[string]string
				if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil || !strings.Contains(answer["ignored"], tt.reason) {
					t.Errorf("response %s should give the reason %q", rec.Body, tt.reason)
				}
			}
			var got []queue.Job
			for _, c := range hh.queue.calls {
				got = append(got, c...)
			}
			if diff := cmp.Diff(tt.jobs, got); diff != "" {
				t.Errorf("jobs (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRerunVerifiedFirst: a Re-run delivery is verified before it is read; a wrong signature
// stores nothing.
func TestRerunVerifiedFirst(t *testing.T) {
	hh := newHarness(t, rerunRepos())
	body := readTestdata(t, "github/check_run_rerequested.json")
	rec := hh.post(t, "platform", githubHeaders("check_run", rerunDelivery, []byte("not-the-secret"), body), body)
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401", rec.Code)
	}
	if len(hh.queue.calls) != 0 {
		t.Errorf("jobs stored for an unverified delivery: %v", hh.queue.calls)
	}
}

// TestAppWebhookRoutesByRepository: a GitHub App's one webhook carries every installed
// repository's pushes; each goes to the repository of ferry's it is about when that repository
// uses the same App, and is ignored otherwise, never deployed as the receiving repository's.
func TestAppWebhookRoutesByRepository(t *testing.T) {
	push := readTestdata(t, "github/push.json")
	about := func(full string) []byte {
		return patchJSON(t, push, func(m map[string]any) {
			m["repository"].(map[string]any)["full_name"] = full
			m["commits"] = []any{map[string]any{"added": []any{"runners/pool.yaml"}, "removed": []any{}, "modified": []any{}}}
		})
	}
	const after = "9e2d5a8c4b7f61e0d3c2b1a09f8e7d6c5b4a3928"
	for _, tt := range []struct {
		name, repo, full string
		status           int
		jobs             []queue.Job
	}{
		{"same App, other repository", "platform", "acme/tools", http.StatusAccepted, []queue.Job{{
			ID: "job-1", Kind: queue.KindDeploy, Trigger: queue.TriggerPush, Repo: "tools", App: "runners", Ref: "refs/heads/main",
			SHA: after, Before: "3c4e9f2a1b0d8e7f6a5b4c3d2e1f0a9b8c7d6e5f", DeliveryID: rerunDelivery, EnqueuedAt: testNow,
		}}},
		{"repository case differs", "tools", "Acme/Tools", http.StatusAccepted, []queue.Job{{
			ID: "job-1", Kind: queue.KindDeploy, Trigger: queue.TriggerPush, Repo: "tools", App: "runners", Ref: "refs/heads/main",
			SHA: after, Before: "3c4e9f2a1b0d8e7f6a5b4c3d2e1f0a9b8c7d6e5f", DeliveryID: rerunDelivery, EnqueuedAt: testNow,
		}}},
		{"repository ferry does not know", "platform", "acme/secret-project", http.StatusOK, nil},
		{"token repository takes its own webhook's deliveries", "legacy", "acme/renamed", http.StatusOK, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			hh := newHarness(t, rerunRepos())
			body := about(tt.full)
			rec := hh.post(t, tt.repo, githubHeaders("push", rerunDelivery, githubSecret, body), body)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			var got []queue.Job
			for _, c := range hh.queue.calls {
				got = append(got, c...)
			}
			if diff := cmp.Diff(tt.jobs, got); diff != "" {
				t.Errorf("jobs (-want +got):\n%s", diff)
			}
			if tt.status == http.StatusOK && tt.repo == "platform" && !strings.Contains(rec.Body.String(), "neither repo platform") {
				t.Errorf("ignored without the reason: %s", rec.Body)
			}
			if tt.repo == "legacy" && !strings.Contains(rec.Body.String(), "no app") {
				t.Errorf("legacy should route the push to its own apps (none touched): %s", rec.Body)
			}
		})
	}
}
