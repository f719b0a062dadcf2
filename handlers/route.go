package handlers

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"sync/atomic"
)

// appNode is one configured app, normalised once at construction so routing a hook is only
// string comparisons.
type appNode struct {
	App
	repo string
	// dir is App.Path cleaned, without leading or trailing slashes; "" is the whole repository.
	dir string
	// rank orders apps so that every app comes after the apps it depends on.
	rank int
	// inputs are the paths outside dir that the app's last deploy rendered from (kustomize
	// bases and files elsewhere in the repository), as the workers record them; nil until known.
	inputs atomic.Pointer[[]string]
}

// graph is every app the handler knows, across repositories, with the reverse of DependsOn.
type graph struct {
	apps       []*appNode
	byName     map[string]*appNode
	dependents map[string][]*appNode
}

// newGraph indexes the apps of repos and ranks them in dependency order. Its input is
// validated (see NewHooks); an app waiting on a dependsOn cycle or an unknown app, which the
// config loader refuses, panics here rather than leave its syncs waiting on each other.
func newGraph(repos []Repo) *graph {
	g := &graph{byName: map[string]*appNode{}, dependents: map[string][]*appNode{}}
	for _, r := range repos {
		for _, a := range r.Apps {
			n := &appNode{App: a, repo: r.Name, dir: cleanDir(a.Path)}
			g.apps = append(g.apps, n)
			g.byName[a.Name] = n
		}
	}
	for _, n := range g.apps {
		for _, d := range n.DependsOn {
			g.dependents[d] = append(g.dependents[d], n)
		}
	}
	g.rankApps()
	return g
}

// rankApps gives every app a position after all of its dependencies: Kahn's algorithm taking,
// at each step, the ready app listed first in the configuration, so that job order is stable
// and otherwise follows the configuration.
func (g *graph) rankApps() {
	waiting := make(map[*appNode]int, len(g.apps))
	for _, n := range g.apps {
		waiting[n] = len(n.DependsOn)
	}
	for rank := range g.apps {
		i := slices.IndexFunc(g.apps, func(n *appNode) bool { return waiting[n] == 0 })
		if i < 0 {
			var stuck []string
			for _, n := range g.apps {
				if waiting[n] > 0 {
					stuck = append(stuck, n.Name)
				}
			}
			panic(fmt.Sprintf("handlers: apps %s wait on a dependsOn cycle or an unknown app; the config loader lets neither through", strings.Join(stuck, ", ")))
		}
		n := g.apps[i]
		waiting[n] = -1
		n.rank = rank
		for _, d := range g.dependents[n.Name] {
			waiting[d]--
		}
	}
}

// selection is what a push or pull request asks to sync in its own repository, plus the
// dependents that live in other repositories: a hook knows only its own repository's commit,
// so those cannot become jobs here.
type selection struct {
	apps       []*appNode
	otherRepos []string
}

// forPush picks the apps of repo touched by changed, or all of them when the changed paths
// are unknown, then adds every app depending on a picked one, transitively.
func (g *graph) forPush(repo string, changed []string, all bool) selection {
	picked := map[*appNode]bool{}
	var queue []*appNode
	for _, n := range g.apps {
		if n.repo == repo && (all || n.touchedBy(changed)) {
			picked[n] = true
			queue = append(queue, n)
		}
	}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		for _, d := range g.dependents[n.Name] {
			if !picked[d] {
				picked[d] = true
				queue = append(queue, d)
			}
		}
	}
	var s selection
	for n := range picked {
		if n.repo == repo {
			s.apps = append(s.apps, n)
		} else {
			s.otherRepos = append(s.otherRepos, n.Name)
		}
	}
	slices.SortFunc(s.apps, func(a, b *appNode) int { return a.rank - b.rank })
	slices.Sort(s.otherRepos)
	return s
}

// ofRepo is every app of repo in dependency order: what a preview covers, since pull request
// payloads do not list changed paths.
func (g *graph) ofRepo(repo string) []*appNode {
	var out []*appNode
	for _, n := range g.apps {
		if n.repo == repo {
			out = append(out, n)
		}
	}
	slices.SortFunc(out, func(a, b *appNode) int { return a.rank - b.rank })
	return out
}

// touchedBy reports whether any changed path belongs to the app: under its directory or one of
// its recorded inputs, matching
// one of its Include globs when it has any, and matching none of its Exclude globs.
func (n *appNode) touchedBy(changed []string) bool {
	var inputs []string
	if in := n.inputs.Load(); in != nil {
		inputs = *in
	}
	for _, p := range changed {
		p = strings.TrimPrefix(p, "/")
		if !underDir(n.dir, p) && !underAnyDir(inputs, p) {
			continue
		}
		if len(n.Include) > 0 && !matchAny(n.Include, p) {
			continue
		}
		if matchAny(n.Exclude, p) {
			continue
		}
		return true
	}
	return false
}

// cleanDir normalises an app path: "./apps/api/" and "/apps/api" are both "apps/api", and
// "", "." and "/" are the repository root "".
func cleanDir(p string) string {
	return strings.TrimPrefix(path.Clean("/"+p), "/")
}

func underDir(dir, p string) bool {
	return dir == "" || p == dir || strings.HasPrefix(p, dir+"/")
}

func underAnyDir(dirs []string, p string) bool {
	for _, d := range dirs {
		if underDir(d, p) {
			return true
		}
	}
	return false
}

func matchAny(globs []string, p string) bool {
	for _, g := range globs {
		if matchGlob(g, p) {
			return true
		}
	}
	return false
}

// matchGlob matches a slash-separated path against a glob in path.Match syntax per segment,
// where a whole segment "**" matches any number of segments, none included: "apps/**/*.yaml"
// matches apps/a.yaml and apps/x/y/b.yaml. Globs are relative to the repository root.
func matchGlob(glob, p string) bool {
	return matchSegments(strings.Split(strings.TrimPrefix(glob, "./"), "/"), strings.Split(p, "/"))
}

func matchSegments(glob, name []string) bool {
	for len(glob) > 0 {
		if glob[0] == "**" {
			for len(glob) > 1 && glob[1] == "**" {
				glob = glob[1:]
			}
			for i := 0; i <= len(name); i++ {
				if matchSegments(glob[1:], name[i:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		if ok, _ := path.Match(glob[0], name[0]); !ok {
			return false
		}
		glob, name = glob[1:], name[1:]
	}
	return len(name) == 0
}
