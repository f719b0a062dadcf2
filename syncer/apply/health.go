package apply

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// statuslessKinds have no status a controller reports: they are healthy once applied, and are never
// polled.
var statuslessKinds = map[schema.GroupKind]bool{
	{Kind: "ConfigMap"}:      true,
	{Kind: "Secret"}:         true,
	{Kind: "ServiceAccount"}: true,
	{Kind: "Endpoints"}:      true,
	{Group: "rbac.authorization.k8s.io", Kind: "Role"}:               true,
	{Group: "rbac.authorization.k8s.io", Kind: "RoleBinding"}:        true,
	{Group: "rbac.authorization.k8s.io", Kind: "ClusterRole"}:        true,
	{Group: "rbac.authorization.k8s.io", Kind: "ClusterRoleBinding"}: true,
	{Group: "networking.k8s.io", Kind: "NetworkPolicy"}:              true,
}

// healthState is the last verdict seen for an object: kstatus's, or its kind's health rule's.
type healthState struct {
	d       *desired
	status  status.Status
	message string
	// fatal ends the wait at once: a health rule's failed expression is true, or an expression
	// could not be evaluated.
	fatal error
}

// firstHealthPoll is the first pause between health polls; it doubles up to PollInterval.
const firstHealthPoll = 100 * time.Millisecond

// waitHealthy waits until every desired object is Current by kstatus, or timeout. Objects whose apply
// response is already Current are done without a request; the rest are polled in bulk, one LIST per
// resource with the app's label selector, backing off from firstHealthPoll to PollInterval.
func (e *Engine) waitHealthy(ctx context.Context, app App, objs []*desired, fresh map[string]*unstructured.Unstructured) error {
	pending := map[string]*healthState{}
	for _, d := range objs {
		if statuslessKinds[schema.GroupKind{Group: d.id.Group, Kind: d.id.Kind}] && !e.health.covers(d.id.Group, d.id.Kind) {
			continue
		}
		st := &healthState{d: d, status: status.UnknownStatus, message: "not observed yet"}
		if u, ok := fresh[d.id.key()]; ok {
			st.observe(u, e.health)
			if st.fatal != nil {
				return st.failure()
			}
			if st.status == status.CurrentStatus {
				continue
			}
		}
		pending[d.id.key()] = st
	}
	if len(pending) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, app.Timeout)
	defer cancel()
	// Most objects become Current within a moment of their apply: look again soon, then less
	// and less often, up to PollInterval.
	wait := min(firstHealthPoll, e.opts.PollInterval)
	for {
		if err := e.pollHealth(ctx, app.Name, pending); err != nil {
			if ctx.Err() == nil {
				return err
			}
			break
		}
		if err := firstFatal(pending); err != nil {
			return err
		}
		for k, st := range pending {
			if st.status == status.CurrentStatus {
				delete(pending, k)
			}
		}
		if len(pending) == 0 {
			return nil
		}
		t := time.NewTimer(wait)
		wait = min(2*wait, e.opts.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
			continue
		}
		break
	}
	if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("wait for health of app %s: %w", app.Name, ctx.Err())
	}
	// Report the first object still not Current, in ID order, with kstatus's message; the count
	// says whether there is more to look at.
	keys := make([]string, 0, len(pending))
	for k := range pending {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	st := pending[keys[0]]
	msg := fmt.Sprintf("not ready after %s: %s: %s", app.Timeout, st.status, st.message)
	if len(keys) > 1 {
		msg += fmt.Sprintf(" (and %d more objects not ready)", len(keys)-1)
	}
	return &Error{Stage: StageHealth, Object: st.d.id.String(), File: st.d.file, Message: msg, Err: context.DeadlineExceeded}
}

// observe records the verdict on u: its kind's health rule's when there is one, kstatus's
// otherwise.
func (st *healthState) observe(u *unstructured.Unstructured, hc *HealthChecks) {
	if r := hc.find(u.GetAPIVersion(), u.GetKind()); r != nil {
		var err error
		st.status, st.message, err = r.evaluate(u)
		switch {
		case err != nil:
			st.fatal = err
		case st.status == status.FailedStatus:
			st.fatal = errors.New(st.message)
		}
		return
	}
	r, err := status.Compute(u)
	if err != nil {
		st.status, st.message = status.UnknownStatus, err.Error()
		return
	}
	st.status, st.message = r.Status, r.Message
}

// failure is the sync error of a state that ended the wait.
func (st *healthState) failure() error {
	msg := st.fatal.Error()
	var he *HealthExprError
	if !errors.As(st.fatal, &he) {
		msg = "failed: " + msg
	}
	return &Error{Stage: StageHealth, Object: st.d.id.String(), File: st.d.file, Message: msg, Err: st.fatal}
}

// firstFatal returns the failure of the first pending object, in ID order, that ended the wait.
func firstFatal(pending map[string]*healthState) error {
	var keys []string
	for k, st := range pending {
		if st.fatal != nil {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	slices.Sort(keys)
	return pending[keys[0]].failure()
}

// pollHealth lists, per resource, the app's objects still pending and updates their state. The
// engine's own identity lists each resource across namespaces; a service account, which is
// usually allowed only some namespaces, lists each namespace the app's objects are in.
func (e *Engine) pollHealth(ctx context.Context, app string, pending map[string]*healthState) error {
	type scope struct {
		gvr schema.GroupVersionResource
		ns  string
	}
	byGVR := map[scope][]*healthState{}
	var gvrs []scope
	for _, st := range pending {
		g := scope{gvr: st.d.m.gvr}
		if e.identity != "" && st.d.m.namespaced {
			g.ns = st.d.id.Namespace
		}
		if _, ok := byGVR[g]; !ok {
			gvrs = append(gvrs, g)
		}
		byGVR[g] = append(byGVR[g], st)
	}
	slices.SortFunc(gvrs, func(a, b scope) int {
		return strings.Compare(a.gvr.String()+"|"+a.ns, b.gvr.String()+"|"+b.ns)
	})
	var (
		mu   sync.Mutex
		errs []error
	)
	e.parallel(len(gvrs), func(i int) {
		gvr, ns := gvrs[i].gvr, gvrs[i].ns
		kind := byGVR[gvrs[i]][0].d.id.Kind
		seen := map[string]*unstructured.Unstructured{}
		cont := ""
		var err error
		for {
			var items []*unstructured.Unstructured
			items, cont, err = e.listForHealth(ctx, gvr, ns, kind, LabelApp+"="+app, cont)
			if err != nil {
				break
			}
			for _, u := range items {
				seen[ID{Group: gvr.Group, Kind: kind, Namespace: u.GetNamespace(), Name: u.GetName()}.key()] = u
			}
			if cont == "" {
				break
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, objectError(StageHealth, "list "+gvr.Resource+"."+gvr.Group, "", err))
			return
		}
		for _, st := range byGVR[gvrs[i]] {
			if u, ok := seen[st.d.id.key()]; ok {
				st.observe(u, e.health)
			} else {
				st.status, st.message = status.NotFoundStatus, "not found in the cluster (deleted, or ferry's label removed)"
			}
		}
	})
	return joinErrs(errs)
}

// listForHealth reads one page of the objects of gvr labelled sel, as kstatus needs them, and
// returns the continue token of the next page ("" on the last). A resource the apiserver does not
// serve yields NotFound. ns "" lists every namespace.
func (e *Engine) listForHealth(ctx context.Context, gvr schema.GroupVersionResource, ns, kind, sel, cont string) ([]*unstructured.Unstructured, string, error) {
	req := e.core.RESTClient().Get().AbsPath(resourcePath(gvr, ns, "")).SetHeader("Accept", "application/json").
		Param("labelSelector", sel).Param("limit", strconv.Itoa(listPageSize))
	if cont != "" {
		req = req.Param("continue", cont)
	}
	body, err := rawBody(req.Do(ctx))
	if err != nil {
		return nil, "", err
	}
	return decodeLeanList(body, gvr.GroupVersion().String(), kind)
}
