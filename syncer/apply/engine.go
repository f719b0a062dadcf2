// Package apply applies one app's rendered objects to a cluster the way a GitOps engine should:
// server-side apply in stages, only what changed, pruning what left Git, then waiting for health.
//
// Cheap re-syncs are the design centre. Each app has an inventory in the cluster (a ConfigMap) that
// records, for every object ferry applied, the hash of what it sent and the generation or
// resourceVersion the apiserver returned. A sync reads the inventory (one GET) and the live metadata
// of the app's objects (one metadata-only LIST per resource, by label), and applies only objects
// whose desired hash changed, that are missing, or that someone else changed since. An unchanged
// commit costs a handful of reads and no writes, whatever the number of objects; a first apply costs
// one PATCH per object and no dry-run.
package apply

import (
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// Defaults. Timeout is the health wait of an app that sets none; the client rate limits replace
// client-go's 5 QPS, which would turn a 1,000-object first apply into minutes of waiting on the
// client side (the apiserver's own priority and fairness still protects it).
const (
	DefaultFieldManager       = "ferry"
	DefaultInventoryNamespace = "ferry-system"
	DefaultConcurrency        = 16
	DefaultPollInterval       = 2 * time.Second
	DefaultTimeout            = 5 * time.Minute
	defaultQPS                = 500
	defaultBurst              = 1000
)

// App is what the engine needs to know about one app.
type App struct {
	// Name identifies the app; it is the value of the ferry.dev/app label and names the inventory,
	// so it must be a DNS label.
	Name string
	// Namespace is given to namespaced objects that declare none.
	Namespace string
	// Prune deletes objects that left Git. Without it they are abandoned: left in place and
	// forgotten by the inventory.
	Prune bool
	// Timeout bounds the health wait; 0 means DefaultTimeout.
	Timeout time.Duration
	// ServiceAccount, when set, is the identity the app's objects are applied, pruned, read for
	// health and dry-run as, through impersonation: "name" in Namespace, or "namespace/name". The
	// inventory, the ownership reads and Events stay the engine's own identity.
	ServiceAccount string
	// Admit, when set, is shown every object of the app as it would be applied (namespace
	// defaulted, scope resolved) before anything is read or written; its error ends the Sync or
	// Plan as it is (see Denied).
	Admit func(objs []Target) error
}

// Options configures an Engine. Start from DefaultOptions.
type Options struct {
	// FieldManager is the server-side apply field manager, "ferry".
	FieldManager string
	// InventoryNamespace holds the inventories; it is created when first needed.
	InventoryNamespace string
	// Concurrency is the number of parallel requests within a stage.
	Concurrency int
	// Logger receives one line per sync and debug detail; nil discards.
	Logger *slog.Logger
	// PollInterval is the delay between health (and CRD) polls.
	PollInterval time.Duration
	// HealthChecks are the per-kind health rules (CompileHealthChecks); nil means the built-in
	// ones only.
	HealthChecks *HealthChecks
}

// DefaultOptions returns the options ferry runs with.
func DefaultOptions() Options {
	return Options{
		FieldManager:       DefaultFieldManager,
		InventoryNamespace: DefaultInventoryNamespace,
		Concurrency:        DefaultConcurrency,
		PollInterval:       DefaultPollInterval,
	}
}

// Engine applies apps to one cluster. It is safe for concurrent Syncs of different apps; Syncs of
// one app must be serialised by the caller (the inventory update would make the loser fail with a
// transient conflict anyway).
type Engine struct {
	opts Options
	// dyn, meta and core act for the app being synced: the engine's own clients, or those of the
	// app's service account (see actAs).
	dyn  dynamic.Interface
	meta metadata.Interface
	core corev1client.CoreV1Interface
	// own are the engine's own clients, for what stays ferry's whatever the app: the inventory,
	// the ownership reads, CRD establishment and Events.
	own clients
	// identity is the impersonated user ("" for the engine's own), and ids the shared cache of
	// impersonating clients.
	identity string
	ids      *identities
	mapper   *restmapper.DeferredDiscoveryRESTMapper
	// disc is the mapper's discovery cache: resetting the mapper empties it too.
	disc discovery.CachedDiscoveryInterface
	// builtin decides which kinds are custom, and so applied after the CRDs.
	builtin builtinKinds
	log     *slog.Logger
	// health holds the per-kind health rules that replace kstatus for their kinds.
	health *HealthChecks
	// inventoryNamespaceSeen is set once the inventory namespace is known to exist.
	inventoryNamespaceSeen *atomic.Bool
}

// New builds an Engine for the cluster cfg points at. cfg is copied; if it sets no client-side rate
// limit, a generous one replaces client-go's default of 5 requests per second.
func New(cfg *rest.Config, opts Options) (*Engine, error) {
	if cfg == nil {
		return nil, errors.New("apply: nil rest config")
	}
	def := DefaultOptions()
	if opts.FieldManager == "" {
		opts.FieldManager = def.FieldManager
	}
	if opts.InventoryNamespace == "" {
		opts.InventoryNamespace = def.InventoryNamespace
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = def.Concurrency
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = def.PollInterval
	}
	if opts.HealthChecks == nil {
		hc, err := CompileHealthChecks(nil)
		if err != nil {
			return nil, fmt.Errorf("apply: %w", err)
		}
		opts.HealthChecks = hc
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := rest.CopyConfig(cfg)
	if c.QPS == 0 && c.RateLimiter == nil {
		c.QPS, c.Burst = defaultQPS, defaultBurst
	}
	own, err := newClients(c)
	if err != nil {
		return nil, err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(c)
	if err != nil {
		return nil, fmt.Errorf("apply: discovery client: %w", err)
	}
	disc := memory.NewMemCacheClient(dc)
	return &Engine{
		disc:    disc,
		opts:    opts,
		dyn:     own.dyn,
		meta:    own.meta,
		core:    own.core,
		own:     own,
		ids:     newIdentities(c),
		mapper:  restmapper.NewDeferredDiscoveryRESTMapper(disc),
		builtin: newBuiltinKinds(),
		health:  opts.HealthChecks,
		log:     log,

		inventoryNamespaceSeen: new(atomic.Bool),
	}, nil
}

// validateApp refuses app names that cannot be a label value and an object name.
func validateApp(app App) error {
	if errs := validation.IsDNS1123Label(app.Name); len(errs) > 0 {
		return fmt.Errorf("apply: invalid app name %q: %s", app.Name, errs[0])
	}
	if len(InventoryPrefix)+len(app.Name) > validation.DNS1123SubdomainMaxLength {
		return fmt.Errorf("apply: app name %q too long", app.Name)
	}
	return nil
}
