package handlers

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/syncer/source"
)

// remoteRefs answers Head from a fixed ref listing, as the Git host would.
type remoteRefs map[string]string

func (r remoteRefs) Head(_ context.Context, _ source.Repo, ref string) (string, error) {
	if sha, ok := r[ref]; ok {
		return sha, nil
	}
	return "", source.ErrRefNotFound
}

type jobSink struct{ jobs []queue.Job }

func (s *jobSink) Enqueue(_ context.Context, jobs []queue.Job) ([]queue.Job, error) {
	s.jobs = append(s.jobs, jobs...)
	return jobs, nil
}

// TestResyncRevisionForms: the API takes a full sha (checked against the app's branch by the
// worker), the app's branch, or a tag, by short or full name, and refuses every other ref before
// queueing anything: another branch, a pull or merge request head, any other remote ref.
func TestResyncRevisionForms(t *testing.T) {
	sha := strings.Repeat("a", 40)
	suspensions := testSuspensions(t)
	refs := remoteRefs{"refs/heads/main": "1111", "refs/heads/feature": "2222", "refs/tags/v1.0": "3333",
		"refs/pull/120/head": "4444", "refs/heads/release-2": "5555", "refs/tags/main": "6666"}
	apps := []ResyncApp{{Name: "web", Repo: "platform", Branch: "main"}, {Name: "rel", Repo: "platform", Branch: "release-*"}}
	for _, tc := range []struct {
		app, revision string
		code          int
		sha, ref      string
		err           string
	}{
		{"web", "", http.StatusAccepted, "1111", "refs/heads/main", ""},
		{"web", "main", http.StatusAccepted, "1111", "refs/heads/main", ""},
		{"web", "refs/heads/main", http.StatusAccepted, "1111", "refs/heads/main", ""},
		{"web", sha, http.StatusAccepted, sha, "refs/heads/main", ""},
		{"web", "v1.0", http.StatusAccepted, "3333", "refs/tags/v1.0", ""},
		{"web", "refs/tags/v1.0", http.StatusAccepted, "3333", "refs/tags/v1.0", ""},
		{"rel", "release-2", http.StatusAccepted, "5555", "refs/heads/release-2", ""},
		{"rel", "refs/heads/release-2", http.StatusAccepted, "5555", "refs/heads/release-2", ""},
		{"web", "refs/pull/120/head", http.StatusBadRequest, "", "", "refs/pull/120/head is neither the branch app web deploys (main) nor a tag"},
		{"web", "refs/merge-requests/7/head", http.StatusBadRequest, "", "", "neither the branch app web deploys"},
		{"web", "refs/heads/feature", http.StatusBadRequest, "", "", "branch feature is not the branch app web deploys (main)"},
		{"web", "refs/heads/*", http.StatusBadRequest, "", "", "revision must be"},
		// A short name that is not the app's branch can only be a tag.
		{"web", "feature", http.StatusBadGateway, "", "", "cannot resolve tag feature on repo platform"},
		{"rel", sha, http.StatusBadRequest, "", "", "name a branch or a tag, not a commit"},
		{"rel", "", http.StatusBadRequest, "", "", "name a revision"},
	} {
		t.Run(tc.app+" "+tc.revision, func(t *testing.T) {
			sink := &jobSink{}
			h, err := NewResync(apps, refs, sink, suspensions, ResyncOptions{Repos: map[string]source.Repo{"platform": {Name: "platform"}}})
			if err != nil {
				t.Fatal(err)
			}
			r := chi.NewRouter()
			r.With(NewAuth([]Token{{Name: "ci", Value: []byte("tok")}}, nil).Require).Method(http.MethodPost, "/api/v1/apps/{app}/sync", h)
			body, _ := json.Marshal(map[string]string{"revision": tc.revision})
			req := httptest.NewRequest(http.MethodPost, "/api/v1/apps/"+tc.app+"/sync", strings.NewReader(string(body)))
			req.Header.Set("Authorization", "Bearer tok")
			rec := httptest.NewRecorder()
			r.ServeHTTP(rec, req)
			if rec.Code != tc.code {
				t.Fatalf("%d %s, want %d", rec.Code, rec.Body, tc.code)
			}
			if tc.code != http.StatusAccepted {
				if !strings.Contains(rec.Body.String(), tc.err) {
					t.Errorf("body %s, want it to say %q", rec.Body, tc.err)
				}
				if len(sink.jobs) != 0 {
					t.Errorf("a refused revision was queued: %+v", sink.jobs)
				}
				return
			}
			if len(sink.jobs) != 1 {
				t.Fatalf("jobs %+v", sink.jobs)
			}
			got := sink.jobs[0]
			if diff := cmp.Diff([]string{tc.sha, tc.ref, string(queue.TriggerManual)}, []string{got.SHA, got.Ref, string(got.Trigger)}); diff != "" {
				t.Errorf("job (-want +got):\n%s", diff)
			}
		})
	}
}
