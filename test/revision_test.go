package test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/test/forgefake"
	"github.com/ferrygitops/ferry/test/gitserver"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// resync asks f's API for a manual sync of app at revision ("" for the branch head) and returns
// the status code and the decoded answer.
func (f *ferry) resync(t *testing.T, app, revision string) (int, map[string]string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"revision": revision})
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, f.URL+"/api/v1/apps/"+app+"/sync", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&v)
	return resp.StatusCode, v
}

// waitSync polls a sync record until it is final.
func waitSync(t *testing.T, f *ferry, id string) queue.Record {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		var rec queue.Record
		if code := f.getJSON(t, "/api/v1/syncs/"+id, &rec); code == http.StatusOK && rec.State.Terminal() {
			return rec
		}
		if time.Now().After(deadline) {
			t.Fatalf("sync %s not final after 90s: %+v", id, rec)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestManualSyncOnlyFromBranchOrTag: a manual sync deploys a commit of the app's branch or a tag,
// never a pull request's head, not even one that its preview already fetched into ferry's cache,
// and no ref outside refs/heads/<branch> and refs/tags/.
func TestManualSyncOnlyFromBranchOrTag(t *testing.T) {
	ns := "e2e-revision"
	cs := kube(t)
	git := gitserver.New(t)
	repo := git.CreateRepo(t, "acme/platform")
	base := repo.Commit(t, "main", "web: base", webApp(ns, "base"))
	forge := forgefake.New(t, forgeToken)
	f := startFerry(t, config("github", repo.CloneURL(), forge.URL(), ns), ferryEnv, "")
	if st := waitFinal(t, forge, base, "ferry/web"); st[len(st)-1].State != "success" {
		t.Fatalf("base sync: %+v", st[len(st)-1])
	}
	greeting := func() string {
		t.Helper()
		cm, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "web-settings", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return cm.Data["greeting"]
	}

	// A pull request from a fork; its preview fetches the head into ferry's Git cache.
	prHead := repo.Commit(t, "fork", "web: take over", webApp(ns, "pwned"))
	repo.PushRef(t, "refs/pull/120/head", prHead)
	repo.DeleteRef(t, "refs/heads/fork")
	if code, body := f.send(t, "platform", githubPR(t, "d-pr-120", 120, prHead, base)); code != http.StatusAccepted {
		t.Fatalf("pull_request hook: %d %s", code, body)
	}
	if st := waitFinal(t, forge, prHead, "ferry/web/preview"); st[len(st)-1].State != "success" {
		t.Fatalf("preview: %+v", st[len(st)-1])
	}

	// Its sha is accepted by the API (only the worker can tell where a sha is), and refused there.
	code, ans := f.resync(t, "web", prHead)
	if code != http.StatusAccepted {
		t.Fatalf("resync of the pull request's sha: %d %v", code, ans)
	}
	rec := waitSync(t, f, ans["id"])
	if rec.State != queue.StateFailed || rec.Error == nil || rec.Error.Stage != "revision" ||
		!contains(rec.Error.Message, "commit "+prHead[:7]+" refused: it is not reachable from branch main (at "+base[:7]+")") {
		t.Fatalf("manual sync of a pull request head: %s %+v, want a failure at stage revision", rec.State, rec.Error)
	}
	if st := finalStatus(t, forge, prHead, "ferry/web"); st.State != "failure" || !contains(st.Description, "not reachable from branch main") {
		t.Errorf("status of the refused sync: %+v", st)
	}
	if got := greeting(); got != "base" {
		t.Fatalf("the pull request's commit was deployed: greeting %q", got)
	}

	// Refs outside the branch and tags are refused before anything is queued.
	for _, rev := range []string{"refs/pull/120/head", "refs/heads/fork", "refs/merge-requests/1/head"} {
		if code, ans := f.resync(t, "web", rev); code != http.StatusBadRequest || !contains(ans["error"], "branch app web deploys (main)") {
			t.Errorf("resync of %s: %d %v, want 400 naming the branch", rev, code, ans)
		}
	}

	// A commit on the branch, given by sha (no push hook announced it), is deployed.
	second := repo.Commit(t, "main", "web: second", webApp(ns, "second"))
	code, ans = f.resync(t, "web", second)
	if code != http.StatusAccepted {
		t.Fatalf("resync of a sha on main: %d %v", code, ans)
	}
	if rec := waitSync(t, f, ans["id"]); rec.State != queue.StateSucceeded || greeting() != "second" {
		t.Fatalf("manual sync of a sha on main: %s %+v, greeting %q", rec.State, rec.Error, greeting())
	}

	// A tag is deployed, also one on a commit that is not on the branch.
	hotfix := repo.Commit(t, "hotfix", "web: hotfix", webApp(ns, "hotfix"))
	repo.Tag(t, "v1.0.1", hotfix)
	code, ans = f.resync(t, "web", "v1.0.1")
	if code != http.StatusAccepted || ans["sha"] != hotfix {
		t.Fatalf("resync of a tag: %d %v, want 202 with the tag's commit %s", code, ans, hotfix)
	}
	if rec := waitSync(t, f, ans["id"]); rec.State != queue.StateSucceeded || greeting() != "hotfix" {
		t.Fatalf("manual sync of a tag: %s %+v, greeting %q", rec.State, rec.Error, greeting())
	}
	// And the branch head, by name.
	code, ans = f.resync(t, "web", "refs/heads/main")
	if code != http.StatusAccepted || ans["sha"] != second {
		t.Fatalf("resync of refs/heads/main: %d %v", code, ans)
	}
	if rec := waitSync(t, f, ans["id"]); rec.State != queue.StateSucceeded || greeting() != "second" {
		t.Fatalf("manual sync of the branch: %s %+v, greeting %q", rec.State, rec.Error, greeting())
	}
}
