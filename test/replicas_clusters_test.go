package test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/syncer/apply"
	"github.com/ferrygitops/ferry/test/forgefake"
	"github.com/ferrygitops/ferry/test/gitserver"
)

const (
	// spreadDefault and spreadEdge are the apps on one cluster only; spreadMatrix are matrix
	// apps with a target on each: 15 apps in all, 8 on default and 7 on edge.
	spreadDefault = 5
	spreadEdge    = 4
	spreadMatrix  = 3
	// spreadEdgeDownWait bounds the wait for an edge app's failure while edge's apiserver is
	// stopped: the sync spends its transient retries first (about two minutes of backoff).
	spreadEdgeDownWait = 4 * time.Minute
	// spreadSendTries bounds the redeliveries of a hook a replica refuses with 503 while it
	// reconnects to NATS, one second apart, as a forge redelivers.
	spreadSendTries = 30
)

// spreadApp is one app ferry deploys: its name (status context ferry/<name>), its directory in
// the repository, and its cluster.
type spreadApp struct{ name, dir, cluster string }

// spreadApps are the apps of spreadConfig: rc-d<i> on default, rc-e<i> on edge (rc-e1 depends
// on rc-d1, across clusters), and rc-m<i>-default and rc-m<i>-edge made by matrix rc-m<i>.
func spreadApps() []spreadApp {
	var out []spreadApp
	for i := 1; i <= spreadDefault; i++ {
		out = append(out, spreadApp{fmt.Sprintf("rc-d%d", i), fmt.Sprintf("d%d", i), "default"})
	}
	for i := 1; i <= spreadEdge; i++ {
		out = append(out, spreadApp{fmt.Sprintf("rc-e%d", i), fmt.Sprintf("e%d", i), "edge"})
	}
	for i := 1; i <= spreadMatrix; i++ {
		for _, cl := range []string{"default", "edge"} {
			out = append(out, spreadApp{fmt.Sprintf("rc-m%d-%s", i, cl), fmt.Sprintf("m%d", i), cl})
		}
	}
	return out
}

// spreadConfig is the config of the apps of spreadApps, in repository spread; every app tells
// its ConfigMap which cluster it is meant for through variable where.
func spreadConfig(cloneURL, apiURL, edgeKubeconfig string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `externalURL: http://ferry.e2e.invalid
repos:
  - name: spread
    url: %s
    provider: github
    branch: main
    webhookSecret: {env: HOOK_SECRET}
    token: {env: FORGE_TOKEN}
    apiURL: %s
    interval: 1h
clusters:
  - {name: edge, kubeconfig: {file: %s}}
apps:
`, cloneURL, apiURL, edgeKubeconfig)
	for i := 1; i <= spreadDefault; i++ {
		fmt.Fprintf(&b, "  - {name: rc-d%d, repo: spread, path: apps/d%d, prune: true, timeout: 60s, substitute: {where: default}}\n", i, i)
	}
	for i := 1; i <= spreadEdge; i++ {
		dep := ""
		if i == 1 {
			dep = ", dependsOn: [rc-d1]"
		}
		fmt.Fprintf(&b, "  - {name: rc-e%d, repo: spread, path: apps/e%d, cluster: edge, prune: true, timeout: 60s, substitute: {where: edge}%s}\n", i, i, dep)
	}
	for i := 1; i <= spreadMatrix; i++ {
		fmt.Fprintf(&b, `  - name: rc-m%d
    repo: spread
    path: apps/m%d
    prune: true
    timeout: 60s
    targets:
      - {cluster: default, substitute: {where: default}}
      - {cluster: edge, substitute: {where: edge}}
`, i, i)
	}
	b.WriteString("apiTokens: [{env: API_TOKEN}]\n")
	return b.String()
}

// spreadFiles are every app directory's manifests at version v: a Namespace e2e-rc-<dir> and
// ConfigMap settings in it, holding v and the cluster the app was configured for.
func spreadFiles(v string) map[string]string {
	files := map[string]string{}
	for _, a := range spreadApps() {
		ns := "e2e-rc-" + a.dir
		files["apps/"+a.dir+"/config.yaml"] = fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n---\n"+
			"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: %s\ndata:\n  version: %q\n  where: ${where}\n", ns, ns, v)
	}
	return files
}

// spreadPaths are the files of spreadFiles: a push changing them touches every app.
func spreadPaths() []string {
	var out []string
	for p := range spreadFiles("") {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// sendAccepted sends a hook to f until it is accepted, redelivering on 503 (a replica that lost
// its NATS node refuses hooks until it reconnects) a bounded number of times.
func sendAccepted(t *testing.T, f *ferry, repo string, h hook) {
	t.Helper()
	for try := 1; ; try++ {
		code, body := f.send(t, repo, h)
		if code == http.StatusAccepted {
			return
		}
		if code != http.StatusServiceUnavailable || try == spreadSendTries {
			t.Fatalf("push to %s (try %d): %d %s", f.URL, try, code, body)
		}
		time.Sleep(time.Second)
	}
}

// recordOf is app's deploy record of sha as f's API shows it, nil if there is none.
func recordOf(t *testing.T, f *ferry, app, sha string) *queue.Record {
	t.Helper()
	for _, r := range f.history(t, app) {
		if r.SHA == sha && r.Kind == queue.KindDeploy {
			return &r
		}
	}
	return nil
}

// TestReplicasOnNATSClusterDeployToTwoClusters runs two ferry replicas on a three-node NATS
// cluster (stream, consumer and records replicated three times), deploying 15 apps of one
// repository over two clusters (two local control planes): apps on one cluster, matrix apps on
// both, and an edge app depending on a default one. Every app's objects land in its own
// cluster only, each app's syncs never overlap whichever replica runs them, and every commit
// ends with a final status per app. Then one NATS node is killed and edge's apiserver stopped:
// default's apps still sync a push, edge's fail naming the cluster, no status is left pending;
// with edge's apiserver back, the next push succeeds everywhere.
func TestReplicasOnNATSClusterDeployToTwoClusters(t *testing.T) {
	edge, remote := startControlPlane(t)
	clients := map[string]kubernetes.Interface{"default": kube(t), "edge": remote}
	other := map[string]string{"default": "edge", "edge": "default"}
	apps := spreadApps()

	git := gitserver.New(t)
	repo := git.CreateRepo(t, "acme/spread")
	first := repo.Commit(t, "main", "every app at 1", spreadFiles("1"))
	forge := forgefake.New(t, forgeToken)
	nodes := startNATSCluster(t, 3)
	cfg := spreadConfig(repo.CloneURL(), forge.URL(), edge.Kubeconfig)
	a := startFerry(t, cfg, ferryEnv, "", "--nats-url", natsURLs(nodes[0], nodes[1], nodes[2]), "--nats-replicas", "3", "--worker-name", "replica-a")
	b := startFerry(t, cfg, ferryEnv, "", "--nats-url", natsURLs(nodes[2], nodes[1], nodes[0]), "--nats-replicas", "3", "--worker-name", "replica-b")

	// want checks that every app in clusters holds version v, with its own cluster's name.
	want := func(when, v string, clusters ...string) {
		t.Helper()
		for _, app := range apps {
			if !slices.Contains(clusters, app.cluster) {
				continue
			}
			if d := clusterData(t, clients[app.cluster], "e2e-rc-"+app.dir, "settings"); d["version"] != v || d["where"] != app.cluster {
				t.Errorf("%s: %s in cluster %s holds %v, want version %s for %s", when, app.name, app.cluster, d, v, app.cluster)
			}
		}
	}
	// finals waits for the final status of every app in clusters on sha and checks its state
	// and description (a substring), and, for a push, that the app's first status there was
	// pending (a start-up sync posts only its result).
	finals := func(when, sha, state, desc string, within time.Duration, clusters ...string) {
		t.Helper()
		for _, app := range apps {
			if !slices.Contains(clusters, app.cluster) {
				continue
			}
			st := waitFinalWithin(t, forge, sha, "ferry/"+app.name, within)
			if last := st[len(st)-1]; last.State != state || !strings.Contains(last.Description, desc) {
				t.Errorf("%s: %s ends with %s %q, want %s %q", when, app.name, last.State, last.Description, state, desc)
			}
			if sha != first && st[0].State != "pending" {
				t.Errorf("%s: the first status of %s is %+v, want pending", when, app.name, st[0])
			}
		}
	}
	// dependencyWaited checks that rc-e1, on edge, started sha's sync after rc-d1, on default,
	// finished its own.
	dependencyWaited := func(when, sha string) {
		t.Helper()
		dep, app := recordOf(t, a, "rc-d1", sha), recordOf(t, a, "rc-e1", sha)
		if dep == nil || app == nil || dep.FinishedAt == nil || app.StartedAt == nil || app.StartedAt.Before(*dep.FinishedAt) {
			t.Errorf("%s: rc-e1 did not wait for rc-d1 across clusters: rc-d1 %+v, rc-e1 %+v", when, dep, app)
		}
	}

	// Start-up: every app in its own cluster, and not in the other; inventories likewise.
	finals("start-up", first, "success", "applied", 90*time.Second, "default", "edge")
	want("start-up", "1", "default", "edge")
	for _, app := range apps {
		if strings.HasPrefix(app.dir, "m") {
			continue // a matrix app is in both clusters, each with its own value (checked above)
		}
		if d := clusterData(t, clients[other[app.cluster]], "e2e-rc-"+app.dir, "settings"); d != nil {
			t.Errorf("start-up: %s (cluster %s) also in cluster %s: %v", app.name, app.cluster, other[app.cluster], d)
		}
	}
	for _, app := range apps {
		inv := apply.InventoryPrefix + app.name
		if clusterData(t, clients[app.cluster], apply.DefaultInventoryNamespace, inv) == nil {
			t.Errorf("no inventory of %s in its cluster %s", app.name, app.cluster)
		}
		if clusterData(t, clients[other[app.cluster]], apply.DefaultInventoryNamespace, inv) != nil {
			t.Errorf("an inventory of %s (cluster %s) in cluster %s", app.name, app.cluster, other[app.cluster])
		}
	}
	dependencyWaited("start-up", first)

	// A push touching every app, to replica b.
	second := repo.Commit(t, "main", "every app at 2", spreadFiles("2"))
	sendAccepted(t, b, "spread", githubPush(t, hookSecret, "d-rc-2", first, second, spreadPaths()...))
	finals("push 2", second, "success", "applied", 90*time.Second, "default", "edge")
	want("push 2", "2", "default", "edge")
	dependencyWaited("push 2", second)

	// NATS node n1, replica a's first, is killed; edge's apiserver stops; a push touching every
	// app goes to replica a.
	nodes[0].Kill(t)
	if err := edge.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	third := repo.Commit(t, "main", "every app at 3", spreadFiles("3"))
	sendAccepted(t, a, "spread", githubPush(t, hookSecret, "d-rc-3", second, third, spreadPaths()...))
	finals("push 3, edge down", third, "success", "applied", 90*time.Second, "default")
	want("push 3, edge down", "3", "default")
	for _, f := range []*ferry{a, b} {
		down := waitReachable(t, f, "edge", false)
		if msg, _ := down["lastError"].(string); !strings.Contains(msg, "connection refused") {
			t.Errorf("edge's last error on %s: %+v", f.URL, down)
		}
		if code := f.readyz(); code != http.StatusOK {
			t.Errorf("/readyz of %s while edge is down and a NATS node is dead: %d", f.URL, code)
		}
	}
	finals("push 3, edge down", third, "failure", "cluster edge unreachable", spreadEdgeDownWait, "edge")
	assertAllFinal(t, forge)

	// edge's apiserver is back: a push touching every app succeeds on both clusters.
	if err := edge.StartAPIServer(waitCtx(t, 3*time.Minute)); err != nil {
		t.Fatal(err)
	}
	waitReachable(t, a, "edge", true)
	waitReachable(t, b, "edge", true)
	fourth := repo.Commit(t, "main", "every app at 4", spreadFiles("4"))
	sendAccepted(t, a, "spread", githubPush(t, hookSecret, "d-rc-4", third, fourth, spreadPaths()...))
	finals("push 4, edge back", fourth, "success", "applied", 90*time.Second, "default", "edge")
	want("push 4, edge back", "4", "default", "edge")
	dependencyWaited("push 4", fourth)
	assertAllFinal(t, forge)

	// The records, shared by both replicas: all ended, none of an app's syncs overlapped.
	ran := map[string]int{}
	// spread counts the apps whose syncs ran on both replicas: their records' times show the
	// queue kept them apart across processes.
	spread := 0
	for _, app := range apps {
		ha, hb := a.history(t, app.name), b.history(t, app.name)
		if !slices.EqualFunc(ha, hb, func(x, y queue.Record) bool { return x.ID == y.ID && x.State == y.State }) {
			t.Errorf("%s: the replicas disagree on its history:\n%s\n%s", app.name, describeRecords(ha), describeRecords(hb))
		}
		deploys, by := 0, map[string]bool{}
		for _, r := range ha {
			if r.Kind != queue.KindDeploy {
				continue
			}
			deploys++
			if !r.State.Terminal() {
				t.Errorf("%s: sync %s of %s left %s", app.name, r.ID, short7(r.SHA), r.State)
			}
			if r.StartedAt != nil {
				ran[r.Worker]++
				by[r.Worker] = true
			}
		}
		if len(by) > 1 {
			spread++
		}
		if deploys < 4 {
			t.Errorf("%s: %d deploy records, want one per commit: %s", app.name, deploys, describeRecords(ha))
		}
		if what, ok := overlaps(ha); ok {
			t.Errorf("%s had two syncs at once: %s", app.name, what)
		}
	}
	t.Logf("syncs run per replica: %v; %d of %d apps synced by both", ran, spread, len(apps))
	if ran["replica-a"] == 0 || ran["replica-b"] == 0 || len(ran) != 2 || spread == 0 {
		t.Errorf("syncs run per replica: %v, %d apps synced by both; want both replicas (and only them) to run syncs of the same apps", ran, spread)
	}
}
