package gitserver

import (
	"context"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// lsRemote lists url's refs with the git client, over HTTP, as ref → sha.
func lsRemote(t *testing.T, url string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", "ls-remote", url)
	cmd.Env = []string{"HOME=" + t.TempDir(), "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git ls-remote %s: %v\n%s", url, err, out)
	}
	refs := map[string]string{}
	for line := range strings.Lines(string(out)) {
		sha, ref, ok := strings.Cut(strings.TrimSpace(line), "\t")
		if ok && ref != "HEAD" {
			refs[ref] = sha
		}
	}
	return refs
}

func TestServesCommitsOverHTTP(t *testing.T) {
	s := New(t)
	r := s.CreateRepo(t, "acme/platform")
	if got, want := r.CloneURL(), s.URL()+"/acme/platform.git"; got != want {
		t.Errorf("CloneURL() = %q, want %q", got, want)
	}
	first := r.Commit(t, "main", "first", map[string]string{"apps/a/cm.yaml": "kind: ConfigMap\n", "apps/b/x.yaml": "x: 1\n"})
	later := r.CommitLocal(t, "main", "second", map[string]string{"apps/a/cm.yaml": "kind: Secret\n"})
	if diff := cmp.Diff(map[string]string{"refs/heads/main": first}, lsRemote(t, r.CloneURL())); diff != "" {
		t.Fatalf("an unpushed commit is visible (-want +got):\n%s", diff)
	}
	r.Push(t, "main")
	if got := r.Head(t, "main"); got != later {
		t.Fatalf("after Push, Head(main) = %s, want %s", got, later)
	}
	feature := r.Commit(t, "feature", "feature", map[string]string{"apps/c/y.yaml": "y: 1\n"})
	r.PushRef(t, "refs/pull/7/head", feature)
	removed := r.Remove(t, "main", "drop b", "apps/b")
	want := map[string]string{"refs/heads/main": removed, "refs/heads/feature": feature, "refs/pull/7/head": feature}
	if diff := cmp.Diff(want, lsRemote(t, r.CloneURL())); diff != "" {
		t.Errorf("refs over http (-want +got):\n%s", diff)
	}
	if got := r.Head(t, "feature"); got != feature {
		t.Errorf("Head(feature) = %s, want %s", got, feature)
	}

	// A new branch starts at main, and Remove really removed the directory.
	out, err := r.run(r.work, nil, "log", "--format=%s", "feature")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff("feature\nsecond\nfirst", out); diff != "" {
		t.Errorf("history of feature (-want +got):\n%s", diff)
	}
	out, err = r.run(r.bare, nil, "ls-tree", "-r", "--name-only", removed)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff("apps/a/cm.yaml", out); diff != "" {
		t.Errorf("tree after Remove (-want +got):\n%s", diff)
	}

	r.Tag(t, "v1", first)
	refs := lsRemote(t, r.CloneURL())
	if refs["refs/tags/v1"] == "" || refs["refs/tags/v1"] == first || refs["refs/tags/v1^{}"] != first {
		t.Errorf("annotated tag v1 on %s: ls-remote says %q, peeled %q", first, refs["refs/tags/v1"], refs["refs/tags/v1^{}"])
	}

	r.DeleteRef(t, "refs/pull/7/head")
	if _, ok := lsRemote(t, r.CloneURL())["refs/pull/7/head"]; ok {
		t.Error("DeleteRef left the pull request ref")
	}
}

func TestCommitsAreDeterministic(t *testing.T) {
	shas := func() []string {
		r := New(t).CreateRepo(t, "same")
		return []string{
			r.Commit(t, "main", "one", map[string]string{"a.yaml": "a: 1\n"}),
			r.Commit(t, "main", "two", map[string]string{"b.yaml": "b: 1\n"}),
			r.Symlink(t, "main", "c.yaml", "a.yaml"),
		}
	}
	first, second := shas(), shas()
	if diff := cmp.Diff(first, second); diff != "" {
		t.Errorf("the same commits on two servers differ (-first +second):\n%s", diff)
	}
	// An empty commit with the same message still gets a new sha: the date moves on.
	r := New(t).CreateRepo(t, "empty")
	a := r.Commit(t, "main", "again", nil)
	b := r.Commit(t, "main", "again", nil)
	if a == b {
		t.Errorf("two commits share the sha %s", a)
	}
}

func TestRequireToken(t *testing.T) {
	s := New(t)
	r := s.CreateRepo(t, "private")
	r.Commit(t, "main", "first", map[string]string{"a.yaml": "x: 1\n"})
	s.RequireToken("sekret")
	tests := []struct {
		name string
		auth func(*http.Request)
		want int
	}{
		{"no credentials", func(*http.Request) {}, http.StatusUnauthorized},
		{"wrong password", func(r *http.Request) { r.SetBasicAuth("x-access-token", "guess") }, http.StatusUnauthorized},
		{"token as user name only", func(r *http.Request) { r.SetBasicAuth("sekret", "") }, http.StatusUnauthorized},
		{"basic auth password", func(r *http.Request) { r.SetBasicAuth("oauth2", "sekret") }, http.StatusOK},
		{"bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer sekret") }, http.StatusOK},
		{"wrong bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer sekre") }, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, r.CloneURL()+"/info/refs?service=git-upload-pack", nil)
			if err != nil {
				t.Fatal(err)
			}
			tt.auth(req)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.want)
			}
		})
	}
}

func TestFailNextAndRequests(t *testing.T) {
	s := New(t)
	r := s.CreateRepo(t, "flaky")
	r.Commit(t, "main", "first", map[string]string{"a.yaml": "x: 1\n"})
	if n := s.Requests(); n != 0 {
		t.Fatalf("commits and pushes made %d HTTP requests, want 0", n)
	}
	s.FailNext(2, http.StatusServiceUnavailable)
	var got []int
	for range 3 {
		resp, err := http.Get(r.CloneURL() + "/info/refs?service=git-upload-pack")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		got = append(got, resp.StatusCode)
	}
	if diff := cmp.Diff([]int{503, 503, 200}, got); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	if n := s.Requests(); n != 3 {
		t.Errorf("Requests() = %d, want 3", n)
	}
}
