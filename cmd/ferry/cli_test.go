package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrygitops/ferry/queue"
	"github.com/go-chi/chi/v5"
)

const testToken = "cli-test-token"

// suspendServer implements the suspend and resume contract of ferry's API as documented in
// the README: POST /api/v1/apps/{app}/suspend (Bearer, optional {"reason"}) answers 200 with
// the suspension; POST .../resume answers 202 {"id","app","url"} for a sync of the branch head;
// a manual sync of a suspended app is 409 unless {"force": true}; GET /api/v1/apps[/{app}]
// shows the suspension. Syncs it queues end as outcome says.
type suspendServer struct {
	mu       sync.Mutex
	suspend  map[string]map[string]any
	records  map[string]queue.Record
	requests []string
	bodies   []map[string]any
	outcome  queue.State
	n        int
}

func newSuspendServer(t *testing.T, outcome queue.State) (*suspendServer, *httptest.Server) {
	s := &suspendServer{suspend: map[string]map[string]any{}, records: map[string]queue.Record{}, outcome: outcome}
	r := chi.NewRouter()
	r.Get("/api/v1/apps", s.apps)
	r.Get("/api/v1/apps/{app}", s.app)
	r.Get("/api/v1/syncs/{id}", s.sync)
	r.Get("/api/v1/syncs/{id}/events", func(w http.ResponseWriter, _ *http.Request) {
		reply(w, http.StatusNotImplemented, map[string]string{"error": "live updates are not available on this server"})
	})
	r.Post("/api/v1/apps/{app}/suspend", s.write(s.doSuspend))
	r.Post("/api/v1/apps/{app}/resume", s.write(s.doResume))
	r.Post("/api/v1/apps/{app}/sync", s.write(s.doSync))
	ts := httptest.NewServer(r)
	t.Cleanup(ts.Close)
	return s, ts
}

func reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// write checks the token and the app, reads the optional JSON body and records the request.
func (s *suspendServer) write(h func(w http.ResponseWriter, app string, body map[string]any)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+testToken {
			reply(w, http.StatusUnauthorized, map[string]string{"error": "a valid bearer token is required"})
			return
		}
		app := chi.URLParam(r, "app")
		if app != "api" {
			reply(w, http.StatusNotFound, map[string]string{"error": "no app named \"" + app + "\""})
			return
		}
		body := map[string]any{}
		if r.ContentLength != 0 {
			if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
				reply(w, http.StatusBadRequest, map[string]string{"error": "bad body"})
				return
			}
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.requests = append(s.requests, r.URL.Path)
		s.bodies = append(s.bodies, body)
		h(w, app, body)
	}
}

func (s *suspendServer) doSuspend(w http.ResponseWriter, app string, body map[string]any) {
	reason, _ := body["reason"].(string)
	sus := map[string]any{"app": app, "suspended": true, "by": "token ci", "reason": reason, "at": time.Now().UTC().Add(-2 * time.Minute)}
	s.suspend[app] = sus
	reply(w, http.StatusOK, sus)
}

func (s *suspendServer) doResume(w http.ResponseWriter, app string, _ map[string]any) {
	s.suspend[app] = map[string]any{"app": app, "suspended": false, "by": "token ci", "at": time.Now().UTC()}
	s.queue(w, app)
}

func (s *suspendServer) doSync(w http.ResponseWriter, app string, body map[string]any) {
	if sus := s.suspend[app]; sus != nil && sus["suspended"] == true && body["force"] != true {
		reply(w, http.StatusConflict, map[string]string{"error": "app api is suspended: incident 42"})
		return
	}
	s.queue(w, app)
}

// queue stores a sync that already ended as s.outcome and answers 202.
func (s *suspendServer) queue(w http.ResponseWriter, app string) {
	s.n++
	id := "sync" + strings.Repeat("0", 3) + string(rune('0'+s.n))
	start, end := time.Now().Add(-3*time.Second), time.Now()
	rec := queue.Record{ID: id, App: app, SHA: strings.Repeat("e", 40), Kind: queue.KindDeploy, Trigger: "resume", State: s.outcome,
		EnqueuedAt: start, StartedAt: &start, Phases: map[string]int64{"fetch": 12, "render": 3, "apply": 40}, Counts: map[string]int{"created": 1, "unchanged": 2}}
	if !s.outcome.Terminal() {
		rec.StartedAt = nil
		rec.Phases, rec.Counts = nil, nil
	} else {
		rec.FinishedAt = &end
	}
	switch s.outcome {
	case queue.StateFailed:
		rec.Message = "ConfigMap web/x: invalid"
		rec.Error = &queue.RecordError{Stage: "apply", Object: "ConfigMap web/x", File: "apps/api/config.yaml", Message: "data: Invalid value"}
	case queue.StateSkipped:
		rec.Message = "superseded by eeeeeee"
	}
	s.records[id] = rec
	reply(w, http.StatusAccepted, map[string]string{"id": id, "app": app, "url": "http://ferry.test/syncs/" + id})
}

func (s *suspendServer) view(app string) map[string]any {
	v := map[string]any{"name": app, "repo": "platform", "path": "apps/" + app, "branch": "main", "prune": true}
	if sus := s.suspend[app]; sus != nil {
		v["suspension"] = sus
	}
	return v
}

func (s *suspendServer) apps(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	reply(w, http.StatusOK, map[string]any{"apps": []any{s.view("api")}})
}

func (s *suspendServer) app(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if chi.URLParam(r, "app") != "api" {
		reply(w, http.StatusNotFound, map[string]string{"error": "no app named \"" + chi.URLParam(r, "app") + "\""})
		return
	}
	reply(w, http.StatusOK, s.view("api"))
}

func (s *suspendServer) sync(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.records[chi.URLParam(r, "id")]
	if !ok {
		reply(w, http.StatusNotFound, map[string]string{"error": "no sync"})
		return
	}
	reply(w, http.StatusOK, rec)
}

// ferryCLI runs the ferry command line against server with env, as main does.
func ferryCLI(t *testing.T, server string, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	getenv := func(k string) string {
		if k == "FERRY_SERVER" {
			return server
		}
		return env[k]
	}
	err := run(t.Context(), args, getenv, &out, &errb)
	if err != nil {
		errb.WriteString("ferry: " + err.Error() + "\n")
	}
	return exitCode(err), out.String(), errb.String()
}

var tokenEnv = map[string]string{"FERRY_TOKEN": testToken}

// TestSuspendAndResume: suspend sends the reason with the token and prints who suspended the
// app; apps shows it suspended; a sync of it exits 5 and names --force; --force syncs it; resume
// --wait follows the branch head's sync to its end.
func TestSuspendAndResume(t *testing.T) {
	srv, ts := newSuspendServer(t, queue.StateSucceeded)

	code, out, errs := ferryCLI(t, ts.URL, tokenEnv, "suspend", "api", "--reason", "incident 42")
	if code != exitOK || !strings.Contains(out, "app api suspended by token ci: incident 42") {
		t.Fatalf("suspend = %d, %q %q", code, out, errs)
	}
	if srv.bodies[0]["reason"] != "incident 42" {
		t.Errorf("suspend body = %v", srv.bodies[0])
	}
	code, out, _ = ferryCLI(t, ts.URL, nil, "apps")
	if code != exitOK || !strings.Contains(out, "(suspended)") || !strings.Contains(out, "suspended: incident 42") {
		t.Errorf("apps = %d\n%s", code, out)
	}
	code, out, _ = ferryCLI(t, ts.URL, nil, "app", "api")
	if code != exitOK || !strings.Contains(out, "Suspended:") || !strings.Contains(out, "by token ci, 2m ago: incident 42") {
		t.Errorf("app = %d\n%s", code, out)
	}
	code, _, errs = ferryCLI(t, ts.URL, tokenEnv, "sync", "api")
	if code != exitNotApplied || !strings.Contains(errs, "is suspended") || !strings.Contains(errs, "--force") {
		t.Errorf("sync of a suspended app = %d %q, want %d naming --force", code, errs, exitNotApplied)
	}
	code, out, errs = ferryCLI(t, ts.URL, tokenEnv, "sync", "api", "--force")
	if code != exitOK || !strings.Contains(out, "queued: http://ferry.test/syncs/") {
		t.Errorf("sync --force = %d %q %q", code, out, errs)
	}
	if last := srv.bodies[len(srv.bodies)-1]; last["force"] != true {
		t.Errorf("sync --force body = %v", last)
	}
	code, out, errs = ferryCLI(t, ts.URL, tokenEnv, "resume", "api", "--wait")
	if code != exitOK || !strings.Contains(out, "succeeded") || !strings.Contains(out, "objects: 1 created, 2 unchanged") {
		t.Errorf("resume --wait = %d\n%s\n%s", code, out, errs)
	}
	code, out, _ = ferryCLI(t, ts.URL, tokenEnv, "suspend", "api", "-o", "json")
	var sus map[string]any
	if code != exitOK || json.Unmarshal([]byte(out), &sus) != nil || sus["suspended"] != true || sus["app"] != "api" {
		t.Errorf("suspend -o json = %d %q", code, out)
	}
	if len(srv.bodies) < 5 || len(srv.bodies[len(srv.bodies)-1]) != 0 {
		t.Errorf("suspend without a reason sent %v", srv.bodies[len(srv.bodies)-1])
	}
	want := []string{"/api/v1/apps/api/suspend", "/api/v1/apps/api/sync", "/api/v1/apps/api/sync", "/api/v1/apps/api/resume", "/api/v1/apps/api/suspend"}
	if strings.Join(srv.requests, " ") != strings.Join(want, " ") {
		t.Errorf("requests = %v, want %v", srv.requests, want)
	}
}

// TestExitCodes: each way a command ends has its documented exit code.
func TestExitCodes(t *testing.T) {
	_, ok := newSuspendServer(t, queue.StateSucceeded)
	_, failed := newSuspendServer(t, queue.StateFailed)
	_, skipped := newSuspendServer(t, queue.StateSkipped)
	_, stuck := newSuspendServer(t, queue.StateQueued)
	tests := []struct {
		name   string
		server string
		env    map[string]string
		args   []string
		code   int
		say    string
	}{
		{"no command", ok.URL, nil, nil, exitUsage, "no command"},
		{"unknown command", ok.URL, nil, []string{"deploy"}, exitUsage, `unknown command "deploy"`},
		{"unknown flag", ok.URL, nil, []string{"apps", "--colour"}, exitUsage, "not defined: -colour"},
		{"missing name", ok.URL, tokenEnv, []string{"sync"}, exitUsage, "needs NAME"},
		{"extra argument", ok.URL, nil, []string{"apps", "x"}, exitUsage, "takes no arguments"},
		{"bad output", ok.URL, nil, []string{"apps", "-o", "yaml"}, exitUsage, "table or json"},
		{"no server", "", nil, []string{"apps"}, exitUsage, "FERRY_SERVER"},
		{"no token", ok.URL, nil, []string{"sync", "api"}, exitUsage, "needs an API token"},
		{"help", ok.URL, nil, []string{"sync", "--help"}, exitOK, "usage: ferry sync NAME"},
		{"unknown app", ok.URL, nil, []string{"app", "nope"}, exitAPI, `404 Not Found: no app named "nope"`},
		{"bad token", ok.URL, map[string]string{"FERRY_TOKEN": "wrong"}, []string{"sync", "api"}, exitAPI, "401"},
		{"succeeded", ok.URL, tokenEnv, []string{"sync", "api", "--wait"}, exitOK, ""},
		{"global flags first", "", tokenEnv, []string{"--server", ok.URL, "-o", "json", "sync", "api", "--wait"}, exitOK, ""},
		{"failed", failed.URL, tokenEnv, []string{"sync", "api", "--wait"}, exitFailed, "apply: ConfigMap web/x (apps/api/config.yaml): data: Invalid value"},
		{"superseded", skipped.URL, tokenEnv, []string{"sync", "api", "--wait"}, exitNotApplied, "not applied: superseded by eeeeeee"},
		{"timeout", stuck.URL, tokenEnv, []string{"sync", "--timeout", "300ms", "api", "--wait"}, exitTimeout, "still queued after 300ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := ferryCLI(t, tt.server, tt.env, tt.args...)
			if code != tt.code || !strings.Contains(errs, tt.say) {
				t.Errorf("exit %d, stderr %q; want %d saying %q (stdout %q)", code, errs, tt.code, tt.say, out)
			}
		})
	}
}

// TestSyncWaitPrintsProgress: --wait prints the sync's phases, counts and, when it failed,
// the stage, object, file and message; the token given as a flag is warned about.
func TestSyncWaitPrintsProgress(t *testing.T) {
	_, ts := newSuspendServer(t, queue.StateFailed)
	code, out, errs := ferryCLI(t, ts.URL, nil, "sync", "api", "--wait", "--token", testToken)
	if code != exitFailed {
		t.Fatalf("exit %d, want %d", code, exitFailed)
	}
	for _, want := range []string{"fetch", "render", "apply", "failed: ConfigMap web/x: invalid", "stage:  apply", "object: ConfigMap web/x", "file:   apps/api/config.yaml", "error:  data: Invalid value"} {
		if !strings.Contains(out, want) {
			t.Errorf("progress lacks %q:\n%s", want, out)
		}
	}
	if strings.Index(out, "fetch") > strings.Index(out, "render") || strings.Index(out, "render") > strings.Index(out, "  apply") {
		t.Errorf("phases out of order:\n%s", out)
	}
	if !strings.Contains(errs, "--token shows in the process list") || strings.Contains(errs+out, testToken) {
		t.Errorf("stderr %q: want the warning, never the token", errs)
	}
}
