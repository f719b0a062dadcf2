package handlers

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ferrygitops/ferry/queue"
)

func TestMatchGlob(t *testing.T) {
	tests := []struct {
		glob, path string
		want       bool
	}{
		{"apps/api/*.yaml", "apps/api/deploy.yaml", true},
		{"apps/api/*.yaml", "apps/api/base/deploy.yaml", false},
		{"apps/**/*.yaml", "apps/deploy.yaml", true},
		{"apps/**/*.yaml", "apps/api/base/deploy.yaml", true},
		{"apps/**/*.yaml", "apps/api/base/README.md", false},
		{"**", "anything/at/all", true},
		{"**/*.md", "README.md", true},
		{"apps/api/**", "apps/api", true},
		{"apps/api/**", "apps/apix/a", false},
		{"./apps/*/kustomization.yaml", "apps/web/kustomization.yaml", true},
		{"apps/**/**/x", "apps/x", true},
		{"apps/[ab]pi/x", "apps/api/x", true},
		{"apps/[ab]pi/x", "apps/cpi/x", false},
	}
	for _, tt := range tests {
		if got := matchGlob(tt.glob, tt.path); got != tt.want {
			t.Errorf("matchGlob(%q, %q) = %v, want %v", tt.glob, tt.path, got, tt.want)
		}
	}
}

func TestTouchedBy(t *testing.T) {
	tests := []struct {
		name    string
		app     App
		changed []string
		want    bool
	}{
		{"under path", App{Path: "apps/api"}, []string{"apps/api/deploy.yaml"}, true},
		{"sibling with same prefix", App{Path: "apps/api"}, []string{"apps/api-gateway/deploy.yaml"}, false},
		{"path spelled with slashes", App{Path: "./apps/api/"}, []string{"apps/api/x.yaml"}, true},
		{"root app", App{Path: "."}, []string{"README.md"}, true},
		{"excluded", App{Path: "apps/api", Exclude: []string{"apps/api/**/*.md"}}, []string{"apps/api/docs/notes.md"}, false},
		{"one of two excluded", App{Path: "apps/api", Exclude: []string{"**/*.md"}}, []string{"apps/api/a.md", "apps/api/b.yaml"}, true},
		{"include narrows", App{Path: "apps/api", Include: []string{"apps/api/overlays/prod/**"}}, []string{"apps/api/overlays/dev/x.yaml"}, false},
		{"include matches", App{Path: "apps/api", Include: []string{"apps/api/overlays/prod/**"}}, []string{"apps/api/overlays/prod/x.yaml"}, true},
		{"include outside path does not widen", App{Path: "apps/api", Include: []string{"base/**"}}, []string{"base/x.yaml"}, false},
		{"nothing changed", App{Path: "apps/api"}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := &appNode{App: tt.app, dir: cleanDir(tt.app.Path)}
			if got := n.touchedBy(tt.changed); got != tt.want {
				t.Errorf("touchedBy(%q) = %v, want %v", tt.changed, got, tt.want)
			}
		})
	}
}

// TestDependencyOrder checks that jobs come out with every app after those it depends on,
// whatever order the configuration lists them in.
func TestDependencyOrder(t *testing.T) {
	g := newGraph([]Repo{{Name: "r", Apps: []App{
		{Name: "web", Path: "web", DependsOn: []string{"api"}},
		{Name: "api", Path: "api", DependsOn: []string{"db", "cache"}},
		{Name: "cache", Path: "cache"},
		{Name: "db", Path: "db"},
		{Name: "cron", Path: "cron", DependsOn: []string{"db"}},
	}}})
	var got []string
	for _, n := range g.forPush("r", []string{"db/x.yaml"}, false).apps {
		got = append(got, n.Name)
	}
	if diff := cmp.Diff([]string{"db", "api", "web", "cron"}, got); diff != "" {
		t.Errorf("apps selected by a db change (-want +got):\n%s", diff)
	}
	got = nil
	for _, n := range g.ofRepo("r") {
		got = append(got, n.Name)
	}
	if diff := cmp.Diff([]string{"cache", "db", "api", "web", "cron"}, got); diff != "" {
		t.Errorf("all apps (-want +got):\n%s", diff)
	}
}

// TestGraphPanicsOnCycle: the config loader refuses dependsOn cycles, so routing takes none;
// if one slipped through, start-up stops loudly instead of leaving syncs waiting forever.
func TestGraphPanicsOnCycle(t *testing.T) {
	defer func() {
		msg, _ := recover().(string)
		if !strings.Contains(msg, "apps a, b wait on a dependsOn cycle") {
			t.Errorf("panic = %q, want one naming the apps of the cycle", msg)
		}
	}()
	newGraph([]Repo{{Name: "r", Apps: []App{
		{Name: "a", Path: "a", DependsOn: []string{"b"}},
		{Name: "b", Path: "b", DependsOn: []string{"a"}},
		{Name: "c", Path: "c"},
	}}})
}

// TestHooksRouteRecordedInputs: a push that only changes a shared base outside every app's path
// syncs the apps whose last deploy rendered from it, once the workers recorded that, with their
// dependents; exclude globs still apply, and forgetting the inputs routes by path alone again.
func TestHooksRouteRecordedInputs(t *testing.T) {
	ghPush := readTestdata(t, "github/push.json")
	baseOnly := patchJSON(t, ghPush, func(m map[string]any) {
		m["commits"] = []any{map[string]any{"id": ghPushAfter, "added": []any{}, "removed": []any{}, "modified": []any{"common/base/deploy.yaml"}}}
	})
	docsOnly := patchJSON(t, ghPush, func(m map[string]any) {
		m["commits"] = []any{map[string]any{"id": ghPushAfter, "added": []any{"common/base/README.md"}, "removed": []any{}, "modified": []any{}}}
	})
	hh := newHarness(t, testRepos("github", githubSecret))
	send := func(body []byte) (int, []string) {
		t.Helper()
		n := len(hh.queue.calls)
		rec := hh.post(t, "platform", githubHeaders("push", fmt.Sprintf("d-%d", n), githubSecret, body), body)
		var apps []string
		if len(hh.queue.calls) > n {
			for _, j := range hh.queue.calls[n] {
				apps = append(apps, j.App)
			}
		}
		return rec.Code, apps
	}
	if code, apps := send(baseOnly); code != http.StatusOK || apps != nil {
		t.Fatalf("before any inputs are known: status %d, apps %v; want 200 and none", code, apps)
	}
	hh.hooks.SetInputs(queue.Inputs{App: "api", SHA: ghPushAfter, Paths: []string{"common/base", "common/replicas.yaml"}})
	hh.hooks.SetInputs(queue.Inputs{App: "nosuchapp", Paths: []string{"."}})
	code, apps := send(baseOnly)
	if code != http.StatusAccepted {
		t.Fatalf("status %d, want 202", code)
	}
	if diff := cmp.Diff([]string{"api", "web"}, apps); diff != "" {
		t.Errorf("apps synced (-want +got):\n%s", diff)
	}
	// api excludes apps/api/**/*.md only; a Markdown file in the base still counts.
	if _, apps := send(docsOnly); !cmp.Equal(apps, []string{"api", "web"}) {
		t.Errorf("README in the base: apps %v, want [api web]", apps)
	}
	hh.hooks.SetInputs(queue.Inputs{App: "api"})
	if code, apps := send(baseOnly); code != http.StatusOK || apps != nil {
		t.Errorf("after the inputs were cleared: status %d, apps %v; want 200 and none", code, apps)
	}
}

// TestTouchedMatchesTouchedBy holds the indexed routing to the definition: on a configuration
// with nested directories, the repository root, inputs, includes and excludes, every push picks
// exactly the apps touchedBy picks.
func TestTouchedMatchesTouchedBy(t *testing.T) {
	apps := []App{
		{Name: "root", Path: "/", Include: []string{"kustomization.yaml"}},
		{Name: "apps", Path: "apps"},
		{Name: "api", Path: "./apps/api/"},
		{Name: "api-docs", Path: "apps/api", Include: []string{"apps/api/**/*.md"}},
		{Name: "web", Path: "apps/web", Exclude: []string{"apps/web/**/*.md"}},
		{Name: "deep", Path: "apps/web/deep"},
		{Name: "shared-user", Path: "svc/one"},
		{Name: "other", Path: "elsewhere"},
	}
	g := newGraph([]Repo{{Name: "r", Apps: apps}, {Name: "s", Apps: []App{{Name: "s-api", Path: "apps/api"}}}})
	g.setInputs(g.byName["shared-user"], []string{"bases/common", "apps/web"})
	g.setInputs(g.byName["other"], []string{"bases/old"})
	g.setInputs(g.byName["other"], []string{""}) // replaces bases/old: the whole repository
	paths := []string{"kustomization.yaml", "apps", "apps/x.yaml", "apps/api", "apps/api/d.yaml", "apps/api/doc/r.md",
		"apps/apix/y.yaml", "apps/web/README.md", "apps/web/deep/z.yaml", "apps/web/deep/n.md", "bases/common/a.yaml",
		"bases/old/b.yaml", "/svc/one/c.yaml", "svc/onex", "apps//api/e.yaml"}
	for i := range paths {
		for j := i; j < len(paths); j++ {
			changed := []string{paths[i], paths[j]}
			var want []string
			for _, n := range g.byRepo["r"] {
				if n.touchedBy(changed) {
					want = append(want, n.Name)
				}
			}
			var got []string
			for _, n := range g.forPush("r", changed, false).apps {
				got = append(got, n.Name)
			}
			if !slices.Equal(got, want) {
				t.Errorf("push changing %q picks %v, touchedBy picks %v", changed, got, want)
			}
		}
	}
	if got := g.byInput["r"]["bases/old"]; len(got) != 0 {
		t.Errorf("replaced input still indexed: %v", got)
	}
}
