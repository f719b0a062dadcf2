package main

import (
	"cmp"

	"github.com/ferrygitops/ferry/syncer/apply"
	"github.com/ferrygitops/ferry/syncer/policy"
)

// PolicyConf bounds what a repository's apps (or one app) may apply, whatever their service
// account may do: the policy block of a repository or an app. An app's policy narrows its
// repository's: an object must be allowed by both.
type PolicyConf struct {
	// Namespaces are globs (team-a-*) of the namespaces objects may be in, and Namespace
	// objects may be named; empty allows any.
	Namespaces []string `json:"namespaces,omitempty"`
	// ClusterScoped allows every cluster-scoped kind; ClusterKinds only these (Kind, or
	// Kind.group). With neither, no cluster-scoped object is allowed.
	ClusterScoped bool     `json:"clusterScoped,omitempty"`
	ClusterKinds  []string `json:"clusterKinds,omitempty"`
}

func (p *PolicyConf) policy(owner string) policy.Policy {
	return policy.Policy{Owner: owner, Namespaces: p.Namespaces, ClusterScoped: p.ClusterScoped, ClusterKinds: p.ClusterKinds}
}

// validateTenancy checks the service accounts and policies: every app's service account (its
// own or the default) must name one, in strict mode every app must have one, and every policy
// must be usable. readAuth needs a way to authenticate.
func (c *Config) validateTenancy(bad func(string, ...any)) {
	if c.ReadAuth && len(c.APITokens) == 0 && c.AuthProxy == nil {
		bad("readAuth needs apiTokens or authProxy: otherwise nobody could read the API or the pages")
	}
	if c.DefaultServiceAccountName != "" {
		if _, _, err := apply.ServiceAccountRef(c.DefaultServiceAccountName, "default"); err != nil {
			bad("defaultServiceAccountName: %v", err)
		}
	}
	for _, r := range c.Repos {
		if r.Policy != nil {
			if err := r.Policy.policy("").Validate(); err != nil {
				bad("repo %s: policy: %v", r.Name, err)
			}
		}
	}
	for _, a := range c.Apps {
		if a.Policy != nil {
			if err := a.Policy.policy("").Validate(); err != nil {
				bad("app %s: policy: %v", a.Name, err)
			}
		}
		sa := c.serviceAccount(a)
		if sa == "" {
			if c.RequireServiceAccount {
				bad("app %s: requireServiceAccount is set, and the app has no serviceAccountName (nor is there a defaultServiceAccountName)", a.Name)
			}
			continue
		}
		if _, _, err := apply.ServiceAccountRef(sa, a.Namespace); err != nil {
			bad("app %s: %v", a.Name, err)
		}
	}
}

// serviceAccount is the service account app a runs as: its own, or the server's default (in
// the app's namespace); "" for ferry's own identity.
func (c *Config) serviceAccount(a AppConf) string {
	return cmp.Or(a.ServiceAccountName, c.DefaultServiceAccountName)
}

// policies are the layers of rules app a's objects must pass: its repository's, then its own.
func (c *Config) policies(a AppConf) []policy.Policy {
	var out []policy.Policy
	for _, r := range c.Repos {
		if r.Name == a.Repo && r.Policy != nil {
			out = append(out, r.Policy.policy("repository "+r.Name))
		}
	}
	if a.Policy != nil {
		out = append(out, a.Policy.policy("app "+a.Name))
	}
	return out
}
