package syncer

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/syncer/apply"
	"github.com/ferrygitops/ferry/syncer/render"
	"github.com/ferrygitops/ferry/syncer/status"
)

func TestDetailFromARecord(t *testing.T) {
	w := newWorld(t)
	j := queue.Job{ID: "p1", Kind: queue.KindPreview, App: "api", PR: 7, SHA: "abc"}
	rec := queue.Record{
		Counts: map[string]int{"created": 1, "changed": 1, "unchanged": 2, "pruned": 1},
		Objects: []queue.ObjectRecord{
			{Kind: "ConfigMap", Namespace: "api", Name: "a", Action: "create"},
			{Kind: "ConfigMap", Namespace: "api", Name: "b", Action: "unchanged"},
			{Kind: "Deployment", Namespace: "api", Name: "web", Action: "change"},
			{Kind: "Service", Namespace: "api", Name: "old", Action: "prune"},
		},
		Diff: "+ ConfigMap api/a  (apps/api/a.yaml)  create\n= ConfigMap api/b  (apps/api/b.yaml)  unchanged\n" +
			"~ Deployment api/web  (apps/api/web.yaml)  change\n    ~ /spec/replicas: 2 → 3\n    + /spec/paused: true\n- Service api/old  prune\n" +
			"\n… diff cut to fit the sync record; the whole diff is on the sync's page\n",
		DiffCut: true,
		Error:   &queue.RecordError{Stage: "plan", Object: "Deployment api/web", File: "apps/api/web.yaml", Message: "denied"},
	}
	got := w.s.detail(j, rec, status.PhaseDone)
	want := &status.Detail{
		App: "api", Kind: status.KindPreview, Phase: status.PhaseDone, SyncID: "p1", PR: 7,
		Counts: status.Counts{Created: 1, Changed: 1, Unchanged: 2, Pruned: 1},
		Objects: []status.Object{
			{Action: "created", Kind: "ConfigMap", Namespace: "api", Name: "a"},
			{Action: "changed", Kind: "Deployment", Namespace: "api", Name: "web"},
			{Action: "pruned", Kind: "Service", Namespace: "api", Name: "old"},
		},
		Diff: []status.ObjectDiff{
			{Header: "+ ConfigMap api/a  (apps/api/a.yaml)  create"},
			{Header: "~ Deployment api/web  (apps/api/web.yaml)  change", Lines: []string{"~ /spec/replicas: 2 → 3", "+ /spec/paused: true"}},
			{Header: "- Service api/old  prune"},
		},
		DiffCut:     true,
		Failure:     &status.FailureDetail{Stage: "plan", Object: "Deployment api/web", File: "apps/api/web.yaml", Message: "denied"},
		SyncURL:     "https://ferry.example.com/syncs/p1",
		FullDiffURL: "https://ferry.example.com/syncs/p1/diff",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("detail (-want +got):\n%s", diff)
	}

	// A deploy's configured objects are changes; a sync not done yet carries no account.
	dj := job("api", "abc", w.s.opts.Now())
	d := w.s.detail(dj, queue.Record{Counts: map[string]int{"configured": 2}, Objects: []queue.ObjectRecord{{Kind: "ConfigMap", Name: "x", Action: "configured"}}}, status.PhaseDone)
	if d.Kind != status.KindDeploy || d.Counts.Changed != 2 || d.Objects[0].Action != "changed" || d.PR != 0 {
		t.Errorf("deploy detail %+v", d)
	}
	if d := w.s.detail(dj, rec, status.PhaseInProgress); d.Counts != (status.Counts{}) || d.Failure != nil || d.Diff != nil {
		t.Errorf("in-progress detail carries an account: %+v", d)
	}
}

func TestDetailDiffIsBounded(t *testing.T) {
	var b strings.Builder
	for i := 0; b.Len() < 2*MaxDetailDiff; i++ {
		b.WriteString("~ ConfigMap api/x  change\n    ~ /data/k: \"" + strings.Repeat("v", 200) + "\" → \"w\"\n")
	}
	diffs, cut := objectDiffs(b.String())
	size := 0
	for _, d := range diffs {
		size += len(d.Header)
		for _, l := range d.Lines {
			size += len(l)
		}
	}
	if !cut || size > MaxDetailDiff {
		t.Errorf("cut %v, %d bytes kept", cut, size)
	}
}

// The statuses of a run carry their phase: queued from the hook's notice, in progress once the
// worker starts, done with the result.
func TestStatusesCarryTheirPhase(t *testing.T) {
	w := newWorld(t)
	j := job("api", "bbb", w.s.opts.Now())
	w.s.notifyQueued(t.Context(), j)
	if err := w.s.Handle(t.Context(), j, queue.Delivery{Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range w.rep.got {
		got = append(got, string(s.State)+" "+string(s.Detail.Phase))
	}
	want := []string{"pending queued", "pending in_progress", "success done"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	last := w.rep.got[len(w.rep.got)-1].Detail
	if last.SyncID != j.ID || last.SyncURL != "https://ferry.example.com/syncs/"+j.ID || last.Counts.Created != 1 {
		t.Errorf("final detail %+v", last)
	}
}

// A failure names the repository file to annotate, whichever part made the error.
func TestDescribeNamesTheFile(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want queue.RecordError
	}{
		{"apiserver refusal", at(StageApply, &apply.Error{Stage: "apply", Object: "Deployment api/web", File: "apps/api/web.yaml", Message: "invalid"}),
			queue.RecordError{Stage: "apply", Object: "Deployment api/web", File: "apps/api/web.yaml", Message: "invalid"}},
		{"object owned by someone else", at(StageApply, &apply.ConflictError{Object: "ConfigMap api/x", File: "apps/api/x.yaml", App: "api"}),
			queue.RecordError{Stage: "apply", Object: "ConfigMap api/x", File: "apps/api/x.yaml", Message: (&apply.ConflictError{Object: "ConfigMap api/x", File: "apps/api/x.yaml", App: "api"}).Error()}},
		{"render refusal", at(StageRender, fmt.Errorf("render: %w", &render.RefusedError{File: "apps/api/kustomization.yaml", Entry: "resources", Reason: "remote"})),
			queue.RecordError{Stage: "render", File: "apps/api/kustomization.yaml", Message: "render: " + (&render.RefusedError{File: "apps/api/kustomization.yaml", Entry: "resources", Reason: "remote"}).Error()}},
		{"no file", at(StageFetch, errors.New("connection refused")), queue.RecordError{Stage: "fetch", Message: "connection refused"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(&tt.want, describe(tt.err)); diff != "" {
				t.Errorf("describe (-want +got):\n%s", diff)
			}
		})
	}
}
