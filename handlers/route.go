package handlers

import (
	"container/heap"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"
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
	// order is the app's position in the configuration.
	order int
	// inputs are the paths outside dir that the app's last deploy rendered from (kustomize
	// bases and files elsewhere in the repository), as the workers record them; nil until known.
	inputs atomic.Pointer[[]string]
}

// graph is every app the handler knows, across repositories, with the reverse of DependsOn.
// Routing a push looks apps up by directory instead of testing every app: a push changing k
// paths of depth d costs O(k·d) map lookups, whatever the number of apps configured.
type graph struct {
	apps       []*appNode
	byName     map[string]*appNode
	dependents map[string][]*appNode
	// byRepo is each repository's apps in dependency order.
	byRepo map[string][]*appNode
	// byDir is each repository's apps by their cleaned directory ("" is the whole repository).
	byDir map[string]map[string][]*appNode
	// inputsMu guards byInput, which SetInputs changes while hooks are routed.
	inputsMu sync.RWMutex
	// byInput is each repository's apps by the input directories their last deploy recorded.
	byInput map[string]map[string][]*appNode
}

// newGraph indexes the apps of repos and ranks them in dependency order. Its input is
// validated (see NewHooks); an app waiting on a dependsOn cycle or an unknown app, which the
// config loader refuses, panics here rather than leave its syncs waiting on each other.
func newGraph(repos []Repo) *graph {
	g := &graph{byName: map[string]*appNode{}, dependents: map[string][]*appNode{}, byRepo: map[string][]*appNode{},
		byDir: map[string]map[string][]*appNode{}, byInput: map[string]map[string][]*appNode{}}
	for _, r := range repos {
		g.byDir[r.Name] = map[string][]*appNode{}
		g.byInput[r.Name] = map[string][]*appNode{}
		for _, a := range r.Apps {
			n := &appNode{App: a, repo: r.Name, dir: cleanDir(a.Path), order: len(g.apps)}
			g.apps = append(g.apps, n)
			g.byName[a.Name] = n
			g.byDir[r.Name][n.dir] = append(g.byDir[r.Name][n.dir], n)
		}
	}
	for _, n := range g.apps {
		for _, d := range n.DependsOn {
			g.dependents[d] = append(g.dependents[d], n)
		}
	}
	g.rankApps()
	for _, n := range g.apps {
		g.byRepo[n.repo] = append(g.byRepo[n.repo], n)
	}
	for _, apps := range g.byRepo {
		slices.SortFunc(apps, byRank)
	}
	return g
}

func byRank(a, b *appNode) int { return a.rank - b.rank }

// rankApps gives every app a position after all of its dependencies: Kahn's algorithm taking,
// at each step, the ready app listed first in the configuration, so that job order is stable
// and otherwise follows the configuration. The ready apps wait in a heap by configuration
// order: O(n log n), where scanning for the first ready app was O(n²) at 5,000 apps.
func (g *graph) rankApps() {
	waiting := make([]int, len(g.apps))
	ready := &readyHeap{}
	for i, n := range g.apps {
		waiting[i] = len(n.DependsOn)
		if waiting[i] == 0 {
			ready.nodes = append(ready.nodes, n)
		}
	}
	heap.Init(ready)
	rank := 0
	for ready.Len() > 0 {
		n := heap.Pop(ready).(*appNode)
		n.rank = rank
		rank++
		for _, d := range g.dependents[n.Name] {
			if waiting[d.order]--; waiting[d.order] == 0 {
				heap.Push(ready, d)
			}
		}
	}
	if rank < len(g.apps) {
		var stuck []string
		for i, n := range g.apps {
			if waiting[i] > 0 {
				stuck = append(stuck, n.Name)
			}
		}
		panic(fmt.Sprintf("handlers: apps %s wait on a dependsOn cycle or an unknown app; the config loader lets neither through", strings.Join(stuck, ", ")))
	}
}

// readyHeap holds the apps whose dependencies are all ranked, first listed on top.
type readyHeap struct{ nodes []*appNode }

func (h *readyHeap) Len() int           { return len(h.nodes) }
func (h *readyHeap) Less(i, j int) bool { return h.nodes[i].order < h.nodes[j].order }
func (h *readyHeap) Swap(i, j int)      { h.nodes[i], h.nodes[j] = h.nodes[j], h.nodes[i] }
func (h *readyHeap) Push(x any)         { h.nodes = append(h.nodes, x.(*appNode)) }
func (h *readyHeap) Pop() any {
	n := h.nodes[len(h.nodes)-1]
	h.nodes = h.nodes[:len(h.nodes)-1]
	return n
}

// setInputs records the input directories of an app's last deploy and re-indexes them.
func (g *graph) setInputs(n *appNode, dirs []string) {
	g.inputsMu.Lock()
	defer g.inputsMu.Unlock()
	idx := g.byInput[n.repo]
	if old := n.inputs.Load(); old != nil {
		for _, d := range *old {
			idx[d] = slices.DeleteFunc(idx[d], func(o *appNode) bool { return o == n })
			if len(idx[d]) == 0 {
				delete(idx, d)
			}
		}
	}
	dirs = slices.Compact(slices.Sorted(slices.Values(dirs)))
	for _, d := range dirs {
		idx[d] = append(idx[d], n)
	}
	n.inputs.Store(&dirs)
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
	if all {
		queue = slices.Clone(g.byRepo[repo])
		for _, n := range queue {
			picked[n] = true
		}
	} else {
		queue = g.touched(repo, changed, picked)
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
	slices.SortFunc(s.apps, byRank)
	slices.Sort(s.otherRepos)
	return s
}

// touched picks the apps of repo that changed paths touch, marking them in picked: for each
// path, the apps whose directory or a recorded input is that path or one of its parents, and
// whose Include and Exclude globs let the path through. It selects what touchedBy would select
// of every app, with map lookups per parent directory instead of a test per app.
func (g *graph) touched(repo string, changed []string, picked map[*appNode]bool) []*appNode {
	dirs := g.byDir[repo]
	g.inputsMu.RLock()
	defer g.inputsMu.RUnlock()
	inputs := g.byInput[repo]
	var out []*appNode
	consider := func(apps []*appNode, p string) {
		for _, n := range apps {
			if !picked[n] && n.admits(p) {
				picked[n] = true
				out = append(out, n)
			}
		}
	}
	for _, p := range changed {
		p = strings.TrimPrefix(p, "/")
		for dir := p; ; {
			consider(dirs[dir], p)
			consider(inputs[dir], p)
			if dir == "" {
				break
			}
			i := strings.LastIndexByte(dir, '/')
			if i < 0 {
				i = 0
			}
			dir = dir[:i]
		}
	}
	return out
}

// admits tells whether a changed path under the app's directory or inputs counts: it matches
// one of the Include globs when there are any, and none of the Exclude globs.
func (n *appNode) admits(p string) bool {
	return (len(n.Include) == 0 || matchAny(n.Include, p)) && !matchAny(n.Exclude, p)
}

// ofRepo is every app of repo in dependency order: what a preview covers, since pull request
// payloads do not list changed paths. The slice is shared: callers do not modify it.
func (g *graph) ofRepo(repo string) []*appNode {
	return g.byRepo[repo]
}

// touchedBy reports whether any changed path belongs to the app: under its directory or one of
// its recorded inputs, matching one of its Include globs when it has any, and matching none of
// its Exclude globs. It is the definition graph.touched implements with indexes; tests hold the
// two to the same answers.
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
		if n.admits(p) {
			return true
		}
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
