package queue

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"
)

func startNotifications(t *testing.T) (*Notifications, jetstream.JetStream) {
	t.Helper()
	e, nc, q := startQueue(t, t.TempDir())
	t.Cleanup(func() { nc.Close(); e.Shutdown() })
	n, err := NewNotifications(t.Context(), q.JetStream(), NotifyOptions{AckWait: time.Second, Logger: quietOptions().Logger})
	if err != nil {
		t.Fatal(err)
	}
	return n, q.JetStream()
}

func notifyEvent(app, sync string, kind EventKind) Event {
	return Event{SyncID: sync, Kind: kind, App: app, Repo: "platform", SHA: "abc", SyncKind: KindDeploy, State: StateFailed,
		URL: "https://ferry.example.com/syncs/" + sync, At: time.Now().UTC()}
}

func streamMsgs(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	s, err := js.Stream(t.Context(), NotifyStreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// TestNotifyStreamKeepsWhatTargetsWant: the stream is bounded as documented; an event published
// twice is stored once; an event no target's filter takes is not kept; one a target takes stays
// until that target acknowledges it.
func TestNotifyStreamKeepsWhatTargetsWant(t *testing.T) {
	n, js := startNotifications(t)
	s, err := js.Stream(t.Context(), NotifyStreamName)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	if cfg.MaxAge != NotifyMaxAge || cfg.MaxBytes != NotifyMaxBytes || cfg.Retention != jetstream.InterestPolicy || cfg.Duplicates != NotifyDedupWindow {
		t.Errorf("stream config %+v", cfg)
	}
	if err := n.PrepareTargets(t.Context(), []NotifyTarget{{Name: "ops", Kinds: []EventKind{EventFailed}}}); err != nil {
		t.Fatal(err)
	}
	c, err := js.Consumer(t.Context(), NotifyStreamName, "notify-ops")
	if err != nil {
		t.Fatal(err)
	}
	if cc := c.CachedInfo().Config; cc.MaxDeliver != -1 || cc.MaxAckPending != 1 || cc.AckWait != time.Second {
		t.Errorf("consumer config: MaxDeliver %d, MaxAckPending %d, AckWait %s", cc.MaxDeliver, cc.MaxAckPending, cc.AckWait)
	}
	for _, ev := range []Event{notifyEvent("api", "s1", EventFailed), notifyEvent("api", "s1", EventFailed), notifyEvent("api", "s2", EventSucceeded)} {
		if err := n.Publish(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
	if got := streamMsgs(t, js); got != 1 {
		t.Fatalf("stream holds %d events, want 1 (the failed one, once)", got)
	}

	ctx, cancel := context.WithCancel(t.Context())
	got := make(chan Event, 10)
	done := make(chan error, 1)
	go func() {
		done <- n.ConsumeTarget(ctx, "ops", func(_ context.Context, ev Event, _ Delivery) error {
			got <- ev
			return nil
		})
	}()
	select {
	case ev := <-got:
		if ev.ID() != "s1.failed" {
			t.Errorf("consumed %s", ev.ID())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no event consumed")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for streamMsgs(t, js) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the acknowledged event is still stored")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPrepareTargetsDropsRemovedTargets: a target no longer configured loses its consumer;
// other consumers of the stream are left alone.
func TestPrepareTargetsDropsRemovedTargets(t *testing.T) {
	n, js := startNotifications(t)
	if err := n.PrepareTargets(t.Context(), []NotifyTarget{{Name: "a", Kinds: EventKinds()}, {Name: "b", Kinds: EventKinds()}}); err != nil {
		t.Fatal(err)
	}
	if err := n.PrepareTargets(t.Context(), []NotifyTarget{{Name: "b", Kinds: []EventKind{EventFailed}}}); err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(t.Context(), NotifyStreamName)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	list := s.ConsumerNames(t.Context())
	for name := range list.Name() {
		names = append(names, name)
	}
	if diff := cmp.Diff([]string{"notify-b"}, names); diff != "" {
		t.Errorf("consumers (-want +got):\n%s", diff)
	}
	c, err := s.Consumer(t.Context(), "notify-b")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"ferry.notify.failed.*"}, c.CachedInfo().Config.FilterSubjects); diff != "" {
		t.Errorf("filters after the target's events changed (-want +got):\n%s", diff)
	}
}

// TestConsumeTargetAnswersAsTheHandlerSays: Retry redelivers after its delay, another error
// drops the event, nil acknowledges it.
func TestConsumeTargetAnswersAsTheHandlerSays(t *testing.T) {
	n, js := startNotifications(t)
	if err := n.PrepareTargets(t.Context(), []NotifyTarget{{Name: "t", Kinds: EventKinds()}}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"retry", "drop", "ok"} {
		if err := n.Publish(t.Context(), notifyEvent("api", id, EventFailed)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var seen []string
	done := make(chan error, 1)
	go func() {
		done <- n.ConsumeTarget(ctx, "t", func(_ context.Context, ev Event, d Delivery) error {
			seen = append(seen, ev.SyncID+"#"+string(rune('0'+d.Attempt)))
			switch {
			case ev.SyncID == "retry" && d.Attempt == 1:
				return Retry(errors.New("target down"), 10*time.Millisecond)
			case ev.SyncID == "drop":
				return errors.New("refused for good")
			case ev.SyncID == "ok":
				cancel()
			}
			return nil
		})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		c, _ := js.Consumer(context.Background(), NotifyStreamName, "notify-t")
		info, _ := c.Info(context.Background())
		t.Fatalf("consumer did not reach the last event: %v; consumer: ackPending %d, redelivered %d, waiting %d, pending %d, delivered %+v ackfloor %+v", seen,
			info.NumAckPending, info.NumRedelivered, info.NumWaiting, info.NumPending, info.Delivered, info.AckFloor)
	}
	if diff := cmp.Diff([]string{"retry#1", "retry#2", "drop#1", "ok#1"}, seen); diff != "" {
		t.Errorf("deliveries (-want +got):\n%s", diff)
	}
	deadline := time.Now().Add(10 * time.Second)
	for streamMsgs(t, js) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d events still stored after ack and term", streamMsgs(t, js))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPublishRefusesBadEventsAndCutsMessages: an event must name a valid app, a sync and a
// known kind; a long message is cut on a character boundary.
func TestPublishRefusesBadEventsAndCutsMessages(t *testing.T) {
	n, _ := startNotifications(t)
	for _, ev := range []Event{notifyEvent("Bad App", "s", EventFailed), notifyEvent("api", "", EventFailed), notifyEvent("api", "s", "exploded")} {
		if err := n.Publish(t.Context(), ev); err == nil {
			t.Errorf("event %+v was published", ev)
		}
	}
	long := strings.Repeat("é", MaxEventMessage)
	got := cut(long, MaxEventMessage)
	if len(got) > MaxEventMessage || !strings.HasSuffix(got, "…") || !strings.HasPrefix(got, "éé") || strings.ContainsRune(got, '\uFFFD') {
		t.Errorf("cut message: %d bytes, ends %q", len(got), got[len(got)-8:])
	}
	ev := notifyEvent("api", "long", EventFailed)
	ev.Message = long
	if err := n.Publish(t.Context(), ev); err != nil {
		t.Errorf("an event with a long message: %v", err)
	}
}

// TestConsumeTargetEndsWhenItsConsumerIsDeleted: another replica started with a config that
// dropped the target; this one stops sending to it instead of retrying forever.
func TestConsumeTargetEndsWhenItsConsumerIsDeleted(t *testing.T) {
	n, _ := startNotifications(t)
	if err := n.PrepareTargets(t.Context(), []NotifyTarget{{Name: "gone", Kinds: EventKinds()}}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- n.ConsumeTarget(t.Context(), "gone", func(context.Context, Event, Delivery) error { return nil })
	}()
	if err := n.PrepareTargets(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ConsumeTarget: %v", err)
		}
	case <-time.After(3 * notifyFetchWait):
		t.Fatal("ConsumeTarget goes on after its consumer was deleted")
	}
}
