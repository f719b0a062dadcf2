package queue

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"
)

// fixedClock returns t, then t+1s, t+2s, … on each call.
func fixedClock(t time.Time) func() time.Time {
	var mu sync.Mutex
	n := 0
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		n++
		return t.Add(time.Duration(n-1) * time.Second)
	}
}

var suspendEpoch = time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)

func newTestSuspensions(t *testing.T, js jetstream.JetStream) *Suspensions {
	t.Helper()
	s, err := NewSuspensions(t.Context(), js, 1, fixedClock(suspendEpoch))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSuspendAndResume: a suspension says who, why and when; suspending twice keeps the first
// one, resuming twice changes nothing the second time, and an app never suspended reads as not
// suspended.
func TestSuspendAndResume(t *testing.T) {
	e, nc, q := startQueue(t, t.TempDir())
	t.Cleanup(func() { nc.Close(); e.Shutdown() })
	s := newTestSuspensions(t, q.JetStream())
	ctx := t.Context()

	got, err := s.Get(ctx, "api")
	if err != nil || got != (Suspension{App: "api"}) {
		t.Fatalf("never suspended: %+v %v", got, err)
	}
	sus, changed, err := s.Suspend(ctx, "api", "alice", "incident 42")
	want := Suspension{App: "api", Suspended: true, By: "alice", Reason: "incident 42", At: suspendEpoch}
	if err != nil || !changed || sus != want {
		t.Fatalf("Suspend = %+v %v %v, want %+v changed", sus, changed, err, want)
	}
	// A second suspension by someone else leaves the first one as it was.
	again, changed, err := s.Suspend(ctx, "api", "bob", "me too")
	if err != nil || changed || again != want {
		t.Fatalf("second Suspend = %+v %v %v, want %+v unchanged", again, changed, err, want)
	}
	if got, err := s.Get(ctx, "api"); err != nil || got != want {
		t.Fatalf("Get = %+v %v, want %+v", got, err, want)
	}
	if got, err := s.Get(ctx, "db"); err != nil || got.Suspended {
		t.Fatalf("another app: %+v %v", got, err)
	}

	res, changed, err := s.Resume(ctx, "api", "bob")
	wantRes := Suspension{App: "api", Suspended: false, By: "bob", At: suspendEpoch.Add(time.Second)}
	if err != nil || !changed || res != wantRes {
		t.Fatalf("Resume = %+v %v %v, want %+v changed", res, changed, err, wantRes)
	}
	if _, changed, err := s.Resume(ctx, "api", "carol"); err != nil || changed {
		t.Fatalf("second Resume: changed=%v %v, want unchanged", changed, err)
	}
	if _, changed, err := s.Resume(ctx, "db", "carol"); err != nil || changed {
		t.Fatalf("Resume of an app never suspended: changed=%v %v", changed, err)
	}
	if got, _ := s.Get(ctx, "api"); got != wantRes {
		t.Fatalf("after Resume: %+v, want %+v", got, wantRes)
	}

	list, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]Suspension{"api": wantRes}, list); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
}

// TestSuspendRefusesBadNamesAndCutsReasons: a name no app can have never becomes a key (a
// wildcard or a dot would address other keys), and an overlong reason is cut, not refused.
func TestSuspendRefusesBadNamesAndCutsReasons(t *testing.T) {
	e, nc, q := startQueue(t, t.TempDir())
	t.Cleanup(func() { nc.Close(); e.Shutdown() })
	s := newTestSuspensions(t, q.JetStream())
	for _, name := range []string{"", "a.b", "*", ">", "API", strings.Repeat("a", 64)} {
		if _, _, err := s.Suspend(t.Context(), name, "alice", ""); !errors.Is(err, ErrInvalidApp) {
			t.Errorf("Suspend(%q) = %v, want ErrInvalidApp", name, err)
		}
	}
	reason := strings.Repeat("é", MaxSuspendReason) // two bytes each
	sus, _, err := s.Suspend(t.Context(), "api", "alice", reason)
	if err != nil {
		t.Fatal(err)
	}
	if len(sus.Reason) > MaxSuspendReason || !strings.HasPrefix(reason, sus.Reason) || len(sus.Reason) < MaxSuspendReason-1 {
		t.Errorf("reason of %d bytes kept as %d bytes", len(reason), len(sus.Reason))
	}
}

// TestSuspensionSurvivesRestart: a suspension is on disk: the NATS server restarted on the same
// data directory still holds it.
func TestSuspensionSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	e, nc, q := startQueue(t, dir)
	s := newTestSuspensions(t, q.JetStream())
	if _, _, err := s.Suspend(t.Context(), "api", "alice", "freeze"); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	e.Shutdown()

	e, nc, q = startQueue(t, dir)
	t.Cleanup(func() { nc.Close(); e.Shutdown() })
	s = newTestSuspensions(t, q.JetStream())
	got, err := s.Get(t.Context(), "api")
	if err != nil || !got.Suspended || got.By != "alice" || got.Reason != "freeze" || !got.At.Equal(suspendEpoch) {
		t.Fatalf("after restart: %+v %v", got, err)
	}
}

// TestReplicasShareSuspensions: two replicas (two connections, two Suspensions) see each
// other's changes at once and through Watch, and racing suspensions make one change.
func TestReplicasShareSuspensions(t *testing.T) {
	e, nc, q := startQueue(t, t.TempDir())
	t.Cleanup(func() { nc.Close(); e.Shutdown() })
	a := newTestSuspensions(t, q.JetStream())
	nc2, err := e.Connect("replica-b")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc2.Close)
	js2, err := jetstream.New(nc2)
	if err != nil {
		t.Fatal(err)
	}
	b := newTestSuspensions(t, js2)

	seen := make(chan Suspension, 16)
	wctx, stop := context.WithCancel(t.Context())
	watchDone := make(chan error, 1)
	go func() { watchDone <- b.Watch(wctx, func(s Suspension) { seen <- s }) }()

	if _, _, err := a.Suspend(t.Context(), "api", "alice", "incident"); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Get(t.Context(), "api"); err != nil || !got.Suspended || got.By != "alice" {
		t.Fatalf("replica b reads %+v %v", got, err)
	}
	select {
	case s := <-seen:
		if s.App != "api" || !s.Suspended {
			t.Errorf("watch saw %+v", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("replica b's watch did not see the suspension within 10s")
	}
	if _, _, err := b.Resume(t.Context(), "api", "bob"); err != nil {
		t.Fatal(err)
	}
	if got, _ := a.Get(t.Context(), "api"); got.Suspended || got.By != "bob" {
		t.Fatalf("replica a reads %+v after b resumed", got)
	}
	select {
	case s := <-seen:
		if s.Suspended || s.By != "bob" {
			t.Errorf("watch saw %+v, want the resume", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("replica b's watch did not see the resume within 10s")
	}
	stop()
	if err := <-watchDone; err != nil {
		t.Errorf("Watch ended with %v, want nil once its context ended", err)
	}

	// Both replicas suspend at once: one of them changes it, the other finds it done.
	var wg sync.WaitGroup
	changes := make(chan bool, 2)
	for i, s := range []*Suspensions{a, b} {
		wg.Go(func() {
			_, changed, err := s.Suspend(t.Context(), "db", []string{"alice", "bob"}[i], "")
			if err != nil {
				t.Error(err)
			}
			changes <- changed
		})
	}
	wg.Wait()
	close(changes)
	n := 0
	for c := range changes {
		if c {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d of two racing suspensions changed the state, want 1", n)
	}
}
