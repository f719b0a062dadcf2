// Package policy decides which objects an app may hold, whatever its service account may do: the
// namespaces its objects may be in, and whether (and which) cluster-scoped objects it may declare.
// A repository's policy bounds every app it feeds; an app's own policy narrows it further. The
// check runs on the objects as they would be applied (namespaces defaulted, scopes resolved), for
// deploys and previews alike, before anything is written.
package policy

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/ferrygitops/ferry/syncer/apply"
)

// Policy is one layer of rules: a repository's or an app's.
type Policy struct {
	// Owner names whose rules these are in refusals, e.g. "repository team-a" or "app web".
	Owner string
	// Namespaces are globs (path.Match syntax: team-a-*, team-?) of the namespaces the objects may
	// be in, and the Namespace objects may be named; empty allows any.
	Namespaces []string
	// ClusterScoped allows every cluster-scoped kind.
	ClusterScoped bool
	// ClusterKinds allows these cluster-scoped kinds only, as Kind (any group) or Kind.group
	// (ClusterRole.rbac.authorization.k8s.io). Neither this nor ClusterScoped: none.
	ClusterKinds []string
}

// Validate refuses rules that cannot be applied: a malformed glob, an empty kind, both
// ClusterScoped and ClusterKinds.
func (p Policy) Validate() error {
	for _, g := range p.Namespaces {
		if g == "" {
			return errors.New("namespaces: empty pattern")
		}
		if _, err := path.Match(g, ""); err != nil {
			return fmt.Errorf("namespaces: pattern %q: %w", g, err)
		}
	}
	if p.ClusterScoped && len(p.ClusterKinds) > 0 {
		return errors.New("set clusterScoped (every cluster-scoped kind) or clusterKinds (only these), not both")
	}
	for _, k := range p.ClusterKinds {
		if strings.TrimSpace(k) == "" || strings.ContainsAny(k, " /") {
			return fmt.Errorf("clusterKinds: %q is not a Kind or Kind.group", k)
		}
	}
	return nil
}

// Admit returns the check of targets against every layer of ps, for apply.App.Admit; nil when
// there are no rules. Each object is checked against each layer, and every refusal is reported
// as an apply.Denied naming the object, its file and the rule.
func Admit(ps []Policy) func([]apply.Target) error {
	if len(ps) == 0 {
		return nil
	}
	return func(ts []apply.Target) error {
		var errs []error
		for _, t := range ts {
			for _, p := range ps {
				if rule := p.refuses(t); rule != "" {
					errs = append(errs, apply.Denied(t, rule))
					break
				}
			}
		}
		switch len(errs) {
		case 0:
			return nil
		case 1:
			return errs[0]
		}
		return errors.Join(errs...)
	}
}

// refuses returns the rule of p that t breaks, or "".
func (p Policy) refuses(t apply.Target) string {
	if t.Namespaced {
		if !matchAny(p.Namespaces, t.Namespace) {
			return fmt.Sprintf("namespace %s is not allowed by %s's policy (namespaces: %s)", t.Namespace, p.Owner, strings.Join(p.Namespaces, ", "))
		}
		return ""
	}
	if !p.ClusterScoped && !p.allowsKind(t) {
		allowed := "none"
		if len(p.ClusterKinds) > 0 {
			allowed = strings.Join(p.ClusterKinds, ", ")
		}
		return fmt.Sprintf("cluster-scoped %s is not allowed by %s's policy (clusterKinds: %s)", kindName(t.ID), p.Owner, allowed)
	}
	if t.Group == "" && t.Kind == "Namespace" && !matchAny(p.Namespaces, t.Name) {
		return fmt.Sprintf("namespace %s is not allowed by %s's policy (namespaces: %s)", t.Name, p.Owner, strings.Join(p.Namespaces, ", "))
	}
	return ""
}

func (p Policy) allowsKind(t apply.Target) bool {
	for _, k := range p.ClusterKinds {
		kind, group, dotted := strings.Cut(k, ".")
		if kind == t.Kind && (!dotted || group == t.Group) {
			return true
		}
	}
	return false
}

// kindName is the kind as clusterKinds would allow it: Kind, or Kind.group outside the core group.
func kindName(id apply.ID) string {
	if id.Group == "" {
		return id.Kind
	}
	return id.Kind + "." + id.Group
}

// matchAny reports whether name matches one of globs; no globs match every name.
func matchAny(globs []string, name string) bool {
	if len(globs) == 0 {
		return true
	}
	for _, g := range globs {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}
