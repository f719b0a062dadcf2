package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/ferrygitops/ferry/handlers"
	"github.com/ferrygitops/ferry/syncer/apply"
	"github.com/ferrygitops/ferry/syncer/ghapp"
	"github.com/ferrygitops/ferry/syncer/notify"
	"github.com/ferrygitops/ferry/syncer/render"
	"github.com/ferrygitops/ferry/syncer/render/sops"
	"github.com/ferrygitops/ferry/syncer/source"
	"github.com/ferrygitops/ferry/syncer/source/charts"
	"github.com/ferrygitops/ferry/syncer/status"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"
)

// RenderLimits are the render bounds a server may change, for repositories it trusts with
// larger stacks (say, a cloud provider's hundreds of CRDs).
type RenderLimits struct {
	// MaxMiB bounds the bytes one render reads and parses, in MiB (render.MaxRenderBytes).
	MaxMiB int `json:"maxMiB,omitempty"`
	// MaxNodes bounds the YAML nodes one render parses (render.MaxRenderNodes).
	MaxNodes int `json:"maxNodes,omitempty"`
	// MaxObjects bounds the objects one render produces (render.MaxRenderObjects).
	MaxObjects int `json:"maxObjects,omitempty"`
}

// Upper ends of renderLimits: a render holds a small multiple of what it reads, and parsers
// hundreds of bytes per node, so past these one render could take the process down.
const (
	maxRenderMiBLimit     = 1 << 10
	maxRenderNodesLimit   = 5_000_000
	maxRenderObjectsLimit = 200_000
)

// render is the renderer's view of the limits.
func (l RenderLimits) render() render.Limits {
	return render.Limits{Bytes: int64(l.MaxMiB) << 20, Nodes: int64(l.MaxNodes), Objects: l.MaxObjects}
}

// maxFetchMiBLimit is the largest maxFetchMiB accepted: a fetch indexes each object it receives
// in memory, and past a few GiB one fetch could take the process down.
const maxFetchMiBLimit = 8 << 10

// Config is ferry.yaml: the repositories ferry listens to and the apps it applies from them.
type Config struct {
	// ExternalURL is where people reach ferry; commit statuses link to pages under it.
	ExternalURL string `json:"externalURL"`
	// Workers is how many syncs this replica runs at once; 0 is queue.DefaultConsumeOptions'.
	Workers int `json:"workers,omitempty"`
	// MaxFetchMiB bounds the pack data one Git fetch may receive, in MiB; 0 is
	// source.MaxFetchBytes. A repository whose first fetch is larger needs it raised.
	MaxFetchMiB int `json:"maxFetchMiB,omitempty"`
	// RenderLimits raises (or lowers) what one render may read and produce; zero fields keep
	// syncer/render's defaults.
	RenderLimits RenderLimits `json:"renderLimits,omitempty"`
	// InventoryNamespace holds the apps' inventories in the cluster (default ferry-system).
	InventoryNamespace string     `json:"inventoryNamespace,omitempty"`
	Repos              []RepoConf `json:"repos"`
	// Clusters are the clusters apps may deploy to besides ferry's own (see cluster_config.go).
	Clusters []ClusterConf `json:"clusters,omitempty"`
	Apps     []AppConf     `json:"apps"`
	// DefaultCluster holds settings of ferry's own cluster (see cluster_config.go).
	DefaultCluster *DefaultClusterConf `json:"defaultCluster,omitempty"`
	// APITokens authenticate the write API (manual sync, suspend, resume).
	APITokens []APIToken `json:"apiTokens,omitempty"`
	// AuthProxy trusts an authenticating proxy's user header as well (see AuthProxyConf).
	AuthProxy *AuthProxyConf `json:"authProxy,omitempty"`
	// Notify are the chats and webhooks told how deploys end.
	Notify []NotifyConf `json:"notify,omitempty"`
	// HealthChecks are per-kind health rules in CEL; see health_config.go.
	HealthChecks []HealthCheckConf `json:"healthChecks,omitempty"`
	// DefaultServiceAccountName is the service account of apps that name none (see
	// tenancy_config.go); RequireServiceAccount refuses to start with an app that has neither.
	DefaultServiceAccountName string `json:"defaultServiceAccountName,omitempty"`
	RequireServiceAccount     bool   `json:"requireServiceAccount,omitempty"`
	// ReadAuth makes the read API, the event streams and the pages ask for the write API's
	// credentials (a token, a session or the proxy's user).
	ReadAuth bool `json:"readAuth,omitempty"`
	// health is HealthChecks compiled, with the built-in rules.
	health *apply.HealthChecks
}

// APIToken is a bearer token of the write API, by reference like every secret, and the name
// that logs and suspensions know its holder by (by default the variable's name, or the file's).
type APIToken struct {
	Name string `json:"name,omitempty"`
	Env  string `json:"env,omitempty"`
	File string `json:"file,omitempty"`
}

// maxTokenName bounds an API token's name, shown on suspensions as who made them.
const maxTokenName = 63

func (t APIToken) ref() *SecretRef { return &SecretRef{Env: t.Env, File: t.File} }

// name is the token's configured name, or the variable or file it is read from.
func (t APIToken) name() string {
	switch {
	case t.Name != "":
		return t.Name
	case t.Env != "":
		return t.Env
	}
	return path.Base(t.File)
}

// AuthProxyConf trusts an authenticating proxy in front of ferry (oauth2-proxy, an ingress with
// single sign-on): a request whose connection comes from one of TrustedProxies and carries
// UserHeader is made by that user. From any other address the header is ignored.
type AuthProxyConf struct {
	UserHeader     string   `json:"userHeader"`
	TrustedProxies []string `json:"trustedProxies"`
	// trusted are TrustedProxies parsed, by validate.
	trusted []netip.Prefix
}

// RepoConf is one Git repository and the forge it lives on.
type RepoConf struct {
	Name     string `json:"name"`
	URL      string `json:"url"`
	Provider string `json:"provider"`
	// Branch is the branch deploys follow: an exact name or a glob such as release-*.
	Branch        string     `json:"branch,omitempty"`
	WebhookSecret *SecretRef `json:"webhookSecret"`
	// Token authenticates clones and commit statuses; optional for public repositories
	// (then no statuses are posted).
	Token *SecretRef `json:"token,omitempty"`
	// GitHubApp authenticates as a GitHub App installation instead of Token.
	GitHubApp *GitHubAppConf `json:"githubApp,omitempty"`
	// APIURL points at GitHub Enterprise, a self-hosted GitLab or a Gitea instance.
	APIURL string `json:"apiURL,omitempty"`
	// Interval is how often the branch head is polled in case a webhook was lost; 0 is
	// syncer.DefaultPollInterval.
	Interval Duration `json:"interval,omitempty"`
	// Decryption holds the keys of the repository's SOPS-encrypted files, for apps that name
	// none of their own.
	Decryption *Decryption `json:"decryption,omitempty"`
	// MergeRequestNotes makes a merge request's previews also leave one note per app on it (GitLab
	// only), edited in place as new commits are previewed.
	MergeRequestNotes bool `json:"mergeRequestNotes,omitempty"`
	// Policy bounds what the repository's apps may apply (see PolicyConf).
	Policy *PolicyConf `json:"policy,omitempty"`
}

// AppConf is a path in a repository that ferry keeps applied.
type AppConf struct {
	Name      string   `json:"name"`
	Repo      string   `json:"repo"`
	Path      string   `json:"path"`
	Namespace string   `json:"namespace,omitempty"`
	Prune     bool     `json:"prune,omitempty"`
	DependsOn []string `json:"dependsOn,omitempty"`
	// Timeout bounds the wait for the app's objects to become healthy; 0 is apply.DefaultTimeout.
	Timeout Duration `json:"timeout,omitempty"`
	// Include and Exclude are globs over repository paths that refine which pushes touch the app.
	Include []string `json:"include,omitempty"`
	Exclude []string `json:"exclude,omitempty"`
	// SelfHeal re-applies the app's current commit every interval of its repository, putting
	// back objects changed by hand in the cluster.
	SelfHeal bool `json:"selfHeal,omitempty"`
	// Helm renders the app as a chart (see HelmConf); a path holding a Chart.yaml is one anyway.
	Helm *HelmConf `json:"helm,omitempty"`
	// Decryption holds the keys of the app's SOPS-encrypted files; its repository's when unset.
	Decryption *Decryption `json:"decryption,omitempty"`
	// Substitute and SubstituteFrom (later sources win, Substitute over all) give the values of
	// ${name} in the app's manifests; StrictSubstitute fails a sync on an undefined one.
	Substitute       map[string]string `json:"substitute,omitempty"`
	SubstituteFrom   []VarSource       `json:"substituteFrom,omitempty"`
	StrictSubstitute bool              `json:"strictSubstitute,omitempty"`
	// ServiceAccountName is who the app's objects are applied as: a service account in
	// Namespace, or namespace/name (see tenancy_config.go). Policy narrows its repository's.
	ServiceAccountName string      `json:"serviceAccountName,omitempty"`
	Policy             *PolicyConf `json:"policy,omitempty"`
	// Cluster is the cluster the app deploys to; ferry's own when unset. Targets instead
	// deploys it to several, as one app per cluster (see cluster_config.go).
	Cluster string       `json:"cluster,omitempty"`
	Targets []TargetConf `json:"targets,omitempty"`
}

// SecretRef names where a secret is: an environment variable or a file. Secrets are never
// written in the config itself.
type SecretRef struct {
	Env  string `json:"env,omitempty"`
	File string `json:"file,omitempty"`
}

// Duration is a time.Duration written as "5m" in YAML.
type Duration time.Duration

// UnmarshalJSON reads "5m", "90s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := yaml.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"5m\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	if v < 0 {
		return fmt.Errorf("duration %q is negative", s)
	}
	*d = Duration(v)
	return nil
}

// LoadConfig reads and validates the config file. Secrets are resolved with getenv and the
// file system; a missing one is an error naming its repo and field, never its value.
func LoadConfig(file string, getenv func(string) string) (*Config, *Secrets, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, fmt.Errorf("read config: %w", err)
	}
	return ParseConfig(data, getenv)
}

// Secrets are the resolved secrets, kept apart from Config so that Config can be printed.
type Secrets struct {
	WebhookSecrets map[string][]byte
	Tokens         map[string]string
	APITokens      [][]byte
	// Forges are the commit-status clients of the repositories with a token or an App. They
	// are built here, holding the token, so that a url or apiURL they cannot use stops `ferry
	// check` too.
	Forges map[string]status.Reporter
	// Apps are the GitHub App installations of the repositories with githubApp.
	Apps map[string]*ghapp.App
	// Keys are each app's SOPS decryption keys (nil: the app has none).
	Keys map[string]*sops.Keys
	// ChartAuth are the credentials of the apps' remote charts that need them.
	ChartAuth map[string]*charts.Credentials
	// Notify are the notification targets, with their URLs and signing keys.
	Notify []notify.Target
	// Clusters are the configured clusters' client configs, by name.
	Clusters map[string]*rest.Config
}

// ParseConfig validates a config document; see LoadConfig.
func ParseConfig(data []byte, getenv func(string) string) (*Config, *Secrets, error) {
	var c Config
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		if keys := unknownKeys(data); len(keys) > 0 {
			return nil, nil, fmt.Errorf("config: %s", strings.Join(keys, "; "))
		}
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	if err := c.validate(); err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	sec := &Secrets{WebhookSecrets: map[string][]byte{}, Tokens: map[string]string{}, Forges: map[string]status.Reporter{}}
	var errs []error
	hc := &http.Client{Timeout: forgeTimeout}
	for _, r := range c.Repos {
		v, err := r.WebhookSecret.resolve(getenv)
		if err == nil {
			err = handlers.CheckSecret(r.Provider, v)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("repo %s: webhookSecret: %w", r.Name, err))
		}
		sec.WebhookSecrets[r.Name] = v
		if r.GitHubApp != nil {
			if err := sec.addGitHubApp(hc, r, getenv); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if r.Token == nil {
			continue
		}
		v, err = r.Token.resolve(getenv)
		if err != nil {
			errs = append(errs, fmt.Errorf("repo %s: token: %w", r.Name, err))
			continue
		}
		sec.Tokens[r.Name] = strings.TrimSpace(string(v))
		if sec.Forges[r.Name], err = forgeReporter(r, hc, sec.Tokens[r.Name], nil); err != nil {
			errs = append(errs, fmt.Errorf("repo %s: %w", r.Name, err))
		}
	}
	keys, err := resolveKeys(&c, getenv)
	if err != nil {
		errs = append(errs, err)
	}
	auth, err := resolveChartAuth(&c, getenv)
	if err != nil {
		errs = append(errs, err)
	}
	sec.Keys, sec.ChartAuth = keys, auth
	if sec.Clusters, err = resolveClusters(&c, getenv); err != nil {
		errs = append(errs, err)
	}
	if sec.Notify, err = resolveNotify(&c, getenv); err != nil {
		errs = append(errs, err)
	}
	for i, tok := range c.APITokens {
		v, err := tok.ref().resolve(getenv)
		if err != nil {
			errs = append(errs, fmt.Errorf("apiTokens[%d]: %w", i, err))
		}
		sec.APITokens = append(sec.APITokens, v)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	return &c, sec, nil
}

func (s *SecretRef) resolve(getenv func(string) string) ([]byte, error) {
	switch {
	case s == nil:
		return nil, errors.New("is required (env or file)")
	case s.Env != "" && s.File != "":
		return nil, errors.New("names both env and file; give one")
	case s.Env != "":
		v := getenv(s.Env)
		if v == "" {
			return nil, fmt.Errorf("environment variable %s is not set or empty", s.Env)
		}
		return []byte(v), nil
	case s.File != "":
		v, err := os.ReadFile(s.File)
		if err != nil {
			return nil, fmt.Errorf("cannot read file %s: %w", s.File, errors.Unwrap(err))
		}
		v = bytes.TrimRight(v, "\r\n")
		if len(v) == 0 {
			return nil, fmt.Errorf("file %s is empty", s.File)
		}
		return v, nil
	}
	return nil, errors.New("names neither env nor file")
}

func (c *Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.ExternalURL == "" {
		bad("externalURL is required (commit statuses link to it)")
	} else if u, err := url.Parse(c.ExternalURL); err != nil || u.Scheme == "" || u.Host == "" {
		bad("externalURL %q is not an absolute URL", c.ExternalURL)
	}
	if c.Workers < 0 {
		bad("workers must not be negative")
	}
	for _, l := range []struct {
		name       string
		value, max int
		def        int64
	}{
		{"renderLimits.maxMiB", c.RenderLimits.MaxMiB, maxRenderMiBLimit, render.MaxRenderBytes >> 20},
		{"renderLimits.maxNodes", c.RenderLimits.MaxNodes, maxRenderNodesLimit, render.MaxRenderNodes},
		{"renderLimits.maxObjects", c.RenderLimits.MaxObjects, maxRenderObjectsLimit, render.MaxRenderObjects},
	} {
		if l.value < 0 || l.value > l.max {
			bad("%s must be between 0 (the default, %d) and %d", l.name, l.def, l.max)
		}
	}
	if c.MaxFetchMiB < 0 || c.MaxFetchMiB > maxFetchMiBLimit {
		bad("maxFetchMiB must be between 0 (the default, %d) and %d", source.MaxFetchBytes>>20, maxFetchMiBLimit)
	}
	if len(c.Repos) == 0 {
		bad("repos: at least one repository is required")
	}
	repos := map[string]bool{}
	for i, r := range c.Repos {
		where := checkName(bad, "repos", "repo", i, r.Name, repos[r.Name])
		repos[r.Name] = true
		if r.URL == "" {
			bad("%s: url is required", where)
		} else if u, err := url.Parse(r.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("%s: url %q must be an http(s) clone URL (ferry fetches over HTTPS)", where, r.URL)
		} else if u.User != nil {
			bad("%s: url must not carry credentials; use token", where)
		}
		if !slices.Contains(handlers.Providers(), r.Provider) {
			bad("%s: provider %q is not supported (%s)", where, r.Provider, strings.Join(handlers.Providers(), ", "))
		}
		if r.Branch == "" {
			c.Repos[i].Branch = "main"
		} else if _, err := path.Match(r.Branch, ""); err != nil {
			bad("%s: branch %q is not a valid glob", where, r.Branch)
		}
		if r.WebhookSecret == nil {
			bad("%s: webhookSecret is required", where)
		}
		r.validateAuth(bad, where)
		if r.MergeRequestNotes && r.Provider != "gitlab" {
			bad("%s: mergeRequestNotes is for GitLab merge requests; provider is %q", where, r.Provider)
		} else if r.MergeRequestNotes && r.Token == nil {
			bad("%s: mergeRequestNotes needs a token to write notes", where)
		}
	}
	c.expandTargets(bad)
	apps := map[string]int{}
	for i, a := range c.Apps {
		where := checkName(bad, "apps", "app", i, a.Name, apps[a.Name] > 0)
		apps[a.Name] = i + 1
		if a.Repo == "" {
			bad("%s: repo is required", where)
		} else if !repos[a.Repo] {
			bad("%s: repo %q is not configured", where, a.Repo)
		}
		clean := path.Clean(strings.TrimPrefix(a.Path, "/"))
		if a.Path == "" || clean == ".." || strings.HasPrefix(clean, "../") {
			bad("%s: path %q must be a directory inside the repository", where, a.Path)
		}
		c.Apps[i].Path = clean
		c.Apps[i].validateRendering(bad, where)
		checkGlobs(bad, where, "include", a.Include)
		checkGlobs(bad, where, "exclude", a.Exclude)
	}
	for _, a := range c.Apps {
		for _, d := range a.DependsOn {
			if apps[d] == 0 {
				bad("app %s: dependsOn names unknown app %q", a.Name, d)
			} else if d == a.Name {
				bad("app %s: depends on itself", a.Name)
			}
		}
	}
	c.validateClusters(bad)
	c.validateAuth(bad)
	c.validateNotify(bad)
	c.validateTenancy(bad)
	if err := c.compileHealthChecks(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		if cycle := findCycle(c.Apps); cycle != nil {
			bad("apps: dependsOn has a cycle: %s", strings.Join(cycle, " → "))
		}
	}
	return errors.Join(errs...)
}

// forgeTimeout bounds each call to a forge's status API, so that a slow forge cannot hold a
// worker.
const forgeTimeout = 30 * time.Second

// newForge builds the commit-status client of repository r; its errors name what in url or
// apiURL the client cannot use.
func newForge(hc *http.Client, r RepoConf, token string) (status.Reporter, error) {
	owner, name, err := status.ParseRepoURL(r.URL)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	switch r.Provider {
	case "github":
		return status.NewGitHub(hc, r.APIURL, token, owner, name)
	case "gitlab":
		return status.NewGitLab(hc, r.APIURL, token, owner+"/"+name)
	case "gitea":
		api := r.APIURL
		if api == "" {
			// Gitea has no public default host: its API lives on the clone URL's host.
			if u, perr := url.Parse(r.URL); perr == nil && u.Scheme != "" && u.Host != "" {
				api = u.Scheme + "://" + u.Host
			}
		}
		return status.NewGitea(hc, api, token, owner, name)
	}
	return nil, fmt.Errorf("provider %q: ferry posts no commit statuses there", r.Provider)
}

// validateAuth checks the API tokens' names and the authenticating proxy, and parses the
// proxy's addresses.
func (c *Config) validateAuth(bad func(string, ...any)) {
	names := map[string]bool{}
	for i, t := range c.APITokens {
		n := t.name()
		if len(n) > maxTokenName || strings.IndexFunc(n, unicode.IsControl) >= 0 {
			bad("apiTokens[%d]: name must be at most %d characters, without control characters", i, maxTokenName)
		} else if names[n] {
			bad("apiTokens[%d]: name %q is used twice; give each token a name of its own", i, n)
		}
		names[n] = true
	}
	p := c.AuthProxy
	if p == nil {
		return
	}
	if !validHeaderName(p.UserHeader) {
		bad("authProxy: userHeader %q is not a header name (e.g. X-Forwarded-User)", p.UserHeader)
	}
	if len(p.TrustedProxies) == 0 {
		bad("authProxy: trustedProxies is required: the addresses of the proxies whose userHeader is believed")
	}
	p.trusted = nil
	for _, s := range p.TrustedProxies {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			addr, aerr := netip.ParseAddr(s)
			if aerr != nil {
				bad("authProxy: trustedProxies: %q is neither an address nor a CIDR range", s)
				continue
			}
			pfx = netip.PrefixFrom(addr, addr.BitLen())
		}
		if pfx.Bits() == 0 {
			bad("authProxy: trustedProxies: %q would let any client name its own user", s)
			continue
		}
		p.trusted = append(p.trusted, pfx.Masked())
	}
}

// validHeaderName accepts an HTTP header name (RFC 9110 token characters).
func validHeaderName(h string) bool {
	if h == "" {
		return false
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", c)) {
			return false
		}
	}
	return true
}
