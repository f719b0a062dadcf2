package status

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var checksClock = time.Date(2026, 12, 3, 19, 30, 0, 0, time.UTC)

func newTestChecks(t *testing.T, apiURL string) *Checks {
	t.Helper()
	c, err := NewChecks(&http.Client{Transport: appTransport{}, Timeout: 10 * time.Second}, apiURL, nil, "acme", "platform")
	if err != nil {
		t.Fatalf("NewChecks: %v", err)
	}
	now := func() time.Time { return checksClock }
	c.now, c.errs.now = now, now
	return c
}

// previewDetail is a preview of app api with one created and one changed object.
func previewDetail(phase Phase) *Detail {
	d := &Detail{App: "api", Kind: KindPreview, Phase: phase, SyncID: "sync-7", PR: 12, SyncURL: "https://ferry.example.com/syncs/sync-7"}
	if phase != PhaseDone {
		return d
	}
	d.Counts = Counts{Created: 1, Changed: 1, Unchanged: 3}
	d.Objects = []Object{
		{Action: "created", Kind: "ConfigMap", Namespace: "api", Name: "settings"},
		{Action: "changed", Kind: "Deployment", Namespace: "api", Name: "web"},
	}
	d.Diff = []ObjectDiff{
		{Header: "+ ConfigMap api/settings  (apps/api/settings.yaml)  create"},
		{Header: "~ Deployment api/web  (apps/api/web.yaml)  change", Lines: []string{"~ /spec/replicas: 2 → 3"}},
	}
	return d
}

func previewStatus(state State, desc string, phase Phase) Status {
	return Status{SHA: testSHA, Context: "ferry/api/preview", State: state, Description: desc,
		TargetURL: "https://ferry.example.com/syncs/sync-7", Detail: previewDetail(phase)}
}

func TestChecksLifecycleCreatesOnceAndUpdatesInPlace(t *testing.T) {
	srv, f := newFakeChecks(t)
	c := newTestChecks(t, srv.URL)
	steps := []Status{
		previewStatus(Pending, "queued", PhaseQueued),
		previewStatus(Pending, "planning 0123456", PhaseInProgress),
		previewStatus(Success, "1 changed, 1 created, 0 pruned", PhaseDone),
	}
	for _, s := range steps {
		if err := c.Report(t.Context(), s); err != nil {
			t.Fatalf("Report %s: %v", s.Description, err)
		}
	}
	want := []string{
		"GET commits/" + testSHA + "/check-runs",
		"POST check-runs",
		"PATCH check-runs/4001",
		"PATCH check-runs/4001",
	}
	if diff := cmp.Diff(want, f.calls()); diff != "" {
		t.Fatalf("requests (-want +got):\n%s", diff)
	}
	reqs := f.requests()
	if q := reqs[0].Query; q != "check_name=ferry%2Fapi%2Fpreview&filter=latest&per_page=100" {
		t.Errorf("lookup query = %q", q)
	}
	checkFixture(t, "checks/create_queued_request.json", reqs[1].Body)
	if got := reqs[2].Body["status"]; got != "in_progress" {
		t.Errorf("second post: status %v, want in_progress", got)
	}
	checkFixture(t, "checks/update_preview_done_request.json", reqs[3].Body)
}

func TestChecksFindTheRunAfterARestart(t *testing.T) {
	srv, f := newFakeChecks(t)
	before := newTestChecks(t, srv.URL)
	if err := before.Report(t.Context(), previewStatus(Pending, "planning 0123456", PhaseInProgress)); err != nil {
		t.Fatal(err)
	}
	// A new process (or another replica) knows nothing of the run.
	after := newTestChecks(t, srv.URL)
	if err := after.Report(t.Context(), previewStatus(Success, "1 changed, 1 created, 0 pruned", PhaseDone)); err != nil {
		t.Fatal(err)
	}
	// The run is known now, and completed: the same result again costs nothing.
	if err := after.Report(t.Context(), previewStatus(Success, "1 changed, 1 created, 0 pruned", PhaseDone)); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"GET commits/" + testSHA + "/check-runs", "POST check-runs",
		"GET commits/" + testSHA + "/check-runs", "PATCH check-runs/4001",
	}
	if diff := cmp.Diff(want, f.calls()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

func TestChecksFindARunFromTheDocumentedListResponse(t *testing.T) {
	// GitHub's list answer as documented: this sync's run in progress (made before a restart), an
	// older completed run of the same name, and another check's run.
	srv, f := newFakeForge(t, "Authorization", func(w http.ResponseWriter, r *http.Request, n int) {
		if r.Method == http.MethodGet {
			answer(w, http.StatusOK, string(readFixture(t, "checks/list_response.json")))
			return
		}
		answer(w, http.StatusOK, string(readFixture(t, "checks/run_response.json")))
	})
	c, err := NewChecks(&http.Client{Transport: appTransport{}}, srv.URL, nil, "acme", "platform")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Report(t.Context(), previewStatus(Success, "no changes", PhaseDone)); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range f.requests() {
		got = append(got, r.Method+" "+r.Path)
	}
	want := []string{"GET /api/v3/repos/acme/platform/commits/" + testSHA + "/check-runs", "PATCH /api/v3/repos/acme/platform/check-runs/4"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

func TestChecksCompletedRunIsFinalForItsSync(t *testing.T) {
	srv, f := newFakeChecks(t)
	c := newTestChecks(t, srv.URL)
	if err := c.Report(t.Context(), previewStatus(Success, "1 changed, 1 created, 0 pruned", PhaseDone)); err != nil {
		t.Fatal(err)
	}
	// The hook's queued notice of the same sync lands after its result.
	if err := c.Report(t.Context(), previewStatus(Pending, "queued", PhaseQueued)); err != nil {
		t.Fatal(err)
	}
	// Nor does its result posted again (after a restart: found on GitHub, completed).
	restarted := newTestChecks(t, srv.URL)
	if err := restarted.Report(t.Context(), previewStatus(Success, "1 changed, 1 created, 0 pruned", PhaseDone)); err != nil {
		t.Fatal(err)
	}
	// A new sync of the same commit (a manual resync) gets a run of its own, as GitHub never
	// takes a completed run back to queued; that run is then updated in place.
	again := previewStatus(Pending, "queued", PhaseQueued)
	again.Detail.SyncID = "sync-8"
	done := previewStatus(Failure, "plan: denied", PhaseDone)
	done.Detail.SyncID = "sync-8"
	for _, s := range []Status{again, done} {
		if err := c.Report(t.Context(), s); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"GET commits/" + testSHA + "/check-runs", "POST check-runs", "GET commits/" + testSHA + "/check-runs", "POST check-runs", "PATCH check-runs/4002"}
	if diff := cmp.Diff(want, f.calls()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	if got := f.requests()[3].Body["external_id"]; got != "sync-8" {
		t.Errorf("new run's external_id = %v", got)
	}
}

func TestChecksConclusions(t *testing.T) {
	deploy := func(c Counts) *Detail {
		return &Detail{App: "api", Kind: KindDeploy, Phase: PhaseDone, SyncID: "s", Counts: c}
	}
	tests := []struct {
		name       string
		state      State
		detail     *Detail
		status     string
		conclusion string
	}{
		{"queued", Pending, &Detail{Phase: PhaseQueued}, "queued", ""},
		{"in progress", Pending, &Detail{Phase: PhaseInProgress}, "in_progress", ""},
		{"pending without detail", Pending, nil, "queued", ""},
		{"deploy applied", Success, deploy(Counts{Created: 1, Unchanged: 4}), "completed", "success"},
		{"deploy found nothing to change", Success, deploy(Counts{Unchanged: 4}), "completed", "success"},
		{"no changes under the app's path", Success, deploy(Counts{}), "completed", "neutral"},
		{"preview without changes", Success, &Detail{Kind: KindPreview, Phase: PhaseDone, Counts: Counts{Unchanged: 3}}, "completed", "neutral"},
		{"preview with changes", Success, previewDetail(PhaseDone), "completed", "success"},
		{"failure", Failure, deploy(Counts{}), "completed", "failure"},
		{"superseded", Canceled, deploy(Counts{}), "completed", "cancelled"},
		{"included in a newer commit", Skipped, deploy(Counts{}), "completed", "cancelled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, f := newFakeChecks(t)
			c := newTestChecks(t, srv.URL)
			if err := c.Report(t.Context(), Status{SHA: testSHA, Context: "ferry/api", State: tt.state, Description: "d", Detail: tt.detail}); err != nil {
				t.Fatal(err)
			}
			body := f.requests()[1].Body
			if body["status"] != tt.status {
				t.Errorf("status = %v, want %s", body["status"], tt.status)
			}
			if got, _ := body["conclusion"].(string); got != tt.conclusion {
				t.Errorf("conclusion = %q, want %q", got, tt.conclusion)
			}
		})
	}
}

// failedDeploy is a deploy that the apiserver refused, naming the object and its file.
func failedDeploy(file string) Status {
	return Status{SHA: testSHA, Context: "ferry/api", State: Failure,
		Description: "Deployment api/web: spec.selector: Required value",
		TargetURL:   "https://ferry.example.com/syncs/sync-9",
		Detail: &Detail{App: "api", Kind: KindDeploy, Phase: PhaseDone, SyncID: "sync-9", SyncURL: "https://ferry.example.com/syncs/sync-9",
			Counts:  Counts{Created: 1},
			Objects: []Object{{Action: "created", Kind: "ConfigMap", Namespace: "api", Name: "settings"}},
			Failure: &FailureDetail{Stage: "apply", Object: "Deployment api/web", File: file,
				Message: `Deployment.apps "web" is invalid: spec.selector: Required value`}}}
}

func TestChecksFailureCarriesStageObjectFileAndAnnotation(t *testing.T) {
	srv, f := newFakeChecks(t)
	c := newTestChecks(t, srv.URL)
	if err := c.Report(t.Context(), failedDeploy("apps/api/web.yaml")); err != nil {
		t.Fatal(err)
	}
	checkFixture(t, "checks/create_failed_deploy_request.json", f.requests()[1].Body)
}

func TestChecksAnnotateOnlyRepositoryFiles(t *testing.T) {
	for _, file := range []string{"", "oci://ghcr.io/acme/charts/web:1.2.0/templates/deploy.yaml", "/etc/passwd", "../outside.yaml"} {
		srv, f := newFakeChecks(t)
		c := newTestChecks(t, srv.URL)
		if err := c.Report(t.Context(), failedDeploy(file)); err != nil {
			t.Fatal(err)
		}
		out := f.requests()[1].Body["output"].(map[string]any)
		if out["annotations"] != nil {
			t.Errorf("file %q: annotated %v", file, out["annotations"])
		}
	}
}

func TestChecksRefusedUpdateIsPermanent(t *testing.T) {
	srv, f := newFakeChecks(t)
	c := newTestChecks(t, srv.URL)
	if err := c.Report(t.Context(), previewStatus(Pending, "queued", PhaseQueued)); err != nil {
		t.Fatal(err)
	}
	f.fail = func(w http.ResponseWriter, r *http.Request, _ int) bool {
		if r.Method != http.MethodPatch {
			return false
		}
		answer(w, http.StatusUnprocessableEntity, string(readFixture(t, "checks/update_422_response.json")))
		return true
	}
	var attempts int
	counting := reporterFunc(func(ctx context.Context, s Status) error { attempts++; return c.Report(ctx, s) })
	r := Retry(counting, RetryOptions{Sleep: func(context.Context, time.Duration) error { return nil }})
	err := r.Report(t.Context(), previewStatus(Success, "1 changed, 1 created, 0 pruned", PhaseDone))
	if err == nil || !IsPermanent(err) {
		t.Fatalf("err = %v, want a permanent error", err)
	}
	if !strings.Contains(err.Error(), "Invalid request") || !strings.Contains(err.Error(), "http 422") {
		t.Errorf("err = %v, want GitHub's words", err)
	}
	if attempts != 1 {
		t.Errorf("%d attempts, want 1: a refusal is not retried", attempts)
	}
}

func TestChecksRefusedAnnotationFallsBackToNone(t *testing.T) {
	srv, f := newFakeChecks(t)
	c := newTestChecks(t, srv.URL)
	f.fail = func(w http.ResponseWriter, r *http.Request, _ int) bool {
		if r.Method != http.MethodPost {
			return false
		}
		var body struct {
			Output struct{ Annotations []any } `json:"output"`
		}
		_ = json.Unmarshal(mustJSON(f.requests()[len(f.requests())-1].Body), &body)
		if len(body.Output.Annotations) == 0 {
			return false
		}
		answer(w, http.StatusUnprocessableEntity, string(readFixture(t, "checks/update_422_response.json")))
		return true
	}
	if err := c.Report(t.Context(), failedDeploy("apps/api/web.yaml")); err != nil {
		t.Fatalf("Report: %v", err)
	}
	reqs := f.requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want lookup, create refused, create without annotations", len(reqs))
	}
	out := reqs[2].Body["output"].(map[string]any)
	if out["annotations"] != nil || !strings.Contains(out["text"].(string), "apps/api/web.yaml") {
		t.Errorf("fallback output = %v", out)
	}
}

func TestChecksRateLimitWaitsForTheReset(t *testing.T) {
	srv, f := newFakeChecks(t)
	c := newTestChecks(t, srv.URL)
	reset := checksClock.Add(90 * time.Second)
	f.fail = func(w http.ResponseWriter, _ *http.Request, _ int) bool {
		answer(w, http.StatusForbidden, `{"message":"API rate limit exceeded for installation ID 1.","documentation_url":"https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting"}`,
			"X-RateLimit-Limit", "5000", "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", strconv.FormatInt(reset.Unix(), 10))
		return true
	}
	err := c.Report(t.Context(), previewStatus(Pending, "queued", PhaseQueued))
	ra, ok := errors.AsType[*RetryAfterError](err)
	if !ok {
		t.Fatalf("err = %v, want a *RetryAfterError", err)
	}
	if ra.Wait != 90*time.Second {
		t.Errorf("wait = %s, want 90s (until X-RateLimit-Reset)", ra.Wait)
	}
	if IsPermanent(err) {
		t.Error("a rate limit is permanent")
	}
}

func TestChecksServerErrorsAreTransient(t *testing.T) {
	srv, f := newFakeChecks(t)
	c := newTestChecks(t, srv.URL)
	f.fail = func(w http.ResponseWriter, _ *http.Request, n int) bool {
		if n > 0 {
			return false
		}
		answer(w, http.StatusBadGateway, `{"message":"Server Error"}`)
		return true
	}
	r := Retry(c, RetryOptions{Sleep: func(context.Context, time.Duration) error { return nil }})
	if err := r.Report(t.Context(), previewStatus(Pending, "queued", PhaseQueued)); err != nil {
		t.Fatalf("Report after a 502: %v", err)
	}
	want := []string{"GET commits/" + testSHA + "/check-runs", "GET commits/" + testSHA + "/check-runs", "POST check-runs"}
	if diff := cmp.Diff(want, f.calls()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

func TestChecksDeletedRunIsMadeAgain(t *testing.T) {
	srv, f := newFakeChecks(t)
	c := newTestChecks(t, srv.URL)
	if err := c.Report(t.Context(), previewStatus(Pending, "queued", PhaseQueued)); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	clear(f.runs)
	f.mu.Unlock()
	if err := c.Report(t.Context(), previewStatus(Success, "done", PhaseDone)); err != nil {
		t.Fatal(err)
	}
	want := []string{"GET commits/" + testSHA + "/check-runs", "POST check-runs", "PATCH check-runs/4001", "POST check-runs"}
	if diff := cmp.Diff(want, f.calls()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

func TestNewChecksNeedsAClientAndARepository(t *testing.T) {
	hc := &http.Client{Transport: appTransport{}}
	for _, tt := range []struct {
		hc          *http.Client
		api, o, r   string
		wantErrPart string
	}{
		{nil, "", "acme", "platform", "no authenticated http client"},
		{hc, "", "acme", "", "invalid repository"},
		{hc, "ftp://ghe", "acme", "platform", "api url"},
	} {
		if _, err := NewChecks(tt.hc, tt.api, nil, tt.o, tt.r); err == nil || !strings.Contains(err.Error(), tt.wantErrPart) {
			t.Errorf("NewChecks(%v, %q, %q, %q) = %v, want %q", tt.hc != nil, tt.api, tt.o, tt.r, err, tt.wantErrPart)
		}
	}
}
