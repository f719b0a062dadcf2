package status

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// installationToken stands for the token a GitHub App transport adds; Checks must send requests
// through the client it is given, untouched.
const installationToken = "ghs_installation-token-for-tests"

// appTransport authenticates every request as a GitHub App installation would.
type appTransport struct{}

func (appTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "token "+installationToken)
	return http.DefaultTransport.RoundTrip(r)
}

// checkReq is one request the fake GitHub received.
type checkReq struct {
	Method, Path, Query string
	Body                map[string]any
}

// fakeChecks is GitHub's Checks API as far as ferry uses it: create, update and list runs by
// name on a commit. It checks the headers and the shape of every body against GitHub's
// documentation (name and head_sha required on create; conclusion with completed; annotations
// with path, start_line, end_line, annotation_level and message), and serves responses shaped as
// the documented ones (testdata/checks/run_response.json).
type fakeChecks struct {
	t *testing.T
	// fail, when set, answers the n-th request (from 0) instead of the fake; it returns false to
	// let the fake answer.
	fail func(w http.ResponseWriter, r *http.Request, n int) bool

	mu     sync.Mutex
	reqs   []checkReq
	runs   map[int64]map[string]any
	nextID int64
}

func newFakeChecks(t *testing.T) (*httptest.Server, *fakeChecks) {
	t.Helper()
	f := &fakeChecks{t: t, runs: map[int64]map[string]any{}, nextID: 4000}
	srv := httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(srv.Close)
	return srv, f
}

func (f *fakeChecks) serve(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		f.t.Errorf("read body: %v", err)
	}
	var body map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &body); err != nil {
			f.t.Errorf("%s %s: body is not JSON: %v", r.Method, r.URL.Path, err)
		}
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			f.t.Errorf("%s %s: Content-Type %q", r.Method, r.URL.Path, ct)
		}
	}
	if got := r.Header.Get("Authorization"); got != "token "+installationToken {
		f.t.Errorf("%s %s: Authorization %q, want the installation token", r.Method, r.URL.Path, got)
	}
	if !strings.Contains(r.Header.Get("Accept"), "json") {
		f.t.Errorf("%s %s: Accept %q", r.Method, r.URL.Path, r.Header.Get("Accept"))
	}
	if r.Header.Get("X-GitHub-Api-Version") == "" {
		f.t.Errorf("%s %s: no X-GitHub-Api-Version", r.Method, r.URL.Path)
	}
	f.mu.Lock()
	n := len(f.reqs)
	f.reqs = append(f.reqs, checkReq{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Body: body})
	f.mu.Unlock()
	if f.fail != nil && f.fail(w, r, n) {
		return
	}

	const prefix = "/api/v3/repos/acme/platform/"
	rest, ok := strings.CutPrefix(r.URL.Path, prefix)
	if !ok {
		answer(w, http.StatusNotFound, `{"message":"Not Found"}`)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.Method == http.MethodPost && rest == "check-runs":
		f.checkShape(body, true)
		f.nextID++
		run := map[string]any{"id": f.nextID, "name": body["name"], "head_sha": body["head_sha"], "status": "queued"}
		f.apply(run, body)
		f.runs[f.nextID] = run
		f.respond(w, http.StatusCreated, run)
	case r.Method == http.MethodPatch && strings.HasPrefix(rest, "check-runs/"):
		id, _ := strconv.ParseInt(strings.TrimPrefix(rest, "check-runs/"), 10, 64)
		run, ok := f.runs[id]
		if !ok {
			answer(w, http.StatusNotFound, `{"message":"Not Found","documentation_url":"https://docs.github.com/rest/checks/runs#update-a-check-run"}`)
			return
		}
		f.checkShape(body, false)
		f.apply(run, body)
		f.respond(w, http.StatusOK, run)
	case r.Method == http.MethodGet && strings.HasPrefix(rest, "commits/") && strings.HasSuffix(rest, "/check-runs"):
		sha := strings.TrimSuffix(strings.TrimPrefix(rest, "commits/"), "/check-runs")
		name := r.URL.Query().Get("check_name")
		var list []map[string]any
		for id := f.nextID; id > 4000; id-- {
			if run, ok := f.runs[id]; ok && run["head_sha"] == sha && (name == "" || run["name"] == name) {
				list = append(list, f.shaped(run))
			}
		}
		data, _ := json.Marshal(map[string]any{"total_count": len(list), "check_runs": list})
		answer(w, http.StatusOK, string(data))
	default:
		answer(w, http.StatusNotFound, `{"message":"Not Found"}`)
	}
}

// checkShape holds a create or update body to GitHub's documented rules.
func (f *fakeChecks) checkShape(body map[string]any, create bool) {
	f.t.Helper()
	if create && (body["name"] == nil || body["head_sha"] == nil) {
		f.t.Errorf("create without name or head_sha: %v", body)
	}
	if body["status"] == "completed" && body["conclusion"] == nil {
		f.t.Errorf("completed without a conclusion: %v", body)
	}
	if body["conclusion"] != nil && body["completed_at"] == nil {
		f.t.Errorf("conclusion without completed_at: %v", body)
	}
	out, _ := body["output"].(map[string]any)
	if out == nil {
		return
	}
	if out["title"] == nil || out["summary"] == nil {
		f.t.Errorf("output without title or summary: %v", out)
	}
	for _, k := range []string{"summary", "text"} {
		if s, _ := out[k].(string); len(s) > 65535 {
			f.t.Errorf("output %s is %d bytes, over GitHub's 65535", k, len(s))
		}
	}
	anns, _ := out["annotations"].([]any)
	if len(anns) > 50 {
		f.t.Errorf("%d annotations in one request, GitHub takes 50", len(anns))
	}
	for _, a := range anns {
		m := a.(map[string]any)
		for _, k := range []string{"path", "start_line", "end_line", "annotation_level", "message"} {
			if m[k] == nil {
				f.t.Errorf("annotation without %s: %v", k, m)
			}
		}
	}
}

func (f *fakeChecks) apply(run, body map[string]any) {
	for _, k := range []string{"status", "conclusion", "external_id", "details_url", "output", "completed_at", "started_at"} {
		if v, ok := body[k]; ok {
			run[k] = v
		}
	}
	if body["conclusion"] != nil {
		run["status"] = "completed"
	}
}

// shaped is run in the documented response shape: the fixture with the run's fields over it.
func (f *fakeChecks) shaped(run map[string]any) map[string]any {
	var out map[string]any
	if err := json.Unmarshal(readFixture(f.t, "checks/run_response.json"), &out); err != nil {
		f.t.Fatalf("fixture: %v", err)
	}
	for k, v := range run {
		if k == "output" {
			continue
		}
		out[k] = v
	}
	return out
}

func (f *fakeChecks) respond(w http.ResponseWriter, code int, run map[string]any) {
	data, _ := json.Marshal(f.shaped(run))
	answer(w, code, string(data))
}

func (f *fakeChecks) requests() []checkReq {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]checkReq(nil), f.reqs...)
}

// calls lists the requests as "METHOD path", for lifecycle assertions.
func (f *fakeChecks) calls() []string {
	var out []string
	for _, r := range f.requests() {
		out = append(out, r.Method+" "+strings.TrimPrefix(r.Path, "/api/v3/repos/acme/platform/"))
	}
	return out
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("fixture: %v", err)
	}
	return data
}

// checkFixture compares a request body with the expected one kept under testdata. With
// FERRY_UPDATE_FIXTURES=1 it writes the fixture instead (review the diff before committing).
func checkFixture(t *testing.T, name string, got map[string]any) {
	t.Helper()
	data, _ := json.MarshalIndent(got, "", "  ")
	if updateFixture(t, name, append(data, '\n')) {
		return
	}
	var want map[string]any
	if err := json.Unmarshal(readFixture(t, name), &want); err != nil {
		t.Fatalf("fixture %s: %v", name, err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("request body differs from testdata/%s (-want +got):\n%s", name, diff)
	}
}

func mustJSON(v any) []byte {
	data, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprint(err))
	}
	return data
}

// reporterFunc makes a function a Reporter.
type reporterFunc func(ctx context.Context, s Status) error

func (f reporterFunc) Report(ctx context.Context, s Status) error { return f(ctx, s) }

// updateFixture writes data as the fixture name when FERRY_UPDATE_FIXTURES=1, and says so.
func updateFixture(t *testing.T, name string, data []byte) bool {
	t.Helper()
	if os.Getenv("FERRY_UPDATE_FIXTURES") != "1" {
		return false
	}
	p := filepath.Join("testdata", name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return true
}
