package server

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestClusters: GET /api/v1/clusters lists each cluster's health with its app count (apps
// naming none count for the default), the app list page shows a cluster that is down with its
// error, and the app page names the app's cluster.
func TestClusters(t *testing.T) {
	checked := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	health := []ClusterHealth{
		{Name: "default", Server: "10.0.0.1:443", Default: true, Reachable: true, Version: "v1.37.2", CheckedAt: checked, Since: checked},
		{Name: "prod-eu", Server: "prod-eu.example.com:6443", LastError: "dial tcp: connection refused", CheckedAt: checked, Since: checked.Add(-time.Minute)},
	}
	s := New(Config{Records: emptyRecords(), Now: func() time.Time { return checked }, Clusters: func() []ClusterHealth { return append([]ClusterHealth(nil), health...) },
		Apps: []AppInfo{{Name: "db", Repo: "platform", Path: "apps/db", Branch: "main"}, {Name: "api", Repo: "platform", Path: "apps/api", Branch: "main", Cluster: "default"},
			{Name: "api-prod-eu", Repo: "platform", Path: "apps/api", Branch: "main", Cluster: "prod-eu"}}})
	ts := httptest.NewServer(s.Routes())
	t.Cleanup(ts.Close)
	get := func(path string) (int, string) {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	code, body := get("/api/v1/clusters")
	var got struct{ Clusters []ClusterHealth }
	if err := json.Unmarshal([]byte(body), &got); code != http.StatusOK || err != nil {
		t.Fatalf("GET /api/v1/clusters: %d %s (%v)", code, body, err)
	}
	want := append([]ClusterHealth(nil), health...)
	want[0].Apps, want[1].Apps = 2, 1
	if diff := cmp.Diff(want, got.Clusters); diff != "" {
		t.Errorf("clusters (-want +got):\n%s", diff)
	}

	code, body = get("/")
	if code != http.StatusOK || !strings.Contains(body, `<tr data-cluster="prod-eu">`) || !strings.Contains(body, "unreachable</span> since") ||
		!strings.Contains(body, "dial tcp: connection refused") || !strings.Contains(body, "<code>prod-eu.example.com:6443</code>") {
		t.Errorf("app list page does not show the cluster that is down:\n%s", body)
	}
	if !strings.Contains(body, `<td data-label="cluster">prod-eu</td>`) {
		t.Errorf("app list has no cluster column:\n%s", body)
	}
	if _, body = get("/apps/api-prod-eu"); !strings.Contains(body, "<dt>cluster</dt><dd><code>prod-eu</code></dd>") {
		t.Errorf("app page does not name the app's cluster:\n%s", body)
	}

	// A server of one cluster shows neither the section nor the column.
	one := httptest.NewServer(New(Config{Records: emptyRecords(), Apps: []AppInfo{{Name: "db"}}, Clusters: func() []ClusterHealth { return health[:1] }}).Routes())
	t.Cleanup(one.Close)
	resp, err := http.Get(one.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(b), `id="clusters"`) || strings.Contains(string(b), `data-label="cluster"`) {
		t.Error("a single-cluster server shows a clusters section")
	}
}
