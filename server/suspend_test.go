package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/ferrygitops/ferry/handlers"
	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/queue/queuetest"
	"github.com/ferrygitops/ferry/syncer/source"
)

const writeToken = "write-Token-5e1d0c"

// branchHead is the Git host's answer for every branch.
type branchHead string

func (h branchHead) Head(context.Context, source.Repo, string) (string, error) { return string(h), nil }

// steerServer is the server with the real write API in front of real NATS: the queue and the
// suspension store on an embedded server, the handlers behind Auth.
type steerServer struct {
	url   string
	queue *queue.Queue
	logs  *bytes.Buffer
}

func newSteerServer(t *testing.T, proxy *handlers.ProxyAuth) *steerServer {
	t.Helper()
	q := queuetest.Start(t)
	sus, err := queue.NewSuspensions(t.Context(), q.JetStream(), 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	logs := &bytes.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	apps := []handlers.ResyncApp{{Name: "api", Repo: "platform", Branch: "main"}}
	opts := handlers.ResyncOptions{Logger: log, NewID: queue.NewID, Repos: map[string]source.Repo{"platform": {Name: "platform"}}}
	head := branchHead(strings.Repeat("c", 40))
	resync, err := handlers.NewResync(apps, head, q, sus, opts)
	if err != nil {
		t.Fatal(err)
	}
	suspender, err := handlers.NewSuspender(apps, sus, head, q, opts)
	if err != nil {
		t.Fatal(err)
	}
	auth := handlers.NewAuth([]handlers.Token{{Name: "ci", Value: []byte(writeToken)}}, proxy)
	s := New(Config{Auth: auth.Require, Resync: resync, Suspend: http.HandlerFunc(suspender.Suspend), Resume: http.HandlerFunc(suspender.Resume),
		Suspensions: sus, Records: emptyRecords(), Logger: log,
		Apps: []AppInfo{{Name: "api", Repo: "platform", Path: "apps/api", Branch: "main"}, {Name: "db", Repo: "platform", Path: "apps/db", Branch: "main"}}})
	ts := httptest.NewServer(s.Routes())
	t.Cleanup(ts.Close)
	return &steerServer{url: ts.URL, queue: q, logs: logs}
}

// emptyRecords holds no sync but sampleRecord (of app api).
func emptyRecords() fakeRecords {
	return fakeRecords{
		get: func(_ context.Context, id string) (queue.Record, error) {
			if rec := sampleRecord(); id == rec.ID {
				return rec, nil
			}
			return queue.Record{}, fmt.Errorf("sync %s: %w", id, queue.ErrNotFound)
		},
		history: func(context.Context, string, int) ([]queue.Record, error) { return nil, nil },
	}
}

func (s *steerServer) post(t *testing.T, path, token, body string, headers ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestSteeringAPI: the write API as ferry serves it: 401 without a token, suspend shown by
// GET /api/v1/apps and /api/v1/apps/{app} and on the apps page, a manual sync refused with 409
// unless forced, resume answered 202 with a job stored in the real queue.
func TestSteeringAPI(t *testing.T) {
	s := newSteerServer(t, nil)
	for _, p := range []string{"sync", "suspend", "resume"} {
		if code, body := s.post(t, "/api/v1/apps/api/"+p, "", ""); code != http.StatusUnauthorized {
			t.Errorf("%s without a token: %d %s", p, code, body)
		}
	}
	if code, body := s.post(t, "/api/v1/apps/api/suspend", writeToken, `{"reason":"db migration"}`); code != http.StatusOK || !strings.Contains(body, `"suspended":true`) {
		t.Fatalf("suspend: %d %s", code, body)
	}

	var list struct {
		Apps []appView `json:"apps"`
	}
	code, body := get(t, s.url+"/api/v1/apps")
	if err := json.Unmarshal([]byte(body), &list); err != nil || code != http.StatusOK || len(list.Apps) != 2 {
		t.Fatalf("GET apps: %d %s %v", code, body, err)
	}
	api, db := list.Apps[0], list.Apps[1]
	if !api.Suspended || api.Suspension == nil || api.Suspension.By != "ci" || api.Suspension.Reason != "db migration" || api.Suspension.At.IsZero() {
		t.Errorf("api in the list: %+v %+v", api, api.Suspension)
	}
	if db.Suspended || db.Suspension != nil || !strings.Contains(body, `"suspended": false`) {
		t.Errorf("db in the list: %+v", db)
	}
	var one appView
	code, body = get(t, s.url+"/api/v1/apps/api")
	if err := json.Unmarshal([]byte(body), &one); err != nil || code != http.StatusOK || !one.Suspended || one.Suspension.By != "ci" {
		t.Errorf("GET app: %d %s", code, body)
	}
	if code, page := get(t, s.url+"/"); code != http.StatusOK || !strings.Contains(page, `<a href="/apps/api">api</a> <span class="badge suspended">⏸ suspended</span>`) || strings.Contains(page, `<a href="/apps/db">db</a> <span`) {
		t.Errorf("apps page: %d\n%s", code, page)
	}
	if code, page := get(t, s.url+"/syncs/"+sampleRecord().ID); code != http.StatusOK || !strings.Contains(page, "App api is suspended by ci since ") || !strings.Contains(page, ": db migration.") {
		t.Errorf("sync page of the suspended app: %d\n%s", code, page)
	}

	if code, body := s.post(t, "/api/v1/apps/api/sync", writeToken, ""); code != http.StatusConflict || !strings.Contains(body, "suspended by ci") {
		t.Errorf("manual sync while suspended: %d %s", code, body)
	}
	if n, _ := s.queue.Pending(t.Context()); n != 0 {
		t.Fatalf("a refused sync stored %d jobs", n)
	}
	if code, body := s.post(t, "/api/v1/apps/api/sync", writeToken, `{"force": true}`); code != http.StatusAccepted {
		t.Errorf("forced sync: %d %s", code, body)
	}
	code, body = s.post(t, "/api/v1/apps/api/resume", writeToken, "")
	var answer map[string]string
	if err := json.Unmarshal([]byte(body), &answer); err != nil || code != http.StatusAccepted || answer["app"] != "api" || answer["id"] == "" || answer["url"] != "/syncs/"+answer["id"] {
		t.Fatalf("resume: %d %s", code, body)
	}
	newest, ok, err := s.queue.Newest(t.Context(), queue.KindDeploy, "api")
	if err != nil || !ok || newest.ID != answer["id"] || newest.Trigger != queue.TriggerResume || newest.SHA != strings.Repeat("c", 40) {
		t.Errorf("stored resume job %+v %v %v", newest, ok, err)
	}
	if code, body = get(t, s.url+"/api/v1/apps/api"); !strings.Contains(body, `"suspended": false`) {
		t.Errorf("after resume: %d %s", code, body)
	}
	if _, page := get(t, s.url+"/syncs/"+sampleRecord().ID); strings.Contains(page, "is suspended") {
		t.Errorf("the sync page still says the app is suspended:\n%s", page)
	}
	if strings.Contains(s.logs.String(), writeToken) {
		t.Error("the token is in the logs")
	}
}

// TestNoAuthClosesWriteAPI: a server without Auth refuses every write request.
func TestNoAuthClosesWriteAPI(t *testing.T) {
	called := false
	h := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true })
	ts := httptest.NewServer(New(Config{Resync: h, Suspend: h, Resume: h, Records: emptyRecords()}).Routes())
	t.Cleanup(ts.Close)
	for _, p := range []string{"sync", "suspend", "resume"} {
		resp, err := http.Post(ts.URL+"/api/v1/apps/api/"+p, "application/json", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", p, resp.StatusCode)
		}
	}
	if called {
		t.Error("a write handler ran without authentication")
	}
}

// TestProxyUserThroughServer: the proxy's user is believed from the proxy's own address (here
// the test client's, 127.0.0.1) and named on the suspension; a client elsewhere that writes the
// header, with forwarding headers naming a trusted address, is refused, debug logging on or not.
func TestProxyUserThroughServer(t *testing.T) {
	trusted := newSteerServer(t, &handlers.ProxyAuth{UserHeader: "X-Forwarded-User", Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	if code, body := trusted.post(t, "/api/v1/apps/api/suspend", "", "", "X-Forwarded-User", "alice"); code != http.StatusOK || !strings.Contains(body, `"by":"alice"`) {
		t.Fatalf("suspend through the proxy: %d %s", code, body)
	}

	untrusted := newSteerServer(t, &handlers.ProxyAuth{UserHeader: "X-Forwarded-User", Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	code, body := untrusted.post(t, "/api/v1/apps/api/suspend", "", "",
		"X-Forwarded-User", "alice", "X-Real-IP", "10.0.0.1", "X-Forwarded-For", "10.0.0.1", "True-Client-IP", "10.0.0.1")
	if code != http.StatusUnauthorized {
		t.Fatalf("spoofed proxy headers: %d %s, want 401", code, body)
	}
	if _, body := get(t, untrusted.url+"/api/v1/apps/api"); !strings.Contains(body, `"suspended": false`) {
		t.Errorf("the spoofed request suspended the app: %s", body)
	}
	if !strings.Contains(untrusted.logs.String(), `remote=10.0.0.1 peer=127.0.0.1:`) {
		t.Errorf("the debug log does not show the forwarded address:\n%s", untrusted.logs)
	}
}
