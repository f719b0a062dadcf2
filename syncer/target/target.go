// Package target holds the clusters ferry deploys to: one apply.Engine per cluster, each with its
// own clients, discovery cache and REST mapper (refreshed by the engine when a sync meets a kind
// it does not know, as after new CRDs), and each cluster's health as a probe on an interval sees
// it. A cluster that does not answer fails its own apps' syncs at once with a transient
// "cluster <name> unreachable: …" error; the other clusters' syncs never wait for it.
package target

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/ferrygitops/ferry/syncer/apply"
	"github.com/ferrygitops/ferry/syncer/render"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
)

// DefaultCluster names the cluster of ferry's own --kubeconfig (or in-cluster) config, which apps
// that name no cluster deploy to. A configured cluster cannot take this name.
const DefaultCluster = "default"

// Bounds of talking to a cluster. RequestTimeout bounds every single request of a cluster's
// clients (client-go has none by default), so that a cluster that accepts connections but never
// answers holds a worker for at most that long per request, never forever. ProbeInterval and
// ProbeTimeout are how often each cluster's /version is read, and how long one read may take.
const (
	RequestTimeout       = time.Minute
	DefaultProbeInterval = 15 * time.Second
	DefaultProbeTimeout  = 5 * time.Second
)

// Config is one cluster to deploy to.
type Config struct {
	// Name is how apps and pages name it; DefaultCluster for ferry's own.
	Name string
	// Rest reaches its apiserver. It is copied; its credentials are never logged or shown.
	Rest *rest.Config
}

// Options tunes a Set. Start from DefaultOptions.
type Options struct {
	// Apply configures every cluster's engine (inventory namespace, health rules, logger).
	Apply apply.Options
	// ProbeInterval and ProbeTimeout pace the health probe (DefaultProbeInterval, DefaultProbeTimeout).
	ProbeInterval, ProbeTimeout time.Duration
	// Now is the clock of the health records; nil is time.Now.
	Now func() time.Time
	// Metrics, when set, exports each cluster's health.
	Metrics *Metrics
	// Logger receives probe transitions; nil discards.
	Logger *slog.Logger
}

// DefaultOptions are the settings ferry serves with.
func DefaultOptions() Options {
	return Options{Apply: apply.DefaultOptions(), ProbeInterval: DefaultProbeInterval, ProbeTimeout: DefaultProbeTimeout, Now: time.Now}
}

// Set is every cluster ferry deploys to, by name.
type Set struct {
	opts     Options
	clusters map[string]*Cluster
	// names keeps the configured order, the default first.
	names []string
}

// New builds one engine per cluster. Nothing is contacted yet: a cluster that is down at start
// costs its own apps' syncs, not ferry's start. The first config is the default when none is
// named DefaultCluster.
func New(clusters []Config, opts Options) (*Set, error) {
	def := DefaultOptions()
	if opts.ProbeInterval <= 0 {
		opts.ProbeInterval = def.ProbeInterval
	}
	if opts.ProbeTimeout <= 0 {
		opts.ProbeTimeout = def.ProbeTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if len(clusters) == 0 {
		return nil, errors.New("target: no cluster")
	}
	s := &Set{opts: opts, clusters: map[string]*Cluster{}}
	for _, c := range clusters {
		if c.Name == "" || c.Rest == nil {
			return nil, fmt.Errorf("target: cluster %q: name and config are required", c.Name)
		}
		if s.clusters[c.Name] != nil {
			return nil, fmt.Errorf("target: cluster %q configured twice", c.Name)
		}
		cl, err := newCluster(c, opts)
		if err != nil {
			return nil, err
		}
		s.clusters[c.Name] = cl
		s.names = append(s.names, c.Name)
	}
	if i := slices.Index(s.names, DefaultCluster); i > 0 {
		s.names = slices.Insert(slices.Delete(s.names, i, i+1), 0, DefaultCluster)
	}
	return s, nil
}

// Get is the cluster called name ("" is the default). It fails with an *UnreachableError while
// the last probe found the cluster not answering, so that syncs of its apps fail (and retry) at
// once instead of each waiting on dead connections.
func (s *Set) Get(name string) (*Cluster, error) {
	if name == "" {
		name = s.names[0]
	}
	c := s.clusters[name]
	if c == nil {
		return nil, fmt.Errorf("cluster %q is not configured", name)
	}
	if err := c.down(); err != nil {
		return nil, err
	}
	return c, nil
}

// Default is the cluster apps that name none deploy to.
func (s *Set) Default() *Cluster { return s.clusters[s.names[0]] }

// Health is every cluster's health as last probed, the default first.
func (s *Set) Health() []Health {
	out := make([]Health, 0, len(s.names))
	for _, n := range s.names {
		out = append(out, s.clusters[n].Health())
	}
	return out
}

// Cluster is one cluster: its engine, what ferry last saw of it, and the errors of its syncs
// marked with its name when it did not answer.
type Cluster struct {
	name   string
	host   string
	engine *apply.Engine
	// rc reads /version for the probe.
	rc   rest.Interface
	opts Options

	mu     sync.Mutex
	health Health
	// lastErr is the last probe's error, kept for the errors of syncs refused meanwhile.
	lastErr error
}

func newCluster(c Config, opts Options) (*Cluster, error) {
	rc := rest.CopyConfig(c.Rest)
	if rc.Timeout == 0 {
		rc.Timeout = RequestTimeout
	}
	eopts := opts.Apply
	if eopts.Logger != nil {
		eopts.Logger = eopts.Logger.With("cluster", c.Name)
	}
	e, err := apply.New(rc, eopts)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %w", c.Name, err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: probe client: %w", c.Name, err)
	}
	return &Cluster{name: c.Name, host: serverHost(rc.Host), engine: e, rc: dc.RESTClient(), opts: opts,
		health: Health{Name: c.Name, Server: serverHost(rc.Host), Default: c.Name == DefaultCluster}}, nil
}

// serverHost is the apiserver's host and port as pages show it: no scheme, path or user.
func serverHost(h string) string {
	u, err := url.Parse(h)
	if err != nil || u.Host == "" {
		return ""
	}
	return u.Host
}

// Name is the cluster's configured name.
func (c *Cluster) Name() string { return c.name }

// Engine is the cluster's apply engine (for its event recorder).
func (c *Cluster) Engine() *apply.Engine { return c.engine }

// down is the error syncs get while the last probe found the cluster not answering.
func (c *Cluster) down() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.health.CheckedAt.IsZero() || c.health.Reachable {
		return nil
	}
	return &UnreachableError{Cluster: c.name, Err: c.lastErr, cause: c.lastErr}
}

// Sync applies app's objects to the cluster (apply.Engine.Sync), its errors marked with the
// cluster's name when the cluster did not answer.
func (c *Cluster) Sync(ctx context.Context, app apply.App, revision string, objs []render.Object) (*apply.Result, error) {
	res, err := c.engine.Sync(ctx, app, revision, objs)
	return res, c.mark(err)
}

// Plan dry-runs app's objects against the cluster (apply.Engine.Plan).
func (c *Cluster) Plan(ctx context.Context, app apply.App, objs []render.Object) (*apply.Plan, error) {
	p, err := c.engine.Plan(ctx, app, objs)
	return p, c.mark(err)
}

// Capabilities are the cluster's version and APIs, for charts (apply.Engine.Capabilities).
func (c *Cluster) Capabilities(ctx context.Context) (render.Capabilities, error) {
	caps, err := c.engine.Capabilities(ctx)
	return caps, c.mark(err)
}

// Data reads a ConfigMap's or Secret's data in the cluster (apply.Engine.Data).
func (c *Cluster) Data(ctx context.Context, kind, namespace, name string) (map[string]string, error) {
	d, err := c.engine.Data(ctx, kind, namespace, name)
	return d, c.mark(err)
}

// mark turns an error of a request that got no answer from the apiserver (refused, reset,
// timed out: client-go reports those as *url.Error) into an *UnreachableError naming the
// cluster. Answers of the apiserver (invalid, forbidden, conflict) stay as they are.
func (c *Cluster) mark(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := errors.AsType[*UnreachableError](err); ok {
		return err
	}
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return &UnreachableError{Cluster: c.name, Err: err, cause: ue}
	}
	return err
}

// UnreachableError is a sync, plan or read that failed because the app's cluster did not
// answer. It is transient (apply.IsTransient sees its cause, a network error): the job retries
// within its budget, and ends failed naming the cluster.
type UnreachableError struct {
	Cluster string
	// Err is what failed (the sync's whole error, object by object).
	Err error
	// cause is the network error inside Err, for classification; the object errors around it
	// are left out so that the status names the cluster first.
	cause error
}

// Error says which cluster did not answer, then how: the request that got no answer (one
// line, however many objects were waiting on it).
func (e *UnreachableError) Error() string {
	switch {
	case e.cause != nil:
		return "cluster " + e.Cluster + " unreachable: " + e.cause.Error()
	case e.Err != nil:
		return "cluster " + e.Cluster + " unreachable: " + e.Err.Error()
	}
	return "cluster " + e.Cluster + " unreachable"
}

// Unwrap is the network error, so that apply.IsTransient classifies it as transient.
func (e *UnreachableError) Unwrap() error { return e.cause }
