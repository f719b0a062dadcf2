package handlers

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/ferrygitops/ferry/queue"
)

// fakeQueue is an Enqueuer whose behaviour a test sets through enqueue; it records every call.
type fakeQueue struct {
	enqueue func(ctx context.Context, jobs []queue.Job) ([]queue.Job, error)
	mu      sync.Mutex
	calls   [][]queue.Job
}

// Enqueue stores every job as new unless the test says otherwise.
func (f *fakeQueue) Enqueue(ctx context.Context, jobs []queue.Job) ([]queue.Job, error) {
	f.mu.Lock()
	f.calls = append(f.calls, jobs)
	f.mu.Unlock()
	if f.enqueue != nil {
		return f.enqueue(ctx, jobs)
	}
	return jobs, nil
}

// testApps is the platform repository's layout: api depends on database, web on api; worker
// stands alone. Whatever the forge, the same apps.
func testApps() []App {
	return []App{
		{Name: "database", Path: "apps/database"},
		{Name: "api", Path: "apps/api", Exclude: []string{"apps/api/**/*.md"}, DependsOn: []string{"database"}},
		{Name: "web", Path: "apps/web", DependsOn: []string{"api"}},
		{Name: "worker", Path: "apps/worker"},
	}
}

// testRepos configures "platform" on the given forge, plus an "infra" repository whose
// monitoring app depends on platform's web app.
func testRepos(provider string, secret []byte) []Repo {
	return []Repo{
		{Name: "platform", Provider: provider, Branch: "main", Secret: secret, Apps: testApps()},
		{Name: "infra", Provider: "github", Branch: "release-*", Secret: githubSecret, Apps: []App{
			{Name: "monitoring", Path: "monitoring", DependsOn: []string{"web"}},
		}},
	}
}

type hookHarness struct {
	srv   http.Handler
	hooks *Hooks
	queue *fakeQueue
	logs  *bytes.Buffer
}

func newHarness(t *testing.T, repos []Repo) *hookHarness {
	t.Helper()
	hh := &hookHarness{queue: &fakeQueue{}, logs: &bytes.Buffer{}}
	n := 0
	h := NewHooks(repos, hh.queue, HooksOptions{
		Logger: slog.New(slog.NewTextHandler(hh.logs, nil)),
		Now:    func() time.Time { return testNow },
		NewID:  func() string { n++; return fmt.Sprintf("job-%d", n) },
	})
	r := chi.NewRouter()
	r.Post("/hooks/{repo}", h.ServeHTTP)
	hh.srv, hh.hooks = r, h
	return hh
}

func (hh *hookHarness) post(t *testing.T, repo string, h http.Header, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/hooks/"+repo, bytes.NewReader(body))
	req.Header = h
	rec := httptest.NewRecorder()
	hh.srv.ServeHTTP(rec, req)
	return rec
}

// deploy and preview build the jobs a test expects; IDs follow the harness's counter.
func deploy(id int, app, delivery, before, after string) queue.Job {
	return queue.Job{
		ID: fmt.Sprintf("job-%d", id), Kind: queue.KindDeploy, Trigger: queue.TriggerPush, Repo: "platform", App: app,
		Ref: "refs/heads/main", SHA: after, Before: before, DeliveryID: delivery, EnqueuedAt: testNow,
	}
}

func preview(id int, app, delivery, ref, sha, base string, pr int) queue.Job {
	return queue.Job{
		ID: fmt.Sprintf("job-%d", id), Kind: queue.KindPreview, Trigger: queue.TriggerPR, Repo: "platform", App: app,
		Ref: ref, SHA: sha, DeliveryID: delivery, PR: pr, BaseSHA: base, EnqueuedAt: testNow,
	}
}

func TestHooks(t *testing.T) {
	ghPush := readTestdata(t, "github/push.json")
	ghForm := readTestdata(t, "github/push.form")
	glPush := readTestdata(t, "gitlab/push.json")
	glMR := readTestdata(t, "gitlab/merge_request.json")
	gtPush := readTestdata(t, "gitea/push.json")
	gtPR := readTestdata(t, "gitea/pull_request.json")
	ghPR := readTestdata(t, "github/pull_request.json")

	const (
		ghBefore = "3c4e9f2a1b0d8e7f6a5b4c3d2e1f0a9b8c7d6e5f"
		ghAfter  = "9e2d5a8c4b7f61e0d3c2b1a09f8e7d6c5b4a3928"
		ghID     = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
	)
	zero := strings.Repeat("0", 40)
	withRef := func(ref string) []byte { return patchJSON(t, ghPush, func(m map[string]any) { m["ref"] = ref }) }
	ghTag := withRef("refs/tags/v1.4.0")
	ghOther := withRef("refs/heads/feature/cdn")
	ghDeleted := patchJSON(t, ghPush, func(m map[string]any) {
		m["deleted"], m["after"], m["commits"], m["head_commit"] = true, zero, []any{}, nil
	})
	ghNewBranch := patchJSON(t, ghPush, func(m map[string]any) { m["before"], m["created"] = zero, true })
	ghTruncated := patchJSON(t, ghPush, func(m map[string]any) {
		c := m["commits"].([]any)
		for len(c) < githubCommitCap {
			c = append(c, c[1])
		}
		m["commits"] = c
	})
	ghDocsOnly := patchJSON(t, ghPush, func(m map[string]any) { m["commits"] = m["commits"].([]any)[1:] })
	formHeaders := githubHeaders("push", ghID, githubSecret, ghForm)
	formHeaders.Set("Content-Type", "application/x-www-form-urlencoded")
	glTokenPush := gitlabTokenHeaders("Push Hook", "e1b2c3d4-0000-4000-8000-000000000001", gitlabToken)
	glOtherBase := patchJSON(t, glMR, func(m map[string]any) { m["object_attributes"].(map[string]any)["target_branch"] = "develop" })
	gtOtherBase := patchJSON(t, gtPR, func(m map[string]any) {
		m["pull_request"].(map[string]any)["base"].(map[string]any)["ref"] = "develop"
	})

	tests := []struct {
		name     string
		provider string
		secret   []byte
		repo     string // default platform
		headers  http.Header
		body     []byte
		status   int
		response string // exact JSON when set
		contains string // substring of the response when set
		log      string // substring of the log when set
		jobs     []queue.Job
	}{
		{
			name: "github push deploys changed app and its dependents", provider: "github", secret: githubSecret,
			headers: githubHeaders("push", ghID, githubSecret, ghPush), body: ghPush, status: http.StatusAccepted,
			response: `{"jobs":[{"id":"job-1","app":"database","sha":"` + ghAfter + `"},{"id":"job-2","app":"api","sha":"` + ghAfter + `"},{"id":"job-3","app":"web","sha":"` + ghAfter + `"}]}`,
			log:      "dependents_not_synced=[monitoring]",
			jobs: []queue.Job{
				deploy(1, "database", ghID, ghBefore, ghAfter),
				deploy(2, "api", ghID, ghBefore, ghAfter),
				deploy(3, "web", ghID, ghBefore, ghAfter),
			},
		},
		{
			name: "github form-encoded push", provider: "github", secret: githubSecret,
			headers: formHeaders, body: ghForm, status: http.StatusAccepted,
			jobs: []queue.Job{
				deploy(1, "database", ghID, ghBefore, ghAfter),
				deploy(2, "api", ghID, ghBefore, ghAfter),
				deploy(3, "web", ghID, ghBefore, ghAfter),
			},
		},
		{
			name: "github truncated push deploys every app", provider: "github", secret: githubSecret,
			headers: githubHeaders("push", ghID, githubSecret, ghTruncated), body: ghTruncated, status: http.StatusAccepted,
			// The worker diffs before..after, since the forge's list was cut.
			jobs: unfiltered(
				deploy(1, "database", ghID, ghBefore, ghAfter),
				deploy(2, "api", ghID, ghBefore, ghAfter),
				deploy(3, "web", ghID, ghBefore, ghAfter),
				deploy(4, "worker", ghID, ghBefore, ghAfter),
			),
		},
		{
			name: "github new branch deploys every app", provider: "github", secret: githubSecret,
			headers: githubHeaders("push", ghID, githubSecret, ghNewBranch), body: ghNewBranch, status: http.StatusAccepted,
			jobs: []queue.Job{
				deploy(1, "database", ghID, "", ghAfter),
				deploy(2, "api", ghID, "", ghAfter),
				deploy(3, "web", ghID, "", ghAfter),
				deploy(4, "worker", ghID, "", ghAfter),
			},
		},
		{
			name: "github push touching no app", provider: "github", secret: githubSecret,
			headers: githubHeaders("push", ghID, githubSecret, ghDocsOnly), body: ghDocsOnly, status: http.StatusOK,
			response: `{"ignored":"no app's path changed"}`,
		},
		{
			name: "github push to another branch", provider: "github", secret: githubSecret,
			headers: githubHeaders("push", ghID, githubSecret, ghOther), body: ghOther, status: http.StatusOK,
			response: `{"ignored":"push to branch feature/cdn, which does not match main"}`,
		},
		{
			name: "github tag push", provider: "github", secret: githubSecret,
			headers: githubHeaders("push", ghID, githubSecret, ghTag), body: ghTag, status: http.StatusOK,
			response: `{"ignored":"tag push refs/tags/v1.4.0: ferry deploys branches, not tags"}`,
		},
		{
			name: "github branch deletion", provider: "github", secret: githubSecret,
			headers: githubHeaders("push", ghID, githubSecret, ghDeleted), body: ghDeleted, status: http.StatusOK,
			response: `{"ignored":"branch main was deleted; nothing to deploy"}`,
		},
		{
			name: "github ping", provider: "github", secret: githubSecret,
			headers: githubHeaders("ping", "p1", githubSecret, readTestdata(t, "github/ping.json")), body: readTestdata(t, "github/ping.json"),
			status: http.StatusOK, response: `{"ping":"pong"}`,
		},
		{
			name: "github pull request previews every app", provider: "github", secret: githubSecret,
			headers: githubHeaders("pull_request", "pr1", githubSecret, ghPR), body: ghPR, status: http.StatusAccepted,
			jobs: []queue.Job{
				preview(1, "database", "pr1", "refs/pull/42/head", "c0ffee1234567890abcdef1234567890abcdef12", ghAfter, 42),
				preview(2, "api", "pr1", "refs/pull/42/head", "c0ffee1234567890abcdef1234567890abcdef12", ghAfter, 42),
				preview(3, "web", "pr1", "refs/pull/42/head", "c0ffee1234567890abcdef1234567890abcdef12", ghAfter, 42),
				preview(4, "worker", "pr1", "refs/pull/42/head", "c0ffee1234567890abcdef1234567890abcdef12", ghAfter, 42),
			},
		},
		{
			name: "github bad signature", provider: "github", secret: githubSecret,
			headers: githubHeaders("push", ghID, []byte("wrong"), ghPush), body: ghPush, status: http.StatusUnauthorized,
			response: `{"error":"webhook signature does not match"}`,
		},
		{
			name: "github missing signature", provider: "github", secret: githubSecret,
			headers: func() http.Header {
				h := githubHeaders("push", ghID, githubSecret, ghPush)
				h.Del("X-Hub-Signature-256")
				return h
			}(),
			body: ghPush, status: http.StatusUnauthorized, response: `{"error":"webhook signature does not match"}`,
		},
		{
			name: "github tampered body", provider: "github", secret: githubSecret,
			headers: githubHeaders("push", ghID, githubSecret, ghPush), body: ghOther, status: http.StatusUnauthorized,
		},
		{
			name: "empty secret never verifies", provider: "github", secret: nil,
			headers: githubHeaders("push", ghID, nil, ghPush), body: ghPush, status: http.StatusUnauthorized,
		},
		{
			name: "bad json", provider: "github", secret: githubSecret,
			headers: githubHeaders("push", ghID, githubSecret, []byte(`{"ref": "refs/heads/main",`)), body: []byte(`{"ref": "refs/heads/main",`),
			status: http.StatusBadRequest, contains: "webhook payload is malformed",
		},
		{
			name: "unknown repo", provider: "github", secret: githubSecret, repo: "nope",
			headers: githubHeaders("push", ghID, githubSecret, ghPush), body: ghPush, status: http.StatusNotFound,
		},
		{
			name: "gitlab push with token", provider: "gitlab", secret: gitlabToken,
			headers: glTokenPush, body: glPush, status: http.StatusAccepted,
			jobs: []queue.Job{deploy(1, "worker", "e1b2c3d4-0000-4000-8000-000000000001",
				"95790bf891e76fee5e1747ab589903a6a1f80f22", "0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c")},
		},
		{
			name: "gitlab wrong token", provider: "gitlab", secret: gitlabToken,
			headers: gitlabTokenHeaders("Push Hook", "u", []byte("glpat-guess")), body: glPush, status: http.StatusUnauthorized,
		},
		{
			name: "gitlab merge request with signing token", provider: "gitlab", secret: gitlabSigning,
			headers: gitlabSigningHeaders(t, "Merge Request Hook", "msg_2f9c", testNow.Add(-90*time.Second), gitlabSigning, glMR), body: glMR,
			status: http.StatusAccepted,
			jobs: []queue.Job{
				preview(1, "database", "msg_2f9c", "refs/merge-requests/7/head", "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", "", 7),
				preview(2, "api", "msg_2f9c", "refs/merge-requests/7/head", "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", "", 7),
				preview(3, "web", "msg_2f9c", "refs/merge-requests/7/head", "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", "", 7),
				preview(4, "worker", "msg_2f9c", "refs/merge-requests/7/head", "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", "", 7),
			},
		},
		{
			name: "gitlab merge request with token", provider: "gitlab", secret: gitlabToken,
			headers: gitlabTokenHeaders("Merge Request Hook", "mr-uuid", gitlabToken), body: glMR, status: http.StatusAccepted,
			jobs: []queue.Job{
				preview(1, "database", "mr-uuid", "refs/merge-requests/7/head", "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", "", 7),
				preview(2, "api", "mr-uuid", "refs/merge-requests/7/head", "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", "", 7),
				preview(3, "web", "mr-uuid", "refs/merge-requests/7/head", "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", "", 7),
				preview(4, "worker", "mr-uuid", "refs/merge-requests/7/head", "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", "", 7),
			},
		},
		{
			name: "gitlab signing timestamp skew refused", provider: "gitlab", secret: gitlabSigning,
			headers: gitlabSigningHeaders(t, "Merge Request Hook", "msg_old", testNow.Add(-10*time.Minute), gitlabSigning, glMR), body: glMR,
			status: http.StatusUnauthorized,
		},
		{
			name: "gitlab merge request into another branch", provider: "gitlab", secret: gitlabToken,
			headers: gitlabTokenHeaders("Merge Request Hook", "u", gitlabToken), body: glOtherBase, status: http.StatusOK,
			response: `{"ignored":"pull request #7 targets branch develop, which does not match main"}`,
		},
		{
			name: "gitlab tag push", provider: "gitlab", secret: gitlabToken,
			headers: gitlabTokenHeaders("Tag Push Hook", "u", gitlabToken), body: readTestdata(t, "gitlab/tag_push.json"), status: http.StatusOK,
			contains: `"ignored":"tag push`,
		},
		{
			name: "gitea push", provider: "gitea", secret: giteaSecret,
			headers: giteaHeaders("push", "g1", giteaSecret, gtPush), body: gtPush, status: http.StatusAccepted,
			jobs: []queue.Job{
				deploy(1, "api", "g1", "1f2e3d4c5b6a79880716253443526170f9e8d7c6", "6a1e2f8b3c9d40e5f71a2b3c4d5e6f7089a1b2c3"),
				deploy(2, "web", "g1", "1f2e3d4c5b6a79880716253443526170f9e8d7c6", "6a1e2f8b3c9d40e5f71a2b3c4d5e6f7089a1b2c3"),
			},
		},
		{
			name: "gitea pull request", provider: "gitea", secret: giteaSecret,
			headers: giteaHeaders("pull_request", "g2", giteaSecret, gtPR), body: gtPR, status: http.StatusAccepted,
			jobs: []queue.Job{
				preview(1, "database", "g2", "refs/pull/5/head", "f00dbabe0123456789abcdef0123456789abcdef", "6a1e2f8b3c9d40e5f71a2b3c4d5e6f7089a1b2c3", 5),
				preview(2, "api", "g2", "refs/pull/5/head", "f00dbabe0123456789abcdef0123456789abcdef", "6a1e2f8b3c9d40e5f71a2b3c4d5e6f7089a1b2c3", 5),
				preview(3, "web", "g2", "refs/pull/5/head", "f00dbabe0123456789abcdef0123456789abcdef", "6a1e2f8b3c9d40e5f71a2b3c4d5e6f7089a1b2c3", 5),
				preview(4, "worker", "g2", "refs/pull/5/head", "f00dbabe0123456789abcdef0123456789abcdef", "6a1e2f8b3c9d40e5f71a2b3c4d5e6f7089a1b2c3", 5),
			},
		},
		{
			name: "gitea pull request into another branch", provider: "gitea", secret: giteaSecret,
			headers: giteaHeaders("pull_request", "g3", giteaSecret, gtOtherBase), body: gtOtherBase, status: http.StatusOK,
			response: `{"ignored":"pull request #5 targets branch develop, which does not match main"}`,
		},
		{
			name: "gitea bad signature", provider: "gitea", secret: giteaSecret,
			headers: giteaHeaders("push", "g1", []byte("nope"), gtPush), body: gtPush, status: http.StatusUnauthorized,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hh := newHarness(t, testRepos(tt.provider, tt.secret))
			repo := tt.repo
			if repo == "" {
				repo = "platform"
			}
			rec := hh.post(t, repo, tt.headers, tt.body)
			if rec.Code != tt.status {
				t.Fatalf("status = %d, want %d; body %s", rec.Code, tt.status, rec.Body)
			}
			body := rec.Body.String()
			if tt.response != "" {
				if diff := cmp.Diff(tt.response, strings.TrimSpace(body)); diff != "" {
					t.Errorf("response (-want +got):\n%s", diff)
				}
			}
			if tt.log != "" && !strings.Contains(hh.logs.String(), tt.log) {
				t.Errorf("log %s does not contain %q", hh.logs, tt.log)
			}
			if tt.contains != "" && !strings.Contains(body, tt.contains) {
				t.Errorf("response %s does not contain %q", body, tt.contains)
			}
			var wantCalls [][]queue.Job
			if tt.jobs != nil {
				wantCalls = [][]queue.Job{tt.jobs}
			}
			if diff := cmp.Diff(wantCalls, hh.queue.calls); diff != "" {
				t.Errorf("enqueued (-want +got):\n%s", diff)
			}
			for _, j := range tt.jobs {
				if err := j.Validate(); err != nil {
					t.Errorf("expected job %s is not valid: %v", j.App, err)
				}
			}
			assertNoSecrets(t, tt.headers, tt.secret, body, hh.logs.String())
			if !strings.Contains(hh.logs.String(), "repo="+repo) || !strings.Contains(hh.logs.String(), "outcome=") {
				t.Errorf("no log line for the hook: %s", hh.logs)
			}
		})
	}
}

// assertNoSecrets checks that neither the secret nor a received signature or token made it
// into the response or the logs.
func assertNoSecrets(t *testing.T, h http.Header, secret []byte, texts ...string) {
	t.Helper()
	needles := []string{}
	if len(secret) > 0 {
		needles = append(needles, string(secret))
	}
	for _, k := range []string{"X-Hub-Signature-256", "X-Gitea-Signature", "X-Gitlab-Token", "webhook-signature"} {
		if v := h.Get(k); v != "" {
			needles = append(needles, v)
		}
	}
	for _, text := range texts {
		for _, n := range needles {
			if strings.Contains(text, n) {
				t.Errorf("%q leaked into %q", n, text)
			}
		}
	}
}

func TestHooksEnqueueFailure(t *testing.T) {
	body := readTestdata(t, "github/push.json")
	hh := newHarness(t, testRepos("github", githubSecret))
	hh.queue.enqueue = func(ctx context.Context, jobs []queue.Job) ([]queue.Job, error) {
		if ctx.Err() != nil {
			t.Errorf("enqueue got a finished context: %v", ctx.Err())
		}
		return nil, errors.New("nats: no responders available for request")
	}
	rec := hh.post(t, "platform", githubHeaders("push", "d1", githubSecret, body), body)
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status = %d, want 503; body %s", rec.Code, rec.Body)
	}
	if strings.Contains(rec.Body.String(), "job-") || strings.Contains(rec.Body.String(), `"jobs"`) {
		t.Errorf("503 response claims jobs: %s", rec.Body)
	}
	if len(hh.queue.calls) != 1 {
		t.Errorf("enqueue called %d times, want 1", len(hh.queue.calls))
	}
	if !strings.Contains(hh.logs.String(), "enqueue failed") {
		t.Errorf("failure not logged: %s", hh.logs)
	}
}

func TestHooksOversizeBody(t *testing.T) {
	hh := newHarness(t, testRepos("github", githubSecret))
	body := bytes.Repeat([]byte(" "), MaxBodyBytes+1)
	rec := hh.post(t, "platform", githubHeaders("push", "d1", githubSecret, body), body)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("status = %d, want 413", rec.Code)
	}
	if len(hh.queue.calls) != 0 {
		t.Errorf("oversize body enqueued %v", hh.queue.calls)
	}
}

// TestHooksDeliveryIDFromBody checks that a delivery without an id still de-duplicates: the
// same body gives the same message ids twice.
func TestHooksDeliveryIDFromBody(t *testing.T) {
	body := readTestdata(t, "github/push.json")
	sum := sha256.Sum256(body)
	want := "body-sha256-" + hex.EncodeToString(sum[:16])
	hh := newHarness(t, testRepos("github", githubSecret))
	var msgIDs [2][]string
	for i := range msgIDs {
		rec := hh.post(t, "platform", githubHeaders("push", "", githubSecret, body), body)
		if rec.Code != http.StatusAccepted {
			t.Fatalf("status = %d, want 202; body %s", rec.Code, rec.Body)
		}
		for _, j := range hh.queue.calls[i] {
			if j.DeliveryID != want {
				t.Errorf("delivery id = %q, want %q", j.DeliveryID, want)
			}
			msgIDs[i] = append(msgIDs[i], j.MsgID())
		}
	}
	if diff := cmp.Diff(msgIDs[0], msgIDs[1]); diff != "" {
		t.Errorf("redelivery message ids differ (-first +second):\n%s", diff)
	}
}

func TestHooksResponseIsJSON(t *testing.T) {
	body := readTestdata(t, "gitea/push.json")
	hh := newHarness(t, testRepos("gitea", giteaSecret))
	rec := hh.post(t, "platform", giteaHeaders("push", "g1", giteaSecret, body), body)
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("content type = %q", ct)
	}
	var got struct {
		Jobs []struct{ ID, App, SHA string }
	}
	if err := json.NewDecoder(io.LimitReader(rec.Body, 1<<20)).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if len(got.Jobs) != 2 || got.Jobs[0].App != "api" || got.Jobs[0].ID != "job-1" {
		t.Errorf("jobs = %+v", got.Jobs)
	}
}

// unfiltered marks jobs made for every app because the changed paths were incomplete.
func unfiltered(jobs ...queue.Job) []queue.Job {
	for i := range jobs {
		jobs[i].Unfiltered = true
	}
	return jobs
}
