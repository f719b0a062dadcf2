package apply

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Inventory storage. The inventory is the only state ferry keeps about what it applied: a new ferry
// with an empty database reads it back from the cluster.
const (
	// InventoryPrefix starts the name of each app's inventory ConfigMap.
	InventoryPrefix = "ferry-inventory-"
	// LabelInventory marks inventory ConfigMaps with the app they belong to. It is deliberately not
	// LabelApp: the inventory is not one of the app's objects and must never be pruned with them.
	LabelInventory = "ferry.dev/inventory-of"
	inventoryKey   = "inventory.json.gz"
	revisionKey    = "revision"
	// hooksKey holds the hashes of the app's Helm hooks (see hooks.go), as JSON.
	hooksKey = "hooks"
	// maxInventoryBytes stays under the 1 MiB ConfigMap limit with room for metadata. Entries are
	// gzipped JSON (roughly 40 bytes each compressed), so this is tens of thousands of objects.
	maxInventoryBytes = 900 << 10
)

// entry is one object ferry applied for an app, with what it takes to notice that the object needs
// applying again without reading it: the hash of what was sent, and the generation (or, for kinds
// without one, the resourceVersion) the apiserver returned.
type entry struct {
	Group      string `json:"g,omitempty"`
	Version    string `json:"v"`
	Kind       string `json:"k"`
	Resource   string `json:"r"`
	Namespaced bool   `json:"nsd,omitempty"`
	Namespace  string `json:"ns,omitempty"`
	Name       string `json:"n"`
	// Hash is the desired object's hash as last applied; "" means never applied successfully.
	Hash string `json:"h,omitempty"`
	// UID identifies the live object ferry created, to recognise it if its labels were removed.
	UID             string `json:"uid,omitempty"`
	Generation      int64  `json:"gen,omitempty"`
	ResourceVersion string `json:"rv,omitempty"`
	// Stage is the apply stage, so pruning can run in reverse order.
	Stage int `json:"st,omitempty"`
}

func (en *entry) id() ID {
	return ID{Group: en.Group, Kind: en.Kind, Namespace: en.Namespace, Name: en.Name}
}

func (en *entry) mapping() mapping {
	return mapping{
		gvr:        schema.GroupVersionResource{Group: en.Group, Version: en.Version, Resource: en.Resource},
		kind:       en.Kind,
		namespaced: en.Namespaced,
	}
}

// inventory is an app's inventory as read from (or to be written to) the cluster.
type inventory struct {
	revision string
	entries  map[string]*entry // by ID key
	// hooks are the hashes of the app's Helm hooks by ID key, as they were when the hooks last
	// completed: they are not objects to keep, prune or repair, only what decides whether a sync
	// runs its hooks again.
	hooks map[string]string
	// resourceVersion of the ConfigMap read, for an optimistic-concurrency update; "" if absent.
	resourceVersion string
}

func inventoryName(app string) string { return InventoryPrefix + app }

// sorted returns the entries in ID order, the order they are stored in.
func (inv *inventory) sorted() []*entry {
	out := make([]*entry, 0, len(inv.entries))
	for _, en := range inv.entries {
		out = append(out, en)
	}
	slices.SortFunc(out, func(a, b *entry) int { return strings.Compare(a.id().key(), b.id().key()) })
	return out
}

// equal reports whether two inventories would be stored identically.
func (inv *inventory) equal(o *inventory) bool {
	if inv.revision != o.revision || len(inv.entries) != len(o.entries) || !maps.Equal(inv.hooks, o.hooks) {
		return false
	}
	for k, a := range inv.entries {
		b, ok := o.entries[k]
		if !ok || *a != *b {
			return false
		}
	}
	return true
}

// clone copies an inventory so the copy can be edited.
func (inv *inventory) clone() *inventory {
	c := &inventory{revision: inv.revision, resourceVersion: inv.resourceVersion, entries: make(map[string]*entry, len(inv.entries)),
		hooks: maps.Clone(inv.hooks)}
	for k, en := range inv.entries {
		cp := *en
		c.entries[k] = &cp
	}
	return c
}

// distrust says why cm cannot be the inventory ferry wrote for app, or "" if it can. An inventory
// decides what ferry prunes and which unlabelled objects it repairs as its own, so it is trusted
// only as ferry writes it: labelled as app's inventory and not as an app's object, and written
// with create and update requests by ferry's field manager, never server-side applied. Objects an
// app declares are server-side applied (by the same field manager) and carry the app label.
func (e *Engine) distrust(cm *corev1.ConfigMap, app string) string {
	labels := cm.GetLabels()
	switch {
	case labels[LabelManagedBy] != ManagedByValue:
		return fmt.Sprintf("it lacks the label %s=%s", LabelManagedBy, ManagedByValue)
	case labels[LabelInventory] != app:
		return fmt.Sprintf("it lacks the label %s=%s", LabelInventory, app)
	case labels[LabelApp] != "":
		return fmt.Sprintf("it is an object of app %s (label %s)", labels[LabelApp], LabelApp)
	}
	written := false
	for _, mf := range cm.GetManagedFields() {
		switch {
		case mf.Operation == metav1.ManagedFieldsOperationApply:
			return fmt.Sprintf("field manager %s server-side applied it", mf.Manager)
		case mf.Manager == e.opts.FieldManager && mf.Operation == metav1.ManagedFieldsOperationUpdate:
			written = true
		}
	}
	if !written {
		return "field manager " + e.opts.FieldManager + " did not write it"
	}
	return ""
}

// readInventory fetches the app's inventory: one GET. A missing inventory is an empty one.
func (e *Engine) readInventory(ctx context.Context, app string) (*inventory, error) {
	inv := &inventory{entries: map[string]*entry{}}
	cm, err := e.own.core.ConfigMaps(e.opts.InventoryNamespace).Get(ctx, inventoryName(app), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return inv, nil
	}
	if err != nil {
		return nil, objectError(StageInventory, "ConfigMap "+e.opts.InventoryNamespace+"/"+inventoryName(app), "", err)
	}
	if why := e.distrust(cm, app); why != "" {
		return nil, &Error{Stage: StageInventory, Object: "ConfigMap " + e.opts.InventoryNamespace + "/" + inventoryName(app),
			Message: fmt.Sprintf("not trusted as the inventory of app %s: %s; ferry did not write it (delete it, and the next sync writes a new one)", app, why)}
	}
	inv.resourceVersion = cm.ResourceVersion
	inv.revision = cm.Data[revisionKey]
	if raw := cm.Data[hooksKey]; raw != "" {
		if err := json.Unmarshal([]byte(raw), &inv.hooks); err != nil {
			return nil, fmt.Errorf("inventory of app %s: hooks: %w", app, err)
		}
	}
	raw := cm.BinaryData[inventoryKey]
	if len(raw) == 0 {
		return inv, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("inventory of app %s: %w", app, err)
	}
	data, err := io.ReadAll(io.LimitReader(zr, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("inventory of app %s: %w", app, err)
	}
	var list []*entry
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("inventory of app %s: %w", app, err)
	}
	for _, en := range list {
		inv.entries[en.id().key()] = en
	}
	return inv, nil
}

// ensureInventoryNamespace creates the namespace holding inventories unless it exists.
func (e *Engine) ensureInventoryNamespace(ctx context.Context) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.opts.InventoryNamespace,
		Labels: map[string]string{LabelManagedBy: ManagedByValue}}}
	if _, err := e.own.core.Namespaces().Create(ctx, ns, metav1.CreateOptions{FieldManager: e.opts.FieldManager}); err != nil && !apierrors.IsAlreadyExists(err) {
		return objectError(StageInventory, "Namespace "+e.opts.InventoryNamespace, "", err)
	}
	e.inventoryNamespaceSeen.Store(true)
	return nil
}

// encode is the inventory's stored form: its entries as gzipped JSON, in ID order.
func (inv *inventory) encode() ([]byte, error) {
	data, err := json.Marshal(inv.sorted())
	if err != nil {
		return nil, fmt.Errorf("encode inventory: %w", err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		return nil, fmt.Errorf("compress inventory: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compress inventory: %w", err)
	}
	return buf.Bytes(), nil
}

// writeInventory stores inv, creating the ConfigMap (and the inventory namespace) if needed. The
// update carries the resourceVersion read, so two writers cannot silently overwrite each other: the
// loser gets a conflict, which IsTransient classifies as retryable. It writes with create and update
// requests, never with server-side apply: that is how readInventory tells ferry's inventories from
// objects an app applied.
func (e *Engine) writeInventory(ctx context.Context, app string, inv *inventory) error {
	raw, err := inv.encode()
	if err != nil {
		return err
	}
	if len(raw) > maxInventoryBytes {
		return &Error{Stage: StageInventory, Object: "app " + app, Message: fmt.Sprintf("inventory of %d objects is too large (%d bytes compressed)", len(inv.entries), len(raw))}
	}
	data := map[string]string{revisionKey: inv.revision}
	if len(inv.hooks) > 0 {
		hooks, err := json.Marshal(inv.hooks)
		if err != nil {
			return fmt.Errorf("encode inventory hooks: %w", err)
		}
		data[hooksKey] = string(hooks)
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name:            inventoryName(app),
			Namespace:       e.opts.InventoryNamespace,
			ResourceVersion: inv.resourceVersion,
			Labels:          map[string]string{LabelManagedBy: ManagedByValue, LabelInventory: app},
		},
		Data:       data,
		BinaryData: map[string][]byte{inventoryKey: raw},
	}
	name := "ConfigMap " + e.opts.InventoryNamespace + "/" + inventoryName(app)
	cms := e.own.core.ConfigMaps(e.opts.InventoryNamespace)
	var out *corev1.ConfigMap
	if inv.resourceVersion != "" {
		out, err = cms.Update(ctx, cm, metav1.UpdateOptions{FieldManager: e.opts.FieldManager})
	} else {
		// The first inventory this engine creates makes sure of its namespace first: a create in a
		// missing namespace is refused only after the apiserver's admission has waited for it.
		if !e.inventoryNamespaceSeen.Load() {
			if err := e.ensureInventoryNamespace(ctx); err != nil {
				return err
			}
		}
		out, err = cms.Create(ctx, cm, metav1.CreateOptions{FieldManager: e.opts.FieldManager})
		if apierrors.IsNotFound(err) {
			// Deleted since: create it again.
			if err := e.ensureInventoryNamespace(ctx); err != nil {
				return err
			}
			out, err = cms.Create(ctx, cm, metav1.CreateOptions{FieldManager: e.opts.FieldManager})
		}
	}
	if err != nil {
		return objectError(StageInventory, name, "", err)
	}
	inv.resourceVersion = out.ResourceVersion
	return nil
}

// checkNotInventory refuses an object an app declares in the inventory namespace that is named or
// labelled like an inventory: applied, it could pass for another app's inventory (or be taken for
// one by people), telling ferry to prune or take over objects. obj has its final namespace.
func (e *Engine) checkNotInventory(obj *unstructured.Unstructured, file string) error {
	if obj.GetNamespace() != e.opts.InventoryNamespace {
		return nil
	}
	_, labelled := obj.GetLabels()[LabelInventory]
	if !labelled && !strings.HasPrefix(obj.GetName(), InventoryPrefix) {
		return nil
	}
	gvk := obj.GroupVersionKind()
	return &Error{Stage: StagePrepare, File: file,
		Object: ID{Group: gvk.Group, Kind: gvk.Kind, Namespace: obj.GetNamespace(), Name: obj.GetName()}.String(),
		Message: fmt.Sprintf("namespace %s holds ferry's inventories: an app may not declare objects there named %s… or labelled %s",
			e.opts.InventoryNamespace, InventoryPrefix, LabelInventory)}
}
