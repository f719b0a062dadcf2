package test

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/test/forgefake"
	"github.com/ferrygitops/ferry/test/gitserver"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	// scaleApps and scaleRounds make the 200 hooks of TestScaleOutOnNATSCluster: every round
	// changes every app once, one commit per change.
	scaleApps   = 20
	scaleRounds = 10
	// scaleSenders is how many hooks are in flight at once, so that hooks of one app overtake
	// each other as they do when a forge delivers in parallel.
	scaleSenders = 8
	// scaleWait bounds the wait for every commit's final status once the hooks are in.
	scaleWait = 4 * time.Minute
)

// scaleFile is the manifest of app i at value v: one ConfigMap in the shared namespace.
func scaleFile(i int, v string) (string, string) {
	return fmt.Sprintf("apps/a%02d/config.yaml", i),
		fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings-a%02d\ndata:\n  value: %q\n", i, v)
}

// TestScaleOutOnNATSCluster runs two ferry replicas on a three-node NATS cluster (stream and
// records replicated three times) and sends 200 hooks over 20 apps, spread over both replicas
// in a shuffled order: every app must end at its newest commit, every commit must end with a
// truthful final status, no app may ever have had two syncs at once (judged from the records'
// times), and both replicas must answer the API with the same shared records.
func TestScaleOutOnNATSCluster(t *testing.T) {
	ns := "e2e-scale"
	cs := kube(t)
	ensureNamespace(t, cs, ns)
	git := gitserver.New(t)
	repo := git.CreateRepo(t, "acme/platform")
	files := map[string]string{}
	var apps []e2eApp
	for i := range scaleApps {
		name, content := scaleFile(i, "v0")
		files[name] = content
		apps = append(apps, e2eApp{name: fmt.Sprintf("a%02d", i), path: fmt.Sprintf("apps/a%02d", i), ns: ns})
	}
	first := repo.Commit(t, "main", "all apps at v0", files)
	forge := forgefake.New(t, forgeToken)
	nodes := startNATSCluster(t, 3)
	cfg := appsConfig(repo.CloneURL(), forge.URL(), "1h", apps...)
	replicas := []*ferry{
		startFerry(t, cfg, ferryEnv, "", "--nats-url", natsURLs(nodes[0], nodes[1], nodes[2]), "--nats-replicas", "3", "--worker-name", "replica-a"),
		startFerry(t, cfg, ferryEnv, "", "--nats-url", natsURLs(nodes[2], nodes[1], nodes[0]), "--nats-replicas", "3", "--worker-name", "replica-b"),
	}
	for _, a := range apps {
		if last := finalStatus(t, forge, first, "ferry/"+a.name); last.State != "success" {
			t.Fatalf("start-up sync of %s: %+v", a.name, last)
		}
	}

	// 200 commits, each changing one app, made locally and published at once.
	type change struct {
		app          int
		before, sha  string
		value        string
		delivery     string
		touchedPaths []string
	}
	var changes []change
	prev := first
	for r := 1; r <= scaleRounds; r++ {
		for i := range scaleApps {
			v := fmt.Sprintf("v%d", r)
			name, content := scaleFile(i, v)
			sha := repo.CommitLocal(t, "main", fmt.Sprintf("a%02d: %s", i, v), map[string]string{name: content})
			changes = append(changes, change{app: i, before: prev, sha: sha, value: v, delivery: fmt.Sprintf("d-scale-%03d", len(changes)), touchedPaths: []string{name}})
			prev = sha
		}
	}
	repo.Push(t, "main")

	// The hooks go out in a shuffled order (the same every run), so an app's older commits often
	// arrive after its newer ones, to both replicas in turn, scaleSenders at a time.
	order := rand.New(rand.NewPCG(4, 200)).Perm(len(changes))
	next := make(chan int)
	codes := make([]int, len(changes))
	bodies := make([]string, len(changes))
	var wg sync.WaitGroup
	for range scaleSenders {
		wg.Go(func() {
			for k := range next {
				c := changes[k]
				codes[k], bodies[k] = replicas[k%2].send(t, "platform", githubPush(t, hookSecret, c.delivery, c.before, c.sha, c.touchedPaths...))
			}
		})
	}
	for _, k := range order {
		next <- k
	}
	close(next)
	wg.Wait()
	for k, code := range codes {
		if code != http.StatusAccepted {
			t.Fatalf("hook %d (%s): %d %s", k, short7(changes[k].sha), code, bodies[k])
		}
	}

	// Every commit ends with a final status: the newest of each app applied, the others
	// included in a newer one (history is linear, so none is merely superseded).
	newest := map[int]change{}
	for _, c := range changes {
		newest[c.app] = c
	}
	deadline := time.Now().Add(scaleWait)
	for _, c := range changes {
		context := fmt.Sprintf("ferry/a%02d", c.app)
		st, err := forge.WaitFor(waitCtx(t, time.Until(deadline)), c.sha, context, func(s forgefake.Status) bool {
			return s.State != "pending" && s.State != "running"
		})
		if err != nil {
			t.Fatalf("commit %s of a%02d has no final status: %v", short7(c.sha), c.app, err)
		}
		if st.State != "success" {
			t.Errorf("commit %s of a%02d: %+v, want success", short7(c.sha), c.app, st)
		}
	}
	time.Sleep(3 * time.Second) // late notices and stray syncs, were there any, land by now
	for _, c := range changes {
		context := fmt.Sprintf("ferry/a%02d", c.app)
		var last forgefake.Status
		for _, s := range forge.Statuses(c.sha) {
			if s.Context == context {
				last = s
			}
		}
		switch {
		case last.State != "success":
			t.Errorf("commit %s of a%02d ends with %+v, want success", short7(c.sha), c.app, last)
		case c.sha == newest[c.app].sha && !strings.HasPrefix(last.Description, "applied "):
			t.Errorf("newest commit %s of a%02d ends with %q, want it applied", short7(c.sha), c.app, last.Description)
		case c.sha != newest[c.app].sha && !strings.HasPrefix(last.Description, "applied ") && !strings.HasPrefix(last.Description, "included in "):
			t.Errorf("commit %s of a%02d ends with %q, want applied or included in a newer commit", short7(c.sha), c.app, last.Description)
		}
	}

	workers := map[string]int{}
	for i := range scaleApps {
		app := fmt.Sprintf("a%02d", i)
		cm, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "settings-"+app, metav1.GetOptions{})
		if want := fmt.Sprintf("v%d", scaleRounds); err != nil || cm.Data["value"] != want {
			t.Errorf("app %s: ConfigMap %v %v, want value %s", app, cm.Data, err, want)
		}
		ha, hb := replicas[0].history(t, app), replicas[1].history(t, app)
		if !slices.EqualFunc(ha, hb, func(x, y queue.Record) bool { return x.ID == y.ID && x.State == y.State }) {
			t.Errorf("app %s: the replicas disagree on its history:\n%s\n%s", app, describeRecords(ha), describeRecords(hb))
		}
		for _, r := range ha {
			if !r.State.Terminal() {
				t.Errorf("app %s: sync %s of %s left %s", app, r.ID, short7(r.SHA), r.State)
			}
			if r.StartedAt != nil {
				workers[r.Worker]++
			}
		}
		if what, ok := overlaps(ha); ok {
			t.Errorf("app %s had two syncs at once: %s", app, what)
		}
	}
	t.Logf("syncs run per replica: %v", workers)
	assertAllFinal(t, forge)
}
