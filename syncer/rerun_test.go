package syncer

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ferrygitops/ferry/queue"
)

// TestRerunKeepsNewestCommitWins: GitHub's Re-run of a deploy check runs again the commit it
// names when that is the one the app runs, but newest commit still wins: a Re-run of an older
// commit ends "included in" the one that runs, and applies nothing.
func TestRerunKeepsNewestCommitWins(t *testing.T) {
	rerun := func(sha string) queue.Job {
		j := job("api", sha, time.Now())
		j.Trigger, j.ID = queue.TriggerRerun, "rerun-"+sha
		return j
	}
	t.Run("the running commit again", func(t *testing.T) {
		w := newWorld(t)
		w.store.states["api"] = queue.AppState{App: "api", SHA: "cur", State: queue.StateFailed, AppliedSHA: "cur", SyncID: "earlier"}
		if err := w.s.Handle(t.Context(), rerun("cur"), queue.Delivery{Attempt: 1}); err != nil {
			t.Fatal(err)
		}
		got := w.rep.states("cur")
		if len(got) != 2 || got[0] != "pending syncing cur" || !strings.HasPrefix(got[1], "success applied") {
			t.Errorf("statuses %q, want pending then applied", got)
		}
		if len(w.applier.runs) != 1 {
			t.Errorf("applied %d times, want once", len(w.applier.runs))
		}
	})
	t.Run("an older commit", func(t *testing.T) {
		w := newWorld(t)
		w.store.states["api"] = queue.AppState{App: "api", SHA: "new", State: queue.StateSucceeded, AppliedSHA: "new"}
		w.fetch.ancestor = func(a, b string) bool { return a == "old" && b == "new" }
		if err := w.s.Handle(t.Context(), rerun("old"), queue.Delivery{Attempt: 1}); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"skipped included in new"}, w.rep.states("old")); diff != "" {
			t.Errorf("statuses (-want +got):\n%s", diff)
		}
		if len(w.applier.runs) != 0 {
			t.Errorf("the older commit was applied: %v", w.applier.runs)
		}
	})
}
