package apply

import (
	"context"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// listPageSize bounds one LIST response; larger sets are read in pages.
const listPageSize = 500

// smallGroup is the largest number of unknown objects of one resource in one namespace that are
// checked with one GET each; more are checked with one LIST of the namespace instead.
const smallGroup = 3

// liveMeta is what a metadata-only LIST tells about one live object: enough to decide whether it
// moved since ferry applied it, and whether ferry owns it.
type liveMeta struct {
	uid             string
	resourceVersion string
	generation      int64
	labels          map[string]string
	annotations     map[string]string
	deleting        bool
}

func metaOf(om *metav1.ObjectMeta) liveMeta {
	return liveMeta{
		uid:             string(om.UID),
		resourceVersion: om.ResourceVersion,
		generation:      om.Generation,
		labels:          om.Labels,
		annotations:     om.Annotations,
		deleting:        om.DeletionTimestamp != nil,
	}
}

// listOwned reads, in bulk, every live object carrying the app's label for the given resources:
// one metadata-only LIST per resource across all namespaces (paged), run in parallel. A resource
// the apiserver does not serve (a CRD not yet created, or deleted) has no objects. This and lookup
// read with the engine's own identity even for an app with a service account: they decide what
// the app owns and what prune may delete, like the inventory, and an account allowed only some
// namespaces could not list across them.
func (e *Engine) listOwned(ctx context.Context, app string, ms []mapping) (map[string]liveMeta, error) {
	var (
		mu   sync.Mutex
		out  = map[string]liveMeta{}
		errs []error
	)
	sel := LabelApp + "=" + app
	e.parallel(len(ms), func(i int) {
		m := ms[i]
		got := map[string]liveMeta{}
		err := e.listMeta(ctx, m.gvr, "", sel, func(om *metav1.ObjectMeta) {
			got[ID{Group: m.gvr.Group, Kind: m.kind, Namespace: om.Namespace, Name: om.Name}.key()] = metaOf(om)
		})
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs = append(errs, objectError(StageApply, "list "+m.gvr.Resource+"."+m.gvr.Group, "", err))
			return
		}
		for k, v := range got {
			out[k] = v
		}
	})
	if len(errs) > 0 {
		return nil, joinErrs(errs)
	}
	return out, nil
}

// listMeta pages through a metadata-only LIST. NotFound (resource not served) yields nothing.
func (e *Engine) listMeta(ctx context.Context, gvr schema.GroupVersionResource, ns, sel string, fn func(*metav1.ObjectMeta)) error {
	opts := metav1.ListOptions{LabelSelector: sel, Limit: listPageSize}
	for {
		l, err := e.own.meta.Resource(gvr).Namespace(ns).List(ctx, opts)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		for i := range l.Items {
			fn(&l.Items[i].ObjectMeta)
		}
		if l.Continue == "" {
			return nil
		}
		opts.Continue = l.Continue
	}
}

// lookup finds which of objs exist in the cluster regardless of labels, returning their metadata by
// ID key. It is only used for objects the owned LIST did not return (new ones, or ones whose label
// changed), so an unchanged re-sync never pays for it. Few objects of a resource in a namespace are
// fetched one by one; more are found with one LIST of that namespace.
func (e *Engine) lookup(ctx context.Context, objs []*desired) (map[string]liveMeta, error) {
	type group struct {
		m    mapping
		ns   string
		objs []*desired
	}
	groups := map[string]*group{}
	var order []string
	for _, d := range objs {
		k := d.m.gvr.String() + "|" + d.id.Namespace
		g, ok := groups[k]
		if !ok {
			g = &group{m: d.m, ns: d.id.Namespace}
			groups[k] = g
			order = append(order, k)
		}
		g.objs = append(g.objs, d)
	}
	// Split small groups into one task per object so they run in parallel too.
	type task struct {
		g *group
		d *desired // nil: LIST the group
	}
	var tasks []task
	for _, k := range order {
		g := groups[k]
		if len(g.objs) <= smallGroup {
			for _, d := range g.objs {
				tasks = append(tasks, task{g: g, d: d})
			}
		} else {
			tasks = append(tasks, task{g: g})
		}
	}
	var (
		mu   sync.Mutex
		out  = map[string]liveMeta{}
		errs []error
	)
	e.parallel(len(tasks), func(i int) {
		t := tasks[i]
		found := map[string]liveMeta{}
		var err error
		if t.d != nil {
			var pom *metav1.PartialObjectMetadata
			pom, err = e.own.meta.Resource(t.g.m.gvr).Namespace(t.g.ns).Get(ctx, t.d.id.Name, metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err):
				err = nil
			case err == nil:
				found[t.d.id.key()] = metaOf(&pom.ObjectMeta)
			}
		} else {
			want := map[string]bool{}
			for _, d := range t.g.objs {
				want[d.id.Name] = true
			}
			err = e.listMeta(ctx, t.g.m.gvr, t.g.ns, "", func(om *metav1.ObjectMeta) {
				if want[om.Name] {
					found[ID{Group: t.g.m.gvr.Group, Kind: t.g.m.kind, Namespace: om.Namespace, Name: om.Name}.key()] = metaOf(om)
				}
			})
		}
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			d := t.g.objs[0]
			if t.d != nil {
				d = t.d
			}
			errs = append(errs, objectError(StageApply, d.id.String(), d.file, err))
			return
		}
		for k, v := range found {
			out[k] = v
		}
	})
	if len(errs) > 0 {
		return nil, joinErrs(errs)
	}
	return out, nil
}

// parallel runs fn(0..n-1) with at most Options.Concurrency at once and waits for all.
func (e *Engine) parallel(n int, fn func(i int)) {
	if n == 0 {
		return
	}
	limit := min(e.opts.Concurrency, n)
	var wg sync.WaitGroup
	next := make(chan int)
	for range limit {
		wg.Go(func() {
			for i := range next {
				fn(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}
