package forgefake_test

import (
	"errors"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ferrygitops/ferry/syncer/status"
	"github.com/ferrygitops/ferry/test/forgefake"
)

// TestFerryReporters drives ferry's own status reporters (the real GitHub, GitLab and Gitea
// clients) against the fake, so the fake and ferry agree on paths, auth and fields.
func TestFerryReporters(t *testing.T) {
	hc := &http.Client{}
	tests := []struct {
		name     string
		reporter func(apiURL, token string) (status.Reporter, error)
		repo     string
		states   []string // as the forge records pending, failure, success
	}{
		{"github", func(apiURL, token string) (status.Reporter, error) {
			return status.NewGitHub(hc, apiURL, token, "acme", "platform")
		}, "acme/platform", []string{"pending", "failure", "success"}},
		{"gitlab", func(apiURL, token string) (status.Reporter, error) {
			return status.NewGitLab(hc, apiURL, token, "group/sub/platform")
		}, "group/sub/platform", []string{"pending", "failed", "success"}},
		{"gitea", func(apiURL, token string) (status.Reporter, error) {
			return status.NewGitea(hc, apiURL, token, "acme", "platform")
		}, "acme/platform", []string{"pending", "failure", "success"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := forgefake.New(t, token)
			r, err := tt.reporter(f.URL(), token)
			if err != nil {
				t.Fatalf("new reporter: %v", err)
			}
			var want []forgefake.Status
			for i, st := range []status.State{status.Pending, status.Failure, status.Success} {
				s := status.Status{SHA: sha, Context: "ferry/api", State: st, Description: string(st), TargetURL: "https://ferry.example.com/syncs/1"}
				if err := r.Report(t.Context(), s); err != nil {
					t.Fatalf("Report %s: %v", st, err)
				}
				want = append(want, forgefake.Status{
					Provider: tt.name, Repo: tt.repo, SHA: sha, Context: "ferry/api",
					State: tt.states[i], Description: string(st), TargetURL: "https://ferry.example.com/syncs/1",
				})
			}
			if diff := cmp.Diff(want, f.Statuses(sha)); diff != "" {
				t.Errorf("Statuses (-want +got):\n%s", diff)
			}

			bad, err := tt.reporter(f.URL(), "wrong-token")
			if err != nil {
				t.Fatalf("new reporter: %v", err)
			}
			err = bad.Report(t.Context(), status.Status{SHA: sha, Context: "ferry/api", State: status.Failure})
			var he *status.HTTPError
			if !errors.As(err, &he) || he.StatusCode != http.StatusUnauthorized || !status.IsPermanent(err) {
				t.Errorf("Report with a wrong token: %v; want a permanent 401", err)
			}

			f.FailNext(1, http.StatusBadGateway)
			err = r.Report(t.Context(), status.Status{SHA: sha, Context: "ferry/db", State: status.Pending})
			if err == nil || status.IsPermanent(err) {
				t.Errorf("Report during an injected 502: %v; want a transient error", err)
			}
		})
	}
}

// TestFerryGitLabRepeatedState checks the one GitLab quirk ferry relies on the fake for: a
// repeated pending status is refused with 400, and ferry's reporter takes that as done.
func TestFerryGitLabRepeatedState(t *testing.T) {
	f := forgefake.New(t, token)
	r, err := status.NewGitLab(&http.Client{}, f.URL(), token, "group/platform")
	if err != nil {
		t.Fatal(err)
	}
	s := status.Status{SHA: sha, Context: "ferry/api", State: status.Pending}
	for i := range 2 {
		if err := r.Report(t.Context(), s); err != nil {
			t.Fatalf("Report %d: %v", i, err)
		}
	}
	if got, want := len(f.Statuses(sha)), 1; got != want {
		t.Errorf("recorded %d statuses, want %d", got, want)
	}
	if got, want := f.Requests(), 2; got != want {
		t.Errorf("Requests() = %d, want %d", got, want)
	}
}
