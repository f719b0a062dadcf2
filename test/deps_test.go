package test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/test/forgefake"
	"github.com/ferrygitops/ferry/test/gitserver"
)

// chainApp is one app of the a ← b ← c chain: a ConfigMap in its own namespace.
func chainApp(name, ns, value string) map[string]string {
	return map[string]string{
		"apps/" + name + "/ns.yaml": fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n", ns),
		"apps/" + name + "/cm.yaml": fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s-settings\ndata:\n  value: %q\n", name, value),
	}
}

const chainConfig = `externalURL: http://ferry.e2e.invalid
repos:
  - name: chain
    url: %s
    provider: github
    branch: main
    webhookSecret: {env: HOOK_SECRET}
    token: {env: FORGE_TOKEN}
    apiURL: %s
    interval: 1h
apps:
  - {name: c, repo: chain, path: apps/c, namespace: e2e-chain-c, dependsOn: [b]}
  - {name: b, repo: chain, path: apps/b, namespace: e2e-chain-b, dependsOn: [a]}
  - {name: a, repo: chain, path: apps/a, namespace: e2e-chain-a}
apiTokens: [{env: API_TOKEN}]
`

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

func TestDependencyOrder(t *testing.T) {
	git := gitserver.New(t)
	repo := git.CreateRepo(t, "acme/chain")
	files := func(v string) map[string]string {
		return merge(chainApp("a", "e2e-chain-a", v), chainApp("b", "e2e-chain-b", v), chainApp("c", "e2e-chain-c", v))
	}
	first := repo.Commit(t, "main", "chain: first", files("1"))
	forge := forgefake.New(t, forgeToken)
	f := startFerry(t, fmt.Sprintf(chainConfig, repo.CloneURL(), forge.URL()), ferryEnv, "")
	for _, app := range []string{"a", "b", "c"} {
		if st := waitFinal(t, forge, first, "ferry/"+app); st[len(st)-1].State != "success" {
			t.Fatalf("start-up sync of %s: %+v", app, st[len(st)-1])
		}
	}

	// One push touching a: a, then b, then c, each after the one it depends on finished.
	second := repo.Commit(t, "main", "chain: a changes", merge(files("1"), chainApp("a", "e2e-chain-a", "2")))
	code, body := f.send(t, "chain", githubPush(t, hookSecret, "d-chain-2", first, second, "apps/a/cm.yaml"))
	if code != http.StatusAccepted || !contains(body, `"app":"a"`, `"app":"b"`, `"app":"c"`) {
		t.Fatalf("push: %d %s (want jobs for a and its dependents b and c)", code, body)
	}
	recs := map[string]queue.Record{}
	for _, app := range []string{"a", "b", "c"} {
		if st := waitFinal(t, forge, second, "ferry/"+app); st[len(st)-1].State != "success" {
			t.Fatalf("%s: %+v", app, st[len(st)-1])
		}
		for _, r := range f.history(t, app) {
			if r.SHA == second {
				recs[app] = r
			}
		}
	}
	for _, pair := range [][2]string{{"a", "b"}, {"b", "c"}} {
		dep, dependent := recs[pair[0]], recs[pair[1]]
		if dep.FinishedAt == nil || dependent.StartedAt == nil || dependent.StartedAt.Before(*dep.FinishedAt) {
			t.Errorf("%s started at %v, before %s finished at %v", pair[1], dependent.StartedAt, pair[0], dep.FinishedAt)
		}
	}

	// a fails: b and c end in failure saying so, not pending.
	broken := merge(files("1"), map[string]string{"apps/a/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: A_Bad_Name\ndata: {}\n"})
	third := repo.Commit(t, "main", "chain: a breaks", broken)
	if code, body := f.send(t, "chain", githubPush(t, hookSecret, "d-chain-3", second, third, "apps/a/cm.yaml")); code != http.StatusAccepted {
		t.Fatalf("push: %d %s", code, body)
	}
	if st := waitFinal(t, forge, third, "ferry/a"); st[len(st)-1].State != "failure" {
		t.Fatalf("a with an invalid object: %+v", st[len(st)-1])
	}
	for _, app := range []string{"b", "c"} {
		st := waitFinal(t, forge, third, "ferry/"+app)
		last := st[len(st)-1]
		want := map[string]string{"b": "dependency a failed", "c": "dependency b failed"}[app]
		if last.State != "failure" || !strings.Contains(last.Description, want) {
			t.Errorf("%s: %+v, want failure %q", app, last, want)
		}
	}
	assertAllFinal(t, forge)
}
