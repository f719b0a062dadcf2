package syncer

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/syncer/apply"
	"github.com/google/go-cmp/cmp"
)

func TestOlderCommitQueuedLaterDoesNotWin(t *testing.T) {
	w := newWorld(t)
	now := time.Now()
	// The newer commit's hook came first; the older commit's hook, queued after it, is the
	// stream's newest job but its commit lies behind.
	w.backlog.newest["api"] = job("api", "older", now.Add(time.Second))
	w.fetch.ancestor = func(a, b string) bool { return a == "older" && b == "newer" }
	if err := w.s.Handle(t.Context(), job("api", "newer", now), queue.Delivery{Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	if len(w.applier.runs) != 1 {
		t.Fatalf("the newer commit was not applied: runs %v, statuses %q", w.applier.runs, w.rep.states("newer"))
	}
	// Then the older job runs: it is the stream's newest, and the app went past it.
	if err := w.s.Handle(t.Context(), job("api", "older", now.Add(time.Second)), queue.Delivery{Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"skipped included in newer"}, w.rep.states("older")); diff != "" {
		t.Errorf("statuses of the older commit (-want +got):\n%s", diff)
	}
	if len(w.applier.runs) != 1 {
		t.Errorf("the older commit was applied over the newer: %v", w.applier.runs)
	}
}

func TestTransientClassifiesHealthWaits(t *testing.T) {
	refused := fmt.Errorf("list pods: %w", syscall.ECONNREFUSED)
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"apiserver unreachable during the health wait", &apply.Error{Stage: apply.StageHealth, Object: "list pods.", Message: refused.Error(), Err: refused}, true},
		{"app not healthy within its timeout", &apply.Error{Stage: apply.StageHealth, Object: "Pod a/b", Message: "not ready", Err: context.DeadlineExceeded}, false},
		{"forbidden list during the health wait", &apply.Error{Stage: apply.StageHealth, Object: "list pods.", Message: "forbidden", Err: errors.New("forbidden")}, false},
		{"apiserver unreachable during the apply", &apply.Error{Stage: apply.StageApply, Object: "Pod a/b", Message: refused.Error(), Err: refused}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := transient(at(StageApply, tt.err)); got != tt.want {
				t.Errorf("transient(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}
