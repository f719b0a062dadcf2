package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/ferrygitops/ferry/syncer/ghapp"
	"github.com/ferrygitops/ferry/syncer/ghapp/ghapptest"
	"github.com/ferrygitops/ferry/syncer/status"
)

// TestForgeReporterPicksOneWay: a repository with a GitHub App reports through check runs (or
// commit statuses when it asks for them), any other through commit statuses; GitLab with
// mergeRequestNotes adds a note per app.
func TestForgeReporterPicksOneWay(t *testing.T) {
	hc := &http.Client{}
	key := ghapptest.NewKey(t)
	app, err := ghapp.New(ghapp.Config{Repo: "platform", AppID: 5, InstallationID: 6, PrivateKey: key.PKCS1(), Owner: "acme", Name: "platform"}, ghapp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	gh := RepoConf{Name: "platform", URL: "https://github.com/acme/platform.git", Provider: "github", GitHubApp: &GitHubAppConf{AppID: 5}}
	rep, err := forgeReporter(gh, hc, "", app)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := rep.(*status.Checks); !ok {
		t.Errorf("with an App: %T, want *status.Checks", rep)
	}
	gh.GitHubApp.CommitStatuses = true
	if rep, err = forgeReporter(gh, hc, "", app); err != nil {
		t.Fatal(err)
	}
	if _, ok := rep.(*status.GitHub); !ok {
		t.Errorf("with an App and commitStatuses: %T, want *status.GitHub", rep)
	}
	gh.GitHubApp = nil
	rep, err = forgeReporter(gh, hc, "ghp_token", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := rep.(*status.GitHub); !ok {
		t.Errorf("with a token: %T, want *status.GitHub", rep)
	}
	gl := RepoConf{Name: "platform", URL: "https://gitlab.com/acme/platform.git", Provider: "gitlab"}
	if _, err := forgeReporter(gl, hc, "", app); err == nil {
		t.Error("a GitHub App on a GitLab repository was accepted")
	}
}

func TestForgeReporterAddsMergeRequestNotesOnGitLab(t *testing.T) {
	var mu sync.Mutex
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.Method+" "+r.URL.EscapedPath())
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodGet {
			_, _ = w.Write([]byte(`[]`))
			return
		}
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"id":1}`))
	}))
	t.Cleanup(srv.Close)
	gl := RepoConf{Name: "platform", URL: "https://gitlab.example.com/acme/platform.git", Provider: "gitlab", APIURL: srv.URL, MergeRequestNotes: true}
	rep, err := forgeReporter(gl, srv.Client(), "glpat-token", nil)
	if err != nil {
		t.Fatal(err)
	}
	s := status.Status{SHA: "0123456789abcdef0123456789abcdef01234567", Context: "ferry/api/preview", State: status.Success, Description: "1 changed, 0 created, 0 pruned",
		Detail: &status.Detail{App: "api", Kind: status.KindPreview, Phase: status.PhaseDone, PR: 3, Counts: status.Counts{Changed: 1}}}
	if err := rep.Report(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"POST /api/v4/projects/acme%2Fplatform/statuses/" + s.SHA,
		"GET /api/v4/projects/acme%2Fplatform/merge_requests/3/notes",
		"POST /api/v4/projects/acme%2Fplatform/merge_requests/3/notes",
	}
	if strings.Join(paths, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(paths, "\n"), strings.Join(want, "\n"))
	}
}

func TestMergeRequestNotesAreValidated(t *testing.T) {
	for _, tt := range []struct {
		provider, token, want string
	}{
		{"github", "token: {env: TOKEN}", "mergeRequestNotes is for GitLab merge requests"},
		{"gitlab", "", "mergeRequestNotes needs a token"},
		{"gitlab", "token: {env: TOKEN}", ""},
	} {
		doc := `
externalURL: https://ferry.example.com
repos:
  - name: platform
    url: https://example.com/acme/platform.git
    provider: ` + tt.provider + `
    webhookSecret: {env: HOOK}
    mergeRequestNotes: true
    ` + tt.token + `
apps: [{name: api, repo: platform, path: apps/api}]
`
		_, _, err := ParseConfig([]byte(doc), env(map[string]string{"HOOK": "0123456789abcdef0123", "TOKEN": "t0ken"}))
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.provider, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s %q: err = %v, want %q", tt.provider, tt.token, err, tt.want)
		}
	}
}
