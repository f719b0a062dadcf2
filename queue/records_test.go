package queue

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

func newTestRecords(t *testing.T) *Records {
	t.Helper()
	e, nc, q := startQueue(t, t.TempDir())
	t.Cleanup(func() { nc.Close(); e.Shutdown() })
	recs, err := NewRecords(t.Context(), q.JetStream(), 1)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// TestLargeRecordsAreCutNotLost: a preview whose diff and object list are far over what one
// NATS message holds is stored, terminal, with its diff cut and noted, and the whole diff stays
// readable; the same record without the cut would be refused by the server.
func TestLargeRecordsAreCutNotLost(t *testing.T) {
	recs := newTestRecords(t)
	diff := strings.Repeat("~ ConfigMap big/x: data.k: \"a\" → \"é\"\n", 3<<20/40)
	r := Record{ID: NewID(), App: "api", Kind: KindPreview, SHA: "abc", State: StateSucceeded, Message: "3000 changed", Diff: diff}
	for i := range 20_000 {
		r.Objects = append(r.Objects, ObjectRecord{Kind: "ConfigMap", Namespace: "big", Name: fmt.Sprintf("object-%05d", i), Action: "changed"})
	}
	if _, err := recs.kv.Create(t.Context(), syncKey("raw"), []byte(diff)); err == nil {
		t.Fatal("the server took a 3 MiB message: this test no longer shows why records are cut")
	}
	if err := recs.Put(t.Context(), r); err != nil {
		t.Fatalf("Put: %v", err)
	}
	got, err := recs.Get(t.Context(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != StateSucceeded || !got.DiffCut || !strings.HasSuffix(got.Diff, diffCutNote) || len(got.Diff) > MaxRecordBytes {
		t.Fatalf("record: state %s, diffCut %v, diff %d bytes", got.State, got.DiffCut, len(got.Diff))
	}
	if got.ObjectsCut == 0 || len(got.Objects)+got.ObjectsCut != 20_000 {
		t.Errorf("objects kept %d, cut %d; want all 20000 accounted for", len(got.Objects), got.ObjectsCut)
	}
	full, err := recs.FullDiff(t.Context(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if string(full) != diff {
		t.Errorf("the whole diff has %d bytes, want %d", len(full), len(diff))
	}
	// A small record is stored as it is.
	small := Record{ID: NewID(), App: "api", Kind: KindPreview, SHA: "def", State: StateSucceeded, Diff: "~ a\n"}
	if err := recs.Put(t.Context(), small); err != nil {
		t.Fatal(err)
	}
	if got, _ := recs.Get(t.Context(), small.ID); got.DiffCut || got.Diff != "~ a\n" {
		t.Errorf("small record %+v", got)
	}
	if _, err := recs.FullDiff(t.Context(), small.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("FullDiff of an uncut record: %v, want not found", err)
	}
}

// TestEvictionKeepsAnAccount: a flood of syncs pushes an app's real syncs off its history,
// but the link of a commit status still finds what its sync did; the whole diff of an evicted
// preview is deleted with it.
func TestEvictionKeepsAnAccount(t *testing.T) {
	recs := newTestRecords(t)
	real := Record{ID: NewID(), App: "api", Kind: KindPreview, SHA: "real", State: StateFailed, Status: "failure",
		Message: "ConfigMap api/x: forbidden", Error: &RecordError{Stage: "apply", Object: "ConfigMap api/x", Message: "forbidden"},
		Diff: strings.Repeat("d", MaxRecordBytes+1)}
	if err := recs.Put(t.Context(), real); err != nil {
		t.Fatal(err)
	}
	for i := range HistoryLength {
		if err := recs.Put(t.Context(), Record{ID: NewID(), App: "api", Kind: KindDeploy, SHA: fmt.Sprint(i), State: StateSkipped}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := recs.Get(t.Context(), real.ID)
	if err != nil {
		t.Fatalf("the evicted sync: %v", err)
	}
	if !got.Evicted || got.State != StateFailed || got.SHA != "real" || got.Error == nil || got.Error.Message != "forbidden" || got.Diff != "" {
		t.Errorf("account %+v", got)
	}
	if _, err := recs.FullDiff(t.Context(), real.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("the evicted preview's whole diff: %v, want deleted", err)
	}
}

// TestConcurrentHistoryUpdates: replicas adding syncs of one app at once lose none of them;
// each compare-and-set conflict is read again.
func TestConcurrentHistoryUpdates(t *testing.T) {
	recs := newTestRecords(t)
	const writers, each = 6, 5
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for range writers {
		wg.Go(func() {
			for range each {
				if err := recs.Put(t.Context(), Record{ID: NewID(), App: "api", Kind: KindDeploy, State: StateQueued}); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	hist, err := recs.History(t.Context(), "api", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != writers*each {
		t.Errorf("history holds %d syncs, want %d", len(hist), writers*each)
	}
}
