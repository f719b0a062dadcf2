package syncer

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/syncer/source"
)

func TestRevisionRef(t *testing.T) {
	for _, tc := range []struct {
		branch, ref, want, reason string
	}{
		{"main", "refs/heads/main", "refs/heads/main", ""},
		{"main", "main", "refs/heads/main", ""},
		{"main", "v1.2.0", "refs/tags/v1.2.0", ""},
		{"main", "refs/tags/v1.2.0", "refs/tags/v1.2.0", ""},
		{"release-*", "refs/heads/release-2", "refs/heads/release-2", ""},
		{"release-*", "release-2", "refs/heads/release-2", ""},
		{"main", "refs/heads/feature", "", "branch feature is not the branch the app deploys (main)"},
		{"main", "refs/pull/120/head", "", "refs/pull/120/head is neither the app's branch (main) nor a tag"},
		{"main", "refs/merge-requests/7/head", "", "refs/merge-requests/7/head is neither the app's branch (main) nor a tag"},
		{"release-*", "", "", "the sync names no branch or tag to check it against"},
	} {
		got, reason := revisionRef(tc.branch, tc.ref)
		if got != tc.want || reason != tc.reason {
			t.Errorf("revisionRef(%q, %q) = %q, %q; want %q, %q", tc.branch, tc.ref, got, reason, tc.want, tc.reason)
		}
	}
}

// TestManualSyncOfUnreachableCommitFails: the worker refuses a manual sync whose commit is not on
// the branch, whatever the API let through, before applying anything; other triggers are not
// checked.
func TestManualSyncOfUnreachableCommitFails(t *testing.T) {
	for _, tc := range []struct {
		name, ref string
		fetch     func(sha string) error
		ancestor  func(a, b string) bool
		want      string
	}{
		{"not an ancestor", "refs/heads/main", nil, func(a, b string) bool { return false }, "revision: commit prhead refused: it is not reachable from branch main (at head)"},
		{"not fetched with the branch", "refs/heads/main", func(sha string) error {
			if sha == "prhead" {
				return source.ErrCommitNotFound
			}
			return nil
		}, func(a, b string) bool { return true }, "revision: commit prhead refused: it is not reachable from branch main (at head)"},
		{"pull request ref", "refs/pull/120/head", nil, func(a, b string) bool { return true }, "revision: commit prhead refused: refs/pull/120/head is neither the app's branch (main) nor a tag"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.fetch.fetch, w.fetch.ancestor = tc.fetch, tc.ancestor
			m := job("api", "prhead", time.Now())
			m.Trigger, m.Ref = queue.TriggerManual, tc.ref
			err := w.s.Handle(t.Context(), m, queue.Delivery{Attempt: 1})
			var re *RevisionError
			if !errors.As(err, &re) {
				t.Fatalf("err = %v, want a RevisionError", err)
			}
			var retry *queue.RetryError
			if errors.As(err, &retry) {
				t.Error("a refused revision is retried")
			}
			if len(w.applier.runs) != 0 {
				t.Errorf("applied: %v", w.applier.runs)
			}
			got := w.rep.states("prhead")
			if len(got) == 0 || got[len(got)-1] != "failure "+tc.want {
				t.Errorf("statuses %q, want the last to be failure %q", got, tc.want)
			}
			rec, _ := w.store.Get(t.Context(), m.ID)
			if rec.State != queue.StateFailed || rec.Error == nil || rec.Error.Stage != string(StageRevision) || !strings.Contains(rec.Error.Message, "refused") {
				t.Errorf("record %+v %+v", rec, rec.Error)
			}
		})
	}

	// A push of the same commit is not checked here (its ref is the branch by construction).
	w := newWorld(t)
	w.fetch.ancestor = func(a, b string) bool { return false }
	if err := w.s.Handle(t.Context(), job("api", "pushed", time.Now()), queue.Delivery{Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	// A manual sync of a commit on the branch runs.
	w.fetch.ancestor = func(a, b string) bool { return a == "onmain" && b == "head" }
	m := job("api", "onmain", time.Now())
	m.Trigger, m.ID = queue.TriggerManual, "manual-ok"
	if err := w.s.Handle(t.Context(), m, queue.Delivery{Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	if len(w.applier.runs) != 2 {
		t.Errorf("runs %v, want the push and the manual sync applied", w.applier.runs)
	}
}
