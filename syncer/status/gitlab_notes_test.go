package status

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const notesPath = "/api/v4/projects/g%2Fsub%2Fproj/merge_requests/12/notes"

// fakeNotes is GitLab's Notes API for one merge request: list (paginated with X-Next-Page, as
// GitLab does), create and edit. It checks the token header, the JSON bodies ({"body": …}) and
// answers with notes shaped as GitLab documents them (testdata/notes/note_response.json).
type fakeNotes struct {
	t       *testing.T
	perPage int
	fail    func(w http.ResponseWriter, r *http.Request) bool

	mu    sync.Mutex
	reqs  []string
	notes []map[string]any
}

func newFakeNotes(t *testing.T) (*httptest.Server, *fakeNotes) {
	t.Helper()
	f := &fakeNotes{t: t, perPage: 100}
	srv := httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(srv.Close)
	return srv, f
}

// addNote puts a note on the merge request as someone else (or ferry before a restart) wrote it.
func (f *fakeNotes) addNote(body string, system bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var n map[string]any
	if err := json.Unmarshal(readFixture(f.t, "notes/note_response.json"), &n); err != nil {
		f.t.Fatal(err)
	}
	n["id"], n["body"], n["system"] = 300+len(f.notes), body, system
	f.notes = append(f.notes, n)
}

func (f *fakeNotes) serve(w http.ResponseWriter, r *http.Request) {
	if got := r.Header.Get("PRIVATE-TOKEN"); got != testToken {
		f.t.Errorf("%s %s: PRIVATE-TOKEN %q", r.Method, r.URL.Path, got)
	}
	raw, _ := io.ReadAll(r.Body)
	var body map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &body); err != nil {
			f.t.Errorf("%s: body not JSON: %v", r.Method, err)
		}
		if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
			f.t.Errorf("%s: Content-Type %q", r.Method, r.Header.Get("Content-Type"))
		}
		if len(body) != 1 || body["body"] == nil {
			f.t.Errorf("%s: body %v, want only {\"body\": …}", r.Method, body)
		}
	}
	f.mu.Lock()
	f.reqs = append(f.reqs, r.Method+" "+strings.TrimPrefix(r.URL.EscapedPath(), notesPath)+"?"+r.URL.RawQuery)
	f.mu.Unlock()
	if f.fail != nil && f.fail(w, r) {
		return
	}
	if !strings.HasPrefix(r.URL.EscapedPath(), notesPath) {
		answer(w, http.StatusNotFound, `{"message":"404 Not found"}`)
		return
	}
	rest := strings.TrimPrefix(r.URL.EscapedPath(), notesPath)
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.Method == http.MethodGet && rest == "":
		q := r.URL.Query()
		if q.Get("sort") != "asc" || q.Get("order_by") != "created_at" {
			f.t.Errorf("list query %q: want oldest first", r.URL.RawQuery)
		}
		page, _ := strconv.Atoi(q.Get("page"))
		page = max(page, 1)
		from, to := (page-1)*f.perPage, page*f.perPage
		var out []map[string]any
		for i := from; i < to && i < len(f.notes); i++ {
			out = append(out, f.notes[i])
		}
		if to < len(f.notes) {
			w.Header().Set("X-Next-Page", strconv.Itoa(page+1))
		}
		data, _ := json.Marshal(out)
		answer(w, http.StatusOK, string(data))
	case r.Method == http.MethodPost && rest == "":
		n := map[string]any{"id": 300 + len(f.notes), "body": body["body"], "system": false, "noteable_type": "MergeRequest", "noteable_iid": 12}
		f.notes = append(f.notes, n)
		data, _ := json.Marshal(n)
		answer(w, http.StatusCreated, string(data))
	case r.Method == http.MethodPut && strings.HasPrefix(rest, "/"):
		id, _ := strconv.Atoi(rest[1:])
		for _, n := range f.notes {
			if n["id"] == id || n["id"] == float64(id) {
				n["body"] = body["body"]
				data, _ := json.Marshal(n)
				answer(w, http.StatusOK, string(data))
				return
			}
		}
		answer(w, http.StatusNotFound, `{"message":"404 Not found"}`)
	default:
		answer(w, http.StatusNotFound, `{"message":"404 Not found"}`)
	}
}

func (f *fakeNotes) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.reqs...)
}

func (f *fakeNotes) bodies() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, n := range f.notes {
		out = append(out, fmt.Sprint(n["body"]))
	}
	return out
}

func newTestNotes(t *testing.T, apiURL string) *GitLabNotes {
	t.Helper()
	g, err := NewGitLabNotes(nil, apiURL, testToken, "g/sub/proj")
	if err != nil {
		t.Fatalf("NewGitLabNotes: %v", err)
	}
	g.now = func() time.Time { return checksClock }
	return g
}

const listQuery = "?order_by=created_at&page=1&per_page=100&sort=asc"

func TestNotesOneNotePerAppUpdatedInPlace(t *testing.T) {
	srv, f := newFakeNotes(t)
	f.addNote("Looks good to me", false)
	g := newTestNotes(t, srv.URL)
	// A preview starting on a merge request without a note leaves none yet.
	if err := g.Report(t.Context(), previewStatus(Pending, "planning 0123456", PhaseInProgress)); err != nil {
		t.Fatal(err)
	}
	if err := g.Report(t.Context(), previewStatus(Success, "1 changed, 1 created, 0 pruned", PhaseDone)); err != nil {
		t.Fatal(err)
	}
	next := previewStatus(Failure, "plan: ConfigMap api/settings: invalid", PhaseDone)
	next.SHA = "fedcba9876543210fedcba9876543210fedcba98"
	next.Detail.Failure = &FailureDetail{Stage: "plan", Object: "ConfigMap api/settings", File: "apps/api/settings.yaml", Message: "invalid"}
	if err := g.Report(t.Context(), next); err != nil {
		t.Fatal(err)
	}
	// "No note yet" is not remembered: another replica may leave it meanwhile.
	want := []string{"GET " + listQuery, "GET " + listQuery, "POST ?", "PUT /301?"}
	if diff := cmp.Diff(want, f.calls()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	bodies := f.bodies()
	if len(bodies) != 2 {
		t.Fatalf("%d notes, want the reviewer's and ferry's", len(bodies))
	}
	note := bodies[1]
	for _, want := range []string{"<!-- ferry:app=api -->\n", "#### `ferry/api/preview` · Failed at plan: ConfigMap api/settings", "Commit `fedcba987654`", "- **File:** `apps/api/settings.yaml`", "```diff\n~ Deployment api/web"} {
		if !strings.Contains(note, want) {
			t.Errorf("note lacks %q:\n%s", want, note)
		}
	}
	if !strings.HasPrefix(note, noteMarker("api")) {
		t.Error("the marker is not the note's first line")
	}
	checkNoteFixture(t, "notes/preview_note_body.md", note)
}

func TestNotesFoundAfterARestartAcrossPages(t *testing.T) {
	srv, f := newFakeNotes(t)
	f.perPage = 100
	for i := range 150 {
		f.addNote(fmt.Sprintf("comment %d", i), i%10 == 0)
	}
	f.addNote("<!-- ferry:app=web -->\nanother app's note", false)
	f.addNote(noteMarker("api")+"\nold preview", false)
	g := newTestNotes(t, srv.URL)
	if err := g.Report(t.Context(), previewStatus(Success, "1 changed, 1 created, 0 pruned", PhaseDone)); err != nil {
		t.Fatal(err)
	}
	want := []string{"GET " + listQuery, "GET ?order_by=created_at&page=2&per_page=100&sort=asc", "PUT /451?"}
	if diff := cmp.Diff(want, f.calls()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	if b := f.bodies(); strings.Contains(b[len(b)-1], "old preview") || !strings.Contains(b[len(b)-2], "another app's note") {
		t.Error("the wrong note was edited")
	}
}

func TestNotesSearchIsBounded(t *testing.T) {
	srv, f := newFakeNotes(t)
	f.perPage = 1
	for i := range MaxNotePages + 5 {
		f.addNote(fmt.Sprintf("comment %d", i), false)
	}
	g := newTestNotes(t, srv.URL)
	if err := g.Report(t.Context(), previewStatus(Success, "done", PhaseDone)); err != nil {
		t.Fatal(err)
	}
	calls := f.calls()
	if gets := len(calls) - 1; gets != MaxNotePages || calls[len(calls)-1] != "POST ?" {
		t.Errorf("%d list requests then %q, want %d then a new note", gets, calls[len(calls)-1], MaxNotePages)
	}
}

func TestNotesLeaveDeploysAndSupersededCommitsAlone(t *testing.T) {
	srv, f := newFakeNotes(t)
	g := newTestNotes(t, srv.URL)
	deploy := failedDeploy("apps/api/web.yaml")
	superseded := previewStatus(Canceled, "superseded by fedcba9", PhaseDone)
	noMR := previewStatus(Success, "done", PhaseDone)
	noMR.Detail.PR = 0
	for _, s := range []Status{deploy, superseded, noMR, {SHA: testSHA, Context: "ferry/api/preview", State: Success}} {
		if err := g.Report(t.Context(), s); err != nil {
			t.Fatal(err)
		}
	}
	if calls := f.calls(); len(calls) != 0 {
		t.Errorf("requests %v, want none", calls)
	}
}

func TestNotesDeletedNoteIsLeftAgain(t *testing.T) {
	srv, f := newFakeNotes(t)
	g := newTestNotes(t, srv.URL)
	if err := g.Report(t.Context(), previewStatus(Success, "done", PhaseDone)); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.notes = nil
	f.mu.Unlock()
	if err := g.Report(t.Context(), previewStatus(Success, "done again", PhaseDone)); err != nil {
		t.Fatal(err)
	}
	want := []string{"GET " + listQuery, "POST ?", "PUT /300?", "POST ?"}
	if diff := cmp.Diff(want, f.calls()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

func TestNotesErrorsAreClassified(t *testing.T) {
	srv, f := newFakeNotes(t)
	g := newTestNotes(t, srv.URL)
	f.fail = func(w http.ResponseWriter, _ *http.Request) bool {
		answer(w, http.StatusTooManyRequests, `{"message":"Retry later"}`, "Retry-After", "30")
		return true
	}
	err := g.Report(t.Context(), previewStatus(Success, "done", PhaseDone))
	if ra, ok := errors.AsType[*RetryAfterError](err); !ok || ra.Wait != 30*time.Second {
		t.Errorf("err = %v, want a RetryAfterError of 30s", err)
	}
	f.fail = func(w http.ResponseWriter, _ *http.Request) bool {
		answer(w, http.StatusForbidden, `{"message":"403 Forbidden `+testToken+`"}`)
		return true
	}
	err = g.Report(t.Context(), previewStatus(Success, "done", PhaseDone))
	if !IsPermanent(err) || strings.Contains(err.Error(), testToken) {
		t.Errorf("err = %v, want permanent and without the token", err)
	}
}

func TestNoteBodyIsBounded(t *testing.T) {
	s := bigPreview(20000, 4, 40)
	s.Detail.PR = 12
	body := noteBody(s)
	if len(body) > MaxNoteBody {
		t.Errorf("note of %d bytes, over %d", len(body), MaxNoteBody)
	}
	if !strings.Contains(body, "The diff is cut here") {
		t.Error("no cut note")
	}
}

// checkNoteFixture compares a note body with the one kept under testdata (FERRY_UPDATE_FIXTURES=1
// writes it).
func checkNoteFixture(t *testing.T, name, got string) {
	t.Helper()
	if updateFixture(t, name, []byte(got)) {
		return
	}
	if diff := cmp.Diff(string(readFixture(t, name)), got); diff != "" {
		t.Errorf("note differs from testdata/%s (-want +got):\n%s", name, diff)
	}
}

func TestNotesNoChangesLeaveNoNewNoteButUpdateOne(t *testing.T) {
	srv, f := newFakeNotes(t)
	g := newTestNotes(t, srv.URL)
	noop := previewStatus(Success, "0 changed, 0 created, 0 pruned", PhaseDone)
	noop.Detail.Counts, noop.Detail.Objects, noop.Detail.Diff = Counts{Unchanged: 4}, nil, nil
	if err := g.Report(t.Context(), noop); err != nil {
		t.Fatal(err)
	}
	if len(f.bodies()) != 0 {
		t.Fatalf("a note about no changes was left: %v", f.bodies())
	}
	// The merge request changed the app once…
	if err := g.Report(t.Context(), previewStatus(Success, "1 changed, 1 created, 0 pruned", PhaseDone)); err != nil {
		t.Fatal(err)
	}
	// …and then no longer: its note says so.
	if err := g.Report(t.Context(), noop); err != nil {
		t.Fatal(err)
	}
	if b := f.bodies(); len(b) != 1 || !strings.Contains(b[0], "· No changes") {
		t.Errorf("notes %q, want one saying no changes", b)
	}
}
