package source

import (
	"errors"
	"io/fs"
	"strings"
	"testing"

	"github.com/ferrygitops/ferry/test/gitserver"
	"github.com/google/go-cmp/cmp"
)

func newCache(t *testing.T) *Cache {
	t.Helper()
	c, err := New(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestFetchAndRead(t *testing.T) {
	srv := gitserver.New(t)
	gr := srv.CreateRepo(t, "acme/platform")
	first := gr.Commit(t, "main", "first", map[string]string{
		"apps/api/deploy.yaml":   "kind: Deployment\n",
		"apps/api/nested/x.yaml": "kind: ConfigMap\n",
		"apps/db/db.yaml":        "kind: StatefulSet\n",
		"README.md":              "hello\n",
	})
	repo := Repo{Name: "platform", URL: gr.CloneURL()}
	c := newCache(t)
	ctx := t.Context()
	if err := c.Fetch(ctx, repo, first, "refs/heads/main"); err != nil {
		t.Fatal(err)
	}
	fsys, err := c.Files(ctx, repo, first, "apps/api")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	_ = fs.WalkDir(fsys, "apps/api", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			got = append(got, p)
		}
		return err
	})
	if diff := cmp.Diff([]string{"apps/api/deploy.yaml", "apps/api/nested/x.yaml"}, got); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	data, _ := fs.ReadFile(fsys, "apps/db/db.yaml")
	if string(data) != "kind: StatefulSet\n" {
		t.Errorf("the rest of the repository is not readable: %q", data)
	}

	// A known commit is served from the cache: no request reaches the server.
	before := srv.Requests()
	if err := c.Fetch(ctx, repo, first, "refs/heads/main"); err != nil {
		t.Fatal(err)
	}
	if n := srv.Requests() - before; n != 0 {
		t.Errorf("fetch of a cached commit made %d requests", n)
	}

	second := gr.Commit(t, "main", "second", map[string]string{"apps/db/db.yaml": "kind: Service\n"})
	if err := c.Fetch(ctx, repo, second, "refs/heads/main"); err != nil {
		t.Fatal(err)
	}
	changed, err := c.Changed(ctx, repo, first, second)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"apps/db/db.yaml"}, changed); diff != "" {
		t.Errorf("changed (-want +got):\n%s", diff)
	}
	ok, err := c.IsAncestor(ctx, repo, first, second)
	if err != nil || !ok {
		t.Errorf("first is an ancestor of second: %v %v", ok, err)
	}
	ok, err = c.IsAncestor(ctx, repo, second, first)
	if err != nil || ok {
		t.Errorf("second is not an ancestor of first: %v %v", ok, err)
	}
	head, err := c.Head(ctx, repo, "main")
	if err != nil || head != second {
		t.Errorf("head = %s %v, want %s", head, err, second)
	}
	if _, err := c.Files(ctx, repo, second, "apps/missing"); !errors.Is(err, ErrBadTree) {
		t.Errorf("missing app dir: %v", err)
	}
}

func TestCommitNotFoundUntilPushed(t *testing.T) {
	srv := gitserver.New(t)
	gr := srv.CreateRepo(t, "acme/late")
	gr.Commit(t, "main", "first", map[string]string{"a/x.yaml": "x: 1\n"})
	later := gr.CommitLocal(t, "main", "later", map[string]string{"a/x.yaml": "x: 2\n"})
	repo := Repo{Name: "late", URL: gr.CloneURL()}
	c := newCache(t)
	err := c.Fetch(t.Context(), repo, later, "refs/heads/main")
	if !errors.Is(err, ErrCommitNotFound) || IsTransient(err) {
		t.Fatalf("unpushed commit: %v (transient %v), want ErrCommitNotFound", err, IsTransient(err))
	}
	gr.Push(t, "main")
	if err := c.Fetch(t.Context(), repo, later, "refs/heads/main"); err != nil {
		t.Fatalf("after push: %v", err)
	}
}

func TestPullRequestRef(t *testing.T) {
	srv := gitserver.New(t)
	gr := srv.CreateRepo(t, "acme/pr")
	gr.Commit(t, "main", "first", map[string]string{"a/x.yaml": "x: 1\n"})
	head := gr.CommitLocal(t, "feature", "pr", map[string]string{"a/x.yaml": "x: 3\n"})
	gr.PushRef(t, "refs/pull/7/head", head)
	repo := Repo{Name: "pr", URL: gr.CloneURL()}
	c := newCache(t)
	if err := c.Fetch(t.Context(), repo, head, "refs/pull/7/head"); err != nil {
		t.Fatal(err)
	}
	fsys, err := c.Files(t.Context(), repo, head, "a")
	if err != nil {
		t.Fatal(err)
	}
	if data, _ := fs.ReadFile(fsys, "a/x.yaml"); string(data) != "x: 3\n" {
		t.Errorf("pull request content = %q", data)
	}
}

func TestSymlinks(t *testing.T) {
	srv := gitserver.New(t)
	gr := srv.CreateRepo(t, "acme/links")
	gr.Commit(t, "main", "first", map[string]string{"shared/cm.yaml": "kind: ConfigMap\n", "app/own.yaml": "kind: Service\n"})
	inside := gr.Symlink(t, "main", "app/cm.yaml", "../shared/cm.yaml")
	repo := Repo{Name: "links", URL: gr.CloneURL()}
	c := newCache(t)
	if err := c.Fetch(t.Context(), repo, inside); err != nil {
		t.Fatal(err)
	}
	fsys, err := c.Files(t.Context(), repo, inside, "app")
	if err != nil {
		t.Fatal(err)
	}
	if data, _ := fs.ReadFile(fsys, "app/cm.yaml"); string(data) != "kind: ConfigMap\n" {
		t.Errorf("link inside the repository not followed: %q", data)
	}
	outside := gr.Symlink(t, "main", "app/passwd.yaml", "../../../../etc/passwd")
	if err := c.Fetch(t.Context(), repo, outside); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Files(t.Context(), repo, outside, "app"); !errors.Is(err, ErrBadTree) || !strings.Contains(err.Error(), "app/passwd.yaml") {
		t.Fatalf("link out of the repository: %v", err)
	}
}

func TestTokenAuth(t *testing.T) {
	srv := gitserver.New(t)
	gr := srv.CreateRepo(t, "acme/private")
	sha := gr.Commit(t, "main", "first", map[string]string{"a/x.yaml": "x: 1\n"})
	srv.RequireToken("s3cr3t-token")
	c := newCache(t)
	bad := Repo{Name: "private", URL: gr.CloneURL(), Token: "wrong-token", Provider: "github"}
	err := c.Fetch(t.Context(), bad, sha)
	if err == nil || IsTransient(err) {
		t.Fatalf("wrong token: %v, want a permanent error", err)
	}
	if strings.Contains(err.Error(), "wrong-token") {
		t.Fatalf("error leaks the token: %v", err)
	}
	good := bad
	good.Token = "s3cr3t-token"
	if err := c.Fetch(t.Context(), good, sha); err != nil {
		t.Fatal(err)
	}
	refs, err := c.Head(t.Context(), good, "main")
	if err != nil || refs != sha {
		t.Fatalf("head with token: %s %v", refs, err)
	}
}
