package apply

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/ferrygitops/ferry/syncer/render"
)

// Sync makes the cluster match objs for app at revision: apply what changed (stage by stage), prune
// what left Git when app.Prune is set, record the inventory, then wait until every object is
// healthy. An object that exists but is not this app's is never written: it is reported as a
// *ConflictError after the rest of the app was applied and pruned (health is then not awaited).
// Helm hooks among objs run around it as hooks.go describes: pre hooks after the first stage,
// post hooks once the app is healthy; a failing pre hook stops the sync before the rest.
// The Result is returned with errors too, filled as far as the sync got.
func (e *Engine) Sync(ctx context.Context, app App, revision string, objs []render.Object) (*Result, error) {
	if err := validateApp(app); err != nil {
		return nil, err
	}
	if app.Timeout <= 0 {
		app.Timeout = DefaultTimeout
	}
	res := &Result{Revision: revision}
	start := time.Now()

	want, err := e.prepare(ctx, app, objs)
	if err != nil {
		return res, err
	}
	if err := admit(app, want); err != nil {
		return res, err
	}
	if e, err = e.actAs(ctx, app); err != nil {
		return res, err
	}
	want, hooks := splitHooks(want)
	inv, err := e.readInventory(ctx, app.Name)
	if err != nil {
		return res, err
	}
	hr := e.newHookRun(app, inv, want, hooks)
	// The hooks to run are read and checked like the app's objects; the others are not looked at.
	check := append(slices.Clip(want), hr.toRun()...)
	live, err := e.listOwned(ctx, app.Name, resourcesOf(check, inv))
	if err != nil {
		return res, err
	}
	before, conflicts, err := e.checkOwnership(ctx, app, check, live, inv)
	if err != nil {
		return res, err
	}
	hr.takeOwnership(conflicts, before)

	var toApply []*desired
	for _, d := range want {
		if conflicts[d.id.key()] != nil {
			continue
		}
		lm, ok := before[d.id.key()]
		if needsApply(d, inv.entries[d.id.key()], lm, ok) {
			toApply = append(toApply, d)
		} else {
			res.add(d.id, ActionUnchanged, d.file)
		}
	}

	// Record intent before creating anything: an object ferry may create is in the inventory first,
	// so a crash between apply and the final inventory write cannot leave an object ferry will
	// never prune. The empty hash makes the next sync apply it again.
	next := inv.clone()
	hr.begin(next)
	grew := false
	for _, d := range toApply {
		if _, ok := next.entries[d.id.key()]; !ok {
			next.entries[d.id.key()] = entryFor(d, nil)
			grew = true
		}
	}
	if grew {
		if err := e.writeInventory(ctx, app.Name, next); err != nil {
			return res, err
		}
	}

	fresh := map[string]*unstructured.Unstructured{}
	establishing, applyErr := e.applyStages(ctx, app, toApply, before, next, fresh, res, hr)
	defer establishing.stop()
	res.Durations.Apply = time.Since(start)
	if applyErr != nil {
		// Keep what was applied: the inventory must know every object ferry wrote.
		if werr := e.writeIfChanged(ctx, app.Name, inv, next); werr != nil {
			return res, errors.Join(applyErr, werr)
		}
		return res, applyErr
	}

	pruneStart := time.Now()
	desiredKeys := make(map[string]bool, len(want))
	for _, d := range want {
		desiredKeys[d.id.key()] = true
	}
	var stale []*entry
	for k, en := range inv.entries {
		if !desiredKeys[k] {
			stale = append(stale, en)
			delete(next.entries, k)
		}
	}
	var pruneErr error
	if app.Prune && len(stale) > 0 {
		var done []pruned
		var failed []*entry
		done, failed, pruneErr = e.prune(ctx, stale, live)
		// Report in deletion order: by prune group, then ID.
		slices.SortFunc(done, func(a, b pruned) int {
			if ga, gb := pruneGroup(a.en), pruneGroup(b.en); ga != gb {
				return ga - gb
			}
			return strings.Compare(a.en.id().key(), b.en.id().key())
		})
		for _, p := range done {
			if p.deleted {
				res.add(p.en.id(), ActionPruned, "")
			}
		}
		for _, en := range failed {
			next.entries[en.id().key()] = en
		}
	}
	if pruneErr == nil {
		next.revision = revision
		if len(hr.toRun()) == 0 {
			hr.finish(next)
		}
	}
	werr := e.writeIfChanged(ctx, app.Name, inv, next)
	res.Durations.Prune = time.Since(pruneStart)
	if pruneErr != nil || werr != nil {
		return res, errors.Join(pruneErr, werr)
	}
	if len(conflicts) > 0 {
		return res, conflictErr(conflicts)
	}

	healthStart := time.Now()
	err = establishing.join(fresh)
	if err == nil {
		err = e.waitHealthy(ctx, app, want, fresh)
	}
	res.Durations.Health = time.Since(healthStart)
	if err == nil && len(hr.toRun()) > 0 {
		// Post hooks once the app is healthy; then their hashes, and the others', are recorded.
		hooksBefore := maps.Clone(next.hooks)
		if err = hr.run(ctx, false, next, res); err == nil {
			hr.finish(next)
		}
		if !maps.Equal(hooksBefore, next.hooks) {
			err = errors.Join(err, e.writeInventory(ctx, app.Name, next))
		}
	}
	e.log.InfoContext(ctx, "sync", "app", app.Name, "revision", revision, "created", res.Created,
		"configured", res.Configured, "unchanged", res.Unchanged, "pruned", res.Pruned, "hooks", res.Hooks,
		"apply", res.Durations.Apply, "prune", res.Durations.Prune, "health", res.Durations.Health, "error", err)
	return res, err
}

// applyStages applies toApply stage by stage, recording every success in next and res. After a
// stage that applied CRDs, the discovery cache is reset once they are established, so the custom
// resources of later stages (and later syncs) find their kinds. The establishment is waited for
// before the next stage only if a later stage holds a kind the CRDs define; otherwise the rest of
// the sync goes on while the apiserver establishes them, which for large CRDs takes seconds, and
// the returned wait is joined before the health wait (or stopped).
func (e *Engine) applyStages(ctx context.Context, app App, toApply []*desired, before map[string]liveMeta,
	next *inventory, fresh map[string]*unstructured.Unstructured, res *Result, hr *hookRun) (*crdWait, error) {
	var bg *crdWait
	for stage := range numStages {
		if stage == stageRest {
			// Pre hooks run between the first stage and the rest, and must succeed.
			if err := hr.run(ctx, true, next, res); err != nil {
				return bg, err
			}
		}
		var batch []*desired
		for _, d := range toApply {
			if d.stage == stage {
				batch = append(batch, d)
			}
		}
		if len(batch) == 0 {
			continue
		}
		done, err := e.applyObjects(ctx, batch, before)
		slices.SortFunc(done, func(a, b applied) int { return strings.Compare(a.d.id.key(), b.d.id.key()) })
		var crds []*desired
		for _, a := range done {
			next.entries[a.d.id.key()] = entryFor(a.d, a.live)
			fresh[a.d.id.key()] = a.live
			res.add(a.d.id, a.action, a.d.file)
			if a.d.id.Group == crdGK.Group && a.d.id.Kind == crdGK.Kind {
				crds = append(crds, a.d)
			}
		}
		if err != nil {
			return bg, err
		}
		if len(crds) == 0 {
			continue
		}
		if bg == nil && !neededLater(crds, append(slices.Clip(toApply), hr.toRun()...), stage) {
			bg = e.startWaitEstablished(ctx, app.Name, crds, fresh)
			continue
		}
		if err := e.waitEstablished(ctx, app.Name, crds, fresh); err != nil {
			return bg, err
		}
		e.mapper.Reset()
	}
	return bg, nil
}

// neededLater reports whether an object of a stage after stage has a kind that one of crds
// defines, and so cannot be applied before they are established.
func neededLater(crds []*desired, toApply []*desired, stage int) bool {
	kinds := map[schema.GroupKind]bool{}
	for _, d := range crds {
		g, _, _ := unstructured.NestedString(d.obj.Object, "spec", "group")
		k, _, _ := unstructured.NestedString(d.obj.Object, "spec", "names", "kind")
		kinds[schema.GroupKind{Group: g, Kind: k}] = true
	}
	for _, d := range toApply {
		if d.stage > stage && kinds[schema.GroupKind{Group: d.id.Group, Kind: d.id.Kind}] {
			return true
		}
	}
	return false
}

// writeIfChanged writes next unless it is what was read, so an unchanged re-sync writes nothing.
func (e *Engine) writeIfChanged(ctx context.Context, app string, read, next *inventory) error {
	if next.equal(read) {
		return nil
	}
	return e.writeInventory(ctx, app, next)
}

// checkOwnership finds out about desired objects the owned LIST did not return: they are either
// absent (to be created), or exist without this app's label. The latter are conflicts, except an
// object whose UID the inventory recorded: ferry created it and someone removed the label, which is
// drift to repair. It returns the live metadata of every desired object that exists, and the
// conflicts by ID key. A conflicting object is left alone while the rest of the app is applied and
// pruned: an object moving between apps must not stall the app giving up another one, or chains of
// moves (a→b while c→a) would never converge.
func (e *Engine) checkOwnership(ctx context.Context, app App, want []*desired, live map[string]liveMeta, inv *inventory) (map[string]liveMeta, map[string]*ConflictError, error) {
	var unknown []*desired
	for _, d := range want {
		if _, ok := live[d.id.key()]; !ok {
			unknown = append(unknown, d)
		}
	}
	before := make(map[string]liveMeta, len(live))
	for k, v := range live {
		before[k] = v
	}
	conflicts := map[string]*ConflictError{}
	if len(unknown) == 0 {
		return before, conflicts, nil
	}
	found, err := e.lookup(ctx, unknown)
	if err != nil {
		return nil, nil, err
	}
	for _, d := range unknown {
		lm, ok := found[d.id.key()]
		if !ok {
			continue
		}
		if en, inInv := inv.entries[d.id.key()]; inInv && en.UID != "" && en.UID == lm.uid {
			before[d.id.key()] = lm
			continue
		}
		conflicts[d.id.key()] = &ConflictError{Object: d.id.String(), File: d.file, App: app.Name, Owner: lm.labels[LabelApp]}
	}
	return before, conflicts, nil
}

// conflictErr joins conflicts in ID order.
func conflictErr(conflicts map[string]*ConflictError) error {
	keys := make([]string, 0, len(conflicts))
	for k := range conflicts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	errs := make([]error, 0, len(keys))
	for _, k := range keys {
		errs = append(errs, conflicts[k])
	}
	return joinErrs(errs)
}

// needsApply decides, without reading the object, whether it must be applied: it is missing, not in
// the inventory, its desired hash changed, or the live object moved since ferry applied it. "Moved"
// uses metadata.generation for kinds that have one, which ignores status and metadata writes by
// controllers; kinds without a generation use resourceVersion, which any write changes, costing at
// most one extra no-op apply after a controller writes. Labels and annotations do not bump the
// generation, so ferry's declared ones are also compared to the live ones (extra ones are ignored).
func needsApply(d *desired, en *entry, lm liveMeta, live bool) bool {
	switch {
	case !live, en == nil, lm.deleting:
		return true
	case en.Hash != d.hash, en.Version != d.m.gvr.Version, en.UID != lm.uid:
		return true
	case en.Generation != 0 && lm.generation != en.Generation:
		return true
	case en.Generation == 0 && lm.resourceVersion != en.ResourceVersion:
		return true
	}
	for k, v := range d.obj.GetLabels() {
		if lv, ok := lm.labels[k]; !ok || lv != v {
			return true
		}
	}
	for k, v := range d.obj.GetAnnotations() {
		if lv, ok := lm.annotations[k]; !ok || lv != v {
			return true
		}
	}
	return false
}

// entryFor makes the inventory entry of d; live is the apply response, nil to record intent only.
func entryFor(d *desired, live *unstructured.Unstructured) *entry {
	en := &entry{
		Group: d.id.Group, Version: d.m.gvr.Version, Kind: d.id.Kind, Resource: d.m.gvr.Resource,
		Namespaced: d.m.namespaced, Namespace: d.id.Namespace, Name: d.id.Name, Stage: d.stage,
	}
	if live != nil {
		en.Hash = d.hash
		en.UID = string(live.GetUID())
		en.Generation = live.GetGeneration()
		en.ResourceVersion = live.GetResourceVersion()
	}
	return en
}

// resourcesOf lists the resources to read live: those of the desired objects and of the inventory.
func resourcesOf(want []*desired, inv *inventory) []mapping {
	seen := map[string]bool{}
	var out []mapping
	add := func(m mapping) {
		k := m.gvr.Group + "/" + m.gvr.Resource
		if !seen[k] {
			seen[k] = true
			out = append(out, m)
		}
	}
	for _, d := range want {
		add(d.m)
	}
	for _, en := range inv.sorted() {
		add(en.mapping())
	}
	return out
}
