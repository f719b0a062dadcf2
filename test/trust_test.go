package test

import (
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/test/forgefake"
	"github.com/ferrygitops/ferry/test/gitserver"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// syncID is the sync a status links to.
func syncID(st forgefake.Status) string { return st.TargetURL[strings.LastIndex(st.TargetURL, "/")+1:] }

// TestReplayedPushDoesNotMoveBack: GitHub signs the body, not the delivery id, so a captured push
// replayed with a new delivery id is accepted; its old commit must not be applied over the newer
// one the app runs. A flood of such replays pushes the app's real syncs off its history, and the
// link of the real commit's status still says what its sync did.
func TestReplayedPushDoesNotMoveBack(t *testing.T) {
	ns := "e2e-replay"
	cs := kube(t)
	git := gitserver.New(t)
	repo := git.CreateRepo(t, "acme/platform")
	first := repo.Commit(t, "main", "web: first", webApp(ns, "hello"))
	forge := forgefake.New(t, forgeToken)
	f := startFerry(t, config("github", repo.CloneURL(), forge.URL(), ns), ferryEnv, "")
	if last := finalStatus(t, forge, first, "ferry/web"); last.State != "success" {
		t.Fatalf("start-up sync: %+v", last)
	}
	second := repo.Commit(t, "main", "web: second", webApp(ns, "bonjour"))
	captured := githubPush(t, hookSecret, "d-replay-1", first, second, "apps/web/config.yaml")
	if code, body := f.send(t, "platform", captured); code != http.StatusAccepted {
		t.Fatalf("push hook: %d %s", code, body)
	}
	real := finalStatus(t, forge, second, "ferry/web")
	if real.State != "success" || !strings.HasPrefix(real.Description, "applied ") {
		t.Fatalf("push: %+v", real)
	}

	// The push of the first commit, replayed with a new delivery id.
	old := githubPush(t, hookSecret, "d-replay-old", "0000000000000000000000000000000000000000", first, "apps/web/config.yaml")
	if code, body := f.send(t, "platform", old); code != http.StatusAccepted {
		t.Fatalf("replayed hook: %d %s", code, body)
	}
	if _, err := forge.WaitFor(waitCtx(t, 60*time.Second), first, "ferry/web", func(s forgefake.Status) bool {
		return s.Description == "included in "+second[:7]
	}); err != nil {
		t.Fatal(err)
	}
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "web-settings", metav1.GetOptions{})
	if err != nil || cm.Data["greeting"] != "bonjour" {
		t.Fatalf("after the replay the ConfigMap is %v %v, want the newer commit's bonjour", cm.Data, err)
	}

	// A flood of replays of the real push, each with a new delivery id.
	flood := queue.HistoryLength + 5
	for i := range flood {
		h := captured
		h.headers = map[string]string{}
		for k, v := range captured.headers {
			h.headers[k] = v
		}
		h.headers["X-GitHub-Delivery"] = fmt.Sprintf("d-flood-%d", i)
		if code, body := f.send(t, "platform", h); code != http.StatusAccepted {
			t.Fatalf("flood hook %d: %d %s", i, code, body)
		}
	}
	assertAllFinal(t, forge)
	id := syncID(real)
	var rec queue.Record
	if code := f.getJSON(t, "/api/v1/syncs/"+id, &rec); code != http.StatusOK || !rec.Evicted || rec.State != queue.StateSucceeded || rec.SHA != second {
		t.Fatalf("the real push's sync after %d replays: %d %+v, want its evicted account", flood, code, rec)
	}
	resp, err := http.Get(f.URL + "/syncs/" + id)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "fell off the app's history") || !strings.Contains(string(page), real.Description) {
		t.Errorf("the real push's status link: %d\n%s", resp.StatusCode, page)
	}
}

// bigConfigMap is a ConfigMap of n keys whose values are 150 bytes of fill: a change of fill
// changes every key, so a preview's diff has n lines of some 350 bytes.
func bigConfigMap(n int, fill string) string {
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n")
	for i := range n {
		fmt.Fprintf(&b, "  k%05d: %q\n", i, strings.Repeat(fill, 150))
	}
	return b.String()
}

// TestLargePreviewIsKept: a preview whose diff is far over what one NATS message holds ends with
// its final status and a stored record, the diff cut there with a note, and the whole diff on the
// sync's page.
func TestLargePreviewIsKept(t *testing.T) {
	ns := "e2e-bigdiff"
	git := gitserver.New(t)
	repo := git.CreateRepo(t, "acme/platform")
	files := webApp(ns, "hello")
	files["apps/web/big.yaml"] = bigConfigMap(5000, "a")
	base := repo.Commit(t, "main", "web: big", files)
	forge := forgefake.New(t, forgeToken)
	f := startFerry(t, config("github", repo.CloneURL(), forge.URL(), ns), ferryEnv, "")
	if last := finalStatus(t, forge, base, "ferry/web"); last.State != "success" {
		t.Fatalf("base sync: %+v", last)
	}
	head := repo.Commit(t, "feature", "web: every key changes", map[string]string{"apps/web/big.yaml": bigConfigMap(5000, "b")})
	repo.PushRef(t, "refs/pull/9/head", head)
	if code, body := f.send(t, "platform", githubPR(t, "d-pr-9", 9, head, base)); code != http.StatusAccepted {
		t.Fatalf("pull_request hook: %d %s", code, body)
	}
	last := finalStatus(t, forge, head, "ferry/web/preview")
	if last.State != "success" || !strings.HasPrefix(last.Description, "1 changed") {
		t.Fatalf("preview status %+v", last)
	}
	id := syncID(last)
	var rec queue.Record
	if code := f.getJSON(t, "/api/v1/syncs/"+id, &rec); code != http.StatusOK || rec.State != queue.StateSucceeded || !rec.DiffCut || len(rec.Diff) > queue.MaxRecordBytes {
		t.Fatalf("preview record: %d state %s diffCut %v diff %d bytes", code, rec.State, rec.DiffCut, len(rec.Diff))
	}
	resp, err := http.Get(f.URL + "/syncs/" + id + "/diff")
	if err != nil {
		t.Fatal(err)
	}
	whole, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(whole) < 1<<20 || !strings.Contains(string(whole), "/data/k04999") {
		t.Errorf("whole diff: %d, %d bytes", resp.StatusCode, len(whole))
	}
	assertAllFinal(t, forge)
}

// TestJobThatEndsTheProcessIsStopped: a job whose every delivery ends the process (here the
// test kills ferry while it runs, as an out-of-memory kill would) is failed for good after
// MaxInterrupted such deliveries, with a status and record saying so, instead of being
// delivered into every restart.
func TestJobThatEndsTheProcessIsStopped(t *testing.T) {
	ns := "e2e-crashloop"
	cs := kube(t)
	ensureNamespace(t, cs, ns)
	git := gitserver.New(t)
	repo := git.CreateRepo(t, "acme/platform")
	first := repo.Commit(t, "main", "slow: first", gatedApp("one", false))
	forge := forgefake.New(t, forgeToken)
	cfg := appsConfig(repo.CloneURL(), forge.URL(), "1h", e2eApp{name: "slow", path: "apps/slow", ns: ns, timeout: "4m"})
	dataDir := t.TempDir()
	f := startFerry(t, cfg, ferryEnv, dataDir)
	if last := finalStatus(t, forge, first, "ferry/slow"); last.State != "success" {
		t.Fatalf("start-up sync: %+v", last)
	}
	second := repo.Commit(t, "main", "slow: gated", gatedApp("two", true))
	if code, body := f.send(t, "platform", githubPush(t, hookSecret, "d-crash-2", first, second, "apps/slow/pod.yaml")); code != http.StatusAccepted {
		t.Fatalf("push hook: %d %s", code, body)
	}
	var job string
	for attempt := 1; attempt <= 3; attempt++ {
		r := waitRecord(t, f, "slow", 150*time.Second, fmt.Sprintf("running %s at attempt %d", short7(second), attempt), func(r queue.Record) bool {
			return r.SHA == second && r.Trigger == queue.TriggerPush && r.State == queue.StateRunning && r.Attempts >= attempt
		})
		job = r.ID
		waitPod(t, cs, ns, "gate")
		f.kill(t)
		f = startFerry(t, cfg, ferryEnv, dataDir)
	}
	last := finalStatus(t, forge, second, "ferry/slow")
	if last.State != "failure" || last.Description != fmt.Sprintf("stopped after %d attempts that ended the process", 3) || syncID(last) != job {
		t.Fatalf("final status %+v of sync %s, want the crash loop stopped", last, job)
	}
	var rec queue.Record
	if code := f.getJSON(t, "/api/v1/syncs/"+job, &rec); code != http.StatusOK || rec.State != queue.StateFailed || rec.Interrupted != 3 {
		t.Errorf("record %d %+v", code, rec)
	}
	assertAllFinal(t, forge)
}

// TestFetchBound: a push carrying a large file outside every app costs ferry no more than its
// fetch bound (here maxFetchMiB: 1): the sync fails at once naming the bound, and nothing of the
// commit is applied.
func TestFetchBound(t *testing.T) {
	ns := "e2e-fetch-bound"
	git := gitserver.New(t)
	repo := git.CreateRepo(t, "acme/platform")
	first := repo.Commit(t, "main", "web: first", webApp(ns, "hello"))
	forge := forgefake.New(t, forgeToken)
	f := startFerry(t, "maxFetchMiB: 1\n"+config("github", repo.CloneURL(), forge.URL(), ns), ferryEnv, "")
	if last := finalStatus(t, forge, first, "ferry/web"); last.State != "success" {
		t.Fatalf("start-up sync: %+v", last)
	}
	// 3 MiB that do not compress, outside the app.
	noise := make([]byte, 3<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range noise {
		noise[i] = byte(rng.Uint32())
	}
	files := webApp(ns, "bonjour")
	files["assets/blob.bin"] = base64.StdEncoding.EncodeToString(noise)
	second := repo.Commit(t, "main", "web: with a large asset", files)
	if code, body := f.send(t, "platform", githubPush(t, hookSecret, "d-fetch-2", first, second, "apps/web/config.yaml", "assets/blob.bin")); code != http.StatusAccepted {
		t.Fatalf("push hook: %d %s", code, body)
	}
	last := finalStatus(t, forge, second, "ferry/web")
	if last.State != "failure" || !strings.Contains(last.Description, "MaxFetchBytes (1024 KiB)") {
		t.Fatalf("final status %+v, want a failure naming the fetch bound", last)
	}
	cm, err := kube(t).CoreV1().ConfigMaps(ns).Get(t.Context(), "web-settings", metav1.GetOptions{})
	if err != nil || cm.Data["greeting"] != "hello" {
		t.Errorf("ConfigMap %v %v, want the first commit's", cm.Data, err)
	}
	assertAllFinal(t, forge)
}
