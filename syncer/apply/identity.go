package apply

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/dynamic"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
)

// MaxIdentities bounds the impersonating client sets an Engine keeps, one per service account in
// use. Past it the least recently used set is dropped (and built again when next needed): a set
// holds no connection of its own (the transport is shared), only its clients and rate limiter.
const MaxIdentities = 256

// clients are the three ways the engine talks to the apiserver, all as one identity.
type clients struct {
	dyn  dynamic.Interface
	meta metadata.Interface
	core corev1client.CoreV1Interface
}

func newClients(c *rest.Config) (clients, error) {
	dyn, err := dynamic.NewForConfig(c)
	if err != nil {
		return clients{}, fmt.Errorf("apply: dynamic client: %w", err)
	}
	mc, err := metadata.NewForConfig(c)
	if err != nil {
		return clients{}, fmt.Errorf("apply: metadata client: %w", err)
	}
	core, err := corev1client.NewForConfig(c)
	if err != nil {
		return clients{}, fmt.Errorf("apply: core client: %w", err)
	}
	return clients{dyn: dyn, meta: mc, core: core}, nil
}

// identities caches the client sets that impersonate service accounts, by user name.
type identities struct {
	base *rest.Config
	mu   sync.Mutex
	sets map[string]*identitySet
	tick uint64
}

type identitySet struct {
	c    clients
	used uint64
}

func newIdentities(base *rest.Config) *identities {
	return &identities{base: base, sets: map[string]*identitySet{}}
}

// get returns the client set acting as user, building it on first use.
func (ids *identities) get(user string) (clients, error) {
	ids.mu.Lock()
	defer ids.mu.Unlock()
	ids.tick++
	if s, ok := ids.sets[user]; ok {
		s.used = ids.tick
		return s.c, nil
	}
	c := rest.CopyConfig(ids.base)
	c.Impersonate = rest.ImpersonationConfig{UserName: user}
	cs, err := newClients(c)
	if err != nil {
		return clients{}, err
	}
	if len(ids.sets) >= MaxIdentities {
		var oldest string
		var at uint64
		for u, s := range ids.sets {
			if oldest == "" || s.used < at {
				oldest, at = u, s.used
			}
		}
		delete(ids.sets, oldest)
	}
	ids.sets[user] = &identitySet{c: cs, used: ids.tick}
	return cs, nil
}

// ServiceAccountRef resolves an app's ServiceAccount ("name" in the app's namespace, or
// "namespace/name") to its namespace and name, refusing what cannot name a service account.
func ServiceAccountRef(sa, appNamespace string) (namespace, name string, err error) {
	namespace, name = appNamespace, sa
	if ns, n, ok := strings.Cut(sa, "/"); ok {
		namespace, name = ns, n
	}
	if namespace == "" {
		return "", "", fmt.Errorf("service account %q: no namespace (write namespace/name, or give the app a namespace)", sa)
	}
	if errs := validation.IsDNS1123Label(namespace); len(errs) > 0 {
		return "", "", fmt.Errorf("service account %q: invalid namespace: %s", sa, errs[0])
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return "", "", fmt.Errorf("service account %q: invalid name: %s", sa, errs[0])
	}
	return namespace, name, nil
}

// ServiceAccountError is a sync of an app whose service account does not exist. It is
// permanent: the account must be created (or the app's setting fixed) before a retry can work.
type ServiceAccountError struct {
	Namespace, Name string
}

// Error implements error: "service account team-a/deployer does not exist".
func (e *ServiceAccountError) Error() string {
	return "service account " + e.Namespace + "/" + e.Name + " does not exist"
}

// actAs returns the engine acting for app: itself when the app names no service account, else
// a copy whose acting clients impersonate it (sharing the discovery cache, the mapper and the
// engine's own clients). The account is checked to exist with the engine's own identity first, so
// that a missing one fails clearly rather than as a puzzling "forbidden".
func (e *Engine) actAs(ctx context.Context, app App) (*Engine, error) {
	if app.ServiceAccount == "" {
		return e, nil
	}
	ns, name, err := ServiceAccountRef(app.ServiceAccount, app.Namespace)
	if err != nil {
		return nil, &Error{Stage: StagePrepare, Object: "app " + app.Name, Message: err.Error(), Err: errPermanent}
	}
	if _, err := e.own.core.ServiceAccounts(ns).Get(ctx, name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		return nil, &ServiceAccountError{Namespace: ns, Name: name}
	} else if err != nil {
		return nil, objectError(StagePrepare, "ServiceAccount "+ns+"/"+name, "", err)
	}
	user := ServiceAccountUser(ns, name)
	cs, err := e.ids.get(user)
	if err != nil {
		return nil, err
	}
	c := *e
	c.dyn, c.meta, c.core, c.identity = cs.dyn, cs.meta, cs.core, user
	return &c, nil
}

// errPermanent marks errors that no retry can fix.
var errPermanent = errors.New("permanent")

// ServiceAccountUser is the user name Kubernetes gives a service account, the one impersonated.
func ServiceAccountUser(namespace, name string) string {
	return "system:serviceaccount:" + namespace + ":" + name
}

// StagePolicy is a refusal of the app's policy (App.Admit), before anything was written.
const StagePolicy = "policy"

// Target is one object of an app as the engine would apply it, shown to App.Admit.
type Target struct {
	ID
	// File is the repository file that declares it.
	File string
	// Namespaced is the kind's scope as the cluster (or a CRD among the app's objects) defines it.
	Namespaced bool
}

// Denied is a refusal of App.Admit about one object. It is permanent.
func Denied(t Target, rule string) *Error {
	return &Error{Stage: StagePolicy, Object: t.ID.String(), File: t.File, Message: rule, Err: errPermanent}
}

// admit shows want to app.Admit.
func admit(app App, want []*desired) error {
	if app.Admit == nil {
		return nil
	}
	ts := make([]Target, 0, len(want))
	for _, d := range want {
		ts = append(ts, Target{ID: d.id, File: d.file, Namespaced: d.m.namespaced})
	}
	return app.Admit(ts)
}
