package main

import (
	"cmp"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/ferrygitops/ferry/handlers"
	"github.com/ferrygitops/ferry/server"
	"github.com/ferrygitops/ferry/syncer"
	"github.com/ferrygitops/ferry/syncer/apply"
	"github.com/ferrygitops/ferry/syncer/ghapp"
	"github.com/ferrygitops/ferry/syncer/notify"
	"github.com/ferrygitops/ferry/syncer/render"
	"github.com/ferrygitops/ferry/syncer/source"
	"github.com/ferrygitops/ferry/syncer/source/charts"
	"github.com/ferrygitops/ferry/syncer/status"
	"github.com/ferrygitops/ferry/syncer/target"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"
)

// The functions below translate the config into each package's own view of it; main is the
// only place that knows them all.

func syncerRepos(cfg *Config, sec *Secrets, log *slog.Logger, sm *status.Metrics) []syncer.Repo {
	var out []syncer.Repo
	for _, r := range cfg.Repos {
		out = append(out, syncer.Repo{
			Name:     r.Name,
			Source:   source.Repo{Name: r.Name, URL: r.URL, Token: sec.Tokens[r.Name], Credentials: repoCredentials(sec, r.Name), Provider: r.Provider},
			Branch:   r.Branch,
			Reporter: reporter(r, sec, log, sm),
		})
	}
	return out
}

// repoCredentials is repository name's GitHub App as the fetcher's token source, or nil (not
// a nil *ghapp.App in the interface, which the fetcher would call).
func repoCredentials(sec *Secrets, name string) source.Credentials {
	if app := sec.Apps[name]; app != nil {
		return app
	}
	return nil
}

func sourceRepos(repos []syncer.Repo) map[string]source.Repo {
	out := map[string]source.Repo{}
	for _, r := range repos {
		out[r.Name] = r.Source
	}
	return out
}

func syncerApps(cfg *Config, sec *Secrets) []syncer.App {
	var out []syncer.App
	for _, a := range cfg.Apps {
		out = append(out, syncer.App{Name: a.Name, Repo: a.Repo, Path: a.Path, Namespace: a.Namespace, Prune: a.Prune,
			Timeout: time.Duration(a.Timeout), DependsOn: a.DependsOn, Render: rendering(cfg, a, sec),
			ServiceAccount: cfg.serviceAccount(a), Policy: cfg.policies(a), Cluster: clusterOf(a)})
	}
	return out
}

// rendering is how app a renders beyond its path, from its helm, decryption and substitute
// settings.
func rendering(cfg *Config, a AppConf, sec *Secrets) syncer.Rendering {
	r := syncer.Rendering{Keys: sec.Keys[a.Name], Vars: a.Substitute, StrictVars: a.StrictSubstitute}
	for _, v := range a.SubstituteFrom {
		ns := v.Namespace
		if ns == "" {
			ns = cmp.Or(cfg.InventoryNamespace, apply.DefaultInventoryNamespace)
		}
		r.VarsFrom = append(r.VarsFrom, syncer.VarSource{Kind: v.Kind, Namespace: ns, Name: v.Name, Optional: v.Optional})
	}
	h := a.Helm
	if h == nil {
		return r
	}
	r.Helm = render.Helm{ReleaseName: h.ReleaseName, ValuesFiles: h.ValuesFiles, Values: h.Values, SkipCRDs: h.IncludeCRDs != nil && !*h.IncludeCRDs}
	if h.Chart != "" {
		r.Chart = &charts.Ref{RepoURL: h.RepoURL, Chart: h.Chart, Version: h.Version, PlainHTTP: h.PlainHTTP}
		r.ChartAuth = sec.ChartAuth[a.Name]
	}
	return r
}

func hookRepos(cfg *Config, sec *Secrets) []handlers.Repo {
	var out []handlers.Repo
	for _, r := range cfg.Repos {
		hr := handlers.Repo{Name: r.Name, Provider: r.Provider, Branch: r.Branch, Secret: sec.WebhookSecrets[r.Name]}
		if r.GitHubApp != nil {
			hr.GitHubApp = r.GitHubApp.AppID
			if owner, name, err := status.ParseRepoURL(r.URL); err == nil {
				hr.FullName = owner + "/" + name
			}
		}
		for _, a := range cfg.Apps {
			if a.Repo == r.Name {
				hr.Apps = append(hr.Apps, handlers.App{Name: a.Name, Path: a.Path, Include: a.Include, Exclude: a.Exclude, DependsOn: a.DependsOn})
			}
		}
		out = append(out, hr)
	}
	return out
}

// repoBranches maps each repository's name to its branch.
func repoBranches(cfg *Config) map[string]string {
	branch := map[string]string{}
	for _, r := range cfg.Repos {
		branch[r.Name] = r.Branch
	}
	return branch
}

func resyncApps(cfg *Config) []handlers.ResyncApp {
	branch := repoBranches(cfg)
	var out []handlers.ResyncApp
	for _, a := range cfg.Apps {
		out = append(out, handlers.ResyncApp{Name: a.Name, Repo: a.Repo, Branch: branch[a.Repo]})
	}
	return out
}

// apiAuth authenticates the write API: the API tokens by name, and the authenticating proxy's
// users when one is configured.
func apiAuth(cfg *Config, sec *Secrets) *handlers.Auth {
	var tokens []handlers.Token
	for i, t := range cfg.APITokens {
		tokens = append(tokens, handlers.Token{Name: t.name(), Value: sec.APITokens[i]})
	}
	var proxy *handlers.ProxyAuth
	if p := cfg.AuthProxy; p != nil {
		proxy = &handlers.ProxyAuth{UserHeader: p.UserHeader, Trusted: p.trusted}
	}
	return handlers.NewAuth(tokens, proxy)
}

func appInfos(cfg *Config) []server.AppInfo {
	branch := repoBranches(cfg)
	var out []server.AppInfo
	for _, a := range cfg.Apps {
		info := server.AppInfo{Name: a.Name, Repo: a.Repo, Path: a.Path, Namespace: a.Namespace, Branch: branch[a.Repo], Prune: a.Prune, DependsOn: a.DependsOn}
		if len(cfg.Clusters) > 0 {
			// Single-cluster servers keep their pages and API as they were.
			info.Cluster = clusterOf(a)
		}
		out = append(out, info)
	}
	return out
}

// targetSet is one apply engine per cluster, ferry's own (kube) first, with the health
// probe's metrics on reg.
func targetSet(kube *rest.Config, cfg *Config, sec *Secrets, log *slog.Logger, reg prometheus.Registerer) (*target.Set, error) {
	topts := target.DefaultOptions()
	topts.Apply.Logger, topts.Apply.HealthChecks = log.With("part", "apply"), cfg.health
	if cfg.InventoryNamespace != "" {
		topts.Apply.InventoryNamespace = cfg.InventoryNamespace
	}
	topts.Logger, topts.Metrics = log.With("part", "clusters"), target.NewMetrics(reg)
	return target.New(targetConfigs(kube, cfg, sec), topts)
}

// syncerTargets is the target set as the syncer picks an app's cluster from it.
type syncerTargets struct{ set *target.Set }

var _ syncer.Targets = syncerTargets{}

func (t syncerTargets) Target(name string) (syncer.Target, error) {
	c, err := t.set.Get(name)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// appClusters names each app's cluster, for the events recorded in it.
func appClusters(cfg *Config) func(app string) string {
	m := map[string]string{}
	for _, a := range cfg.Apps {
		m[a.Name] = clusterOf(a)
	}
	return func(app string) string { return m[app] }
}

// clusterHealth is the clusters' health as the server shows it.
func clusterHealth(set *target.Set) func() []server.ClusterHealth {
	return func() []server.ClusterHealth {
		var out []server.ClusterHealth
		for _, h := range set.Health() {
			out = append(out, server.ClusterHealth{Name: h.Name, Server: h.Server, Default: h.Default, Reachable: h.Reachable,
				Version: h.Version, LastError: h.LastError, CheckedAt: h.CheckedAt, Since: h.Since})
		}
		return out
	}
}

func appNames(cfg *Config) []string {
	var out []string
	for _, a := range cfg.Apps {
		out = append(out, a.Name)
	}
	return out
}

func pollIntervals(cfg *Config) map[string]time.Duration {
	out := map[string]time.Duration{}
	for _, r := range cfg.Repos {
		out[r.Name] = time.Duration(r.Interval)
	}
	return out
}

func selfHeal(cfg *Config) map[string]bool {
	out := map[string]bool{}
	for _, a := range cfg.Apps {
		out[a.Name] = a.SelfHeal
	}
	return out
}

// forgeReporter picks how repository r reports on its commits; a repository does one or the
// other, never both:
//   - authenticating as a GitHub App (app), check runs with the sync's account through the App's
//     client, whose transport authenticates every request as the installation; commit statuses
//     instead when the App is configured with commitStatuses;
//   - otherwise commit statuses through token (newForge), plus, on GitLab with mergeRequestNotes,
//     one note per app on each previewed merge request.
func forgeReporter(r RepoConf, hc *http.Client, token string, app *ghapp.App) (status.Reporter, error) {
	if app != nil {
		if r.Provider != "github" {
			return nil, fmt.Errorf("githubApp: provider is %q, not github", r.Provider)
		}
		owner, name, err := status.ParseRepoURL(r.URL)
		if err != nil {
			return nil, fmt.Errorf("url: %w", err)
		}
		client := app.Client(hc.Timeout)
		if r.GitHubApp != nil && r.GitHubApp.CommitStatuses {
			return status.NewGitHubWithClient(client, r.APIURL, app.Secrets, owner, name)
		}
		return status.NewChecks(client, r.APIURL, app.Secrets, owner, name)
	}
	rep, err := newForge(hc, r, token)
	if err != nil || !r.MergeRequestNotes {
		return rep, err
	}
	owner, name, err := status.ParseRepoURL(r.URL)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	notes, err := status.NewGitLabNotes(hc, r.APIURL, token, owner+"/"+name)
	if err != nil {
		return nil, err
	}
	return status.Tee(rep, notes), nil
}

// notifyOptions are the dispatcher's settings: CloudEvents come from ferry's external URL.
func notifyOptions(cfg *Config, log *slog.Logger, m *notify.Metrics) notify.Options {
	o := notify.DefaultOptions()
	o.Source, o.UserAgent, o.Logger, o.Metrics = cfg.ExternalURL, "ferry/"+buildVersion(), log.With("part", "notify"), m
	return o
}

// notifier is what the syncer tells of finished deploys: the publisher, or nothing when no
// target is configured.
func notifier(sec *Secrets, p *notify.Publisher) syncer.Notifier {
	if len(sec.Notify) == 0 {
		return nil
	}
	return p
}
