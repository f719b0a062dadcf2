package main

import (
	"fmt"
	"path"

	"github.com/ferrygitops/ferry/queue"
)

// findCycle returns one dependency cycle among apps, or nil.
func findCycle(apps []AppConf) []string {
	deps := map[string][]string{}
	for _, a := range apps {
		deps[a.Name] = a.DependsOn
	}
	const (
		unseen = iota
		open
		done
	)
	mark := map[string]int{}
	var stack []string
	var visit func(string) []string
	visit = func(n string) []string {
		mark[n] = open
		stack = append(stack, n)
		for _, d := range deps[n] {
			switch mark[d] {
			case open:
				for i, s := range stack {
					if s == d {
						return append(append([]string{}, stack[i:]...), d)
					}
				}
			case unseen:
				if c := visit(d); c != nil {
					return c
				}
			}
		}
		stack = stack[:len(stack)-1]
		mark[n] = done
		return nil
	}
	for _, a := range apps {
		if mark[a.Name] == unseen {
			if c := visit(a.Name); c != nil {
				return c
			}
		}
	}
	return nil
}

// checkGlobs reports an empty or malformed glob of an app's include or exclude list; at match
// time path.Match would only ever say "no match", hiding the mistake.
func checkGlobs(bad func(string, ...any), where, field string, globs []string) {
	for _, g := range globs {
		if _, err := path.Match(g, ""); err != nil || g == "" {
			bad("%s: %s: glob %q is not valid", where, field, g)
		}
	}
}

// checkName reports a missing, malformed or repeated name of the i-th entry of list (repos or
// apps) and returns how messages name the entry: "repo platform", or "repos[2]" when it has none.
func checkName(bad func(string, ...any), list, kind string, i int, name string, seen bool) string {
	where := fmt.Sprintf("%s[%d]", list, i)
	if name != "" {
		where = kind + " " + name
	}
	switch {
	case name == "":
		bad("%s: name is required", where)
	case !queue.ValidName(name):
		bad("%s: name must be a DNS label: lowercase letters, digits and -, at most 63", where)
	case seen:
		bad("%s: duplicate %s name", where, kind)
	}
	return where
}
