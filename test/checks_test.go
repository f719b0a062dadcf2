package test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ferrygitops/ferry/syncer/ghapp/ghapptest"
	"github.com/ferrygitops/ferry/test/gitserver"
)

// checksAppID and checksInstallation are the GitHub App the check run test installs.
const (
	checksAppID        = 918273
	checksInstallation = 42
)

// checkRunRerequested is GitHub's check_run delivery for the Re-run button on run.
func checkRunRerequested(t *testing.T, secret, delivery string, run ghapptest.CheckRun) hook {
	body := payload(t, "github/check_run_rerequested.json", func(m map[string]any) {
		cr := m["check_run"].(map[string]any)
		cr["id"], cr["name"], cr["head_sha"] = run.ID, run.Name, run.HeadSHA
		cr["app"].(map[string]any)["id"] = checksAppID
		cr["check_suite"].(map[string]any)["head_sha"] = run.HeadSHA
	})
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hook{body: body, headers: map[string]string{
		"X-GitHub-Event":      "check_run",
		"X-GitHub-Delivery":   delivery,
		"X-Hub-Signature-256": "sha256=" + hex.EncodeToString(mac.Sum(nil)),
	}}
}

// waitRuns waits until the completed runs named name on sha number n, and returns them all.
func waitRuns(t *testing.T, gh *ghapptest.GitHub, sha, name string, n int) []ghapptest.CheckRun {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		var runs []ghapptest.CheckRun
		done := 0
		for _, r := range gh.CheckRuns() {
			if r.HeadSHA == sha && r.Name == name {
				runs = append(runs, r)
				if r.Status == "completed" {
					done++
				}
			}
		}
		if done >= n {
			return runs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d check runs %s on %s completed after 90 s: %+v (refusals %v)", done, n, name, sha[:7], runs, gh.Refusals())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestGitHubAppCheckRunsEndToEnd: a repository that authenticates as a GitHub App clones with
// its installation token and reports through check runs, one per sync, written in place from
// queued to completed: success with the objects applied, failure with the object, the file, the
// apiserver's words and an annotation on the file; GitHub's Re-run button queues a fresh sync
// whose run is a new one. No commit status is posted.
func TestGitHubAppCheckRunsEndToEnd(t *testing.T) {
	ns := "e2e-checks"
	git := gitserver.New(t)
	repo := git.CreateRepo(t, "acme/platform")
	first := repo.Commit(t, "main", "web: first", webApp(ns, "hello"))
	key := ghapptest.NewKey(t)
	gh := ghapptest.New(t, checksAppID, key, checksInstallation, "acme", "platform", time.Now)
	env := map[string]string{"HOOK_SECRET": hookSecret, "APP_KEY": string(key.PKCS8(t)), "API_TOKEN": apiToken}
	config := fmt.Sprintf(`externalURL: http://ferry.e2e.invalid
repos:
  - name: platform
    url: %s
    provider: github
    branch: main
    webhookSecret: {env: HOOK_SECRET}
    githubApp: {appID: %d, privateKey: {env: APP_KEY}}
    apiURL: %s
    interval: 1h
apps:
  - name: web
    repo: platform
    path: apps/web
    namespace: %s
    prune: true
    timeout: 60s
apiTokens: [{env: API_TOKEN}]
`, repo.CloneURL(), checksAppID, gh.URL(), ns)
	f := startFerry(t, config, env, "")

	// The start-up sync: one run (start-up posts only results, so it is created completed).
	runs := waitRuns(t, gh, first, "ferry/web", 1)
	if len(runs) != 1 {
		t.Fatalf("start-up sync left %d runs, want 1: %+v", len(runs), runs)
	}
	ok := runs[0]
	if ok.Conclusion != "success" || !strings.HasPrefix(ok.DetailsURL, "http://ferry.e2e.invalid/syncs/") || ok.ExternalID == "" {
		t.Errorf("start-up run = %+v, want success linking its sync page", ok)
	}
	if !strings.Contains(ok.Text, "web-settings") {
		t.Errorf("start-up run's text lacks the objects applied:\n%s", ok.Text)
	}

	// A commit the apiserver refuses: failure, naming the object, the file and the apiserver's
	// words, with an annotation on the file.
	bad := repo.Commit(t, "main", "web: bad", map[string]string{
		"apps/web/bad.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\ndata:\n  a: b\n",
	})
	if code, body := f.send(t, "platform", githubPush(t, hookSecret, "d-checks-1", first, bad, "apps/web/bad.yaml")); code != http.StatusAccepted {
		t.Fatalf("push: %d %s", code, body)
	}
	runs = waitRuns(t, gh, bad, "ferry/web", 1)
	failed := runs[0]
	// A pushed commit's run is created queued and written in place as the sync goes on.
	if len(runs) != 1 || failed.Writes < 2 {
		t.Errorf("the push's runs = %+v, want one, written more than once", runs)
	}
	if failed.Conclusion != "failure" || !strings.Contains(failed.Summary+failed.Text, "Bad_Name") || !strings.Contains(failed.Text, "apps/web/bad.yaml") ||
		!strings.Contains(failed.Text, "RFC 1123") {
		t.Errorf("failed run = %+v\n%s", failed, failed.Text)
	}
	if len(failed.Annotations) == 0 || failed.Annotations[0].Path != "apps/web/bad.yaml" || failed.Annotations[0].AnnotationLevel != "failure" {
		t.Errorf("failed run's annotations = %+v, want one on apps/web/bad.yaml", failed.Annotations)
	}

	// Re-run: a fresh sync of the commit, reported on a run of its own.
	if code, body := f.send(t, "platform", checkRunRerequested(t, hookSecret, "d-checks-2", failed)); code != http.StatusAccepted {
		t.Fatalf("re-run: %d %s", code, body)
	}
	runs = waitRuns(t, gh, bad, "ferry/web", 2)
	if len(runs) != 2 || runs[1].ID == failed.ID || runs[1].Conclusion != "failure" || runs[1].ExternalID == failed.ExternalID {
		t.Errorf("after Re-run the runs on the bad commit are %+v, want a second, new run of a new sync", runs)
	}
	if got := gh.Statuses(); len(got) != 0 {
		t.Errorf("a repository reporting through check runs posted commit statuses: %+v", got)
	}
	for _, tok := range gh.Minted() {
		if strings.Contains(f.logs.String(), tok) {
			t.Error("an installation token is in ferry's log")
		}
	}
}
