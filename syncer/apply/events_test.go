package apply

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// inventoryEvents lists the Events about app's inventory until want says they are complete, or
// fails after a bounded number of tries.
func inventoryEvents(t *testing.T, v *env, app string, want func([]corev1.Event) bool) []corev1.Event {
	t.Helper()
	var got []corev1.Event
	for i := 0; i < 200; i++ {
		l, err := v.kube.CoreV1().Events(DefaultInventoryNamespace).List(t.Context(), metav1.ListOptions{
			FieldSelector: "involvedObject.kind=ConfigMap,involvedObject.name=" + inventoryName(app)})
		if err != nil {
			t.Fatal(err)
		}
		got = l.Items
		if want(got) {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("events of %s: %+v", app, got)
	return nil
}

func TestSyncEventsOnInventory(t *testing.T) {
	v := newEnv(t)
	app := App{Name: "events-app"}
	v.mustSync(t, app, "r1", configMap(t, "default", "events-a", "1"))
	inv, err := v.kube.CoreV1().ConfigMaps(DefaultInventoryNamespace).Get(t.Context(), inventoryName(app.Name), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rec := v.e.NewEventRecorder("worker-1")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { rec.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	rec.Record(SyncEvent{App: app.Name, Reason: ReasonSyncSucceeded, Message: "commit 0123456789ab: applied 1 objects in 20ms"})
	// The same failure twice makes one Event counted twice, not two Events.
	fail := SyncEvent{App: app.Name, Warning: true, Reason: ReasonSyncFailed, Message: "ConfigMap default/x: " + strings.Repeat("é", MaxEventMessage)}
	rec.Record(fail)
	rec.Record(fail)
	evs := inventoryEvents(t, v, app.Name, func(evs []corev1.Event) bool {
		n := 0
		for _, e := range evs {
			if e.Reason == ReasonSyncFailed && e.Count == 2 || e.Reason == ReasonSyncSucceeded {
				n++
			}
		}
		return n == 2
	})
	for _, e := range evs {
		if e.InvolvedObject.UID != inv.UID || e.Source.Component != "ferry" || e.Source.Host != "worker-1" {
			t.Errorf("event %s is about %+v from %+v; want the inventory (uid %s) from ferry on worker-1", e.Name, e.InvolvedObject, e.Source, inv.UID)
		}
		switch e.Reason {
		case ReasonSyncSucceeded:
			if e.Type != corev1.EventTypeNormal || e.Message != "commit 0123456789ab: applied 1 objects in 20ms" {
				t.Errorf("success event: %s %q", e.Type, e.Message)
			}
		case ReasonSyncFailed:
			if e.Type != corev1.EventTypeWarning || len(e.Message) > MaxEventMessage || !strings.HasSuffix(e.Message, "é…") {
				t.Errorf("failure event: %s, %d bytes, ends %q", e.Type, len(e.Message), e.Message[len(e.Message)-8:])
			}
		}
	}
	if len(evs) != 2 {
		t.Errorf("%d events, want 2 (the repeated failure counted on one)", len(evs))
	}
}

func TestEventRecorderNeverBlocks(t *testing.T) {
	v := newEnv(t)
	rec := v.e.NewEventRecorder("w") // not running: nothing drains the queue
	kept := 0
	for range eventQueue + 10 {
		if rec.Record(SyncEvent{App: "a", Reason: ReasonSyncSucceeded, Message: "m"}) {
			kept++
		}
	}
	if kept != eventQueue {
		t.Errorf("kept %d events, want the queue's %d and the rest dropped", kept, eventQueue)
	}
}
