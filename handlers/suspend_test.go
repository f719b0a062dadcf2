package handlers

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/queue/queuetest"
	"github.com/ferrygitops/ferry/syncer/source"
)

// testSuspensions is the shared suspension store on an embedded NATS server of the test's own.
func testSuspensions(t *testing.T) *queue.Suspensions {
	t.Helper()
	return queuetest.Suspensions(t, func() time.Time { return testNow })
}

const steerToken = "steer-Token-77c1e9a0"

// steerAPI is the write API as the server mounts it: sync, suspend and resume behind Auth.
type steerAPI struct {
	router http.Handler
	sink   *jobSink
	store  *queue.Suspensions
	logs   *bytes.Buffer
}

func newSteerAPI(t *testing.T, refs remoteRefs) *steerAPI {
	t.Helper()
	api := &steerAPI{sink: &jobSink{}, store: testSuspensions(t), logs: &bytes.Buffer{}}
	apps := []ResyncApp{{Name: "web", Repo: "platform", Branch: "main"}, {Name: "rel", Repo: "platform", Branch: "release-*"}}
	n := 0
	opts := ResyncOptions{Repos: map[string]source.Repo{"platform": {Name: "platform"}}, Logger: slog.New(slog.NewTextHandler(api.logs, nil)),
		NewID: func() string { n++; return "id-" + string(rune('0'+n)) }, URL: func(id string) string { return "https://ferry.example.com/syncs/" + id }}
	resync, err := NewResync(apps, refs, api.sink, api.store, opts)
	if err != nil {
		t.Fatal(err)
	}
	sus, err := NewSuspender(apps, api.store, refs, api.sink, opts)
	if err != nil {
		t.Fatal(err)
	}
	auth := NewAuth([]Token{{Name: "ci", Value: []byte(steerToken)}}, nil)
	r := chi.NewRouter()
	r.Route("/api/v1/apps/{app}", func(r chi.Router) {
		r.Use(auth.Require)
		r.Method(http.MethodPost, "/sync", resync)
		r.Post("/suspend", sus.Suspend)
		r.Post("/resume", sus.Resume)
	})
	api.router = r
	return api
}

func (a *steerAPI) post(t *testing.T, path, token, body string) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	a.router.ServeHTTP(rec, req)
	var v map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("POST %s: %d, body not JSON: %q", path, rec.Code, rec.Body)
	}
	return rec.Code, v
}

// TestSuspendResumeAPI walks the write API through a suspension: who may, what a suspended app
// refuses, what force does, and that resuming queues the branch head.
func TestSuspendResumeAPI(t *testing.T) {
	head := strings.Repeat("b", 40)
	api := newSteerAPI(t, remoteRefs{"refs/heads/main": head})

	for _, p := range []string{"/api/v1/apps/web/suspend", "/api/v1/apps/web/resume", "/api/v1/apps/web/sync"} {
		for _, tok := range []string{"", "wrong"} {
			if code, _ := api.post(t, p, tok, ""); code != http.StatusUnauthorized {
				t.Errorf("POST %s with token %q: %d, want 401", p, tok, code)
			}
		}
	}
	if sus, _ := api.store.Get(t.Context(), "web"); sus.Suspended {
		t.Fatal("an unauthenticated request suspended the app")
	}
	if code, v := api.post(t, "/api/v1/apps/nope/suspend", steerToken, ""); code != http.StatusNotFound || !strings.Contains(v["error"].(string), `"nope"`) {
		t.Errorf("unknown app: %d %v", code, v)
	}

	code, v := api.post(t, "/api/v1/apps/web/suspend", steerToken, `{"reason": "incident 42"}`)
	want := map[string]any{"app": "web", "suspended": true, "by": "ci", "reason": "incident 42", "at": testNow.Format(time.RFC3339)}
	if code != http.StatusOK || !sameJSON(v, want) {
		t.Fatalf("suspend: %d %v, want 200 %v", code, v, want)
	}
	// Idempotent: suspending again answers the suspension in force.
	if code, v := api.post(t, "/api/v1/apps/web/suspend", steerToken, ""); code != http.StatusOK || !sameJSON(v, want) {
		t.Errorf("second suspend: %d %v, want 200 %v", code, v, want)
	}
	if code, _ := api.post(t, "/api/v1/apps/web/suspend", steerToken, `{"reason": "`+strings.Repeat("x", queue.MaxSuspendReason+1)+`"}`); code != http.StatusBadRequest {
		t.Errorf("overlong reason: %d, want 400", code)
	}
	if code, _ := api.post(t, "/api/v1/apps/web/suspend", steerToken, `{"reason": "`+strings.Repeat("x", MaxSuspendBody)+`"}`); code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversize body: %d, want 413", code)
	}
	if code, _ := api.post(t, "/api/v1/apps/web/suspend", steerToken, `reason`); code != http.StatusBadRequest {
		t.Errorf("body not JSON: %d, want 400", code)
	}

	// A manual sync is refused, saying why and how to get past it; force gets past it.
	code, v = api.post(t, "/api/v1/apps/web/sync", steerToken, "")
	if msg, _ := v["error"].(string); code != http.StatusConflict || !contains(msg, "app web is suspended by ci", "incident 42", `"force": true`) {
		t.Errorf("manual sync of a suspended app: %d %v, want 409", code, v)
	}
	if len(api.sink.jobs) != 0 {
		t.Fatalf("a refused sync was queued: %+v", api.sink.jobs)
	}
	code, v = api.post(t, "/api/v1/apps/web/sync", steerToken, `{"force": true}`)
	if code != http.StatusAccepted || len(api.sink.jobs) != 1 || !api.sink.jobs[0].Force || api.sink.jobs[0].Trigger != queue.TriggerManual || api.sink.jobs[0].By != "ci" {
		t.Fatalf("forced sync: %d %v, jobs %+v", code, v, api.sink.jobs)
	}
	if sus, _ := api.store.Get(t.Context(), "web"); !sus.Suspended {
		t.Error("a forced sync resumed the app")
	}

	// Resume lifts the suspension and queues the branch head.
	api.sink.jobs = nil
	code, v = api.post(t, "/api/v1/apps/web/resume", steerToken, "")
	if code != http.StatusAccepted || v["app"] != "web" || v["sha"] != head || v["id"] == "" || !strings.HasPrefix(v["url"].(string), "https://ferry.example.com/syncs/") {
		t.Fatalf("resume: %d %v", code, v)
	}
	if len(api.sink.jobs) != 1 {
		t.Fatalf("resume queued %+v", api.sink.jobs)
	}
	j := api.sink.jobs[0]
	if j.ID != v["id"] || j.SHA != head || j.Ref != "refs/heads/main" || j.Trigger != queue.TriggerResume || j.Kind != queue.KindDeploy || j.Force || j.By != "ci" || j.Validate() != nil {
		t.Errorf("resume job %+v", j)
	}
	if sus, _ := api.store.Get(t.Context(), "web"); sus.Suspended || sus.By != "ci" {
		t.Errorf("after resume: %+v", sus)
	}
	// Idempotent: resuming again changes nothing and syncs the head again.
	if code, _ := api.post(t, "/api/v1/apps/web/resume", steerToken, ""); code != http.StatusAccepted || len(api.sink.jobs) != 2 {
		t.Errorf("second resume: %d, jobs %d", code, len(api.sink.jobs))
	}
	if code, _ := api.post(t, "/api/v1/apps/web/sync", steerToken, ""); code != http.StatusAccepted {
		t.Errorf("manual sync after resume: %d", code)
	}

	// An app following a branch pattern has no head: resumed, nothing queued.
	api.sink.jobs = nil
	if code, _ := api.post(t, "/api/v1/apps/rel/suspend", steerToken, ""); code != http.StatusOK {
		t.Fatalf("suspend rel: %d", code)
	}
	if code, v := api.post(t, "/api/v1/apps/rel/resume", steerToken, ""); code != http.StatusOK || v["suspended"] != false || len(api.sink.jobs) != 0 {
		t.Errorf("resume of a branch-pattern app: %d %v, jobs %+v", code, v, api.sink.jobs)
	}

	logs := api.logs.String()
	if strings.Contains(logs, steerToken) {
		t.Error("the token is in the logs")
	}
	if !contains(logs, "app suspended", "app resumed", "by=ci", "incident 42") {
		t.Errorf("the logs do not say who suspended and resumed:\n%s", logs)
	}
}

// TestResumeWithoutHead: when the branch head cannot be resolved, resume changes nothing and
// says so, so that trying again is safe.
func TestResumeWithoutHead(t *testing.T) {
	api := newSteerAPI(t, remoteRefs{})
	if code, _ := api.post(t, "/api/v1/apps/web/suspend", steerToken, ""); code != http.StatusOK {
		t.Fatal(code)
	}
	code, v := api.post(t, "/api/v1/apps/web/resume", steerToken, "")
	if code != http.StatusBadGateway || !strings.Contains(v["error"].(string), "unchanged") {
		t.Errorf("resume: %d %v, want 502", code, v)
	}
	if sus, _ := api.store.Get(t.Context(), "web"); !sus.Suspended {
		t.Error("a failed resume lifted the suspension")
	}
	if len(api.sink.jobs) != 0 {
		t.Errorf("queued %+v", api.sink.jobs)
	}
}

// sameJSON compares a decoded answer with want, by their JSON.
func sameJSON(got, want map[string]any) bool {
	a, _ := json.Marshal(got)
	b, _ := json.Marshal(want)
	return bytes.Equal(a, b)
}

func contains(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
