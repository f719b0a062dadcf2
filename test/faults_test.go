package test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/test/cluster"
	"github.com/ferrygitops/ferry/test/forgefake"
	"github.com/ferrygitops/ferry/test/gitserver"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestKillReplicaMidSync kills, with SIGKILL, the ferry replica that is running a sync while
// it waits for the app's health; the other replica, sharing the same NATS server, must take
// the job over once JetStream redelivers it, finish it and post the final status, once. Before
// the kill, the sync outlives the ack wait without being handed to the other replica.
func TestKillReplicaMidSync(t *testing.T) {
	ns := "e2e-kill"
	cs := kube(t)
	ensureNamespace(t, cs, ns)
	git := gitserver.New(t)
	repo := git.CreateRepo(t, "acme/platform")
	first := repo.Commit(t, "main", "slow: first", gatedApp("one", false))
	forge := forgefake.New(t, forgeToken)
	nats := startNATS(t)
	cfg := appsConfig(repo.CloneURL(), forge.URL(), "1h", e2eApp{name: "slow", path: "apps/slow", ns: ns, timeout: "4m"})
	replicas := map[string]*ferry{
		"replica-a": startFerry(t, cfg, ferryEnv, "", "--nats-url", nats.URL(), "--worker-name", "replica-a"),
		"replica-b": startFerry(t, cfg, ferryEnv, "", "--nats-url", nats.URL(), "--worker-name", "replica-b"),
	}
	a := replicas["replica-a"]
	if last := finalStatus(t, forge, first, "ferry/slow"); last.State != "success" {
		t.Fatalf("start-up sync: %+v", last)
	}

	second := repo.Commit(t, "main", "slow: add the gated pod", gatedApp("two", true))
	if code, body := a.send(t, "platform", githubPush(t, hookSecret, "d-kill-2", first, second, "apps/slow/pod.yaml")); code != http.StatusAccepted {
		t.Fatalf("push hook: %d %s", code, body)
	}
	running := waitRecord(t, a, "slow", 90*time.Second, "running "+short7(second), func(r queue.Record) bool {
		return r.SHA == second && r.State == queue.StateRunning
	})
	waitPod(t, cs, ns, "gate") // the sync is past its apply, waiting for the Pod's health
	victim, ok := replicas[running.Worker]
	if !ok {
		t.Fatalf("sync %s runs on %q, not on a replica of this test", running.ID, running.Worker)
	}
	survivorName := "replica-a"
	if running.Worker == survivorName {
		survivorName = "replica-b"
	}
	survivor := replicas[survivorName]

	// A sync outliving the ack wait keeps its job: the running replica says it is alive, so
	// JetStream does not hand the job to the other one meanwhile.
	time.Sleep(queue.DefaultConsumeOptions().AckWait + 5*time.Second)
	still := waitRecord(t, survivor, "slow", 10*time.Second, "of "+short7(second), func(r queue.Record) bool { return r.ID == running.ID })
	if still.State != queue.StateRunning || still.Worker != running.Worker || still.Attempts != 1 {
		t.Fatalf("after the ack wait the sync is %s on %s at attempt %d, want still running on %s at attempt 1",
			still.State, still.Worker, still.Attempts, running.Worker)
	}
	victim.kill(t)
	t.Logf("killed %s in the middle of sync %s", running.Worker, running.ID)

	// JetStream redelivers the job once its ack wait passes without a sign of life: within
	// seconds (P7 measures it), bounded here with room for a busy machine.
	waitRecord(t, survivor, "slow", 45*time.Second, "taken over by "+survivorName, func(r queue.Record) bool {
		return r.ID == running.ID && r.Worker == survivorName && r.State == queue.StateRunning && r.Attempts >= 2
	})
	if got := terminalStates(forge, second, "ferry/slow"); len(got) != 0 {
		t.Fatalf("terminal statuses %v before the Pod became ready", got)
	}
	markPodReady(t, cs, ns, "gate")
	last := finalStatus(t, forge, second, "ferry/slow")
	if last.State != "success" || !strings.HasPrefix(last.Description, "applied ") {
		t.Fatalf("final status %+v, want success \"applied …\"", last)
	}
	time.Sleep(2 * time.Second) // a duplicate run, were there one, would have reported by now
	if got := terminalStates(forge, second, "ferry/slow"); got["success"] != 1 || len(got) != 1 {
		t.Errorf("terminal statuses on the commit %v, want exactly one success", got)
	}
	var recs []queue.Record
	for _, r := range survivor.history(t, "slow") {
		if r.SHA == second {
			recs = append(recs, r)
		}
	}
	if len(recs) != 1 || recs[0].State != queue.StateSucceeded || recs[0].Worker != survivorName || recs[0].Attempts != 2 {
		t.Errorf("records of the commit %s, want one succeeded by %s at attempt 2", describeRecords(recs), survivorName)
	}
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "slow-settings", metav1.GetOptions{})
	if err != nil || cm.Data["value"] != "two" {
		t.Errorf("ConfigMap %v %v, want value two", cm.Data, err)
	}
	assertAllFinal(t, forge)
}

// hookResult is one delivery's answer in a stream of hooks.
type hookResult struct {
	sha  string
	code int
	body string
}

// TestNATSRestartUnderHooks stops the NATS server while hooks keep coming, then starts it
// again: every hook is answered 202 or 503, /readyz fails meanwhile, ferry reconnects by itself,
// and every commit whose hook got 202 ends with a final status, the app at the newest one.
func TestNATSRestartUnderHooks(t *testing.T) {
	ns := "e2e-nats-restart"
	cs := kube(t)
	git := gitserver.New(t)
	repo := git.CreateRepo(t, "acme/platform")
	first := repo.Commit(t, "main", "web: first", webApp(ns, "v0"))
	forge := forgefake.New(t, forgeToken)
	nats := startNATS(t)
	f := startFerry(t, appsConfig(repo.CloneURL(), forge.URL(), "1h", e2eApp{name: "web", path: "apps/web", ns: ns}), ferryEnv, "", "--nats-url", nats.URL())
	if last := finalStatus(t, forge, first, "ferry/web"); last.State != "success" {
		t.Fatalf("start-up sync: %+v", last)
	}

	// The commits are all on the Git host up front; their hooks come one after another, before,
	// during and after the outage.
	const total = 16
	shas := make([]string, total)
	for i := range shas {
		shas[i] = repo.Commit(t, "main", fmt.Sprintf("web: v%d", i+1), webApp(ns, fmt.Sprintf("v%d", i+1)))
	}
	var (
		mu      sync.Mutex
		results []hookResult
		phase   = make(chan struct{}) // closed when the outage is over
	)
	sendOne := func(i int) {
		before := first
		if i > 0 {
			before = shas[i-1]
		}
		code, body := f.send(t, "platform", githubPush(t, hookSecret, fmt.Sprintf("d-nats-%d", i), before, shas[i], "apps/web/config.yaml"))
		mu.Lock()
		results = append(results, hookResult{sha: shas[i], code: code, body: body})
		mu.Unlock()
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		// One hook every 300 ms until the outage is over, keeping the last four for after it.
		for i := range total {
			if i == total-4 {
				<-phase
			}
			sendOne(i)
			select {
			case <-phase:
			case <-time.After(300 * time.Millisecond):
			}
		}
	})
	time.Sleep(1500 * time.Millisecond)
	nats.Stop(t)
	down := time.Now()
	notReady := false
	for time.Since(down) < 8*time.Second {
		if code := f.readyz(); code != http.StatusOK {
			notReady = true
		}
		time.Sleep(500 * time.Millisecond)
	}
	nats.Restart(t)
	deadline := time.Now().Add(60 * time.Second)
	for f.readyz() != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("ferry not ready 60s after NATS came back")
		}
		time.Sleep(250 * time.Millisecond)
	}
	close(phase)
	wg.Wait()
	if !notReady {
		t.Error("/readyz answered 200 throughout the NATS outage")
	}

	var accepted, refused []string
	for _, r := range results {
		switch r.code {
		case http.StatusAccepted:
			accepted = append(accepted, r.sha)
		case http.StatusServiceUnavailable:
			refused = append(refused, r.sha)
		default:
			t.Errorf("hook for %s: %d %s, want 202 or 503", short7(r.sha), r.code, r.body)
		}
	}
	t.Logf("%d hooks: %d accepted, %d refused", len(results), len(accepted), len(refused))
	if len(refused) == 0 {
		t.Error("no hook got 503 while NATS was down")
	}
	if len(accepted) == 0 || accepted[len(accepted)-1] != shas[total-1] {
		t.Fatalf("the hooks sent after NATS came back were not all accepted: %+v", results)
	}
	for _, sha := range accepted {
		last := finalStatus(t, forge, sha, "ferry/web")
		if last.State != "success" {
			t.Errorf("commit %s: final status %+v, want success (applied or included in a newer commit)", short7(sha), last)
		}
	}
	if last := finalStatus(t, forge, shas[total-1], "ferry/web"); !strings.HasPrefix(last.Description, "applied ") {
		t.Errorf("newest commit: %+v, want it applied", last)
	}
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "web-settings", metav1.GetOptions{})
	if want := fmt.Sprintf("v%d", total); err != nil || cm.Data["greeting"] != want {
		t.Errorf("ConfigMap %v %v, want greeting %s", cm.Data, err, want)
	}
	assertAllFinal(t, forge)
}

// TestAPIServerStoppedDuringSync stops the kube-apiserver for 10 s while a sync waits for its
// app's health; once it is back the sync must finish as if nothing happened.
func TestAPIServerStoppedDuringSync(t *testing.T) {
	ns := "e2e-apiserver-down"
	cs := kube(t)
	ensureNamespace(t, cs, ns)
	git := gitserver.New(t)
	repo := git.CreateRepo(t, "acme/platform")
	first := repo.Commit(t, "main", "slow: first", gatedApp("one", false))
	forge := forgefake.New(t, forgeToken)
	f := startFerry(t, appsConfig(repo.CloneURL(), forge.URL(), "1h", e2eApp{name: "slow", path: "apps/slow", ns: ns, timeout: "3m"}), ferryEnv, "")
	if last := finalStatus(t, forge, first, "ferry/slow"); last.State != "success" {
		t.Fatalf("start-up sync: %+v", last)
	}
	second := repo.Commit(t, "main", "slow: add the gated pod", gatedApp("two", true))
	if code, body := f.send(t, "platform", githubPush(t, hookSecret, "d-api-2", first, second, "apps/slow/pod.yaml")); code != http.StatusAccepted {
		t.Fatalf("push hook: %d %s", code, body)
	}
	waitRecord(t, f, "slow", 90*time.Second, "running "+short7(second), func(r queue.Record) bool {
		return r.SHA == second && r.State == queue.StateRunning
	})
	waitPod(t, cs, ns, "gate")

	c := cluster.Shared(t)
	if err := c.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	// Whatever happens below, the next tests get their apiserver back.
	t.Cleanup(func() {
		if err := c.StartAPIServer(t.Context()); err != nil {
			t.Errorf("restart apiserver: %v", err)
		}
	})
	time.Sleep(10 * time.Second)
	if err := c.StartAPIServer(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := terminalStates(forge, second, "ferry/slow"); len(got) != 0 {
		t.Errorf("terminal statuses %v while the apiserver was away, want none yet", got)
	}
	markPodReady(t, cs, ns, "gate")
	last := finalStatus(t, forge, second, "ferry/slow")
	if last.State != "success" {
		t.Fatalf("final status %+v, want success once the apiserver is back and the Pod ready", last)
	}
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "slow-settings", metav1.GetOptions{})
	if err != nil || cm.Data["value"] != "two" {
		t.Errorf("ConfigMap %v %v, want value two", cm.Data, err)
	}
	assertAllFinal(t, forge)
}

// TestSelfHealRestoresDrift deletes an object of an app that asks for self-healing: a later
// poll must put it back as Git says, with no hook and no new commit.
func TestSelfHealRestoresDrift(t *testing.T) {
	ns := "e2e-self-heal"
	cs := kube(t)
	git := gitserver.New(t)
	repo := git.CreateRepo(t, "acme/platform")
	first := repo.Commit(t, "main", "web: first", webApp(ns, "healed"))
	forge := forgefake.New(t, forgeToken)
	startFerry(t, appsConfig(repo.CloneURL(), forge.URL(), "2s", e2eApp{name: "web", path: "apps/web", ns: ns, selfHeal: true}), ferryEnv, "")
	if last := finalStatus(t, forge, first, "ferry/web"); last.State != "success" {
		t.Fatalf("start-up sync: %+v", last)
	}
	// Let a few polls pass first, so that the correction below is not the first one after start.
	time.Sleep(5 * time.Second)
	if err := cs.CoreV1().ConfigMaps(ns).Delete(t.Context(), "web-settings", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		cm, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "web-settings", metav1.GetOptions{})
		if err == nil && cm.Data["greeting"] == "healed" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the deleted ConfigMap was not put back within 60s: %v", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	assertAllFinal(t, forge)
}
