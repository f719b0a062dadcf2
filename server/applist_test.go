package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/queue/queuetest"
)

// countingRecords is the real record store, counting the reads the list must not make.
type countingRecords struct {
	*queue.Records
	reads atomic.Int64
}

func (c *countingRecords) Get(ctx context.Context, id string) (queue.Record, error) {
	c.reads.Add(1)
	return c.Records.Get(ctx, id)
}

func (c *countingRecords) History(ctx context.Context, app string, limit int) ([]queue.Record, error) {
	c.reads.Add(1)
	return c.Records.History(ctx, app, limit)
}

// listApps is one GET /api/v1/apps answer.
type listAnswer struct {
	Apps []struct {
		Name     string        `json:"name"`
		Repo     string        `json:"repo"`
		LastSync *queue.Record `json:"lastSync"`
	} `json:"apps"`
	Total    int    `json:"total"`
	Continue string `json:"continue"`
}

func getList(t *testing.T, ts *httptest.Server, query string) (int, listAnswer) {
	t.Helper()
	code, body := getWith(t, ts, "/api/v1/apps"+query, nil)
	var l listAnswer
	if code == http.StatusOK {
		if err := json.Unmarshal([]byte(body), &l); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
	}
	return code, l
}

// TestAppListAtThousandsOfApps: with 2,000 apps on a real record store, the API and the
// dashboard list apps from the in-memory index (no record read per request), page through
// every app exactly once, filter by state and repository, and show a sync stored after start.
func TestAppListAtThousandsOfApps(t *testing.T) {
	const apps = 2000
	recs := &countingRecords{Records: natsRecords(t)}
	ctx := t.Context()
	var infos []AppInfo
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := range apps {
		name := fmt.Sprintf("app%04d", i)
		infos = append(infos, AppInfo{Name: name, Repo: fmt.Sprintf("repo%02d", i%50), Path: "apps/" + name})
		if i%2 == 1 { // odd apps have never synced
			continue
		}
		state := queue.StateSucceeded
		if i%10 == 0 {
			state = queue.StateFailed
		}
		deploy := queue.Record{ID: fmt.Sprintf("d%04d", i), App: name, Kind: queue.KindDeploy, SHA: "abcdef1234", State: state, EnqueuedAt: t0,
			Objects: []queue.ObjectRecord{{Kind: "ConfigMap", Name: name, Action: "created"}}}
		if err := recs.Put(ctx, deploy); err != nil {
			t.Fatal(err)
		}
		if i%4 == 0 { // a later preview does not change where the app stands
			preview := queue.Record{ID: fmt.Sprintf("p%04d", i), App: name, Kind: queue.KindPreview, SHA: "fedcba", State: queue.StateFailed,
				PR: 7, EnqueuedAt: t0.Add(time.Minute)}
			if err := recs.Put(ctx, preview); err != nil {
				t.Fatal(err)
			}
		}
	}
	srv := New(Config{Records: recs, Apps: infos})
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	ts := httptest.NewServer(srv.Routes())
	t.Cleanup(ts.Close)
	recs.reads.Store(0)

	// Paging: 1,000 at a time, every app once, in name order.
	var names []string
	pages := 0
	for cont := ""; pages < 10; pages++ {
		code, l := getList(t, ts, "?limit=1000&continue="+cont)
		if code != http.StatusOK || l.Total != apps {
			t.Fatalf("page %d: status %d, total %d", pages, code, l.Total)
		}
		for _, a := range l.Apps {
			names = append(names, a.Name)
		}
		if cont = l.Continue; cont == "" {
			break
		}
	}
	if len(names) != apps || pages != 1 {
		t.Fatalf("paging listed %d apps over %d pages, want %d over 2", len(names), pages+1, apps)
	}
	for i, n := range names {
		if want := fmt.Sprintf("app%04d", i); n != want {
			t.Fatalf("app %d listed is %s, want %s", i, n, want)
		}
	}

	// The newest sync is the API's lastSync; a preview is newer than the deploy of app0000.
	code, l := getList(t, ts, "?limit=3")
	if code != http.StatusOK || len(l.Apps) != 3 || l.Continue != "app0002" {
		t.Fatalf("limit=3: status %d, %d apps, continue %q", code, len(l.Apps), l.Continue)
	}
	if s := l.Apps[0].LastSync; s == nil || s.ID != "p0000" || s.PR != 7 || len(s.Objects) != 0 {
		t.Errorf("app0000's lastSync = %+v, want the preview p0000's summary without objects", s)
	}
	if l.Apps[1].LastSync != nil {
		t.Errorf("app0001 never synced, lastSync = %+v", l.Apps[1].LastSync)
	}

	// Filters: the list stands where the last deploy left each app.
	for _, tc := range []struct {
		query string
		total int
	}{
		{"?state=failed", apps / 10},
		{"?state=succeeded", apps/2 - apps/10},
		{"?state=never", apps / 2},
		{"?repo=repo07", apps / 50},
		{"?repo=repo00&state=failed", apps / 50},
		{"?q=APP00", 100},
	} {
		if code, l := getList(t, ts, tc.query); code != http.StatusOK || l.Total != tc.total || len(l.Apps) != tc.total {
			t.Errorf("%s: status %d, total %d, %d apps, want %d", tc.query, code, l.Total, len(l.Apps), tc.total)
		}
	}
	if code, _ := getWith(t, ts, "/api/v1/apps?limit=0", nil); code != http.StatusBadRequest {
		t.Errorf("limit=0: status %d, want 400", code)
	}

	// The dashboard pages by DashboardPageSize and keeps the filter in its links.
	rowApp := regexp.MustCompile(`<tr data-app="([^"]+)"`)
	code, body := getWith(t, ts, "/?page=2", nil)
	rows := rowApp.FindAllStringSubmatch(body, -1)
	if code != http.StatusOK || len(rows) != DashboardPageSize || rows[0][1] != "app0100" {
		t.Fatalf("page 2: status %d, %d rows, want %d from app0100", code, len(rows), DashboardPageSize)
	}
	for _, want := range []string{`href="/" rel="prev"`, `href="/?page=3" rel="next"`, "page 2 of 20", `data-paged="yes"`} {
		if !strings.Contains(body, want) {
			t.Errorf("page 2 lacks %q", want)
		}
	}
	code, body = getWith(t, ts, "/?state=failed&page=2", nil)
	rows = rowApp.FindAllStringSubmatch(body, -1)
	if code != http.StatusOK || len(rows) != DashboardPageSize || rows[0][1] != "app1000" ||
		!strings.Contains(body, `href="/?state=failed" rel="prev"`) || strings.Contains(body, `rel="next"`) {
		t.Errorf("failed apps, page 2: status %d, %d rows (first %v)", code, len(rows), rows[:min(1, len(rows))])
	}

	if n := recs.reads.Load(); n != 0 {
		t.Errorf("listing read %d records or histories, want none", n)
	}

	// A sync stored now shows on the list once the index has it.
	live := queue.Record{ID: "live0001", App: "app0001", Kind: queue.KindDeploy, SHA: "0123456789", State: queue.StateRunning, EnqueuedAt: t0.Add(time.Hour)}
	if err := recs.Put(ctx, live); err != nil {
		t.Fatal(err)
	}
	var seen *queue.Record
	for range 100 {
		if _, l := getList(t, ts, "?q=app0001"); len(l.Apps) == 1 && l.Apps[0].LastSync != nil {
			seen = l.Apps[0].LastSync
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if seen == nil || seen.ID != live.ID || seen.State != queue.StateRunning {
		t.Errorf("after a new sync app0001's lastSync = %+v, want %s running", seen, live.ID)
	}
}

// historyOnly hides FollowSyncs, so that the server reads each app's history per list: the
// way it listed apps before the index, kept for stores that cannot be followed.
type historyOnly struct{ recs *queue.Records }

func (h historyOnly) Get(ctx context.Context, id string) (queue.Record, error) {
	return h.recs.Get(ctx, id)
}
func (h historyOnly) History(ctx context.Context, app string, limit int) ([]queue.Record, error) {
	return h.recs.History(ctx, app, limit)
}
func (h historyOnly) FullDiff(ctx context.Context, id string) ([]byte, error) {
	return h.recs.FullDiff(ctx, id)
}

// BenchmarkAppList is GET /api/v1/apps?limit=1000 and the dashboard's first page with 1,000
// apps on a real record store: from the in-memory index, and reading each app's history.
func BenchmarkAppList(b *testing.B) {
	const apps = 1000
	recs := queuetest.Records(b)
	var infos []AppInfo
	for i := range apps {
		name := fmt.Sprintf("app%04d", i)
		infos = append(infos, AppInfo{Name: name, Repo: "r", Path: "apps/" + name})
		if err := recs.Put(b.Context(), queue.Record{ID: fmt.Sprintf("d%04d", i), App: name, Kind: queue.KindDeploy, SHA: "abc", State: queue.StateSucceeded}); err != nil {
			b.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name  string
		store Records
	}{{"index", recs}, {"history-per-app", historyOnly{recs}}} {
		srv := New(Config{Records: tc.store, Apps: infos})
		b.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
		h := srv.Routes()
		for _, path := range []string{"/api/v1/apps?limit=1000", "/"} {
			b.Run(tc.name+path, func(b *testing.B) {
				for b.Loop() {
					w := httptest.NewRecorder()
					h.ServeHTTP(w, httptest.NewRequestWithContext(b.Context(), http.MethodGet, path, nil))
					if w.Code != http.StatusOK {
						b.Fatalf("%s: %d", path, w.Code)
					}
				}
			})
		}
	}
}
