package source

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrygitops/ferry/test/gitserver"
	"github.com/google/go-cmp/cmp"
)

func newCache(t testing.TB, dir string) *Cache {
	t.Helper()
	c, err := New(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// readFile reads name from fsys, failing the test if it cannot.
func readFile(t *testing.T, fsys fs.FS, name string) string {
	t.Helper()
	data, err := fs.ReadFile(fsys, name)
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return string(data)
}

// noise is n bytes that do not compress, so pack sizes show what a fetch transferred.
func noise(n int) string {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		sum := sha256.Sum256([]byte(fmt.Sprint(i)))
		b.WriteString(hex.EncodeToString(sum[:]))
	}
	return b.String()[:n]
}

// packSizes lists the sizes of the cache's pack files for repo name.
func packSizes(t *testing.T, dir, name string) map[string]int64 {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, name+".git", "objects", "pack", "*.pack"))
	if err != nil {
		t.Fatal(err)
	}
	sizes := map[string]int64{}
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		sizes[filepath.Base(p)] = st.Size()
	}
	return sizes
}

func TestFetchUsesTheCacheAndFetchesIncrementally(t *testing.T) {
	srv := gitserver.New(t)
	gr := srv.CreateRepo(t, "acme/platform")
	big := noise(256 << 10)
	first := gr.Commit(t, "main", "first", map[string]string{"apps/api/big.yaml": big, "apps/db/db.yaml": "kind: StatefulSet\n"})
	repo := Repo{Name: "platform", URL: gr.CloneURL()}
	dir := t.TempDir()
	c := newCache(t, dir)
	ctx := t.Context()

	if err := c.Fetch(ctx, repo, first, "main"); err != nil {
		t.Fatal(err)
	}
	before := packSizes(t, dir, "platform")
	if len(before) != 1 {
		t.Fatalf("after the first fetch the cache holds packs %v, want one", before)
	}

	// A known commit is served from the cache, also by a new Cache on the same directory (a
	// restarted ferry): no request reaches the server.
	requests := srv.Requests()
	for i, cache := range []*Cache{c, newCache(t, dir)} {
		if err := cache.Fetch(ctx, repo, first, "main"); err != nil {
			t.Fatalf("cache %d: %v", i, err)
		}
	}
	if n := srv.Requests() - requests; n != 0 {
		t.Errorf("fetches of a cached commit made %d requests, want 0", n)
	}

	second := gr.Commit(t, "main", "second", map[string]string{"apps/db/db.yaml": "kind: Service\n"})
	if err := c.Fetch(ctx, repo, second, "main"); err != nil {
		t.Fatal(err)
	}
	after := packSizes(t, dir, "platform")
	if len(after) != 2 {
		t.Fatalf("after the second fetch the cache holds packs %v, want two", after)
	}
	for name, size := range after {
		if _, old := before[name]; !old && size > 16<<10 {
			t.Errorf("the second fetch transferred a %d-byte pack: it was not incremental", size)
		}
	}
	fsys, err := c.Files(ctx, repo, first, "apps/api")
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, fsys, "apps/api/big.yaml"); got != big {
		t.Errorf("the first commit's file changed after a second fetch (%d bytes)", len(got))
	}
	fsys, err = c.Files(ctx, repo, second, "apps/db")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff("kind: Service\n", readFile(t, fsys, "apps/db/db.yaml")); diff != "" {
		t.Errorf("second commit (-want +got):\n%s", diff)
	}
}

func TestFetchRefs(t *testing.T) {
	srv := gitserver.New(t)
	gr := srv.CreateRepo(t, "acme/refs")
	main := gr.Commit(t, "main", "first", map[string]string{"a/x.yaml": "x: 1\n"})
	pr := gr.CommitLocal(t, "feature", "pull request", map[string]string{"a/x.yaml": "x: 2\n"})
	gr.PushRef(t, "refs/pull/7/head", pr)
	mr := gr.CommitLocal(t, "other", "merge request", map[string]string{"a/x.yaml": "x: 3\n"})
	gr.PushRef(t, "refs/merge-requests/3/head", mr)
	release := gr.Commit(t, "release", "release", map[string]string{"a/x.yaml": "x: 4\n"})
	unpushed := gr.CommitLocal(t, "main", "not pushed", map[string]string{"a/x.yaml": "x: 5\n"})

	tests := []struct {
		name    string
		sha     string
		refs    []string
		want    string // content of a/x.yaml, or "" for ErrCommitNotFound
		wantErr error
	}{
		{name: "branch by name", sha: main, refs: []string{"main"}, want: "x: 1\n"},
		{name: "branch by full ref", sha: main, refs: []string{"refs/heads/main"}, want: "x: 1\n"},
		{name: "no refs fetches every branch", sha: release, want: "x: 4\n"},
		{name: "github pull request ref", sha: pr, refs: []string{"refs/heads/main", "refs/pull/7/head"}, want: "x: 2\n"},
		{name: "gitlab merge request ref", sha: mr, refs: []string{"refs/merge-requests/3/head"}, want: "x: 3\n"},
		{name: "one of the refs is gone", sha: pr, refs: []string{"refs/pull/8/head", "refs/pull/7/head"}, want: "x: 2\n"},
		{name: "commit on another branch", sha: pr, refs: []string{"main"}, wantErr: ErrCommitNotFound},
		{name: "ref is gone", sha: pr, refs: []string{"refs/pull/9/head"}, wantErr: ErrCommitNotFound},
		{name: "commit not pushed", sha: unpushed, refs: []string{"main"}, wantErr: ErrCommitNotFound},
		{name: "unknown sha", sha: strings.Repeat("ab", 20), wantErr: ErrCommitNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := Repo{Name: "refs", URL: gr.CloneURL()}
			c := newCache(t, t.TempDir())
			err := c.Fetch(t.Context(), repo, tt.sha, tt.refs...)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || IsTransient(err) {
					t.Fatalf("Fetch() = %v (transient %v), want %v, not transient", err, IsTransient(err), tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			fsys, err := c.Files(t.Context(), repo, tt.sha, "a")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, readFile(t, fsys, "a/x.yaml")); diff != "" {
				t.Errorf("a/x.yaml (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFetchCommitPushedLater(t *testing.T) {
	srv := gitserver.New(t)
	gr := srv.CreateRepo(t, "acme/late")
	gr.Commit(t, "main", "first", map[string]string{"a/x.yaml": "x: 1\n"})
	later := gr.CommitLocal(t, "main", "later", map[string]string{"a/x.yaml": "x: 2\n"})
	repo := Repo{Name: "late", URL: gr.CloneURL()}
	c := newCache(t, t.TempDir())
	err := c.Fetch(t.Context(), repo, later, "main")
	if !errors.Is(err, ErrCommitNotFound) || IsTransient(err) {
		t.Fatalf("before the push: %v (transient %v), want ErrCommitNotFound", err, IsTransient(err))
	}
	gr.Push(t, "main")
	if err := c.Fetch(t.Context(), repo, later, "main"); err != nil {
		t.Fatalf("after the push: %v", err)
	}
}

func TestFetchEmptyRepository(t *testing.T) {
	gr := gitserver.New(t).CreateRepo(t, "acme/empty")
	c := newCache(t, t.TempDir())
	err := c.Fetch(t.Context(), Repo{Name: "empty", URL: gr.CloneURL()}, strings.Repeat("1", 40), "main")
	if !errors.Is(err, ErrCommitNotFound) {
		t.Fatalf("Fetch() from an empty repository = %v, want ErrCommitNotFound", err)
	}
}

// closedURL is a URL on 127.0.0.1 where nothing listens.
func closedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr + "/gone.git"
}

func TestFetchErrors(t *testing.T) {
	const token = "s3cr3t-token-value"
	srv := gitserver.New(t)
	gr := srv.CreateRepo(t, "acme/private")
	sha := gr.Commit(t, "main", "first", map[string]string{"a/x.yaml": "x: 1\n"})
	srv.RequireToken(token)

	// echo answers 401 quoting the password it received, as a careless server might.
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, pass, _ := r.BasicAuth()
		http.Error(w, "bad credentials "+pass, http.StatusUnauthorized)
	}))
	t.Cleanup(echo.Close)
	withUser := strings.Replace(gr.CloneURL(), "http://", "http://someone:"+token+"@", 1)
	wrongUser := strings.Replace(gr.CloneURL(), "http://", "http://someone:wrong-"+token+"@", 1)

	tests := []struct {
		name      string
		repo      Repo
		sha       string
		fail      int // requests the server fails with 503 first
		wantErr   error
		transient bool
	}{
		{name: "github token", repo: Repo{URL: gr.CloneURL(), Token: token, Provider: "github"}, sha: sha},
		{name: "gitlab token", repo: Repo{URL: gr.CloneURL(), Token: token, Provider: "gitlab"}, sha: sha},
		{name: "gitea token", repo: Repo{URL: gr.CloneURL(), Token: token, Provider: "gitea"}, sha: sha},
		{name: "credentials in the url", repo: Repo{URL: withUser}, sha: sha},
		{name: "no token", repo: Repo{URL: gr.CloneURL()}, sha: sha, wantErr: errAny},
		{name: "wrong token", repo: Repo{URL: gr.CloneURL(), Token: "wrong-" + token, Provider: "github"}, sha: sha, wantErr: errAny},
		{name: "wrong credentials in the url", repo: Repo{URL: wrongUser}, sha: sha, wantErr: errAny},
		{name: "server echoes the token", repo: Repo{URL: echo.URL + "/x.git", Token: token}, sha: sha, wantErr: errAny},
		{name: "missing repository", repo: Repo{URL: srv.URL() + "/acme/none.git", Token: token}, sha: sha, wantErr: errAny},
		{name: "server error", repo: Repo{URL: gr.CloneURL(), Token: token}, sha: sha, fail: 1, wantErr: errAny, transient: true},
		{name: "nothing listening", repo: Repo{URL: closedURL(t), Token: token}, sha: sha, wantErr: errAny, transient: true},
		{name: "abbreviated sha", repo: Repo{URL: gr.CloneURL(), Token: token}, sha: sha[:12], wantErr: errAny},
		{name: "bad ref", repo: Repo{URL: gr.CloneURL(), Token: token}, sha: sha, wantErr: errAny},
		{name: "bad url", repo: Repo{URL: "http://x:" + token + "@[::1", Token: token}, sha: sha, wantErr: errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.repo.Name = "private"
			refs := []string{"main"}
			if tt.name == "bad ref" {
				refs = []string{"refs/heads/*"}
			}
			srv.FailNext(tt.fail, http.StatusServiceUnavailable)
			c := newCache(t, t.TempDir())
			err := c.Fetch(t.Context(), tt.repo, tt.sha, refs...)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if _, err := c.Files(t.Context(), tt.repo, tt.sha, "a"); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("Fetch() succeeded, want an error")
			}
			if got := IsTransient(err); got != tt.transient {
				t.Errorf("IsTransient(%v) = %v, want %v", err, got, tt.transient)
			}
			if strings.Contains(err.Error(), token) {
				t.Errorf("the error quotes the token: %v", err)
			}
		})
	}
}

// errAny stands for "some error" in tables where its kind is checked otherwise.
var errAny = errors.New("any error")

func TestConcurrentUse(t *testing.T) {
	srv := gitserver.New(t)
	gr := srv.CreateRepo(t, "acme/busy")
	var shas []string
	for i := range 4 {
		shas = append(shas, gr.Commit(t, "main", fmt.Sprint("commit ", i), map[string]string{"a/x.yaml": fmt.Sprintf("x: %d\n", i)}))
	}
	repo := Repo{Name: "busy", URL: gr.CloneURL()}
	c := newCache(t, t.TempDir())
	var wg sync.WaitGroup
	errs := make(chan error, 4*len(shas))
	for range 4 {
		for i, sha := range shas {
			wg.Go(func() {
				if err := c.Fetch(t.Context(), repo, sha, "main"); err != nil {
					errs <- err
					return
				}
				fsys, err := c.Files(t.Context(), repo, sha, "a")
				if err != nil {
					errs <- err
					return
				}
				if data, err := fs.ReadFile(fsys, "a/x.yaml"); err != nil || string(data) != fmt.Sprintf("x: %d\n", i) {
					errs <- fmt.Errorf("commit %d: a/x.yaml = %q, %v", i, data, err)
				}
				if _, err := c.IsAncestor(t.Context(), repo, shas[0], sha); err != nil {
					errs <- err
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestHead(t *testing.T) {
	srv := gitserver.New(t)
	gr := srv.CreateRepo(t, "acme/heads")
	first := gr.Commit(t, "main", "first", map[string]string{"a.yaml": "a: 1\n"})
	second := gr.Commit(t, "main", "second", map[string]string{"a.yaml": "a: 2\n"})
	feature := gr.Commit(t, "feature", "feature", map[string]string{"b.yaml": "b: 1\n"})
	gr.PushRef(t, "refs/tags/v1", first)
	gr.Tag(t, "v2", second)
	gr.PushRef(t, "refs/pull/4/head", feature)
	empty := srv.CreateRepo(t, "acme/void")

	tests := []struct {
		name    string
		url     string
		branch  string
		want    string
		wantErr error
	}{
		{name: "branch", url: gr.CloneURL(), branch: "main", want: second},
		{name: "other branch", url: gr.CloneURL(), branch: "feature", want: feature},
		{name: "full ref", url: gr.CloneURL(), branch: "refs/pull/4/head", want: feature},
		{name: "tag", url: gr.CloneURL(), branch: "v1", want: first},
		{name: "annotated tag", url: gr.CloneURL(), branch: "v2", want: second},
		{name: "annotated tag by full ref", url: gr.CloneURL(), branch: "refs/tags/v2", want: second},
		{name: "missing branch", url: gr.CloneURL(), branch: "nope", wantErr: ErrRefNotFound},
		{name: "empty repository", url: empty.CloneURL(), branch: "main", wantErr: ErrRefNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			c := newCache(t, dir)
			requests := srv.Requests()
			got, err := c.Head(t.Context(), Repo{Name: "heads", URL: tt.url}, tt.branch)
			if n := srv.Requests() - requests; n != 1 {
				t.Errorf("Head made %d requests, want 1 ref listing", n)
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || IsTransient(err) {
					t.Fatalf("Head() = %q, %v; want %v, not transient", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Head(%s) = %s, want %s", tt.branch, got, tt.want)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("Head wrote to the cache: %v", entries)
			}
		})
	}
}

func TestFetchStartsABrokenCacheAgain(t *testing.T) {
	gr := gitserver.New(t).CreateRepo(t, "acme/broken")
	sha := gr.Commit(t, "main", "one", map[string]string{"a/x.yaml": "x: 1\n"})
	tests := []struct {
		name    string
		breakIt func(t *testing.T, repoDir string)
	}{
		{"a file where the repository goes", func(t *testing.T, repoDir string) { write(t, repoDir, "junk") }},
		{"a directory that is no repository", func(t *testing.T, repoDir string) { write(t, filepath.Join(repoDir, "HEAD"), "junk") }},
		{"an unreadable config", func(t *testing.T, repoDir string) { write(t, filepath.Join(repoDir, "config"), "[[[junk") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.breakIt(t, filepath.Join(dir, "broken.git"))
			c := newCache(t, dir)
			repo := Repo{Name: "broken", URL: gr.CloneURL()}
			if err := c.Fetch(t.Context(), repo, sha, "main"); err != nil {
				t.Fatal(err)
			}
			fsys, err := c.Files(t.Context(), repo, sha, "a")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff("x: 1\n", readFile(t, fsys, "a/x.yaml")); diff != "" {
				t.Errorf("a/x.yaml (-want +got):\n%s", diff)
			}
		})
	}
}

// write creates the file p with content, and its directory.
func write(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestWaitForTheLockEndsWithTheContext(t *testing.T) {
	gr := gitserver.New(t).CreateRepo(t, "acme/locked")
	sha := gr.Commit(t, "main", "one", map[string]string{"a/x.yaml": "x: 1\n"})
	repo := Repo{Name: "locked", URL: gr.CloneURL()}
	c := newCache(t, t.TempDir())
	e, err := c.open(repo)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.lock(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := c.Fetch(ctx, repo, sha, "main"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Fetch() behind a held lock = %v, want the context's deadline", err)
	}
	e.unlock()
	if err := c.Fetch(t.Context(), repo, sha, "main"); err != nil {
		t.Errorf("Fetch() after the lock was released: %v", err)
	}
}
