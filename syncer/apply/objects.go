package apply

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/ferrygitops/ferry/syncer/render"
)

// Labels ferry puts on every object it applies. The app label is the only ownership record on the
// object itself: ferry lists by it, prunes only what carries it, and refuses to touch what lacks it.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedByValue = "ferry"
	LabelApp       = "ferry.dev/app"
)

// Apply stages. Cluster-wide prerequisites (CRDs, Namespaces, RBAC and the other cluster-scoped
// kinds the Kubernetes API serves itself) go first, so that what follows can be admitted. Then,
// once the new CRDs are established, namespaced objects and every custom resource, whatever its
// scope or group. Admission webhooks, admission policies and API services go last: they point at
// Services and Deployments of the stage before, and a webhook whose server is not running yet
// would reject the custom resources applied beside it.
const (
	stageCluster   = 0
	stageRest      = 1
	stageAdmission = 2
	numStages      = 3
)

// ID identifies an object as the apiserver does for uniqueness: API group, kind, namespace, name.
// The version is not part of it: one object can be read at several versions.
type ID struct {
	Group, Kind, Namespace, Name string
}

// String renders the ID the way kubectl users read it, "Deployment db/api": the kind is enough in a
// message, and the group would only add noise.
func (id ID) String() string {
	if id.Namespace == "" {
		return id.Kind + " " + id.Name
	}
	return id.Kind + " " + id.Namespace + "/" + id.Name
}

// key is a compact map key and inventory sort key.
func (id ID) key() string {
	return id.Group + "/" + id.Kind + "/" + id.Namespace + "/" + id.Name
}

// mapping is what ferry needs to talk to the apiserver about a kind.
type mapping struct {
	gvr        schema.GroupVersionResource
	kind       string
	namespaced bool
}

// desired is one object to apply, fully prepared: defaulted, labelled, hashed and staged.
type desired struct {
	id    ID
	m     mapping
	obj   *unstructured.Unstructured
	file  string
	hash  string
	stage int
	// definedHere: a CRD among the objects being applied defines the kind.
	definedHere bool
	// body is obj as sent: encoded once, for the hash and the apply request both.
	body []byte
	// hook is set on a Helm hook, which runs in a phase of its own (see hooks.go).
	hook *render.Hook
}

// crdInfo is what a CRD in the desired set says about the kind it defines, so that its custom
// resources can be prepared before the CRD exists in the cluster.
type crdInfo struct {
	plural     string
	namespaced bool
	versions   []string
}

// admissionKinds are the kinds of the last stage. They act on requests for other objects:
// webhooks and API services through Services and Deployments that the stage before creates, which
// are not serving yet; policies by rules that would judge the objects they are installed with.
var admissionKinds = map[schema.GroupKind]bool{
	{Group: "admissionregistration.k8s.io", Kind: "MutatingWebhookConfiguration"}:     true,
	{Group: "admissionregistration.k8s.io", Kind: "ValidatingWebhookConfiguration"}:   true,
	{Group: "admissionregistration.k8s.io", Kind: "ValidatingAdmissionPolicy"}:        true,
	{Group: "admissionregistration.k8s.io", Kind: "ValidatingAdmissionPolicyBinding"}: true,
	{Group: "admissionregistration.k8s.io", Kind: "MutatingAdmissionPolicy"}:          true,
	{Group: "admissionregistration.k8s.io", Kind: "MutatingAdmissionPolicyBinding"}:   true,
	apiServiceGK: true,
}

var (
	crdGK        = schema.GroupKind{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}
	apiServiceGK = schema.GroupKind{Group: "apiregistration.k8s.io", Kind: "APIService"}
	namespaceGK  = schema.GroupKind{Kind: "Namespace"}
)

// builtinKinds are the kinds the Kubernetes API serves itself, as opposed to kinds served by a CRD
// or by an aggregated API server. A group name says nothing about it: gateway.networking.k8s.io
// and snapshot.storage.k8s.io are served by CRDs, like any *.x-k8s.io group.
type builtinKinds map[schema.GroupKind]bool

// newBuiltinKinds lists the built-in kinds from client-go's scheme, which registers every kind of
// every version of the Kubernetes API that this build of client-go knows, plus the two kinds of
// kube-apiserver's extension servers that it leaves out (CRDs and APIServices).
func newBuiltinKinds() builtinKinds {
	out := builtinKinds{crdGK: true, apiServiceGK: true}
	for gvk := range scheme.Scheme.AllKnownTypes() {
		out[gvk.GroupKind()] = true
	}
	return out
}

// stageOf places a kind in an apply stage. definedHere says that a CRD among the objects being
// applied defines the kind. Built-in cluster-scoped kinds go first; a custom kind, cluster-scoped
// or not, goes after the CRDs are established, so that its first apply finds it served.
func (b builtinKinds) stageOf(gk schema.GroupKind, namespaced, definedHere bool) int {
	switch {
	case gk == crdGK || gk == namespaceGK:
		return stageCluster
	case admissionKinds[gk]:
		return stageAdmission
	case definedHere || !b[gk] || namespaced:
		return stageRest
	}
	return stageCluster
}

// resolver maps kinds to resources for one sync: first from the CRDs being applied, then from
// discovery, resetting the discovery cache once per sync when a kind is unknown (a CRD may have
// been installed since it was filled).
type resolver struct {
	e     *Engine
	crds  map[schema.GroupKind]crdInfo
	reset bool
}

func (r *resolver) resolve(gvk schema.GroupVersionKind) (mapping, error) {
	if c, ok := r.crds[gvk.GroupKind()]; ok && slices.Contains(c.versions, gvk.Version) {
		return mapping{gvr: gvk.GroupVersion().WithResource(c.plural), kind: gvk.Kind, namespaced: c.namespaced}, nil
	}
	rm, err := r.e.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil && meta.IsNoMatchError(err) && !r.reset {
		r.reset = true
		r.e.mapper.Reset()
		rm, err = r.e.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		return mapping{}, err
	}
	return mapping{gvr: rm.Resource, kind: gvk.Kind, namespaced: rm.Scope.Name() == meta.RESTScopeNameNamespace}, nil
}

// crdsIn reads the kinds defined by the CRDs among objs.
func crdsIn(objs []render.Object) map[schema.GroupKind]crdInfo {
	out := map[schema.GroupKind]crdInfo{}
	for _, o := range objs {
		if o.GroupVersionKind().GroupKind() != crdGK {
			continue
		}
		group, _, _ := unstructured.NestedString(o.Object, "spec", "group")
		kind, _, _ := unstructured.NestedString(o.Object, "spec", "names", "kind")
		plural, _, _ := unstructured.NestedString(o.Object, "spec", "names", "plural")
		scope, _, _ := unstructured.NestedString(o.Object, "spec", "scope")
		vs, _, _ := unstructured.NestedSlice(o.Object, "spec", "versions")
		info := crdInfo{plural: plural, namespaced: scope != "Cluster"}
		for _, v := range vs {
			if vm, ok := v.(map[string]any); ok {
				if n, ok := vm["name"].(string); ok {
					info.versions = append(info.versions, n)
				}
			}
		}
		if kind != "" && plural != "" {
			out[schema.GroupKind{Group: group, Kind: kind}] = info
		}
	}
	return out
}

// prepare turns rendered objects into desired ones: copies them, sets the namespace (namespaced
// objects default to the app's, cluster-scoped ones get none), adds ferry's labels, hashes the
// result and assigns a stage. Every problem is reported, not just the first.
func (e *Engine) prepare(_ context.Context, app App, objs []render.Object) ([]*desired, error) {
	r := &resolver{e: e, crds: crdsIn(objs)}
	out := make([]*desired, 0, len(objs))
	seen := make(map[string]string, len(objs))
	var errs []error
	for _, o := range objs {
		obj := shallowCopy(o.Unstructured)
		gvk := obj.GroupVersionKind()
		name := ID{Group: gvk.Group, Kind: gvk.Kind, Namespace: obj.GetNamespace(), Name: obj.GetName()}.String()
		_, definedHere := r.crds[gvk.GroupKind()]
		m, err := r.resolve(gvk)
		if err != nil {
			msg := err.Error()
			if meta.IsNoMatchError(err) {
				msg = fmt.Sprintf("the cluster has no kind %s in %s (is its CRD installed?)", gvk.Kind, gvk.GroupVersion())
			}
			errs = append(errs, &Error{Stage: StagePrepare, Object: name, File: o.File, Message: msg, Err: err})
			continue
		}
		if m.namespaced {
			if obj.GetNamespace() == "" {
				if app.Namespace == "" {
					errs = append(errs, &Error{Stage: StagePrepare, Object: name, File: o.File,
						Message: "namespaced object without a namespace, and the app sets no default namespace"})
					continue
				}
				obj.SetNamespace(app.Namespace)
			}
		} else {
			obj.SetNamespace("")
		}
		if err := e.checkNotInventory(obj, o.File); err != nil {
			errs = append(errs, err)
			continue
		}
		labels := obj.GetLabels()
		if labels == nil {
			labels = map[string]string{}
		}
		labels[LabelManagedBy] = ManagedByValue
		labels[LabelApp] = app.Name
		obj.SetLabels(labels)
		// Fields the server owns have no place in an apply request.
		for _, f := range []string{"resourceVersion", "uid", "creationTimestamp", "managedFields", "generation"} {
			unstructured.RemoveNestedField(obj.Object, "metadata", f)
		}
		unstructured.RemoveNestedField(obj.Object, "status")
		d := &desired{
			id:          ID{Group: gvk.Group, Kind: gvk.Kind, Namespace: obj.GetNamespace(), Name: obj.GetName()},
			m:           m,
			obj:         obj,
			file:        o.File,
			stage:       e.builtin.stageOf(gvk.GroupKind(), m.namespaced, definedHere),
			definedHere: definedHere,
			hook:        o.Hook,
		}
		if first, dup := seen[d.id.key()]; dup {
			errs = append(errs, &Error{Stage: StagePrepare, Object: d.id.String(), File: o.File,
				Message: "declared twice, also in " + first})
			continue
		}
		seen[d.id.key()] = o.File
		body, h, err := hashObject(obj)
		if err != nil {
			errs = append(errs, &Error{Stage: StagePrepare, Object: d.id.String(), File: o.File, Message: err.Error(), Err: err})
			continue
		}
		d.body, d.hash = body, h
		out = append(out, d)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	slices.SortFunc(out, func(a, b *desired) int { return strings.Compare(a.id.key(), b.id.key()) })
	return out, nil
}

// hashObject encodes the object as it is sent and fingerprints that encoding. encoding/json sorts
// map keys, so equal objects hash equally whatever their YAML key order was.
func hashObject(u *unstructured.Unstructured) ([]byte, string, error) {
	b, err := json.Marshal(u.Object)
	if err != nil {
		return nil, "", fmt.Errorf("encode object: %w", err)
	}
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:16]), nil
}
