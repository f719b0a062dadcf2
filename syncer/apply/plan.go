package apply

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/wI2L/jsondiff"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/ferrygitops/ferry/syncer/render"
)

// StagePlan names errors of a preview's server-side dry-run.
const StagePlan = "plan"

// maskedValue stands for a Secret's value in a plan; a plan is shown on pull requests.
const maskedValue = "***"

// PlanAction is what applying a commit would do to one object.
type PlanAction string

// Plan actions.
const (
	PlanCreate    PlanAction = "create"
	PlanChange    PlanAction = "change"
	PlanUnchanged PlanAction = "unchanged"
	PlanPrune     PlanAction = "prune"
	// PlanHook: a Helm hook the sync would run (dry-run as created; a plan never runs it).
	PlanHook PlanAction = "hook"
)

// FieldChange is one field a change would set, add or remove, at a JSON pointer.
type FieldChange struct {
	Op   string `json:"op"` // add, remove, replace
	Path string `json:"path"`
	Old  any    `json:"old,omitempty"`
	New  any    `json:"new,omitempty"`
}

// PlanEntry is one object of a plan.
type PlanEntry struct {
	ID     ID
	File   string
	Action PlanAction
	// Fields lists the field-level changes of a PlanChange, Secret values masked.
	Fields []FieldChange
	// Unvalidated marks a PlanCreate of a custom resource whose CRD is new in the change: the
	// cluster cannot dry-run a kind it does not serve yet, so the apiserver has not checked it.
	Unvalidated bool
	// Hook is the phase a PlanHook runs in, e.g. "pre-upgrade".
	Hook string `json:",omitempty"`
}

// Plan is what syncing an app at a commit would do, computed with server-side dry-runs: the
// apiserver runs its defaulting, validation and admission, and nothing is written.
type Plan struct {
	Created, Changed, Unchanged, Pruned int
	// Unvalidated counts the created objects that could not be dry-run (see PlanEntry).
	Unvalidated int
	// Hooks counts the Helm hooks the sync would run.
	Hooks   int `json:",omitempty"`
	Entries []PlanEntry
}

// Summary is the plan in one line, as a commit status says it.
func (p *Plan) Summary() string {
	s := fmt.Sprintf("%d changed, %d created, %d pruned", p.Changed, p.Created, p.Pruned)
	if p.Unvalidated > 0 {
		s += fmt.Sprintf("; %d not validated (new CRDs)", p.Unvalidated)
	}
	if p.Hooks > 0 {
		s += fmt.Sprintf("; %d hooks would run", p.Hooks)
	}
	return s
}

// Plan dry-runs objs for app against the cluster and compares the result with the live objects.
// It writes nothing: every request is a dryRun=All one, and the inventory is only read. An
// object the apiserver rejects makes the plan fail with an *Error naming it. Objects the app does
// not own are planned as created whether they exist or not (see planNew): the plan tells nothing
// about objects outside the app, and conflicts with them surface when the commit is deployed.
// Custom resources of a kind that only a CRD among objs defines cannot be dry-run: they are
// planned as created and marked Unvalidated. The Helm hooks a sync would run are listed last,
// as PlanHook entries in run order, dry-run as created and never run.
func (e *Engine) Plan(ctx context.Context, app App, objs []render.Object) (*Plan, error) {
	if err := validateApp(app); err != nil {
		return nil, err
	}
	want, err := e.prepare(ctx, app, objs)
	if err != nil {
		return nil, err
	}
	if err := admit(app, want); err != nil {
		return nil, err
	}
	if e, err = e.actAs(ctx, app); err != nil {
		return nil, err
	}
	want, hooks := splitHooks(want)
	inv, err := e.readInventory(ctx, app.Name)
	if err != nil {
		return nil, err
	}
	hr := e.newHookRun(app, inv, want, hooks)
	unserved, err := e.unserved(append(slices.Clip(want), hr.toRun()...))
	if err != nil {
		return nil, err
	}
	var (
		mu      sync.Mutex
		entries = make([]PlanEntry, 0, len(want))
		errs    []error
	)
	e.parallel(len(want), func(i int) {
		d := want[i]
		if unserved[d.obj.GroupVersionKind()] {
			mu.Lock()
			defer mu.Unlock()
			entries = append(entries, PlanEntry{ID: d.id, File: d.file, Action: PlanCreate, Unvalidated: true})
			return
		}
		entry, err := e.planOne(ctx, app, inv, d)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs = append(errs, err)
			return
		}
		entries = append(entries, entry)
	})
	if len(errs) > 0 {
		return nil, joinErrs(errs)
	}
	p := &Plan{}
	desiredKeys := make(map[string]bool, len(want))
	for _, d := range want {
		desiredKeys[d.id.key()] = true
	}
	if app.Prune {
		for k, en := range inv.entries {
			if !desiredKeys[k] {
				entries = append(entries, PlanEntry{ID: en.id(), Action: PlanPrune})
			}
		}
	}
	slices.SortFunc(entries, func(a, b PlanEntry) int { return strings.Compare(a.ID.key(), b.ID.key()) })
	for _, en := range entries {
		switch en.Action {
		case PlanCreate:
			p.Created++
			if en.Unvalidated {
				p.Unvalidated++
			}
		case PlanChange:
			p.Changed++
		case PlanUnchanged:
			p.Unchanged++
		case PlanPrune:
			p.Pruned++
		}
	}
	// Hooks last, in the order they would run.
	hookEntries, err := e.planHooks(ctx, hr, unserved)
	if err != nil {
		return nil, err
	}
	for _, en := range hookEntries {
		p.Hooks++
		if en.Unvalidated {
			p.Unvalidated++
		}
	}
	p.Entries = append(entries, hookEntries...)
	return p, nil
}

// unserved tells, for each kind of want that a CRD among the planned objects defines, whether the
// cluster does not serve it yet (at the object's version). A kind missing from discovery resets
// the discovery cache once, as its CRD may have been installed since the cache was filled.
func (e *Engine) unserved(want []*desired) (map[schema.GroupVersionKind]bool, error) {
	out := map[schema.GroupVersionKind]bool{}
	reset := false
	for _, d := range want {
		gvk := d.obj.GroupVersionKind()
		if _, seen := out[gvk]; seen || !d.definedHere {
			continue
		}
		_, err := e.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if meta.IsNoMatchError(err) && !reset {
			reset = true
			e.mapper.Reset()
			_, err = e.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		}
		switch {
		case err == nil:
			out[gvk] = false
		case meta.IsNoMatchError(err):
			out[gvk] = true
		default:
			return nil, objectError(StagePlan, d.id.String(), d.file, err)
		}
	}
	return out, nil
}

// planOne plans one object. Only an object the app owns is compared with its live state; any
// other one is planned as new, whether it exists or not (see planNew).
func (e *Engine) planOne(ctx context.Context, app App, inv *inventory, d *desired) (PlanEntry, error) {
	entry := PlanEntry{ID: d.id, File: d.file}
	res := e.dyn.Resource(d.m.gvr).Namespace(d.id.Namespace)
	live, err := res.Get(ctx, d.id.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		live = nil
	case err != nil:
		return entry, objectError(StagePlan, d.id.String(), d.file, err)
	}
	if live == nil || !owned(app, inv, d, live) {
		return e.planNew(ctx, d, entry)
	}
	dry, err := res.Apply(ctx, d.id.Name, d.obj, metav1.ApplyOptions{FieldManager: e.opts.FieldManager, Force: true, DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		return entry, objectError(StagePlan, d.id.String(), d.file, err)
	}
	fields, err := fieldChanges(live, dry, d.id.Kind == "Secret" && d.id.Group == "")
	if err != nil {
		return entry, objectError(StagePlan, d.id.String(), d.file, err)
	}
	entry.Action, entry.Fields = PlanUnchanged, fields
	if len(fields) > 0 {
		entry.Action = PlanChange
	}
	return entry, nil
}

// owned reports whether live is app's to change, as Sync decides it: it carries the app's label,
// or it is the very object (same UID) the app's inventory recorded creating.
func owned(app App, inv *inventory, d *desired, live *unstructured.Unstructured) bool {
	if live.GetLabels()[LabelApp] == app.Name {
		return true
	}
	en, ok := inv.entries[d.id.key()]
	return ok && en.UID != "" && en.UID == string(live.GetUID())
}

// planNew plans an object the app does not own: absent, someone else's, or another app's. A plan
// is shown to whoever opened the pull request, who may name any object in the cluster, so its
// answer must not depend on whether such an object exists. It is a dry-run create, which the
// apiserver runs through admission, defaulting and validation before it looks for an existing
// object: every answer up to that point is the same for an absent and an existing object, and the
// final "already exists" is taken as success. The object is planned as created either way; the
// deploy itself still refuses to write an object the app does not own (ConflictError).
func (e *Engine) planNew(ctx context.Context, d *desired, entry PlanEntry) (PlanEntry, error) {
	res := e.dyn.Resource(d.m.gvr).Namespace(d.id.Namespace)
	_, err := res.Create(ctx, d.obj, metav1.CreateOptions{FieldManager: e.opts.FieldManager, DryRun: []string{metav1.DryRunAll},
		FieldValidation: metav1.FieldValidationStrict})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return entry, objectError(StagePlan, d.id.String(), d.file, err)
	}
	entry.Action = PlanCreate
	return entry, nil
}

// fieldChanges compares a live object with its dry-run result, leaving out what the server
// maintains (metadata bookkeeping, status), and masks Secret values.
func fieldChanges(live, dry *unstructured.Unstructured, secret bool) ([]FieldChange, error) {
	a, b := normalized(live), normalized(dry)
	patch, err := jsondiff.Compare(a, b, jsondiff.Invertible())
	if err != nil {
		return nil, fmt.Errorf("diff: %w", err)
	}
	var out []FieldChange
	for _, op := range patch {
		if op.Type == "test" {
			continue
		}
		fc := FieldChange{Op: op.Type, Path: op.Path, Old: op.OldValue, New: op.Value}
		if secret && (strings.HasPrefix(op.Path, "/data") || strings.HasPrefix(op.Path, "/stringData")) {
			fc.Old, fc.New = maskAll(fc.Old), maskAll(fc.New)
		}
		out = append(out, fc)
	}
	return out, nil
}

// maskAll replaces every leaf value with the mask, keeping the shape (which keys changed).
func maskAll(v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, vv := range x {
			out[k] = maskAll(vv)
		}
		return out
	}
	return maskedValue
}

func normalized(u *unstructured.Unstructured) map[string]any {
	c := u.DeepCopy().Object
	unstructured.RemoveNestedField(c, "status")
	for _, f := range []string{"resourceVersion", "uid", "creationTimestamp", "managedFields", "generation", "selfLink"} {
		unstructured.RemoveNestedField(c, "metadata", f)
	}
	unstructured.RemoveNestedField(c, "metadata", "annotations", "kubectl.kubernetes.io/last-applied-configuration")
	if ann, ok, _ := unstructured.NestedMap(c, "metadata", "annotations"); ok && len(ann) == 0 {
		unstructured.RemoveNestedField(c, "metadata", "annotations")
	}
	return c
}

// Text renders the plan for people: one line per object, indented field changes below.
func (p *Plan) Text() string {
	var b strings.Builder
	for _, en := range p.Entries {
		sign := map[PlanAction]string{PlanCreate: "+", PlanChange: "~", PlanUnchanged: "=", PlanPrune: "-", PlanHook: "*"}[en.Action]
		fmt.Fprintf(&b, "%s %s", sign, en.ID)
		if en.File != "" {
			fmt.Fprintf(&b, "  (%s)", en.File)
		}
		fmt.Fprintf(&b, "  %s", en.Action)
		if en.Hook != "" {
			fmt.Fprintf(&b, " (%s, dry-run only)", en.Hook)
		}
		if en.Unvalidated {
			b.WriteString(" (not validated: its CRD is new in this change)")
		}
		b.WriteString("\n")
		for _, f := range en.Fields {
			switch f.Op {
			case "add":
				fmt.Fprintf(&b, "    + %s: %s\n", f.Path, compact(f.New))
			case "remove":
				fmt.Fprintf(&b, "    - %s: %s\n", f.Path, compact(f.Old))
			default:
				fmt.Fprintf(&b, "    ~ %s: %s → %s\n", f.Path, compact(f.Old), compact(f.New))
			}
		}
	}
	return b.String()
}

func compact(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}
