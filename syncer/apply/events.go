package apply

import (
	"context"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
)

// Reasons of the Events ferry records on an app's inventory ConfigMap, one per finished deploy.
const (
	ReasonSyncSucceeded = "SyncSucceeded"
	ReasonSyncFailed    = "SyncFailed"
	// ReasonSyncSkipped is a deploy not run because a newer commit was, or its commit was stale.
	ReasonSyncSkipped = "SyncSkipped"
)

// Bounds of event recording. Events are a courtesy to people running kubectl: they never hold up
// a sync, and a flood of them must not load the apiserver.
const (
	// MaxEventMessage is the longest Event message recorded; longer ones are cut.
	MaxEventMessage = 1024
	// eventQueue bounds the events waiting to be sent; past it new ones are dropped.
	eventQueue = 256
	// eventLookupTimeout bounds reading the inventory's uid for one event.
	eventLookupTimeout = 10 * time.Second
	// eventBurst and eventRefill bound the events of one inventory: eventBurst at once, then one
	// per eventRefill (client-go's spam filter; its own default of one per five minutes would hide
	// most results of an app that syncs often). Repeats of one reason and message within ten
	// minutes become one Event with a count.
	eventBurst  = 25
	eventRefill = 10 * time.Second
)

// SyncEvent is one finished deploy of an app, as an Event on its inventory tells it.
type SyncEvent struct {
	App string
	// Warning makes it a Warning Event; otherwise Normal.
	Warning bool
	// Reason is ReasonSyncSucceeded, ReasonSyncFailed or ReasonSyncSkipped.
	Reason string
	// Message is the sync's summary: never a secret (ferry's errors carry none).
	Message string
}

// EventRecorder records SyncEvents as core/v1 Events on the apps' inventory ConfigMaps, so that
// `kubectl get events -n <inventory namespace>` and `kubectl describe configmap` show them. Record
// never blocks; Run sends.
type EventRecorder struct {
	e           *Engine
	queue       chan SyncEvent
	broadcaster record.EventBroadcaster
	recorder    record.EventRecorder
}

// NewEventRecorder records events in the engine's cluster as component "ferry" on host (the
// worker's name, so replicas can be told apart).
func (e *Engine) NewEventRecorder(host string) *EventRecorder {
	b := record.NewBroadcaster(record.WithCorrelatorOptions(record.CorrelatorOptions{
		BurstSize: eventBurst, QPS: float32(time.Second) / float32(eventRefill),
	}))
	return &EventRecorder{
		e:           e,
		queue:       make(chan SyncEvent, eventQueue),
		broadcaster: b,
		recorder:    b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "ferry", Host: host}),
	}
}

// Record queues ev and reports whether it was queued: a full queue drops it.
func (r *EventRecorder) Record(ev SyncEvent) bool {
	select {
	case r.queue <- ev:
		return true
	default:
		r.e.log.Warn("event dropped: too many waiting", "app", ev.App, "reason", ev.Reason)
		return false
	}
}

// Run sends queued events until ctx ends, then stops the broadcaster (events not yet sent are
// lost: they are a courtesy, the sync records hold the truth).
func (r *EventRecorder) Run(ctx context.Context) {
	w := r.broadcaster.StartRecordingToSink(&corev1client.EventSinkImpl{Interface: r.e.core.Events("")})
	defer func() {
		w.Stop()
		r.broadcaster.Shutdown()
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-r.queue:
			r.emit(ctx, ev)
		}
	}
}

// emit hands one event to the broadcaster, about the inventory with its uid when it exists (kubectl
// describe finds events by uid).
func (r *EventRecorder) emit(ctx context.Context, ev SyncEvent) {
	ref := &corev1.ObjectReference{Kind: "ConfigMap", APIVersion: "v1", Namespace: r.e.opts.InventoryNamespace, Name: inventoryName(ev.App)}
	lctx, cancel := context.WithTimeout(ctx, eventLookupTimeout)
	defer cancel()
	gvr := schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	if m, err := r.e.meta.Resource(gvr).Namespace(ref.Namespace).Get(lctx, ref.Name, metav1.GetOptions{}); err == nil {
		ref.UID = m.UID
	}
	typ := corev1.EventTypeNormal
	if ev.Warning {
		typ = corev1.EventTypeWarning
	}
	r.recorder.Event(ref, typ, ev.Reason, cutMessage(ev.Message))
}

// cutMessage fits m into MaxEventMessage bytes on a rune boundary, marking a cut with "…".
func cutMessage(m string) string {
	if len(m) <= MaxEventMessage {
		return m
	}
	const ellipsis = "…"
	n := MaxEventMessage - len(ellipsis)
	for n > 0 && !utf8.RuneStart(m[n]) {
		n--
	}
	return m[:n] + ellipsis
}
