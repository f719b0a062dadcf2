package gitserver

import (
	"net/http"
	"os/exec"
	"strings"
	"testing"
)

func TestServesCommitsOverHTTP(t *testing.T) {
	s := New(t)
	r := s.CreateRepo(t, "acme/platform")
	sha := r.Commit(t, "main", "first", map[string]string{"apps/a/cm.yaml": "kind: ConfigMap\n"})
	if got := r.Head(t, "main"); got != sha {
		t.Fatalf("head = %s, want %s", got, sha)
	}
	out, err := exec.Command("git", "ls-remote", r.CloneURL()).CombinedOutput()
	if err != nil {
		t.Fatalf("ls-remote over http: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), sha+"\trefs/heads/main") {
		t.Fatalf("ls-remote does not list main at %s:\n%s", sha, out)
	}
	later := r.CommitLocal(t, "main", "second", map[string]string{"apps/a/cm.yaml": "kind: Secret\n"})
	if got := r.Head(t, "main"); got != sha {
		t.Fatalf("an unpushed commit is visible: head %s", got)
	}
	r.Push(t, "main")
	if got := r.Head(t, "main"); got != later {
		t.Fatalf("after push head = %s, want %s", got, later)
	}
	r.PushRef(t, "refs/pull/7/head", sha)
	out, _ = exec.Command("git", "ls-remote", r.CloneURL(), "refs/pull/7/head").CombinedOutput()
	if !strings.Contains(string(out), sha) {
		t.Fatalf("pull ref not served: %s", out)
	}
}

func TestRequireToken(t *testing.T) {
	s := New(t)
	r := s.CreateRepo(t, "private")
	r.Commit(t, "main", "first", map[string]string{"a.yaml": "x: 1\n"})
	s.RequireToken("sekret")
	resp, err := http.Get(r.CloneURL() + "/info/refs?service=git-upload-pack")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without token: %d, want 401", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodGet, r.CloneURL()+"/info/refs?service=git-upload-pack", nil)
	req.SetBasicAuth("x-access-token", "sekret")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("with token: %d, want 200", resp.StatusCode)
	}
}
