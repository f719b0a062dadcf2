package apply

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
)

// crdEstablishTimeout bounds the wait for applied CRDs to be served before their custom resources
// are applied. The apiserver establishes a CRD within a second or two; longer means it is invalid
// or the apiserver is in trouble.
const crdEstablishTimeout = 30 * time.Second

// applied is the outcome of one successful server-side apply.
type applied struct {
	d      *desired
	action Action
	live   *unstructured.Unstructured
}

// applyObjects server-side-applies objs with bounded parallelism. It applies every object even when
// some fail, so one bad object does not hold back the others, and reports all failures.
// existed tells which objects were live before, to tell Created from Configured.
func (e *Engine) applyObjects(ctx context.Context, objs []*desired, before map[string]liveMeta) ([]applied, error) {
	var (
		mu   sync.Mutex
		out  = make([]applied, 0, len(objs))
		errs []error
	)
	e.parallel(len(objs), func(i int) {
		d := objs[i]
		live, err := e.applyOne(ctx, d)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs = append(errs, objectError(StageApply, d.id.String(), d.file, err))
			return
		}
		act := ActionConfigured
		if prev, ok := before[d.id.key()]; !ok {
			act = ActionCreated
		} else if prev.resourceVersion == live.GetResourceVersion() {
			act = ActionUnchanged
		}
		out = append(out, applied{d: d, action: act, live: live})
	})
	if len(errs) > 0 {
		return out, joinErrs(errs)
	}
	return out, nil
}

// applyOne server-side-applies one object, forcing ferry's ownership of the fields it declares,
// and returns what the apiserver answered, read lean: the response's managed fields are most of
// it, and decoding them whole for every object of a large first apply costs the client CPU that
// the apiserver, on the same cores in small clusters, could use.
func (e *Engine) applyOne(ctx context.Context, d *desired) (*unstructured.Unstructured, error) {
	body, err := d.obj.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	raw, err := rawBody(e.core.RESTClient().Patch(types.ApplyPatchType).AbsPath(resourcePath(d.m.gvr, d.id.Namespace, d.id.Name)).
		SetHeader("Accept", "application/json").
		Param("fieldManager", e.opts.FieldManager).Param("force", "true").
		Body(body).Do(ctx))
	if err != nil {
		return nil, err
	}
	return decodeLeanObject(raw)
}

// waitEstablished waits until every CRD named is Established, polling the CRDs of the app in bulk.
func (e *Engine) waitEstablished(ctx context.Context, app string, crds []*desired) error {
	if len(crds) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, crdEstablishTimeout)
	defer cancel()
	pending := map[string]*desired{}
	for _, d := range crds {
		pending[d.id.Name] = d
	}
	gvr := crds[0].m.gvr
	msg := map[string]string{}
	for {
		l, err := e.dyn.Resource(gvr).List(ctx, metav1.ListOptions{LabelSelector: LabelApp + "=" + app})
		if err != nil && !apierrors.IsNotFound(err) {
			if ctx.Err() != nil {
				break
			}
			return objectError(StageApply, "list customresourcedefinitions", "", err)
		}
		if l != nil {
			for i := range l.Items {
				u := &l.Items[i]
				if _, ok := pending[u.GetName()]; !ok {
					continue
				}
				if r, err := status.Compute(u); err == nil && r.Status == status.CurrentStatus {
					delete(pending, u.GetName())
				} else if err == nil {
					msg[u.GetName()] = r.Message
				}
			}
		}
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(e.opts.PollInterval):
			continue
		}
		break
	}
	for name, d := range pending {
		return &Error{Stage: StageApply, Object: d.id.String(), File: d.file,
			Message: fmt.Sprintf("not established after %s: %s", crdEstablishTimeout, msg[name]), Err: ctx.Err()}
	}
	return nil
}
