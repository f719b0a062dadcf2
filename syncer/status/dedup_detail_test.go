package status

import (
	"testing"
)

// Dedup compares details by content: a detail is a pointer, rebuilt for every post, so comparing
// pointers would post everything (or, were one reused and changed, skip a changed report).
func TestDedupComparesDetailsByContent(t *testing.T) {
	f := &fakeReporter{}
	d := Dedup(f)
	post := func(s Status) {
		t.Helper()
		if err := d.Report(t.Context(), s); err != nil {
			t.Fatal(err)
		}
	}
	post(previewStatus(Success, "1 changed, 1 created, 0 pruned", PhaseDone))
	// The same account in a new value: skipped.
	post(previewStatus(Success, "1 changed, 1 created, 0 pruned", PhaseDone))
	// Same line, another diff: posted, as the check run's text differs.
	changed := previewStatus(Success, "1 changed, 1 created, 0 pruned", PhaseDone)
	changed.Detail.Diff[1].Lines = []string{"~ /spec/replicas: 2 → 4"}
	post(changed)
	// Without a detail (a commit-status-only caller): posted once, then skipped.
	bare := previewStatus(Success, "1 changed, 1 created, 0 pruned", PhaseDone)
	bare.Detail = nil
	post(bare)
	post(bare)
	got := f.posted()
	if len(got) != 3 {
		t.Fatalf("%d posts, want 3", len(got))
	}
	if got[1].Detail.Diff[1].Lines[0] != "~ /spec/replicas: 2 → 4" || got[2].Detail != nil {
		t.Errorf("posted %+v", got)
	}
}

// Dedup keeps a digest of each detail, not the detail: the memory of 10,000 previews must not
// hold 10,000 diffs.
func TestDedupRemembersNoDetail(t *testing.T) {
	d := newDedup(&fakeReporter{}, 4)
	if err := d.Report(t.Context(), bigPreview(50, 4, 40)); err != nil {
		t.Fatal(err)
	}
	for e := d.order.Front(); e != nil; e = e.Next() {
		if p := e.Value.(posted); p.status.Detail != nil || p.detail == ([32]byte{}) {
			t.Errorf("remembered %+v", p)
		}
	}
}
