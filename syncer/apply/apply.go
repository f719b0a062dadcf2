package apply

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
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

// applyOne server-side-applies one object (its body as prepare encoded it), forcing ferry's
// ownership of the fields it declares, and returns what the apiserver answered, read lean: the
// response's managed fields are most of it, and decoding them whole for every object of a large
// first apply costs the client CPU that the apiserver, on the same cores in small clusters, could
// use.
func (e *Engine) applyOne(ctx context.Context, d *desired) (*unstructured.Unstructured, error) {
	raw, err := rawBody(e.core.RESTClient().Patch(types.ApplyPatchType).AbsPath(resourcePath(d.m.gvr, d.id.Namespace, d.id.Name)).
		SetHeader("Accept", "application/json").
		Param("fieldManager", e.opts.FieldManager).Param("force", "true").
		Body(d.body).Do(ctx))
	if err != nil {
		return nil, err
	}
	return decodeLeanObject(raw)
}

// waitEstablished waits until every CRD of crds is Established. It watches the app's CRDs (one
// request, told of each status change as it happens) rather than polling them: a poll either
// comes late or reads the CRDs' schemas, megabytes for large ones, over and over. A CRD whose
// apply response already says Established is not waited for. The CRDs seen Established replace
// their apply responses in fresh, so the health wait does not read them again.
func (e *Engine) waitEstablished(ctx context.Context, app string, crds []*desired, fresh map[string]*unstructured.Unstructured) error {
	pending := map[string]*healthState{}
	for _, d := range crds {
		st := &healthState{d: d, status: status.UnknownStatus, message: "not observed yet"}
		if u, ok := fresh[d.id.key()]; ok {
			if st.observe(u, nil); st.status == status.CurrentStatus {
				continue
			}
		}
		pending[d.id.Name] = st
	}
	if len(pending) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, crdEstablishTimeout)
	defer cancel()
	for {
		err := e.watchEstablished(ctx, app, pending, fresh)
		if len(pending) == 0 {
			return nil
		}
		var se apierrors.APIStatus
		if err != nil && ctx.Err() == nil && errors.As(err, &se) && se.Status().Code != http.StatusGone {
			return objectError(StageApply, "watch customresourcedefinitions", "", err)
		}
		// The watch ended (the apiserver closes them after a while, or the connection broke):
		// start another, which begins with the CRDs' current state.
		select {
		case <-ctx.Done():
		case <-time.After(crdWatchPause):
			continue
		}
		break
	}
	names := make([]string, 0, len(pending))
	for name := range pending {
		names = append(names, name)
	}
	slices.Sort(names)
	st := pending[names[0]]
	return &Error{Stage: StageApply, Object: st.d.id.String(), File: st.d.file,
		Message: fmt.Sprintf("not established after %s: %s", crdEstablishTimeout, st.message), Err: ctx.Err()}
}

// crdWait is a wait for CRDs to be established that runs beside the rest of a sync.
type crdWait struct {
	e      *Engine
	cancel context.CancelFunc
	done   chan struct{}
	// fresh and err are the wait's own; read them only after done is closed.
	fresh map[string]*unstructured.Unstructured
	err   error
}

// startWaitEstablished starts waitEstablished for crds in the background. Their apply responses
// are copied from fresh, which the caller goes on writing.
func (e *Engine) startWaitEstablished(ctx context.Context, app string, crds []*desired, fresh map[string]*unstructured.Unstructured) *crdWait {
	ctx, cancel := context.WithCancel(ctx)
	w := &crdWait{e: e, cancel: cancel, done: make(chan struct{}), fresh: map[string]*unstructured.Unstructured{}}
	for _, d := range crds {
		if u, ok := fresh[d.id.key()]; ok {
			w.fresh[d.id.key()] = u
		}
	}
	go func() {
		defer close(w.done)
		w.err = e.waitEstablished(ctx, app, crds, w.fresh)
	}()
	return w
}

// join waits for the CRDs, then records what was seen of them in fresh and resets the discovery
// cache so that their kinds resolve. A nil wait has nothing to join.
func (w *crdWait) join(fresh map[string]*unstructured.Unstructured) error {
	if w == nil {
		return nil
	}
	<-w.done
	if w.err != nil {
		return w.err
	}
	maps.Copy(fresh, w.fresh)
	w.e.mapper.Reset()
	return nil
}

// stop ends the wait, if it still runs, and waits for it to return. Safe to call after join, and
// on a nil wait.
func (w *crdWait) stop() {
	if w == nil {
		return
	}
	w.cancel()
	<-w.done
}

// crdWatchPause separates a CRD watch that ended from the next one.
const crdWatchPause = 100 * time.Millisecond

// watchEvent is one event of a watch stream; the object is decoded according to the type.
type watchEvent struct {
	Type   string         `json:"type"`
	Object jsontext.Value `json:"object"`
}

// watchEstablished watches the CRDs labelled as the app's until none of pending is left or the
// stream ends, removing each CRD from pending once kstatus says it is Current. Without a
// resourceVersion the watch starts with the CRDs' current state, so nothing that happened
// before it is missed.
func (e *Engine) watchEstablished(ctx context.Context, app string, pending map[string]*healthState, fresh map[string]*unstructured.Unstructured) error {
	var gvr schema.GroupVersionResource
	for _, st := range pending {
		gvr = st.d.m.gvr
		break
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	body, err := e.own.core.RESTClient().Get().AbsPath(resourcePath(gvr, "", "")).SetHeader("Accept", "application/json").
		Param("watch", "true").Param("labelSelector", LabelApp+"="+app).Stream(wctx)
	if err != nil {
		return err
	}
	defer body.Close()
	dec := jsontext.NewDecoder(body)
	for len(pending) > 0 {
		var ev watchEvent
		if err := jsonv2.UnmarshalDecode(dec, &ev); err != nil {
			return fmt.Errorf("read watch of customresourcedefinitions: %w", err)
		}
		if ev.Type == "ERROR" {
			var st metav1.Status
			if err := json.Unmarshal(ev.Object, &st); err != nil {
				return fmt.Errorf("read watch error: %w", err)
			}
			return apierrors.FromObject(&st)
		}
		u, err := decodeLeanObject(ev.Object)
		if err != nil {
			return err
		}
		st, ok := pending[u.GetName()]
		switch {
		case !ok:
		case ev.Type == "DELETED":
			st.status, st.message = status.NotFoundStatus, "deleted while ferry waited for it"
		default:
			if st.observe(u, nil); st.status == status.CurrentStatus {
				delete(pending, u.GetName())
				fresh[st.d.id.key()] = u
			}
		}
	}
	return nil
}
