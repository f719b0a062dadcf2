package server

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ferrygitops/ferry/queue"
)

func (f fakeRecords) FullDiff(_ context.Context, id string) ([]byte, error) {
	if f.fullDiff == nil {
		return nil, fmt.Errorf("diff of sync %s: %w", id, queue.ErrNotFound)
	}
	return f.fullDiff(id)
}

// TestCutAndEvictedRecordsSayWhatHappened: a preview whose diff was cut links to the whole
// diff, and an evicted sync's page says why only an account of it is left.
func TestCutAndEvictedRecordsSayWhatHappened(t *testing.T) {
	cut := sampleRecord()
	cut.ID, cut.Kind, cut.Diff, cut.DiffCut, cut.ObjectsCut = "0cut", queue.KindPreview, "~ ConfigMap api/a\n", true, 1234
	evicted := sampleRecord()
	evicted.ID, evicted.Evicted, evicted.Objects = "0old", true, nil
	records := fakeRecords{
		get: func(_ context.Context, id string) (queue.Record, error) {
			switch id {
			case cut.ID:
				return cut, nil
			case evicted.ID:
				return evicted, nil
			}
			return queue.Record{}, fmt.Errorf("sync %s: %w", id, queue.ErrNotFound)
		},
		history: func(context.Context, string, int) ([]queue.Record, error) { return nil, nil },
		fullDiff: func(id string) ([]byte, error) {
			if id == cut.ID {
				return []byte("~ ConfigMap api/a\n~ ConfigMap api/b\n"), nil
			}
			return nil, queue.ErrNotFound
		},
	}
	ts := httptest.NewServer(New(Config{Records: records}).Routes())
	t.Cleanup(ts.Close)

	code, body := get(t, ts.URL+"/syncs/0cut")
	if code != http.StatusOK || !strings.Contains(body, `href="/syncs/0cut/diff"`) || !strings.Contains(body, "1234 more objects") {
		t.Errorf("cut record page: %d\n%s", code, body)
	}
	if code, body := get(t, ts.URL+"/syncs/0cut/diff"); code != http.StatusOK || body != "~ ConfigMap api/a\n~ ConfigMap api/b\n" {
		t.Errorf("whole diff: %d %q", code, body)
	}
	if code, _ := get(t, ts.URL+"/syncs/0old/diff"); code != http.StatusNotFound {
		t.Errorf("whole diff of an uncut record: %d, want 404", code)
	}
	code, body = get(t, ts.URL+"/syncs/0old")
	if code != http.StatusOK || !strings.Contains(body, "fell off the app's history") || !strings.Contains(body, "Deployment api/web") {
		t.Errorf("evicted record page: %d\n%s", code, body)
	}
	code, body = get(t, ts.URL+"/syncs/0gone")
	if code != http.StatusNotFound || !strings.Contains(body, fmt.Sprintf("last %d syncs of each app", queue.HistoryLength)) {
		t.Errorf("unknown sync page: %d\n%s", code, body)
	}
}
