package apply

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ferrygitops/ferry/syncer/render"
)

// Helm hooks. A chart's hooks are objects run around a release change rather than kept: pre hooks
// after the first stage (Namespaces and CRDs, so a hook may live in a namespace the app creates)
// and before the rest, post hooks once the app's objects are healthy. Each hook is applied and
// awaited (a Job until it completes) before the next one, in weight order. An app whose inventory
// has never recorded a completed sync is installed and runs its install hooks; any later sync is an
// upgrade and runs its upgrade hooks, but only when Git changed something: an object to create,
// change or remove, or a hook of the event whose content differs from the one that last
// completed. A re-sync that only repairs drift (self-heal, start-up) runs no hook.
//
// Hooks are not kept like the app's objects: they are not in the inventory's entries, never
// pruned, never repaired. The inventory keeps only their hashes as they were when the hooks last
// completed; a run that did not complete leaves the hashes of its hooks out, so the next sync
// runs them again.

// hookEvent is the Helm event a sync is: install or upgrade.
type hookEvent string

const (
	hookInstall hookEvent = "install"
	hookUpgrade hookEvent = "upgrade"
)

// Outcomes of a hook in ObjectResult.Outcome.
const (
	OutcomeSucceeded = "succeeded"
	OutcomeFailed    = "failed"
)

// hookRun is what one sync does with its hooks. A nil *hookRun runs nothing.
type hookRun struct {
	e     *Engine
	app   App
	event hookEvent
	// all are the hooks the render declares; pre and post those that run, in run order.
	all       []*desired
	pre, post []*desired
	// conflicts are hooks to run whose name an object the app does not own already holds.
	conflicts map[string]*ConflictError
	// live is what the owned LIST saw of hooks to run, by ID key.
	live map[string]liveMeta
}

// splitHooks separates the hooks from the app's other objects, keeping both in their order.
func splitHooks(want []*desired) (objs, hooks []*desired) {
	objs = make([]*desired, 0, len(want))
	for _, d := range want {
		if d.hook != nil {
			hooks = append(hooks, d)
		} else {
			objs = append(objs, d)
		}
	}
	return objs, hooks
}

// newHookRun decides which hooks a sync of want runs, from the inventory alone: whether the app
// was installed, and whether Git changed anything since (see the package comment above). It
// returns nil when the render has no hooks.
func (e *Engine) newHookRun(app App, inv *inventory, want, hooks []*desired) *hookRun {
	if len(hooks) == 0 {
		return nil
	}
	hr := &hookRun{e: e, app: app, all: hooks, event: hookUpgrade, conflicts: map[string]*ConflictError{}}
	if inv.revision == "" {
		hr.event = hookInstall
	}
	var selected []*desired
	changed := false
	for _, d := range hooks {
		if (hr.event == hookInstall && d.hook.Install) || (hr.event == hookUpgrade && d.hook.Upgrade) {
			selected = append(selected, d)
			if inv.hooks[d.id.key()] != d.hash {
				changed = true
			}
		}
	}
	if len(selected) == 0 {
		return hr
	}
	if !changed {
		changed = gitChanged(inv, want)
	}
	if !changed {
		return hr
	}
	slices.SortFunc(selected, func(a, b *desired) int {
		return cmp.Or(cmp.Compare(a.hook.Weight, b.hook.Weight), strings.Compare(a.id.Kind, b.id.Kind),
			strings.Compare(a.id.Namespace, b.id.Namespace), strings.Compare(a.id.Name, b.id.Name), strings.Compare(a.id.Group, b.id.Group))
	})
	for _, d := range selected {
		if d.hook.Pre {
			hr.pre = append(hr.pre, d)
		} else {
			hr.post = append(hr.post, d)
		}
	}
	return hr
}

// gitChanged reports whether want differs from what the inventory recorded applying: an object
// new or changed in Git, or one that left it. Drift of live objects does not count.
func gitChanged(inv *inventory, want []*desired) bool {
	keys := make(map[string]bool, len(want))
	for _, d := range want {
		keys[d.id.key()] = true
		if en, ok := inv.entries[d.id.key()]; !ok || en.Hash != d.hash {
			return true
		}
	}
	for k := range inv.entries {
		if !keys[k] {
			return true
		}
	}
	return false
}

// toRun lists the hooks that run, pre then post.
func (hr *hookRun) toRun() []*desired {
	if hr == nil {
		return nil
	}
	return append(slices.Clip(hr.pre), hr.post...)
}

// takeOwnership moves the hooks' conflicts out of conflicts (a conflicting hook fails when its turn
// comes, not after the rest was applied) and keeps what live says of them.
func (hr *hookRun) takeOwnership(conflicts map[string]*ConflictError, live map[string]liveMeta) {
	if hr == nil {
		return
	}
	hr.live = map[string]liveMeta{}
	for _, d := range hr.toRun() {
		k := d.id.key()
		if c, ok := conflicts[k]; ok {
			hr.conflicts[k] = c
			delete(conflicts, k)
		}
		if lm, ok := live[k]; ok {
			hr.live[k] = lm
		}
	}
}

// begin forgets, in next, the hashes of the hooks about to run: until they complete, the next
// sync must run them again.
func (hr *hookRun) begin(next *inventory) {
	if hr == nil || len(hr.pre)+len(hr.post) == 0 {
		return
	}
	next.hooks = maps.Clone(next.hooks)
	for _, d := range hr.toRun() {
		delete(next.hooks, d.id.key())
	}
}

// finish records in next the hashes of every hook of the render, once all that had to run did:
// hooks not run in this event are remembered as they are, and hooks that left the chart forgotten.
func (hr *hookRun) finish(next *inventory) {
	hooks := map[string]string{}
	if hr != nil {
		for _, d := range hr.all {
			hooks[d.id.key()] = d.hash
		}
	}
	if len(hooks) == 0 {
		hooks = nil
	}
	next.hooks = hooks
}

// phaseName is what Helm calls a hook phase of this event, e.g. "pre-install".
func (hr *hookRun) phaseName(pre bool) string {
	if pre {
		return "pre-" + string(hr.event)
	}
	return "post-" + string(hr.event)
}

// run runs the pre or post hooks one after the other, each until it succeeded, stopping at the
// first failure. A hook that completed has its hash recorded in next and is reported in res.
func (hr *hookRun) run(ctx context.Context, pre bool, next *inventory, res *Result) error {
	if hr == nil {
		return nil
	}
	hooks := hr.post
	if pre {
		hooks = hr.pre
	}
	start := time.Now()
	defer func() { res.Durations.Hooks += time.Since(start) }()
	phase := hr.phaseName(pre)
	for _, d := range hooks {
		if err := hr.runOne(ctx, phase, d); err != nil {
			res.addHook(d.id, d.file, phase+" hook "+OutcomeFailed)
			return err
		}
		res.addHook(d.id, d.file, phase+" hook "+OutcomeSucceeded)
		if next.hooks == nil {
			next.hooks = map[string]string{}
		}
		next.hooks[d.id.key()] = d.hash
	}
	return nil
}

// runOne runs one hook: deletes the previous run's object (before-hook-creation), applies the hook,
// waits until it succeeded or failed within the app's timeout, and deletes it as its policies say.
func (hr *hookRun) runOne(ctx context.Context, phase string, d *desired) error {
	e := hr.e
	if c, ok := hr.conflicts[d.id.key()]; ok {
		return &Error{Stage: StageHooks, Object: d.id.String(), File: d.file, Message: phase + " hook not run: " + c.Error(), Err: c}
	}
	policies := d.hook.DeletePolicies
	if len(policies) == 0 {
		policies = []string{render.HookBeforeCreation}
	}
	if lm, ok := hr.live[d.id.key()]; ok && (slices.Contains(policies, render.HookBeforeCreation) || lm.deleting) {
		if err := e.deleteHook(ctx, hr.app, d, types.UID(lm.uid)); err != nil {
			return err
		}
	}
	live, err := e.applyOne(ctx, d)
	if err != nil {
		return objectError(StageHooks, d.id.String(), d.file, err)
	}
	e.log.DebugContext(ctx, "hook applied", "app", hr.app.Name, "phase", phase, "object", d.id.String())
	failure, err := e.awaitHook(ctx, hr.app, d, live)
	if err != nil {
		return err
	}
	uid := live.GetUID()
	if failure != "" {
		herr := &Error{Stage: StageHooks, Object: d.id.String(), File: d.file, Message: phase + " hook failed: " + failure}
		if slices.Contains(policies, render.HookFailed) {
			if derr := e.deleteHook(ctx, hr.app, d, uid); derr != nil {
				return errors.Join(herr, derr)
			}
		}
		return herr
	}
	if slices.Contains(policies, render.HookSucceeded) {
		return e.deleteHook(ctx, hr.app, d, uid)
	}
	return nil
}

// hookVerdict says whether a hook's live object succeeded (done), failed (failure says why), or
// is still running. A Job succeeds when Complete and fails when Failed, a Pod when it Succeeded
// or Failed; other kinds succeed once kstatus calls them Current.
func hookVerdict(u *unstructured.Unstructured) (done bool, failure, pending string) {
	gk := u.GroupVersionKind().GroupKind()
	switch gk {
	case schema.GroupKind{Group: "batch", Kind: "Job"}:
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, c := range conds {
			cm, _ := c.(map[string]any)
			if cm["status"] != "True" {
				continue
			}
			switch cm["type"] {
			case "Complete":
				return true, "", ""
			case "Failed":
				return false, conditionText(cm), ""
			}
		}
		active, _, _ := unstructured.NestedInt64(u.Object, "status", "active")
		failed, _, _ := unstructured.NestedInt64(u.Object, "status", "failed")
		return false, "", fmt.Sprintf("Job has not completed (%d active, %d failed pods)", active, failed)
	case schema.GroupKind{Kind: "Pod"}:
		phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
		switch phase {
		case "Succeeded":
			return true, "", ""
		case "Failed":
			msg, _, _ := unstructured.NestedString(u.Object, "status", "message")
			reason, _, _ := unstructured.NestedString(u.Object, "status", "reason")
			return false, strings.TrimPrefix(reason+": "+msg, ": "), ""
		}
		return false, "", "Pod has not succeeded (phase " + cmp.Or(phase, "Pending") + ")"
	}
	if statuslessKinds[gk] {
		return true, "", ""
	}
	st := &healthState{}
	st.observe(u, nil)
	switch st.status {
	case status.CurrentStatus:
		return true, "", ""
	case status.FailedStatus:
		return false, st.message, ""
	}
	return false, "", string(st.status) + ": " + st.message
}

// conditionText is a condition's reason and message, as kubectl describe shows them.
func conditionText(c map[string]any) string {
	reason, _ := c["reason"].(string)
	msg, _ := c["message"].(string)
	switch {
	case reason == "":
		return cmp.Or(msg, "failed")
	case msg == "":
		return reason
	}
	return reason + ": " + msg
}

// awaitHook polls the hook's object, starting from its apply response, until it succeeded
// (failure "") or failed (failure says why), backing off from firstHealthPoll to PollInterval. It
// errs when the app's timeout runs out, or the object is deleted or replaced meanwhile.
func (e *Engine) awaitHook(ctx context.Context, app App, d *desired, u *unstructured.Unstructured) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, app.Timeout)
	defer cancel()
	uid := u.GetUID()
	wait := min(firstHealthPoll, e.opts.PollInterval)
	for {
		done, failure, pending := hookVerdict(u)
		if done || failure != "" {
			return failure, nil
		}
		t := time.NewTimer(wait)
		wait = min(2*wait, e.opts.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return "", &Error{Stage: StageHooks, Object: d.id.String(), File: d.file,
					Message: fmt.Sprintf("did not complete within %s: %s", app.Timeout, pending), Err: ctx.Err()}
			}
			return "", objectError(StageHooks, d.id.String(), d.file, ctx.Err())
		case <-t.C:
		}
		raw, err := rawBody(e.core.RESTClient().Get().AbsPath(resourcePath(d.m.gvr, d.id.Namespace, d.id.Name)).
			SetHeader("Accept", "application/json").Do(ctx))
		var got *unstructured.Unstructured
		if err == nil {
			got, err = decodeLeanObject(raw)
		}
		switch {
		case apierrors.IsNotFound(err):
			return "", &Error{Stage: StageHooks, Object: d.id.String(), File: d.file, Message: "deleted while ferry waited for it to complete"}
		case err != nil && ctx.Err() != nil:
			continue // the timeout is reported above
		case err != nil:
			return "", objectError(StageHooks, d.id.String(), d.file, err)
		case got.GetUID() != uid:
			return "", &Error{Stage: StageHooks, Object: d.id.String(), File: d.file, Message: "replaced by another object while ferry waited for it to complete"}
		}
		u = got
	}
}

// deleteHook deletes the hook object with the given UID and waits until it is gone, within the
// app's timeout. Deletion is in the foreground, so a Job's pods are gone before the Job: a hook
// run again never overlaps with its previous run. An object already gone, or replaced by another
// one, is left alone.
func (e *Engine) deleteHook(ctx context.Context, app App, d *desired, uid types.UID) error {
	ctx, cancel := context.WithTimeout(ctx, app.Timeout)
	defer cancel()
	res := e.dyn.Resource(d.m.gvr).Namespace(d.id.Namespace)
	propagation := metav1.DeletePropagationForeground
	err := res.Delete(ctx, d.id.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}, PropagationPolicy: &propagation})
	switch {
	case apierrors.IsNotFound(err), apierrors.IsConflict(err):
		return nil
	case err != nil:
		return objectError(StageHooks, d.id.String(), d.file, fmt.Errorf("delete hook: %w", err))
	}
	wait := min(firstHealthPoll, e.opts.PollInterval)
	for {
		pom, err := e.meta.Resource(d.m.gvr).Namespace(d.id.Namespace).Get(ctx, d.id.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return nil
		case err == nil && pom.UID != uid:
			return nil
		case err != nil && ctx.Err() == nil:
			return objectError(StageHooks, d.id.String(), d.file, fmt.Errorf("wait for deletion: %w", err))
		}
		t := time.NewTimer(wait)
		wait = min(2*wait, e.opts.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return &Error{Stage: StageHooks, Object: d.id.String(), File: d.file,
				Message: fmt.Sprintf("previous run not deleted within %s", app.Timeout), Err: ctx.Err()}
		case <-t.C:
		}
	}
}

// planHooks dry-runs the hooks a sync would run, as objects created anew: they are listed in a
// plan, never run.
func (e *Engine) planHooks(ctx context.Context, hr *hookRun, unserved map[schema.GroupVersionKind]bool) ([]PlanEntry, error) {
	var out []PlanEntry
	for _, d := range hr.toRun() {
		entry := PlanEntry{ID: d.id, File: d.file, Action: PlanHook, Hook: hr.phaseName(d.hook.Pre)}
		if unserved[d.obj.GroupVersionKind()] {
			entry.Unvalidated = true
			out = append(out, entry)
			continue
		}
		entry, err := e.planNew(ctx, d, entry)
		if err != nil {
			return nil, err
		}
		entry.Action = PlanHook
		out = append(out, entry)
	}
	return out, nil
}

// addHook reports a hook that ran.
func (r *Result) addHook(id ID, file, outcome string) {
	r.Hooks++
	r.Objects = append(r.Objects, ObjectResult{ID: id, Action: ActionHook, File: file, Outcome: outcome})
}
